"""`tcp`/`tls` VirtualService rules and TCP apps on sidecars (CONNECT tunnels, tcp_proxy)."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from meshpilot.proxy.envoy import EnvoyNotFound, find_envoy
from meshpilot.proxy.sidecar import SidecarOptions, sidecar_run
from meshpilot.snapshot import MeshConfig, MeshSnapshot
from meshpilot.xds.translate import translate
from meshpilot.xds.translate.tcproutes import _authority_matcher
from meshpilot.xds.types import ProxyInfo, ProxyResources

from .envoy_check import envoy_validate
from .helpers import CLIENT, DATA, SEED, assert_consistent, load, resource

FQDN = "echo.traffic-demo.svc.cluster.local"
BASE = DATA / "tcp-tls-routes.yaml"


def base_resources() -> list[Any]:
    """The golden case's Service, workloads and DestinationRule, without its VS."""
    return [r for r in load(BASE) if r.kind != "VirtualService"]


def build(vs: dict | None = None, mesh: MeshConfig | None = None) -> MeshSnapshot:
    extra = [resource("VirtualService", "echo", vs, created="2026-02-01T00:00:00Z")] if vs else []
    return MeshSnapshot.build([*base_resources(), *extra], 1, mesh)


def outbound(snap: MeshSnapshot, proxy: ProxyInfo = CLIENT) -> route_pb2.RouteConfiguration:
    res = translate(snap, proxy)
    assert_consistent(res)
    rcfg = res.routes[str(proxy.outbound_port)]
    assert isinstance(rcfg, route_pb2.RouteConfiguration)
    return rcfg


def vhost(rcfg: route_pb2.RouteConfiguration, port: int, host: str = FQDN) -> rc.VirtualHost:
    return next(v for v in rcfg.virtual_hosts if v.name == f"{host}:{port}")


def clusters_of(route: rc.Route) -> list[tuple[str, int]]:
    if route.route.cluster:
        return [(route.route.cluster, 100)]
    return [(c.name, c.weight.value) for c in route.route.weighted_clusters.clusters]


def is_tunnel(route: rc.Route) -> bool:
    upgrades = list(route.route.upgrade_configs)
    return (route.match.HasField("connect_matcher") and len(upgrades) == 1
            and upgrades[0].upgrade_type == "CONNECT" and upgrades[0].HasField("connect_config")
            and route.route.timeout.seconds == 0)


def dst(subset: str, port: int = 9000, weight: int | None = None) -> dict:
    out: dict = {"destination": {"host": "echo", "port": {"number": port}, "subset": subset}}
    if weight is not None:
        out["weight"] = weight
    return out


def test_tcp_port_without_virtual_service_tunnels_to_the_service() -> None:
    vh = vhost(outbound(build()), 9000)
    # Only `host:port` domains: CONNECT always names the port.
    assert list(vh.domains) == ["echo:9000", "echo.traffic-demo:9000",
                                "echo.traffic-demo.svc:9000", f"{FQDN}:9000"]
    [route] = vh.routes
    assert is_tunnel(route) and route.name == "default"
    assert clusters_of(route) == [(f"outbound|9000||{FQDN}", 100)]
    assert route.route.idle_timeout.seconds == 3600


def test_first_applicable_tcp_rule_wins() -> None:
    vs = {"hosts": ["echo"], "tcp": [
        {"match": [{"destinationSubnets": ["10.0.0.0/8"]}], "route": [dst("v2")]},
        {"match": [{"port": 9001}], "route": [dst("v2")]},
        {"match": [{"sourceLabels": {"app": "other"}}], "route": [dst("v2")]},
        {"match": [{"sourceNamespace": "elsewhere"}], "route": [dst("v2")]},
        {"match": [{"gateways": ["some-gateway"]}], "route": [dst("v2")]},
        {"match": [{"port": 9001}, {"port": 9000, "sourceLabels": {"app": "sleep"}}],
         "route": [dst("v1", weight=80), dst("v2", weight=20), dst("v2", weight=0)]},
        {"route": [dst("v2")]},
    ]}
    [route] = vhost(outbound(build(vs)), 9000).routes
    assert is_tunnel(route) and route.name == "tcp[5]"
    assert clusters_of(route) == [(f"outbound|9000|v1|{FQDN}", 80),
                                  (f"outbound|9000|v2|{FQDN}", 20)]
    assert route.metadata.filter_metadata["istio"]["config"].endswith("/virtual-service/echo")
    # For another client the match-less rule is the first that applies.
    other = replace(CLIENT, labels={"app": "other"})
    [route] = vhost(outbound(build(vs), other), 9000).routes
    assert route.name == "tcp[2]"


def test_tcp_rules_that_never_apply_fall_back_to_the_default_cluster() -> None:
    vs = {"hosts": ["echo"], "tcp": [{"match": [{"port": 9001}], "route": [dst("v2")]}]}
    [route] = vhost(outbound(build(vs)), 9000).routes
    assert route.name == "default" and clusters_of(route) == [(f"outbound|9000||{FQDN}", 100)]


def test_missing_subset_tunnels_to_blackhole() -> None:
    vs = {"hosts": ["echo"], "tcp": [{"route": [dst("v9")]}]}
    [route] = vhost(outbound(build(vs)), 9000).routes
    assert clusters_of(route) == [("BlackHoleCluster", 100)]


def test_tls_rules_match_sni_on_tls_ports_only() -> None:
    vs = {"hosts": ["echo"],
          "tcp": [{"route": [dst("v2")]}],
          "tls": [{"match": [{"port": 9443, "sniHosts": ["echo"]}],
                   "route": [dst("v1", 9443, 50), dst("v2", 9443, 50)]}]}
    rcfg = outbound(build(vs))
    tls_routes = list(vhost(rcfg, 9443).routes)
    assert [r.name for r in tls_routes] == ["tls[0].match[0]", "no_tls_match"]
    assert all(is_tunnel(r) for r in tls_routes)
    [authority] = tls_routes[0].match.headers
    assert authority.name == ":authority"
    assert (authority.string_match.exact, authority.string_match.ignore_case) == (
        "echo:9443", True)
    assert clusters_of(tls_routes[0]) == [(f"outbound|9443|v1|{FQDN}", 50),
                                          (f"outbound|9443|v2|{FQDN}", 50)]
    assert clusters_of(tls_routes[1]) == [("BlackHoleCluster", 100)]
    # The tcp rule routes the TCP port, never the TLS one.
    [tcp] = vhost(rcfg, 9000).routes
    assert clusters_of(tcp) == [(f"outbound|9000|v2|{FQDN}", 100)]


def test_tls_port_without_applicable_tls_rule_is_opaque_tcp() -> None:
    vs = {"hosts": ["echo"], "tls": [{"match": [{"port": 9443, "sniHosts": ["echo"],
                                                 "sourceNamespace": "elsewhere"}],
                                      "route": [dst("v1", 9443)]}]}
    [route] = vhost(outbound(build(vs)), 9443).routes
    assert route.name == "default" and clusters_of(route) == [(f"outbound|9443||{FQDN}", 100)]


def test_wildcard_sni_host_matches_subdomains_with_the_port() -> None:
    matcher = _authority_matcher("*.example.com", 443)
    regex = re.compile(matcher.string_match.safe_regex.regex)
    assert regex.fullmatch("api.example.com:443")
    assert regex.fullmatch("API.Example.com:443")
    assert not regex.fullmatch("example.com:443")
    assert not regex.fullmatch("api.example.com:8443")
    assert not regex.fullmatch("api.example.org:443")


def test_http_ports_keep_http_routes_and_clusters_stay_plain_tcp() -> None:
    res = translate(build(), CLIENT)
    rcfg = res.routes["15001"]
    assert isinstance(rcfg, route_pb2.RouteConfiguration)
    [http] = vhost(rcfg, 80).routes
    assert http.match.prefix == "/" and not http.route.upgrade_configs
    for port in (9000, 9443):
        for subset in ("", "v1", "v2"):
            cluster = res.clusters[f"outbound|{port}|{subset}|{FQDN}"]
            # No HTTP protocol options, even with h2UpgradePolicy UPGRADE in the DR.
            assert not cluster.typed_extension_protocol_options  # type: ignore[attr-defined]
    assert res.clusters[f"outbound|80||{FQDN}"].typed_extension_protocol_options  # type: ignore


@pytest.mark.parametrize(("policy", "expect"), [("ALLOW_ANY", "PassthroughCluster"),
                                                ("REGISTRY_ONLY", 502)])
def test_unknown_connect_follows_outbound_policy(policy: str, expect: str | int) -> None:
    snap = build(mesh=MeshConfig(outbound_traffic_policy=policy))  # type: ignore[arg-type]
    catch_all = outbound(snap).virtual_hosts[-1]
    assert list(catch_all.domains) == ["*"]
    connect = [r for r in catch_all.routes if r.match.HasField("connect_matcher")]
    assert len(connect) == 1
    if isinstance(expect, int):
        assert connect[0].direct_response.status == expect
    else:
        assert is_tunnel(connect[0]) and connect[0].route.cluster == expect


def _hcm(res: ProxyResources, name: str) -> hcm_pb2.HttpConnectionManager:
    listener = res.listeners[name]
    assert isinstance(listener, listener_pb2.Listener)
    hcm = hcm_pb2.HttpConnectionManager()
    listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)
    return hcm


def test_only_the_outbound_proxy_accepts_connect() -> None:
    res = translate(build(), CLIENT)
    assert "CONNECT" in [u.upgrade_type for u in _hcm(res, "virtualOutbound").upgrade_configs]
    assert "CONNECT" not in [u.upgrade_type for u in _hcm(res, "virtualInbound").upgrade_configs]


TCP_APP = replace(CLIENT, name="echo-v1", labels={"app": "echo", "version": "v1"},
                  app_protocol="tcp")


def test_tcp_app_gets_an_inbound_tcp_proxy() -> None:
    res = translate(build(), TCP_APP)
    assert_consistent(res)
    listener = res.listeners["virtualInbound"]
    assert isinstance(listener, listener_pb2.Listener)
    [chain] = listener.filter_chains
    [network_filter] = chain.filters
    assert network_filter.name == "envoy.filters.network.tcp_proxy"
    tcp = tcp_proxy_pb2.TcpProxy()
    network_filter.typed_config.Unpack(tcp)
    assert (tcp.cluster, tcp.stat_prefix) == ("inbound|8080||", "inbound|8080||")
    assert tcp.idle_timeout.seconds == 3600
    assert "inbound|8080||" in res.clusters
    assert "inbound|8080||" not in res.routes  # no inbound HTTP routing
    assert not res.clusters["inbound|8080||"].typed_extension_protocol_options  # type: ignore


def test_app_protocol_travels_in_node_metadata() -> None:
    assert "APP_PROTOCOL" not in CLIENT.to_metadata()  # http stays implicit
    meta = TCP_APP.to_metadata()
    assert meta["APP_PROTOCOL"] == "tcp"
    assert ProxyInfo.from_metadata(meta) == TCP_APP
    assert ProxyInfo.from_metadata(CLIENT.to_metadata()).app_protocol == "http"


def test_sidecar_app_protocol_option(tmp_path: Path) -> None:
    run = sidecar_run(SidecarOptions(name="db", namespace="ns", app_port=5432,
                                     inbound_port=15432, outbound_port=15433, admin_port=15434,
                                     state_dir=tmp_path, app_protocol="tcp"))
    assert run.info.app_protocol == "tcp"
    assert run.we_ports == {"tcp": 15432}
    assert run.annotations["meshpilot.io/app-protocol"] == "tcp"


@pytest.mark.parametrize(("vs", "expected"), [
    ({"hosts": ["echo"], "tcp": [{"match": [{"destinationSubnets": ["10.0.0.0/8"]}],
                                  "route": [dst("v1")]}]},
     "tcp[0]: match[0]: destinationSubnets cannot be matched"),
    ({"hosts": ["echo"], "tcp": [{"route": [dst("v9")]}]},
     "tcp[0]: subset 'v9' of echo.traffic-demo.svc.cluster.local is defined by no"),
    ({"hosts": ["echo"], "tls": [{"match": [{"sniHosts": ["echo"]}],
                                  "route": [{"destination": {"host": "ghost"}}]}]},
     "tls[0]: destination host ghost.traffic-demo.svc.cluster.local matches no service"),
])
def test_l4_diagnostics(vs: dict, expected: str) -> None:
    snap = build(vs)
    assert any(expected in d for d in snap.diagnostics), snap.diagnostics
    assert not any("not supported" in d for d in snap.diagnostics)


def test_l4_rules_on_a_host_without_such_ports_are_reported() -> None:
    res = [*load(SEED / "01-deployments-and-service.yaml"),
           resource("VirtualService", "vs", {
               "hosts": ["sample-app"],
               "tcp": [{"route": [{"destination": {"host": "sample-app"}}]}]})]
    snap = MeshSnapshot.build(res, 1)
    assert any("tcp routes apply only to TCP service ports" in d for d in snap.diagnostics)


def test_implemented_l4_routes_are_not_reported() -> None:
    assert build({"hosts": ["echo"], "tcp": [{"route": [dst("v1")]}]}).diagnostics == []


@pytest.mark.e2e
def test_envoy_validates_tcp_app_and_registry_only() -> None:
    try:
        envoy = find_envoy()
    except EnvoyNotFound as e:
        pytest.skip(str(e))
    snap = MeshSnapshot.build(load(BASE), 1, MeshConfig(outbound_traffic_policy="REGISTRY_ONLY"))
    result = envoy_validate(envoy, translate(snap, TCP_APP))
    assert result.returncode == 0, result.stdout + result.stderr
