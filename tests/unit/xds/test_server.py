"""XdsServer over in-process gRPC on loopback (no Envoy): identity, auth, readiness,
failure isolation between proxies."""

from __future__ import annotations

import asyncio
import threading

import grpc
import pytest
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from meshpilot.xds.server import XdsServer, _Abort, _is_loopback
from meshpilot.xds.types import CLUSTER_TYPE, ProxyInfo, ProxyResources

from .builders import simple


class Gen:
    def __init__(self) -> None:
        self.fail: set[str] = set()
        self.route_to = "a"

    def generate(self, proxy: ProxyInfo) -> ProxyResources:
        if proxy.id in self.fail:
            raise RuntimeError(f"no config for {proxy.id}")
        return simple(clusters={"a": 1}, route_to=self.route_to)


def first_request(name: str, *, node_id: str | None = None, metadata: bool = True,
                  delta: bool = False):
    proxy = ProxyInfo(name=name, namespace="ns")
    node = discovery_pb2.DiscoveryRequest().node
    node.id = node_id if node_id is not None else proxy.id
    if metadata:
        s = struct_pb2.Struct()
        s.update(proxy.to_metadata())
        node.metadata.CopyFrom(s)
    if delta:
        return discovery_pb2.DeltaDiscoveryRequest(node=node, type_url=CLUSTER_TYPE)
    return discovery_pb2.DiscoveryRequest(node=node, type_url=CLUSTER_TYPE)


class Client:
    """One ADS stream driven by hand."""

    def __init__(self, port: int, delta: bool = False) -> None:
        self.channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self.channel)
        self.call = (stub.DeltaAggregatedResources() if delta
                     else stub.StreamAggregatedResources())
        # cancelling a pending read would cancel the RPC, so one task reads for us
        self.inbox: asyncio.Queue = asyncio.Queue()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        try:
            async for msg in self.call:
                self.inbox.put_nowait(msg)
        except grpc.aio.AioRpcError as e:
            self.inbox.put_nowait(e)

    async def recv(self, timeout: float = 2.0):
        item = await asyncio.wait_for(self.inbox.get(), timeout)
        if isinstance(item, Exception):
            raise item
        return item

    async def close(self) -> None:
        self._reader.cancel()
        await self.channel.close()


def run(coro) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))


async def started(gen: Gen, **kw) -> tuple[XdsServer, int]:
    server = XdsServer(gen, **kw)
    return server, await server.start(port=0)


def test_no_response_before_ready_then_full_state() -> None:
    async def scenario() -> None:
        server, port = await started(Gen())
        c = Client(port)
        await c.call.write(first_request("p1"))
        with pytest.raises(asyncio.TimeoutError):
            await c.recv(0.3)
        server.set_ready()
        resp = await c.recv()
        assert resp.type_url == CLUSTER_TYPE and len(resp.resources) == 1
        [st] = server.status()
        assert st.id == "p1.ns" and st.connected and st.mode == "sotw"
        await c.close()
        await server.stop()
    run(scenario())


@pytest.mark.parametrize(("kwargs", "needle"), [
    ({"metadata": False}, "sent no meshpilot metadata"),
    ({"node_id": "other.ns"}, "does not match its metadata"),
])
def test_bad_identity_is_rejected(kwargs: dict, needle: str) -> None:
    async def scenario() -> None:
        server, port = await started(Gen())
        server.set_ready()
        c = Client(port)
        await c.call.write(first_request("p1", **kwargs))
        with pytest.raises(grpc.aio.AioRpcError) as e:
            await c.recv()
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert needle in (e.value.details() or "")
        await c.close()
        await server.stop()
    run(scenario())


def test_a_failing_generator_affects_only_its_proxy() -> None:
    async def scenario() -> None:
        gen = Gen()
        gen.fail.add("bad.ns")
        server, port = await started(gen)
        server.set_ready()
        good, bad = Client(port), Client(port, delta=True)
        await good.call.write(first_request("good"))
        await bad.call.write(first_request("bad", delta=True))
        assert len((await good.recv()).resources) == 1
        with pytest.raises(asyncio.TimeoutError):
            await bad.recv(0.3)
        by_id = {s.id: s for s in server.status()}
        assert "no config for bad.ns" in (by_id["bad.ns"].error or "")
        assert by_id["good.ns"].error is None
        # an inconsistent result is refused: the previous config stays
        gen.route_to = "missing"
        server.push()
        by_id = {s.id: s for s in server.status()}
        assert "references cluster 'missing'" in (by_id["good.ns"].error or "")
        # a fix recovers the failing proxy
        gen.fail.clear()
        gen.route_to = "a"
        server.push()
        assert len((await bad.recv()).resources) == 1
        assert all(s.error is None for s in server.status())
        await good.close()
        await bad.close()
        await server.stop()
    run(scenario())


def test_push_from_another_thread() -> None:
    async def scenario() -> None:
        server, port = await started(Gen())
        c = Client(port)
        await c.call.write(first_request("p1"))
        server.set_ready()
        first = await c.recv()
        await c.call.write(discovery_pb2.DiscoveryRequest(
            type_url=CLUSTER_TYPE, version_info=first.version_info, response_nonce=first.nonce))
        await asyncio.sleep(0.1)
        # nothing changed: nothing is sent
        t = threading.Thread(target=server.push, args=("thread",))
        t.start()
        t.join()
        with pytest.raises(asyncio.TimeoutError):
            await c.recv(0.3)
        await c.close()
        await server.stop()
        closed = server.status()
        assert closed and not closed[0].connected and closed[0].disconnected_at is not None
    run(scenario())


def test_token_is_required_from_non_loopback_peers_only() -> None:
    server = XdsServer(Gen(), token="s3cret")
    server._authenticate("ipv4:127.0.0.1:5000", ())
    server._authenticate("ipv6:[::1]:5000", ())
    server._authenticate("ipv4:10.0.0.5:5000", (("authorization", "Bearer s3cret"),))
    for md in ((), (("authorization", "Bearer nope"),)):
        with pytest.raises(_Abort) as e:
            server._authenticate("ipv4:10.0.0.5:5000", md)
        assert e.value.code == grpc.StatusCode.UNAUTHENTICATED
    XdsServer(Gen())._authenticate("ipv4:10.0.0.5:5000", ())  # no token configured
    assert not _is_loopback("ipv6:[fe80::1]:1") and _is_loopback("unix:/tmp/x")
