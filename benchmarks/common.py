"""Shared pieces for the benchmarks: free ports, a control plane, bare Envoy proxies.

Benchmarks never assert; they print figures and ratios against a baseline measured in
the same run, because this machine is shared and noisy.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from meshpilot.proxy.bootstrap import build_bootstrap, write_bootstrap
from meshpilot.proxy.ports import free_port
from meshpilot.proxy.process import EnvoyProcess
from meshpilot.xds.types import ProxyInfo


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary(values: list[float]) -> str:
    return (f"p50 {percentile(values, 0.5):8.1f}  p99 {percentile(values, 0.99):8.1f}  "
            f"mean {statistics.fmean(values):8.1f}")


class ControlPlane:
    """`meshpilot up` as a subprocess, with its REST API on a free port."""

    def __init__(self, root: Path, *extra: str) -> None:
        self.api_port, self.xds_port = free_port(), free_port()
        self.log = root / f"control-plane-{self.api_port}.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "meshpilot", "up", "--state", str(root / "cp"),
             "--api-port", str(self.api_port), "--xds-port", str(self.xds_port), *extra],
            stdout=self.log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                self.get("/readyz", raw=True)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"control plane did not start: {self.log.read_text()[-2000:]}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def get(self, path: str, raw: bool = False) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as r:
            body = r.read()
        return body if raw else json.loads(body)

    def apply(self, objects: list[dict]) -> None:
        req = urllib.request.Request(
            self.url + "/apis/meshpilot.io/v1/apply", method="POST",
            data=json.dumps({"objects": objects}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            r.read()

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(15)


def start_envoy(root: Path, proxy: ProxyInfo, xds_port: int) -> EnvoyProcess:
    """A bare Envoy with meshpilot's bootstrap: a proxy's worth of xDS load, no app."""
    admin = free_port()
    folder = root / "proxies" / proxy.id
    folder.mkdir(parents=True, exist_ok=True)
    path = write_bootstrap(folder / "bootstrap.json", build_bootstrap(
        proxy, xds_host="127.0.0.1", xds_port=xds_port, admin_port=admin))
    envoy = EnvoyProcess(path, admin_port=admin, log_path=folder / "envoy.log",
                         log_level="warning")
    envoy.start()
    return envoy


def static_envoy(root: Path, name: str, route: dict[str, Any], domains: list[str],
                 clusters: list[dict[str, Any]] | None = None) -> tuple[EnvoyProcess, int]:
    """A minimal hand-written Envoy (one listener, one route, `--concurrency 1`): the
    baseline a generated config is compared with. Returns the process and its port."""
    port, admin = free_port(), free_port()
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": name,
        "http_protocol_options": {"allow_absolute_url": True},
        "route_config": {"virtual_hosts": [{
            "name": name, "domains": domains,
            "routes": [{"match": {"prefix": "/"}, **route}]}]},
        "http_filters": [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}],
    }
    cfg = {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": name,
                "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm}]}],
            }],
            "clusters": clusters or [],
        },
    }
    path = root / f"{name}.json"
    path.write_text(json.dumps(cfg))
    envoy = EnvoyProcess(path, admin_port=admin, log_path=root / f"{name}.log",
                         log_level="warning")
    envoy.start()
    envoy.wait_ready(30)
    return envoy, port
