"""ServiceEntries and the outbound traffic policy on real Envoy sidecars.

No traffic leaves this machine: the "external APIs" are small HTTP servers on 127.0.0.1
(each answers with its own name in `x-version`), reached through ServiceEntries with
STATIC endpoints `127.0.0.1:<port>` or DNS names that resolve locally (`localhost`).

Two meshes run side by side:
- `open`: the default ALLOW_ANY control plane, a client sidecar and one workload sidecar
  (the MESH_INTERNAL entry's WorkloadEntry);
- `locked`: a control plane started with `--mesh-config` saying
  `outboundTrafficPolicy: {mode: REGISTRY_ONLY}`, and its own client sidecar.
"""

from __future__ import annotations

import http.server
import math
import socket
import subprocess
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .conftest import free_port
from .mesh import MESHPILOT, Mesh, ProxyClient, mesh, wait_for

pytestmark = pytest.mark.e2e
NS = "egress-test"
SE_API = "networking.istio.io/v1"


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("x-version", self.server.name)  # type: ignore[attr-defined]
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class LocalServer:
    """A stand-in external API on 127.0.0.1 that names itself in every answer."""

    def __init__(self, name: str) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.name = name  # type: ignore[attr-defined]
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _se(name: str, **spec: object) -> dict:
    return {"apiVersion": SE_API, "kind": "ServiceEntry",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


HTTP80 = [{"number": 80, "name": "http", "protocol": "HTTP"}]


def _open_config(s: dict[str, LocalServer], unused_port: int) -> list[dict]:
    return [
        _se("weighted", hosts=["weighted.test"], location="MESH_EXTERNAL", resolution="STATIC",
            ports=HTTP80, endpoints=[
                {"address": "127.0.0.1", "ports": {"http": s["a"].port}, "weight": 1,
                 "labels": {"version": "v1"}},
                {"address": "127.0.0.1", "ports": {"http": s["b"].port}, "weight": 3,
                 "labels": {"version": "v2"}}]),
        {"apiVersion": SE_API, "kind": "DestinationRule",
         "metadata": {"name": "weighted", "namespace": NS},
         "spec": {"host": "weighted.test", "subsets": [
             {"name": "v1", "labels": {"version": "v1"}},
             {"name": "v2", "labels": {"version": "v2"}}]}},
        {"apiVersion": SE_API, "kind": "VirtualService",
         "metadata": {"name": "weighted", "namespace": NS},
         "spec": {"hosts": ["weighted.test"], "http": [
             *({"match": [{"headers": {"x-subset": {"exact": v}}}],
                "route": [{"destination": {"host": "weighted.test", "subset": v}}]}
               for v in ("v1", "v2")),
             {"route": [{"destination": {"host": "weighted.test"}}]}]}},
        # DNS, endpoint named by a DNS name.
        _se("dns-endpoint", hosts=["dns.test"], resolution="DNS", ports=HTTP80,
            endpoints=[{"address": "localhost", "ports": {"http": s["c"].port}}]),
        # DNS, no endpoints: Envoy resolves the host itself (on the target port, so nothing
        # but the entry can explain an answer: nobody listens on `unused_port`).
        _se("dns-host", hosts=["localhost"], resolution="DNS", ports=[
            {"number": unused_port, "name": "http", "protocol": "HTTP",
             "targetPort": s["c"].port}]),
        _se("dns-rr", hosts=["rr.test"], resolution="DNS_ROUND_ROBIN", ports=HTTP80,
            endpoints=[{"address": "localhost", "ports": {"http": s["c"].port}}]),
        _se("vm", hosts=["vm.internal"], location="MESH_INTERNAL", resolution="STATIC",
            ports=HTTP80, workloadSelector={"labels": {"app": "vm-app"}}),
    ]


def _locked_config(s: dict[str, LocalServer]) -> list[dict]:
    return [
        _se("httpbin", hosts=["httpbin.test"], resolution="STATIC", ports=HTTP80,
            endpoints=[{"address": "127.0.0.1", "ports": {"http": s["a"].port}}]),
        # resolution NONE: traffic passes through to the requested host (Istio's
        # ORIGINAL_DST), here `localhost:<b>`, although the mesh is REGISTRY_ONLY.
        _se("none", hosts=["localhost"], resolution="NONE",
            ports=[{"number": s["b"].port, "name": "http", "protocol": "HTTP"}]),
    ]


@dataclass
class Env:
    open: Mesh
    locked: Mesh
    open_client: ProxyClient
    locked_client: ProxyClient
    locked_port: int
    servers: dict[str, LocalServer]
    unused_port: int


def _apply(m: Mesh, docs: list[dict]) -> None:
    result = m.run("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    assert result.returncode == 0, result.stderr


def _status(client: ProxyClient, url: str, headers: dict[str, str] | None = None
            ) -> tuple[int, str | None]:
    status, hdrs, _ = client.get(url, headers)
    return status, {k.lower(): v for k, v in hdrs.items()}.get("x-version")


def _start_open(m: Mesh, servers: dict[str, LocalServer], unused: int) -> int:
    # Config first: under ALLOW_ANY a request for a name the client does not know yet
    # would be passed through and looked up in DNS, and tests send nothing off-machine.
    m.start_control_plane()
    _apply(m, _open_config(servers, unused))
    with ThreadPoolExecutor(max_workers=2) as pool:
        client = pool.submit(m.client, "client", NS)
        pool.submit(m.workload, "vm-app-1", NS, "app=vm-app", "vm").result()
        return client.result()


def _start_locked(m: Mesh, servers: dict[str, LocalServer]) -> int:
    config = m.root / "mesh.yaml"
    config.write_text("outboundTrafficPolicy:\n  mode: REGISTRY_ONLY\n")
    m.start_control_plane("--mesh-config", str(config))
    port = m.client("client", NS)
    _apply(m, _locked_config(servers))
    return port


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    servers = {name: LocalServer(name) for name in ("a", "b", "c")}
    unused = free_port()
    with ExitStack() as stack:
        for s in servers.values():
            stack.callback(s.close)
        m_open = stack.enter_context(mesh(tmp_path_factory.mktemp("se-open")))
        m_locked = stack.enter_context(mesh(tmp_path_factory.mktemp("se-locked")))
        with ThreadPoolExecutor(max_workers=2) as pool:
            f_open = pool.submit(_start_open, m_open, servers, unused)
            f_locked = pool.submit(_start_locked, m_locked, servers)
            open_port, locked_port = f_open.result(), f_locked.result()
        e = Env(m_open, m_locked, ProxyClient(open_port), ProxyClient(locked_port),
                locked_port, servers, unused)
        stack.callback(e.open_client.close)
        stack.callback(e.locked_client.close)
        wait_for(lambda: _status(e.open_client, "http://vm.internal/") == (200, "vm"), 20,
                 m_open.control_plane)
        wait_for(lambda: _status(e.locked_client, "http://httpbin.test/")[0] == 200, 20,
                 m_locked.control_plane)
        yield e


def test_static_endpoints_split_by_weight(env: Env) -> None:
    n = 200
    seen = Counter(_status(env.open_client, "http://weighted.test/") for _ in range(n))
    assert set(seen) <= {(200, "a"), (200, "b")}, seen
    # weights 1:3 -> p(a) = 0.25; 99.9% two-sided binomial bound (z = 3.29).
    mean, sd = n * 0.25, math.sqrt(n * 0.25 * 0.75)
    assert abs(seen[(200, "a")] - mean) <= 3.29 * sd, seen


def test_endpoint_labels_route_to_destination_rule_subsets(env: Env) -> None:
    for subset, server in (("v1", "a"), ("v2", "b")):
        seen = {_status(env.open_client, "http://weighted.test/", {"x-subset": subset})
                for _ in range(10)}
        assert seen == {(200, server)}


def test_dns_resolution_of_localhost(env: Env) -> None:
    assert _status(env.open_client, "http://dns.test/") == (200, "c")
    assert _status(env.open_client, f"http://localhost:{env.unused_port}/") == (200, "c")
    assert _status(env.open_client, "http://rr.test/") == (200, "c")


def test_mesh_internal_workload_selector_picks_workload_entries(env: Env) -> None:
    assert {_status(env.open_client, "http://vm.internal/") for _ in range(5)} == {(200, "vm")}


def test_allow_any_passes_unknown_hosts_through(env: Env) -> None:
    assert _status(env.open_client, f"http://localhost:{env.servers['b'].port}/") == (200, "b")


def test_registry_only_blocks_unknown_hosts_and_serves_known_ones(env: Env) -> None:
    assert _status(env.locked_client, "http://httpbin.test/") == (200, "a")
    unknown = f"http://localhost:{env.servers['a'].port}/"
    assert _status(env.locked_client, unknown)[0] == 502
    # The resolution-NONE entry passes through to the host it names.
    assert _status(env.locked_client, f"http://localhost:{env.servers['b'].port}/") == (
        200, "b")


def test_registry_only_refuses_connect_to_unknown_hosts(env: Env) -> None:
    authority = f"localhost:{env.servers['a'].port}"
    with socket.create_connection(("127.0.0.1", env.locked_port), timeout=5) as sock:
        sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
        status = sock.recv(4096).split(b"\r\n", 1)[0]
    assert status.startswith(b"HTTP/1.1 502"), status


def test_up_rejects_bad_mesh_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("outboundTrafficPolicy:\n  mood: REGISTRY_ONLY\n")
    result = subprocess.run([*MESHPILOT, "up", "--state", str(tmp_path / "state"),
                             "--api-port", str(free_port()), "--xds-port", str(free_port()),
                             "--mesh-config", str(bad)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert str(bad) in result.stderr and "outboundTrafficPolicy.mood" in result.stderr
