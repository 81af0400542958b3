"""Which local process a WorkloadEntry or a state directory names, checked before any signal.

`delete namespace` and `down` stop processes they did not start, found through a pid
recorded somewhere else (a WorkloadEntry annotation, a pid file, the control plane's
lock). A pid alone is not an identity: after the process exits the kernel hands the
number out again, and signalling it would kill an unrelated program. So a process is
named by (boot id, pid, start time in clock ticks since boot), which no other process
can share, and additionally must run a `meshpilot` command line. Linux only (/proc);
elsewhere nothing verifies, so nothing is signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

PROC = Path("/proc")
PID_FILE = "supervisor.pid"

# Sub-commands whose process may be stopped on the user's behalf: the ones that register
# proxies (sidecar, gateway, run) and the control plane itself (up).
PROXY_COMMANDS = frozenset({"sidecar", "gateway", "run"})
CONTROL_PLANE_COMMANDS = frozenset({"up"})
# Tolerance when only a creation timestamp can date a registration (no pid-start
# annotation): timestamps are milliseconds, process start times are clock ticks.
CREATED_SLACK = 2.0


@dataclass(frozen=True)
class ProcessIdentity:
    """One process, unambiguously: pid numbers repeat, (boot, pid, start) never does."""

    pid: int
    start: int | None = None  # /proc/PID/stat field 22 (clock ticks since boot)
    boot_id: str | None = None

    def to_json(self) -> dict[str, object]:
        return {"pid": self.pid, "start": self.start, "bootId": self.boot_id}

    @classmethod
    def from_json(cls, data: object) -> ProcessIdentity | None:
        if not isinstance(data, dict) or not isinstance(data.get("pid"), int):
            return None
        start = data.get("start")
        boot = data.get("bootId")
        return cls(int(data["pid"]), start if isinstance(start, int) else None,
                   boot if isinstance(boot, str) else None)


def boot_id(proc: Path = PROC) -> str | None:
    try:
        return (proc / "sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def _stat_fields(pid: int, proc: Path) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (which may contain spaces)."""
    try:
        text = (proc / str(pid) / "stat").read_text()
    except (OSError, ValueError):
        return None
    _, sep, rest = text.rpartition(") ")
    return rest.split() if sep else None


def start_ticks(pid: int, proc: Path = PROC) -> int | None:
    fields = _stat_fields(pid, proc)
    # After the name: state is field 3, so starttime (field 22) is index 22 - 3 = 19.
    if fields is None or len(fields) < 20 or not fields[19].isdigit():
        return None
    return int(fields[19])


def alive(pid: int, proc: Path = PROC) -> bool:
    """Running (a zombie has exited: only its parent's wait is missing)."""
    fields = _stat_fields(pid, proc)
    return fields is not None and bool(fields) and fields[0] not in ("Z", "X")


def self_identity(proc: Path = PROC) -> ProcessIdentity:
    pid = os.getpid()
    return ProcessIdentity(pid, start_ticks(pid, proc), boot_id(proc))


def cmdline(pid: int, proc: Path = PROC) -> list[str] | None:
    try:
        raw = (proc / str(pid) / "cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a] or None


def meshpilot_subcommand(argv: Sequence[str]) -> str | None:
    """The sub-command of a `meshpilot ...` command line, whichever way it was started:
    the console script (`python .../bin/meshpilot run ...`), `python -m meshpilot up` or
    `python -m meshpilot.cli.main up`. None: not meshpilot."""
    for i, arg in enumerate(argv):
        base = os.path.basename(arg)
        launcher = base == "meshpilot" or (
            i > 0 and argv[i - 1] == "-m" and arg in ("meshpilot", "meshpilot.cli.main"))
        if launcher:
            rest = [a for a in argv[i + 1:] if not a.startswith("-")]
            return rest[0] if rest else None
    return None


def _boot_time(proc: Path) -> float | None:
    try:
        for line in (proc / "stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def started_at(pid: int, proc: Path = PROC) -> float | None:
    """The process's start as a Unix time (boot time + start ticks)."""
    ticks, boot = start_ticks(pid, proc), _boot_time(proc)
    if ticks is None or boot is None:
        return None
    return boot + ticks / os.sysconf("SC_CLK_TCK")


def parse_rfc3339(text: str | None) -> float | None:
    if not text:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    return None


def why_not(identity: ProcessIdentity, commands: Iterable[str], *,
            registered_at: float | None = None, proc: Path = PROC) -> str | None:
    """None if `identity` is a live meshpilot process running one of `commands` on this
    machine; otherwise the reason it must not be signalled."""
    mine = boot_id(proc)
    if identity.boot_id is not None and identity.boot_id != mine:
        return "registered on another machine (or before a reboot)"
    if not alive(identity.pid, proc):
        return "not running"
    argv = cmdline(identity.pid, proc)
    command = meshpilot_subcommand(argv or [])
    if command is None or command not in set(commands):
        shown = " ".join(argv or [])[:120] or "?"
        return f"pid {identity.pid} is not a meshpilot {'/'.join(sorted(commands))} ({shown})"
    if identity.start is not None:
        if start_ticks(identity.pid, proc) != identity.start:
            return f"pid {identity.pid} was reused by another process"
    elif registered_at is not None:
        began = started_at(identity.pid, proc)
        if began is None or began > registered_at + CREATED_SLACK:
            return f"pid {identity.pid} started after the registration: a reused pid"
    return None


def current_identity(pid: int, proc: Path = PROC) -> ProcessIdentity:
    """The identity of whatever runs as `pid` now (to pin a pid read from a lock)."""
    return ProcessIdentity(pid, start_ticks(pid, proc), boot_id(proc))


# --- pid files -----------------------------------------------------------------------------

def write_pid_file(directory: Path, identity: ProcessIdentity, command: str,
                   server: str) -> Path:
    """Record the supervisor of the proxy in `directory`, so `down` and `delete
    namespace` find it even while the control plane (or the WorkloadEntry) is gone.
    `server` is the control plane it joined: proxies of several meshes can share one
    state directory, and only the right mesh's may be stopped."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / PID_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**identity.to_json(), "command": command,
                               "server": server}) + "\n")
    tmp.replace(path)
    return path


def _read(path: Path) -> dict[str, object]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_pid_file(path: Path) -> ProcessIdentity | None:
    return ProcessIdentity.from_json(_read(path))


def remove_pid_file(directory: Path, identity: ProcessIdentity) -> None:
    """Remove the pid file if it still names us (a newer supervisor may have taken over)."""
    path = directory / PID_FILE
    if read_pid_file(path) == identity:
        with contextlib.suppress(OSError):
            path.unlink()


@dataclass(frozen=True)
class LocalProxy:
    """A proxy directory under STATE/proxies with a supervisor pid file."""

    namespace: str
    name: str
    identity: ProcessIdentity
    server: str | None


def local_proxies(state_dir: Path, namespace: str | None = None,
                  server: str | None = None) -> list[LocalProxy]:
    """Proxies with a pid file under STATE/proxies; with `server`, only those that
    joined that control plane."""
    root = state_dir / "proxies"
    found: list[LocalProxy] = []
    pattern = f"{namespace}/*/{PID_FILE}" if namespace else f"*/*/{PID_FILE}"
    for path in sorted(root.glob(pattern)):
        data = _read(path)
        identity = ProcessIdentity.from_json(data)
        joined = data.get("server") if isinstance(data.get("server"), str) else None
        if identity is None or (server is not None and joined != server):
            continue
        found.append(LocalProxy(path.parent.parent.name, path.parent.name, identity,
                                str(joined) if joined else None))
    return found


# --- the control plane's lock ----------------------------------------------------------------

def lock_holders(path: Path, proc: Path = PROC) -> list[int]:
    """Pids holding a flock on `path`, from /proc/locks (`up` flocks STATE/lock for its
    whole life, so this finds a control plane even before it wrote controlplane.json)."""
    try:
        st = path.stat()
        text = (proc / "locks").read_text()
    except OSError:
        return []
    want = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    pids: list[int] = []
    for line in text.splitlines():
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF"; blocked waiters have "->".
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK":
            continue
        if parts[5] == want and parts[4].isdigit():
            pids.append(int(parts[4]))
    return sorted(set(pids))


# --- stopping --------------------------------------------------------------------------------

@dataclass
class StopResult:
    identity: ProcessIdentity
    signalled: bool
    exited: bool
    killed: bool = False
    reason: str | None = None  # why it was not signalled


def _send(identity: ProcessIdentity, sig: int, proc: Path) -> bool:
    """Signal only if the pid still is that process (it may have exited meanwhile)."""
    if identity.start is not None and start_ticks(identity.pid, proc) != identity.start:
        return False
    try:
        os.kill(identity.pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _gone(identity: ProcessIdentity, proc: Path) -> bool:
    if not alive(identity.pid, proc):
        return True
    return identity.start is not None and start_ticks(identity.pid, proc) != identity.start


def stop_processes(targets: Sequence[ProcessIdentity], *, wait: bool = True,
                   grace: float = 15.0, proc: Path = PROC) -> list[StopResult]:
    """SIGTERM every target (already verified by the caller), then, if `wait`, wait up to
    `grace` seconds for all to exit and SIGKILL the rest. Targets are signalled together,
    so N supervisors stop in about the time of the slowest, not the sum."""
    results = [StopResult(t, _send(t, signal.SIGTERM, proc), False) for t in targets]
    if not wait:
        for r in results:
            r.exited = _gone(r.identity, proc)
        return results
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if all(_gone(r.identity, proc) for r in results):
            break
        time.sleep(0.05)
    for r in results:
        if not _gone(r.identity, proc):
            r.killed = _send(r.identity, signal.SIGKILL, proc)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and not all(_gone(r.identity, proc) for r in results):
        time.sleep(0.05)
    for r in results:
        r.exited = _gone(r.identity, proc)
    return results
