"""Is a gateway credential usable? Istio's ExtractCertInfo + ValidateCertificate.

Istio's SecretAnalyzer (IST0161) wants a certificate and a key (`cert`/`key`, else
`tls.crt`/`tls.key`), a certificate that decodes as PEM and X.509, and a validity window
containing now. Only the window is read from the DER here (a few dozen lines instead of a
crypto dependency); a certificate Envoy rejects for other reasons still fails at push.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from datetime import UTC, datetime

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)-----END \1-----", re.DOTALL)


class _DerError(ValueError):
    pass


def _read(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at `pos`."""
    if pos + 2 > len(data):
        raise _DerError("truncated")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise _DerError("bad length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise _DerError("truncated")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> list[tuple[int, int, int]]:
    out = []
    while start < end:
        tag, cstart, cend = _read(data, start)
        out.append((tag, cstart, cend))
        start = cend
    return out


def _time(tag: int, raw: bytes) -> datetime:
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
        year = int(text[:2])
        text = f"{1900 + year if year >= 50 else 2000 + year}{text[2:]}"
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise _DerError("not a time")
    return datetime.strptime(text.rstrip("Z")[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def certificate_validity(der: bytes) -> tuple[datetime, datetime]:
    """notBefore and notAfter of an X.509 certificate (raises ValueError if it is not)."""
    tag, start, end = _read(der, 0)
    if tag != 0x30:
        raise _DerError("not a certificate")
    tbs = _children(der, start, end)
    if not tbs or tbs[0][0] != 0x30:
        raise _DerError("not a certificate")
    fields = _children(der, tbs[0][1], tbs[0][2])
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    if len(fields) < 4 or fields[3][0] != 0x30:
        raise _DerError("no validity")
    times = _children(der, fields[3][1], fields[3][2])
    if len(times) != 2:
        raise _DerError("no validity")
    return (_time(times[0][0], der[times[0][1]:times[0][2]]),
            _time(times[1][0], der[times[1][1]:times[1][2]]))


def certificate_problem(pem: bytes, now: datetime | None = None) -> str | None:
    """Why the first PEM block is not a currently valid certificate (None: it is)."""
    match = _PEM.search(pem)
    if match is None:
        return "pem decode failed"
    try:
        der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
        not_before, not_after = certificate_validity(der)
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return "not an X.509 certificate"
    now = now or datetime.now(UTC)
    if now > not_after or now < not_before:
        return "certificate is expired or not yet valid"
    return None


def credential_problem(data: Mapping[str, bytes], now: datetime | None = None) -> str | None:
    """Istio's isValidSecret for a gateway credential's decoded data."""
    for cert_key, key_key in (("cert", "key"), ("tls.crt", "tls.key")):
        if data.get(cert_key) and data.get(key_key):
            return certificate_problem(data[cert_key], now)
    return "no cert/key or tls.crt/tls.key"
