"""The Canary resource: every validation rule names its field and how to fix it; the
contract's example parses; the kind works through decode, the REST API and `get` tables."""

from __future__ import annotations

import asyncio
import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from meshpilot.api.canary import CanaryMetric, CanarySpec, SessionAffinity, ThresholdRange
from meshpilot.api.decode import decode
from meshpilot.api.errors import Issue
from meshpilot.api.kinds import by_group_plural, by_kind, lookup
from meshpilot.api.load import parse_text
from meshpilot.api.schema import parse_model
from meshpilot.cli import output
from meshpilot.store import SqliteStore
from meshpilot.web.app import create_app

BASE: dict[str, Any] = {
    "host": "sample-app",
    "stableSubset": "v1",
    "canarySubset": "v2",
    "stepWeights": [10, 25, 50, 75],
}

# The contract's example (/tmp/rollout_interfaces.md), with one schedule chosen: the
# example lists steps, stepWeights, stepWeight, iterations and match side by side to
# show every field, and those are mutually exclusive (see FULL_AS_WRITTEN below).
FULL = """\
apiVersion: meshpilot.io/v1alpha1
kind: Canary
metadata: {name: sample-app, namespace: traffic-demo}
spec:
  host: sample-app
  port: 80
  stableSubset: v1
  canarySubset: v2
  virtualService: sample-app-routing
  strategy: canary
  steps:
    - setWeight: 10
    - pause: {duration: 30s}
    - analysis: {}
    - mirror: {percentage: 50}
    - setHeaderRoute: {name: beta, match: [{headers: {x-beta: {exact: "true"}}}]}
  analysis:
    interval: 30s
    failureLimit: 3
    consecutiveFailureLimit: 2
    inconclusiveLimit: 2
    progressDeadline: 10m
    metrics:
      - name: request-success-rate
        thresholdRange: {min: 99}
        window: 30s
        minRequests: 20
        noTraffic: fail
        baseline: {maxDecrease: 1}
      - name: request-duration
        quantile: 0.95
        thresholdRange: {max: 500}
        baseline: {maxRatio: 1.2}
      - name: my-promql
        prometheus: {address: "http://127.0.0.1:9090", query: "sum(...)"}
        thresholdRange: {min: 0.95}
      - name: my-http-check
        http: {url: "http://127.0.0.1:8080/check", jsonPath: "value", timeout: 5s}
        thresholdRange: {max: 10}
  webhooks:
    - {name: load, type: rollout, url: "http://127.0.0.1:9999/", timeout: 5s,
       metadata: {cmd: "..."}}
  sessionAffinity: {cookieName: canary-session, maxAge: 24h}
  skipAnalysis: false
status:
  phase: Progressing
  canaryWeight: 10
  stepIndex: 2
  checks: [{name: request-success-rate, value: 99.5, verdict: pass}]
"""

FULL_AS_WRITTEN = FULL.replace(
    "  analysis:\n",
    "  stepWeights: [10, 25, 50, 75]\n  stepWeight: 10\n  maxWeight: 50\n  iterations: 10\n"
    "  match:\n    - headers: {cookie: {regex: \"^(.*?;)?(user=beta)(;.*)?$\"}}\n  analysis:\n",
)


def parse(spec: dict[str, Any]) -> tuple[CanarySpec | None, list[Issue]]:
    return parse_model(CanarySpec, spec, prefix=("spec",), context={"namespace": "traffic-demo"})


def ok(spec: dict[str, Any]) -> CanarySpec:
    model, issues = parse(spec)
    assert issues == [], [i.format() for i in issues]
    assert model is not None
    return model


def spec_with(**changes: Any) -> dict[str, Any]:
    """BASE with top-level keys changed (camelCase given as keyword; None deletes)."""
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def metric_spec(*metrics: dict[str, Any], interval: str = "30s") -> dict[str, Any]:
    return spec_with(analysis={"interval": interval, "metrics": list(metrics)})


SR = {"name": "request-success-rate", "thresholdRange": {"min": 99}}
DUR = {"name": "request-duration", "thresholdRange": {"max": 500}}
PROM = {"name": "q", "prometheus": {"address": "http://127.0.0.1:9090", "query": "sum(x)"},
        "thresholdRange": {"min": 1}}
AB = {"iterations": 5, "match": [{"headers": {"x-ab": {"exact": "b"}}}], "stepWeights": None}


# --- valid documents ------------------------------------------------------------------------


def test_contract_example_decodes_and_status_is_ignored() -> None:
    decoded = decode(parse_text(FULL, "canary.yaml"))
    assert decoded.errors == [], [e.format() for e in decoded.errors]
    assert decoded.warnings == []
    res = decoded.resources[0]
    assert (res.api_version, res.kind, res.namespace, res.name) == (
        "meshpilot.io/v1alpha1", "Canary", "traffic-demo", "sample-app")
    assert "status" not in res.body and res.status is None
    spec = CanarySpec.model_validate(res.body, by_alias=True, by_name=False)
    assert spec.effective_strategy == "canary"
    assert [s.action for s in spec.steps or []] == [
        "setWeight", "pause", "analysis", "mirror", "setHeaderRoute"]
    assert spec.analysis.interval_seconds == 30
    assert spec.analysis.progress_deadline_seconds == 600
    sr, dur, prom, http = spec.analysis.metrics
    assert (sr.threshold_text(), dur.threshold_text(), prom.threshold_text(),
            http.threshold_text()) == (">= 99", "<= 500", ">= 0.95", "<= 10")
    assert (sr.unit, dur.unit, prom.unit) == ("%", "ms", "")
    assert dur.effective_quantile == 0.95 and sr.effective_quantile == 0.99
    assert sr.effective_min_requests == 20 and dur.effective_min_requests == 1
    assert sr.window_seconds(30) == 30 and dur.window_seconds(30) == 30
    assert sr.baseline is not None and sr.baseline.max_decrease == 1
    assert http.http is not None and http.http.json_path == "value"
    assert spec.webhooks[0].timeout_seconds == 5 and spec.webhooks[0].metadata == {"cmd": "..."}
    assert spec.session_affinity is not None and spec.session_affinity.max_age_seconds == 86400


def test_contract_example_as_written_names_the_exclusive_schedules() -> None:
    decoded = decode(parse_text(FULL_AS_WRITTEN, "canary.yaml"))
    assert [e.format() for e in decoded.errors] == [
        "error: canary.yaml: document 1, line 20 (Canary traffic-demo/sample-app): "
        "spec.iterations: iterations applies to the abTest and blueGreen strategies, not "
        "canary (remove strategy: canary to let match/iterations select abTest or blueGreen, "
        "or use steps with setHeaderRoute for header routing)"]


@pytest.mark.parametrize(("changes", "strategy"), [
    ({}, "canary"),
    ({"stepWeights": None, "stepWeight": 10, "maxWeight": 50}, "canary"),
    ({"stepWeights": None, "steps": [{"setWeight": 20}, {"pause": {}}]}, "canary"),
    (AB, "abTest"),
    ({"iterations": 3, "stepWeights": None}, "blueGreen"),
    ({**AB, "strategy": "abTest"}, "abTest"),
    ({"iterations": 3, "stepWeights": None, "strategy": "blueGreen"}, "blueGreen"),
])
def test_strategy_is_inferred_as_flagger_does(changes: dict[str, Any], strategy: str) -> None:
    assert ok(spec_with(**changes)).effective_strategy == strategy


def test_defaults_and_helpers() -> None:
    spec = ok(BASE)
    assert spec.analysis.interval_seconds == 60 and spec.analysis.failure_limit == 1
    assert spec.analysis.inconclusive_limit == 0 and spec.analysis.metrics == []
    assert spec.effective_max_weight == 75
    assert ok(spec_with(stepWeights=None, stepWeight=10)).effective_max_weight == 100
    assert SessionAffinity.model_validate({"cookieName": "c", "maxAge": 3600}).max_age_seconds \
        == 3600
    assert ThresholdRange(min=1, max=10.5).text() == ">= 1, <= 10.5"
    m = CanaryMetric.model_validate({"name": "request-duration", "baseline": {"maxRatio": 1.2}})
    assert m.threshold_text() == "" and m.effective_no_traffic == "fail"


@pytest.mark.parametrize("spec", [
    spec_with(host="sample-app.traffic-demo.svc.cluster.local", port=8080),
    metric_spec({"name": "request-duration", "baseline": {"maxRatio": 1.2}}),
    metric_spec({"name": "h", "http": {"url": "https://x.example/v"},
                 "thresholdRange": {"max": 1}}),
    metric_spec({**SR, "noTraffic": "hold", "minRequests": 5, "window": "1s"}, interval="1s"),
    spec_with(stepWeights=[0, 100]),
    spec_with(stepWeights=None, stepWeight=20, maxWeight=50),
    spec_with(stepWeights=None, steps=[
        {"setHeaderRoute": {"name": "beta", "match": [{"headers": {"cookie": {"regex": "b"}}}]}},
        {"setHeaderRoute": {"name": "beta"}}, {"mirror": {"percentage": 0}},
        {"pause": {"duration": "1m"}}]),
    spec_with(webhooks=[{"name": t, "type": t, "url": "http://h/"} for t in (
        "pre-rollout", "rollout", "confirm-rollout", "confirm-traffic-increase",
        "confirm-promotion", "post-rollout", "rollback", "event")]),
    spec_with(webhooks=[{"name": "default-type", "url": "http://h:80/x"}]),
])
def test_valid_specs(spec: dict[str, Any]) -> None:
    ok(spec)


# --- every error, with its field path ------------------------------------------------------

ERRORS: list[tuple[str, dict[str, Any], str, str]] = [
    # schedules
    ("steps+stepWeights", spec_with(steps=[{"setWeight": 10}]), "spec.stepWeights",
     "steps and stepWeights are mutually exclusive"),
    ("stepWeights+stepWeight", spec_with(stepWeight=10), "spec.stepWeight",
     "stepWeights and stepWeight are mutually exclusive"),
    ("no schedule", spec_with(stepWeights=None), "spec",
     "the canary strategy needs steps, stepWeights or stepWeight"),
    ("stepWeights empty", spec_with(stepWeights=[]), "spec.stepWeights", "must not be empty"),
    ("stepWeights range", spec_with(stepWeights=[10, 101]), "spec.stepWeights[1]",
     "weight 101 must be in 0..100"),
    ("stepWeights order", spec_with(stepWeights=[10, 50, 50]), "spec.stepWeights[2]",
     "stepWeights must increase strictly: 50 follows 50"),
    ("stepWeight 0", spec_with(stepWeights=None, stepWeight=0), "spec.stepWeight",
     "stepWeight 0 must be in 1..100"),
    ("maxWeight range", spec_with(stepWeights=None, stepWeight=10, maxWeight=0),
     "spec.maxWeight", "maxWeight 0 must be in 1..100"),
    ("stepWeight > max", spec_with(stepWeights=None, stepWeight=60, maxWeight=50),
     "spec.stepWeight", "stepWeight 60 is above maxWeight 50"),
    ("maxWeight with stepWeights", spec_with(maxWeight=50), "spec.maxWeight",
     "maxWeight applies to stepWeight only"),
    # strategies
    ("iterations 0", spec_with(**{**AB, "iterations": 0}), "spec.iterations",
     "iterations 0 must be at least 1"),
    ("abTest without iterations", spec_with(**{**AB, "iterations": None}), "spec.iterations",
     "abTest needs iterations"),
    ("canary with match", spec_with(strategy="canary", match=AB["match"]), "spec.match",
     "match applies to the abTest and blueGreen strategies, not canary"),
    ("abTest without match", spec_with(strategy="abTest", iterations=3, stepWeights=None),
     "spec.match", "abTest needs match"),
    ("blueGreen with match", spec_with(**{**AB, "strategy": "blueGreen"}), "spec.match",
     "match applies to abTest, not blueGreen"),
    ("blueGreen with stepWeights", spec_with(iterations=3), "spec.stepWeights",
     "stepWeights applies to the canary strategy, not blueGreen"),
    ("unknown strategy", spec_with(strategy="canry"), "spec.strategy", "invalid value"),
    ("empty match", spec_with(**{**AB, "match": [{}]}), "spec.match[0]",
     "an empty match matches every request"),
    ("affinity with abTest", spec_with(**AB, sessionAffinity={"cookieName": "c"}),
     "spec.sessionAffinity", "sessionAffinity applies to the canary strategy, not abTest"),
    # target
    ("same subsets", spec_with(canarySubset="v1"), "spec.canarySubset",
     "canarySubset is the same as stableSubset ('v1')"),
    ("bad subset", spec_with(stableSubset="v_1"), "spec.stableSubset", "not a DNS-1123 label"),
    ("wildcard host", spec_with(host="*.example.com"), "spec.host", "not a wildcard"),
    ("bad host", spec_with(host="sample_app!"), "spec.host", "invalid"),
    ("port", spec_with(port=70000), "spec.port", "port number 70000 must be in the range"),
    ("virtualService name", spec_with(virtualService="Sample App"), "spec.virtualService",
     "is not a valid resource name"),
    ("missing host", spec_with(host=None), "spec.host", "required field is missing"),
    ("typo", spec_with(stepWeigths=[1]), "spec.stepWeigths", "unknown field 'stepWeigths'"),
    # explicit steps
    ("steps empty", spec_with(stepWeights=None, steps=[]), "spec.steps", "must not be empty"),
    ("step two actions", spec_with(stepWeights=None, steps=[{"setWeight": 1, "pause": {}}]),
     "spec.steps[0].pause", "a step needs exactly one of setWeight, pause, analysis, mirror, "
     "setHeaderRoute (got setWeight, pause)"),
    ("step no action", spec_with(stepWeights=None, steps=[{}]), "spec.steps[0]",
     "a step needs exactly one of"),
    ("step weight", spec_with(stepWeights=None, steps=[{"setWeight": 120}]),
     "spec.steps[0].setWeight", "setWeight 120 must be in 0..100"),
    ("step pause 0", spec_with(stepWeights=None, steps=[{"pause": {"duration": "0s"}}]),
     "spec.steps[0].pause.duration", "must be at least 1ms"),
    ("step mirror", spec_with(stepWeights=None, steps=[{"mirror": {"percentage": 150}}]),
     "spec.steps[0].mirror.percentage", "percentage 150 must be in 0..100"),
    ("header route name", spec_with(stepWeights=None, steps=[{"setHeaderRoute": {
        "name": "Beta_1", "match": [{"headers": {"x": {"exact": "1"}}}]}}]),
     "spec.steps[0].setHeaderRoute.name", "is not a DNS-1123 label"),
    ("header route removed unset", spec_with(stepWeights=None, steps=[
        {"setHeaderRoute": {"name": "beta", "match": []}}]),
     "spec.steps[0].setHeaderRoute.match", "removes a route that no earlier step set"),
    ("header route empty match", spec_with(stepWeights=None, steps=[
        {"setHeaderRoute": {"name": "beta", "match": [{}]}}]),
     "spec.steps[0].setHeaderRoute.match[0]", "an empty match matches every request"),
    # analysis
    ("interval", spec_with(analysis={"interval": "500ms"}), "spec.analysis.interval",
     "interval 500ms is shorter than the minimum 1s"),
    ("interval syntax", spec_with(analysis={"interval": "30 seconds"}), "spec.analysis.interval",
     "invalid duration '30 seconds'"),
    ("failureLimit", spec_with(analysis={"failureLimit": 0}), "spec.analysis.failureLimit",
     "failureLimit 0 must be at least 1"),
    ("consecutiveFailureLimit", spec_with(analysis={"consecutiveFailureLimit": 0}),
     "spec.analysis.consecutiveFailureLimit", "must be at least 1"),
    ("inconclusiveLimit", spec_with(analysis={"inconclusiveLimit": -1}),
     "spec.analysis.inconclusiveLimit", "must not be negative"),
    ("progressDeadline", spec_with(analysis={"interval": "1m", "progressDeadline": "30s"}),
     "spec.analysis.progressDeadline", "progressDeadline 30s is shorter than interval 1m"),
    ("window > interval", metric_spec({**SR, "window": "1m"}),
     "spec.analysis.metrics[0].window", "window 1m is longer than the analysis interval 30s"),
    ("window < 1s", metric_spec({**SR, "window": "100ms"}), "spec.analysis.metrics[0].window",
     "must be at least 1s"),
    ("duplicate metric", metric_spec(SR, DUR, SR), "spec.analysis.metrics[2].name",
     "duplicate metric name 'request-success-rate' (also metrics[0])"),
    ("thresholdRange empty", metric_spec({**SR, "thresholdRange": {}}),
     "spec.analysis.metrics[0].thresholdRange", "thresholdRange needs min or max"),
    ("thresholdRange order", metric_spec({**PROM, "thresholdRange": {"min": 5, "max": 1}}),
     "spec.analysis.metrics[0].thresholdRange.min", "min 5 is greater than max 1"),
    ("builtin without threshold", metric_spec({"name": "request-duration"}),
     "spec.analysis.metrics[0].thresholdRange", "request-duration needs thresholdRange or "
     "baseline"),
    ("builtin with query", metric_spec({**SR, "prometheus": PROM["prometheus"]}),
     "spec.analysis.metrics[0].prometheus", "request-success-rate is a built-in metric"),
    ("success rate range", metric_spec({**SR, "thresholdRange": {"min": 150}}),
     "spec.analysis.metrics[0].thresholdRange.min", "is a percentage; min 150 is outside"),
    ("duration negative", metric_spec({**DUR, "thresholdRange": {"max": -1}}),
     "spec.analysis.metrics[0].thresholdRange.max", "max -1 is negative"),
    ("quantile 1", metric_spec({**DUR, "quantile": 1}), "spec.analysis.metrics[0].quantile",
     "quantile 1 must be between 0 and 1 (exclusive)"),
    ("quantile 0", metric_spec({**DUR, "quantile": 0.0}), "spec.analysis.metrics[0].quantile",
     "must be between 0 and 1"),
    ("quantile on success rate", metric_spec({**SR, "quantile": 0.5}),
     "spec.analysis.metrics[0].quantile", "quantile applies to request-duration"),
    ("baseline both", metric_spec({**SR, "baseline": {"maxDecrease": 1, "maxRatio": 2}}),
     "spec.analysis.metrics[0].baseline", "baseline needs exactly one of maxDecrease or "
     "maxRatio"),
    ("baseline ratio on success", metric_spec({**SR, "baseline": {"maxRatio": 1.2}}),
     "spec.analysis.metrics[0].baseline.maxRatio", "baseline.maxRatio applies to "
     "request-duration"),
    ("baseline decrease on duration", metric_spec({**DUR, "baseline": {"maxDecrease": 1}}),
     "spec.analysis.metrics[0].baseline.maxDecrease", "baseline.maxDecrease applies to "
     "request-success-rate"),
    ("baseline ratio 0", metric_spec({**DUR, "baseline": {"maxRatio": 0}}),
     "spec.analysis.metrics[0].baseline.maxRatio", "must be positive"),
    ("minRequests 0", metric_spec({**SR, "minRequests": 0}),
     "spec.analysis.metrics[0].minRequests", "minRequests 0 must be at least 1"),
    ("noTraffic", metric_spec({**SR, "noTraffic": "skip"}), "spec.analysis.metrics[0].noTraffic",
     "invalid value: input should be 'fail', 'hold' or 'pass'"),
    ("unknown builtin", metric_spec({"name": "request-sucess-rate", "thresholdRange": {"min": 9}}),
     "spec.analysis.metrics[0].name", "unknown metric 'request-sucess-rate'"),
    ("custom both", metric_spec({**PROM, "http": {"url": "http://h/"}}),
     "spec.analysis.metrics[0].http", "exactly one of prometheus or http (got both)"),
    ("custom no threshold", metric_spec({**PROM, "thresholdRange": None}),
     "spec.analysis.metrics[0].thresholdRange", "custom metric 'q' needs thresholdRange"),
    ("custom minRequests", metric_spec({**PROM, "minRequests": 5}),
     "spec.analysis.metrics[0].minRequests", "minRequests applies only to the built-in"),
    ("custom window", metric_spec({**PROM, "window": "10s"}), "spec.analysis.metrics[0].window",
     "window applies only to the built-in metrics"),
    ("prometheus address", metric_spec({**PROM, "prometheus": {"address": "127.0.0.1:9090",
                                                               "query": "x"}}),
     "spec.analysis.metrics[0].prometheus.address", "must start with http:// or https://"),
    ("prometheus query", metric_spec({**PROM, "prometheus": {"address": "http://p",
                                                             "query": " "}}),
     "spec.analysis.metrics[0].prometheus.query", "query must not be empty"),
    ("http url", metric_spec({**PROM, "prometheus": None, "http": {"url": "http://"}}),
     "spec.analysis.metrics[0].http.url", "has no host"),
    ("http jsonPath", metric_spec({**PROM, "prometheus": None,
                                   "http": {"url": "http://h", "jsonPath": "a..b"}}),
     "spec.analysis.metrics[0].http.jsonPath", "has an empty segment"),
    # webhooks
    ("webhook type", spec_with(webhooks=[{"name": "a", "type": "pre-rolout", "url": "http://h"}]),
     "spec.webhooks[0].type", "unknown webhook type 'pre-rolout'"),
    ("webhook url", spec_with(webhooks=[{"name": "a", "url": "ftp://h/"}]), "spec.webhooks[0].url",
     "URL 'ftp://h/' must start with http:// or https://"),
    ("webhook timeout", spec_with(webhooks=[{"name": "a", "url": "http://h", "timeout": "0s"}]),
     "spec.webhooks[0].timeout", "must be at least 1ms"),
    ("webhook duplicate", spec_with(webhooks=[{"name": "a", "url": "http://h"}] * 2),
     "spec.webhooks[1].name", "duplicate webhook name 'a' (also webhooks[0])"),
    ("webhook metadata", spec_with(webhooks=[{"name": "a", "url": "http://h",
                                              "metadata": {"n": 5}}]),
     "spec.webhooks[0].metadata.n", "valid string"),
    ("webhook url missing", spec_with(webhooks=[{"name": "a"}]), "spec.webhooks[0].url",
     "required field is missing"),
    # session affinity
    ("cookie name", spec_with(sessionAffinity={"cookieName": "a b"}),
     "spec.sessionAffinity.cookieName", "is not a valid cookie name"),
    ("cookie maxAge", spec_with(sessionAffinity={"cookieName": "c", "maxAge": "0s"}),
     "spec.sessionAffinity.maxAge", "maxAge 0s must be a whole number of seconds, at least 1"),
    ("cookie maxAge fraction", spec_with(sessionAffinity={"cookieName": "c", "maxAge": "1.5s"}),
     "spec.sessionAffinity.maxAge", "must be a whole number of seconds"),
]


@pytest.mark.parametrize(("spec", "path", "message"), [e[1:] for e in ERRORS],
                         ids=[e[0] for e in ERRORS])
def test_errors_name_the_field(spec: dict[str, Any], path: str, message: str) -> None:
    model, issues = parse(spec)
    assert model is None, "expected an error"
    found = [i for i in issues if i.field_path == path]
    assert found, f"no issue at {path}: {[i.format() for i in issues]}"
    assert any(message in i.message for i in found), [i.format() for i in found]


def test_hints_say_how_to_fix() -> None:
    def hint(spec: dict[str, Any]) -> str | None:
        _, issues = parse(spec)
        return issues[0].hint

    assert hint(metric_spec({"name": "request-sucess-rate", "thresholdRange": {"min": 9}})) \
        == "did you mean 'request-success-rate'?"
    assert hint(spec_with(stepWeigths=[1])) == "did you mean 'stepWeights'?"
    assert (hint(spec_with(webhooks=[{"name": "a", "type": "pre-rolout", "url": "http://h"}]))
            or "").startswith("did you mean 'pre-rollout'? use one of pre-rollout, rollout,")
    assert "stepWeights: [10, 25, 50, 75]" in (hint(spec_with(stepWeights=None)) or "")
    assert "at most 30s" in (hint(metric_spec({**SR, "window": "1m"})) or "")


def test_seed_cookie_match_is_rejected_with_the_virtualservice_hint() -> None:
    """The seed's A/B block writes `match: - cookie: regex`; Istio has no such field."""
    text = """\
apiVersion: meshpilot.io/v1alpha1
kind: Canary
metadata: {name: ab, namespace: traffic-demo}
spec:
  host: sample-app
  stableSubset: v1
  canarySubset: v2
  iterations: 5
  match:
  - cookie:
      regex: ".*experiment=beta.*"
"""
    decoded = decode(parse_text(text, "ab.yaml"))
    assert [e.format() for e in decoded.errors] == [
        "error: ab.yaml: document 1, line 10 (Canary traffic-demo/ab): spec.match[0].cookie: "
        "unknown field 'cookie' (Istio has no cookie match field and would drop it, turning "
        "this rule into a catch-all; match the Cookie header instead: headers: {cookie: "
        '{"regex": ".*experiment=beta.*"}})']


def test_warnings_for_valid_but_suspicious_specs() -> None:
    text = FULL.replace("thresholdRange: {min: 99}", "thresholdRange: {min: 0.99}").replace(
        "consecutiveFailureLimit: 2", "consecutiveFailureLimit: 5").replace(
        "skipAnalysis: false", "skipAnalysis: true")
    decoded = decode(parse_text(text, "c.yaml"))
    assert decoded.errors == []
    assert sorted((w.field_path, w.message) for w in decoded.warnings) == [
        ("spec.analysis.consecutiveFailureLimit", "consecutiveFailureLimit 5 is above "
         "failureLimit 3 and can never be reached first"),
        ("spec.analysis.metrics[0].thresholdRange.min", "request-success-rate is a percentage: "
         "min 0.99 means 0.99 %, not 99 %"),
        ("spec.skipAnalysis", "skipAnalysis is true: the metrics are never checked"),
    ]


# --- the kind: registry, REST, tables --------------------------------------------------------


def test_kind_is_registered_with_kubectl_names() -> None:
    info = by_kind("Canary")
    assert info is not None
    assert (info.group, info.versions, info.plural, info.namespaced) == (
        "meshpilot.io", ("v1alpha1",), "canaries", True)
    for name in ("canary", "canaries", "cn", "Canary", "canaries.meshpilot.io"):
        assert lookup(name) is info
    assert by_group_plural("meshpilot.io", "canaries") is info
    assert info.collection_path(namespace="traffic-demo") == \
        "/apis/meshpilot.io/v1alpha1/namespaces/traffic-demo/canaries"
    assert info.resource_name == "canary.meshpilot.io"


def test_wrong_version_is_named() -> None:
    decoded = decode(parse_text(FULL.replace("v1alpha1", "v1"), "c.yaml"))
    assert decoded.errors[0].message == "Canary has no version 'v1'"
    assert decoded.errors[0].hint == "use one of meshpilot.io/v1alpha1"


def test_rest_apply_get_status_list_delete(tmp_path: Path) -> None:
    """The generic REST API serves Canaries; status is a subresource the spec never sees."""
    base = "/apis/meshpilot.io/v1alpha1/namespaces/traffic-demo/canaries"

    async def main() -> list[Any]:
        with SqliteStore(tmp_path / "store.db") as store:
            async with TestClient(TestServer(create_app(store), host="127.0.0.1")) as c:
                seen: list[Any] = []
                r = await c.post("/apis/meshpilot.io/v1/apply",
                                 json={"objects": [yaml.safe_load(FULL)]})
                seen.append((r.status, (await r.json())["results"][0]["action"]))
                status = {"phase": "Progressing", "canaryWeight": 25,
                          "lastTransitionTime": "2025-01-01T00:00:00Z", "failedChecks": 1}
                r = await c.put(f"{base}/sample-app/status", json={"status": status})
                seen.append(r.status)
                r = await c.get(f"{base}/sample-app")
                seen.append(await r.json())
                r = await c.get("/apis/meshpilot.io/v1alpha1/canaries")
                seen.append(await r.json())
                bad = yaml.safe_load(FULL)
                bad["spec"]["canarySubset"] = "v1"
                r = await c.post("/apis/meshpilot.io/v1/apply", json={"objects": [bad]})
                seen.append((r.status, await r.json()))
                r = await c.delete(f"{base}/sample-app")
                seen.append(r.status)
                r = await c.get(f"{base}/sample-app")
                seen.append(r.status)
                return seen

    applied, put, got, listing, rejected, deleted, gone = asyncio.run(main())
    assert applied == (200, "created") and put == 200
    assert got["kind"] == "Canary" and got["apiVersion"] == "meshpilot.io/v1alpha1"
    assert got["status"]["canaryWeight"] == 25
    assert got["spec"] == yaml.safe_load(FULL)["spec"]
    assert listing["kind"] == "CanaryList" and len(listing["items"]) == 1
    assert rejected[0] == 422 and "spec.canarySubset" in str(rejected[1])
    assert (deleted, gone) == (200, 404)

    table = output.table("Canary", listing["items"], all_namespaces=False, wide=False,
                         now=None).splitlines()
    assert table[0].split() == ["NAME", "STATUS", "WEIGHT", "LASTTRANSITIONTIME", "AGE"]
    assert table[1].split()[:4] == ["sample-app", "Progressing", "25", "2025-01-01T00:00:00Z"]
    wide = output.table("Canary", listing["items"], all_namespaces=True, wide=True).splitlines()
    assert wide[0].split() == ["NAMESPACE", "NAME", "STATUS", "WEIGHT", "LASTTRANSITIONTIME",
                               "AGE", "HOST", "FAILEDCHECKS", "INTERVAL", "STEPWEIGHTS",
                               "MAXWEIGHT", "VIRTUALSERVICE", "LABELS"]
    assert "sample-app-routing" in wide[1] and " 30s " in wide[1]


def test_table_before_the_controller_wrote_status() -> None:
    obj = {"metadata": {"name": "c"}, "spec": BASE}
    lines = output.table("Canary", [obj], all_namespaces=False, wide=True).splitlines()
    assert lines[1].split()[:2] == ["c", "<unknown>"]  # blank STATUS/WEIGHT, unknown AGE
    assert "10,25,50,75" in lines[1]
