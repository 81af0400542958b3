"""The control plane's sample history: what it records, what it shares, what it forgets,
and the Prometheus-shaped answers of its query API."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest

from meshpilot.telemetry import promql
from meshpilot.telemetry.collector import TelemetryCollector
from meshpilot.telemetry.history import (
    HTTP_COLUMNS,
    METRIC_NAMES,
    MetricHistory,
    parse_time,
)
from meshpilot.telemetry.metrics import MetricStore
from meshpilot.telemetry.model import HTTP_LABELS, TCP_LABELS
from meshpilot.telemetry.prometheus import render

from .promtext import parse as parse_exposition


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def http_key(version: str, code: str = "200") -> tuple[str, ...]:
    values = dict.fromkeys(HTTP_LABELS, "unknown")
    values.update(reporter="destination", destination_service_name="sample-app",
                  destination_version=version, response_code=code, grpc_response_status="",
                  response_flags="-")
    return tuple(values[n] for n in HTTP_LABELS)


def tcp_key() -> tuple[str, ...]:
    return tuple("tcp-echo" if n == "destination_service_name" else "x" for n in TCP_LABELS)


def requests(store: MetricStore, version: str, n: int, ms: float = 3,
             code: str = "200") -> None:
    series = store.http_series(http_key(version, code))
    for _ in range(n):
        series.requests += 1
        series.duration.observe(ms)
        series.request_bytes.observe(100)
        series.response_bytes.observe(200)


def test_history_holds_every_istio_series_with_prometheus_labels() -> None:
    store, clock = MetricStore(), Clock()
    history = MetricHistory(store, clock=clock)
    requests(store, "v1", 3, ms=7)
    conn = store.tcp_series(tcp_key())
    conn.opened, conn.sent_bytes = 2, 512
    history.sample()
    at = round(clock.now * 1000)
    result = promql.evaluate('{__name__=~"istio_.*"}', history.storage(fresh=False), at)
    assert isinstance(result.value, promql.Vector)
    by_name: dict[str, list[promql.Sample]] = {}
    for s in result.value.samples:
        by_name.setdefault(promql.get_label(s.labels, "__name__"), []).append(s)
    assert set(by_name) == METRIC_NAMES
    assert len(result.value.samples) == len(HTTP_COLUMNS) + 4
    [total] = by_name["istio_requests_total"]
    assert total.value == 3
    labels = dict(total.labels)
    assert "grpc_response_status" not in labels  # empty: absent, as in Prometheus
    assert labels["destination_version"] == "v1" and labels["response_flags"] == "-"
    buckets = {promql.get_label(s.labels, "le"): s.value
               for s in by_name["istio_request_duration_milliseconds_bucket"]}
    assert buckets["5"] == 0 and buckets["10"] == 3 and buckets["+Inf"] == 3
    assert buckets["0.5"] == 0 and len(buckets) == 20
    [total_sum] = by_name["istio_request_duration_milliseconds_sum"]
    assert total_sum.value == 21
    [opened] = by_name["istio_tcp_connections_opened_total"]
    assert opened.value == 2


def test_history_matches_the_metrics_exposition_exactly() -> None:
    """What Prometheus would store from /metrics is what the history stores: same series,
    same labels (empty ones dropped), same `le` spelling, same values."""
    collector = TelemetryCollector()
    store = collector.store
    requests(store, "v1", 5, ms=0.2)
    requests(store, "v2", 2, ms=300, code="503")
    store.tcp_series(tcp_key()).closed = 4
    history = collector.history
    history.sample()
    _types, samples = parse_exposition(render(collector))
    exposed = {(s.name, promql.labels_of(s.label_dict)): s.value for s in samples
               if s.name.startswith("istio_")}
    now = round(history.scrapes[-1].t)
    value = promql.evaluate('{__name__=~"istio_.*"}', history.storage(fresh=False), now).value
    assert isinstance(value, promql.Vector)
    held = {(promql.get_label(s.labels, "__name__"), promql._drop_name(s.labels)): s.value
            for s in value.samples}
    assert held == exposed


def test_idle_rows_share_their_array_and_old_samples_are_dropped() -> None:
    store, clock = MetricStore(), Clock()
    history = MetricHistory(store, retention=60, clock=clock)
    requests(store, "v1", 1)
    requests(store, "v2", 1)
    first = history.sample()
    clock.now += 5
    requests(store, "v2", 1)
    second = history.sample()
    assert second.http[http_key("v1")] is first.http[http_key("v1")]
    assert second.http[http_key("v2")] is not first.http[http_key("v2")]
    for _ in range(20):
        clock.now += 5
        history.sample()
    times = [s.t for s in history.scrapes]
    assert times[-1] - times[0] == 60_000 and len(times) == 13
    stats = history.stats()
    assert stats["scrapes"] == 13 and stats["label_sets"] == 2
    assert stats["series"] == 2 * len(HTTP_COLUMNS)
    # Only 2 distinct arrays behind 26 slots.
    assert stats["slots"] == 26 and stats["bytes"] < 13 * 1000 + 2 * 1000


def test_a_query_for_now_sees_a_sample_taken_at_query_time() -> None:
    store, clock = MetricStore(), Clock()
    history = MetricHistory(store, clock=clock)
    history.sample()
    requests(store, "v1", 4)
    clock.now += 2
    result = history.query('sum(istio_requests_total{destination_version="v1"})')
    assert [s.value for s in result.value.samples] == [4]  # type: ignore[union-attr]
    assert len(history.scrapes) == 1  # not stored
    clock.now += 3
    history.sample()
    requests(store, "v1", 6)
    clock.now += 5
    history.sample()
    rate = history.query('sum(rate(istio_requests_total[1m]))')
    # The series has samples at +5 (4) and +10 (10); the query-time sample would be at
    # +10 as well, so none is added. Increase 6; the window starts 55 s before the first
    # sample: extrapolate half an interval (2.5 s; the zero point, 5 * 4/6 s, is farther);
    # no gap at the end: 6 * (5 + 2.5) / 5 / 60 s = 0.15/s.
    assert [s.value for s in rate.value.samples] == [pytest.approx(0.15)]  # type: ignore[union-attr]


def test_sampler_runs_on_wall_clock_multiples_of_the_interval() -> None:
    store = MetricStore()
    history = MetricHistory(store)

    async def scenario() -> list[int]:
        history.start(0.1)
        await asyncio.sleep(0.45)
        await history.stop()
        return [s.t for s in history.scrapes]

    times = asyncio.run(scenario())
    assert len(times) >= 3
    for t in times[1:]:
        assert t % 100 < 60, times  # just after a multiple of 100 ms (scheduling latency)
    with pytest.raises(ValueError):
        asyncio.run(_start_with(history, 0))


async def _start_with(history: MetricHistory, interval: float) -> None:
    history.start(interval)


def api(history: MetricHistory, **params: str) -> tuple[int, dict]:
    return asyncio.run(history.api_query(params))


def test_api_answers_like_prometheus() -> None:
    store, clock = MetricStore(), Clock()
    history = MetricHistory(store, clock=clock)
    requests(store, "v1", 3)
    history.sample()
    status, body = api(history, query="sum by (destination_version) (istio_requests_total)",
                       time=str(clock.now))
    assert status == 200
    assert body == {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"destination_version": "v1"}, "value": [1_700_000_000, "3"]}]}}
    status, body = api(history, query="1 + 1")
    assert status == 200 and body["data"]["resultType"] == "scalar"
    assert body["data"]["result"] == [1_700_000_000, "2"]
    status, body = api(history, query="envoy_cluster_upstream_rq_pending_overflow")
    assert status == 200 and body["data"]["result"] == [] and "Envoy" in body["warnings"][0]


@pytest.mark.parametrize("params, status, error_type, message", [
    ({"query": "sum("}, 400, "bad_data", 'invalid parameter "query": 1:5: parse error'),
    ({}, 400, "bad_data", "no expression found in input"),
    ({"query": "x[5m:1m]"}, 400, "bad_data", "subquery ([5m:1m]) is not supported"),
    ({"query": "1", "time": "yesterday"}, 400, "bad_data", 'invalid parameter "time"'),
    ({"query": 'istio_requests_total / on(destination_version) '
               'istio_request_duration_milliseconds_count'}, 422, "execution",
     "many-to-many matching not allowed"),
])
def test_api_errors_like_prometheus(params: dict[str, str], status: int, error_type: str,
                                    message: str) -> None:
    store = MetricStore()
    requests(store, "v1", 1, code="200")
    requests(store, "v1", 1, code="503")
    history = MetricHistory(store)
    history.sample()
    got_status, body = api(history, **params)
    assert got_status == status
    assert body["status"] == "error" and body["errorType"] == error_type
    assert message in body["error"], body


def test_time_parameter_formats() -> None:
    assert parse_time("1700000000") == 1_700_000_000_000
    assert parse_time("1700000000.1234") == 1_700_000_000_123
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert parse_time("2023-11-14T23:13:20.5+01:00") == 1_700_000_000_500
    for bad in ("now", "2023-11-14T22:13:20", "inf"):
        with pytest.raises(promql.PromQLError):
            parse_time(bad)
    assert not math.isnan(parse_time("0"))


def test_the_route_answers_get_and_form_post(tmp_path: Path) -> None:
    """Grafana's Prometheus data source POSTs forms by default; and /api/v1/query must
    not fall into the Kubernetes-style /api/{version}/{plural} list route."""
    from aiohttp.test_utils import TestClient, TestServer

    from meshpilot.store import SqliteStore
    from meshpilot.web.app import create_app

    collector = TelemetryCollector()
    requests(collector.store, "v1", 2)

    async def main() -> list[tuple[int, dict]]:
        with SqliteStore(tmp_path / "store.db") as store:
            app = create_app(store, telemetry=collector)
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                out = []
                for method, kw in (("GET", {"params": {"query": "sum(istio_requests_total)"}}),
                                   ("POST", {"data": {"query": "sum(istio_requests_total)"}}),
                                   ("GET", {"params": {"query": "sum("}})):
                    r = await client.request(method, "/api/v1/query", **kw)
                    out.append((r.status, await r.json()))
                return out

    (s1, get), (s2, post), (s3, bad) = asyncio.run(main())
    assert s1 == s2 == 200
    assert get["data"]["result"][0]["value"][1] == post["data"]["result"][0]["value"][1] == "2"
    assert s3 == 400 and bad["errorType"] == "bad_data"
