"""The REST API over real HTTP: Kubernetes paths, status codes, watch, and crash safety."""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .conftest import ControlPlaneProcess, free_port

pytestmark = pytest.mark.e2e
VS_PATH = "/apis/networking.istio.io/v1/namespaces/traffic-demo/virtualservices"


def call(base: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(base + path, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def virtual_service(name: str, subset: str = "v1", **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "networking.istio.io/v1",
        "kind": "VirtualService",
        "metadata": {"name": name, **meta},
        "spec": {"hosts": [f"{name}"], "http": [
            {"route": [{"destination": {"host": name, "subset": subset}}]}]},
    }


def test_crud_status_codes(control_plane: ControlPlaneProcess) -> None:
    base = control_plane.url
    code, created = call(base, "POST", VS_PATH, virtual_service("a"))
    assert code == 201 and created["metadata"]["namespace"] == "traffic-demo"
    assert call(base, "POST", VS_PATH, virtual_service("a"))[0] == 409
    code, got = call(base, "GET", f"{VS_PATH}/a")
    assert code == 200 and got["spec"]["http"][0]["route"][0]["destination"]["subset"] == "v1"
    assert call(base, "GET", f"{VS_PATH}/missing")[0] == 404

    code, status = call(base, "POST", VS_PATH, virtual_service("b", subset="Not_A_Label"))
    assert code == 422 and status["kind"] == "Status" and status["reason"] == "Invalid"
    causes = status["details"]["causes"]
    assert causes[0]["field"] == "spec.http[0].route[0].destination.subset"

    stale = virtual_service("a", subset="v2", resourceVersion="999")
    code, status = call(base, "PUT", f"{VS_PATH}/a", stale)
    assert code == 409 and "stale" in status["message"]
    fresh = virtual_service("a", subset="v2", resourceVersion=got["metadata"]["resourceVersion"])
    code, updated = call(base, "PUT", f"{VS_PATH}/a", fresh)
    assert code == 200 and updated["metadata"]["generation"] == 2

    code, _ = call(base, "PUT", f"{VS_PATH}/a/status", {"status": {"observedGeneration": 2}})
    assert code == 200
    code, got = call(base, "GET", f"{VS_PATH}/a")
    assert got["status"] == {"observedGeneration": 2} and got["metadata"]["generation"] == 2

    assert call(base, "PUT", f"{VS_PATH}/other", virtual_service("a"))[0] == 400
    req = urllib.request.Request(base + VS_PATH, data=b"{not json", method="POST")
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(req, timeout=5)
    assert bad.value.code == 400
    assert call(base, "GET", "/apis/networking.istio.io/v9/virtualservices")[0] == 404

    code, listing = call(base, "GET", "/apis/networking.istio.io/v1beta1/virtualservices")
    assert code == 200 and listing["kind"] == "VirtualServiceList"
    assert [i["metadata"]["name"] for i in listing["items"]] == ["a"]
    assert call(base, "DELETE", f"{VS_PATH}/a")[0] == 200
    assert call(base, "DELETE", f"{VS_PATH}/a")[0] == 404
    code, namespaces = call(base, "GET", "/api/v1/namespaces")
    assert code == 200 and namespaces["items"] == []


def test_core_services_path(control_plane: ControlPlaneProcess) -> None:
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sample-app"},
           "spec": {"selector": {"app": "sample-app"}, "ports": [{"port": 80}]}}
    code, _ = call(control_plane.url, "POST", "/api/v1/namespaces/default/services", svc)
    assert code == 201
    code, listing = call(control_plane.url, "GET", "/api/v1/services")
    assert code == 200 and listing["items"][0]["spec"]["ports"] == [{"port": 80}]


def test_watch_streams_changes_in_order(control_plane: ControlPlaneProcess) -> None:
    base = control_plane.url
    call(base, "POST", VS_PATH, virtual_service("first"))
    events: list[dict] = []
    ready = threading.Event()

    def reader() -> None:
        with urllib.request.urlopen(base + VS_PATH + "?watch=true", timeout=10) as resp:
            ready.set()
            for line in resp:
                events.append(json.loads(line))
                if len(events) == 4:
                    return

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    assert ready.wait(5)
    time.sleep(0.2)
    call(base, "POST", VS_PATH, virtual_service("second"))
    call(base, "PUT", f"{VS_PATH}/second", virtual_service("second", subset="v2"))
    call(base, "DELETE", f"{VS_PATH}/first")
    t.join(10)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [
        ("ADDED", "first"), ("ADDED", "second"), ("MODIFIED", "second"), ("DELETED", "first")]
    versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert versions == sorted(versions)


def test_watch_from_resource_version_replays_history(control_plane: ControlPlaneProcess) -> None:
    base = control_plane.url
    _, a = call(base, "POST", VS_PATH, virtual_service("a"))
    call(base, "POST", VS_PATH, virtual_service("b"))
    call(base, "DELETE", f"{VS_PATH}/a")
    rv = a["metadata"]["resourceVersion"]
    seen: list[tuple[str, str]] = []
    with urllib.request.urlopen(f"{base}{VS_PATH}?watch=1&resourceVersion={rv}", timeout=5) as r:
        for line in r:
            event = json.loads(line)
            seen.append((event["type"], event["object"]["metadata"]["name"]))
            if len(seen) == 2:
                break
    assert seen == [("ADDED", "b"), ("DELETED", "a")]


def test_apply_batch_endpoint_is_atomic(control_plane: ControlPlaneProcess) -> None:
    batch = [virtual_service("one"), virtual_service("two", subset="Bad Subset")]
    code, status = call(control_plane.url, "POST", "/apis/meshpilot.io/v1/apply",
                        {"objects": batch, "namespace": "traffic-demo"})
    assert code == 422
    assert status["details"]["causes"][0]["document"] == 2
    code, listing = call(control_plane.url, "GET", VS_PATH)
    assert listing["items"] == []


def test_second_control_plane_on_same_state_is_refused(
    control_plane: ControlPlaneProcess,
) -> None:
    other = ControlPlaneProcess(control_plane.state, free_port())
    other.start(wait=False)
    assert other.proc is not None
    assert other.proc.wait(20) == 1
    assert "another meshpilot control plane is using" in other.log()


def test_sigterm_shuts_down_cleanly(control_plane: ControlPlaneProcess) -> None:
    assert control_plane.stop(signal.SIGTERM) == 0
    assert "control plane stopped" in control_plane.log()


def test_kill_9_during_applies_loses_no_acknowledged_write(tmp_path: Path) -> None:
    """Batches acknowledged before a SIGKILL are all there after restart; none is half there."""
    cp = ControlPlaneProcess(tmp_path / "state", free_port())
    acknowledged: list[int] = []
    attempted = 0
    rng = random.Random(7)
    try:
        for _round in range(4):
            cp.start()
            stop_at = time.monotonic() + rng.uniform(0.3, 1.0)
            killer = threading.Timer(stop_at - time.monotonic(), cp.stop, args=(signal.SIGKILL,))
            killer.start()
            while True:
                batch_id = attempted
                attempted += 1
                objects = [
                    {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                     "metadata": {"name": f"b{batch_id}-{i}", "namespace": "crash",
                                  "labels": {"batch": str(batch_id)}},
                     "spec": {"host": f"svc{i}.example.com"}}
                    for i in range(5)
                ]
                try:
                    code, _ = call(cp.url, "POST", "/apis/meshpilot.io/v1/apply",
                                   {"objects": objects})
                except (OSError, urllib.error.URLError):
                    break
                if code == 200:
                    acknowledged.append(batch_id)
            killer.join()
            assert cp.proc is not None and cp.proc.returncode == -signal.SIGKILL
        cp.start()
        code, listing = call(cp.url, "GET",
                             "/apis/networking.istio.io/v1/namespaces/crash/destinationrules")
        assert code == 200
        per_batch: dict[str, int] = {}
        for item in listing["items"]:
            batch = item["metadata"]["labels"]["batch"]
            per_batch[batch] = per_batch.get(batch, 0) + 1
        assert all(count == 5 for count in per_batch.values()), per_batch
        assert {int(b) for b in per_batch} >= set(acknowledged)
        assert len(acknowledged) > 10
    finally:
        cp.stop()
