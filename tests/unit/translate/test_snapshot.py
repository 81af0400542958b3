"""MeshSnapshot: Istio's ordering, DestinationRule merging, oldest VirtualService wins."""

from __future__ import annotations

import pytest

from meshpilot.api.resource import Resource
from meshpilot.snapshot import MeshConfig, MeshSnapshot

from .helpers import DATA, EXAMPLES, SEED, load, resource, snapshot

FQDN = "sample-app.traffic-demo.svc.cluster.local"
ROUTE_V1 = {"hosts": ["sample-app"], "http": [{"route": [{"destination": {
    "host": "sample-app", "subset": "v1"}}]}]}


def test_build_indexes_seed_routing() -> None:
    snap = snapshot(SEED / "01-deployments-and-service.yaml", SEED / "02-routing.yaml")
    assert snap.revision == 1 and snap.mesh == MeshConfig()
    vs = snap.virtual_service_for(FQDN)
    assert vs is not None and vs.name == "sample-app-routing"
    dr = snap.destination_rule(FQDN, "traffic-demo")
    assert dr is not None and dr.subset_names == ("v1", "v2")
    assert snap.diagnostics == []


def test_configs_ordered_by_creation_then_name_then_namespace() -> None:
    res = [
        resource("VirtualService", "b", ROUTE_V1, created="2026-01-01T00:00:01Z"),
        resource("VirtualService", "a", ROUTE_V1, created="2026-01-01T00:00:01Z"),
        resource("VirtualService", "a", ROUTE_V1, namespace="aaa", created="2026-01-01T00:00:01Z"),
        resource("VirtualService", "z", ROUTE_V1, created="2026-01-01T00:00:00Z"),
    ]
    snap = MeshSnapshot.build(res, 7)
    assert [(c.name, c.namespace) for c in snap.virtual_services] == [
        ("z", "traffic-demo"), ("a", "aaa"), ("a", "traffic-demo"), ("b", "traffic-demo")]


def test_oldest_mesh_virtual_service_wins_and_later_ones_are_reported() -> None:
    # The seed applies routing, then canary, then A/B for the same host: routing wins.
    snap = snapshot(SEED / "01-deployments-and-service.yaml", SEED / "02-routing.yaml",
                    SEED / "03-canary.yaml")
    vs = snap.virtual_service_for(FQDN)
    assert vs is not None and vs.name == "sample-app-routing"
    assert any("sample-app-canary" in d and "IST0109" in d for d in snap.diagnostics)


def test_gateway_only_virtual_service_is_not_mesh_bound() -> None:
    snap = snapshot(EXAMPLES / "base")
    assert set(snap.mesh_virtual_services) == {FQDN, "httpbin.org"}
    # sample-app-gateway-vs is bound to the gateway only: it claims nothing for sidecars.
    assert snap.virtual_service_for("sample-app.hashfoundry.local") is None


def test_wildcard_virtual_service_matches_most_specific() -> None:
    def vs(name: str, host: str, created: str) -> Resource:
        return resource("VirtualService", name, {"hosts": [host], "http": [
            {"route": [{"destination": {"host": "x.example.com"}}]}]}, created=created)

    snap = MeshSnapshot.build([vs("broad", "*.com", "1"), vs("narrow", "*.example.com", "2"),
                               vs("exact", "y.example.com", "3")], 1)
    assert snap.virtual_service_for("x.example.com").name == "narrow"  # type: ignore[union-attr]
    assert snap.virtual_service_for("y.example.com").name == "exact"  # type: ignore[union-attr]
    assert snap.virtual_service_for("a.org") is None


def test_destination_rules_merge_like_istio() -> None:
    # Seed sections 2 and 4: two DRs for sample-app in one namespace.
    snap = snapshot(SEED / "01-deployments-and-service.yaml", SEED / "02-routing.yaml",
                    SEED / "04-circuit-breaker.yaml")
    dr = snap.destination_rule(FQDN, "traffic-demo")
    assert dr is not None
    assert [c.name for c in dr.sources] == ["sample-app-subsets", "sample-app-circuit-breaker"]
    # Subsets: first wins, so v2 keeps the older rule's (policy-less) definition...
    v2 = dr.subset("v2")
    assert v2 is not None and v2.traffic_policy is None
    # ...while the top-level policy comes from the newer rule (the older one has none).
    assert dr.rule.traffic_policy is not None
    assert dr.rule.traffic_policy.connection_pool.tcp.max_connections == 10  # type: ignore
    assert any("subset 'v2'" in d for d in snap.diagnostics)


def test_oldest_top_level_policy_wins() -> None:
    def dr(name: str, simple: str, created: str) -> Resource:
        return resource("DestinationRule", name, {"host": "sample-app", "trafficPolicy": {
            "loadBalancer": {"simple": simple}}}, created=created)

    snap = MeshSnapshot.build([dr("new", "RANDOM", "2"), dr("old", "ROUND_ROBIN", "1")], 1)
    merged = snap.destination_rule(FQDN, "traffic-demo")
    assert merged is not None
    assert merged.rule.traffic_policy.load_balancer.simple == "ROUND_ROBIN"  # type: ignore
    assert any("new" in d and "trafficPolicy ignored" in d for d in snap.diagnostics)


def test_destination_rule_lookup_order() -> None:
    def dr(ns: str, subset: str) -> Resource:
        return resource("DestinationRule", "d", {"host": FQDN, "subsets": [{"name": subset}]},
                        namespace=ns)

    snap = MeshSnapshot.build([dr("client", "c"), dr("traffic-demo", "s"),
                               dr("istio-system", "root")], 1)
    assert snap.destination_rule(FQDN, "client", "traffic-demo").subset_names == ("c",)  # type: ignore
    assert snap.destination_rule(FQDN, "x", "traffic-demo").subset_names == ("s",)  # type: ignore
    assert snap.destination_rule(FQDN, "x", "y").subset_names == ("root",)  # type: ignore


@pytest.mark.parametrize(("vs", "expected"), [
    ({"hosts": ["sample-app"], "http": [{"route": [{"destination": {"host": "nope"}}]}]},
     "destination host nope.traffic-demo.svc.cluster.local matches no service"),
    ({"hosts": ["sample-app"], "http": [{"route": [{"destination": {
        "host": "sample-app", "subset": "v9"}}]}]},
     "subset 'v9' of sample-app.traffic-demo.svc.cluster.local is defined by no"),
    ({"hosts": ["sample-app"], "http": [{"mirror": {"host": "sample-app", "subset": "v9"},
        "route": [{"destination": {"host": "sample-app"}}]}]},
     "subset 'v9' of sample-app.traffic-demo.svc.cluster.local is defined by no"),
    ({"hosts": ["sample-app"], "http": [{"delegate": {"name": "missing"}}]},
     "delegate VirtualService traffic-demo/missing not found"),
])
def test_diagnostics(vs: dict, expected: str) -> None:
    res = [*load(EXAMPLES / "base" / "10-sample-app-service.yaml",
                 EXAMPLES / "base" / "20-sample-app-subsets.yaml"),
           resource("VirtualService", "vs", vs)]
    snap = MeshSnapshot.build(res, 1)
    assert any(expected in d for d in snap.diagnostics), snap.diagnostics


def test_implemented_route_fields_are_not_reported() -> None:
    vs = {"hosts": ["sample-app"], "http": [{
        "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 1}}},
        "corsPolicy": {"allowOrigins": [{"exact": "https://a.example"}]},
        "headers": {"request": {"set": {"x-a": "1"}}},
        "mirror": {"host": "sample-app", "subset": "v2"},
        "route": [{"destination": {"host": "sample-app"}}]}]}
    res = [*load(EXAMPLES / "base" / "10-sample-app-service.yaml",
                 EXAMPLES / "base" / "20-sample-app-subsets.yaml"),
           resource("VirtualService", "vs", vs)]
    snap = MeshSnapshot.build(res, 1)
    assert snap.diagnostics == []


def test_invalid_body_is_skipped_with_diagnostic() -> None:
    bad = resource("VirtualService", "bad", {"hosts": ["x"], "http": [{"match": [
        {"cookie": {"regex": ".*"}}]}]})
    snap = MeshSnapshot.build([bad, *load(DATA / "serviceentry-static.yaml")], 1)
    assert snap.virtual_services == ()
    assert any("VirtualService traffic-demo/bad: invalid body" in d for d in snap.diagnostics)


def test_policy_settings_that_cannot_apply_are_reported() -> None:
    dr = resource("DestinationRule", "hash", {"host": "sample-app", "trafficPolicy": {
        "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}},
        "tls": {"mode": "ISTIO_MUTUAL"}}, "subsets": [
            {"name": "v1", "labels": {"version": "v1"}, "trafficPolicy": {
                "loadBalancer": {"simple": "PASSTHROUGH", "localityLbSetting": {}},
                "tls": {"mode": "SIMPLE", "credentialName": "nope"}}}]})
    snap = MeshSnapshot.build([*load(EXAMPLES / "base" / "10-sample-app-service.yaml"), dr], 1)
    text = "\n".join(snap.diagnostics)
    assert "consistentHash" not in text  # implemented now
    assert "trafficPolicy: tls mode ISTIO_MUTUAL needs mesh mTLS" in text
    assert "subset v1: loadBalancer.simple PASSTHROUGH cannot apply" in text
    assert "subset v1: loadBalancer.localityLbSetting" in text
    assert "Secret 'nope' does not exist in namespace traffic-demo" in text


def test_parsed_cache_reuses_unchanged_objects_and_drops_deleted_ones() -> None:
    from meshpilot.api.resource import Resource
    from meshpilot.snapshot.mesh import MeshSnapshot

    def dr(name: str, rv: int, host: str) -> Resource:
        return Resource("networking.istio.io/v1", "DestinationRule", name, "ns",
                        {"host": host}, resource_version=rv)

    cache: dict = {}
    first = MeshSnapshot.build([dr("a", 1, "a"), dr("b", 2, "b")], 2, parsed=cache)
    second = MeshSnapshot.build([dr("a", 1, "a"), dr("b", 3, "b2")], 3, parsed=cache)
    assert second.destination_rules[0] is first.destination_rules[0]  # a: reused
    assert second.destination_rules[1].spec.host == "b2"  # b: new version parsed again
    MeshSnapshot.build([dr("a", 1, "a")], 4, parsed=cache)
    assert set(cache) == {("DestinationRule", "ns", "a", 1)}


def test_gateway_whose_selector_matches_no_running_gateway_is_reported() -> None:
    from meshpilot.api.resource import Resource
    from meshpilot.snapshot.mesh import MeshSnapshot

    gateway = Resource("networking.istio.io/v1", "Gateway", "gw", "traffic-demo", {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"},
                     "hosts": ["example.test"]}]})
    running = Resource("networking.istio.io/v1", "WorkloadEntry", "istio-ingressgateway",
                       "istio-system", {"address": "127.0.0.1",
                                        "labels": {"istio": "ingressgateway"}},
                       annotations={"meshpilot.io/port-map": "80:8080"})
    alone = MeshSnapshot.build([gateway], 1)
    assert any("selector istio=ingressgateway matches no running gateway proxy" in d
               for d in alone.diagnostics)
    served = MeshSnapshot.build([gateway, running], 2)
    assert not any("matches no running gateway" in d for d in served.diagnostics)
