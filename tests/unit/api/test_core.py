"""Kubernetes Service and Secret bodies, and Istio's Service port protocol selection."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from meshpilot.api.core import SecretBody, Service, ServicePort, secret_data, service_port_protocol
from meshpilot.api.schema import parse_model

CTX = {"namespace": "traffic-demo"}

SEED = {"selector": {"app": "sample-app"}, "ports": [{"port": 80, "targetPort": 80}]}

FULL = {
    "selector": {"app": "web", "app.kubernetes.io/version": "v1"},
    "ports": [
        {"name": "http-web", "port": 80, "targetPort": "http", "protocol": "TCP"},
        {
            "name": "grpc",
            "port": 9090,
            "targetPort": 19090,
            "appProtocol": "grpc",
            "nodePort": 30090,
        },
        {"name": "dns", "port": 53, "protocol": "UDP"},
    ],
    "type": "LoadBalancer",
    "clusterIP": "10.96.0.10",
    "clusterIPs": ["10.96.0.10", "fd00::10"],
    "externalIPs": ["192.0.2.10"],
    "sessionAffinity": "ClientIP",
    "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
    "ipFamilies": ["IPv4", "IPv6"],
    "ipFamilyPolicy": "PreferDualStack",
    "publishNotReadyAddresses": True,
    "externalTrafficPolicy": "Local",
    "internalTrafficPolicy": "Cluster",
    "healthCheckNodePort": 31000,
    "loadBalancerIP": "192.0.2.20",
    "loadBalancerSourceRanges": ["10.0.0.0/8"],
    "loadBalancerClass": "example.com/lb",
    "allocateLoadBalancerNodePorts": True,
    "trafficDistribution": "PreferClose",
}


def parse(data: dict[str, Any]):
    return parse_model(Service, data, prefix=("spec",), context=CTX)


def test_seed_service_parses_and_warns_about_unnamed_port() -> None:
    model, issues = parse(SEED)
    assert issues == []
    assert model is not None and model.to_json() == SEED
    assert model.effective_type == "ClusterIP"
    assert model.ports is not None and model.ports[0].effective_target_port == 80
    warnings = model.warnings()
    assert [(w.field_path, w.severity) for w in warnings] == [("ports[0]", "warning")]
    assert "naming convention" in warnings[0].message


def test_full_service_round_trips() -> None:
    model, issues = parse(FULL)
    assert issues == [], [i.format() for i in issues]
    assert model is not None and model.to_json() == FULL and model.warnings() == []


def test_external_name_and_headless() -> None:
    ext = {"type": "ExternalName", "externalName": "db.example.com"}
    assert parse(ext)[1] == []
    headless = {"clusterIP": "None", "selector": {"app": "x"}}
    model, issues = parse(headless)
    assert issues == [] and model is not None and model.is_headless


def _svc(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"selector": {"app": "x"}, "ports": [{"name": "http", "port": 80}]}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


ERROR_CASES = [
    ("no-ports", _svc(ports=None), "spec.ports", "required field is missing"),
    ("port-range", _svc(ports=[{"port": 70000}]), "spec.ports[0].port", "between 1 and 65535"),
    (
        "port-missing",
        _svc(ports=[{"name": "a"}]),
        "spec.ports[0].port",
        "required field is missing",
    ),
    ("port-string", _svc(ports=[{"port": "80"}]), "spec.ports[0].port", "valid integer"),
    (
        "name-uppercase",
        _svc(ports=[{"name": "HTTP", "port": 80}]),
        "spec.ports[0].name",
        "DNS-1123 label",
    ),
    (
        "name-required",
        _svc(ports=[{"name": "a", "port": 80}, {"port": 81}]),
        "spec.ports[1].name",
        "more than one port",
    ),
    (
        "name-duplicate",
        _svc(ports=[{"name": "a", "port": 80}, {"name": "a", "port": 81}]),
        "spec.ports[1].name",
        "duplicate port name",
    ),
    (
        "port-duplicate",
        _svc(ports=[{"name": "a", "port": 80}, {"name": "b", "port": 80}]),
        "spec.ports[1]",
        "duplicate port 80/TCP",
    ),
    (
        "protocol",
        _svc(ports=[{"port": 80, "protocol": "HTTP"}]),
        "spec.ports[0].protocol",
        "invalid value",
    ),
    (
        "target-range",
        _svc(ports=[{"port": 80, "targetPort": 65536}]),
        "spec.ports[0].targetPort",
        "between 1 and 65535",
    ),
    (
        "target-name-long",
        _svc(ports=[{"port": 80, "targetPort": "a-very-long-port-name"}]),
        "spec.ports[0].targetPort",
        "no more than 15 characters",
    ),
    (
        "target-name-digits",
        _svc(ports=[{"port": 80, "targetPort": "8080"}]),
        "spec.ports[0].targetPort",
        "at least one letter",
    ),
    (
        "target-name-hyphens",
        _svc(ports=[{"port": 80, "targetPort": "web--api"}]),
        "spec.ports[0].targetPort",
        "consecutive hyphens",
    ),
    (
        "target-bool",
        _svc(ports=[{"port": 80, "targetPort": True}]),
        "spec.ports[0].targetPort",
        "port number or a port name",
    ),
    (
        "target-float",
        _svc(ports=[{"port": 80, "targetPort": 80.5}]),
        "spec.ports[0].targetPort",
        "port number or a port name",
    ),
    (
        "app-protocol",
        _svc(ports=[{"port": 80, "appProtocol": "bad proto"}]),
        "spec.ports[0].appProtocol",
        "invalid appProtocol",
    ),
    (
        "node-port-cluster-ip",
        _svc(ports=[{"port": 80, "nodePort": 30080}]),
        "spec.ports[0].nodePort",
        "'ClusterIP'",
    ),
    (
        "node-port-duplicate",
        _svc(
            type="NodePort",
            ports=[
                {"name": "a", "port": 80, "nodePort": 30080},
                {"name": "b", "port": 81, "nodePort": 30080},
            ],
        ),
        "spec.ports[1].nodePort",
        "duplicate nodePort",
    ),
    ("type", _svc(type="Headless"), "spec.type", "invalid value"),
    ("cluster-ip", _svc(clusterIP="10.0.0"), "spec.clusterIP", "valid IP address"),
    (
        "cluster-ips-mismatch",
        _svc(clusterIP="10.0.0.1", clusterIPs=["10.0.0.2"]),
        "spec.clusterIPs[0]",
        "must match clusterIP",
    ),
    (
        "cluster-ips-same-family",
        _svc(clusterIPs=["10.0.0.1", "10.0.0.2"]),
        "spec.clusterIPs[1]",
        "one IP for each IP family",
    ),
    (
        "node-port-headless",
        _svc(type="NodePort", clusterIP="None"),
        "spec.clusterIP",
        "may not be set to 'None'",
    ),
    (
        "external-name-missing",
        _svc(type="ExternalName"),
        "spec.externalName",
        "required field is missing",
    ),
    (
        "external-name-invalid",
        _svc(type="ExternalName", externalName="Bad_Name"),
        "spec.externalName",
        "DNS-1123 subdomain",
    ),
    (
        "external-name-cluster-ip",
        _svc(type="ExternalName", externalName="a.com", clusterIP="10.0.0.1"),
        "spec.clusterIP",
        "must be empty for ExternalName",
    ),
    (
        "selector-key",
        _svc(selector={"bad key": "x"}),
        "spec.selector[bad key]",
        "invalid label key",
    ),
    ("selector-value", _svc(selector={"app": "-x"}), "spec.selector.app", "invalid label value"),
    ("affinity", _svc(sessionAffinity="Cookie"), "spec.sessionAffinity", "invalid value"),
    (
        "affinity-config-none",
        _svc(sessionAffinityConfig={"clientIP": {"timeoutSeconds": 5}}),
        "spec.sessionAffinityConfig",
        "session affinity is None",
    ),
    (
        "affinity-timeout",
        _svc(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 0}}),
        "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
        "greater than 0",
    ),
    ("ip-families-dup", _svc(ipFamilies=["IPv4", "IPv4"]), "spec.ipFamilies[1]", "duplicate"),
    ("ip-family-value", _svc(ipFamilies=["IPv5"]), "spec.ipFamilies[0]", "invalid value"),
    (
        "single-stack-two",
        _svc(ipFamilyPolicy="SingleStack", ipFamilies=["IPv4", "IPv6"]),
        "spec.ipFamilyPolicy",
        "RequireDualStack or PreferDualStack",
    ),
    (
        "family-mismatch",
        _svc(clusterIPs=["fd00::1"], ipFamilies=["IPv4"]),
        "spec.clusterIPs[0]",
        "IPv4",
    ),
    ("external-ips", _svc(externalIPs=["nope"]), "spec.externalIPs[0]", "valid IP"),
    (
        "etp-cluster-ip",
        _svc(externalTrafficPolicy="Local"),
        "spec.externalTrafficPolicy",
        "externally-accessible",
    ),
    (
        "lb-ranges-not-lb",
        _svc(loadBalancerSourceRanges=["10.0.0.0/8"]),
        "spec.loadBalancerSourceRanges",
        "'LoadBalancer'",
    ),
    (
        "lb-ranges-invalid",
        _svc(type="LoadBalancer", loadBalancerSourceRanges=["x"]),
        "spec.loadBalancerSourceRanges[0]",
        "IP range",
    ),
    (
        "health-check-port",
        _svc(type="LoadBalancer", healthCheckNodePort=31000),
        "spec.healthCheckNodePort",
        "'Local'",
    ),
    ("unknown-field", _svc(clusterIp="10.0.0.1"), "spec.clusterIp", "unknown field"),
]


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_service_rule_reports_field(data: dict[str, Any], path: str, fragment: str) -> None:
    model, issues = parse(data)
    assert model is None
    assert [i.field_path for i in issues] == [path], [i.format() for i in issues]
    assert fragment in issues[0].message


def test_unknown_field_suggests_kubernetes_spelling() -> None:
    _, issues = parse(_svc(clusterIp="10.0.0.1"))
    assert issues[0].hint == "did you mean 'clusterIP'?"


def test_external_name_selector_warns() -> None:
    model, _ = parse(_svc(type="ExternalName", externalName="a.example.com", ports=None))
    assert model is not None
    assert [w.field_path for w in model.warnings()] == ["selector"]


def _port(**fields: Any) -> ServicePort:
    fields.setdefault("port", 8080)
    return ServicePort.model_validate(fields)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"name": "http"}, "HTTP"),
        ({"name": "http-web"}, "HTTP"),
        ({"appProtocol": "HTTP2"}, "HTTP2"),
        ({"name": "grpc-api"}, "GRPC"),
        ({"name": "grpc-web"}, "GRPC-Web"),
        ({"name": "grpc-web-ui"}, "GRPC-Web"),
        ({"name": "https-admin"}, "HTTPS"),
        ({"name": "tcp-db"}, "TCP"),
        ({"name": "tls"}, "TLS"),
        ({"name": "mongo"}, "Mongo"),
        ({"name": "redis-cache"}, "Redis"),
        ({"name": "mysql"}, "MySQL"),
        ({"name": "web"}, "UnsupportedProtocol"),
        ({"name": "httpx"}, "UnsupportedProtocol"),
        ({}, "UnsupportedProtocol"),
        ({"name": "web", "port": 3306}, "TCP"),
        ({"port": 53}, "TCP"),
        ({"name": "http", "protocol": "UDP"}, "UDP"),
        ({"name": "tcp", "appProtocol": "http"}, "HTTP"),
        ({"name": "http", "appProtocol": "kubernetes.io/h2c"}, "HTTP2"),
        ({"appProtocol": "kubernetes.io/ws"}, "HTTP"),
        ({"appProtocol": "kubernetes.io/wss"}, "HTTPS"),
        ({"name": "http", "appProtocol": "example.com/custom"}, "UnsupportedProtocol"),
        ({"name": "http", "protocol": "SCTP"}, "HTTP"),
    ],
)
def test_service_port_protocol(fields: dict[str, Any], expected: str) -> None:
    assert service_port_protocol(_port(**fields)) == expected


# --- Secret ----------------------------------------------------------------------------------

PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
PEM_KEY = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def parse_secret(data: dict[str, Any]):
    return parse_model(SecretBody, data, prefix=(), context=CTX)


def test_tls_secret_round_trips_and_merges() -> None:
    body = {
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(PEM_CERT), "tls.key": b64("old")},
        "stringData": {"tls.key": PEM_KEY},
        "immutable": True,
    }
    model, issues = parse_secret(body)
    assert issues == []
    assert model is not None and model.to_json() == body and model.warnings() == []
    assert secret_data(model) == {"tls.crt": PEM_CERT.encode(), "tls.key": PEM_KEY.encode()}


def test_opaque_and_generic_types_parse() -> None:
    model, issues = parse_secret({"data": {"cert": b64(PEM_CERT), "key": b64(PEM_KEY)}})
    assert issues == [] and model is not None and model.effective_type == "Opaque"
    assert parse_secret({"type": "example.com/custom", "stringData": {"x": "y"}})[1] == []
    assert secret_data(SecretBody()) == {}


SECRET_ERRORS = [
    (
        "tls-missing-key",
        {"type": "kubernetes.io/tls", "data": {"tls.crt": b64(PEM_CERT)}},
        "data[tls.key]",
        "required field is missing",
    ),
    (
        "tls-missing-cert",
        {"type": "kubernetes.io/tls", "stringData": {"tls.key": PEM_KEY}},
        "data[tls.crt]",
        "required field is missing",
    ),
    ("bad-base64", {"data": {"a": "not base64!"}}, "data.a", "not valid base64"),
    ("bad-padding", {"data": {"a": "YWJj="}}, "data.a", "not valid base64"),
    ("bad-data-key", {"data": {"a/b": b64("x")}}, "data[a/b]", "valid config key"),
    ("dotdot-key", {"stringData": {"..a": "x"}}, "stringData[..a]", "must not start with '..'"),
    ("dot-key", {"stringData": {".": "x"}}, "stringData[.]", "must not be"),
    ("data-not-string", {"data": {"a": 1}}, "data.a", "valid string"),
    (
        "basic-auth",
        {"type": "kubernetes.io/basic-auth", "stringData": {"other": "x"}},
        "data.username",
        "required field is missing",
    ),
    (
        "ssh-auth",
        {"type": "kubernetes.io/ssh-auth"},
        "data.ssh-privatekey",
        "required field is missing",
    ),
    (
        "dockerconfigjson",
        {"type": "kubernetes.io/dockerconfigjson", "stringData": {".dockerconfigjson": "{"}},
        "data[.dockerconfigjson]",
        "valid JSON",
    ),
    ("too-big", {"stringData": {"a": "x" * (1024 * 1024 + 1)}}, "data", "at most"),
    ("unknown-field", {"strngData": {"a": "b"}}, "strngData", "unknown field"),
]


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [case[1:] for case in SECRET_ERRORS],
    ids=[case[0] for case in SECRET_ERRORS],
)
def test_secret_rule_reports_field(data: dict[str, Any], path: str, fragment: str) -> None:
    model, issues = parse_secret(data)
    assert model is None
    assert [i.field_path for i in issues] == [path], [i.format() for i in issues]
    assert fragment in issues[0].message


def test_secret_non_pem_tls_warns() -> None:
    model, issues = parse_secret(
        {"type": "kubernetes.io/tls", "stringData": {"tls.crt": "x", "tls.key": PEM_KEY}}
    )
    assert issues == [] and model is not None
    assert [(w.field_path, w.severity) for w in model.warnings()] == [
        ("stringData[tls.crt]", "warning")
    ]
