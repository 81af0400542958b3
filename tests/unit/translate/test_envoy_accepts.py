"""Real Envoy accepts what the translator generates, and routes real requests with it.

`envoy --mode validate` parses every resource with Envoy's own validation (PGV rules,
extension lookup by type URL, duplicate domains...), which protobuf alone never checks.
The traffic test runs the translated config with no control plane (EDS and RDS inlined)
and sends requests through the explicit HTTP proxy, as an app would.
"""

from __future__ import annotations

import collections
import http.server
import json
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshpilot.proxy.envoy import EnvoyNotFound, find_envoy
from meshpilot.snapshot import MeshConfig, MeshSnapshot
from meshpilot.xds.translate import translate
from meshpilot.xds.types import ProxyInfo

from .cases import CASES, WORKLOADS
from .envoy_check import envoy_validate, static_bootstrap_for
from .helpers import CLIENT, EXAMPLES, SEED, load, resource, snapshot
from .test_golden import PROXY_CASES

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def envoy() -> Path:
    try:
        return find_envoy()
    except EnvoyNotFound as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("case", sorted(CASES) + sorted(PROXY_CASES))
def test_envoy_validates_golden_cases(envoy: Path, case: str) -> None:
    scenario, proxy = PROXY_CASES.get(case, (case, CLIENT))
    result = envoy_validate(envoy, translate(snapshot(*CASES[scenario]), proxy))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("proxy", [
    ProxyInfo(name="gw", namespace="istio-system", kind="gateway"),
    ProxyInfo(name="plain", namespace="other", outbound_port=15001),
])
@pytest.mark.parametrize("policy", ["ALLOW_ANY", "REGISTRY_ONLY"])
def test_envoy_validates_variants(envoy: Path, proxy: ProxyInfo, policy: str) -> None:
    snap = snapshot(EXAMPLES / "base", WORKLOADS, SEED / "03-canary.yaml",
                    mesh=MeshConfig(outbound_traffic_policy=policy))  # type: ignore[arg-type]
    result = envoy_validate(envoy, translate(snap, proxy))
    assert result.returncode == 0, result.stdout + result.stderr


def test_envoy_accepts_blackholed_and_repeated_destinations(envoy: Path) -> None:
    """Missing subsets/hosts become BlackHoleCluster, possibly twice in one weighted route."""
    vs = resource("VirtualService", "broken", {"hosts": ["sample-app"], "http": [
        {"match": [{"headers": {"x": {}}}], "route": [
            {"destination": {"host": "sample-app", "subset": "v9"}, "weight": 50},
            {"destination": {"host": "ghost"}, "weight": 50}]},
        {"route": [{"destination": {"host": "sample-app", "subset": "v1"}, "weight": 1},
                   {"destination": {"host": "sample-app", "subset": "v1"}, "weight": 1}]}]})
    snap = MeshSnapshot.build([*load(*CASES["canary-90-10"][:3]), vs], 1)
    result = envoy_validate(envoy, translate(snap, CLIENT))
    assert result.returncode == 0, result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(address: str, port: int, body: str) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = f"{body} {self.headers.get('host', '')} {self.path}".encode()
            self.send_response(200)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def canary_envoy(envoy: Path, tmp_path: Path) -> Iterator[urllib.request.OpenerDirector]:
    """The seed's canary config, backends on 127.0.0.11/12 (v1) and .21 (v2)."""
    servers = [_serve("127.0.0.11", 18001, "v1"), _serve("127.0.0.12", 18001, "v1"),
               _serve("127.0.0.21", 18002, "v2")]
    port = _free_port()
    proxy = ProxyInfo(name="sleep", namespace="traffic-demo", outbound_port=port)
    resources = translate(snapshot(*CASES["canary-90-10"]), proxy)
    path = tmp_path / "bootstrap.json"
    path.write_text(json.dumps(static_bootstrap_for(resources)))
    proc = subprocess.Popen(
        [str(envoy), "-c", str(path), "-l", "error", "--disable-hot-restart"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler({"http": f"http://127.0.0.1:{port}"})
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("Envoy did not start") from None
                time.sleep(0.05)
        yield opener
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for s in servers:
            s.shutdown()


def test_canary_traffic_through_explicit_proxy(canary_envoy: urllib.request.OpenerDirector) -> (
    None
):
    counts: collections.Counter[str] = collections.Counter()
    for _ in range(400):
        with canary_envoy.open("http://sample-app/hello", timeout=5) as resp:
            counts[resp.read().decode().split()[0]] += 1
    # 90/10 split: v2 share 10% +- generous tolerance for 400 samples.
    assert 15 <= counts["v2"] <= 70, counts
    req = urllib.request.Request("http://sample-app.traffic-demo.svc.cluster.local/x",
                                 headers={"canary": "true"})
    for _ in range(20):
        with canary_envoy.open(req, timeout=5) as resp:
            body = resp.read().decode()
            assert body.startswith("v2 sample-app.traffic-demo.svc.cluster.local /x"), body


def test_unknown_port_is_not_routed_to_the_service(
    canary_envoy: urllib.request.OpenerDirector,
) -> None:
    # `sample-app:8080` is not a vhost domain; ALLOW_ANY passes it through (DFP), where
    # nothing listens on sample-app:8080 -> an error from the passthrough, never v1/v2.
    with pytest.raises(urllib.error.HTTPError) as err:
        canary_envoy.open("http://sample-app:8080/", timeout=10)
    assert err.value.code in (502, 503)
