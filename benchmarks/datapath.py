"""Data path: the same request through meshpilot's Envoy, a hand-written Envoy, and direct.

A fast upstream (canned HTTP response) runs in its own process. Three paths carry the
same request to it:
  direct      client -> upstream
  static      client -> Envoy with a minimal hand-written config -> upstream
  meshpilot   client -> a sidecar's outbound proxy configured by meshpilot over xDS
              (Service + WorkloadEntry, Istio's default route with its retry policy,
              LEAST_REQUEST, the bootstrap's stats) -> upstream
Both Envoys run one worker (`--concurrency 1`, as a sidecar does) and are used as explicit
HTTP proxies. Each path gets a max-throughput run and a fixed 1,000 req/s run. The key
figure is meshpilot / static: what the generated config costs beyond Envoy itself.

    .venv/bin/python -m benchmarks.datapath [--seconds 10] [--connections 16]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshpilot.load.runner import run_load
from meshpilot.load.spec import LoadSpec
from meshpilot.proxy.process import EnvoyProcess
from meshpilot.xds.types import ProxyInfo

from .common import ControlPlane, free_port, start_envoy, static_envoy


def hand_written_envoy(root: Path, upstream: int) -> tuple[EnvoyProcess, int]:
    """The smallest Envoy config that forwards Host `fast` to the upstream."""
    cluster = {
        "name": "fast", "type": "STATIC", "connect_timeout": "1s",
        "load_assignment": {"cluster_name": "fast", "endpoints": [{"lb_endpoints": [{
            "endpoint": {"address": {"socket_address": {
                "address": "127.0.0.1", "port_value": upstream}}}}]}]},
    }
    return static_envoy(root, "static", {"route": {"cluster": "fast", "timeout": "0s"}},
                        ["fast", "fast:80"], [cluster])


def meshpilot_envoy(root: Path, upstream: int) -> tuple[ControlPlane, EnvoyProcess, int]:
    cp = ControlPlane(root)
    cp.apply([
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "fast", "namespace": "bench"},
         "spec": {"selector": {"app": "fast"}, "ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
         "metadata": {"name": "fast-1", "namespace": "bench"},
         "spec": {"address": "127.0.0.1", "ports": {"http": upstream},
                  "labels": {"app": "fast"}}},
    ])
    outbound = free_port()
    envoy = start_envoy(root, ProxyInfo(name="client", namespace="bench",
                                        labels={"app": "client"}, outbound_port=outbound,
                                        inbound_port=None), cp.xds_port)
    envoy.wait_ready(30)
    return cp, envoy, outbound


def measure(url: str, proxy: str | None, seconds: float, connections: int) -> dict:
    runs = {}
    for name, qps in (("max", 0.0), ("1k", 1000.0)):
        result = run_load(LoadSpec(url=url, proxy=proxy, connections=connections, qps=qps,
                                   duration=seconds))
        ok = result.codes.get(200, 0)
        runs[name] = {"qps": result.requests / result.duration_s, "ok": ok,
                      "requests": result.requests, "p50": result.latency_ms.get("p50"),
                      "p99": result.latency_ms.get("p99")}
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mp-datapath-") as tmp:
        root = Path(tmp)
        upstream = free_port()
        server = subprocess.Popen([sys.executable, "-m", "meshpilot.load.server",
                                   "--port", str(upstream)])
        cp = envoy_static = envoy_mesh = None
        try:
            time.sleep(1)
            envoy_static, static_port = hand_written_envoy(root, upstream)
            cp, envoy_mesh, mesh_port = meshpilot_envoy(root, upstream)
            paths = {
                "direct": (f"http://127.0.0.1:{upstream}/", None),
                "static": ("http://fast/", f"http://127.0.0.1:{static_port}"),
                "meshpilot": ("http://fast/", f"http://127.0.0.1:{mesh_port}"),
            }
            results = {name: measure(url, proxy, args.seconds, args.connections)
                       for name, (url, proxy) in paths.items()}
        finally:
            for envoy in (envoy_mesh, envoy_static):
                if envoy is not None:
                    envoy.stop(2)
            if cp is not None:
                cp.stop()
            server.terminate()
            server.wait(5)
    print(f"data path: {args.connections} connections, {args.seconds:.0f} s per run, "
          "Envoy --concurrency 1, 1 load process")
    print(f"{'path':>10} {'max req/s':>10} {'p50 ms':>7} {'p99 ms':>7} | {'@1k p50':>8} "
          f"{'@1k p99':>8} | {'req/s vs static':>15} {'vs direct':>9}")
    static, direct = results["static"]["max"]["qps"], results["direct"]["max"]["qps"]
    for name, r in results.items():
        top, fixed = r["max"], r["1k"]
        print(f"{name:>10} {top['qps']:10.0f} {top['p50']:7.2f} {top['p99']:7.2f} | "
              f"{fixed['p50']:8.2f} {fixed['p99']:8.2f} | {top['qps'] / static:15.2f} "
              f"{top['qps'] / direct:9.2f}")


if __name__ == "__main__":
    main()
