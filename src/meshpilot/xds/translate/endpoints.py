"""ClusterLoadAssignments: the endpoints of one (service, port, subset) cluster.

Every EDS cluster gets one, even when empty: Envoy keeps a cluster warming until its
first assignment arrives, and an empty one makes it active with no hosts (503 UH,
"no healthy upstream"), which is what Istio does for a subset that selects nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2

from ...registry import Endpoint, ServiceInstance
from .common import socket_address, u32


def _locality(text: str) -> base_pb2.Locality:
    region, zone, sub_zone = ([*text.split("/"), "", ""])[:3]
    return base_pb2.Locality(region=region, zone=zone, sub_zone=sub_zone)


def lb_endpoint(ep: Endpoint, port: int) -> endpoint_components_pb2.LbEndpoint:
    out = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(address=socket_address(ep.address, port))
    )
    if ep.weight:
        out.load_balancing_weight.CopyFrom(u32(ep.weight))
    return out


def load_assignment(
    cluster_name: str,
    service: ServiceInstance,
    port: int,
    labels: Mapping[str, str] | None = None,
) -> endpoint_pb2.ClusterLoadAssignment:
    """Endpoints of `service` on `port` whose labels include `labels`, grouped by locality
    (sorted, so the same registry always gives the same bytes)."""
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name)
    groups: dict[str, list[endpoint_components_pb2.LbEndpoint]] = {}
    for ep in service.endpoints_for(port, labels):
        target = ep.port_for(port)
        assert target is not None
        groups.setdefault(ep.locality, []).append(lb_endpoint(ep, target))
    for locality in sorted(groups):
        group = cla.endpoints.add()
        if locality:
            group.locality.CopyFrom(_locality(locality))
        group.lb_endpoints.extend(groups[locality])
    return cla


def static_assignment(cluster_name: str, address: str, port: int) -> (
    endpoint_pb2.ClusterLoadAssignment
):
    """A single fixed endpoint (inbound clusters: the local app)."""
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=cluster_name)
    cla.endpoints.add().lb_endpoints.append(
        endpoint_components_pb2.LbEndpoint(
            endpoint=endpoint_components_pb2.Endpoint(address=socket_address(address, port))
        )
    )
    return cla
