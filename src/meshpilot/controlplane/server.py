"""The control-plane process: state directory, store, mesh snapshot, xDS and API servers,
started and stopped as one.

Everything is passed in through `Settings`, so tests can run several control planes
side by side. Start-up order matters: the store is read and a complete snapshot is
built before the xDS server answers any proxy, so a restarted control plane never
sends a reconnecting Envoy a partial config.

Telemetry rides along: the proxies' access-log streams arrive on the xDS port, the
collector follows each mesh snapshot, and the API serves `/metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from aiohttp import web

from ..rollout.controller import CanaryController
from ..snapshot.mesh import MeshConfig
from ..store import SqliteStore, WatchEvent
from ..telemetry import AccessLogServicer, TelemetryCollector
from ..telemetry import register as register_als
from ..telemetry.model import DEFAULT_CLUSTER_ID
from ..web.app import create_app
from ..xds.debounce import Debouncer
from ..xds.server import XdsServer
from .mesh import MeshGenerator
from .status import proxy_status_json

log = logging.getLogger("meshpilot")

DEFAULT_API_PORT = 15014
STORE_FILE = "store.db"
INFO_FILE = "controlplane.json"


def default_state_dir() -> Path:
    return Path(os.environ.get("MESHPILOT_STATE", Path.home() / ".meshpilot"))


DEFAULT_XDS_PORT = 15010
TOKEN_FILE = "xds-token"


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT
    xds_host: str = "127.0.0.1"
    xds_port: int = DEFAULT_XDS_PORT
    debounce_after: float = 0.1  # Istio's PILOT_DEBOUNCE_AFTER
    debounce_max: float = 10.0  # Istio's PILOT_DEBOUNCE_MAX
    mesh: MeshConfig = field(default_factory=MeshConfig)
    cluster_id: str = DEFAULT_CLUSTER_ID  # source_cluster/destination_cluster in metrics
    scrape_interval: float = 5.0  # seconds between samples of the PromQL history (query)


# Kinds the mesh snapshot never reads: their writes (a Canary's status on every step)
# need no rebuild and no push.
NOT_MESH_CONFIG = frozenset({"Canary"})


class StateDirBusy(RuntimeError):
    pass


class ControlPlane:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: SqliteStore | None = None
        self._lock: IO[str] | None = None
        self._runner: web.AppRunner | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self.api_port = settings.api_port
        self.xds_port = settings.xds_port
        self.generator: MeshGenerator | None = None
        self.xds: XdsServer | None = None
        self.debouncer: Debouncer | None = None
        self.telemetry = TelemetryCollector(settings.cluster_id)
        self.rollouts: CanaryController | None = None

    @property
    def api_url(self) -> str:
        host = self.settings.api_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.api_port}"

    def _take_lock(self) -> None:
        """One control plane per state directory: two writers would fork the history."""
        state = self.settings.state_dir
        state.mkdir(parents=True, exist_ok=True)
        lock = (state / "lock").open("a+")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise StateDirBusy(
                f"another meshpilot control plane is using {state}; stop it "
                "(meshpilot down, or Ctrl-C) or pick another --state directory"
            ) from None
        self._lock = lock

    def open_store(self) -> SqliteStore:
        if self.store is None:
            self._take_lock()
            self.store = SqliteStore(self.settings.state_dir / STORE_FILE)
        return self.store

    def _xds_token(self) -> str:
        """Remote (non-loopback) proxies must present this token; made once per state dir."""
        path = self.settings.state_dir / TOKEN_FILE
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32) + "\n")
            path.chmod(0o600)
        return path.read_text().strip()

    async def _start_xds(self, store: SqliteStore) -> None:
        loop = asyncio.get_running_loop()
        generator = MeshGenerator(store, self.settings.mesh)
        generator.on_rebuild(self.telemetry.update_mesh)
        debouncer = Debouncer(self._on_changes, quiet=self.settings.debounce_after,
                              max_delay=self.settings.debounce_max)
        # Subscribe before the first build, so no commit falls between the two.
        def on_commit(events: list[WatchEvent]) -> None:
            if any(e.resource.kind not in NOT_MESH_CONFIG for e in events):
                loop.call_soon_threadsafe(debouncer.trigger, "config")

        self._unsubscribe = store.subscribe(on_commit)
        await asyncio.to_thread(generator.rebuild)
        xds = XdsServer(generator, token=self._xds_token(), hooks=self.telemetry.hooks)
        als = AccessLogServicer(self.telemetry, check=xds.check_stream,
                                identify=xds.identify_node)
        xds.add_service(lambda server: register_als(server, als))
        self.xds_port = await xds.start(self.settings.xds_host, self.settings.xds_port)
        self.generator, self.xds, self.debouncer = generator, xds, debouncer
        xds.set_ready()

    async def _on_changes(self, reasons: list[str]) -> None:
        assert self.generator is not None and self.xds is not None
        await asyncio.to_thread(self.generator.rebuild)
        self.xds.push(",".join(reasons))

    def _proxy_status(self) -> dict:
        return proxy_status_json(self.xds.status() if self.xds else [])

    async def start(self) -> None:
        store = self.open_store()
        await self._start_xds(store)
        assert self.generator is not None
        generator = self.generator
        # The canary controller starts once proxies can be served (it waits for their
        # ACKs) and resumes any rollout the last control plane left mid-way.
        self.rollouts = CanaryController(store, mesh=lambda: generator.snapshot,
                                         sync=self.xds, metrics=self.telemetry)
        await self.rollouts.start()
        self.telemetry.history.start(self.settings.scrape_interval)  # /api/v1/query's samples
        info = {"xds": {"host": self.settings.xds_host, "port": self.xds_port}}
        app = create_app(store, info=info, proxy_status=self._proxy_status,
                         telemetry=self.telemetry, rollouts=self.rollouts)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.api_host, self.settings.api_port)
        await site.start()
        self._runner = runner
        sockets = site._server.sockets if site._server else []
        if sockets:
            self.api_port = sockets[0].getsockname()[1]
        info = {"pid": os.getpid(), "api": self.api_url}
        (self.settings.state_dir / INFO_FILE).write_text(json.dumps(info) + "\n")
        log.info("control plane ready: api %s, xDS %s:%d, state %s (revision %d); try: "
                 "MESHPILOT_SERVER=%s meshpilot get vs -A", self.api_url,
                 self.settings.xds_host, self.xds_port, self.settings.state_dir,
                 store.revision, self.api_url)

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self.rollouts is not None:
            await self.rollouts.stop()
            self.rollouts = None
        await self.telemetry.history.stop()
        if self.debouncer is not None:
            await self.debouncer.close()
            self.debouncer = None
        if self.xds is not None:
            await self.xds.stop()
            self.xds = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        with contextlib.suppress(FileNotFoundError):
            (self.settings.state_dir / INFO_FILE).unlink()
        if self.store is not None:
            self.store.close()
            self.store = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None
        log.info("control plane stopped")

    async def serve_forever(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
