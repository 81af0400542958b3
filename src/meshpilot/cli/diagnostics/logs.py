"""`meshpilot logs PROXY [-f] [--tail N] [--envoy|--app]`: the proxy's access log (Istio's
format, text or JSON), or its Envoy or app log, like `kubectl logs -c istio-proxy`.

The files are where the proxy said they are (its WorkloadEntry's `meshpilot.io/access-log`,
`envoy-log`, `app-log` annotations), so this works for any proxy on this machine. `-f`
follows the file as `tail -F` does: it waits for a file that does not exist yet and
starts over when the file is truncated or replaced.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import BinaryIO

from .admin import DiagnosticsError, target_from_args
from .common import add_proxy_target, guarded

POLL_SECONDS = 0.2
_CHUNK = 64 * 1024


def add_logs_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("logs", help="print a proxy's access log (or its Envoy or app log)",
                       description="Print the access log of a proxy (Istio's format); -f "
                                   "follows it until Ctrl-C.")
    add_proxy_target(p)
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    p.add_argument("--tail", type=int, default=-1, metavar="N",
                   help="only the last N lines (default: all; -f alone: all, then new ones)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--envoy", action="store_true", help="Envoy's own log instead")
    which.add_argument("--app", action="store_true", help="the supervised app's log instead")
    p.set_defaults(func=guarded(logs))


def tail_lines(path: Path, n: int, end: int) -> bytes:
    """The last `n` lines (all when n < 0) of the file's first `end` bytes, reading
    backwards from there (logs grow large)."""
    if n == 0 or end <= 0:
        return b""
    with path.open("rb") as f:
        if n < 0:
            return f.read(end)
        pos = end
        data = b""
        while pos > 0 and data.count(b"\n") <= n:
            step = min(_CHUNK, pos)
            pos -= step
            f.seek(pos)
            data = f.read(step) + data
        return b"".join(data.splitlines(keepends=True)[-n:])


def _write(out: BinaryIO, data: bytes) -> None:
    if data:
        out.write(data)
        out.flush()


def follow(path: Path, out: BinaryIO, offset: int, stop_after: float | None = None) -> None:
    """`tail -F` from byte `offset` of the current file: print what is appended; reopen
    (from the start) when the file is replaced or truncated. `stop_after` (seconds) ends
    it, for tests; otherwise Ctrl-C does."""
    deadline = None if stop_after is None else time.monotonic() + stop_after
    f: BinaryIO | None = None
    inode = None
    try:
        while deadline is None or time.monotonic() < deadline:
            if f is None:
                try:
                    f = path.open("rb")
                except FileNotFoundError:
                    time.sleep(POLL_SECONDS)
                    continue
                inode = os.fstat(f.fileno()).st_ino
                if offset <= os.fstat(f.fileno()).st_size:
                    f.seek(offset)
                offset = 0
            chunk = f.read(_CHUNK)
            if chunk:
                _write(out, chunk)
                continue
            try:
                st = path.stat()
            except FileNotFoundError:
                st = None
            if st is None or st.st_ino != inode or st.st_size < f.tell():
                f.close()
                f = None  # replaced or truncated: read the new file from its start
                continue
            time.sleep(POLL_SECONDS)
    finally:
        if f is not None:
            f.close()


def logs(args: argparse.Namespace) -> int:
    target = target_from_args(args)
    key = "envoy-log" if args.envoy else "app-log" if args.app else "access-log"
    value = target.annotation(key)
    if not value:
        what = {"envoy-log": "an Envoy log", "app-log": "an app log",
                "access-log": "an access log"}[key]
        raise DiagnosticsError(f"proxy {target.id} does not say where {what} is (no "
                               f"meshpilot.io/{key} annotation on its WorkloadEntry)")
    path = Path(value)
    out = sys.stdout.buffer
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        if not args.follow:
            raise DiagnosticsError(f"{path} does not exist yet (nothing logged yet, or the "
                                   f"proxy runs on another machine)") from None
        size = 0
    _write(out, tail_lines(path, args.tail, size))
    if args.follow:
        try:
            follow(path, out, offset=size)
        except KeyboardInterrupt:
            return 0
    return 0
