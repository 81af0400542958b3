"""What the canary controller relies on outside itself: `XdsServer.synced_at` (the dwell
starts only when every connected proxy ACKed config built from a late-enough mesh
revision) and the store's per-object event log (bounded, durable, ordered)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

from envoy.service.discovery.v3 import discovery_pb2

from meshpilot.store.sqlite import SqliteStore
from meshpilot.xds.server import XdsServer
from meshpilot.xds.types import ProxyInfo, ProxyResources

from ..xds.builders import simple
from ..xds.test_server import Client, first_request


class Gen:
    """A generator with a mesh revision, as MeshGenerator has `snapshot.revision`."""

    def __init__(self) -> None:
        self.snapshot = SimpleNamespace(revision=5)
        self.clusters = {"a": 1}

    def generate(self, proxy: ProxyInfo) -> ProxyResources:
        return simple(clusters=self.clusters, route_to="a")


def ack(resp: discovery_pb2.DiscoveryResponse) -> discovery_pb2.DiscoveryRequest:
    return discovery_pb2.DiscoveryRequest(type_url=resp.type_url,
                                          version_info=resp.version_info,
                                          response_nonce=resp.nonce)


def test_synced_at_waits_for_revision_and_ack() -> None:
    async def scenario() -> None:
        gen = Gen()
        server = XdsServer(gen)
        port = await server.start(port=0)
        assert server.synced_at(1) is None  # not ready: nothing is served yet
        server.set_ready()
        assert server.synced_at(1) == "none"  # no proxy connected
        c = Client(port)
        await c.call.write(first_request("p1"))
        resp = await c.recv()
        assert server.synced_at(5) is None  # sent, not ACKed
        await c.call.write(ack(resp))
        await asyncio.sleep(0.2)
        version = server.synced_at(5)
        assert version is not None and version == server.status()[0].snapshot_version
        assert server.synced_at(6) is None  # built from revision 5 only
        gen.snapshot.revision = 6
        gen.clusters = {"a": 1, "b": 1}
        server.push("test")
        resp = await c.recv()
        assert server.synced_at(6) is None
        await c.call.write(ack(resp))
        await asyncio.sleep(0.2)
        assert server.synced_at(6) not in (None, version)
        await c.close()
        await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_event_log_is_per_object_bounded_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    with SqliteStore(path) as store:
        for i in range(7):
            store.append_event("Canary", "ns", "a", reason="Step", message=f"a{i}",
                               data={"i": i}, keep=5)
            store.append_event("Canary", "ns", "b", reason="Step", message=f"b{i}", keep=5)
        revision = store.revision
    with SqliteStore(path) as store:
        a = store.events("Canary", "ns", "a")
        assert [e.message for e in a] == ["a2", "a3", "a4", "a5", "a6"]
        assert a[-1].data == {"i": 6} and a[0].time.endswith("Z")
        assert [e.message for e in store.events("Canary", "ns", "a", limit=2)] == ["a5", "a6"]
        assert [e.message for e in store.events("Canary", "ns", "a",
                                                since_id=a[-2].id)] == ["a6"]
        assert len(store.events("Canary", "ns", "b")) == 5
        assert store.revision == revision == 0  # the log is not a watch event
