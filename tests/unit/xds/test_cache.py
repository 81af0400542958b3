"""Consistency checks and content-hash versions of resource sets."""

from __future__ import annotations

import pytest
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2

from meshpilot.xds.cache import InconsistentSnapshot, Snapshot, consistency_problems
from meshpilot.xds.types import CLUSTER_TYPE, LISTENER_TYPE, SECRET_TYPE, ProxyResources

from .builders import cla, cluster, listener, resources, route, simple


def test_consistent_set_has_no_problems() -> None:
    assert consistency_problems(simple(clusters={"a": 1, "b": 2},
                                       route_to={"a": 1, "b": 1})) == []


def test_route_to_missing_cluster_is_refused() -> None:
    bad = simple(clusters={"a": 1}, route_to={"a": 50, "b": 50})
    assert consistency_problems(bad) == [
        "RDS 'route_0' references cluster 'b', which is not in the snapshot"]
    with pytest.raises(InconsistentSnapshot) as e:
        Snapshot.build(bad)
    assert "cluster 'b'" in str(e.value)


def test_mirror_target_must_exist() -> None:
    r = resources(clusters=[cluster("a")], endpoints=[cla("a", 1)],
                  listeners=[listener("l", 1, "r")], routes=[route("r", "a", mirror="m")])
    assert consistency_problems(r) == [
        "RDS 'r' references cluster 'm', which is not in the snapshot"]


def test_eds_cluster_needs_its_load_assignment_and_listener_its_route() -> None:
    r = resources(clusters=[cluster("a")], listeners=[listener("l", 1, "r")])
    assert consistency_problems(r) == [
        "CDS 'a' references ClusterLoadAssignment 'a', which is not in the snapshot",
        "LDS 'l' references RouteConfiguration (RDS) 'r', which is not in the snapshot"]


def test_tcp_proxy_cluster_and_sds_secret_must_exist() -> None:
    lst = listener("l", 1, "r")
    tcp = any_pb2.Any()
    tcp.Pack(tcp_proxy_pb2.TcpProxy(stat_prefix="t", cluster="db"))
    tls = tls_pb2.DownstreamTlsContext()
    sds = tls.common_tls_context.tls_certificate_sds_secret_configs.add(name="cert")
    sds.sds_config.ads.SetInParent()
    chain = listener_components_pb2.FilterChain(
        filters=[listener_components_pb2.Filter(name="tcp", typed_config=tcp)])
    chain.transport_socket.name = "tls"
    chain.transport_socket.typed_config.Pack(tls)
    del lst.filter_chains[:]
    lst.filter_chains.append(chain)
    r = ProxyResources({LISTENER_TYPE: {"l": lst}, CLUSTER_TYPE: {}, SECRET_TYPE: {}})
    assert consistency_problems(r) == [
        "LDS 'l' references cluster 'db', which is not in the snapshot",
        "LDS 'l' references secret (SDS) 'cert', which is not in the snapshot"]


def test_key_must_match_resource_name() -> None:
    r = ProxyResources({CLUSTER_TYPE: {"x": cluster("y")}})
    assert "CDS stored as 'x' is named 'y'" in consistency_problems(r)[0]


def test_versions_are_content_hashes() -> None:
    one = Snapshot.build(simple(clusters={"a": 1}, route_to="a"))
    two = Snapshot.build(simple(clusters={"a": 1}, route_to="a"))
    three = Snapshot.build(simple(clusters={"a": 2}, route_to="a"))
    assert one.version == two.version != three.version
    assert one.get(CLUSTER_TYPE)["a"].version == three.get(CLUSTER_TYPE)["a"].version
