"""Children are stopped with their whole process group: nothing outlives the supervisor."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from meshpilot.proxy.process import Child, exit_code


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_stop_kills_the_group_including_grandchildren(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    child = Child(["sh", "-c", f"sleep 300 & echo $! > {pidfile}; wait"],
                  log_path=tmp_path / "child.log")
    child.start()
    try:
        deadline = time.monotonic() + 5
        while not pidfile.exists() or not pidfile.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.02)
        grandchild = int(pidfile.read_text())
        assert child.running and alive(grandchild)
        code = child.stop(grace=2)
        assert code == -15
        assert exit_code(code) == 143
        deadline = time.monotonic() + 2
        while alive(grandchild) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(grandchild)
    finally:
        child.stop(grace=0.1)


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    script = "import signal,time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
             "print('up', flush=True); time.sleep(60)"
    child = Child([sys.executable, "-c", script], log_path=tmp_path / "c.log")
    child.start()
    deadline = time.monotonic() + 5
    while "up" not in child.log_tail():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    assert child.stop(grace=0.3) == -9
    assert time.monotonic() - started < 3


def test_output_goes_to_the_log_and_env_is_passed(tmp_path: Path) -> None:
    child = Child([sys.executable, "-c", "import os; print(os.environ['X'])"],
                  log_path=tmp_path / "x.log", env={**os.environ, "X": "hello"})
    child.start()
    assert child.proc is not None
    child.proc.wait(10)
    assert child.stop() == 0
    assert child.log_tail() == "hello"
    assert exit_code(None) == 1
