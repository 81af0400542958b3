"""Gateway TLS modes that the gateway does not simply terminate, on real Envoy.

- PASSTHROUGH: a TLS server on 443 with a VirtualService `tls` route by `sniHosts` to a
  TLS echo app behind a `--app-protocol tcp` sidecar. The client connects to the
  gateway's mapped port with SNI `tls-echo.example` and completes the handshake against
  the app's own self-signed certificate, so the gateway only forwarded the bytes; a name
  no route covers has no filter chain and the connection is closed.
- OPTIONAL_MUTUAL: a client without a certificate and one with a CA-signed certificate
  are both routed (200).
- TCP: a plain TCP server with a VirtualService `tcp` route to a TCP echo app behind a
  `--app-protocol tcp` sidecar; bytes go through both ways.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import free_port
from .mesh import Mesh, _http_ok, echo_line, mesh, wait_for
from .test_gateways import (
    GW_NS,
    HOST,
    Certs,
    apply_docs,
    create_secret,
    der,
    doc,
    get_tls,
    tls_context,
)

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")]
NS = "traffic-demo"
SNI = "tls-echo.example"
APP = Path(__file__).with_name("tcp_echo_app.py")


@dataclass
class PassGw:
    m: Mesh
    certs: Certs
    app_cert: Path
    tls: int
    optional: int
    tcp: int


def echo_workload(m: Mesh, app: str, *app_args: str) -> None:
    """The echo app (v1) behind a `--app-protocol tcp` sidecar."""
    app_port, admin = free_port(), free_port()
    proc = m.spawn(f"{app}-v1", "sidecar", "--name", f"{app}-v1", "-n", NS,
                   "--labels", f"app={app},version=v1", "--app-port", str(app_port),
                   "--app-protocol", "tcp", "--admin-port", str(admin),
                   "--outbound-port", str(free_port()), "--",
                   sys.executable, str(APP), "--port", str(app_port), "--version", "v1",
                   *app_args)
    wait_for(lambda: _http_ok(f"http://127.0.0.1:{admin}/ready"), 30, proc)


@pytest.fixture(scope="module")
def pgw(tmp_path_factory) -> Iterator[PassGw]:
    root = tmp_path_factory.mktemp("gateway-passthrough")
    certs = Certs(root)
    certs.ca()
    certs.leaf("server", HOST)
    app_cert, app_key = root / "tls-echo.crt", root / "tls-echo.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-keyout", str(app_key), "-out", str(app_cert), "-subj", f"/CN={SNI}",
                    "-addext", f"subjectAltName=DNS:{SNI}"],
                   check=True, capture_output=True, timeout=30)
    with mesh(root) as m:
        m.start_control_plane()
        apply_docs(m, {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "tls-echo", "namespace": NS},
            "spec": {"selector": {"app": "tls-echo"},
                     "ports": [{"name": "tls-echo", "port": 8443}]}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "tcp-echo", "namespace": NS},
             "spec": {"selector": {"app": "tcp-echo"},
                      "ports": [{"name": "tcp-echo", "port": 9000}]}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "sample-app", "namespace": NS},
             "spec": {"selector": {"app": "sample-app"},
                      "ports": [{"name": "http", "port": 80}]}})
        echo_workload(m, "tls-echo", "--cert", str(app_cert), "--key", str(app_key))
        echo_workload(m, "tcp-echo")
        m.workload("sample-app-v1", NS, "app=sample-app,version=v1", "v1")
        ports = PassGw(m, certs, app_cert, free_port(), free_port(), free_port())
        admin = free_port()
        proc = m.spawn("gateway", "gateway", "--name", "istio-ingressgateway", "-n", GW_NS,
                       "--labels", "istio=ingressgateway", "--admin-port", str(admin),
                       "--port-map", f"443:{ports.tls},9443:{ports.optional},31400:{ports.tcp}")
        wait_for(lambda: _http_ok(f"http://127.0.0.1:{admin}/ready"), 30, proc)
        yield ports


def echo_via_gateway(port: int, ca: Path, sni: str = SNI) -> tuple[bytes, bytes]:
    """Straight to the gateway's port: a TLS handshake with `sni`, verified against the
    app's self-signed certificate; returns the echoed line and the peer certificate."""
    ctx = ssl.create_default_context(cafile=str(ca))
    return echo_line(port, b"hello passthrough\n", ctx, sni)


def test_passthrough_routes_by_sni_to_the_app_certificate(pgw: PassGw) -> None:
    apply_docs(pgw.m, doc("Gateway", "tls-gateway", {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 443, "name": "tls", "protocol": "TLS"},
                     "tls": {"mode": "PASSTHROUGH"}, "hosts": [SNI]}]}),
        doc("VirtualService", "tls-echo", {
            "hosts": [SNI], "gateways": ["tls-gateway"],
            "tls": [{"match": [{"port": 443, "sniHosts": [SNI]}],
                     "route": [{"destination": {"host": "tls-echo.traffic-demo.svc"
                                                        ".cluster.local",
                                                "port": {"number": 8443}}}]}]}))

    def serving() -> bool:
        try:
            return echo_via_gateway(pgw.tls, pgw.app_cert)[0] == b"v1:hello passthrough\n"
        except OSError:
            return False

    wait_for(serving, 20, pgw.m.control_plane)
    for _ in range(5):
        line, peer = echo_via_gateway(pgw.tls, pgw.app_cert)
        assert line == b"v1:hello passthrough\n"
        # The certificate the client verified is the app's own: the gateway did not
        # terminate TLS.
        assert peer == der(pgw.app_cert)
    # No filter chain for another name: Envoy closes the connection during the handshake.
    with pytest.raises(OSError):
        echo_via_gateway(pgw.tls, pgw.app_cert, sni="unknown.example")


def test_optional_mutual_accepts_with_and_without_client_certificate(pgw: PassGw) -> None:
    crt, key = pgw.certs.path("server.crt"), pgw.certs.path("server.key")
    create_secret(pgw.m, "sample-app-optional", crt, key, pgw.certs.path("ca.crt"))
    client = pgw.certs.leaf("client", "test-client", server=False)
    apply_docs(pgw.m, doc("Gateway", "optional-gateway", {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 9443, "name": "https-optional", "protocol": "HTTPS"},
                     "hosts": [HOST],
                     "tls": {"mode": "OPTIONAL_MUTUAL",
                             "credentialName": "sample-app-optional"}}]}),
        doc("VirtualService", "optional-vs", {
            "hosts": [HOST], "gateways": ["optional-gateway"],
            "http": [{"route": [{"destination": {"host": "sample-app"}}]}]}))
    without_cert = tls_context(pgw.certs)
    with_cert = tls_context(pgw.certs, client)

    def serving() -> bool:
        try:
            return get_tls(pgw.optional, without_cert)[0] == 200
        except OSError:
            return False

    wait_for(serving, 20, pgw.m.control_plane)
    for ctx in (without_cert, with_cert, without_cert):
        status, headers, _, peer = get_tls(pgw.optional, ctx)
        assert (status, headers.get("x-version")) == (200, "v1")
        assert peer == der(crt)


def tcp_echo(port: int) -> bytes:
    return echo_line(port, b"hello tcp\n")[0]


def test_tcp_server_proxies_to_tcp_route(pgw: PassGw) -> None:
    apply_docs(pgw.m, doc("Gateway", "tcp-gateway", {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 31400, "name": "tcp", "protocol": "TCP"},
                     "hosts": ["*"]}]}),
        doc("VirtualService", "tcp-echo", {
            "hosts": ["*"], "gateways": ["tcp-gateway"],
            "tcp": [{"match": [{"port": 31400}],
                     "route": [{"destination": {"host": "tcp-echo",
                                                "port": {"number": 9000}}}]}]}))

    def serving() -> bool:
        try:
            return tcp_echo(pgw.tcp) == b"v1:hello tcp\n"
        except OSError:
            return False

    wait_for(serving, 20, pgw.m.control_plane)
    assert [tcp_echo(pgw.tcp) for _ in range(5)] == [b"v1:hello tcp\n"] * 5
