"""translate(): Istio names and defaults, VirtualService routes, DR policies, consistency."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from google.protobuf import json_format

from meshpilot.snapshot import MeshConfig, MeshSnapshot
from meshpilot.xds.translate import translate
from meshpilot.xds.translate.routes import DEFAULT_RETRY_ON
from meshpilot.xds.types import ProxyInfo

from .helpers import CLIENT, DATA, EXAMPLES, SEED, assert_consistent, load, resource, snapshot

FQDN = "sample-app.traffic-demo.svc.cluster.local"
C80 = f"outbound|80||{FQDN}"
V1, V2 = f"outbound|80|v1|{FQDN}", f"outbound|80|v2|{FQDN}"
BASE = (EXAMPLES / "base" / "10-sample-app-service.yaml",
        EXAMPLES / "base" / "20-sample-app-subsets.yaml", DATA / "workloads.yaml")


def as_dict(msg: Any) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def vhost(resources: Any, name: str = f"{FQDN}:80") -> rc.VirtualHost:
    (found,) = [v for v in resources.routes["15001"].virtual_hosts if v.name == name]
    return found


def with_vs(http: list[dict], **extra: Any) -> MeshSnapshot:
    vs = resource("VirtualService", "vs", {"hosts": ["sample-app"], "http": http, **extra},
                  created="2030-01-01T00:00:00Z")
    return MeshSnapshot.build([*load(*BASE), vs], 1)


def test_no_virtual_service_default_route() -> None:
    out = translate(snapshot(EXAMPLES / "base" / "10-sample-app-service.yaml"), CLIENT)
    assert_consistent(out)
    assert set(out.clusters) == {C80, "BlackHoleCluster", "PassthroughCluster", "inbound|8080||"}
    assert set(out.listeners) == {"virtualOutbound", "virtualInbound"}
    assert set(out.routes) == {"15001", "inbound|8080||"}
    vh = vhost(out)
    assert list(vh.domains) == [
        "sample-app", "sample-app:80", "sample-app.traffic-demo", "sample-app.traffic-demo:80",
        "sample-app.traffic-demo.svc", "sample-app.traffic-demo.svc:80", FQDN, f"{FQDN}:80"]
    (route,) = vh.routes
    assert route.name == "default" and route.match.prefix == "/"
    assert route.route.cluster == C80
    assert route.route.timeout.ToSeconds() == 0
    policy = route.route.retry_policy
    assert policy.num_retries.value == 2 and policy.retry_on == DEFAULT_RETRY_ON
    assert policy.host_selection_retry_max_attempts == 5
    assert [p.name for p in policy.retry_host_predicate] == [
        "envoy.retry_host_predicates.previous_hosts"]
    assert route.decorator.operation == f"{FQDN}:80/*"
    last = out.routes["15001"].virtual_hosts[-1]
    assert (last.name, list(last.domains), last.routes[0].route.cluster) == (
        "allow_any", ["*"], "PassthroughCluster")


def test_cluster_defaults_like_istio() -> None:
    out = translate(snapshot(*BASE), CLIENT)
    c = out.clusters[C80]
    assert isinstance(c, cluster_pb2.Cluster)
    assert c.type == cluster_pb2.Cluster.EDS
    assert c.eds_cluster_config.service_name == C80
    assert c.eds_cluster_config.eds_config.HasField("ads")
    assert c.lb_policy == cluster_pb2.Cluster.LEAST_REQUEST
    assert c.connect_timeout.ToSeconds() == 10
    (t,) = c.circuit_breakers.thresholds
    assert {t.max_connections.value, t.max_pending_requests.value, t.max_requests.value,
            t.max_retries.value} == {4294967295}
    assert c.HasField("common_lb_config") and c.alt_stat_name == f"{C80};"
    assert set(out.clusters) >= {V1, V2}
    eps = {name: sorted(ep.endpoint.address.socket_address.address
                        for group in out.endpoints[name].endpoints  # type: ignore[attr-defined]
                        for ep in group.lb_endpoints)
           for name in (C80, V1, V2)}
    assert eps == {C80: ["127.0.0.11", "127.0.0.12", "127.0.0.21"],
                   V1: ["127.0.0.11", "127.0.0.12"], V2: ["127.0.0.21"]}
    meta = as_dict(c.metadata)["filter_metadata"]["istio"]
    assert meta["services"] == [{"host": FQDN, "name": "sample-app", "namespace": "traffic-demo"}]
    assert as_dict(out.clusters[V1].metadata)["filter_metadata"]["istio"]["subset"] == "v1"


def test_sniffed_port_uses_downstream_protocol() -> None:
    out = translate(snapshot(SEED / "01-deployments-and-service.yaml"), CLIENT)
    opts = as_dict(out.clusters[C80])["typed_extension_protocol_options"]
    (value,) = opts.values()
    assert "use_downstream_protocol_config" in value


def test_header_routing_seed() -> None:
    out = translate(snapshot(*BASE, EXAMPLES / "base" / "30-sample-app-routing.yaml"), CLIENT)
    assert_consistent(out)
    r1, r2 = vhost(out).routes
    assert [(h.name, h.string_match.exact) for h in r1.match.headers] == [("version", "v2")]
    assert r1.match.case_sensitive.value is True
    assert r1.route.cluster == V2 and r2.route.cluster == V1
    assert r2.match.prefix == "/" and not r2.match.headers


def test_weighted_canary_and_zero_weights_dropped() -> None:
    snap = with_vs([{"route": [
        {"destination": {"host": "sample-app", "subset": "v1"}, "weight": 90},
        {"destination": {"host": "sample-app", "subset": "v2"}, "weight": 10},
        {"destination": {"host": "sample-app"}, "weight": 0}]}])
    (route,) = vhost(translate(snap, CLIENT)).routes
    assert [(w.name, w.weight.value) for w in route.route.weighted_clusters.clusters] == [
        (V1, 90), (V2, 10)]


def test_or_blocks_and_catch_all_stops_emission() -> None:
    snap = with_vs([
        {"name": "beta", "match": [
            {"name": "hdr", "headers": {"user-group": {"exact": "beta"}}},
            {"name": "uri", "uri": {"prefix": "/beta"}, "method": {"exact": "GET"}}],
         "route": [{"destination": {"host": "sample-app", "subset": "v2"}}]},
        {"name": "all", "route": [{"destination": {"host": "sample-app", "subset": "v1"}}]},
        {"name": "never", "route": [{"destination": {"host": "sample-app"}}]},
    ])
    routes = vhost(translate(snap, CLIENT)).routes
    assert [r.name for r in routes] == ["beta.hdr", "beta.uri", "all"]
    uri = routes[1].match
    assert uri.prefix == "/beta"
    assert [(h.name, h.string_match.exact) for h in uri.headers] == [(":method", "GET")]


def test_header_match_kinds() -> None:
    snap = with_vs([{"match": [{
        "headers": {"b": {"prefix": "x"}, "a": {"regex": "^v[0-9]$"}, "c": {}},
        "withoutHeaders": {"e": {"exact": "no"}},
        "uri": {"regex": "/api/.*"}, "ignoreUriCase": True,
        "authority": {"exact": "sample-app"}, "scheme": {"exact": "http"},
        "queryParams": {"q": {"exact": "1"}}}],
        "route": [{"destination": {"host": "sample-app"}}]}])
    route = vhost(translate(snap, CLIENT)).routes[0]
    m = as_dict(route.match)
    assert m["safe_regex"] == {"regex": "/api/.*"} and m["case_sensitive"] is False
    assert m["headers"] == [
        {"name": "a", "string_match": {"safe_regex": {"regex": "^v[0-9]$"}}},
        {"name": "b", "string_match": {"prefix": "x"}},
        {"name": "c", "present_match": True},
        {"name": "e", "string_match": {"exact": "no"}, "invert_match": True,
         "treat_missing_header_as_empty": True},
        {"name": ":authority", "string_match": {"exact": "sample-app"}},
        {"name": ":scheme", "string_match": {"exact": "http"}},
    ]
    assert m["query_parameters"] == [{"name": "q", "string_match": {"exact": "1"}}]


def test_timeout_retries_and_rewrite() -> None:
    snap = with_vs([
        {"match": [{"uri": {"prefix": "/v2"}}], "rewrite": {"uri": "/", "authority": "v2.local"},
         "timeout": "1.5s", "retries": {"attempts": 3, "perTryTimeout": "500ms",
                                        "retryOn": "5xx,503,gateway-error"},
         "route": [{"destination": {"host": "sample-app", "subset": "v2"}}]},
        {"retries": {"attempts": 0}, "route": [{"destination": {"host": "sample-app"}}]},
    ])
    r1, r2 = vhost(translate(snap, CLIENT)).routes
    a = as_dict(r1.route)
    assert a["timeout"] == "1.500s" and a["prefix_rewrite"] == "/"
    assert a["host_rewrite_literal"] == "v2.local"
    assert a["retry_policy"]["num_retries"] == 3
    assert a["retry_policy"]["retry_on"] == "5xx,gateway-error,retriable-status-codes"
    assert a["retry_policy"]["retriable_status_codes"] == [503]
    assert a["retry_policy"]["per_try_timeout"] == "0.500s"
    assert not r2.route.HasField("retry_policy")


def test_missing_subset_or_host_goes_to_blackhole() -> None:
    snap = with_vs([{"route": [
        {"destination": {"host": "sample-app", "subset": "v9"}, "weight": 50},
        {"destination": {"host": "ghost"}, "weight": 50}]}])
    out = translate(snap, CLIENT)
    assert_consistent(out)
    (route,) = vhost(out).routes
    assert [w.name for w in route.route.weighted_clusters.clusters] == ["BlackHoleCluster"] * 2


def test_match_filters_port_gateway_and_source() -> None:
    snap = with_vs([
        {"match": [{"port": 8080}], "route": [{"destination": {"host": "sample-app",
                                                               "subset": "v2"}}]},
        {"match": [{"gateways": ["some-gateway"]}], "route": [{"destination": {
            "host": "sample-app", "subset": "v2"}}]},
        {"match": [{"sourceLabels": {"app": "other"}}], "route": [{"destination": {
            "host": "sample-app", "subset": "v2"}}]},
        {"match": [{"sourceLabels": {"app": "sleep"}, "sourceNamespace": "traffic-demo"}],
         "route": [{"destination": {"host": "sample-app", "subset": "v1"}}]},
    ])
    routes = vhost(translate(snap, CLIENT)).routes
    assert [r.route.cluster for r in routes] == [V1]


def test_virtual_service_with_no_route_for_port_falls_back_to_default() -> None:
    snap = with_vs([{"match": [{"port": 9999}],
                     "route": [{"destination": {"host": "sample-app"}}]}])
    (route,) = vhost(translate(snap, CLIENT)).routes
    assert route.name == "default" and route.route.cluster == C80


def test_registry_only_blocks_unknown_hosts() -> None:
    snap = snapshot(*BASE, mesh=MeshConfig(outbound_traffic_policy="REGISTRY_ONLY"))
    out = translate(snap, CLIENT)
    assert "PassthroughCluster" not in out.clusters
    last = out.routes["15001"].virtual_hosts[-1]
    assert last.name == "block_all" and last.routes[0].direct_response.status == 502
    hcm = as_dict(out.listeners["virtualOutbound"])["filter_chains"][0]["filters"][0]
    assert [f["name"] for f in hcm["typed_config"]["http_filters"]] == [
        "envoy.filters.http.fault", "envoy.filters.http.cors", "envoy.filters.http.router"]


def test_outbound_listener_is_an_explicit_http_proxy() -> None:
    out = translate(snapshot(*BASE), CLIENT)
    listener = as_dict(out.listeners["virtualOutbound"])
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1",
                                                     "port_value": 15001}
    hcm = listener["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["http_protocol_options"] == {"allow_absolute_url": True}
    assert hcm["rds"]["route_config_name"] == "15001"
    assert hcm["stat_prefix"] == "outbound_0.0.0.0_15001"
    assert hcm["http_filters"][-1]["name"] == "envoy.filters.http.router"


def test_inbound_listener_routes_to_app() -> None:
    proxy = ProxyInfo(name="app", namespace="traffic-demo", address="127.0.0.11",
                      inbound_port=18001, app_port=8000)
    out = translate(snapshot(*BASE), proxy)
    listener = as_dict(out.listeners["virtualInbound"])
    assert listener["address"]["socket_address"] == {"address": "127.0.0.11",
                                                     "port_value": 18001}
    (vh,) = out.routes["inbound|8000||"].virtual_hosts
    assert vh.name == "inbound|http|8000" and vh.routes[0].route.cluster == "inbound|8000||"
    cluster = as_dict(out.clusters["inbound|8000||"])
    assert cluster["type"] == "STATIC"
    assert cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"][
        "address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8000}


def test_gateway_gets_clusters_and_endpoints_only() -> None:
    proxy = ProxyInfo(name="ingress", namespace="istio-system", kind="gateway")
    out = translate(snapshot(*BASE), proxy)
    assert not out.listeners and not out.routes
    assert {C80, V1, V2, "BlackHoleCluster"} <= set(out.clusters)
    assert set(out.endpoints) == {C80, V1, V2}


def test_circuit_breaker_policy_mapping() -> None:
    snap = snapshot(*BASE[::2], EXAMPLES / "sections" / "04-circuit-breaker.yaml")
    out = translate(snap, CLIENT)
    top, v2 = as_dict(out.clusters[C80]), as_dict(out.clusters[V2])
    assert top["circuit_breakers"]["thresholds"] == [{
        "max_connections": 10, "max_pending_requests": 5, "max_requests": 4294967295,
        "max_retries": 4294967295}]
    opts = top["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert opts["common_http_protocol_options"] == {"max_requests_per_connection": 2}
    assert opts["explicit_http_config"] == {"http_protocol_options": {}}
    assert top["outlier_detection"] == {
        "consecutive_5xx": 3, "enforcing_consecutive_5xx": 100,
        "consecutive_gateway_failure": 3, "enforcing_consecutive_gateway_failure": 100,
        "interval": "30s", "base_ejection_time": "30s", "max_ejection_percent": 50,
        "enforcing_success_rate": 0}
    assert top["common_lb_config"] == {"healthy_panic_threshold": {}}  # 0%: panic disabled
    # v2 replaces the whole connectionPool block: maxRequestsPerConnection is not inherited.
    assert v2["circuit_breakers"]["thresholds"][0]["max_connections"] == 5
    assert v2["circuit_breakers"]["thresholds"][0]["max_pending_requests"] == 2
    assert "typed_extension_protocol_options" not in v2
    assert v2["outlier_detection"] == top["outlier_detection"]  # inherited block


def test_load_balancer_simple() -> None:
    def lb(simple: str) -> int:
        body = {"host": "sample-app", "trafficPolicy": {"loadBalancer": {"simple": simple}}}
        snap = MeshSnapshot.build([*load(BASE[0]), resource("DestinationRule", "d", body)], 1)
        return translate(snap, CLIENT).clusters[C80].lb_policy  # type: ignore[attr-defined]

    C = cluster_pb2.Cluster
    assert lb("ROUND_ROBIN") == C.ROUND_ROBIN and lb("RANDOM") == C.RANDOM
    assert lb("LEAST_CONN") == C.LEAST_REQUEST and lb("UNSPECIFIED") == C.LEAST_REQUEST


def test_dns_service_entry_is_strict_dns_with_inline_endpoints() -> None:
    out = translate(snapshot(EXAMPLES / "base" / "50-egress.yaml"), CLIENT)
    c = as_dict(out.clusters["outbound|80||httpbin.org"])
    assert c["type"] == "STRICT_DNS"
    assert c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"][
        "socket_address"] == {"address": "httpbin.org", "port_value": 80}
    assert "outbound|80||httpbin.org" not in out.endpoints
    # The egress VS sends mesh traffic to a gateway service that does not exist here.
    vh = vhost(out, "httpbin.org:80")
    assert vh.routes[0].route.cluster == "BlackHoleCluster"
    assert list(vh.domains) == ["httpbin.org", "httpbin.org:80"]
    assert "outbound|443||httpbin.org" in out.clusters
    assert_consistent(out)


def test_non_default_port_domains_carry_the_port() -> None:
    svc = resource("Service", "api", {"selector": {"app": "api"}, "ports": [
        {"name": "http", "port": 8080}, {"name": "grpc", "port": 9090},
        {"name": "tcp-db", "port": 5432}]})
    out = translate(MeshSnapshot.build([svc], 1), CLIENT)
    names = [v.name for v in out.routes["15001"].virtual_hosts]
    fqdn = "api.traffic-demo.svc.cluster.local"
    # The TCP port gets a CONNECT-only vhost (test_tcp_routes.py), also `name:port` only.
    assert names == [f"{fqdn}:5432", f"{fqdn}:8080", f"{fqdn}:9090", "allow_any"]
    assert list(vhost(out, f"{fqdn}:8080").domains) == [
        "api:8080", "api.traffic-demo:8080", "api.traffic-demo.svc:8080", f"{fqdn}:8080"]
    grpc = as_dict(out.clusters[f"outbound|9090||{fqdn}"])["typed_extension_protocol_options"]
    assert "http2_protocol_options" in str(grpc)
    assert f"outbound|5432||{fqdn}" in out.clusters
    assert list(vhost(out, f"{fqdn}:5432").domains) == [
        "api:5432", "api.traffic-demo:5432", "api.traffic-demo.svc:5432", f"{fqdn}:5432"]


def test_other_namespace_client_has_no_bare_name() -> None:
    proxy = ProxyInfo(name="c", namespace="elsewhere")
    out = translate(snapshot(*BASE), proxy)
    assert "sample-app" not in vhost(out).domains
    assert "sample-app.traffic-demo" in vhost(out).domains


def test_deterministic() -> None:
    a = translate(snapshot(*BASE, EXAMPLES / "sections" / "09-ab-test.yaml"), CLIENT)
    b = translate(snapshot(*BASE, EXAMPLES / "sections" / "09-ab-test.yaml"), CLIENT)
    for type_url, items in a.by_type.items():
        assert list(items) == list(b.get(type_url))
        for name, msg in items.items():
            assert msg.SerializeToString(deterministic=True) == b.get(type_url)[
                name].SerializeToString(deterministic=True)


def test_service_entry_static_endpoint_weights() -> None:
    out = translate(snapshot(DATA / "serviceentry-static.yaml"), CLIENT)
    name = "outbound|8080||payments.example.com"
    eps = as_dict(out.endpoints[name])["endpoints"][0]["lb_endpoints"]
    assert [(e["endpoint"]["address"]["socket_address"]["port_value"],
             e.get("load_balancing_weight")) for e in eps] == [(9080, None), (9443, 2)]
    assert out.clusters[name].lb_policy == cluster_pb2.Cluster.ROUND_ROBIN  # type: ignore
    assert as_dict(out.clusters[name].metadata)["filter_metadata"]["istio"]["external"] is True
