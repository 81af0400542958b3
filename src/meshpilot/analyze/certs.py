"""Is a gateway credential usable? Istio's ExtractCertInfo + ValidateCertificate.

Istio's SecretAnalyzer (IST0161) wants a certificate and a key (`cert`/`key`, else
`tls.crt`/`tls.key`), a certificate that decodes as PEM and X.509, and a validity window
containing now. Only the window is read from the DER (api/x509.py); a certificate Envoy
rejects for other reasons still fails at push.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from ..api.x509 import first_pem_der, parse_certificate


def certificate_problem(pem: bytes, now: datetime | None = None) -> str | None:
    """Why the first PEM block is not a currently valid certificate (None: it is)."""
    try:
        der = first_pem_der(pem)
        if der is None:
            return "pem decode failed"
        cert = parse_certificate(der)
    except (ValueError, UnicodeDecodeError):
        return "not an X.509 certificate"
    if not cert.valid_at(now or datetime.now(UTC)):
        return "certificate is expired or not yet valid"
    return None


def credential_problem(data: Mapping[str, bytes], now: datetime | None = None) -> str | None:
    """Istio's isValidSecret for a gateway credential's decoded data."""
    for cert_key, key_key in (("cert", "key"), ("tls.crt", "tls.key")):
        if data.get(cert_key) and data.get(key_key):
            return certificate_problem(data[cert_key], now)
    return "no cert/key or tls.crt/tls.key"
