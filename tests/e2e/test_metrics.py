"""Istio's standard metrics on real Envoy: a known mix of requests and TCP connections goes
through real sidecars, and the control plane's /metrics must count exactly that, with
Istio's label sets, for both reporters; response flags must equal the file access log's.
Envoy's own stats are checked where they matter to operators (circuit-breaker overflow).

The access-log stream flushes every 200 ms, so each check first waits until the counts
reach the expected totals, then checks that they stay there one more flush later.
"""

from __future__ import annotations

import json
import re
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from ..unit.telemetry.promtext import Sample, parse
from .conftest import free_port
from .mesh import Mesh, ProxyClient, _http_ok, mesh, read_line, wait_for

pytestmark = pytest.mark.e2e
NS = "traffic-demo"
URL = "http://sample-app/"
SERVICE = f"sample-app.{NS}.svc.cluster.local"
TCP_APP = Path(__file__).with_name("tcp_echo_app.py")
FLUSH = 0.2  # ALS_FLUSH_INTERVAL in xds/translate/telemetry.py
FILE_LOG_FLUSH = 1.0  # Envoy's default file flush interval

Key = tuple[str, frozenset[tuple[str, str]]]


def manifests() -> str:
    docs = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sample-app", "namespace": NS},
         "spec": {"selector": {"app": "sample-app"}, "ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "sample-app", "namespace": NS},
         "spec": {"host": "sample-app", "subsets": [
             {"name": v, "labels": {"version": v}} for v in ("v1", "v2")]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "sample-app", "namespace": NS},
         "spec": {"hosts": ["sample-app"], "http": [
             {"match": [{"headers": {"x-fault": {"exact": "abort"}}}],
              "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 100}}},
              "route": [{"destination": {"host": "sample-app", "subset": "v1"}}]},
             {"match": [{"headers": {"x-canary": {"exact": "v2"}}}],
              "route": [{"destination": {"host": "sample-app", "subset": "v2"}}]},
             {"route": [{"destination": {"host": "sample-app", "subset": "v1"}}]}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "tcp-echo", "namespace": NS},
         "spec": {"selector": {"app": "tcp-echo"},
                  "ports": [{"name": "tcp-echo", "port": 9000}]}},
    ]
    return yaml.safe_dump_all(docs)


@dataclass
class Metrics:
    m: Mesh
    client_port: int
    client: ProxyClient
    client_admin: int
    tcp_app_port: int

    def scrape(self) -> dict[Key, float]:
        with urllib.request.urlopen(self.m.server + "/metrics", timeout=5) as r:
            assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            _types, samples = parse(r.read().decode())
        return {(s.name, frozenset(s.labels)): s.value for s in samples}

    def samples(self) -> list[Sample]:
        with urllib.request.urlopen(self.m.server + "/metrics", timeout=5) as r:
            return parse(r.read().decode())[1]

    def access_log(self) -> Path:
        out = self.m.run("get", "we", "test-client", "-n", NS, "-o", "json")
        assert out.returncode == 0, out.stderr
        return Path(json.loads(out.stdout)["metadata"]["annotations"]["meshpilot.io/access-log"])


def tcp_workload(m: Mesh, name: str, labels: str, version: str) -> int:
    app_port, admin = free_port(), free_port()
    proc = m.spawn(name, "sidecar", "--name", name, "-n", NS, "--labels", labels,
                   "--app-port", str(app_port), "--app-protocol", "tcp",
                   "--admin-port", str(admin), "--outbound-port", str(free_port()), "--",
                   sys.executable, str(TCP_APP), "--port", str(app_port), "--version", version)
    wait_for(lambda: _http_ok(f"http://127.0.0.1:{admin}/ready"), 30, proc)
    return app_port


@pytest.fixture(scope="module")
def metrics(tmp_path_factory) -> Iterator[Metrics]:
    root = tmp_path_factory.mktemp("metrics-mesh")
    with mesh(root) as m:
        m.start_control_plane()
        result = m.run("apply", "-f", "-", stdin=manifests())
        assert result.returncode == 0, result.stderr
        for version in ("v1", "v2"):
            m.workload(f"sample-app-{version}", NS, f"app=sample-app,version={version}",
                       version)
        tcp_port = tcp_workload(m, "tcp-echo-v1", "app=tcp-echo,version=v1", "v1")
        client_port = m.client()
        client = ProxyClient(client_port)
        # The routes (fault first) are in place once the fault answers.
        wait_for(lambda: client.get(URL, {"x-fault": "abort"})[0] == 503, 15, m.control_plane)
        wait_for(lambda: client.get(URL, {"x-canary": "v2"})[1].get("x-version") == "v2", 15)
        yield Metrics(m, client_port, client, m.admin_port("test-client", NS), tcp_port)
        client.close()


def settle(metrics: Metrics, log: Path | None = None) -> dict[Key, float]:
    """Wait until nothing more arrives (every entry of earlier traffic counted, the file
    log flushed), then return the metrics."""
    last, last_size, since = metrics.scrape(), -1, time.monotonic()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        time.sleep(FLUSH)
        now = metrics.scrape()
        size = log.stat().st_size if log is not None and log.exists() else 0
        if now != last or size != last_size:
            last, last_size, since = now, size, time.monotonic()
        elif time.monotonic() - since > FILE_LOG_FLUSH + 2 * FLUSH:
            return now
    raise AssertionError("metrics never settled")


def delta(after: dict[Key, float], before: dict[Key, float], name: str) -> dict[
    frozenset[tuple[str, str]], float
]:
    out = {}
    for (n, labels), value in after.items():
        if n == name and value != before.get((n, labels), 0):
            out[labels] = value - before.get((n, labels), 0)
    return out


def client_workload() -> dict[str, str]:
    return {"source_workload": "test-client", "source_canonical_service": "test-client",
            "source_canonical_revision": "latest", "source_workload_namespace": NS,
            "source_principal": "unknown", "source_app": "test-client",
            "source_version": "unknown", "source_cluster": "Kubernetes"}


def destination(version: str | None) -> dict[str, str]:
    if version is None:  # no upstream host (fault abort): the workload is unknown
        workload = {"destination_workload": "unknown", "destination_workload_namespace": "unknown",
                    "destination_principal": "unknown", "destination_app": "unknown",
                    "destination_version": "unknown", "destination_canonical_service": "unknown",
                    "destination_canonical_revision": "latest", "destination_cluster": "unknown"}
    else:
        workload = {"destination_workload": f"sample-app-{version}",
                    "destination_workload_namespace": NS, "destination_principal": "unknown",
                    "destination_app": "sample-app", "destination_version": version,
                    "destination_canonical_service": "sample-app",
                    "destination_canonical_revision": version,
                    "destination_cluster": "Kubernetes"}
    return {**workload, "destination_service": SERVICE, "destination_service_name": "sample-app",
            "destination_service_namespace": NS}


HTTP_ORDER = [
    "reporter", "source_workload", "source_canonical_service", "source_canonical_revision",
    "source_workload_namespace", "source_principal", "source_app", "source_version",
    "source_cluster", "destination_workload", "destination_workload_namespace",
    "destination_principal", "destination_app", "destination_version", "destination_service",
    "destination_canonical_service", "destination_canonical_revision",
    "destination_service_name", "destination_service_namespace", "destination_cluster",
    "request_protocol", "response_code", "grpc_response_status", "response_flags",
    "connection_security_policy",
]


def http_row(reporter: str, version: str | None, code: int, flags: str) -> frozenset:
    labels = {"reporter": reporter, **client_workload(), **destination(version),
              "request_protocol": "http", "response_code": str(code),
              "grpc_response_status": "", "response_flags": flags,
              "connection_security_policy": "unknown" if reporter == "source" else "none"}
    assert sorted(labels) == sorted(HTTP_ORDER)
    return frozenset(labels.items())


ACCESS_LINE = re.compile(r'^\[[^\]]+\] "(?P<method>\S+) \S+ \S+" (?P<code>\d+) (?P<flags>\S+) ')


def file_log_flags(log: Path, offset: int) -> Counter:
    with log.open("rb") as f:
        f.seek(offset)
        lines = f.read().decode().splitlines()
    out: Counter = Counter()
    for line in lines:
        m = ACCESS_LINE.match(line)
        assert m is not None, line
        out[(m["code"], m["flags"])] += 1
    return out


def test_http_requests_are_counted_exactly_with_istio_labels(metrics: Metrics) -> None:
    log = metrics.access_log()
    before = settle(metrics, log)
    offset = log.stat().st_size
    n_v1, n_v2, n_fault, n_500 = 30, 20, 10, 5
    for _ in range(n_v1):
        assert metrics.client.get(URL)[0] == 200
    for _ in range(n_v2):
        assert metrics.client.get(URL, {"x-canary": "v2"})[0] == 200
    for _ in range(n_fault):
        assert metrics.client.get(URL, {"x-fault": "abort"})[0] == 503
    for _ in range(n_500):
        assert metrics.client.get(URL + "status/500", {"x-canary": "v2"})[0] == 500
    sent_at = time.monotonic()
    expected = {
        http_row("source", "v1", 200, "-"): n_v1,
        http_row("destination", "v1", 200, "-"): n_v1,
        http_row("source", "v2", 200, "-"): n_v2,
        http_row("destination", "v2", 200, "-"): n_v2,
        http_row("source", None, 503, "FI"): n_fault,  # aborted at the client: no server row
        http_row("source", "v2", 500, "-"): n_500,
        http_row("destination", "v2", 500, "-"): n_500,
    }
    total = sum(expected.values())

    def counted() -> float:
        return sum(delta(metrics.scrape(), before, "istio_requests_total").values())

    wait_for(lambda: counted() >= total, 10, every=0.02)
    latency = time.monotonic() - sent_at
    print(f"\nALS flush latency: all {total} entries counted {latency * 1000:.0f} ms after the "
          "last response")
    time.sleep(3 * FLUSH)  # nothing more may arrive
    after = metrics.scrape()
    assert delta(after, before, "istio_requests_total") == expected

    # The duration histogram counts the same requests; buckets are cumulative and end
    # with +Inf == _count; the byte histograms count them too.
    for labels, n in expected.items():
        for hist in ("istio_request_duration_milliseconds", "istio_request_bytes",
                     "istio_response_bytes"):
            count = after[(f"{hist}_count", labels)] - before.get((f"{hist}_count", labels), 0)
            assert count == n, (hist, dict(labels))
    buckets: dict[frozenset, list[tuple[float, float]]] = {}
    for (name, labels), value in after.items():
        if name == "istio_request_duration_milliseconds_bucket":
            le = dict(labels)["le"]
            rest = frozenset(kv for kv in labels if kv[0] != "le")
            buckets.setdefault(rest, []).append((float(le), value))
    for rest, rows in buckets.items():
        values = [v for _, v in sorted(rows)]
        assert values == sorted(values), dict(rest)
        assert sorted(rows)[-1][0] == float("inf")
        assert values[-1] == after[("istio_request_duration_milliseconds_count", rest)]

    # Label order is Istio's, in every sample of the family.
    for s in metrics.samples():
        if s.name == "istio_requests_total":
            assert [k for k, _ in s.labels] == HTTP_ORDER

    # The flags are Envoy's: the client's file access log says the same for each request.
    wait_for(lambda: sum(file_log_flags(log, offset).values()) >= n_v1 + n_v2 + n_fault + n_500,
             5)
    from_metrics: Counter = Counter()
    for labels, n in delta(after, before, "istio_requests_total").items():
        d = dict(labels)
        if d["reporter"] == "source":
            from_metrics[(d["response_code"], d["response_flags"])] += int(n)
    assert file_log_flags(log, offset) == from_metrics


def window(metrics: Metrics, **query: object) -> dict:
    url = (metrics.m.server + "/apis/meshpilot.io/v1/telemetry/window?"
           + urllib.parse.urlencode(query))
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def test_window_agrees_with_the_counters(metrics: Metrics) -> None:
    now = settle(metrics)
    for version in ("v1", "v2"):
        for reporter in ("source", "destination"):
            total = sum(v for (name, labels), v in now.items()
                        if name == "istio_requests_total"
                        and ("reporter", reporter) in labels
                        and ("destination_version", version) in labels
                        and ("destination_service_name", "sample-app") in labels)
            errors = sum(v for (name, labels), v in now.items()
                         if name == "istio_requests_total"
                         and ("reporter", reporter) in labels
                         and ("destination_version", version) in labels
                         and dict(labels)["response_code"].startswith("5"))
            got = window(metrics, service="sample-app", version=version, reporter=reporter,
                         seconds=600, quantile=0.5)
            assert got["requests"] == total > 0
            assert got["errors5xx"] == errors
            assert got["successRate"] == pytest.approx((total - errors) / total)
            assert 0 <= got["latencyMs"] <= 250  # local requests: well under 250 ms
    # No traffic for a version nobody runs: no rate, no latency.
    empty = window(metrics, service="sample-app", version="v9", seconds=10)
    assert empty["requests"] == 0 and empty["successRate"] is None
    assert empty["latencyMs"] is None


def connect(port: int, authority: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    assert head.startswith(b"HTTP/1.1 200"), head
    return sock


def test_tcp_tunnel_counts_one_connection_and_its_bytes(metrics: Metrics) -> None:
    before = settle(metrics)
    with connect(metrics.client_port, "tcp-echo:9000") as sock:
        sock.sendall(b"hello tcp\n")  # 10 bytes up
        assert read_line(sock) == b"v1:hello tcp\n"  # 13 bytes down
        time.sleep(2 * FLUSH)
        # While the connection is open, the server side already counts it as opened.
        opened = delta(metrics.scrape(), before, "istio_tcp_connections_opened_total")
        assert [dict(k)["reporter"] for k in opened] == ["destination"]
    names = ("istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
             "istio_tcp_received_bytes_total", "istio_tcp_sent_bytes_total")

    def done() -> bool:
        now = metrics.scrape()
        return all(sum(delta(now, before, n).values()) >= 2 for n in names[:2])

    wait_for(done, 10)
    time.sleep(3 * FLUSH)
    after = metrics.scrape()
    got = {n: delta(after, before, n) for n in names}
    server = {"destination_workload": "tcp-echo-v1", "destination_workload_namespace": NS,
              "destination_principal": "unknown", "destination_app": "tcp-echo",
              "destination_version": "v1",
              "destination_service": f"tcp-echo.{NS}.svc.cluster.local",
              "destination_canonical_service": "tcp-echo", "destination_canonical_revision": "v1",
              "destination_service_name": "tcp-echo", "destination_service_namespace": NS,
              "destination_cluster": "Kubernetes"}
    unknown_source = {"source_workload": "unknown", "source_canonical_service": "unknown",
                      "source_canonical_revision": "latest", "source_workload_namespace": "unknown",
                      "source_principal": "unknown", "source_app": "unknown",
                      "source_version": "unknown", "source_cluster": "unknown"}
    source_row = frozenset({"reporter": "source", **client_workload(), **server,
                            "request_protocol": "tcp", "response_flags": "-",
                            "connection_security_policy": "unknown"}.items())
    # Plaintext TCP carries no peer identity (as in Istio without mTLS).
    dest_row = frozenset({"reporter": "destination", **unknown_source, **server,
                          "request_protocol": "tcp", "response_flags": "-",
                          "connection_security_policy": "none"}.items())
    assert got == {
        "istio_tcp_connections_opened_total": {source_row: 1, dest_row: 1},
        "istio_tcp_connections_closed_total": {source_row: 1, dest_row: 1},
        "istio_tcp_received_bytes_total": {source_row: 10, dest_row: 10},
        "istio_tcp_sent_bytes_total": {source_row: 13, dest_row: 13},
    }


def stats_prometheus(admin: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{admin}/stats/prometheus", timeout=5) as r:
        return r.read().decode()


def test_circuit_breaker_overflow_shows_in_envoy_stats_and_metrics(metrics: Metrics) -> None:
    m = metrics.m
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
          "metadata": {"name": "sample-app", "namespace": NS},
          "spec": {"host": "sample-app",
                   "trafficPolicy": {"connectionPool": {"tcp": {"maxConnections": 1},
                                                        "http": {"http1MaxPendingRequests": 1}}},
                   "subsets": [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")]}}
    result = m.run("apply", "-f", "-", stdin=yaml.safe_dump(dr))
    assert result.returncode == 0, result.stderr
    cluster = f"outbound|80|v1|{SERVICE}"

    def config_arrived() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics.client_admin}/clusters",
                                    timeout=5) as r:
            text = r.read().decode()
        return f"{cluster}::default_priority::max_pending_requests::1" in text

    wait_for(config_arrived, 15, m.control_plane)
    before = settle(metrics)
    codes: Counter = Counter()
    lock = threading.Lock()

    def slow() -> None:
        c = ProxyClient(metrics.client_port)
        try:
            status = c.get(URL + "delay/300")[0]
        finally:
            c.close()
        with lock:
            codes[status] += 1

    threads = [threading.Thread(target=slow) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert codes[503] > 0 and codes[200] > 0, codes

    # Envoy's own counter.
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics.client_admin}/stats?filter="
                                "pending_overflow", timeout=5) as r:
        plain = r.read().decode()
    # (clusters carry alt_stat_name `<name>;`, so the name ends at the `;`)
    assert f"cluster.{cluster};.upstream_rq_pending_overflow: {codes[503]}" in plain

    # The same overflows in istio_requests_total, flagged UO at the source only.
    def overflowed() -> float:
        rows = delta(metrics.scrape(), before, "istio_requests_total")
        return sum(n for k, n in rows.items() if dict(k)["response_flags"] == "UO")

    wait_for(lambda: overflowed() >= codes[503], 10)
    rows = delta(metrics.scrape(), before, "istio_requests_total")
    uo = {k: n for k, n in rows.items() if dict(k)["response_flags"] == "UO"}
    assert uo == {http_row("source", None, 503, "UO"): codes[503]}


def test_envoy_cluster_stats_carry_the_istio_cluster_name(metrics: Metrics) -> None:
    """Envoy's /stats/prometheus labels cluster stats with the whole Istio cluster name in
    `cluster_name`, as Istio's bootstrap does, so dashboards can select
    `cluster_name="outbound|80|v1|sample-app..."`. Needs the bootstrap's stats_tags entry
    (Envoy's default extractor cuts the name at its first dot). Runs after the
    circuit-breaker test, which made the overflow counter non-zero."""
    cluster = f"outbound|80|v1|{SERVICE}"
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics.client_admin}/stats?filter="
                                "pending_overflow", timeout=5) as r:
        plain = r.read().decode()
    found_plain = re.search(re.escape(f"cluster.{cluster};.upstream_rq_pending_overflow: ")
                            + r"(\d+)", plain)
    assert found_plain is not None and int(found_plain.group(1)) > 0
    pattern = re.compile(r'^envoy_cluster_upstream_rq_pending_overflow\{[^}]*\bcluster_name="'
                         + re.escape(cluster) + r'"[^}]*\} (\d+)$', re.M)
    found = pattern.search(stats_prometheus(metrics.client_admin))
    assert found is not None and found.group(1) == found_plain.group(1)
