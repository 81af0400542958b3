"""Canary checks against a real Prometheus that scrapes meshpilot's own /metrics.

One set of recorded requests feeds both sides: the collector's cumulative Istio series
(served at /metrics by the real web app and scraped by a real Prometheus) and its
per-second window (read by the built-in checks). The `prometheus` provider then asks
Prometheus the Flagger-style questions about the same requests, so this proves at once
that the provider speaks the real query API (vectors, scalars, empty results, errors)
and that the built-in success rate and latency quantile equal what PromQL computes from
the exported series. (The access-log path into the collector has its own e2e tests.)
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestServer

from meshpilot.api.canary import CanaryMetric
from meshpilot.rollout.analysis import AnalysisTarget, CheckResult, run_checks
from meshpilot.store import SqliteStore
from meshpilot.telemetry import TelemetryCollector
from meshpilot.telemetry.model import HTTP_LABELS, UNKNOWN
from meshpilot.web.app import create_app

from .prometheus import Prometheus, ScrapeJob, require_prometheus

pytestmark = pytest.mark.e2e

NS = "traffic-demo"
SERVICE = "sample-app"
TARGET = AnalysisTarget(service_name=SERVICE, service_namespace=NS, canary_version="v2",
                        stable_version="v1")


def record(collector: TelemetryCollector, version: str, n: int, *, code: int = 200,
           ms: float = 20) -> None:
    """`n` requests to `version`, as the collector's access-log path books them: one
    series increment and one window slot increment per request, same bucket."""
    labels = dict.fromkeys(HTTP_LABELS, UNKNOWN) | {
        "reporter": "destination", "destination_service_name": SERVICE,
        "destination_service_namespace": NS, "destination_version": version,
        "destination_service": f"{SERVICE}.{NS}.svc.cluster.local",
        "response_code": str(code), "request_protocol": "http",
    }
    series = collector.store.http_series(tuple(labels[name] for name in HTTP_LABELS))
    for _ in range(n):
        series.requests += 1
        bucket = series.duration.observe(ms)
        collector.window.record(("destination", SERVICE, NS, version), code, bucket)


SELECT = (f'reporter="destination",destination_service_name="{SERVICE}",'
          f'destination_service_namespace="{NS}",destination_version="v2"')
# Flagger's request-success-rate and request-duration, on cumulative counts (the series
# do not change during the test, so rate() would be 0/0).
SUCCESS_QUERY = (f'sum(istio_requests_total{{{SELECT},response_code!~"5.*"}}) / '
                 f"sum(istio_requests_total{{{SELECT}}}) * 100")
P95_QUERY = (f"histogram_quantile(0.95, sum by (le) "
             f"(istio_request_duration_milliseconds_bucket{{{SELECT}}}))")


def prom(name: str, address: str, query: str, **threshold: float) -> CanaryMetric:
    return CanaryMetric.model_validate({
        "name": name, "prometheus": {"address": address, "query": query, "timeout": "5s"},
        "thresholdRange": threshold})


def test_prometheus_provider_agrees_with_the_builtin_checks(tmp_path: Path) -> None:
    binary = require_prometheus()
    collector = TelemetryCollector()
    record(collector, "v2", 197)
    record(collector, "v2", 3, code=503)  # 98.5 % non-5xx
    record(collector, "v2", 100, ms=40)  # 100 more in (25, 50]
    record(collector, "v2", 100, code=404, ms=300)  # 4xx is a success; (250, 500]
    record(collector, "v1", 50)

    async def main() -> tuple[list[CheckResult], list[CheckResult]]:
        with SqliteStore(tmp_path / "store.db") as store:
            server = TestServer(create_app(store, telemetry=collector), host="127.0.0.1")
            await server.start_server()
            p = Prometheus(tmp_path / "prometheus",
                           [ScrapeJob("meshpilot", [f"127.0.0.1:{server.port}"])],
                           binary=binary)
            try:
                await asyncio.to_thread(p.start)
                await asyncio.to_thread(p.wait_for_series,
                                        f"istio_requests_total{{{SELECT}}}", count=3)
                builtin = await run_checks([
                    CanaryMetric.model_validate({"name": "request-success-rate",
                                                 "thresholdRange": {"min": 99.5}}),
                    CanaryMetric.model_validate({"name": "request-duration", "quantile": 0.95,
                                                 "thresholdRange": {"max": 250}}),
                ], TARGET, collector, 60)
                external = await run_checks([
                    prom("success", p.url, SUCCESS_QUERY, min=99.5),
                    prom("p95", p.url, P95_QUERY, max=250),
                    prom("scalar", p.url, f"scalar({SUCCESS_QUERY})", min=99),
                    prom("idle", p.url, SUCCESS_QUERY.replace('"v2"', '"v3"'), min=99),
                    prom("nan", p.url, "0 / 0", min=99),
                    prom("many", p.url, f'sum by (destination_version) '
                                        f'(istio_requests_total{{destination_service_name='
                                        f'"{SERVICE}"}})', min=0),
                    prom("typo", p.url, "sum(istio_requests_total", min=0),
                ], TARGET, collector, 60)
                return builtin, external
            finally:
                await asyncio.to_thread(p.stop)
                await server.close()

    (success, duration), external = asyncio.run(main())
    # 400 requests: 3 5xx -> 397/400; p95 rank 380 of 400 lands in (250, 500]: the 100
    # at 300 ms are ranks 301..400 -> 250 + 250 * 80/100 = 450.
    assert (success.verdict, success.value, success.requests) == ("fail", 99.25, 400)
    assert success.message == "success rate 99.25% < 99.5%"
    assert (duration.verdict, duration.value) == ("fail", pytest.approx(450))
    assert duration.message == "request duration 450ms > 250ms"

    by = {r.name: r for r in external}
    assert by["success"].value == pytest.approx(success.value)
    assert (by["success"].verdict, by["success"].message) == ("fail", "success 99.25 < 99.5")
    assert by["scalar"].value == pytest.approx(success.value)
    assert by["p95"].value == pytest.approx(duration.value)
    assert (by["p95"].verdict, by["p95"].message) == ("fail", "p95 450 > 250")
    assert (by["idle"].verdict, by["idle"].message) == (
        "no-data", "query returned no samples (empty vector)")
    assert by["nan"].verdict == "no-data"
    assert by["many"].verdict == "error"
    assert by["many"].message.startswith("query returned 2 samples, want one")
    assert by["typo"].verdict == "error" and "bad_data" in by["typo"].message
