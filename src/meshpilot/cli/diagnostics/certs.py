"""The few X.509 facts `proxy-config secrets` shows, without a crypto dependency.

`cryptography` is not a meshpilot dependency, so the certificate is decoded by the
standard library's OpenSSL binding (`ssl._ssl._test_decode_cert`, which wants a file) for
serial number and validity, and the CA flag is read from the DER's basicConstraints
extension by a tiny walk (istioctl's TYPE column is `CA` when `cert.IsCA`). Anything that
fails to parse is reported as not valid, as istioctl does.
"""

from __future__ import annotations

import binascii
import contextlib
import os
import ssl
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime

_BASIC_CONSTRAINTS_OID = bytes.fromhex("0603551d13")  # OID 2.5.29.19
_PEM_BEGIN = "-----BEGIN CERTIFICATE-----"
_PEM_END = "-----END CERTIFICATE-----"


@dataclass(frozen=True)
class CertInfo:
    valid: bool
    serial: str
    not_after: str
    not_before: str
    is_ca: bool


def first_pem_certificate(pem: str) -> str | None:
    start = pem.find(_PEM_BEGIN)
    end = pem.find(_PEM_END, start)
    if start < 0 or end < 0:
        return None
    return pem[start:end + len(_PEM_END)] + "\n"


def _der_length(der: bytes, i: int) -> tuple[int, int]:
    """(length, index of the content) for the DER length octets at `i`."""
    first = der[i]
    if first < 0x80:
        return first, i + 1
    n = first & 0x7F
    return int.from_bytes(der[i + 1:i + 1 + n], "big"), i + 1 + n


def is_ca_certificate(der: bytes) -> bool:
    """basicConstraints `cA` TRUE. Extension = SEQ { OID, [BOOLEAN critical], OCTET STRING
    { SEQ { [BOOLEAN cA], [INTEGER pathLen] } } }."""
    at = der.find(_BASIC_CONSTRAINTS_OID)
    if at < 0:
        return False
    try:
        i = at + len(_BASIC_CONSTRAINTS_OID)
        if der[i] == 0x01:  # critical flag
            i += 3
        if der[i] != 0x04:
            return False
        _, i = _der_length(der, i + 1)
        if der[i] != 0x30:
            return False
        length, i = _der_length(der, i + 1)
        return length >= 3 and der[i] == 0x01 and der[i + 2] != 0x00
    except IndexError:
        return False


def _openssl_time(text: str) -> datetime:
    """`Jan  1 00:00:00 2030 GMT` (OpenSSL's notAfter format) as an aware datetime."""
    return datetime.strptime(text.replace("  ", " "), "%b %d %H:%M:%S %Y %Z").replace(tzinfo=UTC)


def _rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def cert_info(pem: str, now: datetime | None = None) -> CertInfo | None:
    """Facts of the first certificate in `pem`; None when it does not parse."""
    block = first_pem_certificate(pem)
    if block is None:
        return None
    try:
        der = ssl.PEM_cert_to_DER_cert(block)
    except (ValueError, binascii.Error):
        return None
    decode = getattr(ssl._ssl, "_test_decode_cert", None)  # type: ignore[attr-defined]
    if decode is None:
        return None
    fd, path = tempfile.mkstemp(suffix=".pem")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(block)
        decoded = decode(path)
    except (ssl.SSLError, OSError, ValueError):
        return None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
    try:
        not_before = _openssl_time(decoded["notBefore"])
        not_after = _openssl_time(decoded["notAfter"])
        serial = f"{int(decoded['serialNumber'], 16):032x}"
    except (KeyError, ValueError):
        return None
    now = now or datetime.now(UTC)
    return CertInfo(valid=not_before < now < not_after, serial=serial,
                    not_after=_rfc3339(not_after), not_before=_rfc3339(not_before),
                    is_ca=is_ca_certificate(der))
