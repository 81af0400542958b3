"""`describe service` from API objects: which VirtualService sidecars use (IST0109 for the
others), how DestinationRules merge and whose policy wins, gateways, routes in order."""

from __future__ import annotations

from typing import Any

from meshpilot.cli.diagnostics.describe import live_endpoint_lines
from meshpilot.cli.diagnostics.describe_model import MeshView, describe_service_text, find_services

NS = "traffic-demo"
HOST = "sample-app.traffic-demo.svc.cluster.local"


def obj(kind: str, name: str, spec: dict[str, Any], created: str,
        api: str = "networking.istio.io/v1") -> dict[str, Any]:
    return {"apiVersion": api, "kind": kind, "spec": spec,
            "metadata": {"name": name, "namespace": NS, "creationTimestamp": created,
                         "resourceVersion": "1"}}


def dest(subset: str, weight: int | None = None) -> dict[str, Any]:
    d: dict[str, Any] = {"destination": {"host": "sample-app", "subset": subset}}
    if weight is not None:
        d["weight"] = weight
    return d


def seed_objects() -> list[dict[str, Any]]:
    """The seed's stack: two VirtualServices on one host, two DestinationRules."""
    return [
        obj("Service", "sample-app", {"selector": {"app": "sample-app"},
                                      "ports": [{"name": "http", "port": 80}]},
            "2026-01-01T00:00:00Z", api="v1"),
        *[obj("WorkloadEntry", f"sample-app-{v}-1",
              {"address": "127.0.0.1", "labels": {"app": "sample-app", "version": v},
               "ports": {"http": port}}, "2026-01-01T00:00:00Z")
          for v, port in (("v1", 1001), ("v2", 1002))],
        obj("VirtualService", "sample-app-routing", {"hosts": ["sample-app"], "http": [
            {"match": [{"headers": {"version": {"exact": "v2"}}}], "route": [dest("v2")]},
            {"route": [dest("v1", 90), dest("v2", 10)], "timeout": "3s",
             "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "5xx"},
             "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 5}}}}]},
            "2026-01-01T00:01:00Z"),
        obj("VirtualService", "sample-app-canary", {"hosts": ["sample-app"], "http": [
            {"route": [dest("v2")]}]}, "2026-01-01T00:02:00Z"),
        obj("VirtualService", "sample-app-gateway-vs", {
            "hosts": ["sample-app.example.com"], "gateways": ["sample-app-gateway"],
            "http": [{"route": [dest("v1")]}]}, "2026-01-01T00:03:00Z"),
        obj("Gateway", "sample-app-gateway", {"selector": {"istio": "ingressgateway"},
                                              "servers": [{"port": {"number": 80, "name": "http",
                                                                    "protocol": "HTTP"},
                                                           "hosts": ["sample-app.example.com"]}]},
            "2026-01-01T00:03:00Z"),
        obj("DestinationRule", "sample-app-subsets", {"host": "sample-app", "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}}],
            "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}},
            "2026-01-01T00:01:00Z"),
        obj("DestinationRule", "sample-app-cb", {"host": "sample-app", "subsets": [
            {"name": "v3", "labels": {"version": "v3"},
             "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 1}}}}],
            "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": 1}}},
            "2026-01-01T00:04:00Z"),
    ]


def describe(objects: list[dict[str, Any]]) -> str:
    view = MeshView.build(objects)
    [svc] = find_services(view, "sample-app", NS)
    return describe_service_text(view, svc)


def test_effective_virtual_service_and_ist0109() -> None:
    text = describe(seed_objects())
    assert f"sample-app-routing.{NS}   [mesh]   EFFECTIVE on sidecars in {NS}" in text
    assert (f"sample-app-canary.{NS}   [mesh]   IGNORED on sidecars: sample-app-routing.{NS} "
            "is older and routes this host (IST0109)") in text
    assert (f"sample-app-gateway-vs.{NS}   [gateways sample-app-gateway]   routes to it "
            "(hosts sample-app.example.com)") in text


def test_destination_rules_merge_and_oldest_policy_wins() -> None:
    text = describe(seed_objects())
    assert f"merged (oldest first): sample-app-subsets.{NS}, sample-app-cb.{NS}" in text
    assert f"sample-app-cb.{NS}: trafficPolicy IGNORED (sample-app-subsets.{NS} is older" in text
    assert f'Traffic policy (from sample-app-subsets.{NS}):\n      loadBalancer: ' \
           '{"simple": "ROUND_ROBIN"}' in text
    assert "v1: version=v1   1 endpoint(s)" in text
    assert "v3: version=v3   0 endpoint(s)" in text and "NO ENDPOINTS" in text
    assert 'connectionPool: {"tcp": {"maxConnections": 1}}' in text


def test_gateways_and_routes_in_order() -> None:
    text = describe(seed_objects())
    assert (f"sample-app-gateway.{NS} (selector istio=ingressgateway) via "
            f"sample-app-gateway-vs.{NS}: 80/HTTP sample-app.example.com") in text
    routes = text.split("in order:\n")[1]
    assert routes.splitlines()[:4] == [
        "   1. (header version=v2)",
        "      -> v2 100%",
        "      retries: 2 attempts on connect-failure,refused-stream,unavailable,cancelled,"
        "retriable-status-codes (Istio's default)",
        "      timeout: none (Istio's default)",
    ]
    assert "   2. any request\n      -> v1 90%, v2 10%\n      fault: abort with 503 for 5% of " \
           "requests\n      retries: 3 attempts, 1s per try on 5xx\n      timeout: 3s" in routes


def test_service_without_rules() -> None:
    objects = [o for o in seed_objects() if o["kind"] in ("Service", "WorkloadEntry")]
    text = describe(objects)
    assert "VirtualServices (sample-app.traffic-demo.svc.cluster.local):\n   none" in text
    assert "none applies to sidecars in traffic-demo" in text
    assert f"any request -> outbound|80||{HOST} (all endpoints)" in text
    assert find_services(MeshView.build(objects), "nope", NS) == []


def test_live_endpoints_per_subset() -> None:
    view = MeshView.build(seed_objects())
    [svc] = find_services(view, HOST, "elsewhere")
    data = {"cluster_statuses": [
        {"name": f"outbound|80|v1|{HOST}", "host_statuses": [
            {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 1001}},
             "health_status": {"eds_health_status": "HEALTHY", "failed_outlier_check": True}}]},
        {"name": "outbound|80||other.ns.svc.cluster.local", "host_statuses": [{}]}]}
    assert live_endpoint_lines(data, svc) == [
        "   SUBSET   PORT   ENDPOINT         STATUS    OUTLIER CHECK",
        "   v1       80     127.0.0.1:1001   HEALTHY   FAILED",
    ]
    assert "no outbound cluster" in live_endpoint_lines({}, svc)[0]
