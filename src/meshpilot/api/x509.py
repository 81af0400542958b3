"""The few X.509 facts meshpilot reads (validity, serial, CA flag), from the DER itself.

`cryptography` is not a dependency and the standard library has no public certificate
parser, so a tiny DER walk reads what `analyze` (Istio's gateway credential checks) and
`proxy-config secrets` (istioctl's columns) need. Anything malformed raises ValueError.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import UTC, datetime

_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*(.*?)-----END \1-----", re.DOTALL)
_BASIC_CONSTRAINTS = bytes.fromhex("551d13")  # OID 2.5.29.19, content octets
_SEQUENCE, _INTEGER, _BOOLEAN, _OID, _OCTETS = 0x30, 0x02, 0x01, 0x06, 0x04
_VERSION, _EXTENSIONS = 0xA0, 0xA3


class DerError(ValueError):
    """Not a (well-formed) X.509 certificate."""


@dataclass(frozen=True)
class Certificate:
    serial: int
    not_before: datetime
    not_after: datetime
    is_ca: bool

    def valid_at(self, now: datetime) -> bool:
        return self.not_before <= now <= self.not_after


def _read(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER element at `pos`."""
    if pos + 2 > len(data):
        raise DerError("truncated")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(data):
            raise DerError("bad length")
        length = int.from_bytes(data[pos:pos + count], "big")
        pos += count
    if pos + length > len(data):
        raise DerError("truncated")
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
        raise DerError("not a time")
    return datetime.strptime(text.rstrip("Z")[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)


def _is_ca(der: bytes, extensions: tuple[int, int, int] | None) -> bool:
    """basicConstraints cA: Extension = SEQ { OID, [BOOLEAN critical], OCTET STRING {
    SEQ { [BOOLEAN cA], [INTEGER pathLen] } } }."""
    if extensions is None:
        return False
    [(tag, start, end)] = _children(der, extensions[1], extensions[2]) or [(0, 0, 0)]
    if tag != _SEQUENCE:
        return False
    for ext_tag, ext_start, ext_end in _children(der, start, end):
        parts = _children(der, ext_start, ext_end) if ext_tag == _SEQUENCE else []
        if len(parts) < 2 or parts[0][0] != _OID:
            continue
        if der[parts[0][1]:parts[0][2]] != _BASIC_CONSTRAINTS:
            continue
        value = parts[-1]
        if value[0] != _OCTETS:
            return False
        seq_tag, seq_start, seq_end = _read(der, value[1])
        inner = _children(der, seq_start, seq_end) if seq_tag == _SEQUENCE else []
        return bool(inner) and inner[0][0] == _BOOLEAN and der[inner[0][1]] != 0x00
    return False


def parse_certificate(der: bytes) -> Certificate:
    tag, start, end = _read(der, 0)
    if tag != _SEQUENCE:
        raise DerError("not a certificate")
    top = _children(der, start, end)
    if not top or top[0][0] != _SEQUENCE:
        raise DerError("not a certificate")
    fields = _children(der, top[0][1], top[0][2])
    if fields and fields[0][0] == _VERSION:
        fields = fields[1:]
    if len(fields) < 4 or fields[0][0] != _INTEGER or fields[3][0] != _SEQUENCE:
        raise DerError("no serial or validity")
    times = _children(der, fields[3][1], fields[3][2])
    if len(times) != 2:
        raise DerError("no validity")
    extensions = next((f for f in fields[4:] if f[0] == _EXTENSIONS), None)
    return Certificate(
        serial=int.from_bytes(der[fields[0][1]:fields[0][2]], "big"),
        not_before=_time(times[0][0], der[times[0][1]:times[0][2]]),
        not_after=_time(times[1][0], der[times[1][1]:times[1][2]]),
        is_ca=_is_ca(der, extensions),
    )


def first_pem_der(pem: bytes) -> bytes | None:
    """The DER of the first PEM block, None if there is none; ValueError if it is not
    base64."""
    match = _PEM.search(pem)
    if match is None:
        return None
    try:
        return base64.b64decode(b"".join(match.group(2).split()), validate=True)
    except binascii.Error as e:
        raise DerError(f"bad base64: {e}") from None
