"""The lifecycle shared by sidecars and gateways: bootstrap, start, register, watch, clean up.

One synchronous loop, no threads: signals only set a flag, so cleanup (deregister, then
stop the app, then Envoy) always runs on the main thread, in order, exactly once.
"""

from __future__ import annotations

import os
import signal
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
from .process import Child, EnvoyProcess, exit_code
from .registration import (
    ANNOTATION_PREFIX,
    RegistrationError,
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

    @property
    def directory(self) -> Path:
        return self.state_dir / "proxies" / self.info.namespace / self.info.name


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Stop:
    """Signal handlers that only record the signal; the loop notices within POLL_INTERVAL."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum

    def __enter__(self) -> _Stop:
        for sig in self.SIGNALS:
            self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)  # type: ignore[arg-type]


def run_proxy(run: ProxyRun, ready_line: Callable[[], str]) -> int:
    """Run until a signal or until Envoy or the app exits. Exit code: the app's, or
    Envoy's if Envoy died first; 1 when the control plane cannot be used at start."""
    try:
        binary = find_envoy(run.envoy)
    except EnvoyNotFound as e:
        _err(f"error: {e}")
        return 1
    client = Client(run.server, timeout=10.0)
    try:
        target = xds_target(client, run.xds_address)
    except (RegistrationError, ValueError) as e:
        _err(f"error: {e}")
        return 1

    info = run.info
    workdir = run.directory
    workdir.mkdir(parents=True, exist_ok=True)
    envoy_log = workdir / "envoy.log"
    access_log = workdir / "access.log"
    bootstrap = write_bootstrap(workdir / "bootstrap.json", build_bootstrap(
        info, xds_host=target.host, xds_port=target.port, admin_port=run.admin_port,
        token=target.token, access_log_path=str(access_log)))
    envoy = EnvoyProcess(bootstrap, admin_port=run.admin_port, log_path=envoy_log,
                         binary=binary, concurrency=run.concurrency, log_level=run.log_level)
    app: Child | None = None
    registered = False
    with _Stop() as stop:
        try:
            envoy.start()
            _err(f"{info.kind} {info.id}: envoy pid {envoy.pid}, admin {envoy.admin_url}, "
                 f"xDS {target} ({info.xds_mode}), log {envoy_log}")
            if run.app_argv:
                app = Child(run.app_argv, log_path=workdir / "app.log",
                            env={**os.environ, **run.app_env})
                app.start()
                _err(f"{info.kind} {info.id}: app pid {app.pid}: {' '.join(app.argv)} "
                     f"(log {app.log_path})")
            annotations = {
                **run.annotations,
                ANNOTATION_PREFIX + "admin-port": str(run.admin_port),
                ANNOTATION_PREFIX + "envoy-log": str(envoy_log),
                # Where to grep requests (Istio's access log format): tests and diagnostics.
                ANNOTATION_PREFIX + "access-log": str(access_log),
                ANNOTATION_PREFIX + "bootstrap": str(bootstrap),
                ANNOTATION_PREFIX + "proxy-type": info.kind,
                ANNOTATION_PREFIX + "xds-mode": info.xds_mode,
                ANNOTATION_PREFIX + "pid": str(os.getpid()),
                ANNOTATION_PREFIX + "envoy-pid": str(envoy.pid),
            }
            if app is not None:
                annotations[ANNOTATION_PREFIX + "app-pid"] = str(app.pid)
                annotations[ANNOTATION_PREFIX + "app-log"] = str(app.log_path)
            register(client, workload_entry(
                info.name, info.namespace, address=info.address, ports=dict(run.we_ports),
                labels=dict(info.labels), annotations=annotations,
                service_account=run.service_account))
            registered = True
            return _supervise(run, envoy, app, stop, ready_line)
        except RegistrationError as e:
            _err(f"error: {e}")
            return 1
        finally:
            if registered and not deregister(client, info.namespace, info.name, os.getpid()):
                _err(f"warning: could not delete WorkloadEntry {info.namespace}/{info.name} "
                     f"(control plane gone, or taken over by another proxy)")
            if app is not None:
                app.stop(grace=5.0)
            envoy.stop(grace=5.0)


def _supervise(run: ProxyRun, envoy: EnvoyProcess, app: Child | None, stop: _Stop,
               ready_line: Callable[[], str]) -> int:
    info = run.info
    started = time.monotonic()
    ready = warned = False
    while True:
        if stop.signum is not None:
            _err(f"{info.kind} {info.id}: {signal.Signals(stop.signum).name}, stopping")
            if app is None:
                return 0
            return exit_code(app.stop(grace=5.0))
        if app is not None and (code := app.poll()) is not None:
            _err(f"{info.kind} {info.id}: app exited with code {exit_code(code)}, stopping envoy")
            return exit_code(code)
        if (code := envoy.poll()) is not None:
            _err(f"{info.kind} {info.id}: envoy exited with code {exit_code(code)}; "
                 f"last log lines ({envoy.log_path}):\n{envoy.log_tail(10)}")
            return exit_code(code) or 1
        if not ready:
            if envoy.is_ready():
                ready = True
                print(ready_line(), flush=True)
            elif not warned and time.monotonic() - started > run.ready_timeout:
                warned = True
                _err(f"warning: {info.kind} {info.id}: envoy not ready after "
                     f"{run.ready_timeout:g}s: no listeners/clusters from the control plane yet "
                     f"(still waiting; see {envoy.log_path})")
        time.sleep(POLL_INTERVAL)
