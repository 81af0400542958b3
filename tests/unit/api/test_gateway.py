"""Gateway: the seed parses, full documents round-trip, and each Istio rule reports its field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from meshpilot.api.gateway import Gateway
from meshpilot.api.schema import parse_model

CTX = {"namespace": "traffic-demo"}

SEED_INGRESS = {
    "selector": {"istio": "ingressgateway"},
    "servers": [
        {
            "port": {"number": 80, "name": "http", "protocol": "HTTP"},
            "hosts": ["sample-app.hashfoundry.local"],
        },
        {
            "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
            "tls": {"mode": "SIMPLE", "credentialName": "sample-app-tls"},
            "hosts": ["sample-app.hashfoundry.local"],
        },
    ],
}
SEED_EGRESS = {
    "selector": {"istio": "egressgateway"},
    "servers": [
        {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["httpbin.org"]}
    ],
}

FULL = {
    "selector": {"istio": "ingressgateway", "app": "gw"},
    "servers": [
        {
            "port": {"number": 80, "name": "http", "protocol": "HTTP"},
            "bind": "0.0.0.0",
            "hosts": ["./a.example.com", "*/b.example.com", "ns1/*.example.com", "*"],
            "tls": {"httpsRedirect": True},
            "defaultEndpoint": "127.0.0.1:8080",
            "name": "plain",
        },
        {
            "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
            "hosts": ["secure.example.com"],
            "tls": {
                "mode": "MUTUAL",
                "serverCertificate": "/etc/certs/server.pem",
                "privateKey": "/etc/certs/key.pem",
                "caCertificates": "/etc/certs/ca.pem",
                "caCrl": "/etc/certs/crl.pem",
                "subjectAltNames": ["spiffe://cluster.local/ns/a/sa/b"],
                "verifyCertificateSpki": ["abc="],
                "verifyCertificateHash": ["AB:CD"],
                "minProtocolVersion": "TLSV1_2",
                "maxProtocolVersion": "TLSV1_3",
                "cipherSuites": ["ECDHE-RSA-AES256-GCM-SHA384"],
                "insecureSkipVerify": False,
            },
            "name": "secure",
        },
        {
            "port": {"number": 8443, "name": "multi", "protocol": "HTTPS"},
            "hosts": ["multi.example.com"],
            "tls": {
                "mode": "OPTIONAL_MUTUAL",
                "credentialNames": ["rsa-cert", "ecdsa-cert"],
                "caCertCredentialName": "client-ca",
            },
        },
        {
            "port": {"number": 9443, "name": "files", "protocol": "HTTPS"},
            "hosts": ["files.example.com"],
            "tls": {
                "mode": "SIMPLE",
                "tlsCertificates": [
                    {"serverCertificate": "/a.pem", "privateKey": "/a.key"},
                    {
                        "serverCertificate": "/b.pem",
                        "privateKey": "/b.key",
                        "caCertificates": "/ca.pem",
                    },
                ],
            },
        },
        {
            "port": {"number": 15443, "name": "tls", "protocol": "TLS"},
            "hosts": ["*.local"],
            "tls": {"mode": "AUTO_PASSTHROUGH"},
        },
        {
            "port": {"number": 15012, "name": "mtls", "protocol": "TLS"},
            "hosts": ["*.global"],
            "tls": {"mode": "ISTIO_MUTUAL"},
        },
        {
            "port": {"number": 0, "name": "uds", "protocol": "GRPC"},
            "bind": "unix:///var/run/gw.sock",
            "hosts": ["grpc.example.com"],
        },
        {
            "port": {"number": 3306, "name": "mysql", "protocol": "MYSQL"},
            "hosts": ["db.example.com"],
        },
    ],
}


def parse(data: dict[str, Any]):
    return parse_model(Gateway, data, prefix=("spec",), context=CTX)


@pytest.mark.parametrize("doc", [SEED_INGRESS, SEED_EGRESS], ids=["ingress", "egress"])
def test_seed_gateways_parse_without_errors_or_warnings(doc: dict[str, Any]) -> None:
    model, issues = parse(doc)
    assert issues == []
    assert model is not None and model.warnings() == []
    assert model.to_json() == doc


def test_full_featured_gateway_round_trips() -> None:
    model, issues = parse(FULL)
    assert issues == [], [i.format() for i in issues]
    assert model is not None and model.to_json() == FULL
    assert model.servers is not None and model.servers[6].protocol == "GRPC"


def _server(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
        "hosts": ["a.example.com"],
        "tls": {"mode": "SIMPLE", "credentialName": "cert"},
    }
    base.update(over)
    return {key: value for key, value in base.items() if value is not None}


def _gw(*servers: dict[str, Any]) -> dict[str, Any]:
    return {"selector": {"istio": "ingressgateway"}, "servers": list(servers)}


def _tls(**tls: Any) -> dict[str, Any]:
    return _gw(_server(tls=tls))


ERROR_CASES = [
    ("no-servers", {"selector": {"a": "b"}}, "spec.servers", "at least one server"),
    ("empty-servers", _gw(), "spec.servers", "at least one server"),
    ("no-hosts", _gw(_server(hosts=[])), "spec.servers[0].hosts", "at least one host"),
    ("short-host", _gw(_server(hosts=["a.com", "foo"])), "spec.servers[0].hosts[1]", "short names"),
    (
        "bad-ns",
        _gw(_server(hosts=["Bad_NS/a.com"])),
        "spec.servers[0].hosts[0]",
        "invalid namespace value",
    ),
    ("empty-ns", _gw(_server(hosts=["/a.com"])), "spec.servers[0].hosts[0]", "cannot be empty"),
    (
        "partial-wildcard",
        _gw(_server(hosts=["*foo.example.com"])),
        "spec.servers[0].hosts[0]",
        "partial wildcard",
    ),
    ("bad-label", _gw(_server(hosts=["a..example.com"])), "spec.servers[0].hosts[0]", "invalid"),
    (
        "bad-protocol",
        _gw(_server(port={"number": 80, "name": "x", "protocol": "FTP"})),
        "spec.servers[0].port.protocol",
        "invalid protocol",
    ),
    (
        "port-range",
        _gw(_server(port={"number": 70000, "name": "x", "protocol": "HTTPS"})),
        "spec.servers[0].port.number",
        "1..65535",
    ),
    (
        "port-zero",
        _gw(_server(port={"number": 0, "name": "x", "protocol": "HTTPS"})),
        "spec.servers[0].port.number",
        "1..65535",
    ),
    (
        "no-port-name",
        _gw(_server(port={"number": 80, "name": "", "protocol": "HTTPS"})),
        "spec.servers[0].port.name",
        "port name must be set",
    ),
    (
        "missing-port-name",
        _gw(_server(port={"number": 80, "protocol": "HTTPS"})),
        "spec.servers[0].port.name",
        "required field is missing",
    ),
    (
        "target-port",
        _gw(_server(port={"number": 80, "name": "x", "protocol": "HTTPS", "targetPort": 8080})),
        "spec.servers[0].port.targetPort",
        "no impact on Gateways",
    ),
    (
        "dup-port-name",
        _gw(_server(), _server(port={"number": 8443, "name": "https", "protocol": "HTTPS"})),
        "spec.servers[1].port.name",
        "must be unique",
    ),
    ("bad-bind", _gw(_server(bind="localhost")), "spec.servers[0].bind", "not a valid IP"),
    (
        "relative-uds",
        _gw(_server(bind="unix://run/x.sock")),
        "spec.servers[0].bind",
        "absolute path",
    ),
    (
        "uds-port",
        _gw(_server(bind="unix:///run/x.sock")),
        "spec.servers[0].port.number",
        "must be 0 for unix",
    ),
    ("https-without-tls", _gw(_server(tls=None)), "spec.servers[0].tls", "must have TLS settings"),
    (
        "tls-on-tcp",
        _gw(_server(port={"number": 9000, "name": "t", "protocol": "TCP"})),
        "spec.servers[0].tls",
        "non HTTPS/TLS ports",
    ),
    (
        "certs-on-http",
        _gw(_server(port={"number": 80, "name": "h", "protocol": "HTTP"})),
        "spec.servers[0].tls",
        "plain text HTTP",
    ),
    ("bad-mode", _tls(mode="STRICT"), "spec.servers[0].tls.mode", "invalid value"),
    (
        "simple-no-cert",
        _tls(mode="SIMPLE"),
        "spec.servers[0].tls.serverCertificate",
        "SIMPLE TLS requires a server certificate",
    ),
    (
        "simple-no-key",
        _tls(mode="SIMPLE", serverCertificate="/c.pem"),
        "spec.servers[0].tls.privateKey",
        "requires a private key",
    ),
    (
        "mutual-no-ca",
        _tls(mode="MUTUAL", serverCertificate="/c", privateKey="/k"),
        "spec.servers[0].tls.caCertificates",
        "client CA bundle",
    ),
    (
        "optional-mutual-no-ca",
        _tls(mode="OPTIONAL_MUTUAL", serverCertificate="/c", privateKey="/k"),
        "spec.servers[0].tls.caCertificates",
        "MUTUAL TLS requires a client CA bundle",
    ),
    (
        "tls-certs-missing-key",
        _tls(mode="SIMPLE", tlsCertificates=[{"serverCertificate": "/c"}]),
        "spec.servers[0].tls.tlsCertificates[0].privateKey",
        "requires a private key",
    ),
    (
        "two-sources",
        _tls(mode="SIMPLE", credentialName="x", serverCertificate="/c", privateKey="/k"),
        "spec.servers[0].tls",
        "only one of credentialName",
    ),
    (
        "name-and-names",
        _tls(mode="SIMPLE", credentialName="x", credentialNames=["y"]),
        "spec.servers[0].tls",
        "only one of",
    ),
    (
        "three-credential-names",
        _tls(mode="SIMPLE", credentialNames=["a", "b", "c"]),
        "spec.servers[0].tls.credentialNames",
        "1 or 2 entries",
    ),
    (
        "empty-tls-certificates",
        _tls(mode="SIMPLE", tlsCertificates=[]),
        "spec.servers[0].tls.tlsCertificates",
        "1 or 2 entries",
    ),
    (
        "istio-mutual-cert",
        _tls(mode="ISTIO_MUTUAL", serverCertificate="/c"),
        "spec.servers[0].tls.serverCertificate",
        "ISTIO_MUTUAL TLS cannot have",
    ),
    (
        "istio-mutual-credential",
        _gw(
            _server(
                port={"number": 15443, "name": "t", "protocol": "TLS"},
                tls={"mode": "ISTIO_MUTUAL", "credentialName": "x"},
            )
        ),
        "spec.servers[0].tls.credentialName",
        "cannot have associated credentialName",
    ),
    (
        "crl-simple",
        _tls(mode="SIMPLE", serverCertificate="/c", privateKey="/k", caCrl="/crl"),
        "spec.servers[0].tls.caCrl",
        "SIMPLE TLS",
    ),
    (
        "crl-credential",
        _tls(mode="PASSTHROUGH", credentialName="x", caCrl="/crl"),
        "spec.servers[0].tls.caCrl",
        "credentialName",
    ),
    (
        "min-above-max",
        _tls(
            mode="SIMPLE",
            credentialName="x",
            minProtocolVersion="TLSV1_3",
            maxProtocolVersion="TLSV1_2",
        ),
        "spec.servers[0].tls.minProtocolVersion",
        "higher than maxProtocolVersion",
    ),
    (
        "bad-version",
        _tls(mode="SIMPLE", credentialName="x", minProtocolVersion="TLS1_2"),
        "spec.servers[0].tls.minProtocolVersion",
        "invalid value",
    ),
    (
        "unknown-field",
        _tls(mode="SIMPLE", credentialName="x", credentialname="y"),
        "spec.servers[0].tls.credentialname",
        "unknown field",
    ),
]


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [case[1:] for case in ERROR_CASES],
    ids=[case[0] for case in ERROR_CASES],
)
def test_rule_reports_field(data: dict[str, Any], path: str, fragment: str) -> None:
    model, issues = parse(copy.deepcopy(data))
    assert model is None
    assert [i.field_path for i in issues] == [path], [i.format() for i in issues]
    assert fragment in issues[0].message


def test_credential_name_with_crl_is_accepted_for_mutual() -> None:
    # Istio returns early for SIMPLE/MUTUAL with a credential: the secret holds the CRL.
    _, issues = parse(_tls(mode="MUTUAL", credentialName="x", caCrl="/crl"))
    assert issues == []


def test_http_server_may_carry_https_redirect_only() -> None:
    data = _gw(
        _server(port={"number": 80, "name": "h", "protocol": "http"}, tls={"httpsRedirect": True})
    )
    model, issues = parse(data)
    assert issues == [] and model is not None and model.warnings() == []


WARNING_CASES = [
    (
        "redirect-on-https",
        _tls(mode="SIMPLE", credentialName="x", httpsRedirect=True),
        "servers[0].tls.httpsRedirect",
        "only be used with http servers",
    ),
    (
        "old-tls-no-ciphers",
        _tls(mode="SIMPLE", credentialName="x", minProtocolVersion="TLSV1_1"),
        "servers[0].tls.minProtocolVersion",
        "below TLSV1_2",
    ),
    (
        "invalid-cipher",
        _tls(mode="SIMPLE", credentialName="x", cipherSuites=["FOO-BAR"]),
        "servers[0].tls.cipherSuites[0]",
        "invalid cipher suite",
    ),
    (
        "duplicate-cipher",
        _tls(mode="SIMPLE", credentialName="x", cipherSuites=["AES128-SHA", "AES128-SHA"]),
        "servers[0].tls.cipherSuites[1]",
        "duplicate cipher suite",
    ),
    (
        "passthrough-certs",
        _tls(credentialName="x"),
        "servers[0].tls",
        "PASSTHROUGH mode does not use certificates",
    ),
    (
        "duplicate-server-name",
        _gw(
            _server(name="s"),
            _server(name="s", port={"number": 8443, "name": "b", "protocol": "HTTPS"}),
        ),
        "servers[1].name",
        "duplicate server name",
    ),
    ("no-selector", {"servers": [_server()]}, "selector", "no selector"),
]


@pytest.mark.parametrize(
    ("data", "path", "fragment"),
    [case[1:] for case in WARNING_CASES],
    ids=[case[0] for case in WARNING_CASES],
)
def test_warning_reports_field(data: dict[str, Any], path: str, fragment: str) -> None:
    model, issues = parse(data)
    assert issues == [], [i.format() for i in issues]
    assert model is not None
    warnings = model.warnings()
    assert [w.field_path for w in warnings] == [path], [w.format() for w in warnings]
    assert fragment in warnings[0].message
    assert warnings[0].severity == "warning"
