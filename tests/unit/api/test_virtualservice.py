"""VirtualService: the seed parses, full documents are accepted, each Istio rule names its field."""

from __future__ import annotations

import base64
from typing import Any

import pytest
import yaml

from meshpilot.api.errors import Issue
from meshpilot.api.schema import parse_model
from meshpilot.api.virtualservice import (
    HTTPMatchRequest,
    VirtualService,
    header_value_problem,
    host_matches,
    host_subset_of,
    wildcard_domain_problem,
)

CTX = {"namespace": "traffic-demo"}


def parse(spec: dict[str, Any]) -> tuple[VirtualService | None, list[Issue]]:
    return parse_model(VirtualService, spec, prefix=("spec",), context=CTX)


def ok(spec: dict[str, Any]) -> VirtualService:
    model, issues = parse(spec)
    assert issues == [], [i.format() for i in issues]
    assert model is not None
    return model


def fails(spec: dict[str, Any], path: str, fragment: str) -> Issue:
    model, issues = parse(spec)
    assert model is None, "expected an error"
    found = [i for i in issues if i.field_path == path]
    assert found, f"no issue at {path}: {[i.format() for i in issues]}"
    assert any(fragment in i.message for i in found), [i.format() for i in found]
    return found[0]


def seed(text: str) -> dict[str, Any]:
    return yaml.safe_load(text)["spec"]


# --- the seed's VirtualServices ---------------------------------------------------------------

SEED_ROUTING = seed("""
spec:
  hosts:
  - sample-app
  http:
  - match:
    - headers:
        version:
          exact: "v2"
    route:
    - destination:
        host: sample-app
        subset: v2
  - route:
    - destination:
        host: sample-app
        subset: v1
""")

SEED_CANARY = seed("""
spec:
  hosts:
  - sample-app
  http:
  - match:
    - headers:
        canary:
          exact: "true"
    route:
    - destination:
        host: sample-app
        subset: v2
  - route:
    - destination:
        host: sample-app
        subset: v1
      weight: 90
    - destination:
        host: sample-app
        subset: v2
      weight: 10
""")

SEED_FAULT = seed("""
spec:
  hosts:
  - sample-app
  http:
  - match:
    - headers:
        test-fault:
          exact: "delay"
    fault:
      delay:
        percentage:
          value: 100
        fixedDelay: 5s
    route:
    - destination:
        host: sample-app
        subset: v1
  - match:
    - headers:
        test-fault:
          exact: "abort"
    fault:
      abort:
        percentage:
          value: 50
        httpStatus: 503
    route:
    - destination:
        host: sample-app
        subset: v1
  - route:
    - destination:
        host: sample-app
        subset: v1
""")

SEED_GATEWAY = seed("""
spec:
  hosts:
  - sample-app.hashfoundry.local
  gateways:
  - sample-app-gateway
  http:
  - match:
    - uri:
        prefix: "/v2"
    rewrite:
      uri: "/"
    route:
    - destination:
        host: sample-app
        subset: v2
  - route:
    - destination:
        host: sample-app
        subset: v1
""")

SEED_EGRESS = seed("""
spec:
  hosts:
  - httpbin.org
  gateways:
  - egress-gateway
  - mesh
  http:
  - match:
    - gateways:
      - mesh
      port: 80
    route:
    - destination:
        host: istio-egressgateway.istio-system.svc.cluster.local
        port:
          number: 80
      weight: 100
  - match:
    - gateways:
      - egress-gateway
      port: 80
    route:
    - destination:
        host: httpbin.org
        port:
          number: 80
      weight: 100
""")

SEED_STABLE = seed("""
spec:
  hosts:
  - sample-app
  http:
  - route:
    - destination:
        host: sample-app
        subset: v2
""")

SEED_AB = seed("""
spec:
  hosts:
  - sample-app
  http:
  - match:
    - headers:
        user-group:
          exact: "beta"
    route:
    - destination:
        host: sample-app
        subset: v2
  - match:
    - cookie:
        regex: ".*experiment=beta.*"
    route:
    - destination:
        host: sample-app
        subset: v2
  - route:
    - destination:
        host: sample-app
        subset: v1
      weight: 50
    - destination:
        host: sample-app
        subset: v2
      weight: 50
""")


def _canary(weight: int) -> dict[str, Any]:
    spec = yaml.safe_load(yaml.safe_dump(SEED_CANARY))
    spec["http"][1]["route"][0]["weight"] = 100 - weight
    spec["http"][1]["route"][1]["weight"] = weight
    return spec


@pytest.mark.parametrize(
    "spec",
    [SEED_ROUTING, SEED_CANARY, SEED_FAULT, SEED_GATEWAY, SEED_EGRESS, SEED_STABLE]
    + [_canary(w) for w in (0, 10, 25, 50, 75, 100)],
    ids=["routing", "canary", "fault", "gateway", "egress", "stable"]
    + [f"canary-{w}" for w in (0, 10, 25, 50, 75, 100)],
)
def test_seed_virtual_services_parse(spec: dict[str, Any]) -> None:
    model = ok(spec)
    assert model.warnings() == []


def test_seed_fields_are_typed() -> None:
    fault = ok(SEED_FAULT).http
    assert fault[0].fault is not None and fault[0].fault.delay is not None
    assert fault[0].fault.delay.fixed_delay == "5s"
    assert fault[1].fault is not None and fault[1].fault.abort is not None
    assert fault[1].fault.abort.http_status == 503
    assert fault[1].fault.abort.percentage is not None
    assert fault[1].fault.abort.percentage.value == 50.0
    egress = ok(SEED_EGRESS)
    assert egress.http[0].match[0].gateways == ["mesh"]
    assert egress.http[0].match[0].port == 80
    dest = egress.http[0].route[0].destination
    assert dest.port is not None and dest.port.number == 80
    gw = ok(SEED_GATEWAY).http[0]
    assert gw.rewrite is not None and gw.rewrite.uri == "/"
    assert gw.match[0].uri is not None and gw.match[0].uri.prefix == "/v2"


def test_seed_ab_without_cookie_rule_parses() -> None:
    spec = yaml.safe_load(yaml.safe_dump(SEED_AB))
    del spec["http"][1]
    ok(spec)


def test_seed_ab_cookie_match_is_an_error_with_hint() -> None:
    issue = fails(SEED_AB, "spec.http[1].match[0].cookie", "unknown field 'cookie'")
    assert issue.hint is not None and "headers" in issue.hint and "cookie" in issue.hint


def test_cookie_header_regex_is_the_fix() -> None:
    spec = yaml.safe_load(yaml.safe_dump(SEED_AB))
    spec["http"][1]["match"][0] = {
        "headers": {"cookie": {"regex": "^(.*?;)?(experiment=beta)(;.*)?$"}}
    }
    ok(spec)


# --- full documents ---------------------------------------------------------------------------

FULL_HTTP: dict[str, Any] = {
    "hosts": ["reviews", "reviews.example.com", "*.reviews.example.org", "10.0.0.1"],
    "gateways": ["mesh", "istio-system/public-gw", "local-gw"],
    "exportTo": [".", "other-ns"],
    "http": [
        {
            "name": "everything",
            "match": [
                {
                    "name": "m1",
                    "uri": {"prefix": "/api"},
                    "scheme": {"exact": "https"},
                    "method": {"exact": "GET"},
                    "authority": {"regex": "reviews.*"},
                    "headers": {
                        "x-user": {"exact": "jason"},
                        "x-present": {},
                        ":authority": {"prefix": "rev"},
                    },
                    "port": 9080,
                    "sourceLabels": {"app": "productpage", "example.com/tier": "web"},
                    "gateways": ["mesh"],
                    "queryParams": {"debug": {"exact": ""}, "id": {"regex": "\\d+$"}},
                    "ignoreUriCase": True,
                    "withoutHeaders": {"x-skip": {"regex": "*"}, "x-no": {"exact": "1"}},
                    "sourceNamespace": "traffic-demo",
                    "statPrefix": "api",
                }
            ],
            "route": [
                {
                    "destination": {"host": "reviews", "subset": "v1", "port": {"number": 9080}},
                    "weight": 75,
                    "headers": {
                        "request": {"set": {"x-dest": "v1"}, "remove": ["x-internal"]},
                        "response": {"add": {"x-served-by": "%HOSTNAME%"}},
                    },
                },
                {"destination": {"host": "reviews", "subset": "v2"}, "weight": 25},
            ],
            "rewrite": {"uri": "/v1/api", "authority": "reviews.internal"},
            "timeout": "10s",
            "retries": {
                "attempts": 3,
                "perTryTimeout": "2s",
                "retryOn": "5xx,gateway-error,connect-failure,503,cancelled",
                "retryRemoteLocalities": True,
                "retryIgnorePreviousHosts": False,
                "backoff": "25ms",
            },
            "fault": {
                "delay": {"fixedDelay": "100ms", "percentage": {"value": 0.5}},
                "abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 0.0001}},
            },
            "mirrors": [
                {"destination": {"host": "reviews-shadow"}, "percentage": {"value": 10}},
                {"destination": {"host": "reviews-audit", "subset": "a"}},
            ],
            "corsPolicy": {
                "allowOrigins": [{"exact": "https://example.com"}, {"regex": "https://.*\\.ex"}],
                "allowMethods": ["GET", "POST", "*"],
                "allowHeaders": ["x-custom", "*"],
                "exposeHeaders": ["x-trace-id"],
                "maxAge": "24h",
                "allowCredentials": True,
                "unmatchedPreflights": "IGNORE",
            },
            "headers": {
                "request": {"add": {"x-added": "prefix %START_TIME(%s)% 100%%"}},
                "response": {"set": {"cache-control": "no-cache"}, "remove": ["server"]},
            },
        },
        {
            "name": "deprecated-forms",
            "match": [{"uri": {"exact": "/old"}}],
            "route": [{"destination": {"host": "reviews"}}],
            "mirror": {"host": "reviews-shadow", "port": {"number": 9080}},
            "mirrorPercent": 50,
            "mirrorPercentage": {"value": 25.5},
            "fault": {"delay": {"fixedDelay": "1s", "percent": 10}},
            "corsPolicy": {"allowOrigin": ["https://legacy.example.com"]},
        },
        {
            "match": [{"uri": {"prefix": "/moved"}}],
            "redirect": {
                "prefixRewrite": "/new",
                "authority": "new.example.com",
                "derivePort": "FROM_REQUEST_PORT",
                "scheme": "https",
                "redirectCode": 308,
            },
        },
        {
            "match": [{"uri": {"exact": "/abs"}}],
            "redirect": {"uri": "/absolute", "port": 8443, "redirectCode": 302},
        },
        {
            "match": [{"uri": {"exact": "/teapot"}}],
            "directResponse": {"status": 418, "body": {"string": "I'm a teapot"}},
        },
        {
            "match": [{"uri": {"exact": "/bin"}}],
            "directResponse": {
                "status": 200,
                "body": {"bytes": base64.b64encode(b"\x00\x01binary").decode()},
            },
        },
        {
            "match": [{"uri": {"regex": "^/users/([0-9]+)$"}}],
            "rewrite": {"uriRegexRewrite": {"match": "^/users/([0-9]+)$", "rewrite": "/u/\\1"}},
            "route": [{"destination": {"host": "users.traffic-demo.svc.cluster.local"}}],
        },
        {"route": [{"destination": {"host": "reviews", "subset": "v1"}}]},
    ],
}

FULL_L4: dict[str, Any] = {
    "hosts": ["db.example.com", "*.tls.example.com"],
    "gateways": ["edge/gw"],
    "tls": [
        {
            "match": [
                {
                    "sniHosts": ["a.tls.example.com", "*.x.tls.example.com"],
                    "destinationSubnets": ["10.0.0.0/8", "192.168.1.1"],
                    "port": 443,
                    "sourceLabels": {"app": "client"},
                    "gateways": ["edge/gw"],
                    "sourceNamespace": "clients",
                }
            ],
            "route": [
                {
                    "destination": {"host": "a.tls.example.com", "port": {"number": 443}},
                    "weight": 1,
                },
                {"destination": {"host": "b.tls.example.com"}, "weight": 3},
            ],
        },
        {
            "match": [{"sniHosts": ["db.example.com"]}],
            "route": [{"destination": {"host": "db.example.com"}}],
        },
    ],
    "tcp": [
        {
            "match": [
                {
                    "destinationSubnets": ["10.1.0.0/16"],
                    "port": 5432,
                    "sourceSubnet": "10.2.0.0/16",
                    "sourceLabels": {"app": "api"},
                    "gateways": ["edge/gw"],
                    "sourceNamespace": "api",
                }
            ],
            "route": [{"destination": {"host": "db.example.com", "port": {"number": 5432}}}],
        },
        {"route": [{"destination": {"host": "db-replica.example.com", "subset": "r1"}}]},
    ],
}


def test_full_http_document_is_accepted() -> None:
    model = ok(FULL_HTTP)
    route = model.http[0]
    assert route.retries is not None and route.retries.attempts == 3
    assert route.cors_policy is not None and route.cors_policy.unmatched_preflights == "IGNORE"
    assert route.match[0].without_headers["x-skip"].regex == "*"
    assert model.http[1].mirror_percent == 50
    assert model.http[2].redirect is not None
    assert model.http[2].redirect.derive_port == "FROM_REQUEST_PORT"
    assert model.http[5].direct_response is not None
    assert model.http[5].direct_response.body is not None
    assert model.http[5].direct_response.body.size == 8


def test_full_l4_document_is_accepted() -> None:
    model = ok(FULL_L4)
    assert model.tls[0].match[0].sni_hosts[1] == "*.x.tls.example.com"
    assert model.tcp[0].match[0].source_subnet == "10.2.0.0/16"
    assert model.warnings() == []


def test_full_document_round_trips_camel_case() -> None:
    model = ok(FULL_HTTP)
    out = model.to_json()
    assert out["exportTo"] == [".", "other-ns"]
    route = out["http"][0]
    assert route["corsPolicy"]["maxAge"] == "24h"
    assert route["retries"]["perTryTimeout"] == "2s"
    assert route["match"][0]["withoutHeaders"]["x-skip"] == {"regex": "*"}
    assert out["http"][1]["mirrorPercent"] == 50
    assert ok(out) == model


def test_full_http_warnings_are_the_deprecated_fields() -> None:
    paths = {(i.field_path, i.severity) for i in ok(FULL_HTTP).warnings()}
    assert paths == {
        ("http[1].mirrorPercent", "warning"),
        ("http[1].fault.delay.percent", "warning"),
        ("http[1].corsPolicy.allowOrigin", "warning"),
    }


def test_delegate_pair_is_accepted() -> None:
    ok(
        {
            "hosts": ["bookinfo.com"],
            "gateways": ["mygateway"],
            "http": [
                {
                    "match": [{"uri": {"prefix": "/productpage"}}],
                    "delegate": {"name": "productpage", "namespace": "nsa"},
                },
                {"match": [{"uri": {"prefix": "/reviews"}}], "delegate": {"name": "reviews"}},
            ],
        }
    )
    ok({"http": [{"route": [{"destination": {"host": "productpage-v1"}}]}]})


def test_snake_case_and_camel_case_aliases() -> None:
    assert "ignoreUriCase" in HTTPMatchRequest.model_fields["ignore_uri_case"].alias  # type: ignore[operator]
    fails(
        {
            "hosts": ["a"],
            "http": [
                {
                    "route": [{"destination": {"host": "a"}}],
                    "mirror_percentage": {"value": 1},
                    "Timeout": "1s",
                }
            ],
        },
        "spec.http[0].Timeout",
        "unknown field",
    )


# --- validation rules, one case each ----------------------------------------------------------


def route(**fields: Any) -> dict[str, Any]:
    """A spec with one HTTP route to `sample-app` plus `fields` on that route."""
    rule: dict[str, Any] = {"route": [{"destination": {"host": "sample-app"}}]}
    rule.update(fields)
    return {"hosts": ["sample-app"], "http": [{k: v for k, v in rule.items() if v is not None}]}


def dest(**fields: Any) -> dict[str, Any]:
    return {"hosts": ["sample-app"], "http": [{"route": [{"destination": fields}]}]}


def match(**fields: Any) -> dict[str, Any]:
    return route(match=[fields])


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    # hosts
    ("host-invalid", {"hosts": ["bad_host"], "http": route()["http"]}, "spec.hosts[0]", "bad_host"),
    (
        "host-partial-wildcard",
        {"hosts": ["a.*.com"], "http": route()["http"]},
        "spec.hosts[0]",
        "invalid",
    ),
    (
        "host-numeric-tld",
        {"hosts": ["foo.123"], "http": route()["http"]},
        "spec.hosts[0]",
        "all-numeric",
    ),
    ("host-empty", {"hosts": ["a", ""], "http": route()["http"]}, "spec.hosts[1]", "empty domain"),
    (
        "host-star-mesh",
        {"hosts": ["*"], "http": route()["http"]},
        "spec.hosts[0]",
        "wildcard host *",
    ),
    (
        "host-star-with-mesh",
        {"hosts": ["*"], "gateways": ["gw", "mesh"], "http": route()["http"]},
        "spec.hosts[0]",
        "wildcard host *",
    ),
    (
        "host-duplicate",
        {"hosts": ["a.com", "a.com"], "http": route()["http"]},
        "spec.hosts[1]",
        "duplicate hosts",
    ),
    (
        "host-wildcard-overlap",
        {"hosts": ["*.foo.com", "bar.foo.com"], "http": route()["http"]},
        "spec.hosts[1]",
        "duplicate hosts",
    ),
    # gateways
    (
        "gateway-bad-name",
        {"hosts": ["a"], "gateways": ["bad_gw"], "http": route()["http"]},
        "spec.gateways[0]",
        "invalid gateway name",
    ),
    (
        "gateway-bad-ns",
        {"hosts": ["a"], "gateways": ["Bad_ns/gw"], "http": route()["http"]},
        "spec.gateways[0]",
        "namespace",
    ),
    (
        "gateway-empty-part",
        {"hosts": ["a"], "gateways": ["ns/"], "http": route()["http"]},
        "spec.gateways[0]",
        "cannot be empty",
    ),
    (
        "gateway-bad-gw",
        {"hosts": ["a"], "gateways": ["ns/gw.x"], "http": route()["http"]},
        "spec.gateways[0]",
        "not a DNS-1123 label",
    ),
    (
        "match-gateway-bad",
        match(gateways=["ns/a/b"]),
        "spec.http[0].match[0].gateways[0]",
        "invalid gateway",
    ),
    # routes required
    ("no-routes", {"hosts": ["a"]}, "spec", "http, tcp or tls must be provided"),
    # delegate VS
    (
        "delegate-vs-gateways",
        {"gateways": ["gw"], "http": route()["http"]},
        "spec.gateways",
        "delegate",
    ),
    (
        "delegate-vs-tcp",
        {"http": route()["http"], "tcp": [{"route": [{"destination": {"host": "a"}}]}]},
        "spec.tcp",
        "delegate",
    ),
    (
        "delegate-vs-tls",
        {
            "http": route()["http"],
            "tls": [{"match": [{"sniHosts": ["a"]}], "route": [{"destination": {"host": "a"}}]}],
        },
        "spec.tls",
        "delegate",
    ),
    (
        "delegate-in-delegate",
        {"http": [{"delegate": {"name": "x"}}]},
        "spec.http[0].delegate",
        "cannot delegate",
    ),
    (
        "delegate-with-route",
        route(delegate={"name": "x"}),
        "spec.http[0].route",
        "must not also set route",
    ),
    (
        "delegate-with-redirect",
        {"hosts": ["a"], "http": [{"delegate": {"name": "x"}, "redirect": {"uri": "/"}}]},
        "spec.http[0].redirect",
        "must not also set redirect",
    ),
    (
        "delegate-with-direct",
        {"hosts": ["a"], "http": [{"delegate": {"name": "x"}, "directResponse": {"status": 200}}]},
        "spec.http[0].directResponse",
        "must not also set directResponse",
    ),
    (
        "delegate-no-name",
        {"hosts": ["a"], "http": [{"delegate": {"namespace": "ns"}}]},
        "spec.http[0].delegate.name",
        "required",
    ),
    (
        "delegate-bad-ns",
        {"hosts": ["a"], "http": [{"delegate": {"name": "x", "namespace": "Bad_NS"}}]},
        "spec.http[0].delegate.namespace",
        "namespace",
    ),
    # actions
    (
        "no-action",
        {"hosts": ["a"], "http": [{"match": [{"uri": {"exact": "/"}}]}]},
        "spec.http[0]",
        "needs one of route, redirect",
    ),
    (
        "route-and-redirect",
        route(redirect={"uri": "/x"}),
        "spec.http[0].route",
        "both route and redirect",
    ),
    (
        "fault-and-redirect",
        {
            "hosts": ["a"],
            "http": [{"redirect": {"uri": "/x"}, "fault": {"abort": {"httpStatus": 500}}}],
        },
        "spec.http[0].fault",
        "both fault and redirect",
    ),
    (
        "rewrite-and-redirect",
        {"hosts": ["a"], "http": [{"redirect": {"uri": "/x"}, "rewrite": {"uri": "/y"}}]},
        "spec.http[0].rewrite",
        "both rewrite and redirect",
    ),
    (
        "direct-and-redirect",
        {"hosts": ["a"], "http": [{"redirect": {"uri": "/x"}, "directResponse": {"status": 200}}]},
        "spec.http[0].directResponse",
        "both directResponse and redirect",
    ),
    (
        "route-and-direct",
        route(directResponse={"status": 200}),
        "spec.http[0].route",
        "both route and directResponse",
    ),
    (
        "fault-and-direct",
        {
            "hosts": ["a"],
            "http": [{"directResponse": {"status": 200}, "fault": {"delay": {"fixedDelay": "1s"}}}],
        },
        "spec.http[0].fault",
        "both fault and directResponse",
    ),
    (
        "rewrite-and-direct",
        {
            "hosts": ["a"],
            "http": [{"directResponse": {"status": 200}, "rewrite": {"authority": "x"}}],
        },
        "spec.http[0].rewrite",
        "both rewrite and directResponse",
    ),
    (
        "mirror-and-mirrors",
        route(mirror={"host": "m"}, mirrors=[{"destination": {"host": "n"}}]),
        "spec.http[0].mirrors",
        "both mirror and mirrors",
    ),
    # rewrite
    ("rewrite-empty", route(rewrite={}), "spec.http[0].rewrite", "at least one of uri"),
    (
        "rewrite-uri-and-regex",
        route(rewrite={"uri": "/", "uriRegexRewrite": {"match": "a", "rewrite": "b"}}),
        "spec.http[0].rewrite.uriRegexRewrite",
        "only one of uri",
    ),
    (
        "regex-rewrite-no-rewrite",
        route(rewrite={"uriRegexRewrite": {"match": "^/a"}}),
        "spec.http[0].rewrite.uriRegexRewrite.rewrite",
        "both match and rewrite",
    ),
    (
        "regex-rewrite-no-match",
        route(rewrite={"uriRegexRewrite": {"rewrite": "/"}}),
        "spec.http[0].rewrite.uriRegexRewrite.match",
        "both match and rewrite",
    ),
    (
        "regex-rewrite-bad-re2",
        route(rewrite={"uriRegexRewrite": {"match": "(?=x)", "rewrite": "/"}}),
        "spec.http[0].rewrite.uriRegexRewrite.match",
        "RE2",
    ),
    (
        "regex-rewrite-too-long",
        route(rewrite={"uriRegexRewrite": {"match": "a" * 1025, "rewrite": "/"}}),
        "spec.http[0].rewrite.uriRegexRewrite.match",
        "too large",
    ),
    (
        "authority-twice",
        route(rewrite={"authority": "a"}, headers={"request": {"set": {":authority": "b"}}}),
        "spec.http[0].headers.request.set[:authority]",
        "authority is set more than once",
    ),
    (
        "authority-host-add",
        route(headers={"request": {"set": {"Host": "a"}, "add": {"host": "b"}}}),
        "spec.http[0].headers.request.add.host",
        "authority is set more than once",
    ),
    # weights and destinations
    (
        "weight-negative",
        {"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}, "weight": -1}]}]},
        "spec.http[0].route[0].weight",
        "must not be negative",
    ),
    (
        "weight-total-zero",
        {
            "hosts": ["a"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "a", "subset": "v1"}, "weight": 0},
                        {"destination": {"host": "a", "subset": "v2"}},
                    ]
                }
            ],
        },
        "spec.http[0].route",
        "total destination weight is 0",
    ),
    (
        "weight-not-int",
        {"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}, "weight": "50"}]}]},
        "spec.http[0].route[0].weight",
        "integer",
    ),
    (
        "dest-host-missing",
        {"hosts": ["a"], "http": [{"route": [{"destination": {"subset": "v1"}}]}]},
        "spec.http[0].route[0].destination.host",
        "required",
    ),
    (
        "dest-missing",
        {"hosts": ["a"], "http": [{"route": [{"weight": 1}]}]},
        "spec.http[0].route[0].destination",
        "required",
    ),
    ("dest-host-star", dest(host="*"), "spec.http[0].route[0].destination.host", "cannot be *"),
    ("dest-host-invalid", dest(host="a..b"), "spec.http[0].route[0].destination.host", "invalid"),
    (
        "dest-host-ip",
        dest(host="10.0.0.1"),
        "spec.http[0].route[0].destination.host",
        "all-numeric",
    ),
    (
        "dest-subset-invalid",
        dest(host="a", subset="v_1"),
        "spec.http[0].route[0].destination.subset",
        "DNS-1123",
    ),
    (
        "dest-port-range",
        dest(host="a", port={"number": 70000}),
        "spec.http[0].route[0].destination.port.number",
        "1..65535",
    ),
    (
        "dest-port-empty",
        dest(host="a", port={}),
        "spec.http[0].route[0].destination.port.number",
        "required",
    ),
    ("mirror-dest-invalid", route(mirror={"host": "*"}), "spec.http[0].mirror.host", "cannot be *"),
    (
        "mirrors-dest-missing",
        route(mirrors=[{"percentage": {"value": 5}}]),
        "spec.http[0].mirrors[0].destination",
        "required",
    ),
    # retries
    (
        "retry-negative",
        route(retries={"attempts": -1}),
        "spec.http[0].retries.attempts",
        "negative",
    ),
    (
        "retry-zero-with-timeout",
        route(retries={"attempts": 0, "perTryTimeout": "1s"}),
        "spec.http[0].retries.perTryTimeout",
        "attempts is 0",
    ),
    (
        "retry-zero-with-retry-on",
        route(retries={"retryOn": "5xx"}),
        "spec.http[0].retries.retryOn",
        "attempts is 0",
    ),
    (
        "retry-zero-with-localities",
        route(retries={"retryRemoteLocalities": False}),
        "spec.http[0].retries.retryRemoteLocalities",
        "attempts is 0",
    ),
    (
        "retry-per-try-short",
        route(retries={"attempts": 1, "perTryTimeout": "500us"}),
        "spec.http[0].retries.perTryTimeout",
        "at least 1ms",
    ),
    (
        "retry-on-unknown",
        route(retries={"attempts": 1, "retryOn": "5xx,bogus"}),
        "spec.http[0].retries.retryOn",
        "'bogus'",
    ),
    (
        "retry-on-space",
        route(retries={"attempts": 1, "retryOn": "5xx, reset"}),
        "spec.http[0].retries.retryOn",
        "' reset'",
    ),
    (
        "retry-on-bad-status",
        route(retries={"attempts": 1, "retryOn": "599"}),
        "spec.http[0].retries.retryOn",
        "'599'",
    ),
    (
        "retry-backoff-short",
        route(retries={"attempts": 1, "backoff": "0s"}),
        "spec.http[0].retries.backoff",
        "at least 1ms",
    ),
    # timeouts and durations
    ("timeout-zero", route(timeout="0s"), "spec.http[0].timeout", "at least 1ms"),
    (
        "timeout-sub-ms",
        route(timeout="1.5ms"),
        "spec.http[0].timeout",
        "whole number of milliseconds",
    ),
    ("timeout-syntax", route(timeout="10"), "spec.http[0].timeout", "invalid duration"),
    # fault
    ("fault-empty", route(fault={}), "spec.http[0].fault", "abort and/or a delay"),
    (
        "fault-delay-percent-tiny",
        route(fault={"delay": {"fixedDelay": "1s", "percentage": {"value": 0.00001}}}),
        "spec.http[0].fault.delay.percentage.value",
        "[0.0001, 100]",
    ),
    (
        "fault-abort-percent-over",
        route(fault={"abort": {"httpStatus": 500, "percentage": {"value": 101}}}),
        "spec.http[0].fault.abort.percentage.value",
        "range",
    ),
    (
        "fault-abort-status-low",
        route(fault={"abort": {"httpStatus": 199}}),
        "spec.http[0].fault.abort.httpStatus",
        "200-599",
    ),
    (
        "fault-abort-status-high",
        route(fault={"abort": {"httpStatus": 601}}),
        "spec.http[0].fault.abort.httpStatus",
        "200-599",
    ),
    (
        "fault-abort-grpc-unknown",
        route(fault={"abort": {"grpcStatus": "unavailable"}}),
        "spec.http[0].fault.abort.grpcStatus",
        "not supported",
    ),
    (
        "fault-abort-http2",
        route(fault={"abort": {"http2Error": "x"}}),
        "spec.http[0].fault.abort.http2Error",
        "not supported",
    ),
    (
        "fault-abort-two-types",
        route(fault={"abort": {"httpStatus": 500, "grpcStatus": "INTERNAL"}}),
        "spec.http[0].fault.abort.grpcStatus",
        "only one of",
    ),
    (
        "fault-delay-short",
        route(fault={"delay": {"fixedDelay": "0.1ms"}}),
        "spec.http[0].fault.delay.fixedDelay",
        "at least 1ms",
    ),
    (
        "fault-delay-exponential",
        route(fault={"delay": {"exponentialDelay": "1s"}}),
        "spec.http[0].fault.delay.exponentialDelay",
        "not supported",
    ),
    # mirror percentages
    (
        "mirror-percent-over",
        route(mirror={"host": "m"}, mirrorPercent=101),
        "spec.http[0].mirrorPercent",
        "at most 100",
    ),
    (
        "mirror-percent-negative",
        route(mirror={"host": "m"}, mirrorPercent=-1),
        "spec.http[0].mirrorPercent",
        "greater than or equal",
    ),
    (
        "mirror-percentage-over",
        route(mirror={"host": "m"}, mirrorPercentage={"value": 100.5}),
        "spec.http[0].mirrorPercentage.value",
        "range",
    ),
    (
        "mirrors-percentage-negative",
        route(mirrors=[{"destination": {"host": "m"}, "percentage": {"value": -1}}]),
        "spec.http[0].mirrors[0].percentage.value",
        "range",
    ),
    # CORS
    (
        "cors-method",
        route(corsPolicy={"allowMethods": ["GET", "get"]}),
        "spec.http[0].corsPolicy.allowMethods[1]",
        "'get'",
    ),
    (
        "cors-header",
        route(corsPolicy={"allowHeaders": ["x ok"]}),
        "spec.http[0].corsPolicy.allowHeaders[0]",
        "not a valid header",
    ),
    (
        "cors-expose-empty",
        route(corsPolicy={"exposeHeaders": [""]}),
        "spec.http[0].corsPolicy.exposeHeaders[0]",
        "empty",
    ),
    (
        "cors-max-age-fraction",
        route(corsPolicy={"maxAge": "1500ms"}),
        "spec.http[0].corsPolicy.maxAge",
        "whole number of seconds",
    ),
    (
        "cors-max-age-zero",
        route(corsPolicy={"maxAge": "0s"}),
        "spec.http[0].corsPolicy.maxAge",
        "at least 1ms",
    ),
    (
        "cors-origin-empty",
        route(corsPolicy={"allowOrigins": [{"exact": ""}]}),
        "spec.http[0].corsPolicy.allowOrigins[0]",
        "non-empty",
    ),
    (
        "cors-origin-regex",
        route(corsPolicy={"allowOrigins": [{"regex": "(a"}]}),
        "spec.http[0].corsPolicy.allowOrigins[0].regex",
        "RE2",
    ),
    (
        "cors-preflight-enum",
        route(corsPolicy={"unmatchedPreflights": "DROP"}),
        "spec.http[0].corsPolicy.unmatchedPreflights",
        "invalid value",
    ),
    # header operations
    (
        "hdr-set-pseudo",
        route(headers={"request": {"set": {":path": "/x"}}}),
        "spec.http[0].headers.request.set[:path]",
        "reserved",
    ),
    (
        "hdr-remove-authority",
        route(headers={"request": {"remove": [":authority"]}}),
        "spec.http[0].headers.request.remove[0]",
        "reserved",
    ),
    (
        "hdr-remove-host",
        route(headers={"request": {"remove": ["Host"]}}),
        "spec.http[0].headers.request.remove[0]",
        "Host header",
    ),
    (
        "hdr-response-host",
        route(headers={"response": {"set": {"host": "x"}}}),
        "spec.http[0].headers.response.set.host",
        "Host header",
    ),
    (
        "hdr-response-pseudo",
        route(headers={"response": {"add": {":status": "200"}}}),
        "spec.http[0].headers.response.add[:status]",
        "reserved",
    ),
    (
        "hdr-empty-name",
        route(headers={"response": {"remove": [""]}}),
        "spec.http[0].headers.response.remove[0]",
        "empty",
    ),
    (
        "hdr-value-percent",
        route(headers={"request": {"set": {"x-a": "abc%123"}}}),
        "spec.http[0].headers.request.set.x-a",
        "unterminated",
    ),
    (
        "hdr-value-trailing-percent",
        route(headers={"response": {"set": {"x-a": "100%"}}}),
        "spec.http[0].headers.response.set.x-a",
        "unescaped",
    ),
    (
        "hdr-value-control",
        route(headers={"request": {"add": {"x-a": "a\nb"}}}),
        "spec.http[0].headers.request.add.x-a",
        "control characters",
    ),
    (
        "dest-hdr-pseudo",
        {
            "hosts": ["a"],
            "http": [
                {
                    "route": [
                        {
                            "destination": {"host": "a"},
                            "headers": {"request": {"set": {":method": "GET"}}},
                        }
                    ]
                }
            ],
        },
        "spec.http[0].route[0].headers.request.set[:method]",
        "reserved",
    ),
    # match
    (
        "match-header-empty-name",
        match(headers={"": {"exact": "a"}}),
        "spec.http[0].match[0].headers[]",
        "empty",
    ),
    (
        "match-header-bad-name",
        match(headers={"x y": {"exact": "a"}}),
        "spec.http[0].match[0].headers[x y]",
        "not a valid header",
    ),
    (
        "match-header-empty-prefix",
        match(headers={"x-a": {"prefix": ""}}),
        "spec.http[0].match[0].headers.x-a.prefix",
        "must not be empty",
    ),
    (
        "match-header-empty-regex",
        match(headers={"x-a": {"regex": ""}}),
        "spec.http[0].match[0].headers.x-a.regex",
        "empty",
    ),
    (
        "match-header-bad-regex",
        match(headers={"x-a": {"regex": "a(?!b)"}}),
        "spec.http[0].match[0].headers.x-a.regex",
        "RE2",
    ),
    (
        "match-header-two-kinds",
        match(headers={"x-a": {"exact": "a", "prefix": "b"}}),
        "spec.http[0].match[0].headers.x-a",
        "only one of",
    ),
    (
        "match-qp-empty-prefix",
        match(queryParams={"q": {"prefix": ""}}),
        "spec.http[0].match[0].queryParams.q.prefix",
        "must not be empty",
    ),
    (
        "match-method-empty-prefix",
        match(method={"prefix": ""}),
        "spec.http[0].match[0].method.prefix",
        "must not be empty",
    ),
    (
        "match-without-empty-prefix",
        match(withoutHeaders={"x-a": {"prefix": ""}}),
        "spec.http[0].match[0].withoutHeaders.x-a.prefix",
        "must not be empty",
    ),
    (
        "match-without-bad-regex",
        match(withoutHeaders={"x-a": {"regex": "**"}}),
        "spec.http[0].match[0].withoutHeaders.x-a.regex",
        "RE2",
    ),
    (
        "match-uri-regex-long",
        match(uri={"regex": "a" * 1025}),
        "spec.http[0].match[0].uri.regex",
        "too large",
    ),
    ("match-port", match(port=65536), "spec.http[0].match[0].port", "1..65535"),
    (
        "match-source-labels",
        match(sourceLabels={"app": "bad value"}),
        "spec.http[0].match[0].sourceLabels.app",
        "label value",
    ),
    (
        "match-source-label-key",
        match(sourceLabels={"-x": "a"}),
        "spec.http[0].match[0].sourceLabels.-x",
        "label key",
    ),
    (
        "match-source-namespace",
        match(sourceNamespace="bad_ns"),
        "spec.http[0].match[0].sourceNamespace",
        "namespace",
    ),
    (
        "match-ignore-case-type",
        match(ignoreUriCase="yes"),
        "spec.http[0].match[0].ignoreUriCase",
        "boolean",
    ),
    (
        "jwt-claim-on-mesh",
        match(headers={"@request.auth.claims.group": {"exact": "a"}}),
        "spec.http[0].match[0].headers[@request.auth.claims.group]",
        "only supported on gateways",
    ),
    # redirect / direct response
    (
        "redirect-empty",
        {"hosts": ["a"], "http": [{"redirect": {}}]},
        "spec.http[0].redirect",
        "must specify",
    ),
    (
        "redirect-uri-and-prefix",
        {"hosts": ["a"], "http": [{"redirect": {"uri": "/a", "prefixRewrite": "/b"}}]},
        "spec.http[0].redirect.prefixRewrite",
        "only one of uri or prefixRewrite",
    ),
    (
        "redirect-prefix-needs-prefix-match",
        {
            "hosts": ["a"],
            "http": [{"match": [{"uri": {"exact": "/a"}}], "redirect": {"prefixRewrite": "/b"}}],
        },
        "spec.http[0].redirect.prefixRewrite",
        "prefix match",
    ),
    (
        "redirect-code",
        {"hosts": ["a"], "http": [{"redirect": {"uri": "/a", "redirectCode": 200}}]},
        "spec.http[0].redirect.redirectCode",
        "3xx",
    ),
    (
        "redirect-scheme",
        {"hosts": ["a"], "http": [{"redirect": {"scheme": "ftp"}}]},
        "spec.http[0].redirect.scheme",
        "scheme",
    ),
    (
        "redirect-port-range",
        {"hosts": ["a"], "http": [{"redirect": {"port": 70000}}]},
        "spec.http[0].redirect.port",
        "1..65535",
    ),
    (
        "redirect-port-and-derive",
        {"hosts": ["a"], "http": [{"redirect": {"port": 80, "derivePort": "FROM_REQUEST_PORT"}}]},
        "spec.http[0].redirect.derivePort",
        "only one of port or derivePort",
    ),
    (
        "redirect-derive-enum",
        {"hosts": ["a"], "http": [{"redirect": {"derivePort": "SAME"}}]},
        "spec.http[0].redirect.derivePort",
        "invalid value",
    ),
    (
        "direct-status-low",
        {"hosts": ["a"], "http": [{"directResponse": {"status": 100}}]},
        "spec.http[0].directResponse.status",
        "200-599",
    ),
    (
        "direct-status-missing",
        {"hosts": ["a"], "http": [{"directResponse": {"body": {"string": "x"}}}]},
        "spec.http[0].directResponse.status",
        "required",
    ),
    (
        "direct-body-too-big",
        {
            "hosts": ["a"],
            "http": [
                {"directResponse": {"status": 200, "body": {"string": "x" * (1024 * 1024 + 1)}}}
            ],
        },
        "spec.http[0].directResponse.body.string",
        "1MB",
    ),
    (
        "direct-body-both",
        {
            "hosts": ["a"],
            "http": [{"directResponse": {"status": 200, "body": {"string": "x", "bytes": "eA=="}}}],
        },
        "spec.http[0].directResponse.body.bytes",
        "only one of",
    ),
    (
        "direct-body-not-base64",
        {
            "hosts": ["a"],
            "http": [{"directResponse": {"status": 200, "body": {"bytes": "not base64!"}}}],
        },
        "spec.http[0].directResponse.body.bytes",
        "base64",
    ),
    # TLS
    (
        "tls-no-match",
        {"hosts": ["a.com"], "tls": [{"route": [{"destination": {"host": "a.com"}}]}]},
        "spec.tls[0].match",
        "at least one match",
    ),
    (
        "tls-no-sni",
        {
            "hosts": ["a.com"],
            "tls": [{"match": [{"port": 443}], "route": [{"destination": {"host": "a.com"}}]}],
        },
        "spec.tls[0].match[0].sniHosts",
        "at least one SNI host",
    ),
    (
        "tls-no-route",
        {"hosts": ["a.com"], "tls": [{"match": [{"sniHosts": ["a.com"]}]}]},
        "spec.tls[0].route",
        "at least one destination",
    ),
    (
        "tls-sni-outside-hosts",
        {
            "hosts": ["a.com"],
            "tls": [
                {"match": [{"sniHosts": ["b.com"]}], "route": [{"destination": {"host": "b.com"}}]}
            ],
        },
        "spec.tls[0].match[0].sniHosts[0]",
        "not covered",
    ),
    (
        "tls-sni-wider-than-host",
        {
            "hosts": ["a.foo.com"],
            "tls": [
                {
                    "match": [{"sniHosts": ["*.foo.com"]}],
                    "route": [{"destination": {"host": "a.foo.com"}}],
                }
            ],
        },
        "spec.tls[0].match[0].sniHosts[0]",
        "not covered",
    ),
    (
        "tls-sni-invalid",
        {
            "hosts": ["a.com"],
            "gateways": ["mesh"],
            "tls": [
                {
                    "match": [{"sniHosts": ["a_b.com"]}],
                    "route": [{"destination": {"host": "a.com"}}],
                }
            ],
        },
        "spec.tls[0].match[0].sniHosts[0]",
        "invalid",
    ),
    (
        "tls-subnet",
        {
            "hosts": ["a.com"],
            "tls": [
                {
                    "match": [{"sniHosts": ["a.com"], "destinationSubnets": ["10.0.0.0/33"]}],
                    "route": [{"destination": {"host": "a.com"}}],
                }
            ],
        },
        "spec.tls[0].match[0].destinationSubnets[0]",
        "CIDR",
    ),
    (
        "tls-weight-total",
        {
            "hosts": ["a.com"],
            "tls": [
                {
                    "match": [{"sniHosts": ["a.com"]}],
                    "route": [
                        {"destination": {"host": "a.com"}},
                        {"destination": {"host": "b.com"}},
                    ],
                }
            ],
        },
        "spec.tls[0].route",
        "total destination weight is 0",
    ),
    # TCP
    (
        "tcp-no-route",
        {"hosts": ["a.com"], "tcp": [{"match": [{"port": 5432}]}]},
        "spec.tcp[0].route",
        "at least one destination",
    ),
    (
        "tcp-port",
        {
            "hosts": ["a.com"],
            "tcp": [
                {"match": [{"port": 0}, {"port": 99999}], "route": [{"destination": {"host": "a"}}]}
            ],
        },
        "spec.tcp[0].match[1].port",
        "1..65535",
    ),
    (
        "tcp-subnet",
        {
            "hosts": ["a.com"],
            "tcp": [
                {
                    "match": [{"destinationSubnets": ["10.0.0"]}],
                    "route": [{"destination": {"host": "a"}}],
                }
            ],
        },
        "spec.tcp[0].match[0].destinationSubnets[0]",
        "not a valid IP",
    ),
    (
        "tcp-weight-negative",
        {"hosts": ["a.com"], "tcp": [{"route": [{"destination": {"host": "a"}, "weight": -5}]}]},
        "spec.tcp[0].route[0].weight",
        "negative",
    ),
    (
        "tcp-gateway-name",
        {
            "hosts": ["a.com"],
            "tcp": [
                {"match": [{"gateways": ["x/y/z"]}], "route": [{"destination": {"host": "a"}}]}
            ],
        },
        "spec.tcp[0].match[0].gateways[0]",
        "invalid gateway",
    ),
    # exportTo
    (
        "export-to-dup",
        {"hosts": ["a"], "http": route()["http"], "exportTo": [".", "traffic-demo"]},
        "spec.exportTo[1]",
        "duplicate",
    ),
    (
        "export-to-none",
        {"hosts": ["a"], "http": route()["http"], "exportTo": ["~"]},
        "spec.exportTo[0]",
        "only allowed on ServiceEntry",
    ),
    (
        "export-to-star-and-ns",
        {"hosts": ["a"], "http": route()["http"], "exportTo": ["*", "b"]},
        "spec.exportTo",
        "cannot be combined",
    ),
    (
        "export-to-bad",
        {"hosts": ["a"], "http": route()["http"], "exportTo": ["Bad_NS"]},
        "spec.exportTo[0]",
        "not a namespace",
    ),
    # unknown fields
    (
        "unknown-route-field",
        route(websocketUpgrade=True),
        "spec.http[0].websocketUpgrade",
        "unknown field",
    ),
    (
        "unknown-destination-field",
        dest(host="a", version="v1"),
        "spec.http[0].route[0].destination.version",
        "unknown field",
    ),
]


@pytest.mark.parametrize(
    ("spec", "path", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_rule(spec: dict[str, Any], path: str, fragment: str) -> None:
    fails(spec, path, fragment)


def test_errors_carry_a_hint_where_a_fix_is_known() -> None:
    issue = fails(
        route(timeout="10", retries={"attempts": -1}), "spec.http[0].retries.attempts", "negative"
    )
    assert issue.severity == "error"
    hinted = fails({"hosts": ["*"], "http": route()["http"]}, "spec.hosts[0]", "wildcard")
    assert hinted.hint and "gateways" in hinted.hint
    weight = fails(
        {
            "hosts": ["a"],
            "http": [{"route": [{"destination": {"host": "a"}}, {"destination": {"host": "b"}}]}],
        },
        "spec.http[0].route",
        "total destination weight",
    )
    assert weight.hint and "100" in weight.hint


def test_independent_routes_report_errors_together() -> None:
    spec = {
        "hosts": ["a"],
        "http": [route(timeout="0s")["http"][0], route(retries={"attempts": -2})["http"][0]],
    }
    _, issues = parse(spec)
    assert {i.field_path for i in issues} == {
        "spec.http[0].timeout",
        "spec.http[1].retries.attempts",
    }


# --- things Istio accepts ---------------------------------------------------------------------

ACCEPTED: list[tuple[str, dict[str, Any]]] = [
    ("star-on-gateway", {"hosts": ["*"], "gateways": ["gw"], "http": route()["http"]}),
    ("ip-host", {"hosts": ["192.168.0.1", "2001:db8::1"], "http": route()["http"]}),
    ("wildcard-prefix-label", {"hosts": ["*foo.example.com"], "http": route()["http"]}),
    ("trailing-dot", {"hosts": ["example.com."], "http": route()["http"]}),
    ("legacy-gateway", {"hosts": ["a"], "gateways": ["gw.istio-system"], "http": route()["http"]}),
    ("uppercase-subset", dest(host="a", subset="V1")),
    (
        "single-zero-weight",
        {"hosts": ["a"], "http": [{"route": [{"destination": {"host": "a"}, "weight": 0}]}]},
    ),
    (
        "weights-not-100",
        {
            "hosts": ["a"],
            "http": [
                {
                    "route": [
                        {"destination": {"host": "a", "subset": "x"}, "weight": 1},
                        {"destination": {"host": "a", "subset": "y"}, "weight": 2},
                    ]
                }
            ],
        },
    ),
    ("uri-empty-prefix", match(uri={"prefix": ""})),
    ("header-presence", match(headers={"x-a": {}})),
    ("query-empty-exact", match(queryParams={"flag": {"exact": ""}})),
    ("status-600", {"hosts": ["a"], "http": [{"directResponse": {"status": 600}}]}),
    (
        "redirect-any-3xx",
        {"hosts": ["a"], "http": [{"redirect": {"uri": "/", "redirectCode": 399}}]},
    ),
    ("redirect-port-only", {"hosts": ["a"], "http": [{"redirect": {"port": 8080}}]}),
    (
        "redirect-prefix-no-uri-match",
        {
            "hosts": ["a"],
            "http": [
                {"match": [{"headers": {"x": {"exact": "1"}}}], "redirect": {"prefixRewrite": "/b"}}
            ],
        },
    ),
    ("retry-zero-alone", route(retries={"attempts": 0})),
    (
        "retry-status-codes",
        route(retries={"attempts": 2, "retryOn": "retriable-status-codes,503,429"}),
    ),
    ("retry-ignore-hosts-with-zero", route(retries={"retryIgnorePreviousHosts": True})),
    ("percentage-zero", route(fault={"abort": {"httpStatus": 500, "percentage": {"value": 0}}})),
    ("request-set-host", route(headers={"request": {"set": {"host": "x.example.com"}}})),
    (
        "jwt-claim-on-gateway",
        {
            "hosts": ["a"],
            "gateways": ["gw"],
            "http": [
                {
                    "match": [{"headers": {"@request.auth.claims[group]": {"exact": "a"}}}],
                    "route": [{"destination": {"host": "a"}}],
                }
            ],
        },
    ),
    ("pseudo-header-match", match(headers={":method": {"exact": "GET"}})),
    ("without-header-star", match(withoutHeaders={"x-a": {"regex": "*"}})),
    (
        "tls-autopassthrough",
        {
            "hosts": ["outbound_.80_._.svc.ns.svc.cluster.local"],
            "gateways": ["gw"],
            "tls": [
                {
                    "match": [{"sniHosts": ["outbound_.80_._.svc.ns.svc.cluster.local"]}],
                    "route": [{"destination": {"host": "svc.ns.svc.cluster.local"}}],
                }
            ],
        },
    ),
    (
        "tls-sni-under-wildcard",
        {
            "hosts": ["*.foo.com"],
            "tls": [
                {
                    "match": [{"sniHosts": ["a.foo.com", "*.b.foo.com"]}],
                    "route": [{"destination": {"host": "a.foo.com"}}],
                }
            ],
        },
    ),
    ("tcp-no-match", {"hosts": ["a"], "tcp": [{"route": [{"destination": {"host": "a"}}]}]}),
    (
        "export-to-own-ns",
        {"hosts": ["a"], "http": route()["http"], "exportTo": ["traffic-demo", "other"]},
    ),
    (
        "delegate-vs-http-only",
        {
            "http": [
                {"match": [{"uri": {"prefix": "/a"}}], "route": [{"destination": {"host": "a"}}]}
            ]
        },
    ),
]


@pytest.mark.parametrize("spec", [c[1] for c in ACCEPTED], ids=[c[0] for c in ACCEPTED])
def test_istio_accepts(spec: dict[str, Any]) -> None:
    ok(spec)


# --- warnings ---------------------------------------------------------------------------------


def warnings_of(spec: dict[str, Any]) -> list[tuple[str, str]]:
    issues = ok(spec).warnings()
    assert all(i.severity == "warning" for i in issues)
    return [(i.field_path, i.message) for i in issues]


def test_warning_rule_after_catch_all() -> None:
    spec = {
        "hosts": ["a"],
        "http": [
            {"route": [{"destination": {"host": "a"}}]},
            {"match": [{"uri": {"prefix": "/x"}}], "route": [{"destination": {"host": "b"}}]},
            {"route": [{"destination": {"host": "c"}}]},
        ],
    }
    found = warnings_of(spec)
    assert (
        "http[1]",
        "virtualService rule #1 not used (route without matches defined before)",
    ) in found
    assert (
        "http[2]",
        "virtualService rule #2 not used (only the last rule can have no matches)",
    ) in found


def test_warning_duplicate_match_ignores_match_names() -> None:
    spec = {
        "hosts": ["a"],
        "http": [
            {
                "name": "first",
                "match": [{"name": "x", "headers": {"v": {"exact": "2"}}}],
                "route": [{"destination": {"host": "a"}}],
            },
            {
                "match": [{"headers": {"v": {"exact": "2"}}}, {"uri": {"prefix": "/z"}}],
                "route": [{"destination": {"host": "b"}}],
            },
            {
                "match": [{"name": "y", "headers": {"v": {"exact": "2"}}}],
                "route": [{"destination": {"host": "c"}}],
            },
        ],
    }
    found = warnings_of(spec)
    assert (
        "http[1].match[0]",
        'virtualService rule #1 match #0 is not used (duplicate/overlapping match in rule "first")',
    ) in found
    assert ("http[2]", "virtualService rule #2 not used (all matches used by prior rules)") in found
    assert not any(path == "http[1]" for path, _ in found)


def test_warning_prefix_covered_by_earlier_prefix() -> None:
    spec = {
        "hosts": ["a"],
        "http": [
            {"match": [{"uri": {"prefix": "/api"}}], "route": [{"destination": {"host": "a"}}]},
            {"match": [{"uri": {"prefix": "/api/v2"}}], "route": [{"destination": {"host": "b"}}]},
            {
                "match": [{"uri": {"prefix": "/api/v3"}, "headers": {"x": {"exact": "1"}}}],
                "route": [{"destination": {"host": "b"}}],
            },
        ],
    }
    found = warnings_of(spec)
    assert [p for p, _ in found] == ["http[1].match[0]"]
    assert "prefix /api/v2 is not used" in found[0][1]


def test_prefix_on_other_gateway_is_not_covered() -> None:
    spec = {
        "hosts": ["a"],
        "gateways": ["mesh", "gw"],
        "http": [
            {
                "match": [{"uri": {"prefix": "/api"}, "gateways": ["gw"]}],
                "route": [{"destination": {"host": "a"}}],
            },
            {
                "match": [{"uri": {"prefix": "/api/v2"}, "gateways": ["mesh"]}],
                "route": [{"destination": {"host": "b"}}],
            },
        ],
    }
    assert warnings_of(spec) == []


def test_warning_tcp_and_tls_unreachable() -> None:
    spec = {
        "hosts": ["a.com"],
        "tcp": [
            {"route": [{"destination": {"host": "a"}}]},
            {"match": [{"port": 80}], "route": [{"destination": {"host": "b"}}]},
        ],
        "tls": [
            {"match": [{"sniHosts": ["a.com"]}], "route": [{"destination": {"host": "a"}}]},
            {"match": [{"sniHosts": ["a.com"]}], "route": [{"destination": {"host": "b"}}]},
        ],
    }
    paths = [p for p, _ in warnings_of(spec)]
    assert paths == ["tls[1].match[0]", "tls[1]", "tcp[1]"]


def test_warning_legacy_gateway_name() -> None:
    spec = {
        "hosts": ["a"],
        "gateways": ["my-gw.istio-system"],
        "http": [
            {"match": [{"gateways": ["other.ns"]}], "route": [{"destination": {"host": "a"}}]}
        ],
    }
    issues = ok(spec).warnings()
    assert [i.field_path for i in issues] == ["gateways[0]", "http[0].match[0].gateways[0]"]
    assert issues[0].hint is not None and "istio-system/my-gw" in issues[0].hint


def test_warning_deprecated_mirror_percent() -> None:
    found = warnings_of(route(mirror={"host": "m"}, mirrorPercent=10))
    assert found == [("http[0].mirrorPercent", 'using deprecated setting "mirrorPercent"')]


def test_warning_abort_without_error_type() -> None:
    found = warnings_of(route(fault={"abort": {"percentage": {"value": 10}}}))
    assert found == [("http[0].fault.abort", "abort configured, but error type not set")]


def test_warning_delay_without_fixed_delay() -> None:
    found = warnings_of(route(fault={"delay": {"percentage": {"value": 10}}}))
    assert [p for p, _ in found] == ["http[0].fault.delay"]


def test_warning_large_direct_response() -> None:
    spec = {
        "hosts": ["a"],
        "http": [{"directResponse": {"status": 200, "body": {"string": "x" * (101 * 1024)}}}],
    }
    assert [p for p, _ in warnings_of(spec)] == ["http[0].directResponse.body"]


def test_warning_redirect_code_envoy_cannot_send() -> None:
    spec = {"hosts": ["a"], "http": [{"redirect": {"uri": "/", "redirectCode": 304}}]}
    assert [p for p, _ in warnings_of(spec)] == ["http[0].redirect.redirectCode"]


def test_warning_ip_sni_host() -> None:
    spec = {
        "hosts": ["10.0.0.1"],
        "tls": [{"match": [{"sniHosts": ["10.0.0.1"]}], "route": [{"destination": {"host": "a"}}]}],
    }
    assert [p for p, _ in warnings_of(spec)] == ["tls[0].match[0].sniHosts[0]"]


def test_warning_uppercase_header_and_ignore_case_and_selectors() -> None:
    spec = {
        "hosts": ["a"],
        "gateways": ["gw"],
        "http": [
            {
                "match": [
                    {
                        "headers": {"X-User": {"exact": "a"}},
                        "ignoreUriCase": True,
                        "uri": {"regex": "/a.*"},
                        "sourceLabels": {"app": "x"},
                    }
                ],
                "route": [{"destination": {"host": "a"}}],
            }
        ],
    }
    assert [p for p, _ in warnings_of(spec)] == [
        "http[0].match[0].headers.X-User",
        "http[0].match[0].ignoreUriCase",
        "http[0].match[0].sourceLabels",
    ]


# --- helpers ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "matches", "subset"),
    [
        ("foo.com", "foo.com", True, True),
        ("foo.com", "bar.com", False, False),
        ("*.com", "foo.com", True, False),
        ("foo.com", "*.com", True, True),
        ("*.foo.com", "foo.com", False, False),
        ("*", "foo.com", True, False),
        ("*.a.com", "*.com", True, True),
        ("*.com", "*.a.com", True, False),
    ],
)
def test_host_relations(a: str, b: str, matches: bool, subset: bool) -> None:
    assert host_matches(a, b) is matches
    assert host_subset_of(a, b) is subset


@pytest.mark.parametrize(
    ("host", "valid"),
    [
        ("*", True),
        ("*.a.com", True),
        ("*-a.b", True),
        ("a.*.com", False),
        ("a..com", False),
        ("a_b.com", False),
        ("A.COM", True),
        ("a.com.", True),
        ("1.2.3.4", False),
        ("x" * 64, False),
    ],
)
def test_wildcard_domain(host: str, valid: bool) -> None:
    assert (wildcard_domain_problem(host) is None) is valid


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("plain", True),
        ("%HOSTNAME%", True),
        ("100%%", True),
        ("pre %HOSTNAME% post", True),
        ('%REQ(["x-a"])%', True),
        ("%START_TIME(%s)%", True),
        ("abc%123", False),
        ("%START_TIME%%", False),
        ("%", False),
        ("tab\tok", True),
        ('%REQ(["a" x])%', False),
    ],
)
def test_header_value_syntax(value: str, valid: bool) -> None:
    assert (header_value_problem(value) is None) is valid
