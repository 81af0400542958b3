"""The route half of DestinationRule consistent hashing (Istio's route/route.go).

A RING_HASH/MAGLEV cluster only picks hosts by a hash the *route* computes, so the
consistentHash key becomes a RouteAction hash_policy:

- default route (no VirtualService): the DR's top-level key, or its portLevelSettings
  key for that port (hashForService); the default retry policy is kept as it is;
- VirtualService destinations: subset port-level key, else subset key, else port-level
  key (only when the destination names a port), else the top-level key
  (HashForHTTPDestination). One hash policy per destination with a key. With a single
  destination the retry policy loses its previous_hosts predicate, since retrying "any
  other host" would defeat the affinity (retry.ConvertPolicy with hashPolicy=true),
  unless the VirtualService sets retryIgnorePreviousHosts: true.
"""

from __future__ import annotations

from envoy.config.route.v3 import route_components_pb2 as rc

from ...api.destinationrule import ConsistentHashLB, DestinationRule, TrafficPolicy
from ...api.virtualservice import Destination, HTTPRoute
from ...registry import ServiceInstance
from ...snapshot import MeshSnapshot
from ..types import ProxyInfo
from .common import duration


def hash_policy(ch: ConsistentHashLB | None) -> rc.RouteAction.HashPolicy | None:
    """ConsistentHashToHashPolicy: header, cookie (Envoy sets it when ttl is given),
    source IP, or query parameter; None when the DR names no key."""
    if ch is None:
        return None
    if ch.http_header_name:
        return rc.RouteAction.HashPolicy(
            header=rc.RouteAction.HashPolicy.Header(header_name=ch.http_header_name)
        )
    if ch.http_cookie is not None:
        c = ch.http_cookie
        cookie = rc.RouteAction.HashPolicy.Cookie(name=c.name, path=c.path or "")
        if c.ttl is not None:
            cookie.ttl.CopyFrom(duration(c.ttl))
        for attr in c.attributes or []:
            cookie.attributes.add(name=attr.name, value=attr.value or "")
        return rc.RouteAction.HashPolicy(cookie=cookie)
    if ch.use_source_ip is not None:
        return rc.RouteAction.HashPolicy(
            connection_properties=rc.RouteAction.HashPolicy.ConnectionProperties(
                source_ip=ch.use_source_ip
            )
        )
    if ch.http_query_parameter_name:
        return rc.RouteAction.HashPolicy(
            query_parameter=rc.RouteAction.HashPolicy.QueryParameter(
                name=ch.http_query_parameter_name
            )
        )
    return None


def _lb_hash(policy: TrafficPolicy | None) -> ConsistentHashLB | None:
    lb = policy.load_balancer if policy is not None else None
    return lb.consistent_hash if lb is not None else None


def _port_level_hash(policy: TrafficPolicy | None, port: int | None) -> ConsistentHashLB | None:
    """portLevelSettingsConsistentHash: the first entry for the port decides."""
    if policy is None or port is None:
        return None
    for pls in policy.port_level_settings or []:
        if pls.port is not None and (pls.port.number or 0) == port:
            return pls.load_balancer.consistent_hash if pls.load_balancer else None
    return None


def hash_for_service(dr: DestinationRule, port: int) -> ConsistentHashLB | None:
    """hashForService: the top-level key, replaced by the port's entry when it sets one."""
    return _port_level_hash(dr.traffic_policy, port) or _lb_hash(dr.traffic_policy)


def hash_for_destination(dr: DestinationRule, dest: Destination) -> ConsistentHashLB | None:
    """HashForHTTPDestination (a port-level key counts only if the destination names a
    port, as in Istio)."""
    port = dest.port.number if dest.port is not None and dest.port.number else None
    subset_policy = None
    for subset in dr.subsets or []:
        if subset.name == dest.subset:
            subset_policy = subset.traffic_policy
            break
    return (
        _port_level_hash(subset_policy, port)
        or _lb_hash(subset_policy)
        or _port_level_hash(dr.traffic_policy, port)
        or _lb_hash(dr.traffic_policy)
    )


def apply_service_hash(
    route: rc.Route, snap: MeshSnapshot, proxy: ProxyInfo, svc: ServiceInstance, port: int
) -> None:
    """The default route's hash policy (buildSidecarVirtualHostForService)."""
    dr = snap.destination_rule(svc.hostname, proxy.namespace, svc.namespace)
    policy = hash_policy(hash_for_service(dr.rule, port)) if dr is not None else None
    if policy is not None and route.HasField("route"):
        route.route.hash_policy.append(policy)


def apply_route_hash(
    action: rc.RouteAction, http: HTTPRoute, snap: MeshSnapshot, proxy: ProxyInfo,
    vs_namespace: str,
) -> None:
    """A VirtualService route's hash policies and the retry consequence (see module doc)."""
    found = False
    dests = [d for d in http.route if len(http.route) == 1 or d.weight != 0]
    for dst in dests:
        host = snap.resolve_host(dst.destination.host, vs_namespace)
        svc = snap.service(host)
        dr = snap.destination_rule(host, proxy.namespace, svc.namespace if svc else None)
        if dr is None:
            continue
        policy = hash_policy(hash_for_destination(dr.rule, dst.destination))
        if policy is not None:
            action.hash_policy.append(policy)
            found = True
    if found and len(http.route) == 1 and action.HasField("retry_policy"):
        keep = http.retries is not None and http.retries.retry_ignore_previous_hosts is True
        if not keep:
            del action.retry_policy.retry_host_predicate[:]
