"""The lifecycle shared by sidecars, gateways and `meshpilot run`: bootstrap, start,
register, watch, clean up.

`ProxyInstance` is one proxy (Envoy and, for a sidecar, its app) from start to stop;
`run_proxy` supervises one instance (`meshpilot sidecar`, `gateway`) and `proxy/run.py`
supervises N of them, restarting each like a ReplicaSet. One synchronous loop, no
threads: signals only set a flag, so cleanup (deregister, then stop the app, then Envoy)
always runs on the main thread, in order, exactly once.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from ..cli.client import Client
from ..xds.types import ProxyInfo
from .bootstrap import build_bootstrap, write_bootstrap
from .envoy import EnvoyNotFound, find_envoy
from .pids import ProcessIdentity, remove_pid_file, self_identity, write_pid_file
from .process import Child, EnvoyProcess, exit_code
from .registration import (
    ANNOTATION_PREFIX,
    RegistrationError,
    XdsTarget,
    deregister,
    register,
    workload_entry,
    xds_target,
)

POLL_INTERVAL = 0.05


def default_state_dir() -> Path:
    """Same rule as the control plane (`$MESHPILOT_STATE` or ~/.meshpilot), without
    importing it: a proxy should start fast and need no server-side modules."""
    return Path(os.environ.get("MESHPILOT_STATE") or Path.home() / ".meshpilot")


def parse_labels(text: str | None) -> dict[str, str]:
    """`app=sample-app,version=v1` -> dict, with a clear error for bad syntax."""
    labels: dict[str, str] = {}
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"bad label {part!r}: want KEY=VALUE (e.g. app=sample-app)")
        labels[key.strip()] = value.strip()
    return labels


def identity_annotations(info: ProxyInfo) -> dict[str, str]:
    """WorkloadEntry annotations for the workload name and access-log encoding, so
    diagnostics (`meshpilot logs`, `describe`) can tell without reading the bootstrap."""
    return {ANNOTATION_PREFIX + "workload": info.workload,
            ANNOTATION_PREFIX + "access-log-encoding": info.access_log_encoding}


@dataclass
class ProxyRun:
    """Everything one supervised proxy needs. `app_argv` empty: no app (gateways)."""

    info: ProxyInfo
    admin_port: int
    state_dir: Path
    server: str | None = None
    envoy: str | None = None
    concurrency: int = 1
    log_level: str = "info"
    xds_address: str | None = None
    ready_timeout: float = 30.0
    we_ports: Mapping[str, int] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    service_account: str | None = None
    app_argv: Sequence[str] = ()
    app_env: Mapping[str, str] = field(default_factory=dict)
    # False: no WorkloadEntry at all (a short-lived client such as `meshpilot curl`'s).
    register: bool = True
    # True: register only once Envoy is ready and the app accepts connections, like a
    # Kubernetes readiness probe, so no request reaches an instance still starting
    # (`meshpilot run`). False: at once, as `meshpilot sidecar` always has.
    register_when_ready: bool = False

    @property
    def directory(self) -> Path:
        return self.state_dir / "proxies" / self.info.namespace / self.info.name


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class StopFlag:
    """Signal handlers that only record the signal; the loop notices within POLL_INTERVAL."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def __enter__(self) -> StopFlag:
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Shared:
    """What every instance of one command shares: Envoy, the API client, the xDS address."""

    binary: str
    client: Client
    target: XdsTarget


class StartError(RuntimeError):
    """No proxy can start: no Envoy binary, or the control plane cannot be used."""


def prepare(envoy: str | None, server: str | None, xds_address: str | None) -> Shared:
    """Find Envoy and ask the control plane where xDS is, once per command: a failure
    here means no instance could start, so commands exit instead of retrying."""
    try:
        binary = str(find_envoy(envoy))
    except EnvoyNotFound as e:
        raise StartError(str(e)) from None
    client = Client(server, timeout=10.0)
    try:
        target = xds_target(client, xds_address)
    except (RegistrationError, ValueError) as e:
        raise StartError(str(e)) from None
    return Shared(binary, client, target)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass(frozen=True)
class Exit:
    """Which child of an instance exited, and its shell-style code."""

    what: str  # "app" | "envoy"
    code: int


class ProxyInstance:
    """One proxy from start to stop: Envoy, its app (if any) and its WorkloadEntry.

    Not restartable: a supervisor that restarts makes a new instance with the same run
    (same ports, so the WorkloadEntry comes back unchanged but for the pids)."""

    def __init__(self, run: ProxyRun, shared: Shared, owner: ProcessIdentity | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.run = run
        self.log = log or _err  # `meshpilot curl` keeps its client sidecar quiet
        self.shared = shared
        self.owner = owner or self_identity()
        info = run.info
        self.workdir = run.directory
        self.envoy_log = self.workdir / "envoy.log"
        self.access_log = self.workdir / "access.log"
        self.bootstrap = self.workdir / "bootstrap.json"
        self.envoy: EnvoyProcess | None = None
        self.app: Child | None = None
        self.registered = False
        self.envoy_ready = False
        self.started_at = time.monotonic()
        self.label = f"{info.kind} {info.id}"

    def start(self) -> None:
        """Write the bootstrap, start Envoy and the app, register (unless deferred).
        Raises RegistrationError; the caller stops the instance in any case."""
        run, info, target = self.run, self.run.info, self.shared.target
        self.workdir.mkdir(parents=True, exist_ok=True)
        write_bootstrap(self.bootstrap, build_bootstrap(
            info, xds_host=target.host, xds_port=target.port, admin_port=run.admin_port,
            token=target.token, access_log_path=str(self.access_log)))
        self.started_at = time.monotonic()
        self.envoy = EnvoyProcess(self.bootstrap, admin_port=run.admin_port,
                                  log_path=self.envoy_log, binary=self.shared.binary,
                                  concurrency=run.concurrency, log_level=run.log_level)
        self.envoy.start()
        self.log(f"{self.label}: envoy pid {self.envoy.pid}, admin {self.envoy.admin_url}, "
             f"xDS {target} ({info.xds_mode}), log {self.envoy_log}")
        if run.app_argv:
            self.app = Child(run.app_argv, log_path=self.workdir / "app.log",
                             env={**os.environ, **run.app_env})
            self.app.start()
            self.log(f"{self.label}: app pid {self.app.pid}: {' '.join(self.app.argv)} "
                 f"(log {self.app.log_path})")
        if run.register and not run.register_when_ready:
            self.register()

    def annotations(self) -> dict[str, str]:
        run, info = self.run, self.run.info
        assert self.envoy is not None
        notes = {
            **run.annotations,
            ANNOTATION_PREFIX + "admin-port": str(run.admin_port),
            ANNOTATION_PREFIX + "envoy-log": str(self.envoy_log),
            # Where to grep requests (Istio's access log format): tests and diagnostics.
            ANNOTATION_PREFIX + "access-log": str(self.access_log),
            ANNOTATION_PREFIX + "bootstrap": str(self.bootstrap),
            ANNOTATION_PREFIX + "proxy-type": info.kind,
            ANNOTATION_PREFIX + "xds-mode": info.xds_mode,
            # The supervisor, named so that `delete namespace` and `down` can stop it and
            # never a process that merely reuses its pid (see proxy/pids.py).
            ANNOTATION_PREFIX + "pid": str(self.owner.pid),
            ANNOTATION_PREFIX + "envoy-pid": str(self.envoy.pid),
        }
        if self.owner.start is not None:
            notes[ANNOTATION_PREFIX + "pid-start"] = str(self.owner.start)
        if self.owner.boot_id is not None:
            notes[ANNOTATION_PREFIX + "boot-id"] = self.owner.boot_id
        if self.app is not None:
            notes[ANNOTATION_PREFIX + "app-pid"] = str(self.app.pid)
            notes[ANNOTATION_PREFIX + "app-log"] = str(self.app.log_path)
        return notes

    def register(self) -> None:
        run, info = self.run, self.run.info
        register(self.shared.client, workload_entry(
            info.name, info.namespace, address=info.address, ports=dict(run.we_ports),
            labels=dict(info.labels), annotations=self.annotations(),
            service_account=run.service_account))
        self.registered = True

    def poll(self) -> Exit | None:
        """The first child found exited (the app is checked first: its code matters)."""
        if self.app is not None and (code := self.app.poll()) is not None:
            return Exit("app", exit_code(code))
        if self.envoy is not None and (code := self.envoy.poll()) is not None:
            return Exit("envoy", exit_code(code))
        return None

    def app_ready(self) -> bool:
        port = self.run.info.app_port
        return self.app is None or port is None or _port_open(port)

    def ready(self) -> bool:
        """Envoy has its config (admin /ready LIVE) and, when registration waits for it,
        the app accepts connections. Cheap once true."""
        if not self.envoy_ready:
            self.envoy_ready = self.envoy is not None and self.envoy.is_ready()
        if not self.envoy_ready:
            return False
        if self.run.register_when_ready and self.run.register and not self.registered:
            return self.app_ready()
        return True

    def deregister(self) -> None:
        info = self.run.info
        if self.registered:
            self.registered = False
            if not deregister(self.shared.client, info.namespace, info.name, self.owner.pid):
                self.log(f"warning: could not delete WorkloadEntry {info.namespace}/{info.name} "
                     f"(control plane gone, or taken over by another proxy)")

    def stop(self, grace: float = 5.0) -> int | None:
        """Deregister first (traffic moves away), then stop the app, then Envoy. Returns
        the app's return code (None without an app). Idempotent."""
        self.deregister()
        code = self.app.stop(grace=grace) if self.app is not None else None
        if self.envoy is not None:
            self.envoy.stop(grace=grace)
        return code


def run_proxy(run: ProxyRun, ready_line: Callable[[], str]) -> int:
    """Run until a signal or until Envoy or the app exits. Exit code: the app's, or
    Envoy's if Envoy died first; 1 when the control plane cannot be used at start."""
    try:
        shared = prepare(run.envoy, run.server, run.xds_address)
    except StartError as e:
        _err(f"error: {e}")
        return 1
    owner = self_identity()
    instance = ProxyInstance(run, shared, owner)
    with StopFlag() as stop:
        try:
            write_pid_file(run.directory, owner, run.info.kind, shared.client.server)
            instance.start()
            return _supervise(instance, stop, ready_line)
        except RegistrationError as e:
            _err(f"error: {e}")
            return 1
        finally:
            instance.stop(grace=5.0)
            remove_pid_file(run.directory, owner)


def _supervise(instance: ProxyInstance, stop: StopFlag, ready_line: Callable[[], str]) -> int:
    run, label = instance.run, instance.label
    ready = warned = False
    while True:
        if stop.signum is not None:
            _err(f"{label}: {signal.Signals(stop.signum).name}, stopping")
            code = instance.stop(grace=5.0)
            return 0 if instance.app is None else exit_code(code)
        if (ended := instance.poll()) is not None:
            if ended.what == "app":
                _err(f"{label}: app exited with code {ended.code}, stopping envoy")
                return ended.code
            assert instance.envoy is not None
            _err(f"{label}: envoy exited with code {ended.code}; last log lines "
                 f"({instance.envoy_log}):\n{instance.envoy.log_tail(10)}")
            return ended.code or 1
        if not ready:
            if instance.ready():
                ready = True
                if run.register and not instance.registered:
                    instance.register()
                print(ready_line(), flush=True)
            elif not warned and time.monotonic() - instance.started_at > run.ready_timeout:
                warned = True
                _err(f"warning: {label}: envoy not ready after "
                     f"{run.ready_timeout:g}s: no listeners/clusters from the control plane yet "
                     f"(still waiting; see {instance.envoy_log})")
        time.sleep(POLL_INTERVAL)
