"""Route configurations (RDS): the sidecar's outbound HTTP-proxy routes and inbound routes.

The outbound listener is an explicit HTTP proxy, so one route configuration serves every
service: the request's Host (or absolute-form URI) selects the virtual host. Istio splits
by listener port and ignores the port in Host matching; here the port is part of the
domain instead (`name:8080`), with bare names only for port 80, where clients omit it.

Non-HTTP ports (TCP, TLS, HTTPS...) get a virtual host too, with `name:<port>` domains
only: clients reach them with `CONNECT name:<port>`, which always names the port, and its
routes tunnel the bytes (tcproutes.py). The final `*` vhost also answers CONNECT for
hosts the mesh does not know, per outbound traffic policy.

Every outbound request carries this proxy's node id to the next hop
(`x-envoy-peer-metadata-id`, telemetry.py), so the server side can label its metrics
with the client workload.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from google.protobuf import wrappers_pb2

from ...registry import host_aliases
from ...snapshot import MeshSnapshot, build_subset_key
from ..types import ProxyInfo
from .common import ALLOW_ANY, BLACKHOLE_CLUSTER, BLOCK_ALL, PASSTHROUGH_CLUSTER
from .hashing import apply_service_hash
from .routes import RouteContext, default_route, inbound_route, set_timeout, virtual_service_routes
from .tcproutes import connect_route, opaque_port_routes
from .telemetry import stamp_peer_id

HTTP_DEFAULT_PORT = 80


def outbound_route_config_name(proxy: ProxyInfo) -> str:
    return str(proxy.outbound_port)


def inbound_route_config_name(app_port: int) -> str:
    """Named after the inbound cluster, as Istio names inbound HTTP route configs."""
    return f"inbound|{app_port}||"


def vhost_domains(aliases: Iterable[str], port: int) -> list[str]:
    """`name` and `name:80` for port 80; only `name:<port>` for other ports."""
    out: list[str] = []
    for alias in aliases:
        if port == HTTP_DEFAULT_PORT:
            out.append(alias)
        out.append(f"{alias}:{port}")
    return out


class _Domains:
    """Envoy rejects a route configuration that lists one domain twice: first one wins."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def claim(self, domains: Iterable[str]) -> list[str]:
        out = []
        for d in domains:
            if d not in self.used:
                self.used.add(d)
                out.append(d)
        return out


def _catch_all(snap: MeshSnapshot, clusters: Collection[str]) -> rc.VirtualHost:
    """Istio's final `*` vhost: allow_any -> PassthroughCluster, or block_all -> 502.

    Prefix routes never match CONNECT, so each case has a CONNECT twin: ALLOW_ANY tunnels
    to the requested `host:port` (the dynamic forward proxy resolves the authority, as
    Istio's passthrough forwards TCP to any original destination), REGISTRY_ONLY answers
    502 as it does for plain requests."""
    if snap.mesh.outbound_traffic_policy == "ALLOW_ANY" and PASSTHROUGH_CLUSTER in clusters:
        route = rc.Route(name=ALLOW_ANY, match=rc.RouteMatch(prefix="/"))
        route.route.cluster = PASSTHROUGH_CLUSTER
        set_timeout(route.route, None)
        tunnel = connect_route(f"{ALLOW_ANY}_connect")
        tunnel.route.cluster = PASSTHROUGH_CLUSTER
        return rc.VirtualHost(name=ALLOW_ANY, domains=["*"], routes=[route, tunnel])
    route = rc.Route(name=BLOCK_ALL, match=rc.RouteMatch(prefix="/"))
    route.direct_response.status = 502
    refused = rc.Route(name=f"{BLOCK_ALL}_connect")
    refused.match.connect_matcher.SetInParent()
    refused.direct_response.status = 502
    return rc.VirtualHost(name=BLOCK_ALL, domains=["*"], routes=[route, refused])


def outbound_route_config(
    snap: MeshSnapshot, proxy: ProxyInfo, clusters: Collection[str]
) -> route_pb2.RouteConfiguration:
    """One vhost per port of each service exported to the proxy's namespace, routed by the
    VirtualService that namespace sees for it (exportTo), then the catch-all."""
    domains = _Domains()
    vhosts: list[rc.VirtualHost] = []
    for svc in snap.services_for(proxy.namespace):
        vs = snap.virtual_service_for(svc.hostname, proxy.namespace)
        aliases = host_aliases(svc, proxy.namespace, snap.mesh.domain_suffix)
        for port in svc.http_ports:
            routes: list[rc.Route] = []
            if vs is not None:
                routes = virtual_service_routes(
                    RouteContext(snap, proxy, vs, port.port, clusters)
                )
            if not routes:
                cluster = build_subset_key(port.port, "", svc.hostname)
                if cluster not in clusters:
                    cluster = BLACKHOLE_CLUSTER
                routes = [default_route(cluster, svc.hostname, port.port)]
                apply_service_hash(routes[0], snap, proxy, svc, port.port)  # DR consistentHash
            names = domains.claim(vhost_domains(aliases, port.port))
            if names:
                vhosts.append(rc.VirtualHost(
                    name=f"{svc.hostname}:{port.port}", domains=names, routes=routes
                ))
        for port in svc.opaque_ports:
            names = domains.claim(f"{alias}:{port.port}" for alias in aliases)
            if names:
                vhosts.append(rc.VirtualHost(
                    name=f"{svc.hostname}:{port.port}", domains=names,
                    routes=opaque_port_routes(snap, proxy, svc, port, clusters),
                ))
    # VirtualService hosts that are not services (visible to this proxy) still get a
    # vhost on port 80 (Istio).
    for host, vs in sorted(snap.mesh_virtual_services_for(proxy.namespace).items()):
        if host == "*" or snap.visible_service(host, proxy.namespace) is not None:
            continue
        routes = virtual_service_routes(
            RouteContext(snap, proxy, vs, HTTP_DEFAULT_PORT, clusters)
        )
        names = domains.claim(vhost_domains([host], HTTP_DEFAULT_PORT))
        if routes and names:
            vhosts.append(rc.VirtualHost(
                name=f"{host}:{HTTP_DEFAULT_PORT}", domains=names, routes=routes
            ))
    vhosts.sort(key=lambda v: v.name)
    vhosts.append(_catch_all(snap, clusters))
    out = route_pb2.RouteConfiguration(
        name=outbound_route_config_name(proxy),
        virtual_hosts=vhosts,
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )
    stamp_peer_id(out, proxy, snap.mesh)
    return out


def inbound_route_config(app_port: int, cluster: str) -> route_pb2.RouteConfiguration:
    return route_pb2.RouteConfiguration(
        name=inbound_route_config_name(app_port),
        virtual_hosts=[rc.VirtualHost(
            name=f"inbound|http|{app_port}", domains=["*"], routes=[inbound_route(cluster)]
        )],
        validate_clusters=wrappers_pb2.BoolValue(value=False),
    )
