"""The demo's mesh: every process started through the `meshpilot` command, as a user would.

`DemoMesh` starts the control plane, the seed's workloads (`meshpilot run`, two replicas
per version), a `curl-client` sidecar (so `meshpilot curl` reuses it instead of starting
one per command), both gateways and a local stand-in for httpbin.org, and runs each
section's commands printing them as the user would type them, with what came back. The
e2e test drives the same object, so the tutorial and its proof cannot drift apart.
Nothing here sends a byte off 127.0.0.1: the control plane runs REGISTRY_ONLY and the
only "external" host is declared with a 127.0.0.1 endpoint.
"""

from __future__ import annotations

import http.client
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..proxy.ports import free_port

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "traffic-demo"
REPO = EXAMPLES.parents[1]
NS = "traffic-demo"
GW_NS = "istio-system"
URL = "http://sample-app/"
HOST = "sample-app.hashfoundry.local"
STANDIN_PORT = 18080  # the port sections/07-egress-local.yaml names


class DemoError(Exception):
    """A step failed; the message says which and where its log is."""


def say(text: str = "") -> None:
    print(text, flush=True)


def indent(text: str, prefix: str = "  ") -> str:
    return "\n".join(prefix + line for line in text.rstrip("\n").splitlines())


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def _port_free(port: int) -> bool:
    import socket

    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@dataclass
class DemoMesh:
    state: Path
    api_port: int = 15014
    xds_port: int = 15010
    client_port: int = 15001
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    gateway_ports: dict[int, int] = field(default_factory=dict)
    standin_port: int = STANDIN_PORT

    # --- processes ----------------------------------------------------------------------

    @property
    def server(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def cp_state(self) -> Path:
        return self.state / "control-plane"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    def env(self) -> dict[str, str]:
        return {**os.environ, "MESHPILOT_SERVER": self.server,
                "MESHPILOT_STATE": str(self.cp_state)}

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        """A long-running `meshpilot ...` in its own process group, output to its log."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with self.log(name).open("w") as out:
            proc = subprocess.Popen([sys.executable, "-m", "meshpilot", *args], stdout=out,
                                    stderr=subprocess.STDOUT, env=self.env(),
                                    start_new_session=True)
        self.procs[name] = proc
        return proc

    def wait(self, check: Callable[[], bool], timeout: float, what: str,
             proc: str | None = None) -> None:
        """Poll `check` until true; fail with the log of `proc` if it dies or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if proc is not None and self.procs[proc].poll() is not None:
                raise DemoError(f"{what}: {proc} exited; see {self.log(proc)}")
            time.sleep(0.1)
        where = f"; see {self.log(proc)}" if proc else f"; logs in {self.logs}"
        raise DemoError(f"{what}: not done after {timeout:g}s{where}")

    def cli(self, *args: str, stdin: str | None = None, show: bool = True,
            check: bool = True, timeout: float = 60,
            shown: str | None = None) -> subprocess.CompletedProcess:
        """Run `meshpilot ARGS` to completion, printing the command and what it printed."""
        if show:
            say("$ " + (shown or "meshpilot " + shlex.join(args)))
        try:
            result = subprocess.run([sys.executable, "-m", "meshpilot", *args], input=stdin,
                                    capture_output=True, text=True, env=self.env(),
                                    timeout=timeout)
        except subprocess.TimeoutExpired as e:
            raise DemoError(f"meshpilot {shlex.join(args)}: no answer in {timeout:g}s; "
                            f"logs in {self.logs}") from e
        if show and (result.stdout or result.stderr):
            say(indent(result.stdout + result.stderr))
        if check and result.returncode != 0:
            raise DemoError(f"meshpilot {shlex.join(args)} exited {result.returncode}: "
                            f"{result.stderr.strip()}; logs in {self.logs}")
        return result

    def apply(self, rel: str, text: str | None = None, note: str = "") -> None:
        """`meshpilot apply -f examples/traffic-demo/REL` (or the given text on stdin)."""
        path = EXAMPLES / rel
        shown = f"meshpilot apply -f {path.relative_to(REPO)}" + (f"   # {note}" if note else "")
        if text is None:
            self.cli("apply", "-f", str(path), shown=shown)
        else:
            self.cli("apply", "-f", "-", stdin=text, shown=shown)

    def api(self, path: str) -> Any:
        with urllib.request.urlopen(self.server + path, timeout=10) as r:
            return json.loads(r.read())

    def annotations(self, name: str, namespace: str = NS) -> dict[str, str]:
        we = self.api(f"/apis/networking.istio.io/v1/namespaces/{namespace}"
                      f"/workloadentries/{name}")
        return we["metadata"].get("annotations", {})

    def access_log(self, name: str, namespace: str = NS) -> str:
        path = Path(self.annotations(name, namespace).get("meshpilot.io/access-log", ""))
        return path.read_text() if path.is_file() else ""

    def start(self) -> None:
        """Control plane, the seed's workloads, the client, both gateways, the stand-in."""
        say("== 1. The mesh and the seed's sample-app (Deployments v1/v2, 2 replicas each)")
        self.fresh()
        say(f"$ meshpilot up --state {self.cp_state} --api-port {self.api_port} "
            f"--xds-port {self.xds_port} --outbound-traffic-policy REGISTRY_ONLY &")
        self.spawn("control-plane", "up", "--state", str(self.cp_state), "--api-port",
                   str(self.api_port), "--xds-port", str(self.xds_port),
                   "--outbound-traffic-policy", "REGISTRY_ONLY")
        self.wait(lambda: _http_ok(self.server + "/readyz"), 30, "control plane",
                  "control-plane")
        say(f"  control plane ready: API {self.server}, xDS 127.0.0.1:{self.xds_port} "
            "(REGISTRY_ONLY: only declared hosts are reachable, nothing leaves this machine)")
        self.apply("base/10-sample-app-service.yaml")
        for version in ("v1", "v2"):
            name = f"sample-app-{version}"
            args = ("run", name, "-n", NS, "--labels", f"app=sample-app,version={version}",
                    "--replicas", "2")
            say(f"$ meshpilot {shlex.join(args)} &")
            self.spawn(name, *args)
        for version in ("v1", "v2"):
            name = f"sample-app-{version}"
            self.wait(lambda n=name: f"workload {n}.{NS}: 2/2 replicas ready"
                      in self.log(n).read_text(), 60, f"{name} replicas", name)
            say(f"  workload {name}.{NS}: 2/2 replicas ready (each app behind its sidecar)")
        admin = free_port()
        args = ("sidecar", "--name", "curl-client", "-n", NS, "--labels", "app=curl-client",
                "--app-port", str(free_port()), "--outbound-port", str(self.client_port),
                "--admin-port", str(admin))
        say(f"$ meshpilot {shlex.join(args)} &   # the seed's test-client pod; "
            "`meshpilot curl` goes through it")
        self.spawn("curl-client", *args)
        self.wait(lambda: _http_ok(f"http://127.0.0.1:{admin}/ready"), 30, "curl-client",
                  "curl-client")
        say(f"  curl-client ready: explicit HTTP proxy http://127.0.0.1:{self.client_port}")

    def fresh(self) -> None:
        """Start from an empty store: a previous demo's objects (a Succeeded Canary, the
        A/B routes) would change what every section shows. A demo still running on this
        state is stopped first (`meshpilot down`), never its files pulled from under it."""
        if not self.cp_state.exists():
            return
        say(f"$ meshpilot down --state {self.cp_state}   # a previous demo's mesh, if any")
        down = subprocess.run([sys.executable, "-m", "meshpilot", "down", "--state",
                               str(self.cp_state)], capture_output=True, text=True,
                              env=self.env(), timeout=60)
        if down.stdout.strip():
            say(indent(down.stdout))
        shutil.rmtree(self.cp_state, ignore_errors=True)
        shutil.rmtree(self.logs, ignore_errors=True)

    def start_gateway(self, name: str, labels: str, ports: dict[int, int]) -> None:
        admin = free_port()
        port_map = ",".join(f"{k}:{v}" for k, v in ports.items())
        args = ("gateway", "--name", name, "-n", GW_NS, "--labels", labels, "--port-map",
                port_map, "--admin-port", str(admin))
        say(f"$ meshpilot {shlex.join(args)} &")
        self.spawn(name, *args)
        self.wait(lambda: _http_ok(f"http://127.0.0.1:{admin}/ready"), 30, name, name)
        say(f"  {name} ready (listens on {', '.join(f'{v} for {k}' for k, v in ports.items())}"
            "; `meshpilot curl` maps 80/443 to these)")

    def start_standin(self) -> None:
        """httpbin.org's local stand-in: a plain demo-app, no sidecar, on 127.0.0.1."""
        if not _port_free(self.standin_port):
            self.standin_port = free_port()
        args = ("demo-app", "--port", str(self.standin_port), "--service", "httpbin",
                "--version", "external", "--name", "httpbin-standin")
        say(f"$ meshpilot {shlex.join(args)} &   # stands in for httpbin.org, on 127.0.0.1")
        self.spawn("httpbin-standin", *args)
        self.wait(lambda: _http_ok(f"http://127.0.0.1:{self.standin_port}/"), 20,
                  "httpbin stand-in", "httpbin-standin")

    # --- traffic ------------------------------------------------------------------------

    def requests(self, n: int, headers: dict[str, str] | None = None,
                 url: str = URL) -> Counter:
        """n requests through the client sidecar; counts by `x-version` (or `HTTP code`)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=15)
        seen: Counter = Counter()
        try:
            for _ in range(n):
                try:
                    conn.request("GET", url, headers=headers or {})
                    resp = conn.getresponse()
                    resp.read()
                except (OSError, http.client.HTTPException):
                    conn.close()
                    seen["error"] += 1
                    continue
                if resp.status == 200:
                    seen[str(resp.getheader("x-version"))] += 1
                else:
                    seen[f"HTTP {resp.status}"] += 1
        finally:
            conn.close()
        return seen

    def count(self, n: int, headers: dict[str, str] | None = None,
              url: str = URL) -> Counter:
        """`requests`, printed as the curl loop a user would type to get the same counts."""
        flags = "".join(f" -H '{k}: {v}'" for k, v in (headers or {}).items())
        say(f"$ for i in $(seq {n}); do curl -s -o /dev/null -D - -x "
            f"http://127.0.0.1:{self.client_port}{flags} {url} | grep -i x-version; "
            "done | sort | uniq -c")
        counts = self.requests(n, headers, url)
        say("  " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
        return counts

    def stop(self) -> None:
        """SIGTERM every process group this demo started (reverse order), then SIGKILL."""
        for proc in reversed(list(self.procs.values())):
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


class Background:
    """Steady load through the client sidecar (about `rate` req/s), counting status codes.

    The rollout needs traffic while its steps are judged; a thread is enough and keeps
    the counts in hand (the user would run `meshpilot load -qps 100 -t 0 ...`)."""

    def __init__(self, port: int, rate: float = 100.0, workers: int = 4,
                 url: str = URL) -> None:
        self.codes: Counter = Counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(port, workers / rate, url),
                                          daemon=True) for _ in range(workers)]

    def _run(self, port: int, interval: float, url: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                conn.request("GET", url)
                resp = conn.getresponse()
                resp.read()
                key: int | str = resp.status
            except (OSError, http.client.HTTPException):
                conn.close()
                key = "error"
            with self._lock:
                self.codes[key] += 1
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        conn.close()

    def __enter__(self) -> Background:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)
