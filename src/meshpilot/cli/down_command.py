"""`meshpilot down` and `meshpilot delete namespace NS`: stopping what runs on this machine.

kubectl's `delete namespace` removes a namespace's objects and its pods; `down` is the
standalone counterpart of tearing the cluster down. Both find the processes to stop
through what the proxies left behind: the `meshpilot.io/pid` annotation (plus
`pid-start` and `boot-id`) of their WorkloadEntries, and the supervisor pid files under
STATE/proxies/NS/NAME (which outlive a WorkloadEntry, e.g. while `meshpilot run`
waits to restart a replica, or when the control plane is already gone). Every pid is
checked before it is signalled (proxy/pids.py): on this machine, still the same
process, and a meshpilot command. Supervisors get SIGTERM, so they deregister and stop
their Envoy and app in order; SIGKILL only after the grace period.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api.kinds import KINDS
from ..proxy.pids import (
    CONTROL_PLANE_COMMANDS,
    PROXY_COMMANDS,
    ProcessIdentity,
    alive,
    cmdline,
    current_identity,
    local_proxies,
    lock_holders,
    meshpilot_subcommand,
    parse_rfc3339,
    stop_processes,
    why_not,
)
from .client import ApiError, Client, server_url

MESHPILOT_API = "/apis/meshpilot.io/v1"
WE_LIST = "/apis/networking.istio.io/v1/workloadentries"
NOTE = "meshpilot.io/"
INFO_FILE = "controlplane.json"  # written by `up` (controlplane/server.py)
LOCK_FILE = "lock"
NAMESPACE_WORDS = ("namespace", "namespaces", "ns")
DELETE_RETRIES = 3


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _wait_options(p: argparse.ArgumentParser, what: str) -> None:
    # kubectl spells it --wait=false; "--wait=false" is registered as an option string of
    # its own, so `--wait NS` never reads NS as the flag's value.
    p.add_argument("--wait", "--wait=true", dest="wait", action="store_true", default=True,
                   help=f"wait until {what} exited, SIGKILL after --timeout (the default; "
                        "--wait=false or --no-wait only sends SIGTERM)")
    p.add_argument("--no-wait", "--wait=false", dest="wait", action="store_false",
                   help=argparse.SUPPRESS)
    p.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS",
                   help="how long processes get to stop after SIGTERM (default 15)")
    p.add_argument("--state", metavar="DIR",
                   help="state directory whose proxies to look for (default: "
                        "$MESHPILOT_STATE or ~/.meshpilot)")


def add_namespace_delete_options(delete: argparse.ArgumentParser) -> None:
    """The options `delete namespace NS` adds to `delete` (its parser lives in main.py)."""
    _wait_options(delete, "the namespace's processes have")


def add_down_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "down", help="stop the control plane and every proxy and workload on this machine",
        description="Stop every proxy and `meshpilot run` workload registered with the "
                    "control plane of STATE (and any whose pid file is under STATE), then "
                    "the control plane itself. Safe to run again: it then stops nothing.")
    _wait_options(p, "everything has")
    p.add_argument("--server", metavar="URL",
                   help="control plane API (default: the one STATE's control plane "
                        "recorded, else $MESHPILOT_SERVER or http://127.0.0.1:15014)")
    p.set_defaults(func=down)


# --- what to stop ------------------------------------------------------------------------------

@dataclass
class Target:
    """One supervisor process and the proxies it runs."""

    identity: ProcessIdentity
    proxies: list[str] = field(default_factory=list)  # NAME.NAMESPACE
    registered_at: float | None = None
    children: list[dict[str, str]] = field(default_factory=list)  # annotations per proxy

    def describe(self) -> str:
        argv = cmdline(self.identity.pid) or []
        command = meshpilot_subcommand(argv)
        what = f"meshpilot {command}" if command else "process"
        names = ", ".join(sorted(set(self.proxies)))
        return f"{what} (pid {self.identity.pid}){': ' + names if names else ''}"


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def targets_from_entries(entries: list[dict[str, Any]], into: dict[int, Target]) -> None:
    for we in entries:
        meta = we.get("metadata") or {}
        notes = meta.get("annotations") or {}
        pid = _int(notes.get(NOTE + "pid"))
        if pid is None:
            continue  # not registered by a meshpilot proxy (a hand-written WorkloadEntry)
        identity = ProcessIdentity(pid, _int(notes.get(NOTE + "pid-start")),
                                   notes.get(NOTE + "boot-id") or None)
        target = into.setdefault(pid, Target(identity))
        if target.identity.start is None and identity.start is not None:
            target.identity = identity
        target.proxies.append(f"{meta.get('name')}.{meta.get('namespace')}")
        created = parse_rfc3339(meta.get("creationTimestamp"))
        if created is not None:
            target.registered_at = max(target.registered_at or created, created)
        target.children.append(notes)


def targets_from_pid_files(state_dirs: list[Path], namespace: str | None, server: str,
                           into: dict[int, Target]) -> None:
    for state in state_dirs:
        for proxy in local_proxies(state, namespace, server):
            target = into.setdefault(proxy.identity.pid, Target(proxy.identity))
            if target.identity.start is None:
                target.identity = proxy.identity
            target.proxies.append(f"{proxy.name}.{proxy.namespace}")


def default_state_dir() -> Path:
    """`up`'s and the proxies' rule ($MESHPILOT_STATE, else ~/.meshpilot)."""
    from ..proxy.supervisor import default_state_dir as state_dir

    return state_dir()


def _state_dirs(args: argparse.Namespace) -> list[Path]:
    dirs = [Path(args.state)] if getattr(args, "state", None) else []
    default = default_state_dir()
    return [*dirs, default] if default not in dirs else dirs


def verify(targets: dict[int, Target]) -> tuple[list[Target], list[tuple[Target, str]]]:
    """Split targets into those safe to signal and those left alone (with the reason).
    A target that is simply not running any more is neither: there is nothing to do."""
    ok: list[Target] = []
    skipped: list[tuple[Target, str]] = []
    for target in targets.values():
        if not alive(target.identity.pid) and target.identity.boot_id in (None, _boot()):
            continue
        reason = why_not(target.identity, PROXY_COMMANDS, registered_at=target.registered_at)
        if reason is None:
            ok.append(target)
        elif reason != "not running":
            skipped.append((target, reason))
    return ok, skipped


def _boot() -> str | None:
    from ..proxy.pids import boot_id

    return boot_id()


def _child_is_ours(pid: int, notes: dict[str, str], what: str) -> bool:
    """An Envoy or app pid from annotations, checked before a last-resort SIGKILL:
    Envoy's command line names this proxy's bootstrap file; the app's environment
    names this proxy (MESHPILOT_NAME/NAMESPACE, set by the sidecar)."""
    if what == "envoy":
        bootstrap = notes.get(NOTE + "bootstrap")
        return bool(bootstrap) and bootstrap in (cmdline(pid) or [])
    try:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False
    name = notes.get(NOTE + "workload")  # any replica of the workload is fine
    return any(e.startswith(b"MESHPILOT_NAME=") for e in environ) and (
        name is None or any(e.startswith(f"MESHPILOT_NAME={name}".encode()) for e in environ))


def _reap_children(targets: list[Target]) -> None:
    """After a SIGKILLed supervisor, its Envoy and app got SIGTERM from the kernel
    (PR_SET_PDEATHSIG); any that ignored it is killed here, with its process group."""
    for target in targets:
        for notes in target.children:
            for what in ("envoy", "app"):
                pid = _int(notes.get(NOTE + f"{what}-pid"))
                if pid is not None and alive(pid) and _child_is_ours(pid, notes, what):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)


def stop_targets(targets: dict[int, Target], *, wait: bool, grace: float,
                 verb: str = "stopped") -> list[str]:
    """Stop verified targets; returns lines saying what was done (and what was not)."""
    ok, skipped = verify(targets)
    lines = [f"left running: {t.describe()}: {why}" for t, why in skipped]
    described = {t.identity.pid: t.describe() for t in ok}  # before they exit
    results = stop_processes([t.identity for t in ok], wait=wait, grace=grace)
    killed = [t for t, r in zip(ok, results, strict=True) if r.killed]
    if killed:
        time.sleep(0.2)
        _reap_children(killed)
    for target, result in zip(ok, results, strict=True):
        text = described[target.identity.pid]
        if not result.signalled:
            continue  # exited between the check and the signal
        if result.killed:
            lines.append(f"killed {text} (did not stop within {grace:g}s of SIGTERM)")
        elif wait and not result.exited:
            lines.append(f"still running: {text}")
        else:
            lines.append(f"{verb if wait else 'signalled'} {text}")
    return lines


# --- delete namespace --------------------------------------------------------------------------

def _namespace_objects(client: Client, namespace: str) -> list[dict[str, Any]]:
    """Every stored object of the namespace, of every kind the registry knows (so kinds
    added later, like Canary, are covered without touching this code)."""
    objects: list[dict[str, Any]] = []
    for info in KINDS:
        if not info.namespaced:
            continue
        listing = client.get(info.collection_path(namespace=namespace)) or {}
        for item in listing.get("items") or []:
            item = dict(item)
            item.setdefault("apiVersion", info.preferred_api_version)
            item.setdefault("kind", info.kind)
            objects.append(item)
    return objects


def _delete_objects(client: Client, namespace: str) -> int:
    """Delete every object of the namespace in one transaction (the batch delete is
    atomic); re-list and retry when one vanished meanwhile (a stopping proxy removing
    its own WorkloadEntry). Returns how many were deleted."""
    for attempt in range(DELETE_RETRIES):
        objects = _namespace_objects(client, namespace)
        if not objects:
            return 0
        try:
            report = client.post(f"{MESHPILOT_API}/delete", {
                "objects": objects, "namespace": namespace, "ignoreNotFound": True,
                "source": f"delete namespace {namespace}"})
            return len(report.get("results") or [])
        except ApiError as e:
            if e.code in (404, 409) and attempt + 1 < DELETE_RETRIES:
                time.sleep(0.1)
                continue
            if e.code in (400, 422):
                return _delete_one_by_one(client, objects, e)
            raise
    return 0


def _delete_one_by_one(client: Client, objects: list[dict[str, Any]], cause: ApiError) -> int:
    """Objects stored before a validation rule tightened fail the batch delete's
    re-validation; they are still the namespace's, so delete them by name."""
    _err(f"warning: the atomic delete was refused ({cause}); deleting one by one")
    count = 0
    by_kind = {info.kind: info for info in KINDS}
    for obj in objects:
        info = by_kind.get(str(obj.get("kind")))
        meta = obj.get("metadata") or {}
        if info is None:
            continue
        try:
            client.delete(f"{info.collection_path(namespace=meta.get('namespace'))}/"
                          f"{meta.get('name')}")
            count += 1
        except ApiError as e:
            if e.code != 404:
                raise
    return count


def delete_namespaces(args: argparse.Namespace) -> int:
    """`delete namespace NS...`: stop the namespace's processes, then delete its objects."""
    if not args.names:
        _err("error: give the namespace to delete, e.g. delete namespace traffic-demo")
        return 1
    client = Client(args.server)
    code = 0
    for namespace in args.names:
        try:
            code = max(code, _delete_namespace(client, namespace, args))
        except ApiError as e:
            _err(f"error: {e}" if e.code == 0 else f"Error from server ({e.reason or e.code}): {e}")
            code = 1
    return code


def _delete_namespace(client: Client, namespace: str, args: argparse.Namespace) -> int:
    targets: dict[int, Target] = {}
    entries = (client.get(f"/apis/networking.istio.io/v1/namespaces/{namespace}/workloadentries")
               or {}).get("items") or []
    targets_from_entries(entries, targets)
    targets_from_pid_files(_state_dirs(args), namespace, client.server, targets)
    lines = stop_targets(targets, wait=args.wait, grace=args.timeout)
    for line in lines:
        print(line, flush=True)
    deleted = _delete_objects(client, namespace)
    if not deleted and not lines:
        if args.ignore_not_found:
            return 0
        _err(f'Error from server (NotFound): namespaces "{namespace}" not found')
        return 1
    if args.wait:
        left = _namespace_objects(client, namespace)
        if left:
            names = ", ".join(f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}"
                              for o in left)
            _err(f"error: namespace {namespace} still has objects: {names} (a process on "
                 "another machine may have registered them again)")
            return 1
    print(f'namespace "{namespace}" deleted ({deleted} object{"s" if deleted != 1 else ""})',
          flush=True)
    return 0


# --- down --------------------------------------------------------------------------------------

def _control_plane_info(state: Path) -> dict[str, Any]:
    try:
        data = json.loads((state / INFO_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def control_plane_pids(state: Path) -> list[int]:
    """The `up` process(es) holding STATE/lock; the info file's pid if /proc/locks is
    unavailable. Only pids that are a live `meshpilot up` are returned."""
    candidates = lock_holders(state / LOCK_FILE)
    info_pid = _control_plane_info(state).get("pid")
    if not candidates and isinstance(info_pid, int):
        candidates = [info_pid]
    return [pid for pid in candidates
            if why_not(current_identity(pid), CONTROL_PLANE_COMMANDS) is None]


def down(args: argparse.Namespace) -> int:
    state = Path(args.state) if args.state else default_state_dir()
    cp_pids = control_plane_pids(state)
    server = args.server or _control_plane_info(state).get("api") or None
    targets: dict[int, Target] = {}
    if cp_pids:
        try:
            entries = (Client(server, timeout=10.0).get(WE_LIST) or {}).get("items") or []
            targets_from_entries(entries, targets)
        except ApiError as e:
            _err(f"warning: cannot list proxies from the control plane ({e}); stopping those "
                 f"with pid files under {state}")
    targets_from_pid_files(_state_dirs(args), None, server_url(server), targets)
    lines = stop_targets(targets, wait=args.wait, grace=args.timeout)
    for line in lines:
        print(line, flush=True)
    cp_targets = {pid: Target(current_identity(pid)) for pid in cp_pids}
    results = stop_processes([t.identity for t in cp_targets.values()], wait=args.wait,
                             grace=args.timeout)
    for result in results:
        if not result.signalled:
            continue
        how = ("killed" if result.killed else "stopped" if result.exited or not args.wait
               else "could not stop")
        if not args.wait:
            how = "signalled"
        print(f"{how} control plane (pid {result.identity.pid}, state {state})", flush=True)
    if not lines and not any(r.signalled for r in results):
        print(f"nothing to stop: no control plane runs with state {state}, and no proxy of it "
              "runs on this machine", flush=True)
    return 0
