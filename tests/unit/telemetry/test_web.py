"""The API routes: /metrics (Prometheus text) and the window query (JSON), with their
errors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from meshpilot.store import SqliteStore
from meshpilot.telemetry import TelemetryCollector
from meshpilot.telemetry.metrics import bucket_index
from meshpilot.web.app import create_app

WINDOW = "/apis/meshpilot.io/v1/telemetry/window"


def _fetch(tmp_path: Path, telemetry: TelemetryCollector | None,
           *requests: tuple[str, dict[str, str]]) -> list[tuple[int, str, Any]]:
    async def main() -> list[tuple[int, str, Any]]:
        with SqliteStore(tmp_path / "store.db") as store:
            app = create_app(store, telemetry=telemetry)
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                out = []
                for path, params in requests:
                    r = await client.get(path, params=params)
                    body = await (r.json() if r.content_type == "application/json"
                                  else r.text())
                    out.append((r.status, r.headers["Content-Type"], body))
                return out

    return asyncio.run(main())


def test_metrics_and_window(tmp_path: Path) -> None:
    collector = TelemetryCollector()
    key = ("destination", "reviews", "bookinfo", "v2")
    for code in (200, 200, 200, 503):
        collector.window.record(key, code, bucket_index(20))
    (m_status, m_type, m_body), (w_status, _, w_body) = _fetch(
        tmp_path, collector, ("/metrics", {}),
        (WINDOW, {"service": "reviews", "version": "v2", "seconds": "30", "quantile": "0.5"}))
    assert (m_status, m_type) == (200, "text/plain; version=0.0.4; charset=utf-8")
    assert "# TYPE istio_requests_total counter" in m_body
    assert w_status == 200
    assert w_body == {"service": "reviews", "namespace": None, "version": "v2",
                      "reporter": "destination", "seconds": 30, "requests": 4,
                      "errors5xx": 1, "successRate": 0.75, "quantile": 0.5,
                      "latencyMs": 17.5}  # (10, 25] bucket, rank 2 of 4: 10 + 15 * 2/4


def test_window_errors(tmp_path: Path) -> None:
    answers = _fetch(tmp_path, TelemetryCollector(), (WINDOW, {}),
                     (WINDOW, {"service": "a", "seconds": "x"}),
                     (WINDOW, {"service": "a", "quantile": "1.5"}),
                     (WINDOW, {"service": "a", "seconds": "601"}),
                     (WINDOW, {"service": "a", "reporter": "waypoint"}))
    assert [status for status, _, _ in answers] == [400] * 5
    assert "service" in answers[0][2]["message"]


def test_no_telemetry_is_404(tmp_path: Path) -> None:
    [(status, _, _)] = _fetch(tmp_path, None, ("/metrics", {}))
    assert status == 404
