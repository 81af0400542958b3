"""The access-log service on the xDS server's port, over real gRPC on loopback: streams
are identified like ADS streams, entries reach the collector, auth follows ADS's rule."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import grpc
import pytest
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc
from google.protobuf import struct_pb2

from meshpilot.telemetry import AccessLogServicer, TelemetryCollector, register
from meshpilot.xds.server import XdsServer, _Connection
from meshpilot.xds.session import SotwSession
from meshpilot.xds.translate.telemetry import ALS_OUTBOUND
from meshpilot.xds.types import ProxyInfo, ProxyResources

from .entries import CLIENT, SERVICE, http_entry

V1_CLUSTER = f"outbound|80|v1|{SERVICE}"


class Gen:
    def generate(self, proxy: ProxyInfo) -> ProxyResources:
        return ProxyResources({})


def run(coro: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 20))


def first_message(proxy: ProxyInfo | None, log_name: str = ALS_OUTBOUND,
                  node_id: str | None = None) -> als_pb2.StreamAccessLogsMessage:
    msg = als_pb2.StreamAccessLogsMessage()
    msg.identifier.log_name = log_name
    node = msg.identifier.node
    node.id = node_id or (proxy.id if proxy else "someone")
    if proxy is not None:
        meta = struct_pb2.Struct()
        meta.update(proxy.to_metadata())
        node.metadata.CopyFrom(meta)
    msg.http_logs.log_entry.extend([http_entry(cluster=V1_CLUSTER)] * 3)
    return msg


async def _serve(collector: TelemetryCollector, token: str | None = None) -> XdsServer:
    xds = XdsServer(Gen(), token=token, hooks=collector.hooks)
    servicer = AccessLogServicer(collector, check=xds.check_stream, identify=xds.identify_node)
    xds.add_service(lambda server: register(server, servicer))
    await xds.start("127.0.0.1", 0)
    return xds


async def _send(port: int, *messages: als_pb2.StreamAccessLogsMessage) -> None:
    async def gen() -> AsyncIterator[als_pb2.StreamAccessLogsMessage]:
        for m in messages:
            yield m

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = als_pb2_grpc.AccessLogServiceStub(channel)
        await stub.StreamAccessLogs(gen())


def test_entries_reach_the_collector_on_the_xds_port() -> None:
    collector = TelemetryCollector()

    async def main() -> None:
        xds = await _serve(collector, token="secret")  # loopback needs no token
        try:
            assert xds.port is not None
            more = als_pb2.StreamAccessLogsMessage()
            more.http_logs.log_entry.extend([http_entry(cluster=V1_CLUSTER)] * 2)
            await _send(xds.port, first_message(CLIENT), more)
        finally:
            await xds.stop()

    run(main())
    [series] = collector.store.http.values()
    assert series.requests == 5
    assert series.labels[1] == "sleep"  # the stream's node named the reporting proxy
    assert (collector.health.streams_total, collector.health.streams_active) == (1, 0)
    assert collector.health.messages == 2


def test_a_node_without_metadata_is_counted_as_unknown() -> None:
    collector = TelemetryCollector()

    async def main() -> None:
        xds = await _serve(collector)
        try:
            assert xds.port is not None
            await _send(xds.port, first_message(None))
        finally:
            await xds.stop()

    run(main())
    assert collector.store.http == {}
    assert collector.health.unknown_proxy_entries == 3


def test_add_service_after_start_is_refused() -> None:
    async def main() -> None:
        xds = await _serve(TelemetryCollector())
        try:
            with pytest.raises(RuntimeError):
                xds.add_service(lambda server: None)
        finally:
            await xds.stop()

    run(main())


def test_check_stream_rule() -> None:
    xds = XdsServer(Gen(), token="secret")
    remote = "ipv4:10.1.2.3:40000"
    assert xds.check_stream("ipv4:127.0.0.1:5000", (), None) is None
    assert xds.check_stream(remote, (("authorization", "Bearer secret"),), None) is None
    assert "Bearer" in (xds.check_stream(remote, (), "sleep.ns") or "")
    # The same node has an authenticated ADS stream from that host: its access-log stream
    # (which cannot carry the token) is accepted; another host or node is not.
    proxy = ProxyInfo(name="sleep", namespace="ns")
    xds._conns[1] = _Connection(1, proxy, SotwSession(), "ipv4:10.1.2.3:39000", 0.0)
    assert xds.check_stream(remote, (), "sleep.ns") is None
    assert xds.check_stream("ipv4:10.9.9.9:40000", (), "sleep.ns") is not None
    assert xds.check_stream(remote, (), "other.ns") is not None
    assert XdsServer(Gen()).check_stream(remote, (), None) is None  # no token configured
