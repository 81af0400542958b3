"""`meshpilot run`: a Deployment without Kubernetes. N replicas of an app, each behind its
own sidecar, supervised together by one process.

Each replica is a `ProxyInstance` (proxy/supervisor.py, the code `meshpilot sidecar`
runs) named NAME-1..NAME-N, all of workload NAME, so metrics say
`destination_workload="NAME"` as Istio's do for a Deployment's pods. A replica
registers its WorkloadEntry only once Envoy has its config and the app accepts
connections (a readiness probe), and deregisters before it stops. If the app or Envoy
of a replica exits, for any reason and with any code, the replica is replaced after a
backoff that doubles per consecutive failure (1 s up to 30 s; a replica that ran a
minute starts over at 1 s): ReplicaSet semantics with CrashLoopBackOff, minus the 5
minutes. Ctrl-C or SIGTERM deregisters every replica first (traffic moves away from
all of them), then stops the apps and Envoys; the exit code is then 0.

One process for all replicas keeps `meshpilot.io/pid` meaningful: stopping that pid
(as `delete namespace` and `down` do) stops the whole workload, where separate
sidecars under a restarting parent would be restarted right after being stopped.
"""

from __future__ import annotations

import dataclasses
import shutil
import signal
import socket
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..xds.types import AccessLogEncoding, AppProtocol, XdsMode
from .pids import ProcessIdentity, remove_pid_file, self_identity, write_pid_file
from .ports import free_port, port_is_free
from .registration import RegistrationError
from .sidecar import SidecarOptions, sidecar_run
from .supervisor import (
    POLL_INTERVAL,
    ProxyInstance,
    ProxyRun,
    Shared,
    StartError,
    StopFlag,
    default_state_dir,
    prepare,
)

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
BACKOFF_RESET_AFTER = 60.0  # a replica that ran this long without failing starts over
REGISTER_RETRY = 2.0  # the control plane refused or was away: try again this often
PORT_PLACEHOLDER = "{port}"
NAME_PLACEHOLDER = "{name}"


@dataclass
class RunSpec:
    """What `meshpilot run` was asked for (the Deployment's spec, in effect)."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    replicas: int = 1
    command: Sequence[str] = ()  # empty: `meshpilot demo-app` for the labels' version
    app_port: int | None = None  # replica i listens on app_port + i - 1; None: free ports
    port_env: Sequence[str] = ()  # more variables that carry the app port (e.g. PORT)
    env: Mapping[str, str] = field(default_factory=dict)
    state_dir: Path | None = None
    server: str | None = None
    xds_mode: XdsMode = "delta"
    xds_address: str | None = None
    envoy: str | None = None
    concurrency: int = 1
    log_level: str = "info"
    ready_timeout: float = 30.0
    app_protocol: AppProtocol = "http"
    access_log_encoding: AccessLogEncoding = "TEXT"
    service_account: str | None = None

    def replica_name(self, index: int) -> str:
        return f"{self.name}-{index}"


def default_command(labels: Mapping[str, str]) -> list[str]:
    """The seed's nginx image, standalone: the demo app answering as the labels' version
    of the labels' app (`sample-app` v1 when the labels say nothing)."""
    return [sys.executable, "-m", "meshpilot", "demo-app",
            "--version", labels.get("version", "v1"),
            "--service", labels.get("app", "sample-app")]


def app_argv(spec: RunSpec, name: str, port: int) -> list[str]:
    """The replica's command, `{port}` and `{name}` replaced (for apps that take their
    port as an argument rather than from $MESHPILOT_APP_PORT)."""
    command = list(spec.command) or default_command(spec.labels)
    return [a.replace(PORT_PLACEHOLDER, str(port)).replace(NAME_PLACEHOLDER, name)
            for a in command]


def app_ports(spec: RunSpec) -> list[int]:
    """One app port per replica: consecutive from --app-port, else free ports."""
    if spec.app_port is None:
        return [free_port() for _ in range(spec.replicas)]
    ports = [spec.app_port + i for i in range(spec.replicas)]
    if ports[-1] > 65535:
        raise ValueError(f"--app-port {spec.app_port} with {spec.replicas} replicas runs past "
                         "65535")
    busy = [p for p in ports if not port_is_free(p)]
    if busy:
        raise ValueError(f"app port{'s' if len(busy) > 1 else ''} "
                         f"{', '.join(map(str, busy))} already in use")
    return ports


def replica_run(spec: RunSpec, index: int, app_port: int) -> ProxyRun:
    """The sidecar run of replica `index` (1-based): `meshpilot sidecar`'s, plus the
    workload name, the replica's command and environment, and registration on ready."""
    name = spec.replica_name(index)
    opts = SidecarOptions(
        name=name, namespace=spec.namespace, app_port=app_port, labels=dict(spec.labels),
        # A free outbound port, never 15001: that one stays for the user's own client.
        outbound_port=free_port(), xds_mode=spec.xds_mode, xds_address=spec.xds_address,
        envoy=spec.envoy, state_dir=spec.state_dir or default_state_dir(),
        server=spec.server, concurrency=spec.concurrency, log_level=spec.log_level,
        ready_timeout=spec.ready_timeout, command=app_argv(spec, name, app_port),
        app_protocol=spec.app_protocol, access_log_encoding=spec.access_log_encoding,
        service_account=spec.service_account, workload=spec.name)
    run = sidecar_run(opts)
    env = {**run.app_env, **spec.env, **{var: str(app_port) for var in spec.port_env}}
    return dataclasses.replace(run, app_env=env, register_when_ready=True)


def _bindable(port: int) -> bool:
    """Whether a server could listen on `port` now. SO_REUSEADDR, as servers set it: the
    replica's own connections just closed linger in TIME_WAIT and must not count."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Replica:
    """One replica slot: the current instance (None while waiting to restart) and its
    failure history, which sets the backoff."""

    def __init__(self, index: int, run: ProxyRun, shared: Shared, owner: ProcessIdentity,
                 rebuild: Callable[[], ProxyRun] | None = None) -> None:
        self.index = index
        self.run = run
        self.rebuild = rebuild
        self.shared = shared
        self.owner = owner
        self.instance: ProxyInstance | None = None
        self.restarts = 0
        self.failures = 0
        self.next_start = 0.0
        self.next_register = 0.0
        self.ready = False
        self.warned = False
        self.register_failed = False

    @property
    def id(self) -> str:
        return self.run.info.id

    def ready_line(self) -> str:
        info, inst = self.run.info, self.instance
        app_pid = inst.app.pid if inst is not None and inst.app is not None else "?"
        again = f" (restart {self.restarts})" if self.restarts else ""
        return (f"{info.id} ready{again}: app :{info.app_port} (pid {app_pid}) behind sidecar "
                f"inbound {info.address}:{info.inbound_port}, outbound proxy "
                f"http://127.0.0.1:{info.outbound_port}, admin http://127.0.0.1:"
                f"{self.run.admin_port}")

    def _ports_taken(self) -> list[int]:
        """Ports of this replica another process took while it was down (free ports are
        picked per process, so two commands can pick the same one)."""
        info = self.run.info
        ports = (info.app_port, info.inbound_port, info.outbound_port, self.run.admin_port)
        return [p for p in ports if p is not None and not _bindable(p)]

    def start(self, now: float) -> None:
        if self.restarts and self.rebuild is not None and (taken := self._ports_taken()):
            self.run = self.rebuild()
            _err(f"replica {self.id}: port{'s' if len(taken) > 1 else ''} "
                 f"{', '.join(map(str, taken))} taken meanwhile; new ports")
        self.instance = ProxyInstance(self.run, self.shared, self.owner)
        self.ready = self.warned = False
        self.next_register = 0.0
        try:
            self.instance.start()
        except (OSError, RegistrationError) as e:
            self.fail(now, f"cannot start: {e}")

    def fail(self, now: float, why: str) -> None:
        """Stop what is left of the instance and schedule its replacement."""
        ran = now - self.instance.started_at if self.instance is not None else 0.0
        if self.instance is not None:
            self.instance.stop(grace=5.0)
            self.instance = None
        self.failures = 1 if ran >= BACKOFF_RESET_AFTER else self.failures + 1
        delay = min(BACKOFF_FIRST * 2 ** (self.failures - 1), BACKOFF_MAX)
        self.restarts += 1
        self.next_start = now + delay
        self.ready = False
        _err(f"replica {self.id}: {why}; restarting in {delay:g}s (restart {self.restarts})")

    def tick(self, now: float) -> bool:
        """One supervision step; True when this step made the replica ready."""
        inst = self.instance
        if inst is None:
            if now >= self.next_start:
                self.start(now)
            return False
        if (ended := inst.poll()) is not None:
            self.fail(now, f"{ended.what} exited with code {ended.code}")
            return False
        if self.ready:
            return False
        if not inst.ready():
            if not self.warned and now - inst.started_at > self.run.ready_timeout:
                self.warned = True
                _err(f"warning: replica {self.id}: not ready after {self.run.ready_timeout:g}s"
                     f" (envoy {'ready' if inst.envoy_ready else 'waiting for its config'}, "
                     f"app {'listening' if inst.app_ready() else 'not listening'} on "
                     f":{self.run.info.app_port}); see {inst.workdir}")
            return False
        if now < self.next_register:
            return False
        try:
            inst.register()
        except RegistrationError as e:
            self.next_register = now + REGISTER_RETRY
            if not self.register_failed:  # once per outage, not every retry
                _err(f"warning: replica {self.id}: {e}; retrying every {REGISTER_RETRY:g}s")
            self.register_failed = True
            return False
        self.register_failed = False
        self.ready = True
        print(self.ready_line(), flush=True)
        return True


def run_workload(spec: RunSpec) -> int:
    """Run every replica until SIGINT/SIGTERM/SIGHUP; 1 if nothing can start at all."""
    if spec.replicas < 1:
        raise ValueError(f"--replicas {spec.replicas}: want at least 1")
    ports = app_ports(spec)
    runs = [replica_run(spec, i + 1, port) for i, port in enumerate(ports)]
    program = runs[0].app_argv[0]
    if shutil.which(program) is None:
        # Restarting a command that cannot exist would only loop through the backoff.
        raise ValueError(f"command not found: {program!r} (give a path or a program on PATH)")
    try:
        shared = prepare(spec.envoy, spec.server, spec.xds_address)
    except StartError as e:
        _err(f"error: {e}")
        return 1
    owner = self_identity()
    def rebuild(index: int) -> Callable[[], ProxyRun]:
        # A user-given --app-port stays; the other ports are picked again.
        return lambda: replica_run(spec, index, ports[index - 1] if spec.app_port
                                   else free_port())

    replicas = [Replica(i + 1, run, shared, owner, rebuild(i + 1))
                for i, run in enumerate(runs)]
    command = " ".join(app_argv(spec, spec.replica_name(1), ports[0]))
    labels = ",".join(f"{k}={v}" for k, v in spec.labels.items())
    _err(f"run {spec.name}.{spec.namespace}: {spec.replicas} replica"
         f"{'s' if spec.replicas > 1 else ''}, labels {labels or '(none)'}, "
         f"app: {command}")
    ready_once: set[int] = set()
    with StopFlag() as stop:
        try:
            for r in replicas:
                write_pid_file(r.run.directory, owner, "run", shared.client.server)
            now = time.monotonic()
            for r in replicas:
                r.start(now)
            while stop.signum is None:
                now = time.monotonic()
                for r in replicas:
                    if r.tick(now) and r.index not in ready_once:
                        ready_once.add(r.index)
                        if len(ready_once) == len(replicas):
                            print(f"workload {spec.name}.{spec.namespace}: "
                                  f"{len(replicas)}/{len(replicas)} replicas ready", flush=True)
                    if stop.signum is not None:
                        break
                time.sleep(POLL_INTERVAL)
            _err(f"run {spec.name}.{spec.namespace}: "
                 f"{_signal_name(stop.signum)}, stopping {len(replicas)} replicas")
        finally:
            # Every WorkloadEntry goes first, so no request is sent to a replica whose app
            # is already stopping while others are still up.
            for r in replicas:
                if r.instance is not None:
                    r.instance.deregister()
            for r in replicas:
                if r.instance is not None:
                    r.instance.stop(grace=5.0)
                    r.instance = None
                remove_pid_file(r.run.directory, owner)
    return 0


def _signal_name(signum: int | None) -> str:
    return signal.Signals(signum).name if signum is not None else "stop"
