"""ServiceEntry and WorkloadEntry: seed, round-trip, and one test per Istio rule."""

from __future__ import annotations

from typing import Any

import pytest

from meshpilot.api.schema import parse_model
from meshpilot.api.serviceentry import ServiceEntry, WorkloadEntry

CTX = {"namespace": "traffic-demo"}

SEED = {
    "hosts": ["httpbin.org"],
    "ports": [
        {"number": 80, "name": "http", "protocol": "HTTP"},
        {"number": 443, "name": "https", "protocol": "HTTPS"},
    ],
    "location": "MESH_EXTERNAL",
    "resolution": "DNS",
}

FULL = {
    "hosts": ["api.internal.example.com"],
    "addresses": ["240.0.0.10", "2001:db8::10"],
    "ports": [
        {"number": 8080, "name": "http-api", "protocol": "HTTP", "targetPort": 18080},
        {"number": 9090, "name": "grpc", "protocol": "GRPC"},
    ],
    "location": "MESH_INTERNAL",
    "resolution": "STATIC",
    "endpoints": [
        {
            "address": "10.0.0.5",
            "ports": {"http-api": 18081, "grpc": 19090},
            "labels": {"version": "v1", "app.kubernetes.io/name": "api"},
            "network": "net-1",
            "locality": "us-east/zone-a/rack-1",
            "weight": 3,
            "serviceAccount": "api-sa",
        },
        {"address": "10.0.0.6", "labels": {"version": "v2"}},
    ],
    "exportTo": [".", "other-ns"],
    "subjectAltNames": ["spiffe://cluster.local/ns/traffic-demo/sa/api-sa"],
}

WORKLOAD = {
    "address": "vm1.example.com",
    "ports": {"http": 8080},
    "labels": {"app": "vm"},
    "network": "vm-net",
    "locality": "eu/west",
    "weight": 10,
    "serviceAccount": "vm-sa",
}


def parse(data: dict[str, Any]):
    return parse_model(ServiceEntry, data, prefix=("spec",), context=CTX)


def test_seed_service_entry_parses() -> None:
    model, issues = parse(SEED)
    assert issues == []
    assert model is not None and model.warnings() == []
    assert model.to_json() == SEED
    assert model.effective_resolution == "DNS"


def test_full_service_entry_round_trips() -> None:
    model, issues = parse(FULL)
    assert issues == [], [i.format() for i in issues]
    assert model is not None and model.to_json() == FULL and model.warnings() == []


def test_workload_entry_round_trips() -> None:
    model, issues = parse_model(WorkloadEntry, WORKLOAD, prefix=("spec",), context=CTX)
    assert issues == []
    assert model is not None and model.to_json() == WORKLOAD


def test_selector_and_unix_and_defaults() -> None:
    data = {
        "hosts": ["svc.example.com"],
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        "location": "MESH_INTERNAL",
        "resolution": "STATIC",
        "workloadSelector": {"labels": {"app": "vm"}},
        "exportTo": ["~"],
    }
    model, issues = parse(data)
    assert issues == [] and model is not None and model.to_json() == data
    uds = {
        "hosts": ["uds.local"],
        "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
        "resolution": "STATIC",
        "endpoints": [{"address": "unix:///var/run/app.sock"}],
    }
    assert parse(uds)[1] == []
    model, _ = parse({"hosts": ["a.example.com"]})
    assert model is not None and model.effective_location == "MESH_EXTERNAL"
    assert model.effective_resolution == "NONE"


def _se(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "hosts": ["api.example.com"],
        "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
        "resolution": "DNS",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


HTTP_PORT = [{"number": 80, "name": "http", "protocol": "HTTP"}]

ERROR_CASES = [
    ("hosts-missing", _se(hosts=None), "spec.hosts", "required field is missing"),
    ("hosts-empty", _se(hosts=[]), "spec.hosts", "at least one host"),
    ("host-star", _se(hosts=["*"]), "spec.hosts[0]", "full wildcard"),
    ("host-invalid", _se(hosts=["ok.com", "bad_host.com"]), "spec.hosts[1]", "invalid"),
    ("address-invalid", _se(addresses=["10.0.0.300"]), "spec.addresses[0]", "not a valid IP"),
    ("cidr-invalid", _se(addresses=["10.0.0.0/33"]), "spec.addresses[0]", "not a valid CIDR"),
    (
        "cidr-with-dns",
        _se(addresses=["10.0.0.0/24"]),
        "spec.addresses[0]",
        "CIDR addresses are allowed only for NONE/STATIC",
    ),
    ("port-number", _se(ports=[{"number": 0, "name": "http"}]), "spec.ports[0].number", "1..65535"),
    (
        "port-name",
        _se(ports=[{"number": 80, "name": "http_web"}]),
        "spec.ports[0].name",
        "invalid port name",
    ),
    (
        "port-name-missing",
        _se(ports=[{"number": 80}]),
        "spec.ports[0].name",
        "required field is missing",
    ),
    (
        "port-protocol",
        _se(ports=[{"number": 80, "name": "h", "protocol": "SMTP"}]),
        "spec.ports[0].protocol",
        "unsupported protocol",
    ),
    (
        "target-port",
        _se(ports=[{"number": 80, "name": "h", "protocol": "HTTP", "targetPort": 0}]),
        "spec.ports[0].targetPort",
        "1..65535",
    ),
    (
        "dup-port-name",
        _se(
            ports=[
                {"number": 80, "name": "h", "protocol": "HTTP"},
                {"number": 81, "name": "h", "protocol": "HTTP"},
            ]
        ),
        "spec.ports[1].name",
        "already defined",
    ),
    (
        "dup-port-number",
        _se(
            ports=[
                {"number": 80, "name": "a", "protocol": "HTTP"},
                {"number": 80, "name": "b", "protocol": "HTTP"},
            ]
        ),
        "spec.ports[1].number",
        "already defined",
    ),
    ("bad-location", _se(location="EXTERNAL"), "spec.location", "invalid value"),
    ("bad-resolution", _se(resolution="LOGICAL_DNS"), "spec.resolution", "invalid value"),
    (
        "selector-and-endpoints",
        _se(workloadSelector={"labels": {"a": "b"}}, endpoints=[{"address": "1.2.3.4"}]),
        "spec.workloadSelector",
        "only one of WorkloadSelector or Endpoints",
    ),
    (
        "selector-wildcard",
        _se(workloadSelector={"labels": {"app": "v*"}}),
        "spec.workloadSelector.labels.app",
        "wildcard is not supported",
    ),
    (
        "none-with-endpoints",
        _se(resolution="NONE", endpoints=[{"address": "1.2.3.4"}]),
        "spec.endpoints",
        "resolution type NONE",
    ),
    (
        "static-needs-ip",
        _se(resolution="STATIC", endpoints=[{"address": "db.example.com"}]),
        "spec.endpoints[0].address",
        "not a valid IP address",
    ),
    (
        "static-undeclared-port",
        _se(resolution="STATIC", endpoints=[{"address": "1.2.3.4", "ports": {"http": 8080}}]),
        "spec.endpoints[0].ports.http",
        "not defined by the service entry",
    ),
    (
        "unix-needs-one-port",
        _se(
            resolution="STATIC",
            ports=[
                {"number": 80, "name": "a", "protocol": "HTTP"},
                {"number": 81, "name": "b", "protocol": "HTTP"},
            ],
            endpoints=[{"address": "unix:///run/app.sock"}],
        ),
        "spec.endpoints[0].address",
        "exactly 1 service port",
    ),
    (
        "unix-relative",
        _se(resolution="STATIC", endpoints=[{"address": "unix://run/a.sock"}]),
        "spec.endpoints[0].address",
        "absolute path",
    ),
    (
        "unix-with-ports",
        _se(
            resolution="STATIC",
            endpoints=[{"address": "unix:///run/a.sock", "ports": {"https": 1}}],
        ),
        "spec.endpoints[0].ports",
        "must not include ports",
    ),
    (
        "endpoint-address-required",
        _se(endpoints=[{"labels": {"a": "b"}}]),
        "spec.endpoints[0].address",
        "address is required",
    ),
    (
        "endpoint-bad-fqdn",
        _se(endpoints=[{"address": "bad_name.com"}]),
        "spec.endpoints[0].address",
        "not a valid FQDN or an IP address",
    ),
    (
        "dns-unix-endpoint",
        _se(endpoints=[{"address": "unix:///run/a.sock"}]),
        "spec.endpoints[0].address",
        "not a valid FQDN or an IP address",
    ),
    (
        "dns-undeclared-port",
        _se(endpoints=[{"address": "a.example.com", "ports": {"http": 80}}]),
        "spec.endpoints[0].ports.http",
        "not defined by the service entry",
    ),
    (
        "endpoint-port-range",
        _se(endpoints=[{"address": "1.2.3.4", "ports": {"https": 70000}}]),
        "spec.endpoints[0].ports.https",
        "1..65535",
    ),
    (
        "endpoint-label",
        _se(endpoints=[{"address": "1.2.3.4", "labels": {"bad key": "v"}}]),
        "spec.endpoints[0].labels[bad key]",
        "invalid tag key",
    ),
    (
        "dns-wildcard-no-endpoints",
        _se(hosts=["*.example.com"]),
        "spec.hosts[0]",
        "hosts must be FQDN",
    ),
    (
        "dns-rr-two-endpoints",
        _se(
            resolution="DNS_ROUND_ROBIN",
            endpoints=[{"address": "a.example.com"}, {"address": "b.example.com"}],
        ),
        "spec.endpoints",
        "0 or 1 endpoint",
    ),
    (
        "dynamic-dns-needs-wildcard",
        _se(resolution="DYNAMIC_DNS"),
        "spec.hosts[0]",
        "must be wildcarded",
    ),
    (
        "dynamic-dns-addresses",
        _se(resolution="DYNAMIC_DNS", hosts=["*.example.com"], addresses=["1.2.3.4"]),
        "spec.addresses",
        "cannot be set",
    ),
    (
        "dynamic-dns-tcp",
        _se(
            resolution="DYNAMIC_DNS",
            hosts=["*.example.com"],
            ports=[{"number": 5432, "name": "pg", "protocol": "TCP"}],
        ),
        "spec.ports[0].protocol",
        "only HTTP, TLS, GRPC, and HTTP2",
    ),
    (
        "multi-host-tcp",
        _se(
            hosts=["a.example.com", "b.example.com"],
            ports=[{"number": 5432, "name": "pg", "protocol": "TCP"}],
        ),
        "spec.ports[0]",
        "multiple hosts provided with non-HTTP, non-TLS ports",
    ),
    ("export-bad", _se(exportTo=["Not_A_NS"]), "spec.exportTo[0]", "not a namespace name"),
    ("export-dup-self", _se(exportTo=[".", "traffic-demo"]), "spec.exportTo[1]", "duplicate"),
    ("export-none-mixed", _se(exportTo=["~", "other"]), "spec.exportTo", "cannot be combined"),
    ("unknown-field", _se(resolutions="DNS"), "spec.resolutions", "unknown field"),
]


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_rule_reports_field(data: dict[str, Any], path: str, fragment: str) -> None:
    model, issues = parse(data)
    assert model is None
    assert [i.field_path for i in issues] == [path], [i.format() for i in issues]
    assert fragment in issues[0].message


def test_multi_host_http_with_dns_is_accepted() -> None:
    _, issues = parse(_se(hosts=["a.example.com", "b.example.com"], ports=HTTP_PORT))
    assert issues == []


WARNING_CASES = [
    (
        "partial-wildcard",
        _se(hosts=["*api.example.com"], endpoints=[{"address": "1.2.3.4"}]),
        ["hosts[0]"],
        "partial wildcard",
    ),
    (
        "selector-no-labels",
        _se(resolution="STATIC", location="MESH_INTERNAL", workloadSelector={}),
        ["workloadSelector"],
        "without labels",
    ),
    (
        "selector-with-none",
        _se(resolution="NONE", location="MESH_INTERNAL", workloadSelector={"labels": {"a": "b"}}),
        ["workloadSelector"],
        "resolution mode is NONE",
    ),
    (
        "selector-external",
        _se(resolution="STATIC", workloadSelector={"labels": {"a": "b"}}),
        ["workloadSelector"],
        "MESH_INTERNAL",
    ),
    (
        "tcp-no-address",
        _se(resolution="NONE", ports=[{"number": 5432, "name": "pg", "protocol": "TCP"}]),
        ["ports[0]"],
        "addresses are required",
    ),
    (
        "multi-host-address-tls",
        _se(hosts=["a.example.com", "b.example.com"], addresses=["1.2.3.4"]),
        ["hosts"],
        "more than one host",
    ),
    (
        "endpoint-network-only",
        _se(resolution="STATIC", endpoints=[{"network": "n2"}]),
        ["endpoints[0].address"],
        "address is unset",
    ),
]


@pytest.mark.parametrize(
    ("data", "paths", "fragment"),
    [case[1:] for case in WARNING_CASES],
    ids=[case[0] for case in WARNING_CASES],
)
def test_warning_reports_field(data: dict[str, Any], paths: list[str], fragment: str) -> None:
    model, issues = parse(data)
    assert issues == [], [i.format() for i in issues]
    assert model is not None
    warnings = model.warnings()
    assert [w.field_path for w in warnings] == paths, [w.format() for w in warnings]
    assert fragment in warnings[0].message and warnings[0].severity == "warning"


WE_ERRORS = [
    ("no-address", {"labels": {"a": "b"}}, "spec.address", "address is required"),
    ("bad-address", {"address": "not valid!"}, "spec.address", "not a valid FQDN"),
    ("uds-dir", {"address": "unix:///run/"}, "spec.address", "absolute path to a file"),
    (
        "uds-ports",
        {"address": "unix:///run/a.sock", "ports": {"http": 80}},
        "spec.ports",
        "must not include ports",
    ),
    (
        "port-name",
        {"address": "1.2.3.4", "ports": {"a.b": 80}},
        "spec.ports[a.b]",
        "invalid port name",
    ),
    ("weight", {"address": "1.2.3.4", "weight": -1}, "spec.weight", "0..4294967295"),
    (
        "label-value",
        {"address": "1.2.3.4", "labels": {"a": "-x"}},
        "spec.labels.a",
        "invalid tag value",
    ),
]


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [case[1:] for case in WE_ERRORS],
    ids=[case[0] for case in WE_ERRORS],
)
def test_workload_entry_rule(data: dict[str, Any], path: str, fragment: str) -> None:
    model, issues = parse_model(WorkloadEntry, data, prefix=("spec",), context=CTX)
    assert model is None
    assert [i.field_path for i in issues] == [path], [i.format() for i in issues]
    assert fragment in issues[0].message


def test_workload_entry_network_only_warns() -> None:
    model, issues = parse_model(WorkloadEntry, {"network": "n1"}, prefix=("spec",), context=CTX)
    assert issues == [] and model is not None
    assert [(w.field_path, w.severity) for w in model.warnings()] == [("address", "warning")]
