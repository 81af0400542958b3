"""Gateway analyzers: selectors, exposed ports, credentials and conflicts."""

from __future__ import annotations

from pathlib import Path

from meshpilot.analyze.analyzers import gateway

from .helpers import lines

ANALYZERS = gateway.ANALYZERS
CERT = (Path(__file__).parents[2] / "data/analyze/runtime/traffic-demo-runtime.yaml").read_text()
SECRET = next(d for d in CERT.split("\n---\n") if "kind: Secret" in d)


def gw(name: str = "shop-gateway", selector: str = "{istio: ingressgateway}", port: int = 80,
       hosts: str = "[shop.example.com]", tls: str = "") -> str:
    protocol = "HTTPS" if tls else "HTTP"
    tls_line = f"\n    tls: {tls}" if tls else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}, namespace: shop}}
spec:
  selector: {selector}
  servers:
  - port: {{number: {port}, name: p{port}, protocol: {protocol}}}
    hosts: {hosts}{tls_line}
"""


GATEWAY_WE = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: egress
  namespace: gateways
  annotations: {meshpilot.io/port-map: "80:8080,443:8443"}
spec:
  address: 127.0.0.1
  labels: {istio: egressgateway}
"""


def test_selector_matching_no_workload_is_ist0101() -> None:
    assert lines(gw(selector="{istio: egressgateway}"), analyzers=ANALYZERS) == [
        'Error [IST0101] (Gateway shop/shop-gateway) Referenced selector not found: '
        '"istio=egressgateway"']
    assert lines(gw(selector="{istio: egressgateway}"), GATEWAY_WE, analyzers=ANALYZERS) == []


def test_default_ingress_offline_exposes_istio_ports_only() -> None:
    assert lines(gw(port=443, tls="{mode: PASSTHROUGH}"), analyzers=ANALYZERS) == []
    assert lines(gw(port=8443), analyzers=ANALYZERS) == [
        "Warning [IST0162] (Gateway shop/shop-gateway) The gateway is listening on a target port "
        "(port 8443) that is not defined in the Service associated with its workload instances "
        "(Pod selector istio=ingressgateway). If you need to access the gateway port through "
        "the gateway Service, it will not be available."]


def test_port_map_is_the_gateway_service() -> None:
    """A meshpilot gateway's --port-map 80:8080 exposes 80 (and binds 8080)."""
    selector = "{istio: egressgateway}"
    assert lines(gw(selector=selector, port=80), GATEWAY_WE, analyzers=ANALYZERS) == []
    assert lines(gw(selector=selector, port=8080), GATEWAY_WE, analyzers=ANALYZERS) == []
    assert "IST0162" in lines(gw(selector=selector, port=9090), GATEWAY_WE,
                              analyzers=ANALYZERS)[0]


def test_missing_and_invalid_credentials() -> None:
    tls = "{mode: SIMPLE, credentialName: sample-app-tls}"
    assert lines(gw(port=443, tls=tls), analyzers=ANALYZERS) == [
        'Error [IST0101] (Gateway shop/shop-gateway) Referenced credentialName not found: '
        '"sample-app-tls"']
    assert lines(gw(port=443, tls=tls), SECRET, analyzers=ANALYZERS) == []
    broken = SECRET.split("tls.crt: |")[0] + "tls.crt: not-a-cert\n  tls.key: k\n"
    assert lines(gw(port=443, tls=tls), broken, analyzers=ANALYZERS) == [
        "Error [IST0161] (Gateway shop/shop-gateway) The credential referenced by the Gateway "
        "shop-gateway in namespace istio-system is invalid, which can cause the traffic not to "
        "work as expected."]


def test_same_host_and_port_on_same_workloads_conflict() -> None:
    found = lines(gw("a"), gw("b"), analyzers=ANALYZERS)
    assert found == [
        "Error [IST0145] (Gateway shop/a) Conflict with gateways shop/b (workload selector "
        "istio=ingressgateway, port 80, hosts shop.example.com).",
        "Error [IST0145] (Gateway shop/b) Conflict with gateways shop/a (workload selector "
        "istio=ingressgateway, port 80, hosts shop.example.com)."]
    assert lines(gw("a"), gw("b", hosts="[www.example.com]"), analyzers=ANALYZERS) == []
    assert lines(gw("a"), gw("b", port=443, tls="{mode: PASSTHROUGH}"),
                 analyzers=ANALYZERS) == []


def test_shared_certificate_is_ist0138() -> None:
    tls = "{mode: SIMPLE, credentialName: sample-app-tls}"
    found = lines(gw("a", port=443, tls=tls), gw("b", port=443, tls=tls,
                                                 hosts="[www.example.com]"),
                  SECRET, analyzers=ANALYZERS)
    assert found == [
        "Warning [IST0138] (Gateway shop/a) Duplicate certificate in multiple gateways "
        "[shop/a shop/b] may cause 404s if clients re-use HTTP2 connections.",
        "Warning [IST0138] (Gateway shop/b) Duplicate certificate in multiple gateways "
        "[shop/b shop/a] may cause 404s if clients re-use HTTP2 connections."]
