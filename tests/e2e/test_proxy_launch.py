"""Sidecars, gateways and the demo app as real processes against a real control plane."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from meshpilot.proxy.bootstrap import build_bootstrap, write_bootstrap
from meshpilot.proxy.envoy import find_envoy
from meshpilot.xds.types import ProxyInfo

from .conftest import MESHPILOT, ControlPlaneProcess, free_port

pytestmark = pytest.mark.e2e

WE_PATH = "/apis/networking.istio.io/v1/namespaces/{ns}/workloadentries/{name}"


def http_get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read().decode()
    except OSError:  # not listening (yet)
        return 0, {}, ""


def api(cp: ControlPlaneProcess, path: str) -> dict[str, Any] | None:
    status, _, body = http_get(cp.url + path)
    if status == 404:
        return None
    assert status == 200, body
    return json.loads(body)


def wait_for(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


class Proc:
    """A `meshpilot ...` subprocess in its own group, with output captured to files."""

    def __init__(self, args: list[str], workdir: Path, env: dict[str, str] | None = None):
        self.out_path = workdir / f"out-{time.monotonic_ns()}.log"
        self.err_path = self.out_path.with_suffix(".err")
        self.proc = subprocess.Popen(
            [*MESHPILOT, *args], stdout=self.out_path.open("w"), stderr=self.err_path.open("w"),
            env={**os.environ, **(env or {})}, start_new_session=True)

    def out(self) -> str:
        return self.out_path.read_text()

    def err(self) -> str:
        return self.err_path.read_text()

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    started: list[Proc] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Proc:
        p = Proc(list(args), tmp_path, env)
        started.append(p)
        return p

    try:
        yield start
    finally:
        for p in started:
            p.kill()


def xds_args(cp: ControlPlaneProcess) -> list[str]:
    """Until the xDS server lands in `up`, point Envoy at a closed port: it then runs
    (PRE_INITIALIZING) but never becomes ready, which is all the lifecycle tests need."""
    info = api(cp, "/apis/meshpilot.io/v1/controlplane") or {}
    return [] if "xds" in info else ["--xds-address", f"127.0.0.1:{free_port()}"]


# --- bootstrap accepted by the real Envoy -------------------------------------------------

@pytest.mark.parametrize("proxy", [
    ProxyInfo("sample-app-v1", "default", labels={"app": "sample-app"}, inbound_port=15006,
              app_port=8081),
    ProxyInfo("istio-ingressgateway", "istio-system", kind="gateway", outbound_port=None,
              port_map={80: 8080}, xds_mode="sotw"),
], ids=["sidecar-delta", "gateway-sotw"])
def test_envoy_validates_the_generated_bootstrap(tmp_path: Path, proxy: ProxyInfo) -> None:
    cfg = build_bootstrap(proxy, xds_host="127.0.0.1", xds_port=15010, admin_port=15000,
                          token="t0k", access_log_path=str(tmp_path / "access.log"))
    path = write_bootstrap(tmp_path / "bootstrap.json", cfg)
    out = subprocess.run([str(find_envoy()), "--mode", "validate", "-c", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"configuration '{path}' OK" in out.stdout + out.stderr


# --- demo app -------------------------------------------------------------------------------

def test_demo_app_answers_with_version_headers(procs) -> None:
    port = free_port()
    app = procs("demo-app", "--port", str(port), "--version", "v2", "--name", "sample-app-v2-7")
    wait_for(lambda: "listening" in app.out(), what="demo-app ready line")
    assert app.out().strip() == (f"demo-app sample-app v2 (sample-app-v2-7) listening on "
                                 f"http://127.0.0.1:{port} (Server: nginx/1.22)")
    base = f"http://127.0.0.1:{port}"
    status, headers, body = http_get(base + "/any/path")
    assert status == 200
    assert headers["Server"] == "nginx/1.22"
    assert headers["x-version"] == "v2"
    assert body == "sample-app v2 (sample-app-v2-7)\n"
    status, headers, body = http_get(base + "/status/503")
    assert status == 503 and headers["x-version"] == "v2"
    echo = json.loads(http_get(base + "/echo?q=1")[2])
    assert echo["path"] == "/echo?q=1" and echo["version"] == "v2"
    assert echo["headers"]["Host"] == f"127.0.0.1:{port}"
    started = time.monotonic()
    assert http_get(base + "/delay/200")[0] == 200
    assert time.monotonic() - started >= 0.2
    app.signal(signal.SIGTERM)
    assert app.wait(10) == 0


def test_demo_app_server_header_override(procs) -> None:
    port = free_port()
    app = procs("demo-app", "--port", str(port), "--server-header", "custom/9")
    wait_for(lambda: "listening" in app.out(), what="demo-app ready line")
    _, headers, body = http_get(f"http://127.0.0.1:{port}/")
    assert headers["Server"] == "custom/9" and headers["x-version"] == "v1"
    assert body == "sample-app v1 (sample-app-v1-1)\n"


# --- sidecar ----------------------------------------------------------------------------------

def start_sidecar(procs, cp: ControlPlaneProcess, tmp_path: Path, name: str, app_port: int,
                  *command: str, extra: tuple[str, ...] = ()) -> Proc:
    args = ["sidecar", "--name", name, "-n", "default", "--labels",
            "app=sample-app,version=v1", "--app-port", str(app_port), "--state",
            str(tmp_path / "proxies-state"), "--server", cp.url, "--service-account", "sample",
            "--ready-timeout", "60", *xds_args(cp), *extra]
    if command:
        args += ["--", *command]
    return procs(*args)


def test_sidecar_registers_supervises_and_cleans_up(control_plane, procs, tmp_path) -> None:
    cp, app_port = control_plane, free_port()
    sc = start_sidecar(procs, cp, tmp_path, "sample-app-v1", app_port,
                       *MESHPILOT, "demo-app", "--version", "v1")
    path = WE_PATH.format(ns="default", name="sample-app-v1")
    we = wait_for(lambda: api(cp, path), what="WorkloadEntry")
    meta, spec = we["metadata"], we["spec"]
    notes = meta["annotations"]
    assert spec["address"] == "127.0.0.1"
    assert spec["labels"] == {"app": "sample-app", "version": "v1"}
    assert spec["serviceAccount"] == "sample"
    assert spec["ports"] == {"http": int(notes["meshpilot.io/inbound-port"])}
    assert notes["meshpilot.io/proxy-type"] == "sidecar"
    assert notes["meshpilot.io/app-port"] == str(app_port)
    assert notes["meshpilot.io/pid"] == str(sc.proc.pid)
    for key in ("admin-port", "outbound-port", "envoy-log", "envoy-pid", "app-pid"):
        assert notes[f"meshpilot.io/{key}"], key
    envoy_pid, app_pid = int(notes["meshpilot.io/envoy-pid"]), int(notes["meshpilot.io/app-pid"])
    assert alive(envoy_pid) and alive(app_pid)
    assert Path(notes["meshpilot.io/envoy-log"]).parent == (
        tmp_path / "proxies-state" / "proxies" / "default" / "sample-app-v1")

    # The app was started with the sidecar's environment (its instance name comes from it).
    _, headers, body = wait_for(
        lambda: (r := http_get(f"http://127.0.0.1:{app_port}/echo", 1))[0] == 200 and r,
        what="app answering")
    assert headers["x-version"] == "v1" and '"instance": "sample-app-v1"' in body
    environ = Path(f"/proc/{app_pid}/environ").read_bytes().split(b"\0")
    assert f"MESHPILOT_APP_PORT={app_port}".encode() in environ
    outbound = notes["meshpilot.io/outbound-port"]
    assert f"http_proxy=http://127.0.0.1:{outbound}".encode() in environ

    sc.signal(signal.SIGTERM)
    assert sc.wait(20) == 0, sc.err()
    assert api(cp, path) is None
    assert not alive(envoy_pid) and not alive(app_pid)
    assert "SIGTERM, stopping" in sc.err()


def test_sidecar_becomes_ready_with_envoy(control_plane, procs, tmp_path) -> None:
    info = api(control_plane, "/apis/meshpilot.io/v1/controlplane") or {}
    if "xds" not in info:
        pytest.skip("the control plane advertises no xDS server yet "
                    "(/apis/meshpilot.io/v1/controlplane has no 'xds'): Envoy cannot get ready")
    app_port = free_port()
    sc = start_sidecar(procs, control_plane, tmp_path, "ready-v1", app_port,
                       *MESHPILOT, "demo-app")
    line = wait_for(lambda: "ready:" in sc.out() and sc.out(), timeout=30, what="ready line")
    notes = api(control_plane, WE_PATH.format(ns="default", name="ready-v1"))["metadata"][
        "annotations"]
    admin = notes["meshpilot.io/admin-port"]
    assert line.strip() == (
        f"sidecar ready-v1.default ready: inbound 127.0.0.1:{notes['meshpilot.io/inbound-port']}"
        f" -> app :{app_port}, outbound proxy http://127.0.0.1:"
        f"{notes['meshpilot.io/outbound-port']}, admin http://127.0.0.1:{admin}")
    assert http_get(f"http://127.0.0.1:{admin}/ready")[2].strip() == "LIVE"
    # Stop only once the app is up: an app killed while still starting exits 143, not 0.
    wait_for(lambda: http_get(f"http://127.0.0.1:{app_port}/", 1)[0] == 200, what="app")
    sc.signal(signal.SIGTERM)
    assert sc.wait(20) == 0


def test_app_exit_stops_envoy_and_sets_the_exit_code(control_plane, procs, tmp_path) -> None:
    sc = start_sidecar(procs, control_plane, tmp_path, "short-lived", free_port(),
                       sys.executable, "-c", "import time, sys; time.sleep(1.5); sys.exit(3)")
    we = wait_for(lambda: api(control_plane, WE_PATH.format(ns="default", name="short-lived")),
                  what="WorkloadEntry")
    envoy_pid = int(we["metadata"]["annotations"]["meshpilot.io/envoy-pid"])
    assert sc.wait(20) == 3, sc.err()
    assert "app exited with code 3" in sc.err()
    assert api(control_plane, WE_PATH.format(ns="default", name="short-lived")) is None
    assert not alive(envoy_pid)


def test_sidecar_replaces_a_stale_workload_entry(control_plane, cli, procs, tmp_path) -> None:
    stale = {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
             "metadata": {"name": "crashed", "namespace": "default",
                          "annotations": {"meshpilot.io/pid": "999999999"}},
             "spec": {"address": "127.0.0.9", "labels": {"app": "old"}}}
    assert cli("apply", "-f", "-", stdin=json.dumps(stale)).code == 0
    sc = start_sidecar(procs, control_plane, tmp_path, "crashed", free_port())
    path = WE_PATH.format(ns="default", name="crashed")
    wait_for(lambda: (we := api(control_plane, path)) and we["spec"]["address"] == "127.0.0.1",
             what="replaced WorkloadEntry")
    assert api(control_plane, path)["metadata"]["annotations"]["meshpilot.io/pid"] == str(
        sc.proc.pid)
    sc.signal(signal.SIGINT)
    assert sc.wait(20) == 0
    assert api(control_plane, path) is None


def test_sigkilled_sidecar_leaves_no_envoy_behind(control_plane, procs, tmp_path) -> None:
    sc = start_sidecar(procs, control_plane, tmp_path, "killed", free_port(),
                       sys.executable, "-c", "import time; time.sleep(60)")
    we = wait_for(lambda: api(control_plane, WE_PATH.format(ns="default", name="killed")),
                  what="WorkloadEntry")
    notes = we["metadata"]["annotations"]
    pids = [int(notes["meshpilot.io/envoy-pid"]), int(notes["meshpilot.io/app-pid"])]
    os.kill(sc.proc.pid, signal.SIGKILL)  # only the supervisor: its children must follow
    sc.wait(10)
    try:
        wait_for(lambda: not any(alive(p) for p in pids), timeout=10, what="children to exit")
    finally:
        for pid in pids:
            if alive(pid):
                os.killpg(pid, signal.SIGKILL)


def test_unreachable_control_plane_is_a_clear_error(procs, tmp_path) -> None:
    sc = procs("sidecar", "--name", "x", "--app-port", str(free_port()), "--state",
               str(tmp_path), "--server", f"http://127.0.0.1:{free_port()}")
    assert sc.wait(20) == 1
    assert "cannot reach the meshpilot control plane" in sc.err()
    assert not (tmp_path / "proxies").exists()


# --- gateway ----------------------------------------------------------------------------------

def test_gateway_registers_and_deregisters(control_plane, procs, tmp_path) -> None:
    http, https = free_port(), free_port()
    gw = procs("gateway", "--name", "istio-ingressgateway", "-n", "istio-system", "--labels",
               "istio=ingressgateway", "--port-map", f"80:{http},443:{https}", "--state",
               str(tmp_path / "gw-state"), "--server", control_plane.url,
               *xds_args(control_plane))
    path = WE_PATH.format(ns="istio-system", name="istio-ingressgateway")
    we = wait_for(lambda: api(control_plane, path), what="gateway WorkloadEntry")
    notes = we["metadata"]["annotations"]
    assert we["spec"]["labels"] == {"istio": "ingressgateway"}
    assert we["spec"]["ports"] == {"port-80": http, "port-443": https}
    assert notes["meshpilot.io/proxy-type"] == "gateway"
    assert notes["meshpilot.io/port-map"] == f"80:{http},443:{https}"
    envoy_pid = int(notes["meshpilot.io/envoy-pid"])
    cmdline = Path(f"/proc/{envoy_pid}/cmdline").read_bytes().split(b"\0")
    assert cmdline[cmdline.index(b"--concurrency") + 1] == b"2"
    gw.signal(signal.SIGTERM)
    assert gw.wait(20) == 0, gw.err()
    assert api(control_plane, path) is None
    assert not alive(envoy_pid)


def test_gateway_bad_port_map_is_rejected(procs) -> None:
    gw = procs("gateway", "--name", "gw", "--port-map", "80=8080")
    assert gw.wait(20) == 1
    assert "bad --port-map entry '80=8080'" in gw.err()


def test_demo_app_counts_requests_and_can_fail_on_purpose(procs, tmp_path) -> None:
    port = free_port()
    procs("demo-app", "--port", str(port), "--status", "503")
    wait_for(lambda: http_get(f"http://127.0.0.1:{port}/count", 1)[0] == 200, what="app")
    assert http_get(f"http://127.0.0.1:{port}/")[0] == 503
    assert http_get(f"http://127.0.0.1:{port}/status/200")[0] == 200
    count = json.loads(http_get(f"http://127.0.0.1:{port}/count")[2])
    assert count["requests"] == 2 and count["paths"] == {"/": 1, "/status/200": 1}
