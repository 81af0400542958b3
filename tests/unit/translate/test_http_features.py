"""Generated config for VirtualService fault, CORS, mirror, header and delegate features.

The golden case `http-features` pins the whole translation; these tests name the Istio
rule behind each field so a regression says which behaviour broke.
"""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.v3 import percent_pb2

from meshpilot.api.virtualservice import (
    CorsPolicy,
    Headers,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRoute,
)
from meshpilot.snapshot import MeshSnapshot
from meshpilot.snapshot.delegate import merge_matches, merge_rule, string_match_conflict
from meshpilot.xds.translate import translate
from meshpilot.xds.translate.routes import (
    CORS_FILTER,
    FAULT_FILTER,
    header_operations,
    translate_cors,
    translate_fault,
)

from .cases import CASES
from .helpers import CLIENT, EXAMPLES, load, resource, snapshot

MILLION = percent_pb2.FractionalPercent.MILLION
HUNDRED = percent_pb2.FractionalPercent.HUNDRED
HVO = base_pb2.HeaderValueOption


def fault(body: dict) -> fault_pb2.HTTPFault | None:
    return translate_fault(HTTPFaultInjection.model_validate(body, by_alias=True))


def test_fault_percentages_use_istios_denominators() -> None:
    out = fault({"abort": {"httpStatus": 503, "percentage": {"value": 12.5}},
                 "delay": {"fixedDelay": "1.5s", "percent": 20}})
    assert out is not None
    assert (out.abort.http_status, out.abort.percentage.numerator,
            out.abort.percentage.denominator) == (503, 125000, MILLION)
    assert (out.delay.fixed_delay.seconds, out.delay.fixed_delay.nanos) == (1, 500_000_000)
    assert (out.delay.percentage.numerator, out.delay.percentage.denominator) == (20, HUNDRED)


def test_fault_without_percentage_never_fires() -> None:
    out = fault({"abort": {"httpStatus": 500}, "delay": {"fixedDelay": "1s"}})
    assert out is not None
    assert not out.abort.HasField("percentage")  # Envoy: 0%
    assert out.delay.percentage.numerator == 0


def test_grpc_abort_uses_the_code_number() -> None:
    out = fault({"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 100}}})
    assert out is not None and out.abort.grpc_status == 14


def test_cors_policy_fields() -> None:
    policy = CorsPolicy.model_validate({
        "allowOrigins": [{"exact": "https://a"}, {"prefix": "https://b"}],
        "allowMethods": ["GET", "POST"], "allowHeaders": ["x-a"], "exposeHeaders": ["x-b"],
        "maxAge": "2m", "allowCredentials": False, "unmatchedPreflights": "IGNORE",
    }, by_alias=True)
    out = translate_cors(policy)
    assert [m.WhichOneof("match_pattern") for m in out.allow_origin_string_match] == [
        "exact", "prefix"]
    assert (out.allow_methods, out.allow_headers, out.expose_headers, out.max_age) == (
        "GET,POST", "x-a", "x-b", "120")
    assert out.allow_credentials.value is False and out.HasField("allow_credentials")
    assert out.forward_not_matching_preflights.value is False
    assert out.filter_enabled.default_value.numerator == 100
    default = translate_cors(CorsPolicy.model_validate({"allowOrigin": ["https://x"]},
                                                       by_alias=True))
    assert default.forward_not_matching_preflights.value is True
    assert default.allow_origin_string_match[0].exact == "https://x"
    assert not default.HasField("allow_credentials")


def test_header_operations_set_overwrites_add_appends_authority_rewrites() -> None:
    ops = header_operations(Headers.model_validate({
        "request": {"set": {"b": "1", "a": "2", "Host": "h.example"}, "add": {"c": "3"},
                    "remove": ["d"]},
        "response": {"add": {"e": "4"}, "remove": ["f"]},
    }, by_alias=True))
    assert [(o.header.key, o.append_action) for o in ops.request_add] == [
        ("a", HVO.OVERWRITE_IF_EXISTS_OR_ADD), ("b", HVO.OVERWRITE_IF_EXISTS_OR_ADD),
        ("c", HVO.APPEND_IF_EXISTS_OR_ADD)]
    assert ops.authority == "h.example"
    assert ops.request_remove == ["d"]
    assert [(o.header.key, o.append_action) for o in ops.response_add] == [
        ("e", HVO.APPEND_IF_EXISTS_OR_ADD)]
    assert ops.response_remove == ["f"]


def _routes(case: str) -> dict:
    out = translate(snapshot(*CASES[case]), CLIENT)
    vh = next(v for v in out.routes["15001"].virtual_hosts if v.name.startswith("sample-app"))
    return {r.name: r for r in vh.routes}


def test_only_the_matched_rule_carries_fault_and_cors() -> None:
    routes = _routes("http-features")
    assert set(routes["faults"].typed_per_filter_config) == {FAULT_FILTER}
    assert set(routes["cors"].typed_per_filter_config) == {CORS_FILTER}
    assert not routes["mirrored"].typed_per_filter_config
    cors = cors_pb2.CorsPolicy()
    routes["cors"].typed_per_filter_config[CORS_FILTER].Unpack(cors)
    assert cors.max_age == "86400"


def test_mirrors_to_missing_clusters_are_left_out() -> None:
    routes = _routes("http-features")
    shadow = routes["mirrored"].route.request_mirror_policies
    assert [m.cluster for m in shadow] == [
        "outbound|80|v2|sample-app.traffic-demo.svc.cluster.local"]
    assert shadow[0].runtime_fraction.default_value.numerator == 500000
    assert shadow[0].disable_shadow_host_suffix_append is True
    assert shadow[0].trace_sampled.value is False
    many = routes["mirrors"].route.request_mirror_policies
    assert [m.cluster for m in many] == [
        "outbound|80|v1|sample-app.traffic-demo.svc.cluster.local"]


def test_destination_headers_go_on_weighted_clusters() -> None:
    route = _routes("http-features")["headers"]
    assert route.route.host_rewrite_literal == "rewritten.example"
    v1, v2 = route.route.weighted_clusters.clusters
    assert v1.host_rewrite_literal == "dest-v1.example"
    assert [o.header.key for o in v1.request_headers_to_add] == ["x-dest"]
    assert list(v2.response_headers_to_remove) == ["x-instance"]


def test_hcm_filter_order_is_istios() -> None:
    out = translate(snapshot(*CASES["http-features"]), CLIENT)
    for listener in out.listeners.values():
        hcm = hcm_pb2.HttpConnectionManager()
        listener.filter_chains[0].filters[0].typed_config.Unpack(hcm)  # type: ignore[attr-defined]
        names = [f.name for f in hcm.http_filters]
        # Like Istio's metadata-exchange filter, the inbound peer-id filter comes first.
        if listener.name == "virtualInbound":
            assert names[0] == "envoy.filters.http.header_to_metadata"
            names = names[1:]
        assert names[:2] == [FAULT_FILTER, CORS_FILTER] and names[-1].endswith("router")


def _match(body: dict) -> HTTPMatchRequest:
    return HTTPMatchRequest.model_validate(body, by_alias=True)


@pytest.mark.parametrize(("root", "leaf", "conflict"), [
    ({"prefix": "/a"}, {"prefix": "/a/b"}, False),
    ({"prefix": "/a/b"}, {"prefix": "/a"}, True),
    ({"prefix": "/a"}, {"exact": "/a/x"}, False),
    ({"exact": "/a"}, {"exact": "/a"}, False),
    ({"exact": "/a"}, {"prefix": "/a"}, True),
    ({"regex": "/a.*"}, {"prefix": "/a"}, True),
    ({"prefix": "/a"}, {"regex": "/a.*"}, True),
])
def test_string_match_conflicts_as_istio(root: dict, leaf: dict, conflict: bool) -> None:
    assert string_match_conflict(_match({"uri": root}).uri, _match({"uri": leaf}).uri) is conflict


def test_delegate_matches_are_anded_and_fields_inherited() -> None:
    root = HTTPRoute.model_validate({
        "name": "root", "match": [{"uri": {"prefix": "/t"}, "headers": {"a": {"exact": "1"}}}],
        "timeout": "2s", "delegate": {"name": "d"}}, by_alias=True)
    leaf = HTTPRoute.model_validate({
        "name": "leaf", "match": [{"uri": {"prefix": "/t/x"}, "headers": {"b": {"exact": "2"}}}],
        "route": [{"destination": {"host": "svc"}}]}, by_alias=True)
    merged = merge_rule(root, leaf)
    assert merged is not None
    assert merged.name == "root-leaf" and merged.timeout == "2s" and merged.delegate is None
    (m,) = merged.match
    assert m.uri is not None and m.uri.prefix == "/t/x"
    assert set(m.headers) == {"a", "b"}
    assert merge_matches(root.match, [_match({"uri": {"prefix": "/other"}})]) is None


def test_delegate_in_another_namespace_resolves_its_own_hosts() -> None:
    res = [*load(EXAMPLES / "base" / "10-sample-app-service.yaml",
                 EXAMPLES / "base" / "20-sample-app-subsets.yaml"),
           resource("Service", "other", {"selector": {"app": "other"},
                                         "ports": [{"port": 80, "name": "http"}]},
                    namespace="team"),
           resource("VirtualService", "d", {"exportTo": ["*"], "http": [
               {"route": [{"destination": {"host": "other"}}]}]}, namespace="team",
                    created="2026-01-02T00:00:00Z"),
           resource("VirtualService", "root", {"hosts": ["sample-app"], "http": [
               {"match": [{"uri": {"prefix": "/team"}}],
                "delegate": {"name": "d", "namespace": "team"}}]},
                    created="2026-01-02T00:00:01Z")]
    snap = MeshSnapshot.build(res, 1)
    assert snap.diagnostics == []
    out = translate(snap, CLIENT)
    vh = next(v for v in out.routes["15001"].virtual_hosts
              if v.name.startswith("sample-app"))
    assert vh.routes[0].route.cluster == "outbound|80||other.team.svc.cluster.local"
    assert vh.routes[0].match.prefix == "/team"


def test_delegate_not_exported_to_the_root_namespace_is_ignored() -> None:
    res = [*load(EXAMPLES / "base" / "10-sample-app-service.yaml"),
           resource("VirtualService", "d", {"exportTo": ["."], "http": [
               {"route": [{"destination": {"host": "sample-app.traffic-demo.svc.cluster.local"}}]
                }]}, namespace="team"),
           resource("VirtualService", "root", {"hosts": ["sample-app"], "http": [
               {"delegate": {"name": "d", "namespace": "team"}}]})]
    snap = MeshSnapshot.build(res, 1)
    assert any("not found or not exported" in d for d in snap.diagnostics)
    out = translate(snap, CLIENT)
    vh = next(v for v in out.routes["15001"].virtual_hosts
              if v.name.startswith("sample-app"))
    assert [r.name for r in vh.routes] == ["default"]  # no rule left: Istio's default route
