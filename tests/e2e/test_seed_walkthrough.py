"""The seed's whole tutorial on one mesh, section by section, as `meshpilot demo` runs it.

The tests drive the demo's own section functions (meshpilot.demo.sections) on one
`DemoMesh`, so what `make demo` shows is what is proven here, and assert what the seed
says each section does, with binomial bounds where the behaviour is random. They run in
file order (each section builds on the previous one's state, as in the seed), then a
quick rollback variant of the canary, then the seed's cleanup, which must leave no
process and no object of the namespace. Nothing leaves 127.0.0.1: the control plane is
REGISTRY_ONLY and httpbin.org is a local stand-in.
"""

from __future__ import annotations

import math
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from meshpilot.demo import sections
from meshpilot.demo.runtime import EXAMPLES, NS, Background, DemoMesh
from meshpilot.proxy.pids import alive

from .conftest import free_port

pytestmark = pytest.mark.e2e


def within(observed: int, n: int, p: float) -> bool:
    """Binomial tolerance: 4 standard deviations plus one point for edge effects."""
    return abs(observed / n - p) <= 4 * math.sqrt(p * (1 - p) / n) + 0.01


@pytest.fixture(scope="module")
def m(tmp_path_factory) -> Iterator[DemoMesh]:
    root = tmp_path_factory.mktemp("seed")
    demo = DemoMesh(root / "demo", free_port(), free_port(), free_port())
    try:
        demo.start()
        yield demo
    finally:
        demo.stop()


def test_2_header_routing_is_exact(m: DemoMesh) -> None:
    r = sections.basic_routing(m)
    assert r.header_v2 == {"v2": 50}, r.header_v2
    assert r.plain == {"v1": 50}, r.plain
    assert re.fullmatch(r"sample-app v2 \(sample-app-v2-[12]\)\n", r.curl_v2)


def test_3_canary_90_10_within_binomial_bound(m: DemoMesh) -> None:
    r = sections.canary_90_10(m, n=1000)
    assert set(r.split) == {"v1", "v2"}, r.split
    assert within(r.split["v2"], 1000, 0.10), r.split
    assert r.override == {"v2": 20}


def test_4_circuit_breaker_overflows_with_503_uo(m: DemoMesh) -> None:
    r = sections.circuit_breaker(m)
    assert set(r.codes) <= {"200", "503"}, r.codes
    assert r.codes.get("503", 0) > 0 and r.codes.get("200", 0) > 0, r.codes
    assert r.overflow > 0  # Envoy's upstream_rq_pending_overflow on the client sidecar
    assert r.uo_logged > 0  # the 503s carry Envoy's UO flag (upstream overflow)


def test_5_fault_delay_and_abort(m: DemoMesh) -> None:
    r = sections.fault_injection(m, n=200)
    assert r.delay_s >= 5.0, r.curl_delay
    assert re.fullmatch(r"HTTP Code: (200|503)\n", r.curl_abort), r.curl_abort
    assert set(r.abort) == {"v1", "HTTP 503"}, r.abort
    assert within(r.abort["HTTP 503"], 200, 0.5), r.abort


def test_6_ingress_gateway_http_and_https(m: DemoMesh) -> None:
    r = sections.ingress_gateway(m)
    assert re.fullmatch(r"sample-app v1 \(sample-app-v1-[12]\)\n", r.http_root)
    assert re.fullmatch(r"sample-app v2 \(sample-app-v2-[12]\)\n", r.http_v2)
    if r.ca is None:
        pytest.skip("no openssl: HTTPS not exercised")
    # `meshpilot curl --cacert` verified the gateway's certificate against the demo CA.
    assert r.https_root.startswith("sample-app v1") and r.https_v2.startswith("sample-app v2")
    unverified = m.cli("curl", "https://sample-app.hashfoundry.local/", "--resolve",
                       "sample-app.hashfoundry.local:443:127.0.0.1", check=False, show=False)
    assert unverified.returncode == 60  # no CA given: the self-signed chain is refused


def test_7_egress_goes_through_the_egress_gateway_to_the_local_standin(m: DemoMesh) -> None:
    r = sections.egress_gateway(m)
    assert r.body == "httpbin external (httpbin-standin)\n"
    assert r.sidecar_to_gateway and r.gateway_to_external
    undeclared = m.cli("curl", "-n", NS, "-s", "-o", "/dev/null", "-w", "%{http_code}",
                       "http://undeclared.example/", check=False, show=False)
    assert undeclared.stdout == "502"  # REGISTRY_ONLY: nothing else leaves


def test_8_canary_is_promoted_under_load(m: DemoMesh) -> None:
    r = sections.progressive_delivery(m, interval="2s")
    assert r.phase == "Succeeded", r.status
    assert r.weights == [10, 25, 50, 75, 100], r.weights
    assert set(r.codes) == {200}, r.codes  # not one failed request during the rollout
    assert {v for v in m.requests(20)} == {"v2"}
    vs = m.api(f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/"
               "sample-app-routing")["spec"]
    assert vs["http"][-1] == {"route": [{"destination": {"host": "sample-app",
                                                         "subset": "v2"}}]}


def test_8b_failing_canary_is_rolled_back(m: DemoMesh) -> None:
    """A quick variant: v3 answers 503; stable is v2 (promoted above)."""
    m.cli("delete", "canary", "sample-app", "-n", NS)
    dr = yaml.safe_load((EXAMPLES / "sections" / "04-circuit-breaker.yaml").read_text())
    dr["spec"]["subsets"].append({"name": "v3", "labels": {"version": "v3"}})
    m.cli("apply", "-f", "-", stdin=yaml.safe_dump(dr))
    m.spawn("sample-app-v3", "run", "sample-app-v3", "-n", NS, "--labels",
            "app=sample-app,version=v3", "--", sys.executable, "-m", "meshpilot", "demo-app",
            "--port", "{port}", "--version", "v3", "--name", "sample-app-v3", "--status", "503")
    m.wait(lambda: "1/1 replicas ready" in m.log("sample-app-v3").read_text(), 60, "v3",
           "sample-app-v3")
    canary = yaml.safe_load((EXAMPLES / "sections" / "06-progressive-canary.yaml").read_text())
    canary["metadata"]["name"] = "sample-app-v3"
    canary["spec"].update(stableSubset="v2", canarySubset="v3", stepWeights=[10, 50])
    canary["spec"]["analysis"]["interval"] = "2s"
    with Background(m.client_port, rate=100) as load:
        m.cli("apply", "-f", "-", stdin=yaml.safe_dump(canary))
        st = sections.wait_canary(m, "sample-app-v3", ("Failed", "Succeeded"), 60)
        time.sleep(0.5)
    assert st["phase"] == "Failed" and "request-success-rate" in st["message"], st
    assert st["canaryWeight"] == 0
    assert load.codes[503] / sum(load.codes.values()) < 0.15, load.codes  # only the 10 % step
    assert {v for v in m.requests(20)} == {"v2"}
    m.cli("delete", "canary", "sample-app-v3", "-n", NS)


def test_9_ab_test_header_cookie_and_50_50(m: DemoMesh) -> None:
    r = sections.ab_test(m, n=400)
    assert r.header == {"v2": 20} and r.cookie == {"v2": 20}
    assert set(r.plain) == {"v1", "v2"} and within(r.plain["v2"], 400, 0.5), r.plain


def test_10_the_seeds_promql_reads_the_mesh(m: DemoMesh) -> None:
    r = sections.monitoring(m)
    # v2 answered every request it got (section 4's overflows never reached a workload:
    # destination_version "unknown"; the rollback's 503s are v3's), so the seed's gate
    # (> 0.95) passes; a margin for requests in flight when a test step ended.
    assert r.success_rate is not None and 0.95 < r.success_rate <= 1.0, r.success_rate
    assert r.p95_ms is not None and 0 < r.p95_ms < 500, r.p95_ms
    assert r.dashboard.is_file()


def test_11_diagnostics(m: DemoMesh) -> None:
    r = sections.diagnostics(m)
    assert "sample-app" in r.routes
    assert "Error [" not in r.analyze, r.analyze


def test_12_cleanup_leaves_no_process_and_no_object(m: DemoMesh) -> None:
    entries = m.api(f"/apis/networking.istio.io/v1/namespaces/{NS}/workloadentries")["items"]
    pids = {int(we["metadata"]["annotations"][f"meshpilot.io/{k}"])
            for we in entries for k in ("envoy-pid", "app-pid")
            if f"meshpilot.io/{k}" in we["metadata"]["annotations"]}
    assert pids and all(alive(p) for p in pids)
    r = m.cli("delete", "namespace", NS)
    assert re.search(rf'^namespace "{NS}" deleted \(\d+ objects\)$', r.stdout, re.M)
    listing = m.cli("get", "all", "-n", NS, show=False)
    assert listing.stdout == "" and "No resources found" in listing.stderr
    down = m.cli("down", "--state", str(m.cp_state))
    assert "stopped control plane" in down.stdout
    standin = m.procs.pop("httpbin-standin")  # not part of the mesh: the demo stops it
    standin.terminate()
    standin.wait(10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and (any(p.poll() is None for p in m.procs.values())
                                           or any(alive(p) for p in pids)):
        time.sleep(0.2)
    assert {n: p.poll() for n, p in m.procs.items() if p.poll() is None} == {}
    assert not [p for p in pids if alive(p)]
    assert not [p for p in _all_pids() if _under(p, m.state)]


def _all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def _under(pid: int, state: Path) -> bool:
    """A live process whose command line names this test's state directory."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return str(state) in cmd and pid != os.getpid()
