"""Registry: services from Service/ServiceEntry, endpoints from WorkloadEntries, aliases."""

from __future__ import annotations

from meshpilot.registry import host_aliases
from meshpilot.snapshot import MeshSnapshot

from .helpers import DATA, EXAMPLES, SEED, resource, snapshot

FQDN = "sample-app.traffic-demo.svc.cluster.local"
SVC = {"selector": {"app": "sample-app"}, "ports": [{"name": "http", "port": 80,
                                                      "targetPort": 8080}]}


def we(name: str, labels: dict[str, str], ports: dict[str, int] | None = None,
       address: str = "127.0.0.5", namespace: str = "traffic-demo", **extra: object):
    body: dict[str, object] = {"address": address, "labels": labels, **extra}
    if ports is not None:
        body["ports"] = ports
    return resource("WorkloadEntry", name, body, namespace)


def build(*resources):
    return MeshSnapshot.build(list(resources), 1)


def test_service_hostname_ports_and_sniffed_protocol() -> None:
    snap = snapshot(SEED / "01-deployments-and-service.yaml")
    svc = snap.service(FQDN)
    assert svc is not None and svc.is_kubernetes
    (port,) = svc.ports
    assert (port.name, port.port, port.protocol, port.is_http) == ("", 80, "UnsupportedProtocol",
                                                                   True)


def test_aliases_same_and_other_namespace() -> None:
    snap = snapshot(EXAMPLES / "base" / "10-sample-app-service.yaml")
    svc = snap.service(FQDN)
    assert svc is not None
    assert host_aliases(svc, "traffic-demo", "cluster.local") == [
        "sample-app", "sample-app.traffic-demo", "sample-app.traffic-demo.svc", FQDN]
    assert host_aliases(svc, "other", "cluster.local") == [
        "sample-app.traffic-demo", "sample-app.traffic-demo.svc", FQDN]


def test_selector_needs_all_labels_and_same_namespace() -> None:
    snap = build(
        resource("Service", "sample-app", {**SVC, "selector": {"app": "sample-app",
                                                               "tier": "web"}}),
        we("both", {"app": "sample-app", "tier": "web", "version": "v1"}, address="127.0.0.1"),
        we("one", {"app": "sample-app"}, address="127.0.0.2"),
        we("elsewhere", {"app": "sample-app", "tier": "web"}, address="127.0.0.3",
           namespace="other"),
    )
    svc = snap.service(FQDN)
    assert svc is not None
    assert [e.workload for e in svc.endpoints] == ["both"]


def test_endpoint_port_resolution() -> None:
    snap = build(
        resource("Service", "sample-app", SVC),
        we("named", {"app": "sample-app"}, {"http": 9001, "metrics": 9090}, "127.0.0.1"),
        we("single", {"app": "sample-app"}, {"web": 9002}, "127.0.0.2"),
        we("none", {"app": "sample-app"}, None, "127.0.0.3"),
        we("other-names", {"app": "sample-app"}, {"a": 1, "b": 2}, "127.0.0.4"),
    )
    svc = snap.service(FQDN)
    assert svc is not None
    ports = {e.workload: e.port_for(80) for e in svc.endpoints}
    # ports[name], else the only port, else numeric targetPort, else the port.
    assert ports == {"named": 9001, "single": 9002, "none": 8080, "other-names": 8080}


def test_endpoint_port_falls_back_to_port_without_target() -> None:
    snap = build(resource("Service", "s", {"selector": {"a": "b"}, "ports": [{"port": 81}]}),
                 we("w", {"a": "b"}))
    svc = snap.service("s.traffic-demo.svc.cluster.local")
    assert svc is not None and svc.endpoints[0].port_for(81) == 81


def test_service_entry_static_endpoints() -> None:
    snap = snapshot(DATA / "serviceentry-static.yaml")
    svc = snap.service("payments.example.com")
    assert svc is not None and not svc.is_kubernetes
    assert (svc.resolution, svc.location) == ("STATIC", "MESH_EXTERNAL")
    assert [(e.address, e.port_for(8080), e.weight) for e in svc.endpoints] == [
        ("127.0.0.31", 9080, None), ("127.0.0.32", 9443, 2)]
    assert host_aliases(svc, "traffic-demo", "cluster.local") == ["payments.example.com"]


def test_service_entry_workload_selector() -> None:
    snap = build(
        resource("ServiceEntry", "vm", {
            "hosts": ["vm.internal"], "location": "MESH_INTERNAL", "resolution": "STATIC",
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "workloadSelector": {"labels": {"app": "vm"}}}),
        we("vm-1", {"app": "vm"}, {"http": 8081}, "127.0.0.9"),
        we("not-vm", {"app": "web"}, {"http": 8081}, "127.0.0.8"),
    )
    svc = snap.service("vm.internal")
    assert svc is not None and [e.workload for e in svc.endpoints] == ["vm-1"]


def test_dns_service_entry_without_endpoints_resolves_its_host() -> None:
    snap = snapshot(EXAMPLES / "base" / "50-egress.yaml")
    svc = snap.service("httpbin.org")
    assert svc is not None and svc.resolution == "DNS"
    assert [(e.address, e.port_for(80), e.port_for(443)) for e in svc.endpoints] == [
        ("httpbin.org", 80, 443)]


def test_duplicate_host_first_wins_with_diagnostic() -> None:
    body = {"hosts": ["api.example.com"], "resolution": "STATIC",
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "endpoints": [{"address": "127.0.0.1"}]}
    snap = build(resource("ServiceEntry", "b", body, created="2026-01-02T00:00:00Z"),
                 resource("ServiceEntry", "a", body, created="2026-01-01T00:00:00Z"))
    svc = snap.service("api.example.com")
    assert svc is not None and svc.source_name == "a"
    assert any("ServiceEntry traffic-demo/b" in d and "already defined" in d
               for d in snap.diagnostics)
