"""The few X.509 facts `proxy-config secrets` shows (istioctl's columns): validity,
serial number and whether it is a CA (istioctl's TYPE is `CA` when `cert.IsCA`), read by
meshpilot's DER walk (api/x509.py). Anything that fails to parse is reported as not
valid, as istioctl does.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from ...api.x509 import first_pem_der, parse_certificate

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


def is_ca_certificate(der: bytes) -> bool:
    """basicConstraints `cA` TRUE (False for anything that does not parse)."""
    try:
        return parse_certificate(der).is_ca
    except ValueError:
        return False


def _rfc3339(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")


def cert_info(pem: str, now: datetime | None = None) -> CertInfo | None:
    """Facts of the first certificate in `pem`; None when it does not parse."""
    block = first_pem_certificate(pem)
    if block is None:
        return None
    try:
        der = first_pem_der(block.encode())
        if der is None:
            return None
        cert = parse_certificate(der)
    except (ValueError, UnicodeDecodeError):
        return None
    now = now or datetime.now(UTC)
    return CertInfo(valid=cert.not_before < now < cert.not_after,
                    serial=f"{cert.serial:032x}", not_after=_rfc3339(cert.not_after),
                    not_before=_rfc3339(cert.not_before), is_ca=cert.is_ca)
