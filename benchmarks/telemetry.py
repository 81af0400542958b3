"""Telemetry: are Istio's metrics exact at full speed, and what do they cost?

One request path, client sidecar (outbound) -> server sidecar (inbound) -> a fast
upstream, is driven at the highest rate it reaches here and at a fixed 1,000 req/s,
twice: with Istio's standard metrics on (every request is streamed to the control plane
by both proxies and counted there) and off (MeshConfig `defaultProviders: {metrics: []}`,
the baseline). For each run it prints:
  - exactness: istio_requests_total per reporter on /metrics against the requests sent;
  - the control plane's CPU per 1,000 requests (user + system, from /proc);
  - the data plane's throughput and latency, as a ratio to the baseline.

    .venv/bin/python -m benchmarks.telemetry [--calls 50000] [--connections 16]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from meshpilot.load.runner import run_load
from meshpilot.load.spec import LoadSpec
from meshpilot.proxy.process import EnvoyProcess
from meshpilot.xds.types import ProxyInfo

from .common import ControlPlane, free_port, start_envoy

NAMESPACE = "bench"
_SAMPLE = re.compile(r'^istio_requests_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$')


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def requests_by_reporter(cp: ControlPlane) -> dict[str, float]:
    """Sum of istio_requests_total per reporter, read from the control plane's /metrics."""
    with urllib.request.urlopen(cp.url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    out: dict[str, float] = {"source": 0.0, "destination": 0.0}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m:
            reporter = re.search(r'reporter="([^"]*)"', m["labels"])
            if reporter and reporter[1] in out:
                out[reporter[1]] += float(m["value"])
    return out


class RequestPath:
    """The mesh for one run: control plane, server sidecar in front of the upstream, and
    a client sidecar whose outbound port the load generator uses as its HTTP proxy."""

    def __init__(self, root: Path, upstream: int, *, metrics: bool) -> None:
        root.mkdir(parents=True, exist_ok=True)
        extra: list[str] = []
        if not metrics:
            mesh = root / "mesh.yaml"
            mesh.write_text("defaultProviders:\n  metrics: []\n")
            extra = ["--mesh-config", str(mesh)]
        self.cp = ControlPlane(root, *extra)
        self.envoys: list[EnvoyProcess] = []
        inbound, self.outbound = free_port(), free_port()
        self.cp.apply([
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "fast", "namespace": NAMESPACE},
             "spec": {"selector": {"app": "fast"}, "ports": [{"name": "http", "port": 80}]}},
            {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
             "metadata": {"name": "fast-1", "namespace": NAMESPACE},
             "spec": {"address": "127.0.0.1", "ports": {"http": inbound},
                      "labels": {"app": "fast", "version": "v1"}}},
        ])
        server = ProxyInfo(name="fast-1", namespace=NAMESPACE, labels={"app": "fast",
                           "version": "v1"}, inbound_port=inbound, app_port=upstream,
                           outbound_port=None)
        client = ProxyInfo(name="client", namespace=NAMESPACE, labels={"app": "client"},
                           outbound_port=self.outbound, inbound_port=None)
        for info in (server, client):
            envoy = start_envoy(root, info, self.cp.xds_port)
            self.envoys.append(envoy)
            envoy.wait_ready(30)
        self._warm_up()

    def _warm_up(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            result = run_load(self.spec(qps=50, calls=25, connections=1))
            if result.codes.get(200, 0) == result.requests > 0:
                return
        raise RuntimeError("the request path never answered 200")

    def spec(self, *, qps: float, calls: int, connections: int) -> LoadSpec:
        """A fixed number of calls, not a duration: a timed run abandons the requests in
        flight when time is up, which the proxies still log but the client never counts."""
        return LoadSpec(url="http://fast.bench.svc.cluster.local/",
                        proxy=f"http://127.0.0.1:{self.outbound}", connections=connections,
                        qps=qps, duration=None, calls=calls)

    def run(self, qps: float, calls: int, connections: int, metrics: bool) -> dict:
        before_counts = self._settled_counts()
        cpu_before = cpu_seconds(self.cp.proc.pid)
        result = run_load(self.spec(qps=qps, calls=calls, connections=connections))
        sent = result.requests
        expected = {r: before_counts[r] + sent for r in before_counts} if metrics else (
            before_counts)
        # Entries arrive within the proxies' flush interval (200 ms); wait up to 10 s.
        deadline = time.monotonic() + 10
        counts = requests_by_reporter(self.cp)
        while counts != expected and time.monotonic() < deadline:
            time.sleep(0.1)
            counts = requests_by_reporter(self.cp)
        time.sleep(0.5)  # anything late (double counting) would show up now
        counts = requests_by_reporter(self.cp)
        cpu = cpu_seconds(self.cp.proc.pid) - cpu_before
        return {
            "qps": sent / result.duration_s, "sent": sent, "ok": result.codes.get(200, 0),
            "p50": result.latency_ms.get("p50"), "p99": result.latency_ms.get("p99"),
            "counted": {r: counts[r] - before_counts[r] for r in counts},
            "cpu_per_1k": cpu / (sent / 1000) if sent else float("nan"),
        }

    def _settled_counts(self) -> dict[str, float]:
        """Counts once earlier traffic (the warm-up) has all arrived: unchanged for more
        than a flush interval."""
        counts = requests_by_reporter(self.cp)
        while True:
            time.sleep(0.5)
            again = requests_by_reporter(self.cp)
            if again == counts:
                return counts
            counts = again

    def stop(self) -> None:
        for envoy in reversed(self.envoys):
            envoy.stop(2)
        self.cp.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=50_000,
                        help="requests per max-rate run (the 1k req/s run sends a fifth)")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    results: dict[str, dict[str, dict]] = {}
    with tempfile.TemporaryDirectory(prefix="mp-telemetry-") as tmp:
        upstream = free_port()
        server = subprocess.Popen([sys.executable, "-m", "meshpilot.load.server",
                                   "--port", str(upstream)])
        try:
            time.sleep(1)
            for name, metrics in (("off", False), ("on", True)):
                mesh = RequestPath(Path(tmp) / name, upstream, metrics=metrics)
                try:
                    results[name] = {
                        "max": mesh.run(0.0, args.calls, args.connections, metrics),
                        "1k": mesh.run(1000.0, args.calls // 5, args.connections, metrics),
                    }
                finally:
                    mesh.stop()
        finally:
            server.terminate()
            server.wait(5)
    print(f"telemetry: client sidecar -> server sidecar -> upstream, {args.connections} "
          f"connections, {args.calls} calls at max rate, {args.calls // 5} at 1k req/s, "
          "Envoy --concurrency 1")
    print(f"{'metrics':>7} {'rate':>4} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'sent':>8} {'source':>8} {'dest':>8} {'exact':>5} {'CP cpu-s/1k':>11} "
          f"{'req/s vs off':>12}")
    for name, runs in results.items():
        for rate, r in runs.items():
            counted = r["counted"]
            exact = (counted["source"] == counted["destination"] == r["sent"]
                     if name == "on" else counted == {"source": 0, "destination": 0})
            base = results["off"][rate]["qps"]
            print(f"{name:>7} {rate:>4} {r['qps']:8.0f} {r['p50']:7.2f} {r['p99']:7.2f} "
                  f"{r['sent']:8d} {counted['source']:8.0f} {counted['destination']:8.0f} "
                  f"{'yes' if exact else 'NO':>5} {r['cpu_per_1k']:11.3f} "
                  f"{r['qps'] / base:12.2f}")


if __name__ == "__main__":
    main()
