"""The seed's ingress gateway on real Envoy: HTTP host routing with the `/v2` rewrite, HTTPS
with a Secret made by `meshpilot create secret tls`, httpsRedirect, MUTUAL TLS, certificate
rotation under load over SDS, and a missing credential that skips only its own server.

Tests run in file order on one mesh (the first one checks the gateway before its Secret
exists). Certificates come from the `openssl` CLI, as a user would make them.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .conftest import free_port
from .mesh import Mesh, _http_ok, mesh, wait_for

pytestmark = [pytest.mark.e2e,
              pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")]
EXAMPLES = Path(__file__).parents[2] / "examples" / "traffic-demo"
HOST = "sample-app.hashfoundry.local"
GW_NS = "istio-system"


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


@dataclass
class Certs:
    dir: Path

    def path(self, name: str) -> Path:
        return self.dir / name

    def ca(self) -> None:
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                "-subj", "/CN=meshpilot test CA", "-keyout", str(self.path("ca.key")),
                "-out", str(self.path("ca.crt")))

    def leaf(self, name: str, cn: str, *, server: bool = True) -> tuple[Path, Path]:
        """A certificate for `cn` signed by the test CA (SAN DNS:cn for servers)."""
        key, csr, crt = (self.path(f"{name}.{ext}") for ext in ("key", "csr", "crt"))
        ext = self.path(f"{name}.ext")
        usage = "serverAuth" if server else "clientAuth"
        ext.write_text(f"subjectAltName=DNS:{cn}\nextendedKeyUsage={usage}\n")
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}",
                "-keyout", str(key), "-out", str(csr))
        openssl("x509", "-req", "-in", str(csr), "-CA", str(self.path("ca.crt")),
                "-CAkey", str(self.path("ca.key")), "-CAcreateserial", "-days", "2",
                "-extfile", str(ext), "-out", str(crt))
        return crt, key


@dataclass
class Gw:
    m: Mesh
    certs: Certs
    http: int
    https: int
    redirect: int
    mtls: int


def doc(kind: str, name: str, spec: dict, namespace: str = "traffic-demo") -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def apply_docs(m: Mesh, *docs: dict) -> None:
    result = m.run("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    assert result.returncode == 0, result.stderr


def create_secret(m: Mesh, name: str, crt: Path, key: Path, ca: Path | None = None) -> None:
    args = ["create", "secret", "tls", name, "--cert", str(crt), "--key", str(key),
            "-n", GW_NS]
    if ca is not None:
        args += ["--ca", str(ca)]
    result = m.run(*args)
    assert result.returncode == 0, result.stderr
    assert f"secret/{name}" in result.stdout


def get(port: int, path: str = "/", host: str = HOST) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def tls_context(certs: Certs, client: tuple[Path, Path] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(certs.path("ca.crt")))
    if client is not None:
        ctx.load_cert_chain(str(client[0]), str(client[1]))
    return ctx


def get_tls(port: int, ctx: ssl.SSLContext, path: str = "/") -> tuple[int, dict[str, str],
                                                                     bytes, bytes]:
    """One HTTPS request with SNI HOST verified against the test CA; also the peer cert."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=ctx)
    # SNI and verification use HOST while the socket goes to 127.0.0.1.
    conn.host = HOST
    conn._create_connection = (  # type: ignore[attr-defined]
        lambda addr, *a, **kw: socket.create_connection(("127.0.0.1", port), *a, **kw))
    try:
        conn.request("GET", path, headers={"Host": HOST})
        resp = conn.getresponse()
        assert conn.sock is not None
        peer = conn.sock.getpeercert(binary_form=True) or b""
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read(), peer
    finally:
        conn.close()


def der(path: Path) -> bytes:
    return ssl.PEM_cert_to_DER_cert(path.read_text())


@pytest.fixture(scope="module")
def gw(tmp_path_factory) -> Iterator[Gw]:
    root = tmp_path_factory.mktemp("gateways")
    certs = Certs(root)
    certs.ca()
    certs.leaf("server", HOST)
    with mesh(root) as m:
        m.start_control_plane()
        m.apply(EXAMPLES / "base" / "10-sample-app-service.yaml",
                EXAMPLES / "base" / "20-sample-app-subsets.yaml",
                EXAMPLES / "base" / "40-ingress-gateway.yaml")
        for version in ("v1", "v2"):
            m.workload(f"sample-app-{version}", "traffic-demo",
                       f"app=sample-app,version={version}", version)
        ports = Gw(m, certs, free_port(), free_port(), free_port(), free_port())
        admin = free_port()
        proc = m.spawn("gateway", "gateway", "--name", "istio-ingressgateway", "-n", GW_NS,
                       "--labels", "istio=ingressgateway", "--admin-port", str(admin),
                       "--port-map", f"80:{ports.http},443:{ports.https},"
                                     f"8000:{ports.redirect},9443:{ports.mtls}")
        wait_for(lambda: _http_ok(f"http://127.0.0.1:{admin}/ready"), 30, proc)
        yield ports


def _routes_v1(port: int) -> bool:
    try:
        status, headers, _ = get(port)
    except OSError:
        return False
    return status == 200 and headers.get("x-version") == "v1"


def _refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_missing_credential_skips_only_that_server(gw: Gw) -> None:
    wait_for(lambda: _routes_v1(gw.http), 20, gw.m.control_plane)
    # No Secret sample-app-tls yet: no listener on 443 at all, port 80 serves.
    assert _refused(gw.https)


def test_http_host_routing_rewrite_and_404(gw: Gw) -> None:
    versions = Counter(get(gw.http)[1].get("x-version") for _ in range(20))
    assert versions == Counter({"v1": 20})
    status, headers, _ = get(gw.http, "/v2")
    assert (status, headers.get("x-version")) == (200, "v2")
    # Istio's string prefix: /v2echo matches /v2 and becomes /echo, so the app echoes
    # the path it received: the rewrite happened.
    status, headers, body = get(gw.http, "/v2echo")
    assert (status, headers.get("x-version")) == (200, "v2")
    assert json.loads(body)["path"] == "/echo"
    assert get(gw.http, host="unknown.example.com")[0] == 404


def test_https_simple_with_created_secret(gw: Gw) -> None:
    crt, key = gw.certs.path("server.crt"), gw.certs.path("server.key")
    create_secret(gw.m, "sample-app-tls", crt, key)
    ctx = tls_context(gw.certs)

    def serving() -> bool:
        try:
            return get_tls(gw.https, ctx)[0] == 200
        except OSError:
            return False

    wait_for(serving, 20, gw.m.control_plane)
    status, headers, _, peer = get_tls(gw.https, ctx)
    assert (status, headers.get("x-version")) == (200, "v1")
    assert peer == der(crt)
    status, headers, _, _ = get_tls(gw.https, ctx, "/v2")
    assert (status, headers.get("x-version")) == (200, "v2")
    # The HTTP server keeps working next to it.
    assert _routes_v1(gw.http)


def test_https_redirect_answers_301(gw: Gw) -> None:
    apply_docs(gw.m, doc("Gateway", "redirect-gateway", {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 8000, "name": "http-redirect", "protocol": "HTTP"},
                     "hosts": [HOST], "tls": {"httpsRedirect": True}}]}))

    def redirected() -> bool:
        try:
            return get(gw.redirect)[0] == 301
        except OSError:
            return False

    wait_for(redirected, 20, gw.m.control_plane)
    status, headers, _ = get(gw.redirect, "/some/path")
    assert status == 301
    assert headers["location"] == f"https://{HOST}/some/path"


def test_mutual_tls_requires_client_certificate(gw: Gw) -> None:
    crt, key = gw.certs.path("server.crt"), gw.certs.path("server.key")
    create_secret(gw.m, "sample-app-mtls", crt, key, gw.certs.path("ca.crt"))
    client = gw.certs.leaf("client", "test-client", server=False)
    apply_docs(gw.m, doc("Gateway", "mtls-gateway", {
        "selector": {"istio": "ingressgateway"},
        "servers": [{"port": {"number": 9443, "name": "https-mtls", "protocol": "HTTPS"},
                     "hosts": [HOST],
                     "tls": {"mode": "MUTUAL", "credentialName": "sample-app-mtls"}}]}),
        doc("VirtualService", "mtls-vs", {
            "hosts": [HOST], "gateways": ["mtls-gateway"],
            "http": [{"route": [{"destination": {"host": "sample-app", "subset": "v2"}}]}]}))
    with_cert = tls_context(gw.certs, client)

    def serving() -> bool:
        try:
            return get_tls(gw.mtls, with_cert)[0] == 200
        except OSError:
            return False

    wait_for(serving, 20, gw.m.control_plane)
    status, headers, _, _ = get_tls(gw.mtls, with_cert)
    assert (status, headers.get("x-version")) == (200, "v2")
    with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
        get_tls(gw.mtls, tls_context(gw.certs))


def test_rotation_serves_new_cert_without_failed_requests(gw: Gw) -> None:
    old = der(gw.certs.path("server.crt"))
    new_crt, new_key = gw.certs.leaf("server2", HOST)
    ctx = tls_context(gw.certs)
    assert get_tls(gw.https, ctx)[3] == old
    seen: Counter = Counter()
    errors: list[str] = []
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:  # a new connection each time, so each request sees the current cert
                status, _, _, peer = get_tls(gw.https, ctx)
                seen[(status, peer == old)] += 1
            except Exception as e:  # any failure during rotation is a failed request
                errors.append(repr(e))
            time.sleep(0.01)

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.5)
        create_secret(gw.m, "sample-app-tls", new_crt, new_key)
        wait_for(lambda: get_tls(gw.https, ctx)[3] == der(new_crt), 10, gw.m.control_plane)
        time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert errors == []
    assert set(seen) == {(200, True), (200, False)}, seen
