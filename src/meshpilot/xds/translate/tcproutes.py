"""VirtualService `tcp` and `tls` rules -> CONNECT tunnels on the explicit outbound proxy.

Istio captures a TCP connection to `service-VIP:port` with iptables and picks a filter chain
(tcp_proxy) on the outbound listener for that VIP. An explicit proxy sees no VIP: the client
tells it where to go with HTTP CONNECT (`CONNECT tcp-echo:9000 HTTP/1.1`, what `curl -p -x`
or any proxy-aware client sends), so each non-HTTP service port gets a virtual host whose
domains are its `host:port` aliases, and routes with a `connect_matcher` that terminate the
CONNECT and tunnel the raw bytes to the chosen cluster. Envoy then opens a plain TCP
connection upstream (the server sidecar's inbound listener runs tcp_proxy to the app), so
the bytes arrive exactly as with Istio's tcp_proxy.

Istio's rules, evaluated here at translation time wherever they are static for one proxy:

- TCP ports (not TLS/HTTPS): the first `tcp` rule that applies wins (no match list, or a
  match block whose port, sourceLabels, sourceNamespace and gateways fit this proxy);
  none -> the service's default cluster `outbound|port||fqdn`
  (buildSidecarOutboundTCPFilterChainOpts). `tls` rules are not used on these ports.
- TLS/HTTPS ports: each applicable `tls` match block, in order, matches on `sniHosts`;
  no applicable block at all -> the default cluster, as opaque TCP
  (buildSidecarOutboundTLSFilterChainOpts); `tcp` rules are not used on these ports.
  SNI is a runtime predicate: Envoy cannot read the ClientHello inside a CONNECT tunnel
  from the HCM, so the CONNECT authority's host stands in for it (a client puts the name
  it connects to in SNI). A connection that matches no `sniHosts` goes to
  BlackHoleCluster (Istio has no filter chain for it and closes the connection).
- `destinationSubnets` matches the original destination IP, which an explicit proxy never
  sees: such match blocks are skipped (the snapshot checks report them).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from ...api.virtualservice import (
    MESH_GATEWAY,
    L4MatchAttributes,
    RouteDestination,
    TLSMatchAttributes,
    VirtualService,
)
from ...registry import ServiceInstance, ServicePort
from ...snapshot import Config, MeshSnapshot, build_subset_key
from ..types import ProxyInfo
from .common import BLACKHOLE_CLUSTER, DEFAULT_ROUTE, duration, istio_metadata, u32

CONNECT = "CONNECT"
# Istio's tcp_proxy idle timeout when no DestinationRule sets one (1h): a tunnel that
# carries no bytes for that long is closed, as Istio closes an idle TCP connection.
TCP_IDLE_TIMEOUT = "1h"
NO_TLS_MATCH = "no_tls_match"


def connect_route(name: str) -> rc.Route:
    """A route that matches CONNECT requests and terminates them: Envoy answers 200 and
    then forwards the tunnelled bytes over plain TCP to the route's cluster. No request
    timeout (a tunnel lives as long as its connection), Istio's TCP idle timeout."""
    out = rc.Route(name=name)
    out.match.connect_matcher.SetInParent()
    action = out.route
    upgrade = action.upgrade_configs.add(upgrade_type=CONNECT)
    upgrade.connect_config.SetInParent()
    action.timeout.CopyFrom(duration(seconds=0))
    action.idle_timeout.CopyFrom(duration(TCP_IDLE_TIMEOUT))
    return out


def _authority_matcher(sni: str, port: int) -> rc.HeaderMatcher:
    """`:authority` equal to `sni:port`, case-insensitive like DNS names; a wildcard SNI
    host (`*.example.com`) matches any name ending in `.example.com`, as in Envoy's
    server_names."""
    out = rc.HeaderMatcher(name=":authority")
    if sni.startswith("*"):
        suffix = re.escape(sni[1:])
        out.string_match.safe_regex.CopyFrom(
            regex_pb2.RegexMatcher(regex=f"(?i)[^:]+{suffix}:{port}")
        )
    else:
        out.string_match.CopyFrom(string_pb2.StringMatcher(exact=f"{sni}:{port}",
                                                           ignore_case=True))
    return out


def _applies(
    vs: VirtualService, match: L4MatchAttributes | TLSMatchAttributes, port: int,
    proxy: ProxyInfo,
) -> bool:
    """matchTCP / matchTLS (the static predicates) for a sidecar, whose only gateway is
    `mesh`; a block with destinationSubnets can never be evaluated here, so it never
    matches."""
    if match.destination_subnets:
        return False
    if match.port and match.port != port:
        return False
    gateways = match.gateways or vs.gateways
    if gateways and MESH_GATEWAY not in gateways:
        return False
    if any(proxy.labels.get(k) != v for k, v in match.source_labels.items()):
        return False
    return not (match.source_namespace and match.source_namespace != proxy.namespace)


@dataclass(frozen=True)
class L4Context:
    snap: MeshSnapshot
    proxy: ProxyInfo
    svc: ServiceInstance
    port: ServicePort
    clusters: Collection[str]

    def cluster(self, name: str | None) -> str:
        """`name` if that cluster exists, else BlackHoleCluster (the connection fails)."""
        return name if name is not None and name in self.clusters else BLACKHOLE_CLUSTER

    def default_cluster(self) -> str:
        """Istio's fallback: the service port's own cluster (the only port, if just one)."""
        port = self.svc.ports[0].port if len(self.svc.ports) == 1 else self.port.port
        return self.cluster(build_subset_key(port, "", self.svc.hostname))


def _tunnel(
    name: str, routes: Sequence[RouteDestination], cfg: Config[VirtualService], ctx: L4Context
) -> rc.Route:
    """buildOutboundNetworkFilters: one destination -> its cluster; several ->
    weighted_clusters (weight 0 left out, as for HTTP routes)."""
    out = connect_route(name)
    out.metadata.CopyFrom(istio_metadata(config=cfg.provenance))

    def cluster_of(dst: RouteDestination) -> str:
        return ctx.cluster(ctx.snap.destination_cluster(dst.destination, cfg.namespace,
                                                        ctx.port.port))

    if len(routes) == 1:
        out.route.cluster = cluster_of(routes[0])
    else:
        for dst in routes:
            if dst.weight > 0:
                out.route.weighted_clusters.clusters.add(name=cluster_of(dst),
                                                         weight=u32(dst.weight))
    return out


def _tcp_routes(cfg: Config[VirtualService], ctx: L4Context) -> list[rc.Route]:
    """The first applicable `tcp` rule, as a single unconditional CONNECT route."""
    vs = cfg.spec
    for i, tcp in enumerate(vs.tcp):
        if not tcp.match or any(_applies(vs, m, ctx.port.port, ctx.proxy) for m in tcp.match):
            return [_tunnel(f"tcp[{i}]", tcp.route, cfg, ctx)]
    return []


def _tls_routes(cfg: Config[VirtualService], ctx: L4Context) -> list[rc.Route]:
    """One CONNECT route per applicable (tls rule, match block, SNI host), in order."""
    vs = cfg.spec
    out: list[rc.Route] = []
    for i, tls in enumerate(vs.tls):
        for j, match in enumerate(tls.match):
            if not _applies(vs, match, ctx.port.port, ctx.proxy):
                continue
            for sni in match.sni_hosts:
                route = _tunnel(f"tls[{i}].match[{j}]", tls.route, cfg, ctx)
                route.match.headers.append(_authority_matcher(sni, ctx.port.port))
                out.append(route)
    return out


def opaque_port_routes(
    snap: MeshSnapshot, proxy: ProxyInfo, svc: ServiceInstance, port: ServicePort,
    clusters: Collection[str],
) -> list[rc.Route]:
    """The CONNECT routes of one non-HTTP service port's virtual host (see module doc)."""
    ctx = L4Context(snap, proxy, svc, port, clusters)
    cfg = snap.virtual_service_for(svc.hostname, proxy.namespace)
    routes: list[rc.Route] = []
    if cfg is not None:
        routes = _tls_routes(cfg, ctx) if port.is_tls else _tcp_routes(cfg, ctx)
    if not routes:
        default = connect_route(DEFAULT_ROUTE)
        default.route.cluster = ctx.default_cluster()
        return [default]
    if port.is_tls:
        unmatched = connect_route(NO_TLS_MATCH)
        unmatched.route.cluster = BLACKHOLE_CLUSTER
        routes.append(unmatched)
    return routes
