"""`proxy-config listeners`: istioctl's `ADDRESSES  PORT  MATCH  DESTINATION` (verbose, the
default) or `ADDRESSES  PORT  TYPE`, one row per filter chain, from Envoy's config dump."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .routes_table import describe_path_match
from .tabwriter import tabulate

HCM = "envoy.filters.network.http_connection_manager"
TCP_PROXY = "envoy.filters.network.tcp_proxy"
BLACKHOLE = "BlackHoleCluster"

# istioctl's names for well-known ALPN sets (listener.go protDescrs).
_PROTOCOLS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("App: HTTP TLS", ("http/1.0", "http/1.1", "h2c", "istio-http/1.0", "istio-http/1.1",
                       "istio-h2")),
    ("App: Istio HTTP Plain", ("istio", "istio-http/1.0", "istio-http/1.1", "istio-h2")),
    ("App: TCP TLS", ("istio-peer-exchange", "istio")),
    ("App: HTTP", ("http/1.0", "http/1.1", "h2c")),
)


def listener_address(listener: dict[str, Any]) -> str:
    address = listener.get("address") or {}
    if "socket_address" in address:
        return str(address["socket_address"].get("address", ""))
    if "pipe" in address:
        return str(address["pipe"].get("path", ""))
    return ""


def additional_addresses(listener: dict[str, Any]) -> list[str]:
    return [str(((a.get("address") or {}).get("socket_address") or {}).get("address", ""))
            for a in listener.get("additional_addresses") or []]


def listener_port(listener: dict[str, Any]) -> int:
    return int(((listener.get("address") or {}).get("socket_address") or {})
               .get("port_value", 0))


def filter_chains(listener: dict[str, Any]) -> list[dict[str, Any]]:
    chains = list(listener.get("filter_chains") or [])
    if listener.get("default_filter_chain"):
        chains.append(listener["default_filter_chain"])
    return chains


def _tcp_cluster(cfg: dict[str, Any]) -> str:
    if cfg.get("cluster"):
        return str(cfg["cluster"])
    weighted = (cfg.get("weighted_clusters") or {}).get("clusters") or []
    return ",".join(str(w.get("name", "")) for w in weighted)


def listener_type(listener: dict[str, Any]) -> str:
    """HTTP, TCP, HTTP+TCP or UNKNOWN; a tcp_proxy to BlackHoleCluster does not count."""
    n_http = n_tcp = 0
    for chain in filter_chains(listener):
        for f in chain.get("filters") or []:
            if f.get("name") == HCM:
                n_http += 1
            elif f.get("name") == TCP_PROXY and _tcp_cluster(f.get("typed_config") or {}) \
                    != BLACKHOLE:
                n_tcp += 1
    if n_http:
        return "HTTP+TCP" if n_tcp else "HTTP"
    return "TCP" if n_tcp else "UNKNOWN"


def describe_chain_match(match: dict[str, Any] | None) -> str:
    """istioctl's getMatches: SNI, transport, application protocols, destination address."""
    match = match or {}
    descrs = []
    if match.get("server_names"):
        descrs.append("SNI: " + ",".join(match["server_names"]))
    if match.get("transport_protocol"):
        descrs.append(f"Trans: {match['transport_protocol']}")
    alpn = tuple(match.get("application_protocols") or ())
    if alpn:
        known = next((name for name, protos in _PROTOCOLS if protos == alpn), None)
        descrs.append(known or "App: " + ",".join(alpn))
    port = f":{match['destination_port']}" if match.get("destination_port") else ""
    ranges = match.get("prefix_ranges") or []
    if ranges:
        cidrs = ",".join(f"{r.get('address_prefix', '')}/{r.get('prefix_len', 0)}"
                         for r in ranges)
        descrs.append(f"Addr: {cidrs}{port}")
    elif port:
        descrs.append(f"Addr: *{port}")
    return "; ".join(descrs) or "ALL"


def _match_all_cluster(route_config: dict[str, Any]) -> str:
    vhosts = route_config.get("virtual_hosts") or []
    if len(vhosts) != 1 or vhosts[0].get("domains") != ["*"]:
        return ""
    routes = vhosts[0].get("routes") or []
    if len(routes) != 1 or (routes[0].get("match") or {}).get("prefix") != "/":
        return ""
    cluster = (routes[0].get("route") or {}).get("cluster")
    if not cluster:
        return ""
    return str(cluster) if "Cluster" in str(cluster) else f"Cluster: {cluster}"


def _inline_route(route_config: dict[str, Any]) -> str:
    cluster = _match_all_cluster(route_config)
    if cluster:
        return cluster
    vhosts = []
    for vh in route_config.get("virtual_hosts") or []:
        domains = vh.get("domains") or []
        matches = ", ".join(describe_path_match(r.get("match") or {})
                            for r in vh.get("routes") or [])
        vhosts.append(matches if domains == ["*"] else f"{'/'.join(domains)} {matches}")
    return "Inline Route: " + "; ".join(vhosts)


def chain_destination(chain: dict[str, Any]) -> str:
    """istioctl's getFilterType: where the chain sends traffic."""
    for f in chain.get("filters") or []:
        cfg = f.get("typed_config") or {}
        if f.get("name") == HCM:
            if cfg.get("route_config"):
                return _inline_route(cfg["route_config"])
            rds = (cfg.get("rds") or {}).get("route_config_name")
            return f"Route: {rds}" if rds else "HTTP"
        if f.get("name") == TCP_PROXY:
            cluster = _tcp_cluster(cfg)
            if cluster != BLACKHOLE:
                return cluster if "Cluster" in cluster else f"Cluster: {cluster}"
    return "Non-HTTP/Non-TCP"


@dataclass(frozen=True)
class ListenerFilter:
    address: str = ""
    port: int = 0
    type: str = ""
    verbose: bool = True

    def verify(self, listener: dict[str, Any]) -> bool:
        if self.address and self.address.lower() not in [
                a.lower() for a in [listener_address(listener), *additional_addresses(listener)]]:
            return False
        if self.port and listener_port(listener) != self.port:
            return False
        return not self.type or listener_type(listener).lower() == self.type.lower()


def listener_rows(listeners: list[dict[str, Any]], flt: ListenerFilter,
                  include_type: bool = False) -> list[list[str]]:
    chosen = sorted((li for li in listeners if flt.verify(li)),
                    key=lambda li: (listener_port(li), listener_address(li), listener_type(li)))
    header = ["ADDRESSES", "PORT", *(["MATCH", "DESTINATION"] if flt.verbose else ["TYPE"])]
    rows = [["NAME", *header] if include_type else header]
    for li in chosen:
        addresses = ",".join([listener_address(li), *additional_addresses(li)])
        prefix = [f"listener/{li.get('name', '')}"] if include_type else []
        port = str(listener_port(li))
        if not flt.verbose:
            rows.append([*prefix, addresses, port, listener_type(li)])
            continue
        matches = [(describe_chain_match(c.get("filter_chain_match")), chain_destination(c))
                   for c in filter_chains(li)]
        for match, destination in sorted(matches, key=lambda m: m[1], reverse=True):
            rows.append([*prefix, addresses, port, match, destination])
    return rows


def listeners_table(listeners: list[dict[str, Any]], flt: ListenerFilter,
                    include_type: bool = False) -> str:
    # istioctl's listener writer pads with 1 space, not 5.
    return tabulate(listener_rows(listeners, flt, include_type), padding=1)
