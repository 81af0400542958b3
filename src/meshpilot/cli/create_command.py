"""`meshpilot create secret tls NAME --cert F --key F [--ca F] [-n NS]` (kubectl's habit).

Gateways read TLS credentials from Secrets (`credentialName`), and users know how to make
one with `kubectl create secret tls`; this builds the same `kubernetes.io/tls` Secret from
PEM files and applies it through the REST API. Applying over an existing Secret updates
it, which is how a certificate is rotated: the control plane pushes the new certificate
to the gateways over SDS, without restarting them (kubectl would need
`--dry-run=client -o yaml | kubectl apply -f -` for that; here it is one command).
"""

from __future__ import annotations

import argparse
import base64
import sys
from pathlib import Path
from typing import Any

from .client import ApiError, Client

MESHPILOT_API = "/apis/meshpilot.io/v1"


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def tls_secret(name: str, namespace: str | None, cert: bytes, key: bytes,
               ca: bytes | None = None) -> dict[str, Any]:
    """A kubernetes.io/tls Secret manifest (`tls.crt`, `tls.key`, optional `ca.crt`)."""
    data = {"tls.crt": cert, "tls.key": key}
    if ca is not None:
        data["ca.crt"] = ca
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    return {"apiVersion": "v1", "kind": "Secret", "metadata": metadata,
            "type": "kubernetes.io/tls",
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}


def _read_pem(path: str, what: str) -> bytes:
    """The file's bytes, refusing what is plainly not PEM (kubectl checks the pair too)."""
    data = Path(path).read_bytes()
    if b"-----BEGIN " not in data:
        raise ValueError(f"{path}: not a PEM {what}")
    return data


def create_secret_tls(args: argparse.Namespace) -> int:
    try:
        cert = _read_pem(args.cert, "certificate")
        key = _read_pem(args.key, "private key")
        ca = _read_pem(args.ca, "CA certificate") if args.ca else None
    except (OSError, ValueError) as e:
        _err(f"error: {e}")
        return 1
    body = {"objects": [tls_secret(args.name, args.namespace, cert, key, ca)],
            "namespace": args.namespace, "dryRun": args.dry_run, "source": "cli"}
    try:
        report = Client(args.server).post(f"{MESHPILOT_API}/apply", body)
    except ApiError as e:
        _err(f"error: {e}")
        for cause in e.causes:
            _err(f"  {cause.get('field', '')}: {cause.get('message', '')}")
        return 1
    except OSError as e:
        _err(f"error: cannot reach the control plane: {e}")
        return 1
    suffix = " (dry run)" if args.dry_run else ""
    for r in report["results"]:
        print(f"{r['resource']}/{r['name']} {r['action']}{suffix}")
    return 0


def add_create_command(sub: argparse._SubParsersAction) -> None:
    create = sub.add_parser("create", help="create a resource from command-line arguments")
    kinds = create.add_subparsers(dest="create_kind", metavar="KIND", required=True)
    secret = kinds.add_parser("secret", help="create a Secret")
    types = secret.add_subparsers(dest="secret_type", metavar="TYPE", required=True)
    tls = types.add_parser("tls", help="a kubernetes.io/tls Secret from PEM files "
                                       "(re-run to rotate the certificate)")
    tls.add_argument("name", metavar="NAME")
    tls.add_argument("--cert", required=True, metavar="FILE", help="PEM certificate (chain)")
    tls.add_argument("--key", required=True, metavar="FILE", help="PEM private key")
    tls.add_argument("--ca", metavar="FILE",
                     help="PEM CA bundle stored as ca.crt (client CA for MUTUAL gateways)")
    tls.add_argument("-n", "--namespace", help="namespace (default: default)")
    tls.add_argument("--dry-run", action="store_true",
                     help="validate on the server and show what would change; store nothing")
    tls.add_argument("--server", metavar="URL",
                     help="control plane API address (default: $MESHPILOT_SERVER or "
                          "http://127.0.0.1:15014)")
    tls.set_defaults(func=create_secret_tls)
