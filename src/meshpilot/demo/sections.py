"""The seed's sections, one function each, in the seed's order, on one `DemoMesh`.

Each function applies the section's manifest from examples/traffic-demo/, runs the
section's commands (printed as a user types them) and returns what it measured, so
`meshpilot demo` prints it and tests/e2e/test_seed_walkthrough.py asserts on it. The
sections replace the `sample-app-routing` VirtualService and `sample-app-subsets`
DestinationRule in place: Istio sidecars use only the oldest VirtualService for a host
and merge DestinationRules oldest-first, so stacking new ones as the seed does would
leave section 2's rules in force.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from collections import Counter
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from ..telemetry.grafana import SEED_P95, SEED_SUCCESS_RATE
from .certs import have_openssl, make_certs
from .runtime import (
    EXAMPLES,
    GW_NS,
    HOST,
    NS,
    STANDIN_PORT,
    URL,
    Background,
    DemoError,
    DemoMesh,
    indent,
    say,
)


def _title(text: str) -> None:
    say(f"\n== {text}")


@dataclass
class Routing:
    header_v2: Counter
    plain: Counter
    curl_v2: str


def basic_routing(m: DemoMesh) -> Routing:
    """Seed section 2: header `version: v2` -> v2, everything else -> v1."""
    _title("2. Routing by header: `version: v2` -> v2, everything else -> v1")
    m.apply("base/20-sample-app-subsets.yaml")
    m.apply("base/30-sample-app-routing.yaml")
    m.wait(lambda: m.requests(5, {"version": "v2"}) == Counter({"v2": 5}), 20,
           "the version: v2 route", "control-plane")
    out = m.cli("curl", "-n", NS, "-H", "version: v2", URL).stdout
    m.cli("curl", "-n", NS, URL)
    return Routing(m.count(50, {"version": "v2"}), m.count(50), out)


@dataclass
class Canary9010:
    split: Counter
    override: Counter


def canary_90_10(m: DemoMesh, n: int = 1000) -> Canary9010:
    """Seed section 3: 90/10 weights; `canary: true` always reaches v2."""
    _title("3. Canary 90/10; `canary: true` always reaches v2")
    m.apply("sections/03-canary.yaml")
    m.wait(lambda: m.requests(5, {"canary": "true"}) == Counter({"v2": 5}), 20,
           "the canary route", "control-plane")
    split = m.count(n)
    share = split["v2"] / max(1, sum(split.values()))
    say(f"  v2 share {share:.1%} (configured 10 %)")
    return Canary9010(split, m.count(20, {"canary": "true"}))


@dataclass
class CircuitBreaker:
    codes: dict[str, int]
    overflow: int
    uo_logged: int


def circuit_breaker(m: DemoMesh) -> CircuitBreaker:
    """Seed section 4: connection-pool limits; concurrency over them gets 503 UO."""
    _title("4. Circuit breaker: maxConnections 10, http1MaxPendingRequests 5 (v2: 5 / 2)")
    m.apply("sections/04-circuit-breaker.yaml",
            note="one DestinationRule for the host (the seed's second one would be dropped)")
    time.sleep(1.0)  # the push lands in milliseconds; a second keeps the first calls clean
    args = ("load", "-c", "20", "-qps", "100", "-t", "3s", "-quiet", "-x",
            f"http://127.0.0.1:{m.client_port}", "http://sample-app/delay/200")
    say("  # the seed: fortio load -c 20 -qps 50 -t 30s http://sample-app/ . Against a fast "
        "app that keeps\n  # only a few requests in flight; an answer that takes 200 ms "
        "keeps all 20 connections busy,\n  # more than 10 connections + 5 pending")
    out = m.cli(*args[:-1], "-json", "-", args[-1], show=False, timeout=60)
    say(f"$ meshpilot {shlex.join(args)}")
    report = json.loads(out.stdout)
    say(indent(out.stderr))
    codes = report["codes"]
    total = sum(codes.values())
    say(f"  => {codes.get('503', 0)} of {total} calls answered 503 by the client's sidecar "
        f"({codes.get('503', 0) / max(1, total):.1%})")
    stats = m.cli("stats", "curl-client", "-n", NS, "--filter", "circuit_breaker",
                  "--nonzero", show=False).stdout
    say(f"$ meshpilot stats curl-client -n {NS} --filter circuit_breaker --nonzero "
        "| grep sample-app")
    lines = [line for line in stats.splitlines() if "sample-app" in line]
    say(indent("\n".join(lines) or "(nothing)"))
    overflow = sum(int(x) for x in re.findall(r"upstream_rq_pending_overflow\D*?(\d+)\s*$",
                                              "\n".join(lines), re.M))
    time.sleep(0.5)  # access-log flush
    uo = sum(1 for line in m.access_log("curl-client").splitlines() if '" 503 UO ' in line)
    say(f"  access log of curl-client: {uo} requests with `503 UO` (upstream overflow)")
    return CircuitBreaker(codes, overflow, uo)


@dataclass
class Faults:
    delay_s: float
    curl_delay: str
    curl_abort: str
    abort: Counter


def fault_injection(m: DemoMesh, n: int = 200) -> Faults:
    """Seed section 5: `test-fault: delay` waits 5 s, `test-fault: abort` 503s half."""
    _title("5. Fault injection: delay 5 s (100 %), abort 503 (50 %)")
    m.apply("sections/05-fault-injection.yaml")
    m.wait(lambda: "HTTP 503" in m.requests(20, {"test-fault": "abort"}), 20,
           "the abort fault", "control-plane")
    started = time.monotonic()
    delay = m.cli("curl", "-n", NS, "-w", "Total time: %{time_total}s\\n", "-H",
                  "test-fault: delay", URL, timeout=30).stdout
    elapsed = time.monotonic() - started
    measured = re.search(r"Total time: ([\d.]+)s", delay)
    delay_s = float(measured.group(1)) if measured else elapsed
    abort = m.cli("curl", "-n", NS, "-s", "-o", "/dev/null", "-w", "HTTP Code: %{http_code}\\n",
                  "-H", "test-fault: abort", URL).stdout
    counts = m.count(n, {"test-fault": "abort"})
    say(f"  503 share {counts['HTTP 503'] / n:.1%} (configured 50 %)")
    return Faults(delay_s, delay, abort, counts)


@dataclass
class Ingress:
    http_root: str
    http_v2: str
    https_root: str = ""
    https_v2: str = ""
    ca: Path | None = None


def ingress_gateway(m: DemoMesh) -> Ingress:
    """Seed Gateway 1: sample-app.hashfoundry.local over HTTP and HTTPS, /v2 -> v2."""
    _title("6. Ingress gateway: sample-app.hashfoundry.local over HTTP and HTTPS")
    if not m.gateway_ports:
        from ..proxy.ports import free_port

        m.gateway_ports = {80: free_port(), 443: free_port()}
    m.start_gateway("istio-ingressgateway", "istio=ingressgateway", m.gateway_ports)
    certs = m.state / "certs"
    https = have_openssl()
    ca = None
    if https:
        say(f"$ openssl ...   # a throw-away CA and a certificate for {HOST} in {certs}")
        ca, crt, key = make_certs(certs, HOST)
        m.cli("create", "secret", "tls", "sample-app-tls", "--cert", str(crt), "--key",
              str(key), "-n", GW_NS)
    else:
        say("  (no `openssl` on PATH: the HTTPS half is skipped)")
    m.apply("base/40-ingress-gateway.yaml")

    def http_ready() -> bool:
        r = m.cli("curl", "-s", "-H", f"Host: {HOST}", "http://127.0.0.1/", show=False,
                  check=False)
        return r.returncode == 0 and r.stdout.startswith("sample-app v1")

    m.wait(http_ready, 20, "the ingress gateway's HTTP route", "istio-ingressgateway")
    result = Ingress(m.cli("curl", "-H", f"Host: {HOST}", "http://127.0.0.1/").stdout,
                     m.cli("curl", "-H", f"Host: {HOST}", "http://127.0.0.1/v2").stdout)
    if https and ca is not None:
        tls = ("--resolve", f"{HOST}:443:127.0.0.1", "--cacert", str(ca))

        def https_ready() -> bool:
            r = m.cli("curl", "-s", f"https://{HOST}/", *tls, show=False, check=False)
            return r.returncode == 0

        m.wait(https_ready, 20, "the ingress gateway's HTTPS server", "istio-ingressgateway")
        result.https_root = m.cli("curl", f"https://{HOST}/", *tls).stdout
        result.https_v2 = m.cli("curl", f"https://{HOST}/v2", *tls).stdout
        result.ca = ca
    return result


@dataclass
class Egress:
    body: str
    sidecar_to_gateway: bool
    gateway_to_external: bool


def egress_gateway(m: DemoMesh) -> Egress:
    """Seed Gateway 2: httpbin.org through the egress gateway; here a local stand-in."""
    _title("7. Egress through a ServiceEntry and the egress gateway (httpbin.org, "
           "played by a local stand-in on 127.0.0.1: nothing leaves this machine)")
    from ..proxy.ports import free_port

    m.start_gateway("istio-egressgateway", "istio=egressgateway", {80: free_port()})
    m.start_standin()
    text = (EXAMPLES / "sections" / "07-egress-local.yaml").read_text()
    note = f"httpbin.org = 127.0.0.1:{m.standin_port}"
    if m.standin_port != STANDIN_PORT:
        text = text.replace(f"http: {STANDIN_PORT}", f"http: {m.standin_port}")
        note += f" ({STANDIN_PORT} was taken)"
    m.apply("sections/07-egress-local.yaml", text=text, note=note)

    def reached() -> bool:
        r = m.cli("curl", "-n", NS, "-s", "http://httpbin.org/ip", show=False, check=False)
        return r.returncode == 0 and "httpbin-standin" in r.stdout

    m.wait(reached, 20, "httpbin.org through the egress gateway", "istio-egressgateway")
    body = m.cli("curl", "-n", NS, "-s", "http://httpbin.org/ip").stdout
    gw_cluster = "outbound|80||istio-egressgateway.istio-system.svc.cluster.local"
    ext_cluster = "outbound|80||httpbin.org"
    with suppress(DemoError):  # access logs are flushed within a second or so
        m.wait(lambda: ext_cluster in m.access_log("istio-egressgateway", GW_NS)
               and gw_cluster in m.access_log("curl-client"), 10, "the access logs")
    sidecar = gw_cluster in m.access_log("curl-client")
    gateway = ext_cluster in m.access_log("istio-egressgateway", GW_NS)
    m.cli("logs", "istio-egressgateway", "-n", GW_NS, "--tail", "1")
    say(f"  curl-client sent it to {gw_cluster}: {sidecar}; "
        f"the egress gateway forwarded it to {ext_cluster}: {gateway}")
    return Egress(body, sidecar, gateway)


@dataclass
class Progressive:
    phase: str
    weights: list[int]
    codes: Counter
    status: dict = field(default_factory=dict)


def canary_status(m: DemoMesh, name: str) -> dict:
    return m.api(f"/apis/meshpilot.io/v1alpha1/namespaces/{NS}/canaries/{name}"
                 ).get("status") or {}


def canary_events(m: DemoMesh, name: str) -> list[dict]:
    return m.api(f"/apis/meshpilot.io/v1alpha1/namespaces/{NS}/canaries/{name}"
                 "/events?limit=1000")["items"]


def wait_canary(m: DemoMesh, name: str, phases: tuple[str, ...], timeout: float) -> dict:
    last: list[str] = []

    def done() -> bool:
        st = canary_status(m, name)
        phase = str(st.get("phase"))
        if not last or last[-1] != f"{phase} {st.get('canaryWeight')}":
            last.append(f"{phase} {st.get('canaryWeight')}")
            say(f"  ... {phase}, canary weight {st.get('canaryWeight', 0)} %")
        return phase in phases and st.get("stepState") in ("", "dwell", None)

    m.wait(done, timeout, f"canary {name} reaching {'/'.join(phases)}", "control-plane")
    return canary_status(m, name)


def progressive_delivery(m: DemoMesh, interval: str = "2s") -> Progressive:
    """Seed "Automation 1": the canary script, as a Canary the control plane runs."""
    _title("8. Progressive delivery: the seed's canary script as a Canary "
           f"(10/25/50/75/100 %, interval {interval} for the demo instead of 30s)")
    text = (EXAMPLES / "sections" / "06-progressive-canary.yaml").read_text()
    text = text.replace("interval: 30s ", f"interval: {interval} ")
    say(f"  # under load: meshpilot load -qps 100 -t 0 -x http://127.0.0.1:{m.client_port} "
        f"{URL}  (the demo sends it itself)")
    with Background(m.client_port, rate=100) as load:
        time.sleep(1.0)
        m.apply("sections/06-progressive-canary.yaml", text=text,
                note=f"with interval: {interval}")
        st = wait_canary(m, "sample-app", ("Succeeded", "Failed"), 90)
    m.cli("canary", "get", "sample-app", "-n", NS)
    weights = [e["data"]["weight"] for e in canary_events(m, "sample-app")
               if e["reason"] == "CheckPassed"]
    say(f"  load during the rollout: {dict(load.codes)}")
    return Progressive(str(st.get("phase")), weights, load.codes, st)


@dataclass
class AbTest:
    header: Counter
    cookie: Counter
    plain: Counter


def ab_test(m: DemoMesh, n: int = 400) -> AbTest:
    """Seed "Automation 2": beta users by header or cookie -> v2, the rest 50/50."""
    _title("9. A/B test: `user-group: beta` or cookie experiment=beta -> v2, others 50/50")
    m.apply("sections/09-ab-test.yaml",
            note="cookie matched as a header: the seed's `cookie:` field is not Istio's")
    m.wait(lambda: m.requests(5, {"Cookie": "experiment=beta"}) == Counter({"v2": 5}), 20,
           "the A/B rules", "control-plane")
    m.cli("curl", "-n", NS, "-H", "user-group: beta", URL)
    m.cli("curl", "-n", NS, "-H", "Cookie: experiment=beta", URL)
    return AbTest(m.count(20, {"user-group": "beta"}),
                  m.count(20, {"Cookie": "session=1; experiment=beta"}), m.count(n))


@dataclass
class Monitoring:
    success_rate: float | None
    p95_ms: float | None
    dashboard: Path


def _value(out: str) -> float | None:
    data = json.loads(out)
    result = data.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else None


def monitoring(m: DemoMesh) -> Monitoring:
    """Seed monitoring: the canary script's two PromQL queries, and the Grafana board."""
    _title("10. Monitoring: the seed's PromQL, without a Prometheus; the Grafana dashboard")
    m.cli("query", SEED_SUCCESS_RATE)
    rate = _value(m.cli("query", "-o", "json", SEED_SUCCESS_RATE, show=False).stdout)
    m.cli("query", SEED_P95)
    p95 = _value(m.cli("query", "-o", "json", SEED_P95, show=False).stdout)
    board = m.state / "traffic-dashboard.json"
    m.cli("dashboard", "grafana", "-o", str(board))
    data = json.loads(board.read_text())
    titles = [p.get("title") for p in data.get("dashboard", data).get("panels", [])]
    say(f"  {board}: {len(titles)} panels, the seed's three first: {titles[:3]}")
    return Monitoring(rate, p95, board)


@dataclass
class Diagnostics:
    analyze: str
    routes: str


def diagnostics(m: DemoMesh) -> Diagnostics:
    """Seed diagnostics: istioctl analyze / proxy-config, Envoy stats and access logs."""
    _title("11. Diagnostics: analyze, proxy-config, logs")
    analyze = m.cli("analyze", "-n", NS, check=False)
    if analyze.returncode not in (0, 79):
        raise DemoError(f"meshpilot analyze exited {analyze.returncode}: {analyze.stderr}")
    routes = m.cli("proxy-config", "routes", "curl-client", "-n", NS).stdout
    m.cli("logs", "sample-app-v2-1", "-n", NS, "--tail", "2")
    return Diagnostics(analyze.stdout + analyze.stderr, routes)
