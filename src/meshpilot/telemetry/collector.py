"""Access-log entries in, Istio's standard metrics out.

Each Envoy streams its HTTP and TCP access-log entries to the control plane (als.py); the
stream's first message names the proxy (node metadata -> ProxyInfo) and the listener side
(`log_name`, see xds/translate/telemetry.py). The collector turns every entry into
increments of Istio's series (model.py has the label vocabulary).

How each label is derived:

- `reporter`: `source` for a sidecar's outbound proxy and for gateways, `destination`
  for a sidecar's inbound listener (the stream's log_name).
- `source_*`: for reporter=source, the reporting proxy itself. For reporter=destination,
  the client proxy named by the `x-envoy-peer-metadata-id` header its route config
  stamped on the request, which the inbound listener moved into dynamic metadata
  (`meshpilot.peer`/`id`): a connected proxy, else the WorkloadEntry of that name; no
  id (a client without a sidecar, a raw TCP connection) -> unknown, as Istio without
  metadata exchange.
- `destination_*` workload labels: for reporter=source, the workload whose WorkloadEntry
  has the upstream host's address and port (the mesh index remembers recently removed
  ones), unknown when there was no upstream host (a fault abort) or it is not a mesh
  workload. For reporter=destination, the reporting proxy itself.
- `destination_service` / `_name` / `_namespace`: for reporter=source, from the route's
  cluster (custom tag `cluster`, set even when no upstream host was picked):
  `outbound|port|subset|fqdn` -> the service `fqdn`; `PassthroughCluster` /
  `BlackHoleCluster` (or the `allow_any` / `block_all` routes) -> the request's
  authority as destination_service and the cluster's name as destination_service_name,
  as Istio's stats filter does. For reporter=destination, the service of this workload
  whose names include the request's authority, else its only service, else Istio's
  host-header fallback (the authority itself; the workload's canonical name for TCP).
  A Kubernetes-style service gives (`name`, `namespace`); a ServiceEntry host gives
  (the host, the entry's namespace). (Istio's stats filter takes the namespace from the
  peer workload instead, so a fault-aborted request says `unknown` there; the service's
  own namespace is the same whenever a workload answered, and known when none did.)
- `request_protocol`: `grpc` for a gRPC content-type, else `http`; `tcp` for tcp_proxy
  connections and CONNECT tunnels (a tunnel is meshpilot's way of carrying TCP through
  the explicit proxy, so it counts as a TCP connection, opened and closed when its one
  access-log entry arrives at its end; the DC/UC flag Envoy puts on a tunnel that one
  side closed is dropped, since that is how every TCP connection ends).
- `response_code`: the HTTP status, `0` when none was sent; `grpc_response_status`: the
  grpc-status trailer or header, else inferred from the HTTP status (Envoy's rule), empty
  for non-gRPC requests; `response_flags`: Envoy's short codes, `-` if none.
- `connection_security_policy`: `unknown` for reporter=source (as Istio), `none` for
  reporter=destination (plaintext); `*_principal`: unknown.

Values: request duration = the entry's `duration` (Envoy's requestComplete, what Istio's
stats filter records and %DURATION% prints), in whole milliseconds; request/response
bytes = the downstream wire bytes (Istio's downstream bytes meter), falling back to
headers + body; TCP bytes = the connection's cumulative byte counters as deltas per
connection (`stream_id`): the connect entry opens it, periodic entries add bytes, the
end entry closes it (and opens it first if the connect entry never came).

Speed: the labels of an entry depend on a handful of raw fields, so each stream caches
(raw fields -> series); the cache is dropped whenever the mesh index or the known proxies
change. A steady-state entry costs a few field reads, one dict lookup and increments.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2

from ..snapshot import MeshSnapshot
from ..xds.hooks import NoopHooks
from ..xds.translate.telemetry import (
    ALS_INBOUND,
    CLUSTER_TAG,
    PEER_METADATA_KEY,
    PEER_METADATA_NAMESPACE,
)
from ..xds.types import ProxyInfo
from .history import MetricHistory
from .mesh import MeshIndex, ServiceRef
from .metrics import HttpSeries, MetricStore, TcpSeries
from .model import (
    DEFAULT_CLUSTER_ID,
    NO_FLAGS,
    UNKNOWN,
    UNKNOWN_WORKLOAD,
    Workload,
    grpc_status,
    is_grpc,
    response_flags,
    workload_identity,
)
from .window import RequestWindow, WindowKey, WindowSummary

log = logging.getLogger("meshpilot.telemetry")

SOURCE, DESTINATION = "source", "destination"
PASSTHROUGH_CLUSTER, BLACKHOLE_CLUSTER = "PassthroughCluster", "BlackHoleCluster"
_SPECIAL_CLUSTERS = frozenset({PASSTHROUGH_CLUSTER, BLACKHOLE_CLUSTER,
                               "InboundPassthroughCluster", "InboundPassthroughClusterIpv4",
                               "InboundPassthroughClusterIpv6"})
_CONNECT = base_pb2.RequestMethod.CONNECT
_TCP_END = accesslog_pb2.AccessLogType.TcpConnectionEnd
_FINAL_HTTP = frozenset({accesslog_pb2.AccessLogType.NotSet,
                         accesslog_pb2.AccessLogType.DownstreamEnd})
MAX_CACHE = 20_000  # cached label lookups per stream before the cache starts over
MAX_PROXIES = 100_000
CONN_IDLE_SECONDS = 600.0  # TCP connection state with no entry for this long is dropped


@dataclass
class PipelineHealth:
    """The ALS pipeline's own counters (exported as meshpilot_als_*)."""

    streams_total: int = 0
    streams_active: int = 0
    streams_rejected: int = 0
    messages: int = 0
    http_entries: int = 0
    tcp_entries: int = 0
    unknown_proxy_entries: int = 0
    unknown_peer_entries: int = 0  # reporter=destination entries without a client id


@dataclass(eq=False)
class AlsStream:
    """One access-log stream from one proxy (Envoy opens one per logger config and
    worker thread)."""

    proxy: ProxyInfo | None
    log_name: str
    cache: dict[tuple, tuple] = field(default_factory=dict)
    generation: int = -1

    @property
    def reporter(self) -> str:
        return DESTINATION if self.log_name == ALS_INBOUND else SOURCE


@dataclass
class _Conn:
    """A TCP connection's state between its entries."""

    series: TcpSeries
    received: int = 0
    sent: int = 0
    opened: bool = False
    seen: float = 0.0


class _ProxyHooks(NoopHooks):
    """xDS stream hooks: proxies are known (for peer ids) from the moment they connect."""

    def __init__(self, collector: TelemetryCollector) -> None:
        self._collector = collector

    def on_stream_open(self, proxy: ProxyInfo) -> None:
        self._collector.proxy_seen(proxy)


class TelemetryCollector:
    """Cumulative series (`store`), the per-second window (`window`) and pipeline health,
    fed by ALS streams; `update_mesh` keeps the mesh index current."""

    def __init__(self, cluster_id: str = DEFAULT_CLUSTER_ID,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cluster_id = cluster_id
        self._clock = clock
        self.store = MetricStore()
        self.window = RequestWindow(clock)
        self.history = MetricHistory(self.store)  # samples for PromQL; the owner starts it
        self.health = PipelineHealth()
        self.hooks = _ProxyHooks(self)
        self._index = MeshIndex(clock=clock)
        # Bumped (from any thread) whenever cached labels may be stale; next() on a
        # count is atomic under the GIL, so concurrent bumps never collapse into one.
        self._generations = itertools.count(1)
        self._generation = 0
        self._proxies: OrderedDict[str, ProxyInfo] = OrderedDict()
        self._conns: dict[tuple[str, str], _Conn] = {}
        self._last_sweep = clock()

    # --- inputs besides the entries ---------------------------------------------------

    def update_mesh(self, snap: MeshSnapshot) -> None:
        """A new mesh snapshot: rebuild the index (may run in a worker thread; the swap
        is one assignment, then the generation bump drops cached labels)."""
        self._index = MeshIndex(snap, previous=self._index, clock=self._clock)
        self._generation = next(self._generations)

    def proxy_seen(self, proxy: ProxyInfo) -> None:
        """Remember a proxy's identity (xDS or ALS stream opened); labels change only if
        it is new or different."""
        old = self._proxies.get(proxy.id)
        self._proxies[proxy.id] = proxy
        self._proxies.move_to_end(proxy.id)
        if old != proxy:
            self._generation = next(self._generations)
        while len(self._proxies) > MAX_PROXIES:
            self._proxies.popitem(last=False)

    # --- streams ----------------------------------------------------------------------

    def open_stream(self, proxy: ProxyInfo | None, log_name: str) -> AlsStream:
        self.health.streams_total += 1
        self.health.streams_active += 1
        if proxy is not None:
            self.proxy_seen(proxy)
        return AlsStream(proxy, log_name)

    def close_stream(self, stream: AlsStream) -> None:
        self.health.streams_active -= 1

    def process(self, stream: AlsStream, msg: als_pb2.StreamAccessLogsMessage) -> None:
        """One message of a stream: its HTTP or TCP entries."""
        self.health.messages += 1
        if msg.HasField("http_logs"):
            self.process_http(stream, msg.http_logs.log_entry)
        elif msg.HasField("tcp_logs"):
            self.process_tcp(stream, msg.tcp_logs.log_entry)

    def _fresh(self, stream: AlsStream) -> dict[tuple, tuple]:
        if stream.generation != self._generation or len(stream.cache) > MAX_CACHE:
            stream.cache = {}
            stream.generation = self._generation
        return stream.cache

    # --- HTTP -------------------------------------------------------------------------

    def process_http(self, stream: AlsStream,
                     entries: Iterable[accesslog_pb2.HTTPAccessLogEntry]) -> None:
        health = self.health
        if stream.proxy is None:
            n = len(list(entries))
            health.http_entries += n
            health.unknown_proxy_entries += n
            return
        cache = self._fresh(stream)
        inbound = stream.reporter == DESTINATION
        window = self.window
        for e in entries:
            health.http_entries += 1
            cp = e.common_properties
            if cp.access_log_type not in _FINAL_HTTP:
                continue
            req, resp = e.request, e.response
            if req.request_method == _CONNECT:
                self._tunnel(stream, e)
                continue
            code = resp.response_code.value
            flags = response_flags(cp.response_flags) if cp.HasField(
                "response_flags") else NO_FLAGS
            ctype = req.request_headers.get("content-type", "")
            grpc = is_grpc(ctype)
            status = grpc_status(resp.response_trailers.get("grpc-status", ""),
                                 resp.response_headers.get("grpc-status", ""),
                                 code) if grpc else ""
            if inbound:
                peer = _peer_id(cp)
                if not peer:
                    health.unknown_peer_entries += 1
                key: tuple = (code, flags, grpc, status, peer, req.authority)
            else:
                cluster = _cluster(cp)
                host = cp.upstream_remote_address.socket_address
                special = not cluster.startswith("outbound|")
                key = (code, flags, grpc, status, cluster, host.address, host.port_value,
                       req.authority if special else "", cp.route_name if special else "")
            hit = cache.get(key)
            if hit is None:
                hit = cache[key] = self._http_labels(stream, e, grpc, status, flags, code)
            series, wkey = hit
            series.requests += 1
            d = cp.duration if cp.HasField("duration") else cp.time_to_last_downstream_tx_byte
            bucket = series.duration.observe(d.seconds * 1000 + d.nanos // 1_000_000)
            series.request_bytes.observe(
                cp.downstream_wire_bytes_received
                or req.request_headers_bytes + req.request_body_bytes)
            series.response_bytes.observe(
                cp.downstream_wire_bytes_sent
                or resp.response_headers_bytes + resp.response_body_bytes)
            window.record(wkey, code, bucket)

    def _http_labels(self, stream: AlsStream, e: accesslog_pb2.HTTPAccessLogEntry,
                     grpc: bool, status: str, flags: str, code: int) -> (
        tuple[HttpSeries, WindowKey]
    ):
        src, dst, service, csp = self._sides(stream, e.common_properties, e.request.authority)
        labels = (stream.reporter, *_source_labels(src), *_dest_labels(dst, service),
                  "grpc" if grpc else "http", str(code), status, flags, csp)
        wkey = (stream.reporter, service[1], service[2], dst.version)
        return self.store.http_series(labels), wkey

    # --- TCP --------------------------------------------------------------------------

    def process_tcp(self, stream: AlsStream,
                    entries: Iterable[accesslog_pb2.TCPAccessLogEntry]) -> None:
        health = self.health
        if stream.proxy is None:
            n = len(list(entries))
            health.tcp_entries += n
            health.unknown_proxy_entries += n
            return
        cache = self._fresh(stream)
        now = self._clock()
        proxy_id = stream.proxy.id
        for e in entries:
            health.tcp_entries += 1
            cp = e.common_properties
            conn_key = (proxy_id, cp.stream_id or _connection_key(cp))
            conn = self._conns.get(conn_key)
            if conn is None:
                flags = response_flags(cp.response_flags) if cp.HasField(
                    "response_flags") else NO_FLAGS
                cluster = _cluster(cp)
                host = cp.upstream_remote_address.socket_address
                key = ("tcp", flags, cluster, host.address, host.port_value)
                series = cache.get(key)
                if series is None:
                    series = cache[key] = self._tcp_labels(stream, cp, "", flags)
                conn = self._conns[conn_key] = _Conn(series)
            series = conn.series
            props = e.connection_properties
            if props.received_bytes > conn.received:
                series.received_bytes += props.received_bytes - conn.received
                conn.received = props.received_bytes
            if props.sent_bytes > conn.sent:
                series.sent_bytes += props.sent_bytes - conn.sent
                conn.sent = props.sent_bytes
            if not conn.opened:
                conn.opened = True
                series.opened += 1
            conn.seen = now
            if cp.access_log_type in (_TCP_END, accesslog_pb2.AccessLogType.NotSet):
                series.closed += 1
                del self._conns[conn_key]
        if now - self._last_sweep > 60:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Forget connections whose end entry never came (Envoy restarted, stream lost)."""
        self._last_sweep = now
        for key in [k for k, c in self._conns.items() if now - c.seen > CONN_IDLE_SECONDS]:
            del self._conns[key]

    def _tunnel(self, stream: AlsStream, e: accesslog_pb2.HTTPAccessLogEntry) -> None:
        """A CONNECT tunnel through the outbound proxy: one TCP connection, counted when
        its single entry (at the tunnel's end) arrives."""
        cp = e.common_properties
        flags = response_flags(cp.response_flags) if cp.HasField(
            "response_flags") else NO_FLAGS
        if flags != NO_FLAGS and e.response.response_code.value == 200:
            flags = _tunnel_flags(flags)
        cluster = _cluster(cp)
        host = cp.upstream_remote_address.socket_address
        authority = e.request.authority
        key = ("connect", flags, cluster, host.address, host.port_value, authority,
               cp.route_name)
        cache = self._fresh(stream)
        series = cache.get(key)
        if series is None:
            series = cache[key] = self._tcp_labels(stream, cp, authority, flags)
        series.opened += 1
        series.closed += 1
        series.received_bytes += e.request.request_body_bytes
        series.sent_bytes += e.response.response_body_bytes

    def _tcp_labels(self, stream: AlsStream, cp: accesslog_pb2.AccessLogCommon,
                    authority: str, flags: str) -> TcpSeries:
        src, dst, service, csp = self._sides(stream, cp, authority)
        labels = (stream.reporter, *_source_labels(src), *_dest_labels(dst, service), "tcp",
                  flags, csp)
        return self.store.tcp_series(labels)

    # --- label derivation (cache misses only) -------------------------------------------

    def _sides(self, stream: AlsStream, cp: accesslog_pb2.AccessLogCommon,
               authority: str) -> tuple[Workload, Workload, tuple[str, str, str], str]:
        """(source, destination, (service, service name, service namespace),
        connection_security_policy) for an entry of `stream` (see module doc)."""
        proxy = stream.proxy
        assert proxy is not None
        me = self._identity(proxy)
        if stream.reporter == DESTINATION:
            peer = _peer_id(cp)
            src = self._proxy_workload(peer) if peer else UNKNOWN_WORKLOAD
            ref = self._index.service_for_authority(proxy.namespace, proxy.name, authority)
            if ref is not None:
                service = (ref.host, ref.name, ref.namespace)
            else:  # Istio's fallback: the Host header, else the canonical name
                host = authority or me.canonical_service
                service = (host, host, proxy.namespace)
            return src, me, service, "none"
        cluster = _cluster(cp)
        host = cp.upstream_remote_address.socket_address
        dst = self._upstream_workload(host.address, host.port_value) if host.address else (
            UNKNOWN_WORKLOAD)
        return me, dst, self._source_service(cluster, cp.route_name, authority), UNKNOWN

    def _source_service(self, cluster: str, route: str, authority: str) -> (
        tuple[str, str, str]
    ):
        host = authority or UNKNOWN
        if route.startswith("block_all"):
            return host, BLACKHOLE_CLUSTER, UNKNOWN
        if route.startswith("allow_any"):
            return host, PASSTHROUGH_CLUSTER, UNKNOWN
        if cluster in _SPECIAL_CLUSTERS:
            return host, cluster, UNKNOWN
        parts = cluster.split("|")
        if len(parts) == 4 and parts[0] == "outbound":
            ref = self._index.service(parts[3])
            if ref is not None:
                return ref.host, ref.name, ref.namespace
            return _guess_service(parts[3])
        return host, host, UNKNOWN

    def _identity(self, proxy: ProxyInfo) -> Workload:
        return workload_identity(proxy.workload, proxy.namespace, proxy.labels,
                                 self.cluster_id)

    def _proxy_workload(self, proxy_id: str) -> Workload:
        """A peer by node id: a known proxy, else its WorkloadEntry, else unknown."""
        proxy = self._proxies.get(proxy_id)
        if proxy is not None:
            return self._identity(proxy)
        name, _, namespace = proxy_id.rpartition(".")
        ref = self._index.workload(namespace, name)
        if ref is None:
            return UNKNOWN_WORKLOAD
        return workload_identity(ref.name, ref.namespace, ref.labels, self.cluster_id)

    def _upstream_workload(self, address: str, port: int) -> Workload:
        ref = self._index.endpoint(address, port)
        if ref is None:
            return UNKNOWN_WORKLOAD
        proxy = self._proxies.get(ref.proxy_id)
        workload = proxy.workload if proxy is not None else ref.name
        return workload_identity(workload, ref.namespace, ref.labels, self.cluster_id)

    # --- queries --------------------------------------------------------------------------

    def window_summary(self, service: str, **kw: object) -> WindowSummary:
        return self.window.summary(service, **kw)  # type: ignore[arg-type]


def _tunnel_flags(flags: str) -> str:
    """An established tunnel ends when one side closes: Envoy flags that DC (client) or
    UC (server) on the CONNECT stream, but for the TCP connection it carries that is the
    normal end, which tcp_proxy reports without a flag (the server side's row says `-`)."""
    kept = [f for f in flags.split(",") if f not in ("DC", "UC")]
    return ",".join(kept) if kept else NO_FLAGS


def _cluster(cp: accesslog_pb2.AccessLogCommon) -> str:
    """The route's cluster (custom tag; `-` when the route had none), else the upstream
    host's cluster."""
    tag = cp.custom_tags.get(CLUSTER_TAG, "")
    return (tag if tag != "-" else "") or cp.upstream_cluster


def _peer_id(cp: accesslog_pb2.AccessLogCommon) -> str:
    meta = cp.metadata.filter_metadata
    if PEER_METADATA_NAMESPACE not in meta:
        return ""
    value = meta[PEER_METADATA_NAMESPACE].fields.get(PEER_METADATA_KEY)
    return value.string_value if value is not None else ""


def _connection_key(cp: accesslog_pb2.AccessLogCommon) -> str:
    """Without a stream id (older Envoy): the downstream 4-tuple and start time."""
    remote = cp.downstream_remote_address.socket_address
    local = cp.downstream_local_address.socket_address
    return (f"{remote.address}:{remote.port_value}-{local.address}:{local.port_value}@"
            f"{cp.start_time.seconds}.{cp.start_time.nanos}")


def _guess_service(host: str) -> tuple[str, str, str]:
    """A cluster for a host the index does not know (yet): `name.ns.svc...` reads as a
    Kubernetes service, anything else is its own name (Istio's fallback: the first
    label of the host)."""
    labels = host.split(".")
    if len(labels) >= 3 and labels[2] == "svc":
        return host, labels[0], labels[1]
    return host, labels[0], UNKNOWN


def _source_labels(w: Workload) -> tuple[str, ...]:
    return (w.workload, w.canonical_service, w.canonical_revision, w.namespace, w.principal,
            w.app, w.version, w.cluster)


def _dest_labels(w: Workload, service: tuple[str, str, str]) -> tuple[str, ...]:
    return (w.workload, w.namespace, w.principal, w.app, w.version, service[0],
            w.canonical_service, w.canonical_revision, service[1], service[2], w.cluster)


__all__ = ["AlsStream", "PipelineHealth", "ServiceRef", "TelemetryCollector"]
