"""`translate(snapshot, proxy)`: every Envoy resource one proxy should have.

Pure and deterministic: no I/O, no clock, and every resource map is ordered by name, so
the same snapshot and proxy always serialize to the same bytes (the xDS cache relies on
that to decide whether anything changed). Clusters are built first so that routes can
check that their clusters exist and fall back to BlackHoleCluster when they do not.
"""

from __future__ import annotations

from collections.abc import Mapping

from google.protobuf.message import Message

from ...snapshot import MeshSnapshot
from ..types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SECRET_TYPE,
    ProxyInfo,
    ProxyResources,
)
from .clusters import (
    blackhole_cluster,
    inbound_cluster,
    inbound_cluster_name,
    is_dynamic_forward_proxy,
    outbound_clusters,
    passthrough_cluster,
)
from .gateway import gateway_resources
from .listeners import inbound_listener, inbound_tcp_listener, outbound_listener
from .routeconfig import (
    inbound_route_config,
    inbound_route_config_name,
    outbound_route_config,
    outbound_route_config_name,
)


def _sorted(items: Mapping[str, Message]) -> dict[str, Message]:
    return {name: items[name] for name in sorted(items)}


def translate(snapshot: MeshSnapshot, proxy: ProxyInfo) -> ProxyResources:
    clusters: dict[str, Message] = {}
    endpoints: dict[str, Message] = {}
    listeners: dict[str, Message] = {}
    routes: dict[str, Message] = {}
    secrets: dict[str, Message] = {}
    for cluster, cla in outbound_clusters(snapshot, proxy):
        clusters[cluster.name] = cluster
        if cla is not None:
            endpoints[cla.cluster_name] = cla
    blackhole = blackhole_cluster(snapshot)
    clusters[blackhole.name] = blackhole

    if proxy.kind == "sidecar":
        passthrough = snapshot.mesh.outbound_traffic_policy == "ALLOW_ANY"
        if passthrough:
            pt = passthrough_cluster(snapshot)
            clusters[pt.name] = pt
        if proxy.inbound_port is not None and proxy.app_port is not None:
            inbound = inbound_cluster(snapshot, proxy.app_port)
            clusters[inbound.name] = inbound
            if proxy.app_protocol == "tcp":
                listener = inbound_tcp_listener(proxy, inbound.name, snapshot.mesh)
            else:
                rc_name = inbound_route_config_name(proxy.app_port)
                routes[rc_name] = inbound_route_config(proxy.app_port,
                                                       inbound_cluster_name(proxy.app_port))
                listener = inbound_listener(proxy, rc_name, proxy.app_port, snapshot.mesh)
            listeners[listener.name] = listener
        if proxy.outbound_port is not None:
            rc_name = outbound_route_config_name(proxy)
            routes[rc_name] = outbound_route_config(snapshot, proxy, clusters.keys())
            # The DFP filter also serves resolution-NONE ServiceEntry clusters.
            dfp = passthrough or any(is_dynamic_forward_proxy(c) for c in clusters.values())
            listener = outbound_listener(proxy, rc_name, passthrough=dfp, mesh=snapshot.mesh)
            listeners[listener.name] = listener

    if proxy.kind == "gateway":
        gw = gateway_resources(snapshot, proxy, clusters.keys())
        listeners.update(gw.listeners)
        routes.update(gw.routes)
        secrets.update(gw.secrets)

    by_type = {
        CLUSTER_TYPE: _sorted(clusters),
        ENDPOINT_TYPE: _sorted(endpoints),
        LISTENER_TYPE: _sorted(listeners),
        ROUTE_TYPE: _sorted(routes),
    }
    if secrets:  # only gateways have any; sidecars keep their four types
        by_type[SECRET_TYPE] = _sorted(secrets)
    return ProxyResources(by_type=by_type)
