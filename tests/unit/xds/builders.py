"""Tiny Envoy resource builders shared by the xDS unit and e2e tests."""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import address_pb2, config_source_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.matcher.v3 import regex_pb2
from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from meshpilot.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    ProxyResources,
)


def _ads() -> config_source_pb2.ConfigSource:
    src = config_source_pb2.ConfigSource(resource_api_version=config_source_pb2.V3)
    src.ads.SetInParent()
    return src


def _any(msg) -> any_pb2.Any:
    a = any_pb2.Any()
    a.Pack(msg)
    return a


def cluster(name: str, *, timeout_ms: int = 250) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS,
                            connect_timeout=duration_pb2.Duration(nanos=timeout_ms * 1_000_000))
    c.eds_cluster_config.eds_config.CopyFrom(_ads())
    return c


def cla(name: str, port: int, host: str = "127.0.0.1") -> endpoint_pb2.ClusterLoadAssignment:
    addr = address_pb2.Address(socket_address=address_pb2.SocketAddress(
        address=host, port_value=port))
    lb = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=addr))
    return endpoint_pb2.ClusterLoadAssignment(
        cluster_name=name, endpoints=[endpoint_components_pb2.LocalityLbEndpoints(
            lb_endpoints=[lb])])


def listener(name: str, port: int, route_name: str, *,
             host: str = "127.0.0.1") -> listener_pb2.Listener:
    hcm = hcm_pb2.HttpConnectionManager(
        stat_prefix=name,
        rds=hcm_pb2.Rds(config_source=_ads(), route_config_name=route_name),
        http_filters=[hcm_pb2.HttpFilter(name="envoy.filters.http.router",
                                         typed_config=_any(router_pb2.Router()))])
    chain = listener_components_pb2.FilterChain(filters=[listener_components_pb2.Filter(
        name="envoy.filters.network.http_connection_manager", typed_config=_any(hcm))])
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(socket_address=address_pb2.SocketAddress(
            address=host, port_value=port)),
        filter_chains=[chain])


def route(name: str, clusters: dict[str, int] | str, *, header: str = "",
          mirror: str = "", bad_regex: bool = False) -> route_pb2.RouteConfiguration:
    """A catch-all route to one cluster (str) or weighted clusters ({name: weight})."""
    action = route_components_pb2.RouteAction()
    if isinstance(clusters, str):
        action.cluster = clusters
    else:
        for cname, weight in clusters.items():
            action.weighted_clusters.clusters.add(
                name=cname, weight=wrappers_pb2.UInt32Value(value=weight))
    if mirror:
        action.request_mirror_policies.add(cluster=mirror)
    match = route_components_pb2.RouteMatch(prefix="/")
    if bad_regex:
        match = route_components_pb2.RouteMatch(safe_regex=regex_pb2.RegexMatcher(regex="(["))
    vhost = route_components_pb2.VirtualHost(
        name="all", domains=["*"],
        routes=[route_components_pb2.Route(match=match, route=action)])
    cfg = route_pb2.RouteConfiguration(name=name, virtual_hosts=[vhost])
    if header:
        opt = cfg.response_headers_to_add.add()
        opt.header.key = "x-cfg"
        opt.header.value = header
    return cfg


def resources(*, clusters=(), endpoints=(), listeners=(), routes=()) -> ProxyResources:
    return ProxyResources({
        CLUSTER_TYPE: {c.name: c for c in clusters},
        ENDPOINT_TYPE: {e.cluster_name: e for e in endpoints},
        LISTENER_TYPE: {x.name: x for x in listeners},
        ROUTE_TYPE: {r.name: r for r in routes},
    })


def simple(*, clusters: dict[str, int], route_to: dict[str, int] | str,
           listen_port: int = 10000, header: str = "", timeout_ms: int = 250,
           bad_regex: bool = False) -> ProxyResources:
    """listener_0 -> RDS route_0 -> clusters (EDS, one endpoint each at the given port)."""
    return resources(
        clusters=[cluster(n, timeout_ms=timeout_ms) for n in clusters],
        endpoints=[cla(n, p) for n, p in clusters.items()],
        listeners=[listener("listener_0", listen_port, "route_0")],
        routes=[route("route_0", route_to, header=header, bad_regex=bad_regex)],
    )


def tcp_listener(name: str, port: int, cluster_name: str) -> listener_pb2.Listener:
    """A TCP proxy listener: it references a cluster directly (no RDS in between)."""
    from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

    tcp = tcp_proxy_pb2.TcpProxy(stat_prefix=name, cluster=cluster_name)
    chain = listener_components_pb2.FilterChain(filters=[listener_components_pb2.Filter(
        name="envoy.filters.network.tcp_proxy", typed_config=_any(tcp))])
    return listener_pb2.Listener(
        name=name, address=address_pb2.Address(socket_address=address_pb2.SocketAddress(
            address="127.0.0.1", port_value=port)), filter_chains=[chain])
