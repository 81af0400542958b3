"""Scale: snapshot build, translation and push for 1,000 and 5,000 services, SotW vs delta.

Each service has a Service, two WorkloadEntries (v1, v2), a DestinationRule with two
subsets and a 90/10 VirtualService, so one sidecar gets three clusters per service.
Each (size, mode) runs in a fresh process with one real Envoy, timing:
  build     store objects -> MeshSnapshot
  translate MeshSnapshot -> one sidecar's Envoy resources
  initial   ready -> Envoy ACKed CDS, EDS, LDS and RDS
  change    one VirtualService weight changed -> Envoy ACKed it (median of 10 changes)
and the control plane's resident memory. Baseline: 1,000 services over SotW.

    .venv/bin/python -m benchmarks.scale [--sizes 1000,5000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshpilot.api.resource import Resource
from meshpilot.snapshot.mesh import MeshSnapshot
from meshpilot.xds.hooks import NoopHooks
from meshpilot.xds.server import XdsServer
from meshpilot.xds.translate import translate
from meshpilot.xds.types import PUSH_ORDER, ProxyInfo, ProxyResources

from .common import free_port, start_envoy

NET = "networking.istio.io/v1"


def mesh_resources(n: int, canary_weight: int = 10, changed: int = -1) -> list[Resource]:
    out: list[Resource] = []
    stamp = "2026-01-01T00:00:00Z"
    for i in range(n):
        name, ns = f"svc-{i}", f"ns-{i % 20}"
        out.append(Resource("v1", "Service", name, ns, {
            "selector": {"app": name}, "ports": [{"name": "http", "port": 80}]},
            creation_timestamp=stamp))
        for v, port in (("v1", 20000 + i % 10000), ("v2", 30000 + i % 10000)):
            out.append(Resource(NET, "WorkloadEntry", f"{name}-{v}", ns, {
                "address": "127.0.0.1", "ports": {"http": port},
                "labels": {"app": name, "version": v}}, creation_timestamp=stamp))
        out.append(Resource(NET, "DestinationRule", name, ns, {"host": name, "subsets": [
            {"name": "v1", "labels": {"version": "v1"}},
            {"name": "v2", "labels": {"version": "v2"}}]}, creation_timestamp=stamp))
        weight = canary_weight + (1 if i == changed else 0)
        out.append(Resource(NET, "VirtualService", name, ns, {"hosts": [name], "http": [
            {"route": [{"destination": {"host": name, "subset": "v1"}, "weight": 100 - weight},
                       {"destination": {"host": name, "subset": "v2"}, "weight": weight}]}]},
            creation_timestamp=stamp))
    return out


class Acks(NoopHooks):
    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.event = asyncio.Event()

    def on_ack(self, proxy: ProxyInfo, type_url: str, version: str) -> None:
        self.times[type_url] = time.perf_counter()
        self.event.set()


class Generator:
    def __init__(self, snapshot: MeshSnapshot) -> None:
        self.snapshot = snapshot

    def generate(self, proxy: ProxyInfo) -> ProxyResources:
        return translate(self.snapshot, proxy)


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def wait_acked(acks: Acks, types: tuple[str, ...], since: float, timeout: float) -> float:
    deadline = time.perf_counter() + timeout
    while not all(acks.times.get(t, 0) > since for t in types):
        acks.event.clear()
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            raise TimeoutError(f"no ACK for {types} in {timeout}s")
        try:
            await asyncio.wait_for(acks.event.wait(), remaining)
        except TimeoutError:
            continue
    return max(acks.times[t] for t in types) - since


async def one(n: int, mode: str, root: Path) -> dict:
    rss_before = rss_mib()
    resources = mesh_resources(n)
    started = time.perf_counter()
    snapshot = MeshSnapshot.build(resources, 1)
    build_s = time.perf_counter() - started
    proxy = ProxyInfo(name="client", namespace="ns-0", labels={"app": "client"},
                      outbound_port=free_port(), inbound_port=None, xds_mode=mode)  # type: ignore[arg-type]
    started = time.perf_counter()
    generated = translate(snapshot, proxy)
    translate_s = time.perf_counter() - started
    counts = {t.rsplit(".", 1)[-1]: len(generated.get(t)) for t in PUSH_ORDER}
    acks, generator = Acks(), Generator(snapshot)
    server = XdsServer(generator, hooks=acks)
    port = await server.start("127.0.0.1", 0)
    envoy = start_envoy(root, proxy, port)
    try:
        await asyncio.sleep(0.5)  # Envoy connected and waiting: time the push, not its boot
        started = time.perf_counter()
        server.set_ready()
        initial_s = await wait_acked(acks, PUSH_ORDER[:4], started, 300)
        changes = []
        for k in range(10):
            generator.snapshot = MeshSnapshot.build(mesh_resources(n, changed=k), 2 + k)
            started = time.perf_counter()
            server.push("bench")
            changes.append(await wait_acked(acks, (PUSH_ORDER[3],), started, 120))
        rss = rss_mib()
    finally:
        envoy.stop(5)
        await server.stop()
    return {"services": n, "mode": mode, "build_s": build_s, "translate_s": translate_s,
            "initial_s": initial_s, "change_ms": statistics.median(changes) * 1000,
            "rss_mib": rss, "rss_growth_mib": rss - rss_before, "resources": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000,5000")
    parser.add_argument("--one", nargs=2, metavar=("N", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        with tempfile.TemporaryDirectory(prefix="mp-scale-") as tmp:
            print(json.dumps(asyncio.run(one(int(args.one[0]), args.one[1], Path(tmp)))))
        return
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        for mode in ("sotw", "delta"):
            out = subprocess.run([sys.executable, "-m", "benchmarks.scale", "--one", str(n), mode],
                                 capture_output=True, text=True, check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]
    print("scale: one sidecar, 3 clusters per service; ratios vs 1,000 services over SotW")
    print(f"{'services':>8} {'mode':>5} {'build s':>8} {'transl s':>8} {'initial s':>9} "
          f"{'change ms':>9} {'CP RSS MiB':>10} {'initial x':>9} {'change x':>8}")
    for r in rows:
        print(f"{r['services']:8d} {r['mode']:>5} {r['build_s']:8.2f} {r['translate_s']:8.2f} "
              f"{r['initial_s']:9.2f} {r['change_ms']:9.1f} {r['rss_mib']:10.0f} "
              f"{r['initial_s'] / base['initial_s']:9.2f} "
              f"{r['change_ms'] / base['change_ms']:8.2f}")


if __name__ == "__main__":
    main()
