"""The loop from stored config to pushed Envoy config.

Store commits trigger a debounced rebuild of the mesh snapshot; the xDS server then
regenerates each connected proxy's resources from it and sends only what changed.
The first snapshot is built before the xDS server answers anyone, so a restarted
control plane never hands a reconnecting proxy a partial config. Other consumers of the
snapshot (telemetry's workload index) subscribe with `on_rebuild`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..snapshot.mesh import MeshConfig, MeshSnapshot
from ..store import SqliteStore
from ..xds.translate import translate
from ..xds.types import ProxyInfo, ProxyResources

log = logging.getLogger("meshpilot.mesh")


class MeshGenerator:
    """Holds the current snapshot and translates it for any proxy (the xDS ConfigGenerator)."""

    def __init__(self, store: SqliteStore, mesh: MeshConfig | None = None) -> None:
        self.store = store
        self.mesh = mesh or MeshConfig()
        self.snapshot: MeshSnapshot = MeshSnapshot.build([], 0, self.mesh)
        self._parsed: dict = {}  # typed configs reused across rebuilds
        self.build_seconds = 0.0
        self._listeners: list[Callable[[MeshSnapshot], None]] = []

    def on_rebuild(self, listener: Callable[[MeshSnapshot], None]) -> None:
        """Call `listener(snapshot)` after every rebuild (in the rebuilding thread)."""
        self._listeners.append(listener)

    def rebuild(self) -> MeshSnapshot:
        """Read the whole store at one revision and build the next snapshot."""
        started = time.perf_counter()
        revision = self.store.revision  # a write after this triggers another rebuild
        resources = self.store.list()
        snapshot = MeshSnapshot.build(resources, revision, self.mesh, self._parsed)
        self.build_seconds = time.perf_counter() - started
        for line in snapshot.diagnostics:
            if line not in self.snapshot.diagnostics:
                log.warning("%s", line)
        self.snapshot = snapshot
        for listener in self._listeners:
            try:
                listener(snapshot)
            except Exception:
                log.exception("snapshot listener %r failed", listener)
        log.info("mesh snapshot at revision %d built in %.1f ms (%d services)", revision,
                 self.build_seconds * 1000, len(snapshot.services))
        return snapshot

    def generate(self, proxy: ProxyInfo) -> ProxyResources:
        return translate(self.snapshot, proxy)
