"""The control-plane process: state directory, store and API server, started and stopped as one.

Later stages (xDS server, gateways) join here. Everything is passed in through
`Settings`, so tests can run several control planes side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from aiohttp import web

from ..store import SqliteStore
from ..web.app import create_app

log = logging.getLogger("meshpilot")

DEFAULT_API_PORT = 15014
STORE_FILE = "store.db"
INFO_FILE = "controlplane.json"


def default_state_dir() -> Path:
    return Path(os.environ.get("MESHPILOT_STATE", Path.home() / ".meshpilot"))


@dataclass(frozen=True)
class Settings:
    state_dir: Path
    api_host: str = "127.0.0.1"
    api_port: int = DEFAULT_API_PORT


class StateDirBusy(RuntimeError):
    pass


class ControlPlane:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.store: SqliteStore | None = None
        self._lock: IO[str] | None = None
        self._runner: web.AppRunner | None = None
        self.api_port = settings.api_port

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

    async def start(self) -> None:
        store = self.open_store()
        runner = web.AppRunner(create_app(store), access_log=None, shutdown_timeout=2.0)
        await runner.setup()
        site = web.TCPSite(runner, self.settings.api_host, self.settings.api_port)
        await site.start()
        self._runner = runner
        sockets = site._server.sockets if site._server else []
        if sockets:
            self.api_port = sockets[0].getsockname()[1]
        info = {"pid": os.getpid(), "api": self.api_url}
        (self.settings.state_dir / INFO_FILE).write_text(json.dumps(info) + "\n")
        log.info("control plane ready: api %s, state %s (revision %d); try: "
                 "MESHPILOT_SERVER=%s meshpilot get vs -A",
                 self.api_url, self.settings.state_dir, store.revision, self.api_url)

    async def stop(self) -> None:
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
