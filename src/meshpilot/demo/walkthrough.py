"""`meshpilot demo`: the seed's sections 1-3 on this machine, then a mesh to explore.

It starts the control plane, `sample-app` v1 and v2 (two replicas each, each behind a
sidecar), and a client sidecar; applies each section's manifests, shows the traffic
that results, and keeps everything running until Ctrl-C. Each section replaces the
`sample-app-routing` VirtualService in place: Istio sidecars use only the oldest
VirtualService for a host, so stacking them as the seed does would change nothing.
"""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..proxy.ports import free_port

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "traffic-demo"
NAMESPACE = "traffic-demo"
URL = "http://sample-app/"


def say(text: str = "") -> None:
    print(text, flush=True)


@dataclass
class Demo:
    state: Path
    api_port: int
    xds_port: int
    client_port: int = 15001
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def server(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def env(self) -> dict[str, str]:
        return {**os.environ, "MESHPILOT_SERVER": self.server,
                "MESHPILOT_STATE": str(self.state)}

    def spawn(self, name: str, *args: str) -> subprocess.Popen:
        logs = self.state / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "meshpilot", *args],
                                stdout=(logs / f"{name}.log").open("w"),
                                stderr=subprocess.STDOUT, env=self.env(),
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def wait_http(self, url: str, what: str, proc: subprocess.Popen, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"{what} exited; see {self.state / 'logs'}")
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise SystemExit(f"{what} not ready after {timeout}s; see {self.state / 'logs'}")

    def meshpilot(self, *args: str) -> str:
        result = subprocess.run([sys.executable, "-m", "meshpilot", *args], env=self.env(),
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise SystemExit(result.stderr)
        return result.stdout + result.stderr

    def apply(self, path: Path) -> None:
        say(f"$ meshpilot apply -f {path.relative_to(EXAMPLES.parents[1])}")
        say("  " + self.meshpilot("apply", "-f", str(path)).strip().replace("\n", "\n  "))

    def start(self) -> None:
        cp = self.spawn("control-plane", "up", "--state", str(self.state / "control-plane"),
                        "--api-port", str(self.api_port), "--xds-port", str(self.xds_port))
        self.wait_http(self.server + "/readyz", "control plane", cp)
        say(f"control plane: api {self.server}, xDS 127.0.0.1:{self.xds_port}")
        self.apply(EXAMPLES / "base" / "10-sample-app-service.yaml")
        for version in ("v1", "v2"):
            for replica in (1, 2):
                name = f"sample-app-{version}-{replica}"
                app_port, admin = free_port(), free_port()
                proc = self.spawn(name, "sidecar", "--name", name, "-n", NAMESPACE,
                                  "--labels", f"app=sample-app,version={version}",
                                  "--app-port", str(app_port), "--admin-port", str(admin),
                                  "--outbound-port", str(free_port()), "--",
                                  sys.executable, "-m", "meshpilot", "demo-app",
                                  "--port", str(app_port), "--version", version,
                                  "--name", name)
                self.wait_http(f"http://127.0.0.1:{admin}/ready", name, proc)
                say(f"workload {name}: app :{app_port} behind its sidecar (admin :{admin})")
        admin = free_port()
        proc = self.spawn("test-client", "sidecar", "--name", "test-client", "-n", NAMESPACE,
                          "--labels", "app=test-client", "--app-port", str(free_port()),
                          "--outbound-port", str(self.client_port), "--admin-port", str(admin))
        self.wait_http(f"http://127.0.0.1:{admin}/ready", "test-client", proc)
        say(f"client sidecar: explicit HTTP proxy http://127.0.0.1:{self.client_port}")

    def traffic(self, n: int, headers: dict[str, str] | None = None) -> Counter:
        conn = http.client.HTTPConnection("127.0.0.1", self.client_port, timeout=10)
        seen: Counter = Counter()
        for _ in range(n):
            conn.request("GET", URL, headers=headers or {})
            resp = conn.getresponse()
            resp.read()
            if resp.status == 200:
                seen[f"{resp.getheader('x-version')} ({resp.getheader('server')})"] += 1
            else:
                seen[f"HTTP {resp.status}"] += 1
        conn.close()
        return seen

    def show(self, n: int, headers: dict[str, str] | None = None) -> None:
        flags = " ".join(f"-H '{k}: {v}'" for k, v in (headers or {}).items())
        say(f"$ curl -x http://127.0.0.1:{self.client_port} {flags} {URL}   # x{n}".replace(
            "  ", " "))
        time.sleep(0.5)  # let the push land (typically a few milliseconds)
        counts = self.traffic(n, headers)
        say("  " + ", ".join(f"{server}: {c}" for server, c in sorted(counts.items())))

    def walk(self) -> None:
        say("\n== 2. Routing by header: version: v2 -> v2, everything else -> v1")
        self.apply(EXAMPLES / "base" / "20-sample-app-subsets.yaml")
        self.apply(EXAMPLES / "base" / "30-sample-app-routing.yaml")
        self.show(20, {"version": "v2"})
        self.show(20)
        say("\n== 3. Canary 90/10, and canary: true always reaches v2")
        self.apply(EXAMPLES / "sections" / "03-canary.yaml")
        self.show(1000)
        self.show(20, {"canary": "true"})

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def run(state: Path, api_port: int, xds_port: int, client_port: int) -> int:
    demo = Demo(state, api_port, xds_port, client_port)
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        demo.start()
        demo.walk()
        say(f"""
The mesh keeps running. In another terminal:
  export MESHPILOT_SERVER={demo.server}
  curl -x http://127.0.0.1:{client_port} -H 'version: v2' {URL}
  curl -x http://127.0.0.1:{client_port} -H 'canary: true' {URL}
  .venv/bin/meshpilot get vs,dr -n {NAMESPACE}
  .venv/bin/meshpilot apply -f examples/traffic-demo/base/30-sample-app-routing.yaml
Logs: {state / 'logs'}. Ctrl-C stops everything.""")
        while all(p.poll() is None for p in demo.procs):
            time.sleep(0.5)
        say("a demo process exited; stopping")
        return 1
    except KeyboardInterrupt:
        say("\nstopping the demo mesh")
        return 0
    finally:
        demo.stop()
