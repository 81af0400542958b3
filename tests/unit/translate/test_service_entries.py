"""ServiceEntry on sidecars: each resolution, location and endpoint feature down to the
Envoy config, plus the mesh config file that sets the outbound traffic policy."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

from meshpilot.cli.commands import mesh_settings
from meshpilot.controlplane.meshconfig import MeshConfigError, load_mesh_config
from meshpilot.proxy.envoy import EnvoyNotFound, find_envoy
from meshpilot.snapshot import MeshConfig, MeshSnapshot
from meshpilot.xds.translate import translate
from meshpilot.xds.translate.common import DFP_FILTER
from meshpilot.xds.types import ProxyResources

from .envoy_check import envoy_validate
from .helpers import CLIENT, resource

Cluster = cluster_pb2.Cluster
HTTP = [{"number": 80, "name": "http", "protocol": "HTTP"}]


def se(name: str, **spec: Any):
    return resource("ServiceEntry", name, spec)


def translated(*resources, policy: str = "ALLOW_ANY") -> ProxyResources:
    snap = MeshSnapshot.build(list(resources), 1,
                              MeshConfig(outbound_traffic_policy=policy))  # type: ignore[arg-type]
    return translate(snap, CLIENT)


def cluster(res: ProxyResources, name: str) -> cluster_pb2.Cluster:
    c = res.clusters[name]
    assert isinstance(c, cluster_pb2.Cluster)
    return c


def endpoints(cla: endpoint_pb2.ClusterLoadAssignment) -> list[tuple[str, int, int, str]]:
    """(address, port, weight, zone) of every endpoint, in order."""
    return [(lb.endpoint.address.socket_address.address,
             lb.endpoint.address.socket_address.port_value,
             lb.load_balancing_weight.value, group.locality.zone)
            for group in cla.endpoints for lb in group.lb_endpoints]


def vhost_cluster(res: ProxyResources, domain: str) -> str:
    rc = res.routes["15001"]
    assert isinstance(rc, route_pb2.RouteConfiguration)
    for vh in rc.virtual_hosts:
        if domain in vh.domains:
            return vh.routes[0].route.cluster or vh.name
    raise AssertionError(f"no vhost for {domain}")


def outbound_filters(res: ProxyResources) -> list[str]:
    listener = json_format.MessageToDict(res.listeners["virtualOutbound"])
    hcm = listener["filterChains"][0]["filters"][0]["typedConfig"]
    return [f["name"] for f in hcm["httpFilters"]]


STATIC_WEIGHTED = se(
    "payments", hosts=["payments.test"], location="MESH_EXTERNAL", resolution="STATIC",
    ports=HTTP, endpoints=[
        {"address": "127.0.0.11", "ports": {"http": 9001}, "weight": 1,
         "labels": {"version": "v1"}, "locality": "region/zone-a"},
        {"address": "127.0.0.12", "ports": {"http": 9002}, "weight": 3,
         "labels": {"version": "v2"}, "locality": "region/zone-b"},
    ])


def test_static_endpoints_are_eds_with_weights_and_localities() -> None:
    res = translated(STATIC_WEIGHTED)
    name = "outbound|80||payments.test"
    assert cluster(res, name).type == Cluster.EDS
    cla = res.endpoints[name]
    assert isinstance(cla, endpoint_pb2.ClusterLoadAssignment)
    assert endpoints(cla) == [("127.0.0.11", 9001, 1, "zone-a"), ("127.0.0.12", 9002, 3, "zone-b")]
    assert vhost_cluster(res, "payments.test") == name


def test_endpoint_labels_select_destination_rule_subsets() -> None:
    dr = resource("DestinationRule", "payments", {"host": "payments.test", "subsets": [
        {"name": "v1", "labels": {"version": "v1"}}, {"name": "v2", "labels": {"version": "v2"}}]})
    res = translated(STATIC_WEIGHTED, dr)
    for subset, address in (("v1", "127.0.0.11"), ("v2", "127.0.0.12")):
        cla = res.endpoints[f"outbound|80|{subset}|payments.test"]
        assert isinstance(cla, endpoint_pb2.ClusterLoadAssignment)
        assert [e[0] for e in endpoints(cla)] == [address]


def test_dns_resolution_is_strict_dns_with_istio_dns_settings() -> None:
    res = translated(se("api", hosts=["api.test"], resolution="DNS", ports=HTTP,
                        endpoints=[{"address": "localhost", "ports": {"http": 9100}},
                                   {"address": "127.0.0.1", "ports": {"http": 9101}}]))
    c = cluster(res, "outbound|80||api.test")
    assert c.type == Cluster.STRICT_DNS
    assert (c.respect_dns_ttl, c.dns_refresh_rate.seconds) == (True, 60)
    assert c.dns_lookup_family == Cluster.V4_PREFERRED
    assert sorted(endpoints(c.load_assignment)) == [("127.0.0.1", 9101, 0, ""),
                                                    ("localhost", 9100, 0, "")]
    assert "outbound|80||api.test" not in res.endpoints  # inline, not EDS


def test_dns_without_endpoints_resolves_each_host_on_its_target_port() -> None:
    res = translated(se("hosts", hosts=["localhost", "alt.test"], resolution="DNS", ports=[
        {"number": 8000, "name": "http", "protocol": "HTTP", "targetPort": 9200}]))
    for host in ("localhost", "alt.test"):
        c = cluster(res, f"outbound|8000||{host}")
        assert endpoints(c.load_assignment) == [(host, 9200, 0, "")]


def test_dns_refresh_rate_follows_mesh_config() -> None:
    snap = MeshSnapshot.build([se("a", hosts=["a.test"], resolution="DNS", ports=HTTP)], 1,
                              MeshConfig(dns_refresh_rate="5s"))
    assert cluster(translate(snap, CLIENT), "outbound|80||a.test").dns_refresh_rate.seconds == 5


def test_dns_round_robin_is_logical_dns() -> None:
    res = translated(se("rr", hosts=["rr.test"], resolution="DNS_ROUND_ROBIN", ports=HTTP,
                        endpoints=[{"address": "localhost"}]))
    c = cluster(res, "outbound|80||rr.test")
    assert c.type == Cluster.LOGICAL_DNS and c.respect_dns_ttl
    assert endpoints(c.load_assignment) == [("localhost", 80, 0, "")]


@pytest.mark.parametrize("policy", ["ALLOW_ANY", "REGISTRY_ONLY"])
def test_wildcard_resolution_none_passes_through_to_the_requested_host(policy: str) -> None:
    res = translated(se("wild", hosts=["*.example.test"], resolution="NONE", ports=HTTP),
                     policy=policy)
    name = "outbound|80||*.example.test"
    c = cluster(res, name)
    assert c.cluster_type.name == "envoy.clusters.dynamic_forward_proxy"
    assert c.lb_policy == Cluster.CLUSTER_PROVIDED
    assert name not in res.endpoints
    assert vhost_cluster(res, "*.example.test") == name
    assert vhost_cluster(res, "*.example.test:80") == name
    # The DFP filter resolves the Host for this cluster even when the mesh is locked down.
    assert DFP_FILTER in outbound_filters(res)
    assert ("PassthroughCluster" in res.clusters) == (policy == "ALLOW_ANY")


def test_registry_only_without_none_entries_has_no_dns_filter() -> None:
    res = translated(STATIC_WEIGHTED, policy="REGISTRY_ONLY")
    assert DFP_FILTER not in outbound_filters(res)


@pytest.mark.parametrize(("location", "external"), [("MESH_EXTERNAL", True),
                                                    ("MESH_INTERNAL", False), (None, True)])
def test_location_marks_external_clusters(location: str | None, external: bool) -> None:
    spec: dict[str, Any] = {"hosts": ["loc.test"], "resolution": "STATIC", "ports": HTTP,
                            "endpoints": [{"address": "127.0.0.1"}]}
    if location:
        spec["location"] = location
    res = translated(se("loc", **spec))
    meta = json_format.MessageToDict(cluster(res, "outbound|80||loc.test").metadata)
    assert meta["filterMetadata"]["istio"].get("external", False) is external


def test_mesh_internal_workload_selector_endpoints_from_workload_entries() -> None:
    res = translated(
        se("vm", hosts=["vm.internal"], location="MESH_INTERNAL", resolution="STATIC",
           ports=HTTP, workloadSelector={"labels": {"app": "vm"}}),
        resource("WorkloadEntry", "vm-1", {"address": "127.0.0.21", "labels": {"app": "vm"},
                                           "ports": {"http": 8081}, "weight": 5}),
        resource("WorkloadEntry", "web-1", {"address": "127.0.0.22", "labels": {"app": "web"}}),
        resource("WorkloadEntry", "vm-elsewhere", {"address": "127.0.0.23",
                                                   "labels": {"app": "vm"}}, namespace="other"),
    )
    cla = res.endpoints["outbound|80||vm.internal"]
    assert isinstance(cla, endpoint_pb2.ClusterLoadAssignment)
    assert endpoints(cla) == [("127.0.0.21", 8081, 5, "")]


def test_multiple_ports_and_protocols() -> None:
    res = translated(se("multi", hosts=["multi.test"], resolution="STATIC", ports=[
        {"number": 80, "name": "http", "protocol": "HTTP"},
        {"number": 8443, "name": "grpc", "protocol": "GRPC"},
        {"number": 5432, "name": "tcp-db", "protocol": "TCP"}],
        endpoints=[{"address": "127.0.0.1", "ports": {"http": 8080, "grpc": 9443}}]))
    assert {n for n in res.clusters if n.endswith("multi.test")} == {
        "outbound|80||multi.test", "outbound|8443||multi.test", "outbound|5432||multi.test"}
    grpc = json_format.MessageToDict(cluster(res, "outbound|8443||multi.test"))
    assert "http2ProtocolOptions" in str(grpc)
    cla = res.endpoints["outbound|5432||multi.test"]
    assert isinstance(cla, endpoint_pb2.ClusterLoadAssignment)
    assert endpoints(cla) == [("127.0.0.1", 5432, 0, "")]


@pytest.mark.e2e
def test_envoy_accepts_every_resolution(tmp_path: Path) -> None:
    try:
        envoy = find_envoy()
    except EnvoyNotFound as e:
        pytest.skip(str(e))
    entries = [
        STATIC_WEIGHTED,
        se("wild", hosts=["*.example.test"], resolution="NONE", ports=HTTP),
        se("api", hosts=["api.test"], resolution="DNS", ports=HTTP,
           endpoints=[{"address": "localhost"}]),
        se("rr", hosts=["rr.test"], resolution="DNS_ROUND_ROBIN", ports=HTTP),
    ]
    for policy in ("ALLOW_ANY", "REGISTRY_ONLY"):
        result = envoy_validate(envoy, translated(*entries, policy=policy))
        assert result.returncode == 0, result.stdout + result.stderr


def test_same_host_in_two_namespaces_oldest_wins_with_diagnostic() -> None:
    body = {"hosts": ["dup.test"], "resolution": "STATIC", "ports": HTTP,
            "endpoints": [{"address": "127.0.0.1"}]}
    snap = MeshSnapshot.build([
        resource("ServiceEntry", "new", body, "ns-b", created="2026-01-02T00:00:00Z"),
        resource("ServiceEntry", "old", body, "ns-a", created="2026-01-01T00:00:00Z")], 1)
    svc = snap.service("dup.test")
    assert svc is not None and (svc.namespace, svc.source_name) == ("ns-a", "old")
    assert any("ServiceEntry ns-b/new" in d and "already defined" in d for d in snap.diagnostics)


# --- mesh config file and `up` flags -------------------------------------------------------


def _args(**kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"mesh_config": None, "outbound_traffic_policy": None, **kw})


def test_mesh_config_file_sets_outbound_policy_and_more(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("outboundTrafficPolicy: {mode: REGISTRY_ONLY}\nconnectTimeout: 2s\n"
                    "dnsRefreshRate: 30s\ndefaultServiceExportTo: [.]\n")
    mesh = load_mesh_config(path)
    assert (mesh.outbound_traffic_policy, mesh.connect_timeout, mesh.dns_refresh_rate,
            mesh.default_service_export_to) == ("REGISTRY_ONLY", "2s", "30s", (".",))


@pytest.mark.parametrize(("text", "message"), [
    ("outboundTrafficPolicy: {mod: REGISTRY_ONLY}\n", "outboundTrafficPolicy.mod: unknown"),
    ("outboundTrafficPolicy: {mode: BLOCK}\n", "outboundTrafficPolicy.mode: unsupported value"),
    ("enableTracing: true\n", "enableTracing: unknown"),
    ("connectTimeout: soon\n", "connectTimeout: invalid duration"),
    ("- a\n", "expected a mapping"),
    ("a: [\n", "invalid YAML"),
])
def test_mesh_config_errors_name_file_and_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MeshConfigError) as info:
        load_mesh_config(path)
    assert str(info.value).startswith(f"{path}: ") and message in str(info.value)


def test_flag_overrides_file_and_default_is_allow_any(tmp_path: Path) -> None:
    path = tmp_path / "mesh.yaml"
    path.write_text("outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n")
    assert mesh_settings(_args()).outbound_traffic_policy == "ALLOW_ANY"
    assert mesh_settings(_args(mesh_config=str(path))).outbound_traffic_policy == "REGISTRY_ONLY"
    assert mesh_settings(_args(outbound_traffic_policy="REGISTRY_ONLY")
                         ).outbound_traffic_policy == "REGISTRY_ONLY"
    assert mesh_settings(_args(mesh_config=str(path), outbound_traffic_policy="ALLOW_ANY")
                         ).outbound_traffic_policy == "ALLOW_ANY"
