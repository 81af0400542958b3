"""A real Prometheus on 127.0.0.1 for tests: scrape Envoy, discover proxies, check PromQL.

Only a real Prometheus proves that an expression parses, that a `/stats/prometheus` page
is accepted, and that HTTP service discovery hands out the labels we expect; a regex or a
hand-written parser would only prove what we already believe. The binary comes from
`tools/fetch-prometheus` (run by `make test`); without it the tests that need it skip.

Everything stays on loopback: the generated config has static targets and/or
`http_sd_configs` on 127.0.0.1 only, no remote_write/remote_read, no alerting, no rule
files, so Prometheus makes no lookup or connection anywhere else.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshpilot.proxy.ports import free_port

ROOT = Path(__file__).parents[2]
FETCHED = ROOT / ".venv" / "tools" / "prometheus" / "usr" / "bin" / "prometheus"
SKIP_REASON = ("no Prometheus binary (not on PATH, not in .venv/tools/prometheus); "
               "run tools/fetch-prometheus (make test does) to enable the real-PromQL tests")


def find_prometheus() -> Path | None:
    """`prometheus` on PATH first (a user's own install wins), then the fetched copy."""
    on_path = shutil.which("prometheus")
    if on_path:
        return Path(on_path)
    return FETCHED if os.access(FETCHED, os.X_OK) else None


def find_promtool() -> Path | None:
    """promtool beside the prometheus binary found (Debian ships both in one package)."""
    binary = find_prometheus()
    tool = binary.with_name("promtool") if binary is not None else None
    return tool if tool is not None and os.access(tool, os.X_OK) else None


def require_prometheus() -> Path:
    """The binary, or skip the calling test with the reason and the fix."""
    binary = find_prometheus()
    if binary is None:
        pytest.skip(SKIP_REASON)
    return binary


class PromQLError(AssertionError):
    """Prometheus refused a query (bad syntax, bad types): `error_type` is its errorType."""

    def __init__(self, expr: str, error_type: str, message: str) -> None:
        super().__init__(f"{error_type}: {message}\n  in: {expr}")
        self.expr, self.error_type, self.message = expr, error_type, message


def _loopback(target: str) -> str:
    """Refuse anything but 127.0.0.1: a test must never make Prometheus reach elsewhere."""
    host = urllib.parse.urlsplit(target if "//" in target else f"//{target}").hostname
    if host != "127.0.0.1":
        raise ValueError(f"Prometheus test targets must be on 127.0.0.1, not {target!r}")
    return target


@dataclass
class ScrapeJob:
    """One scrape job: fixed `targets` (HOST:PORT) and/or an HTTP SD endpoint URL."""

    name: str
    targets: Sequence[str] = ()
    http_sd_url: str | None = None
    metrics_path: str = "/metrics"
    labels: dict[str, str] = field(default_factory=dict)

    def config(self, interval: str, sd_refresh: str) -> dict[str, Any]:
        job: dict[str, Any] = {"job_name": self.name, "metrics_path": self.metrics_path,
                               "scrape_interval": interval, "scrape_timeout": interval}
        if self.targets:
            group: dict[str, Any] = {"targets": [_loopback(t) for t in self.targets]}
            if self.labels:
                group["labels"] = dict(self.labels)
            job["static_configs"] = [group]
        if self.http_sd_url:
            job["http_sd_configs"] = [{"url": _loopback(self.http_sd_url),
                                       "refresh_interval": sd_refresh}]
        return job


def config(jobs: Sequence[ScrapeJob], interval: str = "1s", sd_refresh: str = "1s") -> dict:
    """The whole prometheus.yml: global intervals and the jobs, nothing that leaves loopback."""
    return {
        "global": {"scrape_interval": interval, "scrape_timeout": interval,
                   "evaluation_interval": interval},
        "scrape_configs": [j.config(interval, sd_refresh) for j in jobs],
    }


class Prometheus:
    """One Prometheus process with its own config, data directory, port and log."""

    def __init__(self, workdir: Path, jobs: Sequence[ScrapeJob] = (), *,
                 interval: str = "1s", binary: Path | None = None) -> None:
        self.workdir = workdir
        self.jobs = list(jobs)
        self.interval = interval
        self.binary = binary or require_prometheus()
        self.port = free_port()
        self.log_path = workdir / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Prometheus:
        self.workdir.mkdir(parents=True, exist_ok=True)
        cfg = self.workdir / "prometheus.yml"
        cfg.write_text(yaml.safe_dump(config(self.jobs, self.interval), sort_keys=False))
        argv = [
            str(self.binary),
            f"--config.file={cfg}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=1h",
            # Debian's build points these at /etc/prometheus; keep them inside the test dir.
            f"--web.console.templates={self.workdir / 'consoles'}",
            f"--web.console.libraries={self.workdir / 'console_libraries'}",
            "--log.level=info",
        ]
        with self.log_path.open("w") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n"
                                     f"{self.log()}")
            with suppress(OSError), urllib.request.urlopen(self.url + "/-/ready",
                                                           timeout=1) as r:
                if r.status == 200:
                    return
            time.sleep(0.05)
        raise AssertionError(f"prometheus not ready after {timeout}s:\n{self.log()}")

    def log(self, tail: int = 4000) -> str:
        return self.log_path.read_text()[-tail:] if self.log_path.exists() else ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM (Prometheus flushes and exits), SIGKILL the group if it hangs; always reaped."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- HTTP API -------------------------------------------------------------------

    def api(self, path: str, params: dict[str, str] | None = None) -> Any:
        """POST form parameters to /api/v1/`path`; the `data` member, or PromQLError."""
        body = urllib.parse.urlencode(params or {}).encode()
        req = urllib.request.Request(f"{self.url}/api/v1/{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                reply = json.loads(r.read())
        except urllib.error.HTTPError as e:
            # 400 (bad_data) and 422 (execution) carry a JSON error body: that is the answer.
            try:
                reply = json.loads(e.read())
            except ValueError:
                raise AssertionError(f"prometheus {path}: HTTP {e.code}") from None
        if reply.get("status") != "success":
            raise PromQLError((params or {}).get("query", path), reply.get("errorType", "?"),
                              reply.get("error", "?"))
        return reply["data"]

    def query(self, expr: str, at: float | None = None) -> list[dict[str, Any]]:
        """Instant query: the result list (for a vector: [{"metric": {...}, "value": [t, "v"]}])."""
        params = {"query": expr}
        if at is not None:
            params["time"] = repr(at)
        data = self.api("query", params)
        result = data["result"]
        # A scalar or string result is one pair, not a list of series: wrap it alike.
        return result if data["resultType"] in ("vector", "matrix") else [{"value": result}]

    def query_range(self, expr: str, start: float, end: float,
                    step: float = 1.0) -> list[dict[str, Any]]:
        """Range query: [{"metric": {...}, "values": [[t, "v"], ...]}]."""
        data = self.api("query_range", {"query": expr, "start": repr(start),
                                        "end": repr(end), "step": repr(step)})
        return data["result"]

    def targets(self) -> list[dict[str, Any]]:
        """Active scrape targets with their labels, health and last error."""
        with urllib.request.urlopen(f"{self.url}/api/v1/targets?state=active", timeout=10) as r:
            return json.loads(r.read())["data"]["activeTargets"]

    def wait_for_series(self, expr: str, *, count: int = 1, timeout: float = 20.0,
                        check: Callable[[list[dict[str, Any]]], bool] | None = None,
                        ) -> list[dict[str, Any]]:
        """Poll `expr` until it returns at least `count` series (and `check` passes).

        Discovery, the first scrape and ingestion each take up to an interval, and HTTP SD
        updates are batched by Prometheus's discovery manager (about 5 s), hence the polling.
        """
        deadline = time.monotonic() + timeout
        result: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            result = self.query(expr)
            if len(result) >= count and (check is None or check(result)):
                return result
            time.sleep(0.25)
        raise AssertionError(
            f"{expr}: wanted {count} series within {timeout}s, got {len(result)}: "
            f"{json.dumps(result)[:2000]}\ntargets: {json.dumps(self.targets())[:2000]}\n"
            f"log:\n{self.log(2000)}")


@contextmanager
def prometheus(workdir: Path, jobs: Sequence[ScrapeJob] = (), *,
               interval: str = "1s") -> Iterator[Prometheus]:
    """A started Prometheus, always stopped (and reaped) on the way out."""
    prom = Prometheus(workdir, jobs, interval=interval)
    prom.start()
    try:
        yield prom
    finally:
        prom.stop()
