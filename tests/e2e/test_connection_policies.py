"""DestinationRule connectionPool and warm-up fields, shown by what real traffic does.

The unit and golden tests prove that each field lands in the generated Envoy config; these
tests prove that Envoy then behaves as Istio documents: connections really close when idle
or old, every request gets its own connection, the retry circuit breaker really refuses
retries, the upstream really sees HTTP/2 (or not), sockets really carry TCP keepalive, and
a new endpoint really gets less traffic while it warms up.

One mesh (control plane, one client sidecar) serves the module. Upstreams are bare demo
apps behind WorkloadEntries, so the client's Envoy is the only proxy on the path, plus one
hand-written Envoy (codec AUTO) for the HTTP/2 cases, whose own stats say which protocol
arrived. Each test uses its own Service, so no test sees another's connections.

The sidecar bootstrap keeps only some cluster stats (bootstrap.STATS_INCLUSIONS):
`upstream_cx_idle_timeout`, `upstream_cx_max_duration_reached`, `upstream_cx_max_requests`
and `upstream_cx_http{1,2}_total` are not kept, so the tests read what is kept
(`upstream_cx_total`, `upstream_cx_active`, `upstream_cx_destroy_*`, `upstream_rq_*`,
`circuit_breakers.*`) plus the upstream's own view.
"""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml

from meshpilot.load import LoadSpec, run_load
from meshpilot.proxy.process import EnvoyProcess

from .conftest import free_port
from .mesh import Mesh, ProxyClient, _http_ok, mesh, wait_for

pytestmark = pytest.mark.e2e
NS = "conn-policy"
HPO = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
WARMUP_WINDOW_S = 5.0
WARM_HOSTS = ("warm-app", "warmmin-app")


def fqdn(host: str) -> str:
    return f"{host}.{NS}.svc.cluster.local"


def cluster_name(host: str) -> str:
    return f"outbound|80||{fqdn(host)}"


def service(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80}]}}


def workload_entry(name: str, app: str, port: int) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
            "metadata": {"name": name, "namespace": NS},
            "spec": {"address": "127.0.0.1", "labels": {"app": app}, "ports": {"http": port}}}


def dr(host: str, policy: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": host, "namespace": NS},
            "spec": {"host": host, "trafficPolicy": policy}}


def protocol_options(cluster: dict[str, Any]) -> dict[str, Any]:
    return cluster.get("typed_extension_protocol_options", {}).get(HPO, {})


def common_options(cluster: dict[str, Any]) -> dict[str, Any]:
    return protocol_options(cluster).get("common_http_protocol_options", {})


@dataclass
class Env:
    m: Mesh
    outbound: int
    admin: int
    apps: dict[str, int]
    started: dict[str, float] = field(default_factory=dict)

    def apply(self, *docs: dict[str, Any]) -> None:
        result = self.m.run("apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
        assert result.returncode == 0, result.stderr

    def backend(self, host: str, app: str, policy: dict[str, Any] | None = None) -> None:
        """Service `host` with one endpoint (the bare app `app`), and its DestinationRule."""
        docs = [service(host), workload_entry(f"{host}-1", host, self.apps[app])]
        self.apply(*docs, *([dr(host, policy)] if policy is not None else []))

    def _get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}{path}", timeout=5) as r:
            return r.read().decode()

    def clusters(self) -> dict[str, dict[str, Any]]:
        dump = json.loads(self._get("/config_dump?resource=dynamic_active_clusters"))
        return {c["cluster"]["name"]: c["cluster"] for c in dump.get("configs", [])}

    def wait_cluster(self, host: str, check: Callable[[dict[str, Any]], bool]) -> None:
        """Until the client Envoy runs the cluster this test's DestinationRule produces."""
        def ok() -> bool:
            c = self.clusters().get(cluster_name(host))
            return c is not None and check(c)
        wait_for(ok, 20, self.m.control_plane, every=0.2)

    def stats(self, host: str) -> Counter:
        """The client Envoy's stats of one cluster, by their name after the cluster name
        (Envoy creates traffic stats on first use, so a missing stat reads 0)."""
        prefix = f"cluster.{cluster_name(host)}"
        out: Counter = Counter()
        for line in self._get("/stats").splitlines():
            key, _, value = line.rpartition(": ")
            if key.startswith(prefix) and value.isdigit():
                out[key[len(prefix):].lstrip(";").lstrip(".")] = int(value)
        return out

    def host_count(self, host: str) -> int:
        """Endpoints the client Envoy has for the cluster (admin /clusters)."""
        needle = f"{cluster_name(host)}::127.0.0.1:"
        return len({line.split("::")[1] for line in self._get("/clusters").splitlines()
                    if line.startswith(needle)})


def _spawn_app(m: Mesh, name: str, *extra: str) -> tuple[str, int]:
    port = free_port()
    m.spawn(name, "demo-app", "--port", str(port), "--version", "v1", "--name", name, *extra)
    return name, port


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    """The mesh, all bare apps (started together: each is a Python start-up), and the
    warm-up services' first two endpoints, applied first so that they are out of their
    own slow-start window by the time the warm-up test adds a third."""
    with mesh(tmp_path_factory.mktemp("conn-mesh")) as m:
        m.start_control_plane()
        specs = [("plain",), ("ka-on",), ("ka-off",), ("fail-capped", "--status", "503"),
                 ("fail-free", "--status", "503"), ("warm-1",), ("warm-2",), ("warm-3",)]
        apps = dict(_spawn_app(m, *spec) for spec in specs)
        for port in apps.values():
            wait_for(lambda port=port: _http_ok(f"http://127.0.0.1:{port}/count"), 30)
        outbound = m.client("conn-client", NS)
        e = Env(m, outbound, m.admin_port("conn-client", NS), apps)
        warm = {"warm-app": {"simple": "ROUND_ROBIN", "warmupDurationSecs": "5s"},
                "warmmin-app": {"warmup": {"duration": "5s", "minimumPercent": 50}}}
        e.apply(*(doc for host, lb in warm.items() for doc in (
            service(host), dr(host, {"loadBalancer": lb}),
            *(workload_entry(f"{host}-{i}", host, apps[f"warm-{i}"]) for i in (1, 2)))))
        e.wait_cluster("warm-app", lambda c: "slow_start_config" in c.get(
            "round_robin_lb_config", {}))
        e.wait_cluster("warmmin-app", lambda c: c.get("least_request_lb_config", {}).get(
            "slow_start_config", {}).get("min_weight_percent", {}).get("value") == 50)
        for host in warm:
            wait_for(lambda host=host: e.host_count(host) == 2, 20, m.control_plane, every=0.2)
        e.started["warm"] = time.monotonic()
        yield e


# --- connection lifetime ------------------------------------------------------------------------


def test_http_idle_timeout_closes_idle_connections(env: Env) -> None:
    """idleTimeout 1.5s: a connection kept busy (a request every 0.3 s) for longer than the
    timeout stays the one connection, so the close is about idleness, not age; once idle
    for 3 s Envoy itself has closed it (destroy_local, none active), and the next request
    opens a new one."""
    env.backend("idle-app", "plain", {"connectionPool": {"http": {"idleTimeout": "1.5s"}}})
    env.wait_cluster("idle-app", lambda c: common_options(c).get("idle_timeout") == "1.500s")
    client = ProxyClient(env.outbound)
    for _ in range(8):  # 2.4 s of traffic, never idle for 1.5 s
        assert client.get("http://idle-app/")[0] == 200
        time.sleep(0.3)
    busy = env.stats("idle-app")
    assert busy["upstream_cx_total"] == 1 and busy["upstream_cx_active"] == 1, busy
    time.sleep(3.0)
    idle = env.stats("idle-app")
    assert idle["upstream_cx_active"] == 0, idle
    assert idle["upstream_cx_destroy_local"] == 1 and idle["upstream_cx_destroy_remote"] == 0, idle
    assert client.get("http://idle-app/")[0] == 200
    assert env.stats("idle-app")["upstream_cx_total"] == 2
    client.close()


def test_max_connection_duration_closes_busy_connections(env: Env) -> None:
    """maxConnectionDuration 1s: unlike the idle timeout, it ends connections that never go
    idle. A request every 0.1 s for 3.5 s keeps reusing a connection, yet Envoy replaces it
    about once a second: several connections, each closed by Envoy (not by the app), and
    far fewer than the ~35 requests (connections are reused until they are too old)."""
    env.backend("age-app", "plain", {"connectionPool": {"tcp": {"maxConnectionDuration": "1s"}}})
    env.wait_cluster("age-app", lambda c: common_options(c).get("max_connection_duration") == "1s")
    client = ProxyClient(env.outbound)
    sent, end = 0, time.monotonic() + 3.5
    while time.monotonic() < end:
        assert client.get("http://age-app/")[0] == 200
        sent += 1
        time.sleep(0.1)
    client.close()
    s = env.stats("age-app")
    print(f"\nmaxConnectionDuration 1s: {sent} requests over 3.5 s used "
          f"{s['upstream_cx_total']} connections, Envoy closed {s['upstream_cx_destroy_local']}")
    assert 3 <= s["upstream_cx_total"] <= 10 and s["upstream_cx_total"] < sent / 2, (sent, s)
    assert s["upstream_cx_destroy_local"] >= 2 and s["upstream_cx_destroy_remote"] == 0, s


def test_max_requests_per_connection_one(env: Env) -> None:
    """maxRequestsPerConnection 1: 20 requests over one keep-alive client connection still
    open 20 upstream connections, each closed by Envoy after its one request."""
    env.backend("once-app", "plain",
                {"connectionPool": {"http": {"maxRequestsPerConnection": 1}}})
    env.wait_cluster("once-app", lambda c: common_options(c).get(
        "max_requests_per_connection") == 1)
    client = ProxyClient(env.outbound)
    for _ in range(20):
        assert client.get("http://once-app/")[0] == 200
    client.close()
    s = env.stats("once-app")
    assert s["upstream_rq_total"] == 20 and s["upstream_cx_total"] == 20, s
    wait_for(lambda: env.stats("once-app")["upstream_cx_destroy_local"] >= 19, 5)


# --- retry circuit breaker ----------------------------------------------------------------------


def test_max_retries_caps_concurrent_retries(env: Env) -> None:
    """maxRetries 1 is the retry circuit breaker: at most one retry in flight for the
    cluster. The same load (8 concurrent requests, each retried up to 3 times on 503, to an
    app that always answers 503 after 50 ms) against a twin service without the limit
    retries every request 3 times; with the limit Envoy refuses most retries
    (upstream_rq_retry_overflow) and the failing app sees far fewer attempts."""
    for host, app in (("retry-capped", "fail-capped"), ("retry-free", "fail-free")):
        policy = {"connectionPool": {"http": {"maxRetries": 1}}} if host == "retry-capped" else {
            "loadBalancer": {"simple": "ROUND_ROBIN"}}
        env.backend(host, app, policy)
        env.apply({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                   "metadata": {"name": host, "namespace": NS},
                   "spec": {"hosts": [host], "http": [{
                       "route": [{"destination": {"host": host}}],
                       "retries": {"attempts": 3, "retryOn": "5xx", "perTryTimeout": "5s"}}]}})
    env.wait_cluster("retry-capped", lambda c: c["circuit_breakers"]["thresholds"][0].get(
        "max_retries") == 1)
    env.wait_cluster("retry-free", lambda c: c.get("lb_policy") is None)  # ROUND_ROBIN
    attempts = {}
    for host, app in (("retry-capped", "fail-capped"), ("retry-free", "fail-free")):
        before = _count(env.apps[app])
        result = run_load(LoadSpec(url=f"http://{host}/delay/50", connections=8, qps=0,
                                   calls=40, duration=None, proxy=f"http://127.0.0.1:{env.outbound}"))
        assert result.codes == {503: 40}, (host, result.codes)
        attempts[host] = _count(env.apps[app]) - before
    capped, free = env.stats("retry-capped"), env.stats("retry-free")
    print(f"\nmaxRetries 1: upstream attempts for 40 requests: {attempts}, retry overflow "
          f"{capped['upstream_rq_retry_overflow']} "
          f"(unlimited: {free['upstream_rq_retry_overflow']})")
    assert free["upstream_rq_retry_overflow"] == 0 and attempts["retry-free"] == 160, (free,
                                                                                         attempts)
    assert capped["upstream_rq_retry_overflow"] >= 10, capped
    assert attempts["retry-capped"] <= 40 + 40 * 3 - capped["upstream_rq_retry_overflow"]
    assert attempts["retry-capped"] < 0.75 * attempts["retry-free"], attempts


def _count(port: int) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/count", timeout=5) as r:
        return int(json.loads(r.read())["requests"])


# --- HTTP/2 upgrade, useClientProtocol, http2MaxRequests ---------------------------------------


H2_LISTENERS = ("upgrade", "default", "never", "client", "streams")


@dataclass
class H2Upstream:
    """A hand-written Envoy that speaks HTTP/1.1 or h2c (codec AUTO) on one listener per
    case; its `http.<case>.downstream_cx_http{1,2}_total` say what the mesh sent it."""
    envoy: EnvoyProcess
    ports: dict[str, int]

    def stats(self, case: str) -> dict[str, int]:
        _, body = self.envoy.admin_get("/stats")
        out = {}
        for proto in ("http1", "http2"):
            m = re.search(rf"^http\.{case}\.downstream_cx_{proto}_total: (\d+)$", body, re.M)
            out[proto] = int(m.group(1)) if m else 0
        return out


def _h2_listener(case: str, port: int) -> dict[str, Any]:
    fault = "envoy.filters.http.fault"
    fault_type = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
    routes = [
        {"match": {"prefix": "/slow"}, "direct_response": {"status": 200, "body": {
            "inline_string": "slow\n"}},
         "typed_per_filter_config": {fault: {"@type": fault_type, "delay": {
             "fixed_delay": "1s", "percentage": {"numerator": 100}}}}},
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {
            "inline_string": f"{case}\n"}}},
    ]
    return {
        "name": case,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [{"filters": [{
            "name": "envoy.filters.network.http_connection_manager",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.filters.network."
                         "http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": case, "codec_type": "AUTO",
                "route_config": {"virtual_hosts": [{"name": case, "domains": ["*"],
                                                    "routes": routes}]},
                "http_filters": [
                    {"name": fault, "typed_config": {"@type": fault_type}},
                    {"name": "envoy.filters.http.router",
                     "typed_config": {"@type": "type.googleapis.com/envoy.extensions."
                                               "filters.http.router.v3.Router"}}],
            }}]}],
    }


@pytest.fixture(scope="module")
def h2(env: Env, tmp_path_factory: pytest.TempPathFactory) -> Iterator[H2Upstream]:
    """The h2c-capable upstream and five services in front of it, one per policy."""
    root = tmp_path_factory.mktemp("h2-upstream")
    ports = {case: free_port() for case in H2_LISTENERS}
    admin = free_port()
    cfg = {"admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                    "port_value": admin}}},
           "static_resources": {"listeners": [_h2_listener(c, p) for c, p in ports.items()]}}
    (root / "h2.json").write_text(json.dumps(cfg))
    envoy = EnvoyProcess(root / "h2.json", admin_port=admin, log_path=root / "h2.log",
                         log_level="warning")
    envoy.start()
    try:
        envoy.wait_ready(30)
        pools = {"upgrade": {"h2UpgradePolicy": "UPGRADE", "http2MaxRequests": 3},
                 "default": {"h2UpgradePolicy": "DEFAULT"},
                 "never": {"h2UpgradePolicy": "DO_NOT_UPGRADE"},
                 "client": {"useClientProtocol": True},
                 "streams": {"h2UpgradePolicy": "UPGRADE", "maxConcurrentStreams": 2}}
        env.apply(*(doc for case, port in ports.items() for doc in (
            service(f"h2-{case}"), workload_entry(f"h2-{case}-1", f"h2-{case}", port),
            dr(f"h2-{case}", {"connectionPool": {"http": pools[case]}}))))
        env.wait_cluster("h2-upgrade", lambda c: "http2_protocol_options" in protocol_options(
            c).get("explicit_http_config", {}))
        env.wait_cluster("h2-streams", lambda c: protocol_options(c).get(
            "explicit_http_config", {}).get("http2_protocol_options", {}).get(
            "max_concurrent_streams") == 2)
        env.wait_cluster("h2-client", lambda c: "use_downstream_protocol_config" in
                         protocol_options(c))
        for case in ("default", "never"):
            env.wait_cluster(f"h2-{case}", lambda c: "circuit_breakers" in c)
        yield H2Upstream(envoy, ports)
    finally:
        envoy.stop(2)


def test_h2_upgrade_policy(env: Env, h2: H2Upstream) -> None:
    """h2UpgradePolicy UPGRADE: the mesh's HTTP/1.1 requests reach the upstream over HTTP/2
    (h2c); DEFAULT (the mesh default, DO_NOT_UPGRADE) and DO_NOT_UPGRADE keep HTTP/1.1."""
    client = ProxyClient(env.outbound)
    for case in ("upgrade", "default", "never"):
        for _ in range(5):
            status, _, body = client.get(f"http://h2-{case}/")
            assert (status, body) == (200, f"{case}\n".encode()), (case, status, body)
    client.close()
    seen = {case: h2.stats(case) for case in ("upgrade", "default", "never")}
    print(f"\nupstream connections by protocol: {seen}")
    assert seen["upgrade"]["http2"] >= 1 and seen["upgrade"]["http1"] == 0, seen
    for case in ("default", "never"):
        assert seen[case]["http1"] >= 1 and seen[case]["http2"] == 0, seen


def test_use_client_protocol(env: Env, h2: H2Upstream) -> None:
    """useClientProtocol: the upstream connection speaks what the client spoke. HTTP/1.1
    to the sidecar stays HTTP/1.1; h2c (curl --http2-prior-knowledge) becomes HTTP/2."""
    client = ProxyClient(env.outbound)
    assert client.get("http://h2-client/")[0] == 200
    client.close()
    after_h1 = h2.stats("client")
    assert after_h1 == {"http1": 1, "http2": 0}, after_h1
    out = subprocess.run(
        ["curl", "-sS", "--http2-prior-knowledge", "-o", "-", "-w", "\n%{http_version}",
         "--connect-to", f"h2-client:80:127.0.0.1:{env.outbound}", "http://h2-client/"],
        capture_output=True, text=True, timeout=20)
    assert out.returncode == 0 and out.stdout == "client\n\n2", (out.stdout, out.stderr)
    after_h2 = h2.stats("client")
    assert after_h2 == {"http1": 1, "http2": 1}, after_h2


def _burst(env: Env, host: str, n: int,
           during: Callable[[], None] | None = None) -> list[tuple[int, str, float]]:
    """n concurrent GET /slow (1 s at the upstream), one client connection each, released
    together; (status, x-envoy-overloaded, seconds) per request. `during` runs meanwhile."""
    results: list[tuple[int, str, float]] = []
    barrier = threading.Barrier(n)

    def one() -> None:
        c = ProxyClient(env.outbound)
        barrier.wait(10)
        start = time.monotonic()
        status, hdrs, _ = c.get(f"http://{host}/slow")
        lower = {k.lower(): v for k, v in hdrs.items()}
        results.append((status, lower.get("x-envoy-overloaded", ""), time.monotonic() - start))
        c.close()

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    if during is not None:
        during()
    for t in threads:
        t.join(30)
    assert len(results) == n, results
    return results


def test_http2_max_requests_caps_concurrent_requests(env: Env, h2: H2Upstream) -> None:
    """http2MaxRequests 3 on the upgraded (HTTP/2) cluster: of 12 concurrent 1-second
    requests, which HTTP/2 would all multiplex on one connection, only ~3 run; the rest
    fail fast with 503 `x-envoy-overloaded` and count as upstream_rq_active_overflow
    (Envoy's max_requests breaker; `circuit_breakers.default.rq_open` is 1 while it is
    full). The same burst to a cluster without the limit all succeeds."""
    def breaker_opens() -> None:
        wait_for(lambda: env.stats("h2-upgrade")["circuit_breakers.default.rq_open"] == 1,
                 10, every=0.02)

    results = _burst(env, "h2-upgrade", 12, breaker_opens)
    unlimited = _burst(env, "h2-never", 12)
    capped = Counter(s for s, _, _ in results)
    stats = env.stats("h2-upgrade")
    print(f"\nhttp2MaxRequests 3, 12 concurrent: {dict(capped)}; overflow "
          f"{stats['upstream_rq_active_overflow']}, upstream connections "
          f"{stats['upstream_cx_total']}")
    assert Counter(s for s, _, _ in unlimited) == {200: 12}, unlimited
    assert 1 <= capped[200] <= 6 and capped[503] >= 6, capped
    assert capped[200] + capped[503] == 12, capped
    assert all(o == "true" and d < 0.8 for s, o, d in results if s == 503), results
    assert stats["upstream_rq_active_overflow"] == capped[503], stats
    assert stats["upstream_cx_total"] <= 2, stats  # multiplexed: no connection per request


def test_max_concurrent_streams_spreads_over_connections(env: Env, h2: H2Upstream) -> None:
    """maxConcurrentStreams 2 on an upgraded cluster: Envoy puts at most 2 streams on one
    HTTP/2 connection, so 6 concurrent requests (all served: no request limit) need 3 or
    more HTTP/2 connections at the upstream, where an unlimited cluster uses one."""
    results = _burst(env, "h2-streams", 6)
    assert Counter(s for s, _, _ in results) == {200: 6}, results
    seen = h2.stats("streams")
    print(f"\nmaxConcurrentStreams 2, 6 concurrent: upstream saw {seen}, client cluster "
          f"{env.stats('h2-streams')['upstream_cx_total']} connections")
    assert seen["http1"] == 0 and 3 <= seen["http2"] <= 6, seen
    assert env.stats("h2-streams")["upstream_cx_total"] == seen["http2"]


# --- TCP keepalive ------------------------------------------------------------------------------


def _keepalive_timers(port: int) -> list[str]:
    """`ss -o` timers of established connections to 127.0.0.1:port (the client Envoy's
    upstream side: only it connects to these apps)."""
    out = subprocess.run(["ss", "-tnoH", "state", "established", f"( dport = :{port} )"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    lines = [ln for ln in out.splitlines() if ln.strip()]
    return [m.group(1) if (m := re.search(r"timer:\((\w+,[^)]*)\)", ln)) else "" for ln in lines]


def _ss_seconds(text: str) -> float:
    """ss's timer format: `1min`, `7sec`, `6.992ms` (6 s 992 ms), `992ms`."""
    m = re.fullmatch(r"(?:(\d+)min)?(?:(\d+)(?:sec|\.))?(?:(\d+)ms)?", text)
    assert m is not None, text
    minutes, secs, ms = (int(g) if g else 0 for g in m.groups())
    return minutes * 60 + secs + ms / 1000


def test_tcp_keepalive_sets_socket_keepalive(env: Env) -> None:
    """tcpKeepalive (time 7s): Envoy turns on SO_KEEPALIVE with TCP_KEEPIDLE 7 s on its
    upstream sockets; the kernel's keepalive timer (ss -o) counts down from at most 7 s.
    Without the field, the upstream socket has no keepalive timer."""
    env.backend("ka-on", "ka-on", {"connectionPool": {"tcp": {"tcpKeepalive": {
        "time": "7s", "interval": "2s", "probes": 3}}}})
    env.backend("ka-off", "ka-off", {"loadBalancer": {"simple": "ROUND_ROBIN"}})
    env.wait_cluster("ka-on", lambda c: c.get("upstream_connection_options", {}).get(
        "tcp_keepalive", {}).get("keepalive_time") == 7)
    env.wait_cluster("ka-off", lambda c: c.get("lb_policy") is None)
    client = ProxyClient(env.outbound)
    for host in ("ka-on", "ka-off"):
        assert client.get(f"http://{host}/")[0] == 200  # leaves one pooled connection
    client.close()
    on, off = _keepalive_timers(env.apps["ka-on"]), _keepalive_timers(env.apps["ka-off"])
    print(f"\nupstream socket timers: with tcpKeepalive {on}, without {off}")
    assert len(on) == 1 and on[0].startswith("keepalive,"), on
    seconds = _ss_seconds(on[0].split(",")[1])
    assert 2.0 <= seconds <= 7.0, on  # the kernel default would be 7200 s
    assert len(off) == 1 and not off[0].startswith("keepalive"), off


# --- warm-up (slow start) -----------------------------------------------------------------------


def _shares(client: ProxyClient, seconds: float) -> dict[str, Counter]:
    """Which instance answered, per warm-up service, from alternating sequential requests."""
    seen: dict[str, Counter] = {host: Counter() for host in WARM_HOSTS}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for host in WARM_HOSTS:
            status, hdrs, _ = client.get(f"http://{host}/")
            assert status == 200
            seen[host][{k.lower(): v for k, v in hdrs.items()}["x-instance"]] += 1
    return seen


def test_warmup_new_endpoint_gets_less_traffic(env: Env) -> None:
    """Slow start. Two endpoints have been up for longer than the 5 s window; a third added
    now starts at a small weight that grows linearly over 5 s. With warmupDurationSecs
    (ROUND_ROBIN; Envoy's 10% minimum weight) it gets well under its even third in its first
    1.5 s; with `warmup: {minimumPercent: 50}` (LEAST_REQUEST, the default) it starts at
    half weight, so about a fifth. After the window both give it about a third."""
    wait = env.started["warm"] + WARMUP_WINDOW_S + 1.0 - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    client = ProxyClient(env.outbound)
    assert all(len(c) == 2 for c in _shares(client, 0.3).values())
    env.apply(*(workload_entry(f"{host}-3", host, env.apps["warm-3"]) for host in WARM_HOSTS))
    for host in WARM_HOSTS:
        wait_for(lambda host=host: env.host_count(host) == 3, 20, env.m.control_plane,
                 every=0.05)
    added = time.monotonic()
    early = _shares(client, 1.5)
    time.sleep(max(0.0, added + WARMUP_WINDOW_S + 0.5 - time.monotonic()))
    late = _shares(client, 1.5)
    client.close()
    share_early = {h: early[h]["warm-3"] / sum(early[h].values()) for h in WARM_HOSTS}
    share_late = {h: late[h]["warm-3"] / sum(late[h].values()) for h in WARM_HOSTS}
    for h in WARM_HOSTS:
        print(f"\n{h}: new endpoint's share {share_early[h]:.1%} in its first 1.5 s "
              f"({dict(early[h])}), {share_late[h]:.1%} after the window ({dict(late[h])})")
        assert sum(early[h].values()) >= 100 and sum(late[h].values()) >= 100, (early, late)
        assert 0.25 <= share_late[h] <= 0.42, (h, late[h])
    assert share_early["warm-app"] < 0.15, early
    assert 0.12 <= share_early["warmmin-app"] <= 0.3, early
    assert share_early["warmmin-app"] > share_early["warm-app"] + 0.05, share_early
