"""A real mesh on 127.0.0.1 for tests: control plane, apps behind sidecars, a client sidecar.

Everything runs through the `meshpilot` command exactly as a user would start it;
every process is stopped (and its group killed) when the harness closes.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from .conftest import free_port

MESHPILOT = [sys.executable, "-m", "meshpilot"]


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
                self.proc.wait(timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


@dataclass
class Mesh:
    root: Path
    xds_mode: str = "delta"
    api_port: int = field(default_factory=free_port)
    xds_port: int = field(default_factory=free_port)
    procs: list[Proc] = field(default_factory=list)
    control_plane: Proc | None = None

    @property
    def server(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["MESHPILOT_SERVER"] = self.server
        env["MESHPILOT_STATE"] = str(self.root / "state")
        return env

    def spawn(self, name: str, *args: str) -> Proc:
        log = self.root / f"{name}-{time.monotonic_ns()}.log"
        proc = subprocess.Popen([*MESHPILOT, *args], stdout=log.open("w"),
                                stderr=subprocess.STDOUT, env=self.env(),
                                start_new_session=True)
        p = Proc(name, proc, log)
        self.procs.append(p)
        return p

    def run(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*MESHPILOT, *args], input=stdin, capture_output=True, text=True,
                              env=self.env(), timeout=60)

    def apply(self, *paths: str | Path) -> None:
        args = [a for p in paths for a in ("-f", str(p))]
        result = self.run("apply", *args)
        assert result.returncode == 0, result.stderr

    def start_control_plane(self, *extra: str) -> Proc:
        cp = self.spawn("control-plane", "up", "--state", str(self.root / "cp-state"),
                        "--api-port", str(self.api_port), "--xds-port", str(self.xds_port),
                        *extra)
        self.control_plane = cp
        wait_for(lambda: _http_ok(self.server + "/readyz"), 20, cp)
        return cp

    def workload(self, name: str, namespace: str, labels: str, version: str) -> tuple[int, Proc]:
        """An app (the demo app) behind its sidecar; returns the app port and the sidecar."""
        app_port, admin_port = free_port(), free_port()
        sidecar = self.spawn(
            name, "sidecar", "--name", name, "-n", namespace, "--labels", labels,
            "--app-port", str(app_port), "--admin-port", str(admin_port),
            "--outbound-port", str(free_port()), "--xds", self.xds_mode, "--",
            *MESHPILOT, "demo-app", "--port", str(app_port), "--version", version,
            "--name", name,
        )
        wait_for(lambda: _http_ok(f"http://127.0.0.1:{admin_port}/ready"), 30, sidecar)
        # Envoy can be ready before the app listens: the first request would be refused.
        wait_for(lambda: port_open(app_port), 30, sidecar)
        return app_port, sidecar

    def client(self, name: str = "test-client", namespace: str = "traffic-demo") -> int:
        """A sidecar with no app: its outbound port is the client's explicit HTTP proxy."""
        outbound, admin = free_port(), free_port()
        proc = self.spawn(name, "sidecar", "--name", name, "-n", namespace, "--labels",
                          f"app={name}", "--app-port", str(free_port()), "--outbound-port",
                          str(outbound), "--admin-port", str(admin), "--xds", self.xds_mode)
        wait_for(lambda: _http_ok(f"http://127.0.0.1:{admin}/ready"), 30, proc)
        return outbound

    def admin_port(self, name: str, namespace: str) -> int:
        """The Envoy admin port a sidecar recorded on its WorkloadEntry."""
        out = self.run("get", "we", name, "-n", namespace, "-o", "json")
        assert out.returncode == 0, out.stderr
        return int(json.loads(out.stdout)["metadata"]["annotations"]["meshpilot.io/admin-port"])

    def close(self) -> None:
        for p in reversed(self.procs):
            p.stop()


def read_line(sock: socket.socket | ssl.SSLSocket) -> bytes:
    """Bytes up to and including the first newline (or until the peer closes)."""
    out = b""
    while not out.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        out += chunk
    return out


def echo_line(port: int, line: bytes, ctx: ssl.SSLContext | None = None,
              sni: str | None = None) -> tuple[bytes, bytes]:
    """Send one line to 127.0.0.1:`port` (over TLS with `ctx`/`sni` if given) and return
    the echoed line and, for TLS, the peer's certificate (DER)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock: socket.socket | ssl.SSLSocket = (
        ctx.wrap_socket(raw, server_hostname=sni) if ctx is not None else raw)
    with sock:
        peer = (sock.getpeercert(binary_form=True) or b""
                if isinstance(sock, ssl.SSLSocket) else b"")
        sock.sendall(line)
        return read_line(sock), peer


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def wait_for(check, timeout: float, proc: Proc | None = None, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"{proc.name} exited early:\n{proc.log.read_text()[-4000:]}")
        time.sleep(every)
    tail = proc.log.read_text()[-4000:] if proc is not None else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {check}\n{tail}")


@contextmanager
def mesh(root: Path, xds_mode: str = "delta") -> Iterator[Mesh]:
    m = Mesh(root, xds_mode)
    try:
        yield m
    finally:
        m.close()


class ProxyClient:
    """HTTP/1.1 through a sidecar's outbound port, keep-alive, absolute-form URIs."""

    def __init__(self, proxy_port: int) -> None:
        self.port = proxy_port
        self.conn = http.client.HTTPConnection("127.0.0.1", proxy_port, timeout=10)

    def get(self, url: str, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
        for attempt in (1, 2):
            try:
                self.conn.request("GET", url, headers=headers or {})
                resp = self.conn.getresponse()
                return resp.status, dict(resp.getheaders()), resp.read()
            except (http.client.HTTPException, ConnectionError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def versions(self, url: str, n: int, headers: dict[str, str] | None = None) -> Counter:
        """How many of n responses came from each (status, x-version, instance)."""
        seen: Counter = Counter()
        for _ in range(n):
            status, hdrs, _body = self.get(url, headers)
            lower = {k.lower(): v for k, v in hdrs.items()}
            seen[(status, lower.get("x-version"), lower.get("x-instance"))] += 1
        return seen

    def close(self) -> None:
        self.conn.close()


@dataclass(frozen=True)
class Sample:
    at: float  # time.time(), comparable with UTC stamps in logs and events
    status: int
    version: str | None  # the x-version that answered


class LoadLoop:
    """Steady background load (about `rate` req/s): every answer is recorded with its time,
    status and version; transport failures are kept apart in `errors`."""

    def __init__(self, proxy_port: int, url: str, rate: float = 200.0, workers: int = 4,
                 headers: dict[str, str] | None = None) -> None:
        self.samples: list[Sample] = []
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True,
                                          args=(proxy_port, url, workers / rate, headers or {}))
                         for _ in range(workers)]

    def _run(self, port: int, url: str, interval: float, headers: dict[str, str]) -> None:
        client = ProxyClient(port)
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                status, hdrs, _ = client.get(url, headers)
                version = {k.lower(): v for k, v in hdrs.items()}.get("x-version")
                with self._lock:
                    self.samples.append(Sample(time.time(), status, version))
            except Exception as e:  # a transport failure counts as a failed request
                with self._lock:
                    self.errors.append(repr(e))
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        client.close()

    def __enter__(self) -> LoadLoop:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)

    @property
    def codes(self) -> Counter:
        with self._lock:
            return Counter(s.status for s in self.samples)

    def between(self, start: float, end: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.samples if start <= s.at < end]

    @property
    def total(self) -> int:
        with self._lock:
            return len(self.samples) + len(self.errors)


def proxy_status(m: Mesh) -> list[dict]:
    with urllib.request.urlopen(m.server + "/apis/meshpilot.io/v1/proxies", timeout=5) as r:
        return json.loads(r.read())["items"]
