"""Envoy's gRPC access-log service (`envoy.service.accesslog.v3.AccessLogService`), served
on the control plane's xDS port.

Every proxy's translated config sends its access logs to the bootstrap cluster
`xds_cluster` (xds/translate/telemetry.py), so no extra port, address or credential is
handed out. A stream's first message identifies the proxy (`identifier.node`, the same
node metadata its ADS stream carries) and the logger (`log_name`); every message then
carries a batch of HTTP or TCP entries for the collector.

Streams are authenticated as ADS streams are (the xDS server's rule, reused through the
`check` callable): loopback peers, or the bearer token, or, since an Envoy's access-log
stream only carries what its xDS-delivered config says and the token must not travel in
xDS, a node that has an authenticated ADS stream open from the same host.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.accesslog.v3 import als_pb2, als_pb2_grpc

from ..xds.types import ProxyInfo
from .collector import AlsStream, TelemetryCollector

log = logging.getLogger("meshpilot.telemetry")

# (peer, invocation metadata, node id) -> None if allowed, else why not.
StreamCheck = Callable[[str, Sequence[tuple[str, Any]], str | None], str | None]
NodeIdentifier = Callable[[base_pb2.Node], ProxyInfo]


def _identify_default(node: base_pb2.Node) -> ProxyInfo:
    if "NAME" not in node.metadata.fields:
        raise ValueError(f"node {node.id!r} carries no meshpilot metadata")
    return ProxyInfo.from_metadata(node.metadata)


class AccessLogServicer(als_pb2_grpc.AccessLogServiceServicer):
    """A thin driver: authenticate, identify, hand each message to the collector."""

    def __init__(self, collector: TelemetryCollector, *, check: StreamCheck | None = None,
                 identify: NodeIdentifier = _identify_default) -> None:
        self._collector = collector
        self._check = check
        self._identify = identify

    async def StreamAccessLogs(
        self, request_iterator: AsyncIterator[als_pb2.StreamAccessLogsMessage],
        context: grpc.aio.ServicerContext,
    ) -> als_pb2.StreamAccessLogsResponse:
        collector = self._collector
        peer = context.peer() or ""
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            return als_pb2.StreamAccessLogsResponse()
        node = first.identifier.node
        if self._check is not None:
            problem = self._check(peer, context.invocation_metadata() or (), node.id or None)
            if problem is not None:
                collector.health.streams_rejected += 1
                log.warning("rejected access-log stream from %s (%s): %s", peer, node.id,
                            problem)
                await context.abort(grpc.StatusCode.UNAUTHENTICATED, problem)
        proxy: ProxyInfo | None
        try:
            proxy = self._identify(node)
        except (ValueError, KeyError, TypeError) as e:
            # Keep the stream (Envoy would only retry), count its entries as unknown.
            log.warning("access-log stream from %s: unknown proxy: %s", peer, e)
            proxy = None
        stream = collector.open_stream(proxy, first.identifier.log_name)
        log.debug("access-log stream %s from %s (%s)", stream.log_name, peer,
                  proxy.id if proxy else "unknown proxy")
        try:
            self._process(stream, first)
            async for msg in request_iterator:
                self._process(stream, msg)
        except (grpc.RpcError, grpc.aio.AioRpcError, ConnectionError) as e:
            log.debug("access-log stream from %s ended: %s", peer, e)  # peer reset, shutdown
        finally:
            collector.close_stream(stream)
        return als_pb2.StreamAccessLogsResponse()

    def _process(self, stream: AlsStream, msg: als_pb2.StreamAccessLogsMessage) -> None:
        """A bad message costs its entries, never the stream (Envoy would only reconnect
        and send the next batch)."""
        try:
            self._collector.process(stream, msg)
        except Exception:
            log.exception("access-log message from %s dropped",
                          stream.proxy.id if stream.proxy else "unknown proxy")


def register(server: grpc.aio.Server, servicer: AccessLogServicer) -> None:
    als_pb2_grpc.add_AccessLogServiceServicer_to_server(servicer, server)
