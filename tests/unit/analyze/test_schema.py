"""Schema analyzers: validator errors (IST0106), Istio's warnings (IST0133) and
unreachable rules / ineffective matches (IST0130/IST0131) with Istio's algorithm."""

from __future__ import annotations

from meshpilot.analyze.analyzers import ALL, schema
from meshpilot.api.errors import Issue

from .helpers import codes, lines, service

ANALYZERS = schema.ANALYZERS


def vs(http: str, name: str = "sample-app", tcp: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: shop}}
spec:
  hosts: [sample-app]
  http:
{http}{tcp}
"""


def rule(match: str = "", name: str = "") -> str:
    head = f"  - name: {name}\n    " if name else "  - "
    body = f"match: {match}\n    " if match else ""
    return f"{head}{body}route: [{{destination: {{host: sample-app}}}}]\n"


def test_unknown_field_is_ist0106_and_the_rest_is_still_analyzed() -> None:
    """As Istio drops the field, the resource still takes part (here: a host conflict)."""
    cookie = vs(rule("[{cookie: {regex: '.*beta.*'}}]") + rule(), name="ab-test")
    found = lines(cookie, vs(rule()), service("sample-app"))
    assert found[0] == (
        "Error [IST0106] (VirtualService shop/ab-test) Schema validation error: "
        "spec.http[0].match[0].cookie: unknown field 'cookie' (Istio has no cookie match field "
        "and would drop it, turning this rule into a catch-all; match the Cookie header "
        'instead: headers: {cookie: {"regex": ".*beta.*"}})')
    assert [c for c in codes(cookie, vs(rule()), service("sample-app"))] == [
        "IST0106", "IST0109", "IST0109"]


def test_other_errors_leave_the_resource_out() -> None:
    bad = vs(rule().replace("host: sample-app", "host: sample-app, port: {number: 0}"))
    found = lines(bad, service("sample-app"))
    assert len(found) == 1 and found[0].startswith(
        "Error [IST0106] (VirtualService shop/sample-app) Schema validation error: "
        "spec.http[0].route[0].destination.port.number:")


def test_istio_warnings_are_ist0133_and_meshpilot_advice_is_not() -> None:
    gateway = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: passthrough, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    tls: {mode: PASSTHROUGH, httpsRedirect: true}
    hosts: [shop.example.com]
"""
    assert lines(gateway, analyzers=ANALYZERS) == [
        "Warning [IST0133] (Gateway shop/passthrough) Schema validation warning: "
        "spec.servers[0].tls.httpsRedirect: tls.httpsRedirect should only be used with http "
        "servers"]
    advice = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sample-app, namespace: shop}
spec:
  host: sample-app
  trafficPolicy: {outlierDetection: {consecutiveGatewayErrors: 3, consecutive5xxErrors: 3}}
"""
    assert lines(advice, analyzers=ANALYZERS) == []


def test_istio_warning_list_matches_the_validator_wording() -> None:
    for text in ('using deprecated setting "mirrorPercent"', "partial wildcard '*x.com' not "
                 "allowed", "abort configured, but error type not set"):
        assert schema.is_istio_warning(Issue((), text, severity="warning")), text
    assert not schema.is_istio_warning(Issue((), "header name 'X' is not lowercase"))


def _rules(*docs: str) -> list[str]:
    return [m.split(") ", 1)[1] for m in lines(*docs, analyzers=ANALYZERS)]


def test_rule_after_a_catch_all_is_unreachable() -> None:
    assert _rules(vs(rule() + rule("[{headers: {v: {exact: '2'}}}]"))) == [
        "VirtualService rule #1 not used (route without matches defined before)."]
    assert _rules(vs(rule() + rule())) == [
        "VirtualService rule #1 not used (only the last rule can have no matches)."]
    assert _rules(vs(rule("[{headers: {v: {exact: '2'}}}]") + rule())) == []


def test_empty_match_block_is_not_a_catch_all_for_istio() -> None:
    """`match: [{}]` (what the seed's cookie rule becomes) matches everything at runtime,
    but Istio's validation only treats a rule *without* match as a catch-all."""
    assert _rules(vs(rule("[{}]") + rule("[{headers: {v: {exact: '2'}}}]") + rule())) == []


def test_duplicate_matches_and_covered_prefixes() -> None:
    header = "[{headers: {canary: {exact: 'true'}}}]"
    assert _rules(vs(rule(header, "canary") + rule(header, "beta") + rule())) == [
        'VirtualService rule "beta" not used (all matches used by prior rules).',
        'VirtualService rule "beta" match #0 is not used (duplicate/overlapping match in rule '
        '"canary").']
    prefixes = vs(rule("[{uri: {prefix: /api}}]") + rule("[{uri: {prefix: /api/v2}}]"))
    assert _rules(prefixes) == [
        "VirtualService rule #1 match #0 of prefix /api/v2 is not used (duplicate/overlapping "
        "match in rule #0 of prefix /api on #0)."]
    reversed_order = vs(rule("[{uri: {prefix: /api/v2}}]") + rule("[{uri: {prefix: /api}}]"))
    assert _rules(reversed_order) == []
    methods = vs(rule("[{uri: {prefix: /api}, method: {exact: POST}}]")
                 + rule("[{uri: {prefix: /api/v2}}]"))
    assert _rules(methods) == []


def test_tcp_rules_are_checked_too() -> None:
    tcp = vs(rule(), tcp="""  tcp:
  - route: [{destination: {host: sample-app, port: {number: 80}}}]
  - route: [{destination: {host: sample-app, port: {number: 80}}}]
""")
    assert _rules(tcp) == [
        "VirtualService rule #1 not used (only the last rule can have no matches)."]


def test_every_kind_has_a_schema_analyzer() -> None:
    names = {a.name for a in ALL}
    assert {f"schema.ValidationAnalyzer.{k}" for k in schema.KINDS} <= names
