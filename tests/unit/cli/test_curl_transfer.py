"""`meshpilot curl` against small local servers: the request as curl sends it, -w timings,
HTTPS with --resolve semantics (connect to the address, SNI and verification by host), and
curl's exit codes for refused connections, timeouts and empty replies."""

from __future__ import annotations

import http.server
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshpilot.cli.curl_transfer import (
    COULDNT_CONNECT,
    GOT_NOTHING,
    OPERATION_TIMEDOUT,
    PEER_FAILED_VERIFICATION,
    CurlError,
    Limits,
    Output,
    Request,
    Route,
    Tls,
    build_headers,
    parse_url,
    perform,
)
from meshpilot.cli.main import main
from meshpilot.proxy.ports import free_port

HOST = "sample-app.hashfoundry.local"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, dict[str, str], bytes]] = []

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        Handler.seen.append((self.requestline, dict(self.headers.items()), body))
        if "/delay" in self.path:
            time.sleep(1.0)
        status = 503 if "/status/503" in self.path else 200
        payload = f"{self.command} {self.path}\n".encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except BrokenPipeError:  # the client gave up (the -m test)
            pass

    do_POST = do_GET


@pytest.fixture
def server() -> Iterator[int]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    Handler.seen = []
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()


def collect() -> tuple[Output, list[bytes]]:
    body: list[bytes] = []
    return Output(lambda t, line: None, body.append), body


def request(url: str, *headers: str, body: bytes | None = None) -> Request:
    parsed = parse_url(url)
    return Request("POST" if body else "GET", parsed,
                   build_headers(parsed, list(headers), user_agent="t/1", body=body,
                                 content_type="application/x-www-form-urlencoded"), body)


def test_through_a_proxy_the_request_is_absolute_form(server: int) -> None:
    out, body = collect()
    t = perform(request("http://sample-app/v2?x=1", "version: v2"),
                Route(("127.0.0.1", server), proxy=True), tls=None, limits=Limits(),
                output=out)
    line, headers, _ = Handler.seen[-1]
    assert line == "GET http://sample-app/v2?x=1 HTTP/1.1"
    assert headers["Host"] == "sample-app" and headers["version"] == "v2"
    assert (t.http_code, t.remote_ip, t.remote_port) == (200, "127.0.0.1", server)
    assert b"".join(body) == b"GET http://sample-app/v2?x=1\n"
    assert t.size_download == len(b"".join(body))
    assert 0 <= t.time_connect <= t.time_pretransfer <= t.time_starttransfer <= t.time_total


def test_direct_requests_use_origin_form_and_send_the_body(server: int) -> None:
    out, _ = collect()
    t = perform(request(f"http://127.0.0.1:{server}/echo", body=b"a=1"),
                Route(("127.0.0.1", server)), tls=None, limits=Limits(), output=out)
    line, headers, sent = Handler.seen[-1]
    assert line == "POST /echo HTTP/1.1" and sent == b"a=1"
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert t.size_upload == 3


def test_refused_connection_exits_7() -> None:
    out, _ = collect()
    with pytest.raises(CurlError) as info:
        perform(request("http://sample-app/"), Route(("127.0.0.1", free_port()), proxy=True),
                tls=None, limits=Limits(), output=out)
    assert info.value.code == COULDNT_CONNECT
    assert "Failed to connect to 127.0.0.1 port" in info.value.message
    assert info.value.transfer is not None and info.value.transfer.http_code == 0


def test_max_time_exits_28(server: int) -> None:
    out, _ = collect()
    started = time.monotonic()
    with pytest.raises(CurlError) as info:
        perform(request("http://sample-app/delay"), Route(("127.0.0.1", server), proxy=True),
                tls=None, limits=Limits(max_time=0.3), output=out)
    assert info.value.code == OPERATION_TIMEDOUT
    assert "Operation timed out after" in info.value.message
    assert time.monotonic() - started < 0.9


def test_empty_reply_exits_52() -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def serve() -> None:
        conn, _ = listener.accept()
        conn.recv(4096)
        conn.close()

    threading.Thread(target=serve, daemon=True).start()
    out, _ = collect()
    try:
        with pytest.raises(CurlError) as info:
            perform(request("http://x/"), Route(listener.getsockname()), tls=None,
                    limits=Limits(), output=out)
        assert info.value.code == GOT_NOTHING
    finally:
        listener.close()


# --- the command, end to end on a local "proxy" --------------------------------------------------

def test_command_write_out_and_http_errors(server: int, capsys) -> None:
    proxy = f"http://127.0.0.1:{server}"
    assert main(["curl", "-x", proxy, "http://sample-app/", "-s", "-o", "/dev/null",
                 "-w", "%{http_code} %{remote_port} %{size_download}\\n"]) == 0
    assert capsys.readouterr().out == f"200 {server} 23\n"  # "GET http://sample-app/\n"
    # An HTTP error is not a curl error, unless -f.
    assert main(["curl", "-x", proxy, "http://sample-app/status/503", "-w",
                 "%{http_code}"]) == 0
    assert capsys.readouterr().out == "GET http://sample-app/status/503\n503"
    assert main(["curl", "-x", proxy, "http://sample-app/status/503", "-f", "-w",
                 "%{http_code}"]) == 22
    captured = capsys.readouterr()
    assert captured.out == "503"  # body held back, write-out still printed
    assert "(22) The requested URL returned error: 503" in captured.err


def test_command_include_and_refused(capsys, server: int) -> None:
    assert main(["curl", "-i", "-x", f"127.0.0.1:{server}", "http://sample-app/"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("HTTP/1.1 200 OK\r\n") and "Content-Type: text/plain\r\n" in out
    assert out.endswith("\r\n\r\nGET http://sample-app/\n")
    assert main(["curl", "-x", f"http://127.0.0.1:{free_port()}", "http://sample-app/",
                 "-w", "%{http_code}\\n"]) == 7
    captured = capsys.readouterr()
    assert captured.out == "000\n"
    assert captured.err.startswith("meshpilot curl: (7) Failed to connect")
    assert main(["curl", "-s", "-x", f"http://127.0.0.1:{free_port()}", "http://x/"]) == 7
    assert capsys.readouterr().err == ""  # -s: silent


# --- HTTPS with --resolve semantics ---------------------------------------------------------------

def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> Path:
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    d = tmp_path_factory.mktemp("certs")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=t CA",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.crt"))
    (d / "ext").write_text(f"subjectAltName=DNS:{HOST}\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={HOST}",
            "-keyout", str(d / "s.key"), "-out", str(d / "s.csr"))
    openssl("x509", "-req", "-in", str(d / "s.csr"), "-CA", str(d / "ca.crt"), "-CAkey",
            str(d / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(d / "ext"),
            "-out", str(d / "s.crt"))
    return d


@pytest.fixture
def tls_server(certs: Path) -> Iterator[tuple[int, list[str]]]:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(certs / "s.crt"), str(certs / "s.key"))
    names: list[str] = []
    ctx.sni_callback = lambda sock, name, c: names.append(name) and None
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv.server_address[1], names
    finally:
        srv.shutdown()
        srv.server_close()


def test_https_connects_to_the_address_with_sni_of_the_host(certs: Path, tls_server) -> None:
    port, names = tls_server
    out, _ = collect()
    t = perform(request(f"https://{HOST}/"), Route(("127.0.0.1", port)),
                tls=Tls(HOST, cacert=str(certs / "ca.crt")), limits=Limits(), output=out)
    assert t.http_code == 200 and names == [HOST]
    assert Handler.seen[-1][1]["Host"] == HOST
    assert t.time_connect <= t.time_appconnect <= t.time_total


def test_https_certificate_problems_exit_60_unless_insecure(certs: Path, tls_server) -> None:
    port, _ = tls_server
    out, _ = collect()
    with pytest.raises(CurlError) as info:
        perform(request(f"https://{HOST}/"), Route(("127.0.0.1", port)), tls=Tls(HOST),
                limits=Limits(), output=out)
    assert info.value.code == PEER_FAILED_VERIFICATION
    with pytest.raises(CurlError) as info:  # right CA, wrong name
        perform(request("https://other.example/"), Route(("127.0.0.1", port)),
                tls=Tls("other.example", cacert=str(certs / "ca.crt")), limits=Limits(),
                output=out)
    assert info.value.code == PEER_FAILED_VERIFICATION
    t = perform(request(f"https://{HOST}/"), Route(("127.0.0.1", port)),
                tls=Tls(HOST, insecure=True), limits=Limits(), output=out)
    assert t.http_code == 200


def test_command_resolve_reaches_the_address(certs: Path, tls_server, capsys) -> None:
    port, names = tls_server
    # No control plane: the --resolve address and port are used as given.
    code = main(["curl", f"https://{HOST}:{port}/", "--resolve", f"{HOST}:{port}:127.0.0.1",
                 "--cacert", str(certs / "ca.crt"), "--server", f"http://127.0.0.1:{free_port()}",
                 "-w", " %{http_code} %{remote_ip}"])
    assert code == 0
    assert capsys.readouterr().out == "GET /\n 200 127.0.0.1"
    assert names[-1] == HOST
