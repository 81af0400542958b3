"""Request builders and assertions for scripted xDS exchanges (no sockets)."""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import discovery_pb2
from google.rpc import status_pb2

from meshpilot.xds.cache import Snapshot
from meshpilot.xds.session import Outgoing
from meshpilot.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    SHORT_NAMES,
    ProxyResources,
)

CDS, EDS, LDS, RDS = CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE


def snap(resources: ProxyResources) -> Snapshot:
    return Snapshot.build(resources)


def req(type_url: str, names: Iterable[str] = (), *, version: str = "", nonce: str = "",
        error: str | None = None) -> discovery_pb2.DiscoveryRequest:
    r = discovery_pb2.DiscoveryRequest(type_url=type_url, resource_names=list(names),
                                       version_info=version, response_nonce=nonce)
    if error is not None:
        r.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
    return r


def ack(out: Outgoing, names: Iterable[str] = ()) -> discovery_pb2.DiscoveryRequest:
    """SotW ACK of a response (names: the subscription, for EDS/RDS)."""
    return req(out.type_url, names, version=out.version, nonce=out.nonce)


def nack(out: Outgoing, last_good: str, message: str = "bad",
         names: Iterable[str] = ()) -> discovery_pb2.DiscoveryRequest:
    return req(out.type_url, names, version=last_good, nonce=out.nonce, error=message)


def dreq(type_url: str, sub: Iterable[str] = (), unsub: Iterable[str] = (), *, nonce: str = "",
         error: str | None = None, initial: dict[str, str] | None = None
         ) -> discovery_pb2.DeltaDiscoveryRequest:
    r = discovery_pb2.DeltaDiscoveryRequest(
        type_url=type_url, resource_names_subscribe=list(sub),
        resource_names_unsubscribe=list(unsub), response_nonce=nonce,
        initial_resource_versions=initial or {})
    if error is not None:
        r.error_detail.CopyFrom(status_pb2.Status(code=13, message=error))
    return r


def dack(out: Outgoing, error: str | None = None) -> discovery_pb2.DeltaDiscoveryRequest:
    return dreq(out.type_url, nonce=out.nonce, error=error)


def shape(outs: Iterable[Outgoing]) -> list[tuple[str, list[str], list[str]]]:
    """[(short type, names sent, names removed)], the readable form of a response batch."""
    return [(SHORT_NAMES[o.type_url], sorted(o.resource_names), sorted(o.removed))
            for o in outs]


def only(outs: list[Outgoing], type_url: str) -> Outgoing:
    found = [o for o in outs if o.type_url == type_url]
    assert len(found) == 1, shape(outs)
    return found[0]


def clusters_in(out: Outgoing) -> dict[str, cluster_pb2.Cluster]:
    result = {}
    for a in _anys(out):
        c = cluster_pb2.Cluster()
        a.Unpack(c)
        result[c.name] = c
    return result


def route_targets(out: Outgoing) -> set[str]:
    targets = set()
    for a in _anys(out):
        cfg = route_pb2.RouteConfiguration()
        a.Unpack(cfg)
        for vh in cfg.virtual_hosts:
            for r in vh.routes:
                targets.add(r.route.cluster)
                targets |= {w.name for w in r.route.weighted_clusters.clusters}
    return targets - {""}


def _anys(out: Outgoing):
    msg = out.message
    if isinstance(msg, discovery_pb2.DeltaDiscoveryResponse):
        return [r.resource for r in msg.resources]
    return list(msg.resources)
