"""`meshpilot query` answers the seed's and the dashboard's PromQL as a real Prometheus does.

One mesh (sample-app v1 and v2 behind sidecars, a client sidecar), one known mix sent
twice: a prewarm, then the measured mix (v2: 85 fast, 10 delayed 300 ms, 5 answered 503;
v1: 30 at 30 ms). A real Prometheus scrapes the control plane's /metrics every second while
the control plane's own history samples every 5 s; both are queried at one time T.

Why the answers can be compared exactly. `rate()` is the increase between a series' first
and last sample in the window, scaled by an extrapolation factor that depends only on the
sample times (and, for counters, on how close the first value is to zero). The two
systems sample at different times, so:

- every series the expressions read is born in the prewarm, between two history samples
  (the test waits for a sample boundary first) and before Prometheus starts, and holds
  the prewarm's values (equal to the mix's) in its first sample. Then, within each
  system, every series has the same sample times and the same factor, and the zero point
  never binds; ratios (success rates) and histogram_quantile (scale-free) are exact and
  identical in both systems and equal to the known mix;
- absolute rates differ between the systems by exactly their factors: each system's
  answer is asserted to equal mix / range * (its own factor, from its own sample times),
  to 1e-9 — the difference is explained, not tolerated;
- the evaluator itself is checked on Prometheus's own samples: the raw samples fetched
  from Prometheus, evaluated by meshpilot's engine, give Prometheus's answers to 1e-9;
- and the raw series are identical: every istio_* series, labels and value, at T.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshpilot.telemetry import grafana, promql
from meshpilot.telemetry.grafana import SEED_P95, SEED_SUCCESS_RATE
from meshpilot.telemetry.history import DEFAULT_INTERVAL

from ..unit.telemetry.promtext import parse
from .mesh import Mesh, ProxyClient, mesh, wait_for
from .prometheus import Prometheus, ScrapeJob, prometheus, require_prometheus

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).parents[2] / "examples" / "traffic-demo" / "base"
NS = "traffic-demo"
HEADER = {"x-query-check": "v2"}
VS = {
    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "sample-app-query-check", "namespace": NS},
    "spec": {"hosts": ["sample-app"], "http": [
        {"match": [{"headers": {"x-query-check": {"exact": "v2"}}}],
         "route": [{"destination": {"host": "sample-app", "subset": "v2"}}]},
        {"route": [{"destination": {"host": "sample-app", "subset": "v1"}}]}]},
}
V2_FAST, V2_SLOW, V2_503, V1_SLOW = 85, 10, 5, 30
REPORTERS = 2  # the client's sidecar (source) and the server's (destination)
INTERVAL = DEFAULT_INTERVAL


def _one(port: int, path: str, headers: dict[str, str]) -> int:
    client = ProxyClient(port)
    try:
        return client.get("http://sample-app" + path, headers)[0]
    finally:
        client.close()


def send_mix(port: int) -> None:
    """The known mix, in about a second: the slow requests in parallel. v1's requests take
    30 ms, so its latency buckets are all-or-nothing (below 25 ms none, from 50 ms all)
    and its quantiles stay scale-free even where few requests fall (1-2 ms buckets of
    fast requests vary between two mixes)."""
    client = ProxyClient(port)
    with ThreadPoolExecutor(V2_SLOW) as pool:
        slow = [pool.submit(_one, port, "/delay/300", HEADER) for _ in range(V2_SLOW)]
        slow += [pool.submit(_one, port, "/delay/30", {}) for _ in range(V1_SLOW)]
        codes = Counter(client.get("http://sample-app/", HEADER)[0] for _ in range(V2_FAST))
        codes += Counter(client.get("http://sample-app/status/503", HEADER)[0]
                         for _ in range(V2_503))
        codes += Counter(f.result() for f in slow)
    client.close()
    assert codes == {200: V2_FAST + V2_SLOW + V1_SLOW, 503: V2_503}, codes


def exposed(m: Mesh) -> list[Any]:
    with urllib.request.urlopen(m.server + "/metrics", timeout=5) as r:
        return [s for s in parse(r.read().decode())[1]
                if s.label_dict.get("destination_service_name") == "sample-app"]


def requests_by_version(m: Mesh) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in exposed(m):
        if s.name == "istio_requests_total":
            version = s.label_dict["destination_version"]
            out[version] = out.get(version, 0) + s.value
    return out


def v2_buckets(m: Mesh) -> dict[float, float]:
    out: dict[float, float] = {}
    for s in exposed(m):
        if (s.name == "istio_request_duration_milliseconds_bucket"
                and s.label_dict["destination_version"] == "v2"):
            le = float(s.label_dict["le"])
            out[le] = out.get(le, 0.0) + s.value
    return out


def wait_settled(m: Mesh, rounds: int) -> None:
    """Every request of `rounds` mixes has reached the collector (both reporters)."""
    want = {"v1": rounds * REPORTERS * V1_SLOW,
            "v2": rounds * REPORTERS * (V2_FAST + V2_SLOW + V2_503)}
    wait_for(lambda: requests_by_version(m) == want, 15)


def next_boundary(after: float) -> float:
    return (math.floor(after / INTERVAL) + 1) * INTERVAL


def sleep_past_boundary(margin: float = 0.5) -> float:
    """Sleep until `margin` after the history's next sample time; returns that time."""
    boundary = next_boundary(time.time())
    time.sleep(boundary + margin - time.time())
    return boundary


def api(m: Mesh, expr: str, at: str) -> dict[str, Any]:
    """The control plane's /api/v1/query `data` (what `meshpilot query -o json` prints)."""
    url = m.server + "/api/v1/query?" + urllib.parse.urlencode({"query": expr, "time": at})
    with urllib.request.urlopen(url, timeout=10) as r:
        body = json.loads(r.read())
    assert body["status"] == "success", body
    return body["data"]


def values(result: list[dict[str, Any]], by: str = "") -> dict[str, float]:
    return {s.get("metric", {}).get(by, ""): float(s["value"][1]) for s in result}


def factor(times_ms: list[int], at_ms: int, range_ms: int) -> float:
    """rate()'s extrapolation factor for samples at `times_ms` when the zero point does not
    bind (promql.extrapolated_rate's arithmetic, written out for this one case)."""
    first, last = times_ms[0], times_ms[-1]
    sampled = (last - first) / 1000
    average = sampled / (len(times_ms) - 1)
    to_start, to_end = (first - (at_ms - range_ms)) / 1000, (at_ms - last) / 1000
    if to_start >= average * 1.1:
        to_start = average / 2
    if to_end >= average * 1.1:
        to_end = average / 2
    return (sampled + to_start + to_end) / sampled


@dataclass
class Run:
    mesh: Mesh
    prom: Prometheus
    at: str  # the evaluation time, Unix seconds with millisecond precision
    at_ms: int
    prewarm: dict[str, float]  # /metrics requests by version after the prewarm
    p95: float  # histogram_quantile over the mix's own v2 buckets
    prewarm_boundary: float  # the history sample just before the prewarm


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    require_prometheus()
    root = tmp_path_factory.mktemp("mesh-query")
    with mesh(root) as m:
        m.start_control_plane()
        m.apply(EXAMPLES / "10-sample-app-service.yaml", EXAMPLES / "20-sample-app-subsets.yaml")
        applied = m.run("apply", "-f", "-", stdin=yaml.safe_dump(VS))
        assert applied.returncode == 0, applied.stderr
        for version in ("v1", "v2"):
            m.workload(f"sample-app-{version}", NS, f"app=sample-app,version={version}",
                       version)
        port = m.client("test-client", NS)
        # No mesh traffic so far: every series is born in the prewarm, between two
        # history samples.
        boundary = sleep_past_boundary()
        send_mix(port)
        wait_settled(m, 1)
        late = time.time() - (boundary + INTERVAL)
        assert late < 0, (f"the prewarm ended {late:.1f}s after the next history sample "
                          "(machine too slow for this test's timing)")
        prewarm = requests_by_version(m)
        job = ScrapeJob("meshpilot", [f"127.0.0.1:{m.api_port}"])
        with prometheus(root / "prometheus", [job]) as prom:
            prom.wait_for_series('sum(istio_requests_total{destination_service_name='
                                 '"sample-app"})', timeout=20,
                                 check=lambda r: float(r[0]["value"][1]) == sum(prewarm.values()))
            sleep_past_boundary()  # the history has the prewarm's values too
            before = v2_buckets(m)
            send_mix(port)
            wait_settled(m, 2)
            after = v2_buckets(m)
            total = sum(requests_by_version(m).values())
            prom.wait_for_series('sum(istio_requests_total{destination_service_name='
                                 '"sample-app"})', timeout=20,
                                 check=lambda r: float(r[0]["value"][1]) == total)
            sleep_past_boundary()  # ... and the mix's
            at_ms = round(time.time() * 1000)
            mix = {le: after[le] - before.get(le, 0.0) for le in after}
            p95 = promql.bucket_quantile(0.95, list(mix.items()))
            yield Run(m, prom, f"{at_ms / 1000:.3f}", at_ms, prewarm, p95, boundary)


def test_every_series_is_born_in_one_history_sample(run: Run) -> None:
    """The premise of the exact comparisons: each series' first sample in the history is
    the first one after the prewarm, holding the prewarm's counts."""
    data = api(run.mesh, 'istio_requests_total{destination_service_name="sample-app"}[5m]',
               run.at)
    # v1: code 200; v2: 200 and 503; each from both reporters.
    assert data["resultType"] == "matrix" and len(data["result"]) == 3 * REPORTERS
    firsts = {s["values"][0][0] for s in data["result"]}
    assert len(firsts) == 1, data["result"]
    [first] = firsts
    assert run.prewarm_boundary < first < run.prewarm_boundary + INTERVAL + 1
    by_version: dict[str, float] = {}
    for s in data["result"]:
        version = s["metric"]["destination_version"]
        by_version[version] = by_version.get(version, 0) + float(s["values"][0][1])
    assert by_version == run.prewarm


def test_seed_queries_give_the_known_mix_and_prometheus_s_answers(run: Run) -> None:
    m, prom = run.mesh, run.prom
    out = m.run("query", SEED_SUCCESS_RATE, "--time", run.at, "-o", "json")
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout)
    assert body["status"] == "success" and body["data"]["resultType"] == "vector"
    [ours] = body["data"]["result"]
    assert ours["metric"] == {} and ours["value"][0] == pytest.approx(run.at_ms / 1000)
    [theirs] = prom.query(SEED_SUCCESS_RATE, at=run.at_ms / 1000)
    assert float(ours["value"][1]) == pytest.approx(0.95, abs=1e-9)
    assert float(ours["value"][1]) == pytest.approx(float(theirs["value"][1]), rel=1e-9)

    assert 250 < run.p95 <= 500
    [ours] = api(m, SEED_P95, run.at)["result"]
    [theirs] = prom.query(SEED_P95, at=run.at_ms / 1000)
    assert float(ours["value"][1]) == pytest.approx(run.p95, rel=1e-9)
    assert float(ours["value"][1]) == pytest.approx(float(theirs["value"][1]), rel=1e-9)

    # Without --time: evaluated now, with a sample taken at query time; still exact. The
    # table of a label-less result is the bare value (the seed greps the first number).
    out = m.run("query", SEED_SUCCESS_RATE)
    assert out.returncode == 0, out.stderr
    header, value = out.stdout.splitlines()
    assert header == "VALUE" and float(value) == pytest.approx(0.95, abs=1e-9)


def _dashboard(title: str, ref: int = 0) -> str:
    panels = {p["title"]: p for p in grafana.dashboard()["panels"]}
    expr = panels[title]["targets"][ref]["expr"]
    return grafana.render(expr, {"namespace": NS, "service": "sample-app"})


SCALE_FREE = [  # (panel, target): ratios and quantiles, exact in both systems
    ("Success Rate (non-5xx)", 0),
    ("Success Rate by Version (non-5xx)", 0),
    ("P95 Request Duration", 0),
    ("Request Duration by Version", 2),  # P95
    ("Request Duration by Version", 3),  # P99
]


@pytest.mark.parametrize("title, ref", SCALE_FREE)
def test_dashboard_ratios_and_quantiles_equal_prometheus_s(run: Run, title: str,
                                                           ref: int) -> None:
    expr = _dashboard(title, ref)
    ours = values(api(run.mesh, expr, run.at)["result"], "destination_version")
    theirs = values(run.prom.query(expr, at=run.at_ms / 1000), "destination_version")
    assert ours.keys() == theirs.keys() and ours, (ours, theirs)
    for key, value in ours.items():
        assert value == pytest.approx(theirs[key], rel=1e-9), (key, ours, theirs)
    if title == "Success Rate by Version (non-5xx)":
        assert ours == {"v1": 1.0, "v2": pytest.approx(0.95, abs=1e-9)}
    if title == "Success Rate (non-5xx)":
        mix = V1_SLOW + V2_FAST + V2_SLOW
        assert ours[""] == pytest.approx(mix / (mix + V2_503), abs=1e-9)


def _sample_times(result: list[dict[str, Any]]) -> list[int]:
    times = {tuple(round(float(t) * 1000) for t, _ in s["values"]) for s in result}
    assert len(times) == 1, "series sampled at different times"
    return list(times.pop())


def test_absolute_rates_differ_only_by_each_system_s_sampling(run: Run) -> None:
    """The seed's "Request Rate by Version": in each system exactly the mix over 5 min,
    times the extrapolation factor of that system's own sample times."""
    selector = 'istio_requests_total{destination_service_name="sample-app"}[5m]'
    ours_times = _sample_times(api(run.mesh, selector, run.at)["result"])
    prom_times = _sample_times(run.prom.query(selector, at=run.at_ms / 1000))
    mix = {"v1": REPORTERS * V1_SLOW, "v2": REPORTERS * (V2_FAST + V2_SLOW + V2_503)}
    expr = grafana.SEED_RATE_BY_VERSION
    ours = values(api(run.mesh, expr, run.at)["result"], "destination_version")
    theirs = values(run.prom.query(expr, at=run.at_ms / 1000), "destination_version")
    for version, count in mix.items():
        assert ours[version] == pytest.approx(
            count / 300 * factor(ours_times, run.at_ms, 300_000), rel=1e-9)
        assert theirs[version] == pytest.approx(
            count / 300 * factor(prom_times, run.at_ms, 300_000), rel=1e-9)


def test_raw_series_are_identical(run: Run) -> None:
    """Every istio_* series the control plane holds at T is what Prometheus scraped:
    same names, labels (empty ones absent, `le` spelt alike) and values."""
    expr = '{__name__=~"istio_.*"}'
    ours = {(tuple(sorted(s["metric"].items())), s["value"][1])
            for s in api(run.mesh, expr, run.at)["result"]}
    theirs = {(tuple(sorted((k, v) for k, v in s["metric"].items()
                            if k not in ("job", "instance"))), s["value"][1])
              for s in run.prom.query(expr, at=run.at_ms / 1000)}
    assert len(ours) > 100
    assert ours == theirs


def test_the_engine_on_prometheus_s_samples_gives_prometheus_s_answers(run: Run) -> None:
    """Absolute values too, once both evaluate the same samples."""
    raw = run.prom.query('{__name__=~"istio_requests_total|istio_request_duration_'
                         'milliseconds_bucket"}[10m]', at=run.at_ms / 1000)
    store = promql.SeriesStore([(s["metric"], [(round(float(t) * 1000), float(v))
                                               for t, v in s["values"]]) for s in raw])
    exprs = [SEED_SUCCESS_RATE, SEED_P95, grafana.SEED_RATE_BY_VERSION,
             _dashboard("Request Volume"), _dashboard("5xx Responses"),
             *(_dashboard(title, ref) for title, ref in SCALE_FREE)]
    for expr in exprs:
        result = promql.evaluate(expr, store, run.at_ms)
        assert isinstance(result.value, promql.Vector), expr
        ours = {s.labels: s.value for s in result.value.samples}
        theirs = {promql.labels_of(s["metric"]): float(s["value"][1])
                  for s in run.prom.query(expr, at=run.at_ms / 1000)}
        assert ours.keys() == theirs.keys() and ours, (expr, ours, theirs)
        for key, value in ours.items():
            assert value == pytest.approx(theirs[key], rel=1e-9), (expr, key, value,
                                                                   theirs[key])


def test_cli_table_and_errors(run: Run) -> None:
    m = run.mesh
    out = m.run("query", grafana.SEED_RATE_BY_VERSION, "--time", run.at)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["DESTINATION_VERSION", "VALUE"]
    assert [line.split()[0] for line in lines[1:]] == ["v1", "v2"]
    bad = m.run("query", "sum(rate(istio_requests_total[5m:1m]))")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: bad_data: invalid parameter \"query\": 1:30: a "
                                 "subquery ([5m:1m]) is not supported"), bad.stderr
