"""Which processes `delete namespace` and `down` may signal: a recorded pid must still be
the same live meshpilot process on this machine; anything else is left alone."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshpilot.cli.down_command import Target, targets_from_entries, verify
from meshpilot.proxy.pids import (
    PROXY_COMMANDS,
    ProcessIdentity,
    alive,
    current_identity,
    local_proxies,
    lock_holders,
    meshpilot_subcommand,
    read_pid_file,
    remove_pid_file,
    self_identity,
    stop_processes,
    why_not,
    write_pid_file,
)

linux = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


@pytest.mark.parametrize(("argv", "command"), [
    (["/venv/bin/python", "/venv/bin/meshpilot", "run", "sample-app-v1", "-n", "x"], "run"),
    (["python3", "-m", "meshpilot", "sidecar", "--name", "a"], "sidecar"),
    (["python3", "-m", "meshpilot.cli.main", "up"], "up"),
    (["/usr/local/bin/meshpilot", "--version"], None),
    (["python3", "-m", "http.server"], None),
    (["sleep", "30"], None),
    ([], None),
])
def test_meshpilot_command_lines(argv: list[str], command: str | None) -> None:
    assert meshpilot_subcommand(argv) == command


@pytest.fixture
def fake_run() -> Iterator[subprocess.Popen]:
    """A process whose command line reads like `meshpilot run` (argv[3] is `meshpilot`)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "meshpilot",
                             "run", "w"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


@linux
def test_a_live_meshpilot_process_verifies(fake_run: subprocess.Popen) -> None:
    identity = current_identity(fake_run.pid)
    assert identity.start is not None and identity.boot_id
    assert why_not(identity, PROXY_COMMANDS) is None


@linux
def test_a_reused_pid_is_refused(fake_run: subprocess.Popen) -> None:
    identity = current_identity(fake_run.pid)
    assert identity.start is not None
    reused = ProcessIdentity(fake_run.pid, identity.start - 1, identity.boot_id)
    assert "reused" in (why_not(reused, PROXY_COMMANDS) or "")


@linux
def test_without_a_start_time_the_registration_date_decides(fake_run) -> None:
    bare = ProcessIdentity(fake_run.pid)
    assert why_not(bare, PROXY_COMMANDS, registered_at=9e9) is None  # registered after start
    # Registered long before this process started: the pid was recycled since.
    assert "reused" in (why_not(bare, PROXY_COMMANDS, registered_at=1.0) or "")


@linux
def test_other_programs_and_commands_are_refused(sleeper, fake_run) -> None:
    assert "not a meshpilot" in (why_not(current_identity(sleeper.pid), PROXY_COMMANDS) or "")
    # A meshpilot process, but not one `down` stops through proxies (e.g. `curl`).
    assert "not a meshpilot" in (why_not(current_identity(fake_run.pid), {"up"}) or "")


@linux
def test_other_machines_and_dead_pids_are_refused(fake_run) -> None:
    identity = current_identity(fake_run.pid)
    other = ProcessIdentity(identity.pid, identity.start, "another-boot-id")
    assert "another machine" in (why_not(other, PROXY_COMMANDS) or "")
    fake_run.kill()
    fake_run.wait()
    assert why_not(identity, PROXY_COMMANDS) == "not running"


@linux
def test_stop_signals_only_verified_identities(fake_run, sleeper) -> None:
    identity = current_identity(fake_run.pid)
    stale = ProcessIdentity(sleeper.pid, (current_identity(sleeper.pid).start or 0) + 1)
    results = stop_processes([identity, stale], grace=5.0)
    fake_run.wait(5)
    assert results[0].signalled and results[0].exited and not results[0].killed
    assert not results[1].signalled  # the start time does not match: never signalled
    assert alive(sleeper.pid)


@linux
def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    stubborn = subprocess.Popen([sys.executable, "-c",
                                 "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)",
                                 "meshpilot", "sidecar"], stdout=subprocess.PIPE)
    try:
        assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"
        (result,) = stop_processes([current_identity(stubborn.pid)], grace=0.3)
        assert result.killed and result.exited
    finally:
        stubborn.kill()
        stubborn.wait()


def test_pid_files_round_trip_and_filter_by_server(tmp_path: Path) -> None:
    me = self_identity()
    a = tmp_path / "proxies" / "traffic-demo" / "sample-app-v1-1"
    b = tmp_path / "proxies" / "istio-system" / "istio-ingressgateway"
    write_pid_file(a, me, "run", "http://127.0.0.1:15014")
    write_pid_file(b, me, "gateway", "http://127.0.0.1:25014")
    assert read_pid_file(a / "supervisor.pid") == me
    found = local_proxies(tmp_path, server="http://127.0.0.1:15014")
    assert [(p.namespace, p.name) for p in found] == [("traffic-demo", "sample-app-v1-1")]
    assert [p.name for p in local_proxies(tmp_path, "istio-system")] == ["istio-ingressgateway"]
    remove_pid_file(a, ProcessIdentity(me.pid + 1))  # not ours: stays
    assert (a / "supervisor.pid").exists()
    remove_pid_file(a, me)
    assert not (a / "supervisor.pid").exists()


@linux
def test_lock_holders_find_the_flock_owner(tmp_path: Path) -> None:
    path = tmp_path / "lock"
    with path.open("a+") as f:
        assert lock_holders(path) == []
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert lock_holders(path) == [os.getpid()]
    assert lock_holders(path) == []


def entry(name: str, pid: int, *, start: int | None = None, boot: str | None = None,
          created: str = "2026-01-01T00:00:00Z") -> dict:
    notes = {"meshpilot.io/pid": str(pid)}
    if start is not None:
        notes["meshpilot.io/pid-start"] = str(start)
    if boot is not None:
        notes["meshpilot.io/boot-id"] = boot
    return {"metadata": {"name": name, "namespace": "traffic-demo", "annotations": notes,
                         "creationTimestamp": created}}


def test_entries_group_replicas_by_supervisor() -> None:
    targets: dict[int, Target] = {}
    targets_from_entries([entry("sample-app-v1-1", 10, start=5), entry("sample-app-v1-2", 10),
                          entry("sample-app-v2-1", 11), {"metadata": {"name": "manual"}}],
                         targets)
    assert sorted(targets) == [10, 11]
    assert targets[10].proxies == ["sample-app-v1-1.traffic-demo",
                                   "sample-app-v1-2.traffic-demo"]
    assert targets[10].identity.start == 5


@linux
def test_verify_skips_dead_and_reports_foreign(fake_run) -> None:
    identity = current_identity(fake_run.pid)
    targets: dict[int, Target] = {}
    targets_from_entries([entry("a", identity.pid, start=identity.start,
                                boot=identity.boot_id),
                          entry("b", 2**22 + 7),  # no such process: nothing to do
                          entry("c", os.getpid(), boot="elsewhere")], targets)
    ok, skipped = verify(targets)
    assert [t.identity.pid for t in ok] == [identity.pid]
    assert [(t.identity.pid, "another machine" in why) for t, why in skipped] == [
        (os.getpid(), True)]


class FakeClient:
    """Lists per kind from a dict; a batch delete can fail once with a given status."""

    def __init__(self, items: dict[str, list[dict]], fail_first: int | None = None) -> None:
        self.items = items
        self.fail_first = fail_first
        self.gets: list[str] = []
        self.posts: list[dict] = []

    def get(self, path: str) -> dict:
        self.gets.append(path)
        return {"items": self.items.get(path, [])}

    def post(self, path: str, body: dict) -> dict:
        from meshpilot.cli.client import ApiError

        self.posts.append(body)
        if self.fail_first is not None:
            code, self.fail_first = self.fail_first, None
            raise ApiError(code, {"message": "gone meanwhile"})
        return {"results": [{"name": o["metadata"]["name"]} for o in body["objects"]]}


def test_namespace_delete_covers_every_registered_kind_atomically() -> None:
    from meshpilot.api.kinds import KINDS
    from meshpilot.cli.down_command import _delete_objects

    vs = next(k for k in KINDS if k.kind == "VirtualService")
    client = FakeClient({vs.collection_path(namespace="ns"): [
        {"metadata": {"name": "r", "namespace": "ns"}, "spec": {"hosts": ["a"]}}]},
        fail_first=404)
    assert _delete_objects(client, "ns") == 1  # type: ignore[arg-type]
    # Every namespaced kind of the registry was listed (kinds added later included).
    wanted = {k.collection_path(namespace="ns") for k in KINDS if k.namespaced}
    assert wanted <= set(client.gets)
    # One request per attempt with all objects (the server deletes them in one
    # transaction); the first failed because an object vanished, so it re-listed.
    assert len(client.posts) == 2
    body = client.posts[-1]
    assert body["ignoreNotFound"] is True and body["namespace"] == "ns"
    assert [o["kind"] for o in body["objects"]] == ["VirtualService"]
