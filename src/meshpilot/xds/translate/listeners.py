"""Listeners (LDS) for sidecars: `virtualOutbound` (the app's explicit HTTP proxy) and
`virtualInbound` (where other sidecars reach this workload).

Without iptables there is no transparent capture: the app sends requests to the outbound
listener as to any HTTP proxy (`curl -x http://127.0.0.1:15001 http://sample-app/`).
Envoy accepts absolute-form request URIs and takes the authority from them, so the Host
picks the virtual host exactly as a transparently captured request would. TCP reaches
mesh services through the same listener with HTTP CONNECT (see tcproutes.py), so the
outbound HCM accepts CONNECT; the inbound one does not (nothing tunnels to it).

A workload whose app speaks raw TCP (`--app-protocol tcp`) gets an inbound listener with
tcp_proxy to `inbound|<app_port>||` instead of the HCM, as Istio's inbound TCP chain.

When the proxy names an access log file, every HCM and tcp_proxy here logs to it in
Istio's default text format (accesslog.py); CONNECT tunnels are HCM routes, so the
outbound HCM's log covers them too.

Every HCM and tcp_proxy also streams its entries to the control plane (gRPC access-log
service) for Istio's standard metrics, and the inbound HCM first lifts the client's
peer-id header into dynamic metadata (telemetry.py).
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, protocol_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.dynamic_forward_proxy.v3 import (
    dynamic_forward_proxy_pb2 as dfp_filter_pb2,
)
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from google.protobuf import wrappers_pb2

from ...snapshot.mesh import MeshConfig
from ..types import ProxyInfo
from .accesslog import proxy_access_logs
from .clusters import passthrough_dns_cache
from .common import (
    DFP_FILTER,
    HCM_FILTER,
    ROUTER_FILTER,
    TCP_PROXY_FILTER,
    VIRTUAL_INBOUND,
    VIRTUAL_OUTBOUND,
    ads_source,
    duration,
    pack,
    socket_address,
)
from .routes import CORS_FILTER, FAULT_FILTER
from .tcproutes import TCP_IDLE_TIMEOUT
from .telemetry import add_tcp_telemetry, http_grpc_access_log, log_name_for, peer_id_to_metadata

HCM = hcm_pb2.HttpConnectionManager


def _router() -> hcm_pb2.HttpFilter:
    return hcm_pb2.HttpFilter(name=ROUTER_FILTER, typed_config=pack(router_pb2.Router()))


def _fault() -> hcm_pb2.HttpFilter:
    """Istio's empty fault filter: inert until a route's typed_per_filter_config sets a fault."""
    return hcm_pb2.HttpFilter(name=FAULT_FILTER, typed_config=pack(fault_pb2.HTTPFault()))


def _cors() -> hcm_pb2.HttpFilter:
    """Istio's empty CORS filter: inert until a route's typed_per_filter_config sets a policy."""
    return hcm_pb2.HttpFilter(name=CORS_FILTER, typed_config=pack(cors_pb2.Cors()))


def _dynamic_forward_proxy() -> hcm_pb2.HttpFilter:
    """Resolves the Host for PassthroughCluster routes; does nothing on other clusters."""
    cfg = dfp_filter_pb2.FilterConfig(dns_cache_config=passthrough_dns_cache())
    return hcm_pb2.HttpFilter(name=DFP_FILTER, typed_config=pack(cfg))


def http_connection_manager(
    stat_prefix: str, route_config: str, *, passthrough: bool, connect: bool = False,
    file_logs: Sequence[accesslog_pb2.AccessLog] = (), als_log_name: str | None = None,
    peer_id_filter: bool = False,
) -> hcm_pb2.HttpConnectionManager:
    """Istio's HCM defaults that matter here. Filter order as Istio's listener_builder:
    fault, then CORS (so a faulted route aborts even a preflight), then the router last;
    the DFP filter, which Istio has no counterpart for, sits just before the router.
    `connect` lets CONNECT requests reach the routes (Envoy refuses them otherwise); only
    routes with a connect_matcher can match them. `file_logs`: Istio's file access log
    on this HCM (one line per request or tunnel; accesslog.py), none when empty. `als_log_name`:
    stream every request to the control plane's access-log service under that name
    (telemetry.py); `peer_id_filter`: lift the client's peer-id header into metadata
    first (inbound HCMs)."""
    filters = [_fault(), _cors()]
    if peer_id_filter:
        filters.insert(0, peer_id_to_metadata())
    if passthrough:
        filters.append(_dynamic_forward_proxy())
    hcm = HCM(
        stat_prefix=stat_prefix,
        codec_type=HCM.AUTO,
        rds=hcm_pb2.Rds(config_source=ads_source(), route_config_name=route_config),
        http_filters=[*filters, _router()],
        http_protocol_options=protocol_pb2.Http1ProtocolOptions(
            allow_absolute_url=wrappers_pb2.BoolValue(value=True)
        ),
        use_remote_address=wrappers_pb2.BoolValue(value=False),
        normalize_path=wrappers_pb2.BoolValue(value=True),
        path_with_escaped_slashes_action=HCM.KEEP_UNCHANGED,
        stream_idle_timeout=duration(seconds=0),
        upgrade_configs=[HCM.UpgradeConfig(upgrade_type="websocket")],
        # Sidecars are transparent: the app's own Server header reaches the client, as in
        # Istio (the seed tells versions apart by `nginx/1.21` vs `nginx/1.22`).
        server_header_transformation=HCM.PASS_THROUGH,
        access_log=list(file_logs),
    )
    if als_log_name is not None:
        hcm.access_log.append(http_grpc_access_log(als_log_name))
    if connect:
        hcm.upgrade_configs.append(HCM.UpgradeConfig(upgrade_type="CONNECT"))
    return hcm


def _listener(
    name: str, address: str, port: int, direction: int,
    network_filter: listener_components_pb2.Filter,
) -> listener_pb2.Listener:
    return listener_pb2.Listener(
        name=name,
        address=socket_address(address, port),
        traffic_direction=direction,
        filter_chains=[listener_components_pb2.FilterChain(filters=[network_filter])],
    )


def _hcm_filter(hcm: hcm_pb2.HttpConnectionManager) -> listener_components_pb2.Filter:
    return listener_components_pb2.Filter(name=HCM_FILTER, typed_config=pack(hcm))


def outbound_listener(proxy: ProxyInfo, route_config: str, *, passthrough: bool,
                      mesh: MeshConfig) -> listener_pb2.Listener:
    assert proxy.outbound_port is not None
    hcm = http_connection_manager(
        f"outbound_0.0.0.0_{proxy.outbound_port}", route_config, passthrough=passthrough,
        connect=True, file_logs=proxy_access_logs(proxy),
        als_log_name=log_name_for(proxy, mesh, inbound=False),
    )
    return _listener(VIRTUAL_OUTBOUND, "127.0.0.1", proxy.outbound_port,
                     base_pb2.TrafficDirection.OUTBOUND, _hcm_filter(hcm))


def inbound_listener(proxy: ProxyInfo, route_config: str, app_port: int,
                     mesh: MeshConfig) -> listener_pb2.Listener:
    assert proxy.inbound_port is not None
    hcm = http_connection_manager(f"inbound_0.0.0.0_{app_port}", route_config, passthrough=False,
                                  file_logs=proxy_access_logs(proxy),
                                  als_log_name=log_name_for(proxy, mesh, inbound=True),
                                  peer_id_filter=mesh.metrics_enabled)
    return _listener(VIRTUAL_INBOUND, proxy.address, proxy.inbound_port,
                     base_pb2.TrafficDirection.INBOUND, _hcm_filter(hcm))


def inbound_tcp_listener(proxy: ProxyInfo, cluster: str, mesh: MeshConfig) -> (
    listener_pb2.Listener
):
    """Inbound for a raw-TCP app: every connection is proxied byte for byte to the app
    (Istio's inbound tcp_proxy, with its 1h idle timeout)."""
    assert proxy.inbound_port is not None
    tcp = tcp_proxy_pb2.TcpProxy(stat_prefix=cluster, cluster=cluster,
                                 idle_timeout=duration(TCP_IDLE_TIMEOUT),
                                 access_log=proxy_access_logs(proxy))
    add_tcp_telemetry(tcp, log_name_for(proxy, mesh, inbound=True))
    network_filter = listener_components_pb2.Filter(name=TCP_PROXY_FILTER,
                                                    typed_config=pack(tcp))
    return _listener(VIRTUAL_INBOUND, proxy.address, proxy.inbound_port,
                     base_pb2.TrafficDirection.INBOUND, network_filter)
