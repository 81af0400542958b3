"""Canary analysis checks against the real telemetry window and real HTTP servers.

The built-in checks read a `RequestWindow` (the one the control plane's collector keeps)
fed with recorded requests under a fake clock, so the numbers below are hand-computed
from what was recorded: nothing of the analysis itself is mocked. External checks talk to
real aiohttp servers on 127.0.0.1 that answer as Prometheus / a JSON API would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from meshpilot.api.canary import CanaryMetric
from meshpilot.proxy.ports import free_port
from meshpilot.rollout.analysis import (
    AnalysisTarget,
    CheckResult,
    duration_seconds,
    json_path_value,
    run_checks,
    window_seconds,
)
from meshpilot.telemetry import TelemetryCollector, WindowSummary
from meshpilot.telemetry.metrics import bucket_index
from meshpilot.telemetry.window import RequestWindow

NS = "traffic-demo"
TARGET = AnalysisTarget(service_name="sample-app", service_namespace=NS,
                        canary_version="v2", stable_version="v1")



def metric(doc: dict[str, Any]) -> CanaryMetric:
    """A Canary `spec.analysis.metrics[]` entry from its YAML form, validated."""
    return CanaryMetric.model_validate(doc)


# --- telemetry: the real window under a fake clock -----------------------------------------


class Clock:
    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Telemetry:
    """A MetricsSource on the real RequestWindow; remembers what it was asked."""

    clock: Clock = field(default_factory=Clock)
    asked: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.window = RequestWindow(self.clock)

    def window_summary(self, service: str, *, version: str | None = None,
                       namespace: str | None = None, reporter: str = "destination",
                       seconds: int = 60, quantile: float = 0.99) -> WindowSummary:
        self.asked.append({"service": service, "version": version, "namespace": namespace,
                           "reporter": reporter, "seconds": seconds, "quantile": quantile})
        return self.window.summary(service, version=version, namespace=namespace,
                                   reporter=reporter, seconds=seconds, quantile=quantile)

    def record(self, version: str, n: int, *, code: int = 200, ms: float = 20.0,
               service: str = "sample-app", namespace: str = NS,
               reporter: str = "destination") -> None:
        """`n` requests answered now with `code` in `ms`."""
        for _ in range(n):
            self.window.record((reporter, service, namespace, version), code, bucket_index(ms))


def check(source: Any, *docs: dict[str, Any], window: float = 30.0) -> list[CheckResult]:
    return asyncio.run(run_checks([metric(d) for d in docs], TARGET, source, window))


def one(source: Any, doc: dict[str, Any], window: float = 30.0) -> CheckResult:
    [result] = check(source, doc, window=window)
    return result


SUCCESS = {"name": "request-success-rate", "thresholdRange": {"min": 99}}
DURATION = {"name": "request-duration", "thresholdRange": {"max": 500}}


# --- request-success-rate --------------------------------------------------------------------


def test_success_rate_pass_and_fail_with_flagger_wording() -> None:
    t = Telemetry()
    t.record("v2", 199)
    t.record("v2", 1, code=503)
    ok = one(t, SUCCESS)
    assert (ok.verdict, ok.value, ok.requests, ok.threshold) == ("pass", 99.5, 200, ">= 99")
    assert ok.message == "success rate 99.50%, 200 requests in 30s"
    assert ok.baseline is None

    t = Telemetry()
    t.record("v2", 39)
    t.record("v2", 1, code=500)
    bad = one(t, SUCCESS)
    assert (bad.verdict, bad.value, bad.requests) == ("fail", 97.5, 40)
    assert bad.message == "success rate 97.50% < 99%"


def test_success_rate_is_non_5xx_and_reads_only_the_canary_subset() -> None:
    t = Telemetry()
    t.record("v2", 10, code=404)  # 4xx is the client's fault: a success, as in Flagger
    t.record("v2", 10, code=301)
    t.record("v2", 10, code=0)  # no response at all: the window counts it as non-5xx
    t.record("v1", 50, code=503)  # stable's errors are not the canary's
    t.record("v2", 50, code=503, reporter="source")  # the client side: not reporter=destination
    t.record("v2", 50, code=503, namespace="other")  # same name, other namespace
    t.record("v2", 50, code=503, service="reviews")
    r = one(t, SUCCESS)
    assert (r.verdict, r.value, r.requests) == ("pass", 100.0, 30)
    assert t.asked == [{"service": "sample-app", "version": "v2", "namespace": NS,
                        "reporter": "destination", "seconds": 30, "quantile": 0.99}]


def test_all_errors_is_zero_percent_not_no_data() -> None:
    t = Telemetry()
    t.record("v2", 20, code=503)
    r = one(t, SUCCESS)
    assert (r.verdict, r.value, r.requests) == ("fail", 0.0, 20)
    assert r.message == "success rate 0.00% < 99%"


def test_too_few_requests_is_no_data_never_zero_percent() -> None:
    t = Telemetry()
    t.record("v2", 3, code=503)
    r = one(t, {**SUCCESS, "minRequests": 20})
    assert (r.verdict, r.value, r.requests, r.threshold) == ("no-data", None, 3, ">= 99")
    assert r.message == "no traffic: 3 < minRequests 20 in the last 30s"

    idle = one(Telemetry(), SUCCESS)  # default minRequests 1
    assert (idle.verdict, idle.value, idle.requests) == ("no-data", None, 0)
    assert idle.message == "no traffic: 0 < minRequests 1 in the last 30s"
    assert "%" not in idle.message

    t = Telemetry()
    t.record("v2", 20)
    assert one(t, {**SUCCESS, "minRequests": 20}).verdict == "pass"  # exactly the minimum


def test_window_excludes_older_requests_and_rounds_down() -> None:
    t = Telemetry()
    t.record("v2", 50, code=503)  # at 10000: the previous step's weight, say
    t.clock.now += 20
    t.record("v2", 50)  # at 10020, now
    # 20 s = slots 10001..10020: only the good ones.
    assert one(t, {**SUCCESS, "window": "20s"}).value == 100.0
    assert one(t, {**SUCCESS, "window": "20.9s"}).value == 100.0  # rounded down
    assert one(t, {**SUCCESS, "window": "21s"}).value == 50.0  # 10000..10020
    # No window of its own: the caller's default (the analysis interval).
    assert one(t, SUCCESS, window=20).value == 100.0
    assert one(t, SUCCESS, window=60).value == 50.0
    assert one(t, {**SUCCESS, "window": "1m"}).value == 50.0
    assert [a["seconds"] for a in t.asked] == [20, 20, 21, 20, 60, 60]


def test_duration_helpers() -> None:
    assert duration_seconds("1m30s", 5) == 90
    assert duration_seconds("250ms", 5) == 0.25
    assert duration_seconds(None, 5) == 5
    assert duration_seconds(7, 5) == 7
    assert window_seconds(0.5) == 1 and window_seconds(30.9) == 30
    assert window_seconds(3600) == 600  # what the telemetry ring keeps


# --- request-duration ------------------------------------------------------------------------


def _latencies(t: Telemetry, version: str = "v2") -> None:
    """90 requests in the (10, 25] ms bucket, 10 in (500, 1000]."""
    t.record(version, 90, ms=20)
    t.record(version, 10, ms=600)


@pytest.mark.parametrize(("quantile", "expected"), [
    (0.5, 10 + 15 * 50 / 90),  # rank 50 of 90 inside (10, 25]
    (0.9, 25.0),  # rank 90: the top of (10, 25]
    (0.95, 750.0),  # rank 95: 500 + 500 * 5/10
    (None, 950.0),  # Flagger's default p99: 500 + 500 * 9/10
])
def test_duration_quantile(quantile: float | None, expected: float) -> None:
    t = Telemetry()
    _latencies(t)
    doc = dict(DURATION) if quantile is None else {**DURATION, "quantile": quantile}
    r = one(t, doc)
    assert r.value == pytest.approx(expected)
    assert r.requests == 100 and r.threshold == "<= 500"
    assert t.asked[0]["quantile"] == (quantile or 0.99)
    if expected > 500:
        assert r.verdict == "fail"
        assert r.message == f"request duration {expected:.0f}ms > 500ms"
    else:
        assert r.verdict == "pass"
        assert r.message.startswith(f"p{int((quantile or 0.99) * 100)} request duration ")


def test_duration_no_traffic_and_min_requests() -> None:
    r = one(Telemetry(), DURATION)
    assert (r.verdict, r.value, r.requests) == ("no-data", None, 0)
    t = Telemetry()
    _latencies(t)
    r = one(t, {**DURATION, "minRequests": 101})
    assert (r.verdict, r.requests, r.message) == (
        "no-data", 100, "no traffic: 100 < minRequests 101 in the last 30s")


def test_threshold_range_with_min_and_max() -> None:
    t = Telemetry()
    _latencies(t)
    r = one(t, {"name": "request-duration", "quantile": 0.5,
                "thresholdRange": {"min": 19, "max": 500}})
    assert r.threshold == ">= 19, <= 500"
    assert (r.verdict, r.message) == ("fail", "request duration 18.33ms < 19ms")


# --- baselines -------------------------------------------------------------------------------


def test_success_rate_baseline() -> None:
    t = Telemetry()
    t.record("v2", 95)
    t.record("v2", 5, code=503)
    t.record("v1", 99)
    t.record("v1", 1, code=503)
    r = one(t, {"name": "request-success-rate", "baseline": {"maxDecrease": 1}})
    assert (r.verdict, r.value, r.baseline, r.requests) == ("fail", 95.0, 99.0, 100)
    assert r.threshold == ">= stable - 1 (98)"
    assert r.message == "success rate 95.00% < stable 99.00% - 1"
    assert [a["version"] for a in t.asked] == ["v2", "v1"]
    assert t.asked[0]["seconds"] == t.asked[1]["seconds"]  # the same window for both

    r = one(t, {"name": "request-success-rate", "baseline": {"maxDecrease": 5}})
    assert (r.verdict, r.threshold) == ("pass", ">= stable - 5 (94)")
    assert r.message == "success rate 95.00%, stable 99.00%, 100 requests in 30s"


def test_absolute_and_baseline_both_apply() -> None:
    t = Telemetry()
    t.record("v2", 95)
    t.record("v2", 5, code=503)
    t.record("v1", 99)
    t.record("v1", 1, code=503)
    # Baseline holds (95 >= 94), the absolute bound does not.
    r = one(t, {"name": "request-success-rate", "thresholdRange": {"min": 96},
                "baseline": {"maxDecrease": 5}})
    assert (r.verdict, r.threshold) == ("fail", ">= 96, >= stable - 5 (94)")
    assert r.message == "success rate 95.00% < 96%"
    # The absolute bound holds, the baseline does not: still a failure.
    r = one(t, {"name": "request-success-rate", "thresholdRange": {"min": 90},
                "baseline": {"maxDecrease": 1}})
    assert (r.verdict, r.message) == ("fail", "success rate 95.00% < stable 99.00% - 1")
    # Both fail: both are said.
    r = one(t, {"name": "request-success-rate", "thresholdRange": {"min": 99},
                "baseline": {"maxDecrease": 1}})
    assert r.message == "success rate 95.00% < 99%; success rate 95.00% < stable 99.00% - 1"


def test_duration_baseline() -> None:
    t = Telemetry()
    t.record("v2", 100, ms=600)  # p99 in (500, 1000]: 500 + 500 * 0.99 = 995
    t.record("v1", 100, ms=200)  # p99 in (100, 250]: 100 + 150 * 0.99 = 248.5
    r = one(t, {"name": "request-duration", "baseline": {"maxRatio": 1.2}})
    assert r.verdict == "fail"
    assert (r.value, r.baseline) == (pytest.approx(995), pytest.approx(248.5))
    assert r.threshold == "<= stable x 1.2 (298.2)"
    assert r.message == "request duration 995ms > stable 248ms x 1.2"

    t = Telemetry()
    t.record("v2", 100, ms=200)
    t.record("v1", 100, ms=200)
    r = one(t, {"name": "request-duration", "quantile": 0.95, "thresholdRange": {"max": 500},
                "baseline": {"maxRatio": 1.2}})
    assert (r.verdict, r.threshold) == ("pass", "<= 500, <= stable x 1.2 (291)")
    assert r.value == r.baseline == pytest.approx(100 + 150 * 0.95)


def test_baseline_without_stable_traffic() -> None:
    """Decided: no stable data -> the absolute threshold alone decides (and says so);
    with no absolute threshold there is nothing to judge by -> no-data."""
    t = Telemetry()
    t.record("v2", 100)
    t.record("v1", 2)
    r = one(t, {"name": "request-success-rate", "minRequests": 10,
                "thresholdRange": {"min": 99}, "baseline": {"maxDecrease": 1}})
    assert (r.verdict, r.value, r.baseline) == ("pass", 100.0, None)
    assert r.threshold == ">= 99, >= stable - 1"
    assert r.message == ("success rate 100.00%, 100 requests in 30s, baseline skipped: "
                         "stable v1 has 2 < minRequests 10 in the last 30s")

    r = one(t, {"name": "request-success-rate", "minRequests": 10,
                "baseline": {"maxDecrease": 1}})
    assert (r.verdict, r.value, r.requests) == ("no-data", 100.0, 100)
    assert r.message == "no baseline: stable v1 has 2 < minRequests 10 in the last 30s"

    t = Telemetry()
    t.record("v2", 100, ms=600)
    r = one(t, {"name": "request-duration", "thresholdRange": {"max": 500},
                "baseline": {"maxRatio": 2}})
    assert r.verdict == "fail"
    assert r.message == ("request duration 995ms > 500ms; baseline skipped: stable v1 has "
                         "0 < minRequests 1 in the last 30s")


def test_a_metric_without_a_source_is_an_error_not_a_crash() -> None:
    """The model rejects it; should one reach the analysis anyway (constructed in code),
    it is this metric's error, and the other checks still run."""
    t = Telemetry()
    t.record("v2", 10)
    stray = CanaryMetric.model_construct(name="error-budget")
    unknown, fine = asyncio.run(run_checks([stray, metric(SUCCESS)], TARGET, t, 30))
    assert unknown.verdict == "error"
    assert "request-success-rate" in unknown.message and "prometheus or http" in unknown.message
    assert fine.verdict == "pass"


def test_the_collector_is_a_metrics_source() -> None:
    clock = Clock()
    collector = TelemetryCollector(clock=clock)
    for code in (200, 200, 200, 503):
        collector.window.record(("destination", "sample-app", NS, "v2"), code, bucket_index(5))
    r = one(collector, {"name": "request-success-rate", "thresholdRange": {"min": 70}})
    assert (r.verdict, r.value, r.requests) == ("pass", 75.0, 4)


# --- external checks: real HTTP servers on 127.0.0.1 -----------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LOG = web.AppKey("log", list)


@dataclass
class Served:
    url: str
    log: list[tuple[str, str, str]]  # (method, path, query string) of every request


@asynccontextmanager
async def serve(routes: dict[str, Handler]) -> AsyncIterator[Served]:
    """An aiohttp server on 127.0.0.1 with these routes, logging every request."""
    app = web.Application()
    app[LOG] = []

    @web.middleware
    async def record(request: web.Request, handler: Handler) -> web.StreamResponse:
        request.app[LOG].append((request.method, request.path, request.query_string))
        return await handler(request)

    app.middlewares.append(record)
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield Served(str(server.make_url("")).rstrip("/"), app[LOG])
    finally:
        await server.close()


def _vector(*values: str, labels: bool = False) -> dict[str, Any]:
    return {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"pod": f"p{i}"} if labels else {}, "value": [1700000000.0, v]}
        for i, v in enumerate(values)]}}


PROMETHEUS_ANSWERS: dict[str, tuple[int, Any]] = {
    "good": (200, _vector("0.97")),
    'sum(rate(x{a="b c"}[1m])) + 1 & 2; #?': (200, _vector("3")),
    "scalar": (200, {"status": "success", "data": {"resultType": "scalar",
                                                   "result": [1700000000.0, "0.5"]}}),
    "empty": (200, _vector()),
    "nan": (200, _vector("NaN")),
    "inf": (200, _vector("+Inf")),
    "many": (200, _vector("1", "2", labels=True)),
    "matrix": (200, {"status": "success", "data": {"resultType": "matrix", "result": []}}),
    "broken(": (400, {"status": "error", "errorType": "bad_data",
                      "error": 'invalid parameter "query": 1:8: parse error: unclosed left '
                               "parenthesis"}),
}


async def _prometheus(request: web.Request) -> web.StreamResponse:
    query = request.query.get("query", "")
    if query == "html":
        return web.Response(status=502, text="<html>Bad Gateway</html>",
                            content_type="text/html")
    status, body = PROMETHEUS_ANSWERS[query]
    return web.json_response(body, status=status)


def _prom(query: str, address: str, **threshold: float) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": f"q-{query}",
                           "prometheus": {"address": address, "query": query}}
    if threshold:
        doc["thresholdRange"] = threshold
    return doc


def test_prometheus_provider() -> None:
    async def main() -> tuple[list[CheckResult], list[tuple[str, str, str]]]:
        async with serve({"/api/v1/query": _prometheus}) as srv:
            url = srv.url
            results = await run_checks([metric(d) for d in (
                _prom("good", url + "/", min=0.95), _prom("good", url, min=0.99),
                _prom("scalar", url, max=1), _prom("empty", url, min=0.95),
                _prom("nan", url, min=0.95), _prom("inf", url, max=1),
                _prom("many", url, min=0), _prom("matrix", url, min=0),
                _prom("broken(", url, min=0), _prom("html", url, min=0),
                _prom('sum(rate(x{a="b c"}[1m])) + 1 & 2; #?', url, max=3),
            )], TARGET, Telemetry(), 30)
            return results, list(srv.log)

    results, log = asyncio.run(main())
    assert [(r.verdict, r.value) for r in results] == [
        ("pass", 0.97), ("fail", 0.97), ("pass", 0.5), ("no-data", None), ("no-data", None),
        ("error", None), ("error", None), ("error", None), ("error", None), ("error", None),
        ("pass", 3.0)]  # the last one: a query with characters URLs treat specially
    good, bad, _, empty, nan, inf, many, matrix, broken, html, _ = results
    assert (good.threshold, good.requests, good.message) == (
        ">= 0.95", None, "q-good 0.97 (>= 0.95)")
    assert bad.message == "q-good 0.97 < 0.99"
    assert empty.message == "query returned no samples (empty vector)"
    assert "NaN" in nan.message and "+Inf" in inf.message
    assert many.message.startswith("query returned 2 samples, want one")
    assert '"pod": "p0"' in many.message
    assert "matrix" in matrix.message
    assert "HTTP 400, bad_data" in broken.message
    assert "unclosed left parenthesis" in broken.message
    assert "HTTP 502" in html.message and "Bad Gateway" in html.message
    # One GET per check (no retries), a trailing slash on the address tolerated.
    assert len(log) == 11
    assert all(m == "GET" and p == "/api/v1/query" for m, p, _ in log)


async def _json_api(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name == "slow":
        await asyncio.sleep(5)
    if name == "fail":
        return web.json_response({"error": "backend down"}, status=500)
    if name == "text":
        return web.Response(text="rate=0.97")
    return web.json_response({
        "value": 7, "text": "0.25", "none": None, "flag": True, "word": "high",
        "data": {"rate": 0.97, "nested": {"deep": [1, 2]}},
        "items": [{"x": 3}, {"x": 4.5}],
    })


def _http(name: str, url: str, path: str | None, **threshold: float) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name, "http": {"url": url, "timeout": "300ms"}}
    if path is not None:
        doc["http"]["jsonPath"] = path
    if threshold:
        doc["thresholdRange"] = threshold
    return doc


def test_http_provider() -> None:
    async def main() -> tuple[list[CheckResult], int, float]:
        async with serve({"/{name}": _json_api}) as srv:
            u = srv.url
            started = time.monotonic()
            results = await run_checks([metric(d) for d in (
                _http("value", f"{u}/ok", "value", max=10),
                _http("dotted", f"{u}/ok", "data.rate", min=0.95),
                _http("index", f"{u}/ok", "items.1.x", max=4),
                _http("argo-style", f"{u}/ok", "{$.items.0.x}", max=4),
                _http("string", f"{u}/ok", "text", max=1),
                _http("null", f"{u}/ok", "none", max=1),
                _http("missing", f"{u}/ok", "data.ratio", max=1),
                _http("bad-index", f"{u}/ok", "items.7.x", max=1),
                _http("object", f"{u}/ok", "data.nested", max=1),
                _http("bool", f"{u}/ok", "flag", max=1),
                _http("word", f"{u}/ok", "word", max=1),
                _http("status", f"{u}/fail", "value", max=1),
                _http("not-json", f"{u}/text", "value", max=1),
                _http("slow", f"{u}/slow", "value", max=1),
                _http("refused", f"http://127.0.0.1:{free_port()}/x", "value", max=1),
            )], TARGET, Telemetry(), 30)
            return results, len(srv.log), time.monotonic() - started

    results, requests, elapsed = asyncio.run(main())
    by = {r.name: r for r in results}
    assert [r.name for r in results][:3] == ["value", "dotted", "index"]  # declaration order
    assert (by["value"].verdict, by["value"].value, by["value"].message) == (
        "pass", 7.0, "value 7 (<= 10)")
    assert (by["dotted"].verdict, by["dotted"].value) == ("pass", 0.97)
    assert (by["index"].verdict, by["index"].message) == ("fail", "index 4.5 > 4")
    assert (by["argo-style"].verdict, by["argo-style"].value) == ("pass", 3.0)
    assert (by["string"].verdict, by["string"].value) == ("pass", 0.25)
    assert (by["null"].verdict, by["null"].message) == ("no-data", "jsonPath 'none' is null")
    assert by["missing"].verdict == "error"
    assert by["missing"].message == ("jsonPath 'data.ratio': no key 'ratio' in $.data "
                                     "(keys: nested, rate)")
    assert "list of 2" in by["bad-index"].message
    assert "not a number" in by["object"].message and "not a number" in by["bool"].message
    assert "'high', not a number" in by["word"].message
    assert by["status"].message.endswith('HTTP 500: {"error": "backend down"}')
    assert "not JSON" in by["not-json"].message and "rate=0.97" in by["not-json"].message
    assert by["slow"].message.endswith("/slow: timed out after 0.3s")
    assert by["refused"].message.startswith("GET http://127.0.0.1:")
    assert "ClientConnectorError" in by["refused"].message
    assert all(r.verdict == "error" for name, r in by.items() if name in {
        "missing", "bad-index", "object", "bool", "word", "status", "not-json", "slow",
        "refused"})
    assert all(r.requests is None for r in results)
    assert requests == 14  # one attempt each (the refused one never arrives)
    assert elapsed < 2.5  # concurrent, and the slow one cut at its 0.3 s timeout


def test_json_path() -> None:
    doc = {"a": {"b": [10, {"c": 5}]}, "v": 1}
    assert json_path_value(doc, "a.b.1.c") == 5
    assert json_path_value(doc, "$.a.b.0") == 10
    assert json_path_value(doc, "a.b.-1.c") == 5
    assert json_path_value(doc, "") is doc and json_path_value(doc, None) is doc
    assert json_path_value(3, None) == 3


def test_mixed_checks_keep_declaration_order_and_do_not_block_the_loop() -> None:
    """Built-ins and externals interleaved; the externals answer in reverse order; a
    ticker task keeps running meanwhile (nothing blocks the event loop)."""

    async def delayed(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(float(request.match_info["delay"]))
        return web.json_response({"value": 1})

    async def main() -> tuple[list[CheckResult], int]:
        t = Telemetry()
        t.record("v2", 100)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        async with serve({"/{delay}": delayed}) as srv:
            task = asyncio.create_task(ticker())
            results = await run_checks([metric(d) for d in (
                {"name": "slow", "http": {"url": f"{srv.url}/0.4", "jsonPath": "value"},
                 "thresholdRange": {"max": 1}},
                SUCCESS,
                {"name": "fast", "http": {"url": f"{srv.url}/0.05", "jsonPath": "value"},
                 "thresholdRange": {"max": 1}},
                DURATION,
            )], TARGET, t, 30)
            task.cancel()
            return results, ticks

    results, ticks = asyncio.run(main())
    assert [r.name for r in results] == ["slow", "request-success-rate", "fast",
                                         "request-duration"]
    assert [r.verdict for r in results] == ["pass"] * 4
    assert ticks >= 10  # ~40 expected in 0.4 s; a blocked loop would give 0-1
