"""The seed's first three sections on real Envoy: header routing, the 90/10 canary, and
config changes under load, for delta and state-of-the-world xDS alike."""

from __future__ import annotations

import math
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .mesh import LoadLoop, Mesh, ProxyClient, mesh, proxy_status, wait_for

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).parents[2] / "examples" / "traffic-demo"
URL = "http://sample-app/"


def routing_vs(rules: list[dict]) -> str:
    return yaml.safe_dump({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "sample-app-routing", "namespace": "traffic-demo"},
        "spec": {"hosts": ["sample-app"], "http": rules},
    })


def split(**weights: int) -> list[dict]:
    return [{"route": [{"destination": {"host": "sample-app", "subset": s}, "weight": w}
                       for s, w in weights.items()]}]


def apply_text(m: Mesh, text: str) -> None:
    result = m.run("apply", "-f", "-", stdin=text)
    assert result.returncode == 0, result.stderr


@pytest.fixture(scope="module", params=["delta", "sotw"])
def demo(request, tmp_path_factory) -> Iterator[tuple[Mesh, ProxyClient]]:
    root = tmp_path_factory.mktemp(f"mesh-{request.param}")
    with mesh(root, request.param) as m:
        m.start_control_plane()
        m.apply(EXAMPLES / "base" / "10-sample-app-service.yaml",
                EXAMPLES / "base" / "20-sample-app-subsets.yaml")
        for i in (1, 2):
            for version in ("v1", "v2"):
                m.workload(f"sample-app-{version}-{i}", "traffic-demo",
                           f"app=sample-app,version={version}", version)
        client = ProxyClient(m.client())
        yield m, client
        client.close()


def until(client: ProxyClient, headers: dict[str, str], version: str, m: Mesh) -> None:
    """Wait until the config that sends `headers` to `version` has reached the client:
    20 answers in a row from `version` (one could come from the previous config by chance)."""

    def converged() -> bool:
        for _ in range(20):
            status, hdrs, _ = client.get(URL, headers)
            if status != 200 or hdrs.get("x-version") != version:
                return False
        return True

    wait_for(converged, 15, m.control_plane)


def versions_of(seen: Counter) -> Counter:
    out: Counter = Counter()
    for (status, version, _instance), n in seen.items():
        out[(status, version)] += n
    return out


def test_header_routing(demo) -> None:
    m, client = demo
    m.apply(EXAMPLES / "base" / "30-sample-app-routing.yaml")
    until(client, {"version": "v2"}, "v2", m)
    with_header = client.versions(URL, 200, {"version": "v2"})
    assert versions_of(with_header) == Counter({(200, "v2"): 200})
    assert {i for (_, _, i) in with_header} == {"sample-app-v2-1", "sample-app-v2-2"}
    without = client.versions(URL, 200)
    assert versions_of(without) == Counter({(200, "v1"): 200})
    assert {i for (_, _, i) in without} == {"sample-app-v1-1", "sample-app-v1-2"}


def test_canary_split_is_90_10_and_header_overrides(demo) -> None:
    m, client = demo
    m.apply(EXAMPLES / "sections" / "03-canary.yaml")
    until(client, {"canary": "true"}, "v2", m)
    assert versions_of(client.versions(URL, 100, {"canary": "true"})) == Counter({(200, "v2"): 100})
    n = 1000
    seen = versions_of(client.versions(URL, n))
    assert seen[(200, "v1")] + seen[(200, "v2")] == n
    # 99.9% two-sided binomial bound around p = 0.1.
    half_width = 3.29 * math.sqrt(n * 0.1 * 0.9)
    assert abs(seen[(200, "v2")] - n * 0.1) <= half_width, seen


def test_weight_and_subset_changes_under_load_cause_no_errors(demo) -> None:
    m, client = demo
    apply_text(m, routing_vs(split(v1=90, v2=10)))
    time.sleep(1)
    subsets = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
               "metadata": {"name": "sample-app-subsets", "namespace": "traffic-demo"},
               "spec": {"host": "sample-app", "subsets": [
                   {"name": "v1", "labels": {"version": "v1"}},
                   {"name": "v2", "labels": {"version": "v2"}}]}}
    with_canary = {**subsets, "spec": {**subsets["spec"], "subsets": [
        *subsets["spec"]["subsets"], {"name": "canary", "labels": {"version": "v2"}}]}}
    with LoadLoop(client.port, URL, rate=200) as load:
        for step in (split(v1=50, v2=50), split(v1=0, v2=100)):
            apply_text(m, routing_vs(step))
            time.sleep(1.0)
        # A new subset and a route to it in one apply, then both removed again.
        apply_text(m, yaml.safe_dump(with_canary) + "---\n" + routing_vs(split(v1=50, canary=50)))
        time.sleep(1.0)
        apply_text(m, yaml.safe_dump(subsets) + "---\n" + routing_vs(split(v1=100)))
        time.sleep(1.0)
    assert load.errors == []
    assert set(load.codes) == {200}, load.codes
    assert load.total > 600


def test_rejected_push_is_nacked_reported_and_traffic_keeps_flowing(demo) -> None:
    m, client = demo
    apply_text(m, routing_vs(split(v1=100)))
    until(client, {}, "v1", m)
    # Istio accepts any weights; Envoy rejects a route whose weights sum past 2^32-1.
    heavy = 2_000_000_000
    big = [{"route": [{"destination": {"host": "sample-app", "subset": "v1"}, "weight": heavy},
                      {"destination": {"host": "sample-app", "subset": "v2"}, "weight": heavy},
                      {"destination": {"host": "sample-app"}, "weight": heavy}]}]
    apply_text(m, routing_vs(big))

    def nack_of_client() -> dict | None:
        for p in proxy_status(m):
            if p["name"] == "test-client.traffic-demo" and "nack" in p["types"].get("RDS", {}):
                return p["types"]["RDS"]
        return None

    wait_for(lambda: nack_of_client() is not None, 15, m.control_plane)
    rds = nack_of_client()
    assert rds is not None and rds["state"] == "NACKED"
    assert "sum of weights" in rds["nack"]["message"]
    assert versions_of(client.versions(URL, 50)) == Counter({(200, "v1"): 50})
    apply_text(m, routing_vs(split(v2=100)))
    until(client, {}, "v2", m)
    wait_for(lambda: (nack := nack_of_client()) is None or nack["state"] == "SYNCED", 10)


def test_control_plane_restart_keeps_traffic_and_resyncs(demo) -> None:
    m, client = demo
    apply_text(m, routing_vs(split(v1=100)))
    until(client, {}, "v1", m)
    assert m.control_plane is not None
    m.control_plane.stop(signal.SIGKILL)
    assert versions_of(client.versions(URL, 100)) == Counter({(200, "v1"): 100})
    m.start_control_plane()
    apply_text(m, routing_vs(split(v2=100)))
    until(client, {}, "v2", m)
    assert versions_of(client.versions(URL, 50)) == Counter({(200, "v2"): 50})
