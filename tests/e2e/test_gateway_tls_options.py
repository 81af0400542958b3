"""Gateway TLS server options on real Envoy.

- Several HTTPS servers on one port with different hosts and `credentialName`s: the
  certificate is chosen by SNI (a.example gets cert A, b.example gets cert B, both
  verified against the test CA) and both are routed.
- `minProtocolVersion: TLSV1_3`: a TLS 1.2-only client is refused, a TLS 1.3 client is
  served.
- `cipherSuites` on a `maxProtocolVersion: TLSV1_2` server: a client offering only a
  cipher that is not listed is refused, one offering a listed cipher is served.
- `protocol: TLS` with `tls.mode: SIMPLE`: TLS terminated by the gateway, then the bytes
  go to a plain TCP echo app by a VirtualService `tcp` route.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from .conftest import free_port
from .mesh import Mesh, _http_ok, echo_line, mesh, wait_for
from .test_gateway_passthrough import echo_workload, tcp_echo
from .test_gateways import GW_NS, Certs, apply_docs, create_secret, der, doc

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")]
NS = "traffic-demo"
A, B = "a.example", "b.example"
LISTED, UNLISTED = "ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384"


@dataclass
class TlsGw:
    m: Mesh
    certs: Certs
    sni: int
    tls13: int
    ciphers: int
    tls_tcp: int


@pytest.fixture(scope="module")
def tgw(tmp_path_factory) -> Iterator[TlsGw]:
    root = tmp_path_factory.mktemp("gateway-tls-options")
    certs = Certs(root)
    certs.ca()
    for name in (A, B):
        certs.leaf(name, name)
    with mesh(root) as m:
        m.start_control_plane()
        apply_docs(m, {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "sample-app", "namespace": NS},
            "spec": {"selector": {"app": "sample-app"},
                     "ports": [{"name": "http", "port": 80}]}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "tcp-echo", "namespace": NS},
             "spec": {"selector": {"app": "tcp-echo"},
                      "ports": [{"name": "tcp-echo", "port": 9000}]}})
        echo_workload(m, "tcp-echo")
        m.workload("sample-app-v1", NS, "app=sample-app,version=v1", "v1")
        for name in (A, B):
            create_secret(m, f"cred-{name.split('.')[0]}", certs.path(f"{name}.crt"),
                          certs.path(f"{name}.key"))
        ports = TlsGw(m, certs, free_port(), free_port(), free_port(), free_port())
        admin = free_port()
        proc = m.spawn("gateway", "gateway", "--name", "istio-ingressgateway", "-n", GW_NS,
                       "--labels", "istio=ingressgateway", "--admin-port", str(admin),
                       "--port-map", f"443:{ports.sni},8443:{ports.tls13},"
                                     f"9443:{ports.ciphers},31443:{ports.tls_tcp}")
        wait_for(lambda: _http_ok(f"http://127.0.0.1:{admin}/ready"), 30, proc)
        yield ports


def https_get(port: int, sni: str, ctx: ssl.SSLContext) -> tuple[int, str | None, bytes]:
    """GET / with SNI and Host `sni` to 127.0.0.1:port; status, x-version, peer cert."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    conn.host = sni
    conn._create_connection = (  # type: ignore[attr-defined]
        lambda addr, *a, **kw: socket.create_connection(("127.0.0.1", port), *a, **kw))
    try:
        conn.request("GET", "/", headers={"Host": sni})
        resp = conn.getresponse()
        resp.read()
        assert conn.sock is not None
        peer = conn.sock.getpeercert(binary_form=True) or b""
        return resp.status, resp.getheader("x-version"), peer
    finally:
        conn.close()


def context(certs: Certs, *, max_version: ssl.TLSVersion | None = None,
            min_version: ssl.TLSVersion | None = None,
            ciphers: str | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.path("ca.crt")))
    if max_version is not None:
        ctx.maximum_version = max_version
    if min_version is not None:
        ctx.minimum_version = min_version
    if ciphers is not None:
        ctx.set_ciphers(ciphers)
    return ctx


def serves(port: int, sni: str, ctx: ssl.SSLContext) -> bool:
    try:
        return https_get(port, sni, ctx)[0] == 200
    except OSError:
        return False


def server(port: int, name: str, host: str, tls: dict) -> dict:
    return {"port": {"number": port, "name": name, "protocol": "HTTPS"}, "hosts": [host],
            "tls": {"mode": "SIMPLE", **tls}}


def route_vs(name: str, hosts: list[str], gateway: str) -> dict:
    return doc("VirtualService", name, {
        "hosts": hosts, "gateways": [gateway],
        "http": [{"route": [{"destination": {"host": "sample-app"}}]}]})


def test_certificate_chosen_by_sni(tgw: TlsGw) -> None:
    apply_docs(tgw.m, doc("Gateway", "sni-gateway", {
        "selector": {"istio": "ingressgateway"},
        "servers": [server(443, "https-a", A, {"credentialName": "cred-a"}),
                    server(443, "https-b", B, {"credentialName": "cred-b"})]}),
        route_vs("sni-vs", [A, B], "sni-gateway"))
    ctx = context(tgw.certs)
    wait_for(lambda: serves(tgw.sni, A, ctx) and serves(tgw.sni, B, ctx), 20,
             tgw.m.control_plane)
    for _ in range(3):
        for name in (A, B):
            status, version, peer = https_get(tgw.sni, name, ctx)
            assert (status, version) == (200, "v1")
            assert peer == der(tgw.certs.path(f"{name}.crt"))
    assert der(tgw.certs.path(f"{A}.crt")) != der(tgw.certs.path(f"{B}.crt"))


def test_min_protocol_version_tls13_refuses_tls12(tgw: TlsGw) -> None:
    apply_docs(tgw.m, doc("Gateway", "tls13-gateway", {
        "selector": {"istio": "ingressgateway"},
        "servers": [server(8443, "https-13", A, {"credentialName": "cred-a",
                                                  "minProtocolVersion": "TLSV1_3"})]}),
        route_vs("tls13-vs", [A], "tls13-gateway"))
    tls13 = context(tgw.certs, min_version=ssl.TLSVersion.TLSv1_3)
    tls12 = context(tgw.certs, max_version=ssl.TLSVersion.TLSv1_2)
    wait_for(lambda: serves(tgw.tls13, A, tls13), 20, tgw.m.control_plane)
    for _ in range(3):
        assert https_get(tgw.tls13, A, tls13)[:2] == (200, "v1")
        with pytest.raises(ssl.SSLError):
            https_get(tgw.tls13, A, tls12)
    # A client allowing both negotiates TLS 1.3.
    raw = socket.create_connection(("127.0.0.1", tgw.tls13), timeout=5)
    with context(tgw.certs).wrap_socket(raw, server_hostname=A) as sock:
        assert sock.version() == "TLSv1.3"


def test_cipher_suites_refuse_unlisted_cipher(tgw: TlsGw) -> None:
    apply_docs(tgw.m, doc("Gateway", "cipher-gateway", {
        "selector": {"istio": "ingressgateway"},
        "servers": [server(9443, "https-ciphers", A, {
            "credentialName": "cred-a", "maxProtocolVersion": "TLSV1_2",
            "cipherSuites": [LISTED]})]}),
        route_vs("cipher-vs", [A], "cipher-gateway"))
    listed = context(tgw.certs, max_version=ssl.TLSVersion.TLSv1_2, ciphers=LISTED)
    unlisted = context(tgw.certs, max_version=ssl.TLSVersion.TLSv1_2, ciphers=UNLISTED)
    wait_for(lambda: serves(tgw.ciphers, A, listed), 20, tgw.m.control_plane)
    for _ in range(3):
        assert https_get(tgw.ciphers, A, listed)[:2] == (200, "v1")
        with pytest.raises(ssl.SSLError):
            https_get(tgw.ciphers, A, unlisted)
    raw = socket.create_connection(("127.0.0.1", tgw.ciphers), timeout=5)
    with context(tgw.certs).wrap_socket(raw, server_hostname=A) as sock:
        assert sock.version() == "TLSv1.2"
        cipher = sock.cipher()
        assert cipher is not None and cipher[0] == LISTED


def tls_echo(port: int, ctx: ssl.SSLContext) -> tuple[bytes, bytes]:
    return echo_line(port, b"hello tls tcp\n", ctx, A)


def test_tls_terminated_tcp_to_tcp_route(tgw: TlsGw) -> None:
    apply_docs(tgw.m, doc("Gateway", "tls-tcp-gateway", {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 31443, "name": "tls-tcp", "protocol": "TLS"},
                     "hosts": [A], "tls": {"mode": "SIMPLE", "credentialName": "cred-a"}}]}),
        doc("VirtualService", "tls-tcp-vs", {
            "hosts": [A], "gateways": ["tls-tcp-gateway"],
            "tcp": [{"match": [{"port": 31443}],
                     "route": [{"destination": {"host": "tcp-echo",
                                                "port": {"number": 9000}}}]}]}))
    ctx = context(tgw.certs)

    def serving() -> bool:
        try:
            return tls_echo(tgw.tls_tcp, ctx)[0] == b"v1:hello tls tcp\n"
        except OSError:
            return False

    wait_for(serving, 20, tgw.m.control_plane)
    for _ in range(5):
        line, peer = tls_echo(tgw.tls_tcp, ctx)
        # The app speaks plain TCP: the gateway terminated TLS with certificate A.
        assert line == b"v1:hello tls tcp\n"
        assert peer == der(tgw.certs.path(f"{A}.crt"))
    # Plain TCP to the TLS port is not echoed (the handshake fails, the connection closes).
    try:
        plain = tcp_echo(tgw.tls_tcp)
    except OSError:
        plain = b""
    assert b"hello tcp" not in plain
