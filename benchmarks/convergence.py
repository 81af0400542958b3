"""Config convergence: from `apply` to every affected Envoy ACKing the new routes.

For each proxy count (the first is the baseline), a fresh control plane serves that
many real Envoys; 100 weight changes are applied one after another and each is timed
until every proxy has ACKed a new RDS version. Run twice: with Istio's debounce
(100 ms quiet period) and with a 1 ms quiet period, which shows the pipeline's own cost.

    .venv/bin/python -m benchmarks.convergence [--proxies 1,10,100] [--changes 100]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from meshpilot.xds.types import ProxyInfo

from .common import ControlPlane, free_port, percentile, start_envoy

SERVICE = {"apiVersion": "v1", "kind": "Service",
           "metadata": {"name": "bench", "namespace": "bench"},
           "spec": {"selector": {"app": "bench"}, "ports": [{"name": "http", "port": 80}]}}
SUBSETS = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
           "metadata": {"name": "bench", "namespace": "bench"},
           "spec": {"host": "bench", "subsets": [{"name": "v1", "labels": {"version": "v1"}},
                                                 {"name": "v2", "labels": {"version": "v2"}}]}}


def routes(weight: int) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "bench", "namespace": "bench"},
            "spec": {"hosts": ["bench"], "http": [{"route": [
                {"destination": {"host": "bench", "subset": "v1"}, "weight": 100 - weight},
                {"destination": {"host": "bench", "subset": "v2"}, "weight": weight}]}]}}


def rds_versions(cp: ControlPlane) -> dict[str, str | None]:
    out = {}
    for p in cp.get("/apis/meshpilot.io/v1/proxies")["items"]:
        rds = p["types"].get("RDS", {})
        out[p["name"]] = rds.get("ackedVersion") if rds.get("state") == "SYNCED" else None
    return out


def measure(root: Path, proxies: int, changes: int, debounce: float) -> list[float]:
    cp = ControlPlane(root, "--debounce-after", str(debounce))
    envoys = []
    try:
        cp.apply([SERVICE, SUBSETS, routes(0)])
        for i in range(proxies):
            info = ProxyInfo(name=f"client-{i}", namespace="bench", labels={"app": "client"},
                             outbound_port=free_port(), inbound_port=None)
            envoys.append(start_envoy(root, info, cp.xds_port))
        for envoy in envoys:
            envoy.wait_ready(60)
        deadline = time.monotonic() + 60
        while True:
            before = rds_versions(cp)
            if len(before) == proxies and all(before.values()):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"proxies did not sync: {before}")
            time.sleep(0.05)
        samples = []
        for k in range(1, changes + 1):
            started = time.perf_counter()
            cp.apply([routes(k % 100 or 100)])
            while True:
                now = rds_versions(cp)
                if all(v is not None and v != before[name] for name, v in now.items()):
                    break
                time.sleep(0.002)
            samples.append((time.perf_counter() - started) * 1000)
            before = now
        return samples
    finally:
        for envoy in envoys:
            envoy.stop(2)
        cp.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--proxies", default="1,10,100")
    parser.add_argument("--changes", type=int, default=100)
    args = parser.parse_args()
    counts = [int(x) for x in args.proxies.split(",")]
    print(f"convergence: apply -> every proxy ACKed the new RDS, {args.changes} changes each")
    print(f"{'debounce':>9} {'proxies':>7} {'p50 ms':>8} {'p99 ms':>8} {'p50 vs baseline':>16}")
    for debounce in (0.1, 0.001):
        baseline = None
        for n in counts:
            with tempfile.TemporaryDirectory(prefix="mp-bench-") as tmp:
                samples = measure(Path(tmp), n, args.changes, debounce)
            p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
            baseline = baseline or p50
            print(f"{debounce * 1000:7.0f}ms {n:7d} {p50:8.1f} {p99:8.1f} "
                  f"{p50 / baseline:15.2f}x", flush=True)


if __name__ == "__main__":
    main()
