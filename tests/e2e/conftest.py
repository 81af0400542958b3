"""Fixtures that run the real `meshpilot` command and control plane on 127.0.0.1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from meshpilot.proxy.ports import free_port

MESHPILOT = [sys.executable, "-m", "meshpilot"]
__all__ = ["MESHPILOT", "ControlPlaneProcess", "free_port"]


@dataclass
class ControlPlaneProcess:
    state: Path
    port: int
    proc: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *extra: str, wait: bool = True) -> None:
        self.log_path = self.state.parent / f"up-{self.port}-{time.monotonic_ns()}.log"
        log = self.log_path.open("w")
        # Never the default xDS port: a user's own `meshpilot up` may hold it.
        xds = [] if "--xds-port" in extra else ["--xds-port", str(free_port())]
        self.proc = subprocess.Popen(
            [*MESHPILOT, "up", "--state", str(self.state), "--api-port", str(self.port),
             *xds, *extra],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"control plane exited: {self.log()}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"control plane not ready in {timeout}s: {self.log()}")

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path and self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(timeout)


@pytest.fixture
def control_plane(tmp_path: Path) -> Iterator[ControlPlaneProcess]:
    cp = ControlPlaneProcess(tmp_path / "state", free_port())
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


@pytest.fixture
def cli(control_plane: ControlPlaneProcess):
    """Run `meshpilot ...` against the test control plane, as a user would."""

    def run(*args: str, stdin: str | None = None, server: bool = True) -> Result:
        env = dict(os.environ)
        env.pop("MESHPILOT_SERVER", None)
        if server:
            env["MESHPILOT_SERVER"] = control_plane.url
        p = subprocess.run([*MESHPILOT, *args], input=stdin, capture_output=True, text=True,
                           env=env, timeout=60)
        return Result(p.returncode, p.stdout, p.stderr)

    return run
