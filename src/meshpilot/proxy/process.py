"""Child processes that must never outlive meshpilot: Envoy, and the app a sidecar runs.

Each child gets its own session (process group), so stopping it also stops anything it
forked, and a Ctrl-C in the terminal reaches only the supervisor, which then stops the
children in order. Three nets catch a supervisor that goes away without cleaning up:
`stop()` in its own finally blocks, an `atexit` hook over every live child, and (Linux)
PR_SET_PDEATHSIG so the kernel signals a child whose parent was SIGKILLed.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from .envoy import find_envoy

_LIVE: weakref.WeakSet[Child] = weakref.WeakSet()
ACCESS_LOG_FLUSH_MS = 1000
_PR_SET_PDEATHSIG = 1


# Loaded here, not in the child: only async-signal-safe work belongs between fork and exec.
_LIBC = (ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
         if sys.platform.startswith("linux") else None)


def _die_with_parent() -> None:
    """Runs in the child between fork and exec: ask the kernel for SIGTERM if we orphan."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def exit_code(returncode: int | None) -> int:
    """A shell-style exit status: death by signal N becomes 128 + N."""
    if returncode is None:
        return 1
    return 128 - returncode if returncode < 0 else returncode


class Child:
    """One supervised process in its own process group, output appended to a log file."""

    def __init__(self, argv: Sequence[str], *, log_path: Path, env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None) -> None:
        self.argv = [str(a) for a in argv]
        self.log_path = Path(log_path)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> None:
        if self.proc is not None:
            raise RuntimeError(f"{self.argv[0]} already started")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                env=self.env, cwd=self.cwd, start_new_session=True,
                preexec_fn=_die_with_parent,  # the supervisor is single-threaded
            )
        except BaseException:
            self._log.close()
            raise
        _LIVE.add(self)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def poll(self) -> int | None:
        """The return code once exited (negative: killed by that signal), else None."""
        return self.proc.poll() if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig: int) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:  # group leader gone and pid reused: signal only our child
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    def stop(self, grace: float = 5.0) -> int | None:
        """SIGTERM the whole group, SIGKILL after `grace` seconds; reap; idempotent."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait()
        # The leader may be gone while something it forked still holds the group.
        self._signal_group(signal.SIGKILL)
        if self._log is not None:
            self._log.close()
            self._log = None
        _LIVE.discard(self)
        return self.proc.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class EnvoyNotReady(RuntimeError):
    pass


class EnvoyProcess(Child):
    """Envoy with a bootstrap file, hot restart off, admin on 127.0.0.1:`admin_port`."""

    def __init__(self, bootstrap: str | os.PathLike[str], *, admin_port: int, log_path: Path,
                 binary: str | os.PathLike[str] | None = None, concurrency: int = 1,
                 log_level: str = "info", extra_args: Sequence[str] = ()) -> None:
        envoy = Path(binary) if binary else find_envoy()
        argv = [str(envoy), "-c", str(bootstrap), "--concurrency", str(concurrency),
                # Hot restart needs shared memory keyed by --base-id: two proxies on one
                # machine would collide, and we restart by stop + start anyway.
                "--disable-hot-restart", "--log-level", log_level,
                # Access log lines reach the file within 1 s instead of Envoy's default
                # 10 s, so `tail -f` (and a test reading the log) sees requests promptly.
                "--file-flush-interval-msec", str(ACCESS_LOG_FLUSH_MS), *extra_args]
        super().__init__(argv, log_path=log_path)
        self.admin_port = admin_port

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def admin_get(self, path: str, timeout: float = 2.0) -> tuple[int, str]:
        """(status, body) of an admin endpoint; status 0 when the admin port does not answer."""
        url = self.admin_url + (path if path.startswith("/") else "/" + path)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode(errors="replace")
        except OSError:
            return 0, ""

    def is_ready(self) -> bool:
        """Admin /ready says LIVE: with ADS, only after the first CDS and LDS were applied."""
        status, body = self.admin_get("/ready", timeout=1.0)
        return status == 200 and body.strip() == "LIVE"

    def wait_ready(self, timeout: float = 30.0, interval: float = 0.05) -> None:
        deadline = time.monotonic() + timeout
        while True:
            code = self.poll()
            if code is not None:
                raise EnvoyNotReady(f"envoy exited with code {code}; log {self.log_path}:\n"
                                    + self.log_tail())
            if self.is_ready():
                return
            if time.monotonic() >= deadline:
                _, body = self.admin_get("/ready", timeout=1.0)
                state = body.strip() or "admin port not answering"
                raise EnvoyNotReady(
                    f"envoy not ready after {timeout:g}s (state: {state}); it becomes ready once "
                    f"the control plane has sent its listeners and clusters. Log: {self.log_path}"
                )
            time.sleep(interval)


@atexit.register
def _stop_all() -> None:
    """Last resort on interpreter exit: no child outlives the Python that started it."""
    for child in list(_LIVE):
        with contextlib.suppress(Exception):
            child.stop(grace=2.0)
