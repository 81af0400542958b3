"""Clusters (CDS), named and shaped like Istio's (pilot/pkg/networking/core/cluster*.go).

- `outbound|<port>||<fqdn>` per service port and `outbound|<port>|<subset>|<fqdn>` per
  DestinationRule subset: EDS over ADS for registry endpoints, STRICT_DNS/LOGICAL_DNS for
  DNS ServiceEntries (endpoints inline, as Istio).
- `BlackHoleCluster`: STATIC with no hosts; routes whose destination does not exist point
  here, so every route names a real cluster and such traffic fails with 503.
- `PassthroughCluster`: Istio's is ORIGINAL_DST, which cannot work behind an explicit HTTP
  proxy (the original destination is the proxy itself). Here it is a dynamic-forward-proxy
  cluster that resolves the request's Host, paired with the DFP HTTP filter.
- ServiceEntries with resolution NONE: Istio's ORIGINAL_DST cluster, here a dynamic
  forward proxy cluster per service port (same DNS cache as PassthroughCluster), so the
  request reaches the host it names, e.g. any `*.example.com` for a wildcard entry.
- `inbound|<app_port>||`: STATIC to 127.0.0.1:<app_port> (the app beside the sidecar).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.extensions.clusters.dynamic_forward_proxy.v3 import cluster_pb2 as dfp_cluster_pb2
from envoy.extensions.common.dynamic_forward_proxy.v3 import dns_cache_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

from ...api.destinationrule import Subset, effective_subset_policy
from ...registry import ServiceInstance, ServicePort
from ...snapshot import MergedDestinationRule, MeshSnapshot, build_subset_key
from ..types import ProxyInfo
from .common import (
    BLACKHOLE_CLUSTER,
    HTTP_PROTOCOL_OPTIONS,
    PASSTHROUGH_CLUSTER,
    ads_source,
    duration,
    istio_metadata,
    pack,
)
from .endpoints import load_assignment, static_assignment
from .policy import (
    apply_connection_pool,
    apply_traffic_policy,
    default_thresholds,
    finish_protocol_options,
    use_downstream_protocol,
)

Cluster = cluster_pb2.Cluster
PASSTHROUGH_DNS_CACHE = "passthrough_dns_cache"
DFP_CLUSTER_TYPE = "envoy.clusters.dynamic_forward_proxy"

_DNS_TYPES = {"DNS": Cluster.STRICT_DNS, "DNS_ROUND_ROBIN": Cluster.LOGICAL_DNS}


def _base(name: str, connect_timeout: str) -> cluster_pb2.Cluster:
    c = Cluster(name=name, connect_timeout=duration(connect_timeout), alt_stat_name=f"{name};")
    c.common_lb_config.SetInParent()
    return c


def service_cluster(
    snap: MeshSnapshot,
    proxy: ProxyInfo,
    svc: ServiceInstance,
    port: ServicePort,
    dr: MergedDestinationRule | None,
    subset: Subset | None,
) -> tuple[cluster_pb2.Cluster, endpoint_pb2.ClusterLoadAssignment | None] | None:
    """One outbound cluster and, for EDS, its assignment. None when Istio would emit no
    cluster (a DNS cluster without endpoints)."""
    subset_name = subset.name if subset is not None else ""
    name = build_subset_key(port.port, subset_name, svc.hostname)
    labels = subset.labels if subset is not None else None
    cluster = _base(name, snap.mesh.connect_timeout)
    cla = load_assignment(name, svc, port.port, labels)
    dns_type = _DNS_TYPES.get(svc.resolution)
    if svc.resolution == "NONE" and proxy.kind == "sidecar":
        # Istio: ORIGINAL_DST on sidecars (gateways fall back to EDS).
        cluster.lb_policy = Cluster.CLUSTER_PROVIDED
        _make_dynamic_forward_proxy(cluster)
        cla = None
    elif dns_type is not None:
        if not cla.endpoints:
            return None
        cluster.type = dns_type
        _apply_dns_settings(cluster, snap)
        cluster.load_assignment.CopyFrom(cla)
        cla = None
    else:
        cluster.type = Cluster.EDS
        cluster.eds_cluster_config.service_name = name
        cluster.eds_cluster_config.eds_config.CopyFrom(ads_source())
    options = hpo.HttpProtocolOptions()
    if port.is_http2:
        options.explicit_http_config.http2_protocol_options.SetInParent()
    elif port.is_sniffed and proxy.kind == "sidecar":
        use_downstream_protocol(options)
    policy = effective_subset_policy(dr.rule, subset_name or None, port.port) if dr else None
    ns = dr.namespace if dr is not None else ""
    apply_traffic_policy(cluster, options, policy, port, lambda name: snap.secret_data(ns, name))
    finish_protocol_options(cluster, options)
    meta: dict[str, object] = {
        "services": [{"host": svc.hostname, "name": svc.name, "namespace": svc.namespace}],
    }
    if dr is not None:
        meta["config"] = dr.first.provenance
    if subset_name:
        meta["subset"] = subset_name
    if svc.location == "MESH_EXTERNAL":
        meta["external"] = True
    cluster.metadata.CopyFrom(istio_metadata(**meta))
    return cluster, cla


def _apply_dns_settings(cluster: cluster_pb2.Cluster, snap: MeshSnapshot) -> None:
    """Istio's settings for STRICT_DNS/LOGICAL_DNS: follow each record's TTL, re-resolve at
    MeshConfig dnsRefreshRate (60s) when a lookup fails. V4_PREFERRED instead of Istio's
    per-proxy IP family choice: standalone sidecars do not report their IPs, and `localhost`
    style names resolve to both families."""
    cluster.dns_lookup_family = Cluster.V4_PREFERRED
    cluster.respect_dns_ttl = True
    cluster.dns_refresh_rate.CopyFrom(duration(snap.mesh.dns_refresh_rate))


def _make_dynamic_forward_proxy(cluster: cluster_pb2.Cluster) -> None:
    """Turn `cluster` into a DFP cluster sharing PassthroughCluster's DNS cache: Envoy
    requires every DFP cluster and the DFP HTTP filter of one listener to name the same
    cache with identical settings."""
    cluster.cluster_type.name = DFP_CLUSTER_TYPE
    cluster.cluster_type.typed_config.CopyFrom(pack(dfp_cluster_pb2.ClusterConfig(
        dns_cache_config=passthrough_dns_cache(),
        allow_insecure_cluster_options=True,
    )))


def is_dynamic_forward_proxy(cluster: object) -> bool:
    """Whether a built cluster resolves the request's host itself (then the outbound
    listener needs the DFP HTTP filter, whatever the outbound traffic policy)."""
    return (isinstance(cluster, cluster_pb2.Cluster)
            and cluster.cluster_type.name == DFP_CLUSTER_TYPE)


def outbound_clusters(
    snap: MeshSnapshot, proxy: ProxyInfo
) -> list[tuple[cluster_pb2.Cluster, endpoint_pb2.ClusterLoadAssignment | None]]:
    """Every port of every service exported to the proxy's namespace, then one cluster per
    subset of the DR that applies to the proxy (Istio builds clusters only for the
    services in the proxy's scope)."""
    out = []
    for svc in snap.services_for(proxy.namespace):
        dr = snap.destination_rule(svc.hostname, proxy.namespace, svc.namespace)
        for port in svc.ports:
            subsets: list[Subset | None] = [None, *(dr.rule.subsets or [] if dr else [])]
            for subset in subsets:
                built = service_cluster(snap, proxy, svc, port, dr, subset)
                if built is not None:
                    out.append(built)
    return out


def blackhole_cluster(snap: MeshSnapshot) -> cluster_pb2.Cluster:
    """STATIC with no hosts: Istio's sink for traffic that must fail."""
    return Cluster(
        name=BLACKHOLE_CLUSTER,
        type=Cluster.STATIC,
        connect_timeout=duration(snap.mesh.connect_timeout),
        lb_policy=Cluster.ROUND_ROBIN,
        alt_stat_name=f"{BLACKHOLE_CLUSTER};",
    )


def passthrough_dns_cache() -> dns_cache_pb2.DnsCacheConfig:
    """Shared by the cluster and the DFP filter: Envoy requires both to name the same cache
    with the same settings."""
    return dns_cache_pb2.DnsCacheConfig(
        name=PASSTHROUGH_DNS_CACHE, dns_lookup_family=Cluster.V4_PREFERRED
    )


def passthrough_cluster(snap: MeshSnapshot) -> cluster_pb2.Cluster:
    """ALLOW_ANY for an explicit proxy: forward to whatever host the request names."""
    c = Cluster(
        name=PASSTHROUGH_CLUSTER,
        connect_timeout=duration(snap.mesh.connect_timeout),
        lb_policy=Cluster.CLUSTER_PROVIDED,
        alt_stat_name=f"{PASSTHROUGH_CLUSTER};",
    )
    # No upstream TLS: lets us leave auto_sni/auto_san_validation off (Istio does too).
    _make_dynamic_forward_proxy(c)
    options = hpo.HttpProtocolOptions()
    options.common_http_protocol_options.idle_timeout.CopyFrom(duration("5m"))
    use_downstream_protocol(options)
    c.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))
    c.circuit_breakers.thresholds.append(default_thresholds())
    return c


def inbound_cluster_name(app_port: int) -> str:
    return f"inbound|{app_port}||"


def inbound_cluster(snap: MeshSnapshot, app_port: int) -> cluster_pb2.Cluster:
    name = inbound_cluster_name(app_port)
    c = _base(name, snap.mesh.connect_timeout)
    c.type = Cluster.STATIC
    c.lb_policy = Cluster.ROUND_ROBIN
    c.load_assignment.CopyFrom(static_assignment(name, "127.0.0.1", app_port))
    apply_connection_pool(c, hpo.HttpProtocolOptions(), None)
    return c
