"""The canary controller's state machine on a real SqliteStore, with a fake clock, a fake
xDS ACK source, fake telemetry and fake webhooks: every transition is driven by hand
(`Harness.tick`), so each test says exactly when the ACK arrives, what the checks see and
how much time passes. The real routes/plan/analysis modules do the rest."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshpilot.api.load import parse_text
from meshpilot.controlplane.apply import apply_documents
from meshpilot.rollout.controller import ActionError, CanaryController
from meshpilot.rollout.webhooks import HookResult
from meshpilot.snapshot.mesh import MeshSnapshot
from meshpilot.store import SqliteStore
from meshpilot.telemetry import WindowSummary

NS = "traffic-demo"

BASE = """
apiVersion: v1
kind: Service
metadata: {name: sample-app, namespace: traffic-demo}
spec: {selector: {app: sample-app}, ports: [{name: http, port: 80}]}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sample-app, namespace: traffic-demo}
spec:
  host: sample-app
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: nolabel, labels: {track: x}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: sample-app-routing, namespace: traffic-demo}
spec:
  hosts: [sample-app]
  http:
  - match: [{headers: {version: {exact: v2}}}]
    route: [{destination: {host: sample-app, subset: v2}}]
  - route: [{destination: {host: sample-app, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: sample-app-v1, namespace: traffic-demo}
spec: {address: 127.0.0.1, ports: {http: 8001}, labels: {app: sample-app, version: v1}}
"""

V2 = """
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: sample-app-v2, namespace: traffic-demo}
spec: {address: 127.0.0.2, ports: {http: 8002}, labels: {app: sample-app, version: v2}}
"""


def canary(**spec: Any) -> str:
    body = {"host": "sample-app", "stableSubset": "v1", "canarySubset": "v2",
            "stepWeights": [10, 50],
            "analysis": {"interval": "2s", "failureLimit": 2, "progressDeadline": "20s",
                         "metrics": [{"name": "request-success-rate",
                                      "thresholdRange": {"min": 99}, "minRequests": 10},
                                     {"name": "request-duration", "quantile": 0.95,
                                      "thresholdRange": {"max": 500}, "minRequests": 10}]}}
    body.update(spec)
    return yaml.safe_dump({"apiVersion": "meshpilot.io/v1alpha1", "kind": "Canary",
                           "metadata": {"name": "sample-app", "namespace": NS}, "spec": body})


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Sync:
    """Envoy's ACKs: a revision is synced once `acked` reaches it."""

    acked: int = 0
    asked: list[int] = field(default_factory=list)

    def synced_at(self, revision: int) -> str | None:
        self.asked.append(revision)
        return f"ver-{self.acked}" if self.acked >= revision else None


@dataclass
class Telemetry:
    """Per version: (requests, errors, p95 ms)."""

    data: dict[str, tuple[int, int, float]] = field(default_factory=dict)

    def window_summary(self, service: str, *, version: str | None = None,
                       namespace: str | None = None, reporter: str = "destination",
                       seconds: int = 60, quantile: float = 0.99) -> WindowSummary:
        requests, errors, latency = self.data.get(version or "", (0, 0, 0.0))
        return WindowSummary(service, namespace, version, reporter, seconds, requests, errors,
                             (requests - errors) / requests if requests else None, quantile,
                             latency if requests else None)


@dataclass
class Hooks:
    answers: dict[str, bool] = field(default_factory=dict)  # hook type -> ok
    calls: list[str] = field(default_factory=list)

    async def __call__(self, hooks: Any, hook_type: str, **kw: Any) -> list[HookResult]:
        chosen = [h for h in hooks if h.type == hook_type]
        self.calls += [hook_type] * len(chosen)
        ok = self.answers.get(hook_type, True)
        return [HookResult(h.name, hook_type, ok, 200 if ok else 403,
                           f"POST {h.url}: {200 if ok else 403}") for h in chosen]


class Harness:
    def __init__(self, path: Path) -> None:
        self.store = SqliteStore(path / "store.db")
        self.clock = Clock()
        self.sync = Sync()
        self.telemetry = Telemetry({"v1": (100, 0, 10.0), "v2": (100, 0, 12.0)})
        self.hooks = Hooks()
        self.loop = asyncio.new_event_loop()
        self.ctl = self.controller()
        self.apply(BASE)

    def controller(self) -> CanaryController:
        return CanaryController(
            self.store, mesh=lambda: MeshSnapshot.build(self.store.list(), self.store.revision),
            sync=self.sync, metrics=self.telemetry, clock=self.clock, hooks=self.hooks)

    def apply(self, text: str) -> None:
        report = apply_documents(self.store, parse_text(text, "test"))
        assert not report.skipped, report.skipped

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def tick(self, seconds: float = 0.0, ack: bool = True) -> dict[str, Any]:
        """Let `seconds` pass, ACK everything written so far (unless told not to), and
        reconcile; returns the stored status."""
        self.clock.advance(seconds)
        for _ in range(3):  # a write, its ACK, the next transition
            if ack:
                self.sync.acked = self.store.revision
            self.run(self.ctl.reconcile(NS, "sample-app"))
        return self.status()

    def status(self) -> dict[str, Any]:
        res = self.store.get("Canary", NS, "sample-app")
        assert res is not None
        return res.status or {}

    def vs(self) -> dict[str, Any]:
        res = self.store.get("VirtualService", NS, "sample-app-routing")
        assert res is not None
        return res.body

    def default_weights(self) -> dict[str, int]:
        rule = next(r for r in self.vs()["http"] if "match" not in r)
        return {e["destination"]["subset"]: e.get("weight", 100) for e in rule["route"]}

    def act(self, action: str, **body: Any) -> dict[str, Any]:
        return self.run(self.ctl.act(NS, "sample-app", action, body))

    def events(self) -> list[dict[str, Any]]:
        return self.run(self.ctl.events(NS, "sample-app", 500))

    def close(self) -> None:
        self.run(self.ctl.stop())
        self.loop.close()
        self.store.close()


@pytest.fixture
def h(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    try:
        yield harness
    finally:
        harness.close()


def reasons(h: Harness) -> list[str]:
    return [e["reason"] for e in h.events()]


def run_to_end(h: Harness, limit: int = 40) -> dict[str, Any]:
    st = h.status()
    for _ in range(limit):
        st = h.tick(1.0)
        if st["phase"] in ("Succeeded", "Failed", "Paused") and not st.get("stepState"):
            return st
    return st


# --- start -------------------------------------------------------------------------------


def test_initialized_waits_for_canary_workloads_then_starts(h: Harness) -> None:
    h.apply(canary())
    st = h.tick()
    assert st["phase"] == "Initialized"
    assert st["virtualService"] == "sample-app-routing"
    assert "waiting for workloads of canary subset v2" in st["message"]
    assert h.default_weights() == {"v1": 100}  # untouched before the rollout starts
    h.apply(V2)
    st = h.tick()
    assert st["phase"] == "Progressing" and st["rollout"] == 1
    assert st["canaryWeight"] == 10 and h.default_weights() == {"v1": 90, "v2": 10}
    assert st["stepState"] == "dwell" and st["ackedVersion"]


def test_dwell_starts_only_at_the_ack(h: Harness) -> None:
    h.apply(canary() + "---\n" + V2)
    h.tick(ack=False)
    st = h.tick(5.0, ack=False)
    assert st["stepState"] == "sync" and st["stepStartedAt"] is None
    assert st["ackedVersion"] is None and st["appliedRevision"] > 0
    written_at = h.clock.now
    h.clock.advance(1.0)
    st = h.tick()
    assert st["stepState"] == "dwell"
    assert st["stepStartedAt"] > written_at.strftime("%Y-%m-%dT%H:%M:%S")
    assert h.sync.asked and max(h.sync.asked) == st["appliedRevision"]


def test_healthy_canary_is_promoted_to_one_clean_virtual_service(h: Harness) -> None:
    h.apply(canary() + "---\n" + V2)
    weights = []
    for _ in range(20):
        st = h.tick(1.0)
        weights.append(st["canaryWeight"])
        if st["phase"] == "Succeeded":
            break
    assert st["phase"] == "Succeeded", st
    assert [w for i, w in enumerate(weights) if i == 0 or w != weights[i - 1]] == [10, 50, 100]
    assert st["failedChecks"] == 0 and st["checkRounds"] == 2
    vs = h.vs()
    assert not [r for r in vs["http"] if r.get("name", "").startswith("meshpilot-canary")]
    assert vs["http"][-1]["route"] == [{"destination": {"host": "sample-app", "subset": "v2"}}]
    assert vs["http"][0]["match"]  # the user's own header rule is kept
    assert len(h.store.list("VirtualService")) == 1
    got = reasons(h)
    assert got.index("Started") < got.index("Promoting") < got.index("Succeeded")


def test_failed_checks_hold_then_roll_back_with_the_value(h: Harness) -> None:
    h.apply(canary() + "---\n" + V2)
    h.tick()
    h.telemetry.data["v2"] = (100, 40, 12.0)  # 60 % success
    st = h.tick(2.0)
    assert st["phase"] == "Progressing" and st["failedChecks"] == 1
    assert st["canaryWeight"] == 10 and h.default_weights() == {"v1": 90, "v2": 10}
    assert "holding weight 10" in st["message"]
    st = h.tick(2.0)
    assert st["phase"] == "Failed" and st["failedChecks"] == 2
    assert "request-success-rate" in st["message"] and "60" in st["message"]
    assert "threshold >= 99" in st["message"]
    assert h.default_weights() == {"v1": 100}
    assert st["ackedVersion"] and st["stepState"] == ""
    assert "RollbackVerified" in reasons(h)


def test_latency_above_limit_rolls_back(h: Harness) -> None:
    h.apply(canary(analysis={"interval": "2s", "metrics": [
        {"name": "request-duration", "quantile": 0.95, "thresholdRange": {"max": 100}}]})
        + "---\n" + V2)
    h.tick()
    h.telemetry.data["v2"] = (50, 0, 800.0)
    st = h.tick(2.0)
    assert st["phase"] == "Failed"
    assert "request-duration" in st["message"] and "800" in st["message"]


@pytest.mark.parametrize(("policy", "phase"), [("fail", "Failed"), ("hold", "Paused"),
                                                ("pass", "Succeeded")])
def test_no_traffic_policy_decides(h: Harness, policy: str, phase: str) -> None:
    h.telemetry.data = {}
    h.apply(canary(stepWeights=[20], analysis={
        "interval": "2s", "inconclusiveLimit": 1, "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99},
             "noTraffic": policy}]}) + "---\n" + V2)
    st = run_to_end(h)
    assert st["phase"] == phase, st
    assert st["checks"][0]["verdict"] == "no-data"
    if policy == "hold":
        assert st["inconclusiveChecks"] == 1 and st["canaryWeight"] == 20
        h.act("resume")
        assert h.tick()["phase"] == "Progressing"


def test_restart_resumes_without_skipping_or_double_counting(h: Harness) -> None:
    h.apply(canary(stepWeights=[10, 25, 50]) + "---\n" + V2)
    h.tick()
    h.tick(2.0)  # step 1 checked and passed, weight 25 written
    st = h.status()
    assert st["checkRounds"] == 1 and st["canaryWeight"] == 25
    h.tick(1.0)  # mid-dwell at 25 %: the control plane dies here
    h.run(h.ctl.stop())
    h.ctl = h.controller()
    h.run(h.ctl.resume_all())
    st = h.status()
    assert st["stepState"] == "apply" and st["stepStartedAt"] is None
    assert st["checkRounds"] == 1
    st = h.tick()
    assert st["stepState"] == "dwell" and st["canaryWeight"] == 25
    st = run_to_end(h)
    assert st["phase"] == "Succeeded" and st["checkRounds"] == 3 and st["failedChecks"] == 0
    weights = [e["data"]["weight"] for e in h.events() if e["reason"] == "CheckPassed"]
    assert weights == [10, 25, 50]
    assert "Resumed" in reasons(h)


def test_ab_test_routes_matching_requests_then_promotes(h: Harness) -> None:
    h.apply(yaml.safe_dump({
        "apiVersion": "meshpilot.io/v1alpha1", "kind": "Canary",
        "metadata": {"name": "sample-app", "namespace": NS},
        "spec": {"host": "sample-app", "stableSubset": "v1", "canarySubset": "v2",
                 "iterations": 2,
                 "match": [{"headers": {"x-beta": {"exact": "true"}}},
                           {"headers": {"cookie": {"regex": "^(.*?;)?(user=beta)(;.*)?$"}}}],
                 "analysis": {"interval": "2s"}}}) + "---\n" + V2)
    st = h.tick()
    assert st["phase"] == "Progressing"
    ab = [r for r in h.vs()["http"] if r.get("name") == "meshpilot-canary-sample-app-ab"]
    assert len(ab) == 1 and len(ab[0]["match"]) == 2
    assert h.default_weights() == {"v1": 100, "v2": 0}
    st = run_to_end(h)
    assert st["phase"] == "Succeeded" and st["iterations"] == 2
    assert not [r for r in h.vs()["http"] if r.get("name", "").startswith("meshpilot")]


def test_gates_and_manual_actions(h: Harness) -> None:
    h.apply(canary(webhooks=[{"name": "gate", "type": "confirm-promotion",
                              "url": "http://127.0.0.1:1/"}]) + "---\n" + V2)
    h.hooks.answers["confirm-promotion"] = False
    st = run_to_end(h, 12)
    assert st["phase"] == "WaitingPromotion" and st["waitingFor"] == "confirm-promotion"
    with pytest.raises(ActionError):
        h.act("resume")
    h.act("promote")
    st = run_to_end(h)
    assert st["phase"] == "Succeeded"


def test_set_weight_pause_resume_and_undo(h: Harness) -> None:
    h.apply(canary() + "---\n" + V2)
    h.tick()
    h.act("set-weight", weight=30)
    st = h.tick()
    assert st["phase"] == "Paused" and st["canaryWeight"] == 30
    assert h.default_weights() == {"v1": 70, "v2": 30}
    h.tick(30.0)  # paused: no checks, no deadline
    assert h.status()["checkRounds"] == 0 and h.status()["phase"] == "Paused"
    h.act("resume")
    st = h.tick()
    assert st["phase"] == "Progressing" and st["canaryWeight"] == 10
    h.act("undo")
    st = h.tick()
    assert st["phase"] == "Failed" and h.default_weights() == {"v1": 100}
    assert "undo" in st["message"]
    assert "post-rollout" not in h.hooks.calls
    h.act("retry")
    assert h.tick()["phase"] == "Progressing"


def test_undo_after_success_returns_to_stable(h: Harness) -> None:
    h.apply(canary(stepWeights=[50]) + "---\n" + V2)
    assert run_to_end(h)["phase"] == "Succeeded"
    h.act("undo")
    st = h.tick()
    assert st["phase"] == "Failed" and h.default_weights() == {"v1": 100}


def test_abort_and_progress_deadline(h: Harness) -> None:
    h.apply(canary() + "---\n" + V2)
    h.tick()
    h.act("abort")
    st = h.tick()
    assert st["phase"] == "Failed" and "aborted" in st["message"]
    h.act("retry")
    h.tick(ack=False)
    st = h.tick(25.0, ack=False)  # never ACKed: deadline 20s
    assert st["phase"] == "Failed" and "progress deadline" in st["message"]


def test_subset_without_version_label_is_reported(h: Harness) -> None:
    h.apply(canary(canarySubset="nolabel") + "---\n" + V2)
    st = h.tick()
    assert st["phase"] == "Initialized"
    assert "no `version` label" in st["message"]


def test_creates_a_virtual_service_when_none_routes_the_host(h: Harness) -> None:
    h.store.delete("VirtualService", NS, "sample-app-routing")
    h.apply(canary())
    st = h.tick()
    assert st["createdVirtualService"] and st["virtualService"] == "sample-app"
    assert any("was created" in e["message"] for e in h.events())


def test_metrics_lines(h: Harness) -> None:
    h.apply(canary() + "---\n" + V2)
    h.tick()
    h.tick(2.0)
    text = "\n".join(h.ctl.metrics_lines())
    assert 'meshpilot_canary_phase{name="sample-app",namespace="traffic-demo",' \
           'phase="Progressing"} 1' in text
    assert 'meshpilot_canary_weight{name="sample-app",namespace="traffic-demo"} 50' in text
    assert 'metric="request-success-rate"} 100.0' in text
    assert 'meshpilot_canary_check_threshold_min{name="sample-app",namespace=' \
           '"traffic-demo",metric="request-success-rate"} 99.0' in text


def test_explicit_steps_header_route_mirror_and_pause(h: Harness) -> None:
    h.apply(canary(stepWeights=None, steps=[
        {"setHeaderRoute": {"name": "beta", "match": [{"headers": {"x-beta": {"exact": "1"}}}]}},
        {"mirror": {"percentage": 50}},
        {"setWeight": 20},
        {"pause": {}},
        {"setHeaderRoute": {"name": "beta", "match": []}},
        {"mirror": {"percentage": 0}},
        {"analysis": {}}]) + "---\n" + V2)
    st = run_to_end(h, 10)
    assert st["phase"] == "Paused" and st["pausedFrom"] == "pause-step"
    http = h.vs()["http"]
    assert [r.get("name") for r in http if r.get("name")] == \
        ["meshpilot-canary-sample-app-header-beta"]
    default = http[-1]
    assert default["mirror"]["subset"] == "v2" and default["mirrorPercentage"] == {"value": 50}
    assert h.default_weights() == {"v1": 80, "v2": 20}
    h.act("promote")  # ends the pause
    st = run_to_end(h)
    assert st["phase"] == "Succeeded"
    assert h.vs()["http"][-1] == {"route": [{"destination": {"host": "sample-app",
                                                             "subset": "v2"}}]}


def test_session_affinity_cookie_rule_while_the_canary_has_weight(h: Harness) -> None:
    h.apply(canary(sessionAffinity={"cookieName": "canary-session", "maxAge": "1h"})
            + "---\n" + V2)
    st = h.tick()
    cookie = st["sessionAffinityCookie"]
    assert cookie and len(cookie) == 10
    http = h.vs()["http"]
    rule = next(r for r in http if r.get("name") == "meshpilot-canary-sample-app-affinity")
    assert cookie in rule["match"][0]["headers"]["cookie"]["regex"]
    canary_dest = next(e for e in http[-1]["route"] if e["destination"]["subset"] == "v2")
    assert canary_dest["headers"]["response"]["add"]["Set-Cookie"] == \
        f"canary-session={cookie}; Max-Age=3600; Path=/"
    h.act("abort")
    h.tick()
    assert not [r for r in h.vs()["http"] if r.get("name")]


def test_webhooks_gate_count_and_notify(h: Harness) -> None:
    hooks = [{"name": n, "type": t, "url": "http://127.0.0.1:1/"} for n, t in (
        ("pre", "pre-rollout"), ("more", "confirm-traffic-increase"), ("load", "rollout"),
        ("post", "post-rollout"), ("events", "event"))]
    h.apply(canary(webhooks=hooks) + "---\n" + V2)
    h.hooks.answers["pre-rollout"] = False
    st = h.tick()
    assert st["phase"] == "Progressing" and st["stepState"] == "pre"
    assert st["failedChecks"] == 1 and h.default_weights() == {"v1": 100}
    h.hooks.answers["pre-rollout"] = True
    h.hooks.answers["confirm-traffic-increase"] = False
    st = h.tick(2.0)
    assert st["phase"] == "Waiting" and st["waitingFor"] == "confirm-traffic-increase"
    assert h.default_weights() == {"v1": 100}
    h.hooks.answers["confirm-traffic-increase"] = True
    st = h.tick(2.0)
    assert st["phase"] == "Progressing" and st["canaryWeight"] == 10
    h.act("promote", full=True)
    st = run_to_end(h)
    assert st["phase"] == "Succeeded"
    h.run(asyncio.sleep(0.05))  # event hooks are fire-and-forget
    assert "post-rollout" in h.hooks.calls and h.hooks.calls.count("event") >= 5
    assert "rollout" not in h.hooks.calls  # full promotion skipped the checks


def test_rollback_webhook_rolls_back_now(h: Harness) -> None:
    h.apply(canary(webhooks=[{"name": "stop", "type": "rollback",
                              "url": "http://127.0.0.1:1/"}]) + "---\n" + V2)
    h.hooks.answers["rollback"] = False
    h.tick()
    h.hooks.answers["rollback"] = True
    st = h.tick(2.0)
    assert st["phase"] == "Failed" and "rollback webhook stop" in st["message"]


def test_actions_refused_in_the_wrong_phase(h: Harness) -> None:
    h.apply(canary())
    h.tick()
    for action in ("pause", "resume", "abort", "retry"):
        with pytest.raises(ActionError) as e:
            h.act(action)
        assert e.value.code == 409
    with pytest.raises(ActionError) as e:
        h.act("set-weight", weight=101)
    assert e.value.code == 400
    h.act("start")  # forces the start without canary workloads
    assert h.tick()["phase"] == "Progressing"


def test_cli_view_shows_weights_checks_and_history(h: Harness) -> None:
    from meshpilot.cli.canary_command import render

    h.apply(canary() + "---\n" + V2)
    h.tick()
    h.tick(2.0)
    res = h.store.get("Canary", NS, "sample-app")
    assert res is not None
    text = render(res.to_dict(), h.events(), now=h.clock.now)
    assert "Phase:           Progressing" in text
    assert "Weights:         stable v1 50%   canary v2 50%" in text
    assert "request-success-rate  100%" in text and "request-duration      12ms" in text
    assert "ACKed: ver-" in text and "History:" in text and "CheckPassed" in text
