"""VirtualService `tcp` and `tls` routes on real Envoy sidecars.

Raw-TCP apps run behind sidecars started with `--app-protocol tcp` (inbound tcp_proxy);
the client tunnels through its sidecar's explicit proxy with HTTP CONNECT, as any
proxy-aware client (`curl -p -x`) does, then speaks its own protocol over the tunnel.
"""

from __future__ import annotations

import math
import socket
import ssl
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .conftest import free_port
from .mesh import Mesh, _http_ok, mesh, read_line, wait_for

pytestmark = pytest.mark.e2e
NS = "traffic-demo"
APP = Path(__file__).with_name("tcp_echo_app.py")


def manifests() -> str:
    def svc(name: str, port: dict) -> dict:
        return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
                "spec": {"selector": {"app": name}, "ports": [port]}}

    def subsets(name: str) -> dict:
        return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                "metadata": {"name": name, "namespace": NS},
                "spec": {"host": name, "subsets": [
                    {"name": v, "labels": {"version": v}} for v in ("v1", "v2")]}}

    docs = [svc("tcp-echo", {"name": "tcp-echo", "port": 9000}), subsets("tcp-echo"),
            svc("tls-echo", {"name": "tls", "port": 8443}), subsets("tls-echo")]
    return yaml.safe_dump_all(docs)


def vs(host: str, **rules: list[dict]) -> str:
    return yaml.safe_dump({
        "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": host, "namespace": NS},
        "spec": {"hosts": [host], **rules},
    })


def dest(host: str, subset: str, weight: int | None = None) -> dict:
    out: dict = {"destination": {"host": host, "subset": subset}}
    if weight is not None:
        out["weight"] = weight
    return out


class TunnelRefused(Exception):
    """The proxy answered the CONNECT with something other than 200."""


def connect(proxy_port: int, authority: str) -> socket.socket:
    """Open a CONNECT tunnel through the client sidecar; raises TunnelRefused on non-200."""
    sock = socket.create_connection(("127.0.0.1", proxy_port), timeout=5)
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            break
        head += chunk
    status = head.split(b"\r\n", 1)[0]
    if not status.startswith(b"HTTP/1.1 200"):
        sock.close()
        raise TunnelRefused(status.decode(errors="replace"))
    assert head.endswith(b"\r\n\r\n"), head  # nothing of the tunnel read ahead
    return sock


def tcp_version(proxy_port: int, authority: str = "tcp-echo:9000") -> str:
    """One connection: which version answered (the app echoes `<version>:<line>`)."""
    with connect(proxy_port, authority) as sock:
        sock.sendall(b"hello tcp\n")
        answer = read_line(sock)
    version, _, echoed = answer.partition(b":")
    assert echoed == b"hello tcp\n", answer
    return version.decode()


@dataclass
class TlsClient:
    proxy_port: int
    ca: Path

    def version(self, authority: str = "tls-echo:8443", sni: str = "tls-echo") -> str:
        """CONNECT, then a verified TLS handshake with `sni` end to end with the app."""
        ctx = ssl.create_default_context(cafile=str(self.ca))
        raw = connect(self.proxy_port, authority)
        with ctx.wrap_socket(raw, server_hostname=sni) as tls:
            tls.sendall(b"hello tls\n")
            answer = read_line(tls)
        version, _, echoed = answer.partition(b":")
        assert echoed == b"hello tls\n", answer
        return version.decode()


def counts(sample: Callable[[], str], n: int) -> Counter:
    return Counter(sample() for _ in range(n))


def until(check: Callable[[], bool], m: Mesh) -> None:
    def safe() -> bool:
        try:
            return check()
        except (TunnelRefused, OSError, AssertionError):
            return False

    wait_for(safe, 15, m.control_plane, every=0.1)


def apply_text(m: Mesh, text: str) -> None:
    result = m.run("apply", "-f", "-", stdin=text)
    assert result.returncode == 0, result.stderr


def tcp_workload(m: Mesh, name: str, labels: str, version: str, *app_args: str) -> int:
    """The echo app behind a `--app-protocol tcp` sidecar; returns the app port."""
    app_port, admin = free_port(), free_port()
    proc = m.spawn(name, "sidecar", "--name", name, "-n", NS, "--labels", labels,
                   "--app-port", str(app_port), "--app-protocol", "tcp",
                   "--admin-port", str(admin), "--outbound-port", str(free_port()), "--",
                   sys.executable, str(APP), "--port", str(app_port), "--version", version,
                   *app_args)
    wait_for(lambda: _http_ok(f"http://127.0.0.1:{admin}/ready"), 30, proc)
    return app_port


@dataclass
class TcpMesh:
    m: Mesh
    client: int
    tls: TlsClient
    app_ports: dict[str, int]


@pytest.fixture(scope="module")
def tcp_mesh(tmp_path_factory) -> Iterator[TcpMesh]:
    root = tmp_path_factory.mktemp("tcp-mesh")
    cert, key = root / "tls-echo.crt", root / "tls-echo.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=tls-echo",
                    "-addext", "subjectAltName=DNS:tls-echo,DNS:tls-echo.traffic-demo"],
                   check=True, capture_output=True, timeout=30)
    with mesh(root) as m:
        m.start_control_plane()
        apply_text(m, manifests())
        ports = {}
        for v in ("v1", "v2"):
            ports[f"tcp-{v}"] = tcp_workload(m, f"tcp-echo-{v}", f"app=tcp-echo,version={v}", v)
            ports[f"tls-{v}"] = tcp_workload(m, f"tls-echo-{v}", f"app=tls-echo,version={v}",
                                             v, "--cert", str(cert), "--key", str(key))
        client = m.client()
        yield TcpMesh(m, client, TlsClient(client, cert), ports)


def test_tcp_without_virtual_service_reaches_every_instance(tcp_mesh: TcpMesh) -> None:
    t = tcp_mesh
    until(lambda: set(counts(lambda: tcp_version(t.client), 20)) == {"v1", "v2"}, t.m)
    # Every alias of the service works, each with its port.
    for authority in ("tcp-echo.traffic-demo:9000",
                      "tcp-echo.traffic-demo.svc.cluster.local:9000"):
        assert tcp_version(t.client, authority) in ("v1", "v2")


def test_tls_without_virtual_service_is_opaque_tcp(tcp_mesh: TcpMesh) -> None:
    t = tcp_mesh
    until(lambda: set(counts(t.tls.version, 20)) == {"v1", "v2"}, t.m)


def test_tcp_route_port_match_then_weighted_split(tcp_mesh: TcpMesh) -> None:
    t = tcp_mesh
    # The first rule is for another port and the second for other clients: skipped.
    apply_text(t.m, vs("tcp-echo", tcp=[
        {"match": [{"port": 9999}], "route": [dest("tcp-echo", "v1")]},
        {"match": [{"sourceLabels": {"app": "someone-else"}}], "route": [dest("tcp-echo", "v1")]},
        {"match": [{"port": 9000, "sourceNamespace": NS}], "route": [dest("tcp-echo", "v2")]},
    ]))
    until(lambda: counts(lambda: tcp_version(t.client), 20) == Counter(v2=20), t.m)
    assert counts(lambda: tcp_version(t.client), 50) == Counter(v2=50)

    apply_text(t.m, vs("tcp-echo", tcp=[
        {"route": [dest("tcp-echo", "v1", 80), dest("tcp-echo", "v2", 20)]}]))
    until(lambda: tcp_version(t.client) == "v1", t.m)  # the split has arrived
    n = 300
    half_width = 3.29 * math.sqrt(n * 0.2 * 0.8)  # 99.9% two-sided binomial bound
    samples = []
    # A second, independent sample only if the first is outside the bound: a real bias
    # fails both (chance of a false failure: 1e-6); one CI run under heavy load once saw
    # 37/300 while calm runs give 54-68.
    for _ in range(2):
        seen = counts(lambda: tcp_version(t.client), n)
        assert seen["v1"] + seen["v2"] == n, seen
        samples.append(seen)
        if abs(seen["v2"] - n * 0.2) <= half_width:
            break
    assert abs(samples[-1]["v2"] - n * 0.2) <= half_width, samples


def test_tls_route_picks_destination_by_sni(tcp_mesh: TcpMesh) -> None:
    t = tcp_mesh
    apply_text(t.m, vs("tls-echo", tls=[
        {"match": [{"port": 8443, "sniHosts": ["tls-echo"]}], "route": [dest("tls-echo", "v2")]},
    ]))
    until(lambda: counts(t.tls.version, 20) == Counter(v2=20), t.m)
    assert counts(t.tls.version, 30) == Counter(v2=30)
    # A name no sniHosts covers has no route: the tunnel is refused (Istio: no filter chain).
    with pytest.raises(TunnelRefused, match="503"):
        t.tls.version("tls-echo.traffic-demo:8443", sni="tls-echo.traffic-demo")


def test_connect_to_unknown_host_passes_through(tcp_mesh: TcpMesh) -> None:
    """ALLOW_ANY: a CONNECT the mesh knows nothing about goes straight to host:port."""
    t = tcp_mesh
    assert tcp_version(t.client, f"127.0.0.1:{t.app_ports['tcp-v1']}") == "v1"
