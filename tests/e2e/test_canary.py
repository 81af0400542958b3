"""Progressive delivery on real Envoy under real load: the Canary controller inside
`meshpilot up` walks its steps, waits for every Envoy's ACK, judges the canary subset on
meshpilot's own telemetry and promotes or rolls back.

One mesh for the module: service sample-app with four versions behind sidecars (v1
stable, v2 healthy, v3 answering 503, v4 400 ms slow) and a client sidecar. Each test
resets the VirtualService to "v1 100 %" and deletes its Canary at the end, so the tests
are independent. Intervals are 2 s (a window of 1 s would see a fraction of a second of
traffic, see rollout/analysis.py; 2 s gives 1-2 s of it), with 150 requests/s of load
and minRequests 5, so even the 10 % step has enough requests to judge. Weights are
checked with statistical tolerances, per step, on the responses that arrived between the
step's ACK and the next write.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
import yaml

from .conftest import free_port
from .mesh import MESHPILOT, LoadLoop, Mesh, ProxyClient, _http_ok, mesh, port_open, wait_for

pytestmark = pytest.mark.e2e
NS = "traffic-demo"
URL = "http://sample-app/"
INTERVAL = "2s"

BASE = [
    {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sample-app", "namespace": NS},
     "spec": {"selector": {"app": "sample-app"}, "ports": [{"name": "http", "port": 80}]}},
    {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
     "metadata": {"name": "sample-app", "namespace": NS},
     "spec": {"host": "sample-app", "subsets": [
         {"name": v, "labels": {"version": v}} for v in ("v1", "v2", "v3", "v4")]}},
]
VS = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
      "metadata": {"name": "sample-app-routing", "namespace": NS},
      "spec": {"hosts": ["sample-app"], "http": [
          {"route": [{"destination": {"host": "sample-app", "subset": "v1"}}]}]}}


def workload(m: Mesh, version: str, *app_args: str) -> None:
    """The demo app behind a sidecar (Mesh.workload, plus demo-app options)."""
    name = f"sample-app-{version}"
    app_port, admin_port = free_port(), free_port()
    sidecar = m.spawn(
        name, "sidecar", "--name", name, "-n", NS, "--labels",
        f"app=sample-app,version={version}", "--app-port", str(app_port), "--admin-port",
        str(admin_port), "--outbound-port", str(free_port()), "--xds", m.xds_mode, "--",
        *MESHPILOT, "demo-app", "--port", str(app_port), "--version", version, "--name", name,
        *app_args)
    wait_for(lambda: _http_ok(f"http://127.0.0.1:{admin_port}/ready"), 30, sidecar)
    wait_for(lambda: port_open(app_port), 30, sidecar)


@dataclass
class Env:
    m: Mesh
    client_port: int

    def run(self, *args: str, stdin: str | None = None) -> Any:
        return self.m.run(*args, stdin=stdin)

    def apply(self, *docs: dict) -> None:
        result = self.run("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
        assert result.returncode == 0, result.stderr

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.m.server + path, timeout=10) as r:
            return json.loads(r.read())

    def canary(self, name: str) -> dict[str, Any]:
        return self.api(f"/apis/meshpilot.io/v1alpha1/namespaces/{NS}/canaries/{name}")

    def status(self, name: str) -> dict[str, Any]:
        return self.canary(name).get("status") or {}

    def events(self, name: str) -> list[dict[str, Any]]:
        return self.api(f"/apis/meshpilot.io/v1alpha1/namespaces/{NS}/canaries/{name}"
                        "/events?limit=1000")["items"]

    def wait_phase(self, name: str, *phases: str, timeout: float = 40.0,
                   settled: bool = True) -> dict[str, Any]:
        """Until the phase is one of `phases` (and, if `settled`, its route write ACKed)."""
        seen: list[str] = []

        def reached() -> bool:
            st = self.status(name)
            if not seen or seen[-1] != st.get("phase"):
                seen.append(str(st.get("phase")))
            return st.get("phase") in phases and (not settled or st.get("stepState") in
                                                  ("", "dwell", None))
        try:
            wait_for(reached, timeout, self.m.control_plane, every=0.1)
        except AssertionError:
            raise AssertionError(f"{name}: phases {seen}, status {self.status(name)}, "
                                 f"events {[e['message'] for e in self.events(name)]}") from None
        return self.status(name)

    def reset(self) -> None:
        """v1 100 % again; the previous test's Canary (if any) gone."""
        self.run("delete", "canary", "healthy", "failing", "slow", "idle-fail", "idle-hold",
                 "idle-pass", "ab", "restart", "-n", NS, "--ignore-not-found")
        self.apply(VS)
        client = ProxyClient(self.client_port)
        try:
            wait_for(lambda: client.versions(URL, 20) == Counter({(200, "v1",
                                                                   "sample-app-v1"): 20}),
                     15, self.m.control_plane)
        finally:
            client.close()

    def vs(self) -> dict[str, Any]:
        return self.api(f"/apis/networking.istio.io/v1/namespaces/{NS}/virtualservices/"
                        "sample-app-routing")["spec"]

    def host_virtual_services(self) -> list[str]:
        items = self.api("/apis/networking.istio.io/v1/virtualservices")["items"]
        return [i["metadata"]["name"] for i in items
                if any(h.startswith("sample-app") for h in i["spec"].get("hosts", []))]


def canary(name: str, canary_subset: str = "v2", **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "host": "sample-app", "stableSubset": "v1", "canarySubset": canary_subset,
        "analysis": {"interval": INTERVAL, "progressDeadline": "60s", "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99},
             "minRequests": 5},
            {"name": "request-duration", "quantile": 0.95, "thresholdRange": {"max": 200},
             "minRequests": 5}]}}
    body.update(spec)
    return {"apiVersion": "meshpilot.io/v1alpha1", "kind": "Canary",
            "metadata": {"name": name, "namespace": NS}, "spec": body}


def stamp(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def within(observed: int, n: int, weight: float) -> bool:
    """Binomial tolerance: 4 standard deviations plus 3 points for edge effects."""
    p = weight / 100
    return abs(observed / n - p) <= 4 * math.sqrt(p * (1 - p) / n) + 0.03


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    root = tmp_path_factory.mktemp("canary-mesh")
    with mesh(root) as m:
        m.start_control_plane()
        result = m.run("apply", "-f", "-", stdin=yaml.safe_dump_all([*BASE, VS]))
        assert result.returncode == 0, result.stderr
        workload(m, "v1")
        workload(m, "v2")
        workload(m, "v3", "--status", "503")
        workload(m, "v4", "--delay-ms", "400")
        e = Env(m, m.client())
        e.reset()
        yield e


def test_healthy_canary_is_promoted_step_by_step_without_a_failed_request(env: Env) -> None:
    env.reset()
    with LoadLoop(env.client_port, URL, rate=150) as load:
        env.apply(canary("healthy", stepWeights=[10, 25, 50, 75, 100]))
        st = env.wait_phase("healthy", "Succeeded", timeout=60)
        time.sleep(0.5)
    events = env.events("healthy")
    assert st["failedChecks"] == 0 and st["checkRounds"] == 5, st
    # Each step's weight, measured on the responses between its ACK and the next write.
    synced = [e for e in events if e["reason"] == "Synced"]
    writes = [e for e in events if e["reason"] in ("Weight", "Finalising")]
    measured = []
    for weight in (10, 25, 50, 75, 100):
        ack = next(e for e in synced if e["data"]["weight"] == weight)
        nxt = next(e for e in writes if stamp(e["time"]) > stamp(ack["time"]))
        window = load.between(stamp(ack["time"]) + 0.2, stamp(nxt["time"]))
        v2 = sum(s.version == "v2" for s in window)
        measured.append((weight, v2, len(window)))
        assert len(window) > 50 and within(v2, len(window), weight), measured
    assert [e["data"]["weight"] for e in events if e["reason"] == "CheckPassed"] == \
        [10, 25, 50, 75, 100]
    # Zero failed client requests over the whole rollout, promotion included.
    assert load.errors == [] and set(load.codes) == {200}, (load.codes, load.errors)
    # One VirtualService for the host, no managed routes, all traffic on v2.
    vs = env.vs()
    assert env.host_virtual_services() == ["sample-app-routing"]
    assert not [r for r in vs["http"] if r.get("name", "").startswith("meshpilot-canary")]
    assert vs["http"] == [{"route": [{"destination": {"host": "sample-app", "subset": "v2"}}]}]
    client = ProxyClient(env.client_port)
    assert {v for (_, v, _) in client.versions(URL, 30)} == {"v2"}
    client.close()
    assert st["ackedVersion"]
    # The CLI's view and the controller's metrics tell the same story.
    out = env.run("canary", "get", "healthy", "-n", NS)
    assert out.returncode == 0 and "Phase:           Succeeded" in out.stdout, out.stdout
    assert "request-success-rate" in out.stdout and "History:" in out.stdout
    listed = env.run("get", "canary", "-n", NS)
    assert listed.returncode == 0 and "healthy" in listed.stdout
    assert "Succeeded" in listed.stdout, listed.stdout
    with urllib.request.urlopen(env.m.server + "/metrics", timeout=5) as r:
        text = r.read().decode()
    assert ('meshpilot_canary_phase{name="healthy",namespace="traffic-demo",'
            'phase="Succeeded"} 1') in text
    assert 'meshpilot_canary_weight{name="healthy",namespace="traffic-demo"} 100' in text


def test_failing_canary_is_rolled_back_by_the_success_rate(env: Env) -> None:
    env.reset()
    with LoadLoop(env.client_port, URL, rate=150) as load:
        env.apply(canary("failing", canary_subset="v3", stepWeights=[10, 50]))
        st = env.wait_phase("failing", "Failed")
        time.sleep(0.5)
        after = time.time()
        time.sleep(1.0)
    assert "request-success-rate" in st["message"] and "threshold >= 99" in st["message"]
    check = next(c for c in st["checks"] if c["name"] == "request-success-rate")
    assert check["verdict"] == "fail" and check["value"] < 10 and check["requests"] >= 5
    assert st["canaryWeight"] == 0 and st["ackedVersion"]
    # The canary never got more than its first 10 %: 5xx stay near 10 % of the traffic.
    weights = [e["data"]["weight"] for e in env.events("failing") if e["reason"] == "Weight"]
    assert weights == [10], weights
    codes = load.codes
    assert codes[503] / sum(codes.values()) < 0.10, codes
    assert all(s.status == 200 and s.version == "v1" for s in load.between(after, time.time()))
    vs = env.vs()
    assert vs["http"] == [{"route": [{"destination": {"host": "sample-app", "subset": "v1"}}]}]


def test_slow_canary_is_rolled_back_by_the_p95(env: Env) -> None:
    env.reset()
    # Enough workers that 400 ms answers do not throttle the load below minRequests.
    with LoadLoop(env.client_port, URL, rate=150, workers=16):
        env.apply(canary("slow", canary_subset="v4", stepWeights=[20, 50]))
        st = env.wait_phase("slow", "Failed")
    assert "request-duration" in st["message"], st["message"]
    check = next(c for c in st["checks"] if c["name"] == "request-duration")
    assert check["verdict"] == "fail" and check["value"] >= 400, check
    assert check["threshold"] == "<= 200"
    assert env.vs()["http"][0]["route"] == [
        {"destination": {"host": "sample-app", "subset": "v1"}}]


@pytest.mark.parametrize(("policy", "phase"), [("fail", "Failed"), ("hold", "Paused"),
                                                ("pass", "Succeeded")])
def test_without_traffic_the_no_traffic_policy_decides(env: Env, policy: str,
                                                       phase: str) -> None:
    env.reset()
    time.sleep(2.0)  # the previous test's load leaves the window
    name = f"idle-{policy}"
    env.apply(canary(name, stepWeights=[50], analysis={
        "interval": INTERVAL, "inconclusiveLimit": 1, "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99},
             "minRequests": 5, "noTraffic": policy}]}))
    st = env.wait_phase(name, phase)
    [check] = st["checks"]
    assert check["verdict"] == "no-data" and check["requests"] == 0
    assert check["outcome"] == {"fail": "fail", "hold": "inconclusive", "pass": "pass"}[policy]
    if policy == "hold":
        assert st["inconclusiveChecks"] == 1 and st["canaryWeight"] == 50
        assert st["failedChecks"] == 0
        out = env.run("canary", "undo", name, "-n", NS)
        assert out.returncode == 0, out.stderr
        env.wait_phase(name, "Failed")
    out = env.run("canary", "analyze", name, "-n", NS)
    assert out.returncode == 2, out.stdout + out.stderr  # no data
    assert "requests 0" in out.stdout


def test_ab_canary_routes_only_matching_requests_then_promotes(env: Env) -> None:
    env.reset()
    spec = canary("ab", iterations=3, match=[
        {"headers": {"x-beta": {"exact": "true"}}},
        {"headers": {"cookie": {"regex": "^(.*?;)?(user=beta)(;.*)?$"}}}])
    with LoadLoop(env.client_port, URL, rate=100, headers={"x-beta": "true"}):
        env.apply(spec)
        env.wait_phase("ab", "Progressing")
        client = ProxyClient(env.client_port)
        try:
            plain = client.versions(URL, 40)
            header = client.versions(URL, 40, {"x-beta": "true"})
            # The seed's regex: `user=beta` first, or after a `;` without a space.
            cookie = client.versions(URL, 20, {"Cookie": "user=beta; theme=dark"})
            cookie += client.versions(URL, 20, {"Cookie": "theme=dark;user=beta"})
            other_cookie = client.versions(URL, 20, {"Cookie": "user=alpha"})
            assert env.status("ab")["phase"] == "Progressing"  # still within the iterations
        finally:
            client.close()
        st = env.wait_phase("ab", "Succeeded")
    assert {v for (_, v, _) in plain} == {"v1"}, plain
    assert {v for (_, v, _) in header} == {"v2"}, header
    assert {v for (_, v, _) in cookie} == {"v2"}, cookie
    assert {v for (_, v, _) in other_cookie} == {"v1"}, other_cookie
    assert st["iterations"] == 3 and st["failedChecks"] == 0
    client = ProxyClient(env.client_port)
    assert {v for (_, v, _) in client.versions(URL, 20)} == {"v2"}
    client.close()
    assert not [r for r in env.vs()["http"] if r.get("name", "").startswith("meshpilot")]


def test_control_plane_restart_mid_rollout_resumes(env: Env) -> None:
    env.reset()
    m = env.m
    with LoadLoop(env.client_port, URL, rate=150) as load:
        env.apply(canary("restart", stepWeights=[10, 25, 50, 75]))

        def at_25() -> bool:
            return any(e["reason"] == "Synced" and e["data"]["weight"] == 25
                       for e in env.events("restart"))
        wait_for(at_25, 30, m.control_plane, every=0.1)
        time.sleep(0.7)  # mid-dwell at 25 %
        assert m.control_plane is not None
        m.control_plane.stop(signal.SIGKILL)
        time.sleep(1.0)
        m.start_control_plane()
        st = env.wait_phase("restart", "Succeeded", timeout=60)
    events = env.events("restart")
    reasons = [e["reason"] for e in events]
    assert "Resumed" in reasons, reasons
    passed = [e["data"]["weight"] for e in events if e["reason"] == "CheckPassed"]
    assert passed == [10, 25, 50, 75], passed  # none skipped, none counted twice
    assert st["checkRounds"] == 4 and st["failedChecks"] == 0, st
    assert load.errors == [] and set(load.codes) == {200}, (load.codes, load.errors)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))
