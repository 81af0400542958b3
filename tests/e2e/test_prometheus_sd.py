"""A real Prometheus finds every proxy through HTTP service discovery and scrapes its Envoy.

The mesh runs as users run it (control plane, two versions of sample-app behind
sidecars, a client sidecar); the SD document comes from the control plane's
`/apis/meshpilot.io/v1/prometheus/targets`, and the control plane's `/metrics` is the
second job, as in examples/prometheus/prometheus.yml. The seed's own PromQL (the canary
script's success rate and p95) is evaluated by this real Prometheus on a known mix.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from meshpilot.telemetry import grafana
from meshpilot.telemetry.grafana import CLUSTER_LABEL, SEED_P95, SEED_SUCCESS_RATE

from ..unit.telemetry.promtext import Sample, parse
from .mesh import Mesh, ProxyClient, mesh, wait_for
from .prometheus import (
    Prometheus,
    ScrapeJob,
    find_promtool,
    prometheus,
    require_prometheus,
)

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).parents[2] / "examples" / "traffic-demo" / "base"
EXAMPLE_CONFIG = Path(__file__).parents[2] / "examples" / "prometheus" / "prometheus.yml"
SD_PATH = "/apis/meshpilot.io/v1/prometheus/targets"
NS = "traffic-demo"
# pod -> (app, version) of every proxy the fixture starts; None: no such label.
PROXIES = {"sample-app-v1": ("sample-app", "v1"), "sample-app-v2": ("sample-app", "v2"),
           "test-client": ("test-client", None)}
MESH_CLUSTER = "outbound|80||sample-app.traffic-demo.svc.cluster.local"


def _get_json(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


@dataclass
class Scraped:
    mesh: Mesh
    prom: Prometheus
    sd_url: str
    client: ProxyClient


@pytest.fixture(scope="module")
def scraped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scraped]:
    require_prometheus()
    root = tmp_path_factory.mktemp("mesh-prometheus")
    with mesh(root) as m:
        m.start_control_plane()
        m.apply(EXAMPLES / "10-sample-app-service.yaml", EXAMPLES / "20-sample-app-subsets.yaml")
        for pod, (app, version) in PROXIES.items():
            if pod != "test-client":
                m.workload(pod, NS, f"app={app},version={version}", str(version))
        client = ProxyClient(m.client("test-client", NS))
        try:
            # Traffic through the client creates its outbound cluster's stats (deferred).
            seen = client.versions("http://sample-app/", 20)
            assert {status for status, _, _ in seen} == {200}, seen
            url = m.server + SD_PATH
            # The two jobs of examples/prometheus/prometheus.yml, at this mesh's addresses.
            jobs = [ScrapeJob("envoy-stats", http_sd_url=url),
                    ScrapeJob("meshpilot", [f"127.0.0.1:{m.api_port}"])]
            with prometheus(root / "prometheus", jobs) as prom:
                yield Scraped(m, prom, url, client)
        finally:
            client.close()


def test_sd_document_lists_every_proxy(scraped: Scraped) -> None:
    groups = _get_json(scraped.sd_url)
    assert isinstance(groups, list)
    by_pod = {g["labels"]["pod"]: g for g in groups}
    assert set(by_pod) == set(PROXIES)
    for pod, group in by_pod.items():
        admin = scraped.mesh.admin_port(pod, NS)
        assert group["targets"] == [f"127.0.0.1:{admin}"]
        assert group["labels"]["__metrics_path__"] == "/stats/prometheus"
        assert group["labels"]["proxy_type"] == "sidecar"


def test_prometheus_scrapes_one_live_envoy_per_proxy_with_its_labels(scraped: Scraped) -> None:
    series = scraped.prom.wait_for_series('envoy_server_live{job="envoy-stats"}',
                                          count=len(PROXIES), timeout=25)
    by_pod = {s["metric"]["pod"]: s for s in series}
    assert set(by_pod) == set(PROXIES) and len(series) == len(PROXIES)
    for pod, (app, version) in PROXIES.items():
        labels = by_pod[pod]["metric"]
        assert labels["namespace"] == NS
        assert labels.get("app") == app
        assert labels.get("version") == version
        assert labels["proxy_type"] == "sidecar"
        assert labels["instance"] == f"127.0.0.1:{scraped.mesh.admin_port(pod, NS)}"
        assert by_pod[pod]["value"][1] == "1"
    health = {t["labels"]["pod"]: t["health"] for t in scraped.prom.targets()
              if t["labels"]["job"] == "envoy-stats"}
    assert health == dict.fromkeys(PROXIES, "up")


def client_overflow_series(scraped: Scraped) -> list[dict]:
    """The client's pending-overflow counters; traffic went through it before Prometheus
    started, so its first scrape already holds every cluster's series."""
    return scraped.prom.wait_for_series(
        'envoy_cluster_upstream_rq_pending_overflow{pod="test-client"}', timeout=25)


def test_pending_overflow_counter_is_scraped_with_a_cluster_label(scraped: Scraped) -> None:
    """The seed's "Circuit Breaker Status" metric is there, tagged by cluster with
    Istio's label name (the bootstrap replaces Envoy's default tags with Istio's)."""
    series = client_overflow_series(scraped)
    assert series and all(CLUSTER_LABEL in s["metric"] for s in series), series


def test_mesh_cluster_stats_carry_the_full_cluster_name(scraped: Scraped) -> None:
    names = {s["metric"].get(CLUSTER_LABEL) for s in client_overflow_series(scraped)}
    assert MESH_CLUSTER in names, names


def test_dashboard_panels_show_both_versions_from_both_jobs(scraped: Scraped) -> None:
    """The whole monitoring path: istio_* from the control plane's /metrics and Envoy stats
    through SD, queried with the dashboard's own expressions as Grafana would send them."""
    prom = scraped.prom
    prom.wait_for_series('istio_requests_total{job="meshpilot", reporter="destination"}',
                         count=2, timeout=25)
    for _ in range(40):  # fresh traffic after the first scrape, so rates are not zero
        status, _, _ = scraped.client.get("http://sample-app/")
        assert status == 200

    def both_versions_positive(result: list[dict]) -> bool:
        rates = {s["metric"].get("destination_version"): float(s["value"][1]) for s in result}
        return {"v1", "v2"} <= set(rates) and all(rates[v] > 0 for v in ("v1", "v2"))

    # The seed's "Request Rate by Version", verbatim.
    prom.wait_for_series(grafana.SEED_RATE_BY_VERSION, count=2, timeout=25,
                         check=both_versions_positive)
    selected = {"namespace": NS, "service": "sample-app"}
    board = {p["title"]: p for p in grafana.dashboard()["panels"]}
    success = grafana.render(board["Success Rate by Version (non-5xx)"]["targets"][0]["expr"],
                             selected)
    result = prom.wait_for_series(success, count=2, timeout=10, check=both_versions_positive)
    assert {float(s["value"][1]) for s in result} == {1.0}
    latency = grafana.render(board["Request Duration by Version"]["targets"][3]["expr"],
                             selected)  # P99
    assert len(prom.wait_for_series(latency, count=2, timeout=10)) == 2


def test_documented_scrape_config_is_valid_and_uses_these_endpoints() -> None:
    """examples/prometheus/prometheus.yml: promtool accepts it, and its jobs point at the
    control plane's /metrics and at the SD route tested above."""
    config = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    assert jobs["meshpilot"]["static_configs"][0]["targets"] == ["127.0.0.1:15014"]
    assert jobs["meshpilot"].get("metrics_path", "/metrics") == "/metrics"
    assert jobs["envoy-stats"]["http_sd_configs"][0]["url"] == "http://127.0.0.1:15014" + SD_PATH
    promtool = find_promtool()
    if promtool is None:
        pytest.skip("no promtool (run tools/fetch-prometheus)")
    check = subprocess.run([str(promtool), "check", "config", str(EXAMPLE_CONFIG)],
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


CANARY_HEADER = {"x-seed-check": "v2"}
CANARY_VS = {
    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "sample-app-seed-check", "namespace": NS},
    "spec": {"hosts": ["sample-app"], "http": [
        {"match": [{"headers": {"x-seed-check": {"exact": "v2"}}}],
         "route": [{"destination": {"host": "sample-app", "subset": "v2"}}]},
        {"route": [{"destination": {"host": "sample-app"}}]}]},
}


def _v2_samples(m: Mesh) -> list[Sample]:
    with urllib.request.urlopen(m.server + "/metrics", timeout=5) as r:
        _types, samples = parse(r.read().decode())
    return [s for s in samples if s.label_dict.get("destination_service_name") == "sample-app"
            and s.label_dict.get("destination_version") == "v2"]


def _v2_requests(m: Mesh, code: str | None = None) -> float:
    return sum(s.value for s in _v2_samples(m) if s.name == "istio_requests_total"
               and (code is None or s.label_dict["response_code"] == code))


def _v2_buckets(m: Mesh) -> dict[float, float]:
    out: dict[float, float] = {}
    for s in _v2_samples(m):
        if s.name == "istio_request_duration_milliseconds_bucket":
            le = float(s.label_dict["le"])
            out[le] = out.get(le, 0.0) + s.value
    return out


def _histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus's histogram_quantile on cumulative bucket counts (upper bound -> count)."""
    bounds = sorted(buckets)
    rank = q * buckets[float("inf")]
    lower, below = 0.0, 0.0
    for le in bounds:
        if buckets[le] >= rank:
            if le == float("inf"):
                return lower
            return lower + (le - lower) * (rank - below) / (buckets[le] - below)
        lower, below = le, buckets[le]
    raise AssertionError(buckets)


def test_seed_promql_gives_the_exact_success_rate_and_p95(
    scraped: Scraped, tmp_path: Path,
) -> None:
    """The seed's two canary queries, on a real Prometheus scraping /metrics: 100 requests
    to v2 (85 fast, 10 delayed 300 ms, 5 answered 503) give success rate 0.95 and the p95
    histogram_quantile computes from exactly these requests' buckets (in (250, 500] ms).

    Every series exists before this Prometheus's first scrape, and holds at least as many
    requests as the mix then adds to it: rate() then extrapolates every series by the same
    half interval (Prometheus shortens it only for a counter that would reach zero sooner),
    so the ratios are exact."""
    m, client = scraped.mesh, scraped.client
    applied = m.run("apply", "-f", "-", stdin=yaml.safe_dump(CANARY_VS))
    assert applied.returncode == 0, applied.stderr
    wait_for(lambda: client.versions("http://sample-app/", 5, CANARY_HEADER)
             == {(200, "v2", "sample-app-v2"): 5}, 20)
    for path in ["/"] * 100 + ["/status/503"] * 5:
        client.get("http://sample-app" + path, CANARY_HEADER)
    wait_for(lambda: _v2_requests(m, "503") == 10, 10)  # both reporters, flushed
    with prometheus(tmp_path / "prometheus", [ScrapeJob("meshpilot",
                                                         [f"127.0.0.1:{m.api_port}"])]) as prom:
        prom.wait_for_series('istio_requests_total{destination_version="v2",'
                             'response_code="503"}', count=2, timeout=20)
        before_total, before = _v2_requests(m), _v2_buckets(m)
        mix = ["/"] * 85 + ["/delay/300"] * 10 + ["/status/503"] * 5
        for path in mix:
            status, _, _ = client.get("http://sample-app" + path, CANARY_HEADER)
            assert status == (503 if "status" in path else 200)
        wait_for(lambda: _v2_requests(m) == before_total + 2 * len(mix), 10)
        after = _v2_buckets(m)
        total = _v2_requests(m)
        prom.wait_for_series('sum(istio_requests_total{destination_service_name="sample-app",'
                             'destination_version="v2"})', timeout=20,
                             check=lambda r: float(r[0]["value"][1]) == total)
        [rate] = prom.query(SEED_SUCCESS_RATE)
        assert float(rate["value"][1]) == pytest.approx(0.95, abs=1e-6)
        [p95] = prom.query(SEED_P95)
        increase = {le: after[le] - before.get(le, 0.0) for le in after}
        expected = _histogram_quantile(0.95, increase)
        assert 250 < expected <= 500, increase
        assert float(p95["value"][1]) == pytest.approx(expected, rel=1e-6)
    deleted = m.run("delete", "vs", "sample-app-seed-check", "-n", NS)
    assert deleted.returncode == 0, deleted.stderr
