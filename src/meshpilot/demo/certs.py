"""A throw-away CA and a server certificate for the gateway's HTTPS section.

Made with the `openssl` command, exactly as the e2e tests make theirs (tests/e2e/
test_gateways.py `Certs`) and as a user would: meshpilot has no crypto dependency, and
the point of the section is that `meshpilot create secret tls` takes ordinary PEM files.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path


def have_openssl() -> bool:
    return shutil.which("openssl") is not None


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


def make_certs(directory: Path, host: str) -> tuple[Path, Path, Path]:
    """ca.crt, server.crt (SAN DNS:host, signed by the CA) and server.key in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_crt = directory / "ca.key", directory / "ca.crt"
    key, csr, crt = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
             "-subj", "/CN=meshpilot demo CA", "-keyout", str(ca_key), "-out", str(ca_crt))
    ext.write_text(f"subjectAltName=DNS:{host}\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={host}",
             "-keyout", str(key), "-out", str(csr))
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca_crt), "-CAkey", str(ca_key),
             "-CAcreateserial", "-days", "30", "-extfile", str(ext), "-out", str(crt))
    return ca_crt, crt, key
