"""The seed's Kubernetes steps, standalone, on one mesh in file order:

- `kubectl apply` of the Deployments -> `meshpilot run` (replicas, workload name, restarts);
- `kubectl run ... curlimages/curl -- curl ...` -> `meshpilot curl` (through a short-lived
  client sidecar, a reused `curl-client`, `--via`; `-w`; HTTPS with `--resolve` through
  the ingress gateway);
- `kubectl delete namespace traffic-demo` -> `meshpilot delete namespace` (no object and
  no process of the namespace left, others untouched);
- tearing it all down -> `meshpilot down` (proxies and the control plane; idempotent).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import signal
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from meshpilot.proxy.pids import alive

from .conftest import free_port
from .mesh import Mesh, Proc, mesh, wait_for
from .test_gateways import Certs

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).parents[2] / "examples" / "traffic-demo"
NS = "traffic-demo"
HOST = "sample-app.hashfoundry.local"
WE = "/apis/networking.istio.io/v1/namespaces/{ns}/workloadentries"


@dataclass
class World:
    m: Mesh
    v1: Proc
    v2: Proc
    pids: dict[str, int] = field(default_factory=dict)  # name -> pid, to check at cleanup


def entries(m: Mesh, ns: str = NS) -> dict[str, dict]:
    with urllib.request.urlopen(m.server + WE.format(ns=ns), timeout=5) as r:
        return {we["metadata"]["name"]: we for we in json.loads(r.read())["items"]}


def notes(we: dict) -> dict[str, str]:
    return we["metadata"]["annotations"]


def curl(m: Mesh, *args: str):
    return m.run("curl", *args)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("run-curl")
    with mesh(root) as m:
        m.start_control_plane()
        m.apply(EXAMPLES / "base" / "10-sample-app-service.yaml",
                EXAMPLES / "base" / "20-sample-app-subsets.yaml",
                EXAMPLES / "base" / "30-sample-app-routing.yaml")
        v1 = m.spawn("run-v1", "run", "sample-app-v1", "-n", NS, "--labels",
                     "app=sample-app,version=v1", "--replicas", "2")
        v2 = m.spawn("run-v2", "run", "sample-app-v2", "-n", NS, "--labels",
                     "app=sample-app,version=v2")
        for proc, name, n in ((v1, "sample-app-v1", 2), (v2, "sample-app-v2", 1)):
            wait_for(lambda p=proc, w=name, k=n: f"workload {w}.{NS}: {k}/{k} replicas ready"
                     in p.log.read_text(), 40, proc)
        yield World(m, v1, v2)


def test_run_registers_each_replica_of_the_workload(world: World) -> None:
    we = entries(world.m)
    assert sorted(we) == ["sample-app-v1-1", "sample-app-v1-2", "sample-app-v2-1"]
    for name, proc, workload in (("sample-app-v1-1", world.v1, "sample-app-v1"),
                                 ("sample-app-v1-2", world.v1, "sample-app-v1"),
                                 ("sample-app-v2-1", world.v2, "sample-app-v2")):
        n = notes(we[name])
        assert n["meshpilot.io/workload"] == workload
        assert n["meshpilot.io/pid"] == str(proc.proc.pid)  # one supervisor per workload
        assert we[name]["spec"]["labels"]["version"] == workload[-2:]
        for key in ("envoy-pid", "app-pid"):
            assert alive(int(n[f"meshpilot.io/{key}"]))
    log = world.v1.log.read_text()
    assert re.search(rf"^sample-app-v1-1\.{NS} ready: app :\d+ \(pid \d+\) behind sidecar "
                     r"inbound 127\.0\.0\.1:\d+, outbound proxy http://127\.0\.0\.1:\d+, admin ",
                     log, re.M)
    assert len(re.findall(r"^sample-app-v1-\d\.traffic-demo ready", log, re.M)) == 2


def test_curl_through_a_short_lived_client_sidecar(world: World) -> None:
    def v2_answers() -> bool:
        r = curl(world.m, "-n", NS, "-s", "-H", "version: v2", "http://sample-app/")
        return r.returncode == 0 and r.stdout == "sample-app v2 (sample-app-v2-1)\n"

    wait_for(v2_answers, 20)
    r = curl(world.m, "-n", NS, "http://sample-app/", "-w", "%{http_code} %{time_total}\\n")
    assert r.returncode == 0, r.stderr
    body, written = r.stdout.splitlines()
    assert re.fullmatch(r"sample-app v1 \(sample-app-v1-[12]\)", body)
    assert re.fullmatch(r"200 \d+\.\d{6}", written)
    # The seed's fault-injection style line, with an HTTP error that is not a curl error.
    r = curl(world.m, "-n", NS, "-s", "-o", "/dev/null", "-w", "HTTP Code: %{http_code}\\n",
             "http://sample-app/status/503")
    assert (r.returncode, r.stdout) == (0, "HTTP Code: 503\n")


def test_curl_reuses_curl_client_and_via_reaches_every_replica(world: World) -> None:
    m = world.m
    # Every port from this process: ports picked in two processes could collide.
    client = m.spawn("curl-client", "sidecar", "--name", "curl-client", "-n", NS, "--labels",
                     "app=curl-client", "--app-port", str(free_port()), "--inbound-port",
                     str(free_port()), "--outbound-port", str(free_port()), "--admin-port",
                     str(free_port()))
    wait_for(lambda: "ready:" in client.log.read_text(), 30, client)
    world.pids["curl-client"] = client.proc.pid
    r = curl(m, "-v", "-n", NS, "-H", "version: v2", "http://sample-app/")
    assert r.returncode == 0 and r.stdout == "sample-app v2 (sample-app-v2-1)\n"
    assert f"through sidecar curl-client.{NS}" in r.stderr
    r = curl(m, "-n", NS, "--via", "sample-app-v1", "-w", "%{remote_ip}", "http://sample-app/")
    assert r.returncode == 0 and r.stdout.endswith("127.0.0.1")
    # Round robin over both v1 replicas, through the client's outbound port.
    port = int(notes(entries(m)["curl-client"])["meshpilot.io/outbound-port"])
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    seen: Counter = Counter()
    for _ in range(20):
        conn.request("GET", "http://sample-app/")
        resp = conn.getresponse()
        resp.read()
        seen[resp.getheader("x-instance")] += 1
    conn.close()
    assert set(seen) == {"sample-app-v1-1", "sample-app-v1-2"}, seen

    def metrics_name_the_workload() -> bool:
        with urllib.request.urlopen(m.server + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
        return 'destination_workload="sample-app-v1"' in text

    wait_for(metrics_name_the_workload, 10)


def test_a_killed_replica_is_restarted(world: World) -> None:
    m = world.m
    before = notes(entries(m)["sample-app-v1-1"])
    os.kill(int(before["meshpilot.io/app-pid"]), signal.SIGKILL)

    def replaced() -> bool:
        we = entries(m).get("sample-app-v1-1")
        return we is not None and notes(we)["meshpilot.io/app-pid"] != before[
            "meshpilot.io/app-pid"]

    wait_for(replaced, 20, world.v1)
    log = world.v1.log.read_text()
    assert "replica sample-app-v1-1.traffic-demo: app exited with code 137; restarting in 1s " \
           "(restart 1)" in log
    assert f"sample-app-v1-1.{NS} ready (restart 1):" in log
    after = notes(entries(m)["sample-app-v1-1"])
    assert after["meshpilot.io/pid"] == before["meshpilot.io/pid"]  # same supervisor
    assert after["meshpilot.io/inbound-port"] == before["meshpilot.io/inbound-port"]
    assert world.v1.proc.poll() is None


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_curl_https_through_the_ingress_gateway_with_resolve(world: World, tmp_path) -> None:
    m = world.m
    certs = Certs(tmp_path)
    certs.ca()
    crt, key = certs.leaf("server", HOST)
    r = m.run("create", "secret", "tls", "sample-app-tls", "--cert", str(crt), "--key",
              str(key), "-n", "istio-system")
    assert r.returncode == 0, r.stderr
    m.apply(EXAMPLES / "base" / "40-ingress-gateway.yaml")
    http_port, https_port = free_port(), free_port()
    gw = m.spawn("gateway", "gateway", "--name", "istio-ingressgateway", "-n", "istio-system",
                 "--labels", "istio=ingressgateway", "--admin-port", str(free_port()),
                 "--port-map", f"80:{http_port},443:{https_port}")
    wait_for(lambda: "ready:" in gw.log.read_text(), 30, gw)
    world.pids["gateway"] = gw.proc.pid
    ca = str(certs.path("ca.crt"))
    resolve = f"{HOST}:443:127.0.0.1"

    def serving() -> bool:
        r = curl(m, "-s", f"https://{HOST}/", "--resolve", resolve, "--cacert", ca)
        return r.returncode == 0 and r.stdout.startswith("sample-app v1")

    wait_for(serving, 20, gw)
    r = curl(m, f"https://{HOST}/v2", "--resolve", resolve, "--cacert", ca,
             "-w", " %{http_code} %{remote_port}")
    assert (r.returncode, r.stdout) == (0, f"sample-app v2 (sample-app-v2-1)\n 200 {https_port}")
    # The seed's plain-HTTP gateway check: Host header to the gateway's address.
    r = curl(m, "-H", f"Host: {HOST}", "http://127.0.0.1/v2", "-w", " %{remote_port}")
    assert r.stdout == f"sample-app v2 (sample-app-v2-1)\n {http_port}"
    r = curl(m, f"https://{HOST}/", "--resolve", resolve, "-w", "%{http_code}")
    assert (r.returncode, r.stdout) == (60, "000")
    assert "SSL certificate problem" in r.stderr
    assert curl(m, "-k", "-s", f"https://{HOST}/", "--resolve", resolve).returncode == 0


def test_delete_namespace_leaves_no_object_and_no_process(world: World) -> None:
    m = world.m
    we = entries(m)
    pids = {f"run {p.name}": p.proc.pid for p in (world.v1, world.v2)}
    if "curl-client" in world.pids:
        pids["curl-client"] = world.pids["curl-client"]
    for name, entry in we.items():
        for key in ("envoy-pid", "app-pid"):
            if f"meshpilot.io/{key}" in notes(entry):
                pids[f"{name} {key}"] = int(notes(entry)[f"meshpilot.io/{key}"])
    assert all(alive(pid) for pid in pids.values()), pids
    r = m.run("delete", "namespace", NS)
    assert r.returncode == 0, r.stderr
    assert f"stopped meshpilot run (pid {world.v1.proc.pid}): sample-app-v1-1.{NS}, " \
           f"sample-app-v1-2.{NS}" in r.stdout
    assert re.search(rf'^namespace "{NS}" deleted \(\d+ objects\)$', r.stdout, re.M)
    assert world.v1.proc.wait(10) == 0 and world.v2.proc.wait(10) == 0
    wait_for(lambda: not any(alive(pid) for pid in pids.values()), 10)
    listing = m.run("get", "all", "-n", NS)
    assert listing.returncode == 0 and listing.stdout == ""
    assert f'No resources found in {NS} namespace.' in listing.stderr
    # Other namespaces keep their objects and processes (the ingress gateway).
    if "gateway" in world.pids:
        assert alive(world.pids["gateway"])
        assert "istio-ingressgateway" in entries(m, "istio-system")
    again = m.run("delete", "ns", NS)
    assert again.returncode == 1 and "not found" in again.stderr
    assert m.run("delete", "ns", NS, "--ignore-not-found").returncode == 0


def test_down_stops_the_rest_and_is_idempotent(world: World) -> None:
    m = world.m
    assert m.control_plane is not None
    state = str(m.root / "cp-state")
    r = m.run("down", "--state", state)
    assert r.returncode == 0, r.stderr
    assert f"stopped control plane (pid {m.control_plane.proc.pid}, state {state})" in r.stdout
    if "gateway" in world.pids:
        assert (f"stopped meshpilot gateway (pid {world.pids['gateway']}): "
                "istio-ingressgateway.istio-system") in r.stdout
        assert not alive(world.pids["gateway"])
    assert m.control_plane.proc.wait(10) == 0
    again = m.run("down", "--state", state)
    assert again.returncode == 0 and again.stdout.startswith("nothing to stop")
