"""The ADS gRPC server: a thin `grpc.aio` pump around the sans-IO sessions.

Each stream gets a session (SotW or delta) and an outbound queue. Requests go through the
session on the event loop; `push()` regenerates each connected proxy's resources, refuses
inconsistent ones, and hands the new snapshot to its sessions. Everything that mutates
session state runs on the loop thread, so no locks are needed.

Other gRPC services the proxies talk to (the access-log service for telemetry) share this
server and port: `add_service` registers them before `start`, and `check_stream` /
`identify_node` give them the same authentication and node identification as ADS.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from meshpilot.xds.cache import InconsistentSnapshot, Snapshot, state_version
from meshpilot.xds.hooks import NoopHooks, XdsHooks
from meshpilot.xds.session import DeltaSession, Event, Outgoing, Session, SotwSession, TypeStatus
from meshpilot.xds.types import SHORT_NAMES, ProxyInfo, ProxyResources

log = logging.getLogger(__name__)

RECENTLY_CLOSED = 300.0  # seconds a disconnected proxy stays in status()
MAX_CLOSED = 256


class ConfigGenerator(Protocol):
    def generate(self, proxy: ProxyInfo) -> ProxyResources: ...


@dataclass(frozen=True)
class ProxyStatus:
    """What `proxy-status` shows for one stream. Times come from the server's clock."""

    proxy: ProxyInfo
    connection_id: int
    mode: str  # "sotw" or "delta": what the stream actually speaks
    peer: str
    connected: bool
    connected_since: float
    disconnected_at: float | None
    snapshot_version: str | None  # desired snapshot the session works towards
    types: Mapping[str, TypeStatus]
    error: str | None = None  # last generator / consistency failure for this proxy
    error_time: float | None = None

    @property
    def id(self) -> str:
        return self.proxy.id


@dataclass(eq=False)
class _Connection:
    id: int
    proxy: ProxyInfo
    session: Session
    peer: str
    connected_since: float
    queue: asyncio.Queue[Outgoing | None] = field(default_factory=asyncio.Queue)
    disconnected_at: float | None = None

    @property
    def mode(self) -> str:
        return "delta" if isinstance(self.session, DeltaSession) else "sotw"


def _is_loopback(peer: str) -> bool:
    if peer.startswith("unix:"):
        return True
    if peer.startswith("ipv4:"):
        return peer[5:].startswith("127.")
    if peer.startswith("ipv6:"):
        host = peer[5:].rsplit(":", 1)[0].strip("[]")
        return host == "::1" or host.startswith("::ffff:127.")
    return False


def _peer_host(peer: str) -> str:
    """`ipv4:10.0.0.5:4321` -> `10.0.0.5`, `ipv6:[::1]:4321` -> `::1` (gRPC peer strings)."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return ""
    return rest.rsplit(":", 1)[0].strip("[]")


class _Abort(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class XdsServer:
    """Aggregated Discovery Service (SotW and delta) for every proxy that connects."""

    def __init__(self, generator: ConfigGenerator, *, hooks: XdsHooks | None = None,
                 token: str | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._generator = generator
        self._hooks: XdsHooks = hooks or NoopHooks()
        self._token = token
        self._clock = clock
        self._ready = False
        self._server: grpc.aio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conns: dict[int, _Connection] = {}
        self._closed: deque[ProxyStatus] = deque(maxlen=MAX_CLOSED)
        self._snapshots: dict[str, Snapshot] = {}
        # per proxy: the generator's mesh revision its current snapshot was built from
        self._revisions: dict[str, int] = {}
        self._errors: dict[str, tuple[str, float]] = {}
        self._ids = itertools.count(1)
        self._services: list[Callable[[grpc.aio.Server], None]] = []
        self.port: int | None = None

    def add_service(self, register: Callable[[grpc.aio.Server], None]) -> None:
        """Serve another gRPC service on the xDS port: `register(server)` is called with
        the grpc.aio server at `start` (e.g. `lambda s: add_XServicer_to_server(x, s)`)."""
        if self._server is not None:
            raise RuntimeError("add_service must be called before start()")
        self._services.append(register)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 15010) -> int:
        """Listen; returns the bound port (pass 0 for a free one)."""
        self._loop = asyncio.get_running_loop()
        # no SO_REUSEPORT: a second control plane on the same port must fail, not share it.
        # Keepalive pings find proxies that vanished without closing their connection.
        server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 0),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
        ])
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(_Servicer(self), server)
        for register in self._services:
            register(server)
        try:
            bound = server.add_insecure_port(f"{host}:{port}")
        except RuntimeError as e:
            raise OSError(f"xDS server cannot listen on {host}:{port}: {e}") from e
        if not bound:
            raise OSError(f"xDS server cannot listen on {host}:{port}")
        await server.start()
        self._server, self.port = server, bound
        log.info("xDS server listening on %s:%d", host, bound)
        return bound

    async def stop(self) -> None:
        """Close every stream; Envoys keep serving their last config and retry."""
        for conn in list(self._conns.values()):
            conn.queue.put_nowait(None)
        if self._server is not None:
            await self._server.stop(grace=0.5)
            self._server = None

    def set_ready(self) -> None:
        """Allow responses. Until now we may hold an incomplete view of the mesh, and an
        incomplete SotW LDS/CDS would delete the proxies' listeners (restart safety)."""
        if self._ready:
            return
        self._ready = True
        self.push("ready")

    @property
    def ready(self) -> bool:
        return self._ready

    # --- pushes ---------------------------------------------------------------------------

    def push(self, reason: str = "config") -> None:
        """Regenerate every connected proxy; only changed resources are sent. Thread-safe."""
        loop = self._loop
        if loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._push_now(reason)
        else:
            loop.call_soon_threadsafe(self._push_now, reason)

    def _push_now(self, reason: str) -> None:
        if not self._ready:
            return
        newest: dict[str, _Connection] = {}
        for conn in self._conns.values():
            newest[conn.proxy.id] = conn
        log.debug("push (%s) to %d proxies", reason, len(newest))
        for proxy_id, latest in newest.items():
            snapshot = self._refresh(latest.proxy)
            if snapshot is None:
                continue
            for conn in [c for c in self._conns.values() if c.proxy.id == proxy_id]:
                self._send(conn, conn.session.set_desired(snapshot))

    def _refresh(self, proxy: ProxyInfo) -> Snapshot | None:
        """Generate and check; on failure keep (and return) the last good snapshot."""
        # Read before generating: a rebuild in another thread may swap the mesh snapshot
        # while we translate, and the revision we record must never be newer than the
        # config we built (recording an older one only makes `synced_at` wait longer).
        mesh = getattr(self._generator, "snapshot", None)
        revision = getattr(mesh, "revision", None)
        try:
            snapshot = Snapshot.build(self._generator.generate(proxy))
        except InconsistentSnapshot as e:
            self._fail(proxy, "inconsistent resources refused: " + "; ".join(e.problems))
        except Exception as e:
            log.exception("config generation failed for %s", proxy.id)
            self._fail(proxy, f"config generation failed: {type(e).__name__}: {e}")
        else:
            self._errors.pop(proxy.id, None)
            self._snapshots[proxy.id] = snapshot
            if isinstance(revision, int):
                self._revisions[proxy.id] = revision
            return snapshot
        return self._snapshots.get(proxy.id)

    def _fail(self, proxy: ProxyInfo, message: str) -> None:
        log.error("%s: %s; keeping its previous config", proxy.id, message)
        self._errors[proxy.id] = (message, self._clock())

    # --- status ---------------------------------------------------------------------------

    def status(self) -> list[ProxyStatus]:
        now = self._clock()
        live = [self._status_of(c) for c in self._conns.values()]
        connected = {s.id for s in live}
        recent: dict[str, ProxyStatus] = {}
        for s in self._closed:
            if (s.id not in connected and s.disconnected_at is not None
                    and now - s.disconnected_at <= RECENTLY_CLOSED):
                recent[s.id] = s
        return sorted([*live, *recent.values()], key=lambda s: (s.id, s.connection_id))

    def synced_at(self, revision: int) -> str | None:
        """The config version every connected proxy runs, once each one's current
        snapshot was built from mesh revision >= `revision` (the generator's
        `snapshot.revision`) and it has ACKed all of it; None while any proxy is behind,
        has unACKed responses in flight, or NACKed. What the canary controller waits for
        before a step's dwell starts: the new weights are in every Envoy, not just stored.

        The version is the proxy's snapshot version (as `proxy-status` shows it) when one
        proxy is connected, else a hash over every proxy's; "none" when no proxy is
        connected (nothing can serve stale config then)."""
        if not self._ready:
            return None
        versions: dict[str, str] = {}
        for conn in self._conns.values():
            desired = conn.session.desired
            if desired is None or self._revisions.get(conn.proxy.id, -1) < revision:
                return None
            snapshot = self._snapshots.get(conn.proxy.id)
            if snapshot is not None and snapshot.version != desired.version:
                return None  # a newer snapshot is being handed to its sessions
            for type_url, st in conn.session.status().items():
                if st.state == "SYNCED":
                    continue
                if st.state == "NOT SENT" and conn.session.holds_desired(type_url):
                    continue  # nothing had to be sent: it has none, or already holds it
                return None
            versions[f"{conn.proxy.id}#{conn.id}"] = desired.version
        if not versions:
            return "none"
        if len(set(versions.values())) == 1 and len({k.split("#")[0] for k in versions}) == 1:
            return next(iter(versions.values()))
        return state_version(sorted(versions.items()))

    def _status_of(self, conn: _Connection) -> ProxyStatus:
        err = self._errors.get(conn.proxy.id)
        desired = conn.session.desired
        return ProxyStatus(conn.proxy, conn.id, conn.mode, conn.peer,
                           conn.disconnected_at is None, conn.connected_since,
                           conn.disconnected_at, desired.version if desired else None,
                           conn.session.status(), err[0] if err else None,
                           err[1] if err else None)

    # --- streams --------------------------------------------------------------------------

    async def _stream(self, requests: AsyncIterator[Any], context: grpc.aio.ServicerContext,
                      delta: bool) -> AsyncIterator[Any]:
        peer = context.peer() or ""
        try:
            self._authenticate(peer, context.invocation_metadata() or ())
            try:
                first = await anext(aiter(requests))
            except StopAsyncIteration:
                return
            proxy = self._identify(first)
        except _Abort as e:
            log.warning("rejected xDS stream from %s: %s", peer, e.message)
            await context.abort(e.code, e.message)
            return
        session: Session = (DeltaSession(clock=self._clock) if delta
                            else SotwSession(clock=self._clock))
        conn = _Connection(next(self._ids), proxy, session, peer, self._clock())
        self._conns[conn.id] = conn
        log.info("%s connected from %s (%s, stream %d)", proxy.id, peer, conn.mode, conn.id)
        self._hook("on_stream_open", proxy)
        reader: asyncio.Task[None] | None = None
        try:
            self._handle(conn, first)
            if self._ready:
                snapshot = self._refresh(proxy)
                if snapshot is not None:
                    self._send(conn, session.set_desired(snapshot))
            reader = asyncio.get_running_loop().create_task(self._read(conn, requests))
            while (item := await conn.queue.get()) is not None:
                yield item.message
        finally:
            if reader is not None:
                reader.cancel()
            conn.disconnected_at = self._clock()
            self._conns.pop(conn.id, None)
            self._closed.append(self._status_of(conn))
            log.info("%s disconnected (stream %d)", proxy.id, conn.id)
            self._hook("on_stream_close", proxy)

    def _authenticate(self, peer: str, metadata: Sequence[tuple[str, Any]]) -> None:
        if self._token is None or _is_loopback(peer):
            return
        expected = f"Bearer {self._token}"
        for key, value in metadata:
            if key.lower() == "authorization" and isinstance(value, str) and \
                    hmac.compare_digest(value.encode(), expected.encode()):
                return
        raise _Abort(grpc.StatusCode.UNAUTHENTICATED,
                     "xDS stream from a non-loopback peer needs gRPC metadata "
                     "'authorization: Bearer <token>'")

    def check_stream(self, peer: str, metadata: Sequence[tuple[str, Any]],
                     node_id: str | None = None) -> str | None:
        """For other services on this port: None if a stream from `peer` is allowed, else
        why not. ADS's rule (loopback, or the bearer token), plus one for proxies whose
        other streams cannot carry the token (Envoy's access-log streams only send what
        their xDS-delivered config says, and the token must not travel in xDS): `node_id`
        has an authenticated ADS stream open from the same host."""
        try:
            self._authenticate(peer, metadata)
        except _Abort as e:
            host = _peer_host(peer)
            if node_id is not None and host and any(
                    c.proxy.id == node_id and _peer_host(c.peer) == host
                    for c in self._conns.values()):
                return None
            return e.message
        return None

    def identify_node(self, node: Any) -> ProxyInfo:
        """The ProxyInfo in an Envoy `Node` (as ADS identifies it); ValueError if the node
        carries no valid meshpilot metadata."""
        try:
            return self._identify(SimpleNamespace(node=node))
        except _Abort as e:
            raise ValueError(e.message) from None

    def _identify(self, first: Any) -> ProxyInfo:
        node = first.node
        if not node.HasField("metadata") or "NAME" not in node.metadata.fields:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                         f"node {node.id!r} sent no meshpilot metadata (NAME, NAMESPACE, ...) "
                         "in its first request: the Envoy bootstrap must set node.metadata "
                         "to ProxyInfo.to_metadata()")
        try:
            proxy = ProxyInfo.from_metadata(node.metadata)
        except (KeyError, ValueError, TypeError) as e:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                         f"node {node.id!r} has invalid metadata: {e}") from e
        if node.id != proxy.id:
            raise _Abort(grpc.StatusCode.INVALID_ARGUMENT,
                         f"node.id {node.id!r} does not match its metadata: expected "
                         f"{proxy.id!r} (<NAME>.<NAMESPACE>)")
        return proxy

    async def _read(self, conn: _Connection, requests: AsyncIterator[Any]) -> None:
        try:
            async for req in requests:
                self._handle(conn, req)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # stream reset by the peer, server shutting down
            log.debug("%s: read ended: %s", conn.proxy.id, e)
        finally:
            conn.queue.put_nowait(None)

    def _handle(self, conn: _Connection, req: Any) -> None:
        events, out = conn.session.handle_request(req)
        for ev in events:
            self._observe(conn.proxy, ev)
        self._send(conn, out)

    def _observe(self, proxy: ProxyInfo, ev: Event) -> None:
        short = SHORT_NAMES.get(ev.type_url, ev.type_url)
        self._hook("on_request", proxy, ev.type_url, ev.kind, ev.nonce)
        if ev.kind == "ack":
            log.debug("%s %s ACK %s", proxy.id, short, ev.version)
            self._hook("on_ack", proxy, ev.type_url, ev.version)
        elif ev.kind == "nack":
            log.warning("%s rejected %s (nonce %s, keeps version %s): %s", proxy.id, short,
                        ev.nonce, ev.version or "none", ev.message)
            self._hook("on_nack", proxy, ev.type_url, ev.version, ev.message)
        elif ev.kind == "unknown_type":
            log.debug("%s asked for unsupported type %s", proxy.id, ev.type_url)

    def _send(self, conn: _Connection, out: list[Outgoing]) -> None:
        for item in out:
            log.debug("%s %s send version %s nonce %s: %d resources, %d removed",
                      conn.proxy.id, SHORT_NAMES.get(item.type_url), item.version, item.nonce,
                      len(item.resource_names), len(item.removed))
            conn.queue.put_nowait(item)
            self._hook("on_response", conn.proxy, item.type_url, item.version, item.nonce,
                       item.resource_names)

    def _hook(self, name: str, *args: Any) -> None:
        try:
            getattr(self._hooks, name)(*args)
        except Exception:
            log.exception("xDS hook %s failed", name)


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def __init__(self, server: XdsServer) -> None:
        self._server = server

    async def StreamAggregatedResources(
            self, request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
            context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for response in self._server._stream(request_iterator, context, delta=False):
            yield response

    async def DeltaAggregatedResources(
            self, request_iterator: AsyncIterator[discovery_pb2.DeltaDiscoveryRequest],
            context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for response in self._server._stream(request_iterator, context, delta=True):
            yield response
