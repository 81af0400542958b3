"""`proxy-config secrets`: istioctl's `RESOURCE NAME  TYPE  STATUS  VALID CERT  SERIAL NUMBER
NOT AFTER  NOT BEFORE`, one row per SDS secret Envoy holds (gateways' credentialName
certificates, `kubernetes://NAME`, and their CA bundles)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from pathlib import Path
from typing import Any

from .certs import cert_info
from .configdump import dynamic_secrets
from .tabwriter import tabulate

COLUMNS = ["RESOURCE NAME", "TYPE", "STATUS", "VALID CERT", "SERIAL NUMBER", "NOT AFTER",
           "NOT BEFORE"]


def _data(source: dict[str, Any] | None) -> str:
    """A DataSource's text: inline bytes (base64 in JSON), an inline string, or a file
    (readable when the proxy runs on this machine)."""
    source = source or {}
    if source.get("inline_bytes"):
        try:
            return base64.b64decode(source["inline_bytes"]).decode(errors="replace")
        except (binascii.Error, ValueError):
            return ""
    if source.get("inline_string"):
        return str(source["inline_string"])
    if source.get("filename"):
        try:
            return Path(source["filename"]).read_text(errors="replace")
        except OSError:
            return ""
    return ""


def secret_items(dump: dict[str, Any], now: datetime | None = None) -> list[dict[str, Any]]:
    """istioctl's SecretItem per secret: name, state and the certificate's facts."""
    items = []
    for wrapper, state in dynamic_secrets(dump):
        secret = wrapper.get("secret") or {}
        pem = _data((secret.get("tls_certificate") or {}).get("certificate_chain")) or \
            _data((secret.get("validation_context") or {}).get("trusted_ca"))
        info = cert_info(pem, now) if pem else None
        items.append({
            "resource_name": str(wrapper.get("name") or secret.get("name", "")),
            "state": state,
            "cert_valid": bool(info and info.valid),
            "serial_number": info.serial if info else "",
            "not_after": info.not_after if info else "",
            "not_before": info.not_before if info else "",
            "type": ("CA" if info.is_ca else "Cert Chain") if info else "",
        })
    return items


def secrets_table(dump: dict[str, Any], include_type: bool = False,
                  now: datetime | None = None) -> str:
    items = secret_items(dump, now)
    if not items:
        return "No secret items to show."
    rows: list[list[str]] = [COLUMNS]
    for s in items:
        name = f"secret/{s['resource_name']}" if include_type else s["resource_name"]
        rows.append([name, s["type"], s["state"], "true" if s["cert_valid"] else "false",
                     s["serial_number"], s["not_after"], s["not_before"]])
    return tabulate(rows)
