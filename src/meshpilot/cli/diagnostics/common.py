"""Flags and helpers every diagnostics command shares (istioctl's spellings)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .. import output
from ..client import ApiError
from .admin import DiagnosticsError

Handler = Callable[[argparse.Namespace], int]


def err(text: str) -> None:
    print(text, file=sys.stderr)


def add_server(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", metavar="URL",
                   help="control plane API address (default: $MESHPILOT_SERVER or "
                        "http://127.0.0.1:15014)")


def add_proxy_target(p: argparse.ArgumentParser, required: bool = True) -> None:
    """PROXY as istioctl takes a pod: `name[.namespace]`, or -n; or `--admin URL`."""
    p.add_argument("proxy", nargs="?" if not required else None, metavar="PROXY",
                   help="proxy name, NAME or NAME.NAMESPACE (the node id proxy-status shows)")
    p.add_argument("-n", "--namespace", help="namespace of PROXY")
    p.add_argument("--admin", metavar="URL",
                   help="talk to this Envoy admin directly (e.g. http://127.0.0.1:15000) "
                        "instead of looking PROXY up")
    add_server(p)


def guarded(fn: Handler) -> Handler:
    """Turn the errors users can act on into one `error:` line and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (DiagnosticsError, ApiError) as e:
            err(f"error: {e}")
            return 1

    run.__doc__ = fn.__doc__
    return run


def dump_structured(obj: Any, fmt: str) -> str:
    return output.to_yaml(obj).rstrip("\n") if fmt == "yaml" else output.to_json(obj)


def read_json_file(path: str) -> Any:
    """`--file`: a saved `/config_dump` (or `/clusters?format=json`), as istioctl's --file."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        return json.loads(text)
    except OSError as e:
        raise DiagnosticsError(f"cannot read {path}: {e}") from None
    except ValueError as e:
        raise DiagnosticsError(f"{path} is not JSON: {e}") from None
