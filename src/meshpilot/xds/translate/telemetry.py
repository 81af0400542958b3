"""Telemetry plumbing in the translated config: every request and TCP connection a proxy
handles is streamed to the control plane over Envoy's gRPC access-log service (ALS), where
meshpilot/telemetry turns it into Istio's standard metrics.

Istio computes those metrics inside Envoy with its own stats filter, which stock Envoy
does not have; meshpilot depends on no Istio-specific build, so the raw facts travel to
the control plane instead. What this module adds, and why:

- An `envoy.access_loggers.http_grpc` logger on every HTTP connection manager and an
  `envoy.access_loggers.tcp_grpc` logger on every tcp_proxy, sending to the static
  bootstrap cluster `xds_cluster` (the control plane's gRPC port serves ALS beside ADS).
  The `log_name` says which side of the mesh the listener is (`ALS_OUTBOUND` for a
  sidecar's outbound proxy and for gateways, `ALS_INBOUND` for a sidecar's inbound
  listener): it becomes Istio's `reporter` label (source / destination).
- A custom tag `cluster` = `%UPSTREAM_CLUSTER_RAW%`: Envoy fills the ALS `upstream_cluster`
  field only once an upstream host was chosen, so a fault-aborted request (FI) would lose
  its destination service; the route's cluster is known to the formatter either way.
- `content-type` from the request (gRPC vs HTTP) and `grpc-status` from the response
  headers and trailers (Istio's `grpc_response_status`).
- Peer identity for `reporter="destination"`: a server sidecar cannot tell which proxy a
  loopback connection came from, so the client stamps its node id on every request it
  routes (`x-envoy-peer-metadata-id`, Istio's header name for the same purpose, set at the
  route-configuration level with OVERWRITE_IF_EXISTS_OR_ADD so an app cannot spoof it
  through its sidecar) and the server's inbound HCM moves it into dynamic metadata
  (`meshpilot.peer` / `id`) with `envoy.filters.http.header_to_metadata` before anything
  else runs: the app never sees the header, and the ALS entry carries the id. Like
  Istio's plaintext metadata exchange, the id is only as trustworthy as the network (a
  client without a sidecar can send any id), and it also reaches hosts outside the mesh
  (it is only `name.namespace`).
- tcp_proxy `access_log_options`: flush on upstream connect (a connection is counted as
  opened when it opens, as Istio's stats filter does) and every `TCP_FLUSH_INTERVAL`
  (bytes of long-lived connections show up while they live, Istio's 5 s
  tcp_reporting_duration). These options apply to every logger of the filter, so the
  file access log is restricted to the final entry and keeps one line per connection.

Everything here is pure: the same proxy gives the same protos.
"""

from __future__ import annotations

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import config_source_pb2, grpc_service_pb2
from envoy.config.route.v3 import route_pb2
from envoy.data.accesslog.v3 import accesslog_pb2 as log_data_pb2
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.filters.http.header_to_metadata.v3 import header_to_metadata_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.type.tracing.v3 import custom_tag_pb2

from ...snapshot.mesh import MeshConfig
from ..types import ProxyInfo
from .common import duration, pack, u32

# The bootstrap's static cluster for the control plane (proxy/bootstrap.py XDS_CLUSTER; a
# unit test keeps the two equal: the translator must not import the proxy launcher).
XDS_CLUSTER = "xds_cluster"

HTTP_GRPC_ACCESS_LOG = "envoy.access_loggers.http_grpc"
TCP_GRPC_ACCESS_LOG = "envoy.access_loggers.tcp_grpc"
HEADER_TO_METADATA_FILTER = "envoy.filters.http.header_to_metadata"

# ALS log names: the stream's identifier carries them, the collector maps them to
# Istio's reporter label.
ALS_OUTBOUND = "meshpilot/outbound"  # sidecar outbound proxy, gateways: reporter=source
ALS_INBOUND = "meshpilot/inbound"  # sidecar inbound listener: reporter=destination

# Istio's metadata-exchange header name; the value is the client proxy's node id.
PEER_ID_HEADER = "x-envoy-peer-metadata-id"
PEER_METADATA_NAMESPACE = "meshpilot.peer"
PEER_METADATA_KEY = "id"
CLUSTER_TAG = "cluster"  # custom tag: the route's cluster, also for local replies

# Envoy flushes a logger's buffer when it holds this many bytes or when the interval
# passes, whichever is first. 200 ms keeps metrics fresh for canary analysis (a request
# is visible on /metrics ~0.2-0.3 s after it ends, see the e2e test); 64 KiB (about 150
# entries) keeps the number of gRPC messages low under load.
ALS_FLUSH_INTERVAL = "0.2s"
ALS_BUFFER_BYTES = 64 * 1024
TCP_FLUSH_INTERVAL = "5s"  # Istio's tcp_reporting_duration default

REQUEST_HEADERS_TO_LOG = ("content-type",)
RESPONSE_HEADERS_TO_LOG = ("grpc-status",)
RESPONSE_TRAILERS_TO_LOG = ("grpc-status",)


def _common_config(log_name: str) -> als_pb2.CommonGrpcAccessLogConfig:
    service = grpc_service_pb2.GrpcService(
        envoy_grpc=grpc_service_pb2.GrpcService.EnvoyGrpc(cluster_name=XDS_CLUSTER))
    return als_pb2.CommonGrpcAccessLogConfig(
        log_name=log_name,
        grpc_service=service,
        transport_api_version=config_source_pb2.ApiVersion.V3,
        buffer_flush_interval=duration(ALS_FLUSH_INTERVAL),
        buffer_size_bytes=u32(ALS_BUFFER_BYTES),
        custom_tags=[custom_tag_pb2.CustomTag(tag=CLUSTER_TAG, value="%UPSTREAM_CLUSTER_RAW%")],
    )


def http_grpc_access_log(log_name: str) -> accesslog_pb2.AccessLog:
    """The ALS logger of one HTTP connection manager."""
    cfg = als_pb2.HttpGrpcAccessLogConfig(
        common_config=_common_config(log_name),
        additional_request_headers_to_log=REQUEST_HEADERS_TO_LOG,
        additional_response_headers_to_log=RESPONSE_HEADERS_TO_LOG,
        additional_response_trailers_to_log=RESPONSE_TRAILERS_TO_LOG,
    )
    return accesslog_pb2.AccessLog(name=HTTP_GRPC_ACCESS_LOG, typed_config=pack(cfg))


def tcp_grpc_access_log(log_name: str) -> accesslog_pb2.AccessLog:
    """The ALS logger of one tcp_proxy."""
    cfg = als_pb2.TcpGrpcAccessLogConfig(common_config=_common_config(log_name))
    return accesslog_pb2.AccessLog(name=TCP_GRPC_ACCESS_LOG, typed_config=pack(cfg))


def log_name_for(proxy: ProxyInfo, mesh: MeshConfig, *, inbound: bool) -> str | None:
    """Sidecar inbound listeners report as the destination; everything else (sidecar
    outbound, gateways) as the source, as Istio's stats filter picks its reporter. None
    when the mesh turned metrics off (MeshConfig `defaultProviders: {metrics: []}`)."""
    if not mesh.metrics_enabled:
        return None
    return ALS_INBOUND if inbound and proxy.kind == "sidecar" else ALS_OUTBOUND


def peer_id_to_metadata() -> hcm_pb2.HttpFilter:
    """The inbound HCM's first filter: the client's node id header -> dynamic metadata,
    removed from the request so the app never sees it."""
    rule = header_to_metadata_pb2.Config.Rule(
        header=PEER_ID_HEADER,
        on_header_present=header_to_metadata_pb2.Config.KeyValuePair(
            metadata_namespace=PEER_METADATA_NAMESPACE, key=PEER_METADATA_KEY,
            type=header_to_metadata_pb2.Config.STRING),
        remove=True,
    )
    cfg = header_to_metadata_pb2.Config(request_rules=[rule])
    return hcm_pb2.HttpFilter(name=HEADER_TO_METADATA_FILTER, typed_config=pack(cfg))


def stamp_peer_id(route_config: route_pb2.RouteConfiguration, proxy: ProxyInfo,
                  mesh: MeshConfig) -> None:
    """Every request this proxy routes carries its node id to the next hop (see module
    doc); route-configuration level, so it covers every virtual host and route. Nothing
    when metrics are off: no one would read it."""
    if not mesh.metrics_enabled:
        return
    header = route_config.request_headers_to_add.add()
    header.header.key = PEER_ID_HEADER
    header.header.value = proxy.id
    header.append_action = header.OVERWRITE_IF_EXISTS_OR_ADD


def add_tcp_telemetry(tcp: tcp_proxy_pb2.TcpProxy, log_name: str | None) -> None:
    """ALS on a tcp_proxy: flushed on connect and periodically. The periodic and connect
    flushes apply to every logger of the filter, so loggers already there (the file
    access log) are limited to the connection's final entry: one line per connection.
    No `log_name` (metrics off): nothing changes."""
    if log_name is None:
        return
    for log in tcp.access_log:
        if not log.HasField("filter"):
            log.filter.log_type_filter.types.append(log_data_pb2.AccessLogType.TcpConnectionEnd)
    tcp.access_log.append(tcp_grpc_access_log(log_name))
    options = tcp.access_log_options
    options.flush_access_log_on_connected = True
    options.access_log_flush_interval.CopyFrom(duration(TCP_FLUSH_INTERVAL))
