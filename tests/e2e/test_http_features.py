"""VirtualService HTTP features as a user observes them through real Envoy sidecars.

One mesh for the module (delta xDS): the sample app as v1 and v2 (one instance each, so
`/count` on an instance sees every retry or mirrored copy), and a client sidecar used as
an explicit HTTP proxy. One VirtualService (plus a delegate) carries every feature; each
test selects its rule with an `x-test` header or a path, so the config converges once.
"""

from __future__ import annotations

import http.client
import json
import math
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .mesh import Mesh, ProxyClient, mesh, wait_for

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).parents[2] / "examples" / "traffic-demo"
NS = "traffic-demo"
HOST = "http://sample-app"
Z999 = 3.29  # two-sided 99.9% normal bound


def dest(subset: str, **extra: object) -> list[dict]:
    return [{"destination": {"host": "sample-app", "subset": subset}, **extra}]


def on(test: str, **extra: object) -> dict:
    """A match block on `x-test: <test>` (plus any other match fields)."""
    return {"headers": {"x-test": {"exact": test}}, **extra}


RULES: list[dict] = [
    {"match": [on("timeout")], "timeout": "0.5s", "route": dest("v1")},
    {"match": [on("retry3")], "retries": {"attempts": 3, "retryOn": "5xx"},
     "route": dest("v1")},
    {"match": [on("retry0")], "retries": {"attempts": 0}, "route": dest("v1")},
    {"match": [on("retry-default")], "route": dest("v1")},
    {"match": [on("abort50")],
     "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 50}}}, "route": dest("v1")},
    {"match": [on("abort100")],
     "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 100}}},
     "route": dest("v1")},
    {"match": [on("grpc-abort")],
     "fault": {"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 100}}},
     "route": dest("v1")},
    {"match": [on("delay")],
     "fault": {"delay": {"fixedDelay": "1s", "percentage": {"value": 100}}},
     "route": dest("v1")},
    {"match": [on("mirror")], "mirror": {"host": "sample-app", "subset": "v2"},
     "route": dest("v1")},
    {"match": [on("mirror50")], "mirror": {"host": "sample-app", "subset": "v2"},
     "mirrorPercentage": {"value": 50}, "route": dest("v1")},
    {"match": [on("redirect")], "redirect": {
        "uri": "/new", "authority": "other.example", "scheme": "https", "port": 8443,
        "redirectCode": 302}},
    {"match": [on("redirect-default")], "redirect": {"uri": "/moved"}},
    {"match": [on("rewrite", uri={"prefix": "/v2"})], "rewrite": {"uri": "/echo/"},
     "route": dest("v1")},
    {"match": [on("regex-rewrite", uri={"prefix": "/re/"})],
     "rewrite": {"uriRegexRewrite": {"match": "^/re/([^/]+)/(.*)$", "rewrite": r"/echo/\2/\1"}},
     "route": dest("v1")},
    {"match": [on("direct")], "directResponse": {"status": 418, "body": {"string": "teapot\n"}}},
    {"match": [on("headers")],
     "headers": {
         "request": {"set": {"x-set": "one", ":authority": "rewritten.example"},
                     "add": {"x-add": "two"}, "remove": ["x-drop"]},
         "response": {"set": {"x-resp-set": "three"}, "add": {"x-resp-add": "four"},
                      "remove": ["x-instance"]}},
     "route": dest("v1", headers={"request": {"set": {"x-dest": "v1"}},
                                  "response": {"add": {"x-dest-resp": "v1"}}})},
    {"match": [{"uri": {"prefix": "/cors"}}],
     "corsPolicy": {"allowOrigins": [{"exact": "https://good.example"}],
                    "allowMethods": ["GET", "POST"], "allowHeaders": ["x-a"],
                    "maxAge": "60s", "allowCredentials": True},
     "route": dest("v1")},
    {"match": [{"headers": {"cookie": {"regex": ".*experiment=beta.*"}}}], "route": dest("v2")},
    {"match": [{"uri": {"prefix": "/qp"}, "queryParams": {"mode": {"exact": "beta"}}}],
     "route": dest("v2")},
    {"match": [{"uri": {"prefix": "/wh"}, "withoutHeaders": {"x-skip": {}}}],
     "route": dest("v2")},
    {"match": [{"uri": {"prefix": "/method"}, "method": {"exact": "POST"}}], "route": dest("v2")},
    {"match": [{"uri": {"prefix": "/authority"},
                "authority": {"prefix": "sample-app.traffic-demo"}}], "route": dest("v2")},
    {"match": [{"uri": {"exact": "/CaseTest"}, "ignoreUriCase": True}], "route": dest("v2")},
    {"match": [{"uri": {"regex": "^/reg/[0-9]+$"}}], "route": dest("v2")},
    {"name": "team", "match": [{"uri": {"prefix": "/team"}}],
     "delegate": {"name": "sample-app-team"}},
    {"route": dest("v1")},
]
DELEGATE_RULES: list[dict] = [
    {"name": "beta", "match": [{"uri": {"prefix": "/team/beta"}}], "route": dest("v2")},
    # Conflicts with the root's `/team` prefix: Istio drops it, /other stays on v1.
    {"name": "conflict", "match": [{"uri": {"prefix": "/other"}}], "route": dest("v2")},
    {"name": "rest", "headers": {"response": {"set": {"x-delegated": "yes"}}},
     "route": dest("v1")},
]


def manifests() -> str:
    def vs(name: str, spec: dict) -> dict:
        return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                "metadata": {"name": name, "namespace": NS}, "spec": spec}

    return yaml.safe_dump_all([
        vs("sample-app-team", {"http": DELEGATE_RULES}),
        vs("sample-app-features", {"hosts": ["sample-app"], "http": RULES}),
    ])


@dataclass
class Env:
    mesh: Mesh
    client: ProxyClient
    app_ports: dict[str, int]

    def get(self, path: str, test: str | None = None, headers: dict[str, str] | None = None,
            host: str = HOST) -> tuple[int, dict[str, str], bytes]:
        hdrs = dict(headers or {})
        if test is not None:
            hdrs["x-test"] = test
        status, raw, body = self.client.get(host + path, hdrs)
        return status, {k.lower(): v for k, v in raw.items()}, body

    def request(self, method: str, path: str, headers: dict[str, str]) -> (
        tuple[int, dict[str, str], bytes]
    ):
        """One request on a fresh connection (OPTIONS, POST...) through the client sidecar."""
        conn = http.client.HTTPConnection("127.0.0.1", self.client.port, timeout=10)
        try:
            conn.request(method, HOST + path, headers=headers)
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()

    def count(self, version: str, path: str) -> int:
        """How many requests for `path` the app instance of `version` has received."""
        url = f"http://127.0.0.1:{self.app_ports[version]}/count"
        with urllib.request.urlopen(url, timeout=5) as r:
            return int(json.loads(r.read())["paths"].get(path, 0))

    def echo(self, path: str, test: str, headers: dict[str, str] | None = None) -> dict:
        status, _, body = self.get(path, test, headers)
        assert status == 200, (status, body)
        return json.loads(body)


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    with mesh(tmp_path_factory.mktemp("http-features"), "delta") as m:
        m.start_control_plane()
        m.apply(EXAMPLES / "base" / "10-sample-app-service.yaml",
                EXAMPLES / "base" / "20-sample-app-subsets.yaml")
        ports = {v: m.workload(f"sample-app-{v}-1", NS, f"app=sample-app,version={v}", v)[0]
                 for v in ("v1", "v2")}
        client = ProxyClient(m.client())
        result = m.run("apply", "-f", "-", stdin=manifests())
        assert result.returncode == 0, result.stderr
        e = Env(m, client, ports)

        def converged() -> bool:
            # The last rule before the delegate and a direct response: 20 in a row.
            for _ in range(20):
                if e.get("/", "direct")[0] != 418 or e.get("/reg/1")[1].get("x-version") != "v2":
                    return False
            return True

        wait_for(converged, 20, m.control_plane)
        yield e
        client.close()


def version(e: Env, path: str, **kw) -> str | None:
    status, hdrs, _ = e.get(path, **kw)
    assert status == 200, (path, status)
    return hdrs.get("x-version")


# --- timeout and retries ----------------------------------------------------------------


def test_timeout_gives_504_after_the_configured_time(env: Env) -> None:
    start = time.monotonic()
    status, _, _ = env.get("/delay/2000", "timeout")
    took = time.monotonic() - start
    assert status == 504
    assert 0.45 <= took < 1.5, took


@pytest.mark.parametrize(("test", "per_request"), [
    ("retry3", 4),  # attempts: 3 on 5xx -> 1 + 3 tries
    ("retry0", 1),  # attempts: 0 -> no retry policy at all
    ("retry-default", 1),  # Istio's default retry does not retry a 503 answer
])
def test_retries_hit_the_flaky_upstream_exactly(env: Env, test: str, per_request: int) -> None:
    path = "/status/503"
    before = env.count("v1", path)
    for _ in range(3):
        status, _, _ = env.get(path, test)
        assert status == 503
    assert env.count("v1", path) - before == 3 * per_request


# --- fault injection ----------------------------------------------------------------------


def test_abort_50_percent_is_within_a_binomial_bound(env: Env) -> None:
    n = 400
    codes = Counter(env.get("/", "abort50")[0] for _ in range(n))
    assert set(codes) <= {200, 503}, codes
    assert abs(codes[503] - n / 2) <= Z999 * math.sqrt(n * 0.25), codes


def test_abort_100_percent_always_503_and_never_reaches_the_app(env: Env) -> None:
    before = env.count("v1", "/aborted")
    codes = Counter(env.get("/aborted", "abort100")[0] for _ in range(50))
    assert codes == Counter({503: 50})
    assert env.count("v1", "/aborted") == before


def test_grpc_abort_answers_grpc_status(env: Env) -> None:
    status, hdrs, _ = env.request("POST", "/grpc.Svc/Call", {
        "x-test": "grpc-abort", "content-type": "application/grpc", "te": "trailers"})
    assert status == 200
    assert hdrs.get("grpc-status") == "14"  # UNAVAILABLE


def test_fixed_delay_only_on_the_faulted_rule(env: Env) -> None:
    start = time.monotonic()
    assert env.get("/", "delay")[0] == 200
    took = time.monotonic() - start
    # Envoy arms timers from its event loop's cached clock, which can lag real time by a
    # few ms on a busy machine, so the 1 s delay may be measured a hair short of 1 s.
    assert 0.98 <= took < 2.0, took
    start = time.monotonic()
    assert env.get("/")[0] == 200
    took = time.monotonic() - start
    assert took < 0.5, took


# --- mirroring ------------------------------------------------------------------------------


def test_mirror_copies_to_v2_while_the_client_sees_v1(env: Env) -> None:
    path, n = "/mirrored-all", 30
    before = env.count("v2", path)
    assert {version(env, path, test="mirror") for _ in range(n)} == {"v1"}
    wait_for(lambda: env.count("v2", path) - before == n, 5)


def test_mirror_percentage_50_mirrors_about_half(env: Env) -> None:
    path, n = "/mirrored-half", 400
    before = env.count("v2", path)
    for _ in range(n):
        assert env.get(path, "mirror50")[0] == 200
    time.sleep(0.5)  # mirrored copies are fire-and-forget
    mirrored = env.count("v2", path) - before
    assert abs(mirrored - n / 2) <= Z999 * math.sqrt(n * 0.25), mirrored


# --- redirect, rewrite, direct response -----------------------------------------------------


def test_redirect_with_code_scheme_authority_port_and_uri(env: Env) -> None:
    status, hdrs, _ = env.get("/old?q=1", "redirect")
    assert status == 302
    assert hdrs["location"] == "https://other.example:8443/new?q=1"
    status, hdrs, _ = env.get("/old", "redirect-default")
    assert status == 301
    assert hdrs["location"] == "http://sample-app/moved"


def test_prefix_rewrite_keeps_istio_quirks(env: Env) -> None:
    # `/v2/x` with prefix /v2 rewritten to `/echo/` gives `/echo//x` (the slash after the
    # prefix stays), and `/v2abc` matches prefix /v2 too.
    assert env.echo("/v2/x", "rewrite")["path"] == "/echo//x"
    assert env.echo("/v2abc", "rewrite")["path"] == "/echo/abc"


def test_uri_regex_rewrite(env: Env) -> None:
    assert env.echo("/re/a/b", "regex-rewrite")["path"] == "/echo/b/a"


def test_direct_response_status_and_body(env: Env) -> None:
    status, _, body = env.get("/anything", "direct")
    assert (status, body) == (418, b"teapot\n")


# --- headers ------------------------------------------------------------------------------


def test_request_and_response_header_operations(env: Env) -> None:
    status, hdrs, body = env.get("/echo", "headers", {"x-set": "orig", "x-drop": "bye"})
    assert status == 200
    seen = {k.lower(): v for k, v in json.loads(body)["headers"].items()}
    assert seen["x-set"] == "one"
    assert seen["x-add"] == "two"
    assert "x-drop" not in seen
    assert seen["x-dest"] == "v1"  # destination-level set
    assert seen["host"] == "rewritten.example"  # :authority set -> host rewrite
    assert hdrs["x-resp-set"] == "three"
    assert hdrs["x-resp-add"] == "four"
    assert hdrs["x-dest-resp"] == "v1"
    assert "x-instance" not in hdrs
    assert hdrs["x-version"] == "v1"


# --- CORS ------------------------------------------------------------------------------------


def test_cors_preflight_allows_only_the_listed_origin(env: Env) -> None:
    preflight = {"access-control-request-method": "POST"}
    status, hdrs, _ = env.request("OPTIONS", "/cors",
                                  {"origin": "https://good.example", **preflight})
    assert status == 200
    assert hdrs["access-control-allow-origin"] == "https://good.example"
    assert hdrs["access-control-allow-methods"] == "GET,POST"
    assert hdrs["access-control-max-age"] == "60"
    assert hdrs["access-control-allow-credentials"] == "true"
    _, hdrs, _ = env.request("OPTIONS", "/cors", {"origin": "https://evil.example", **preflight})
    assert "access-control-allow-origin" not in hdrs
    # A simple cross-origin GET from the allowed origin is tagged too.
    _, hdrs, _ = env.get("/cors", headers={"origin": "https://good.example"})
    assert hdrs["access-control-allow-origin"] == "https://good.example"


# --- matches ---------------------------------------------------------------------------------


def test_cookie_regex_ab_routing(env: Env) -> None:
    assert version(env, "/", headers={"cookie": "a=1; experiment=beta; b=2"}) == "v2"
    assert version(env, "/", headers={"cookie": "experiment=alpha"}) == "v1"


def test_query_params_without_headers_method_authority_case_and_regex(env: Env) -> None:
    assert version(env, "/qp?mode=beta") == "v2"
    assert version(env, "/qp?mode=alpha") == "v1"
    assert version(env, "/wh") == "v2"
    assert version(env, "/wh", headers={"x-skip": "1"}) == "v1"
    assert env.request("POST", "/method", {})[1]["x-version"] == "v2"
    assert env.request("GET", "/method", {})[1]["x-version"] == "v1"
    assert version(env, "/authority", host="http://sample-app.traffic-demo") == "v2"
    assert version(env, "/authority") == "v1"
    assert version(env, "/casetest") == "v2"
    assert version(env, "/CASETEST") == "v2"
    assert version(env, "/reg/42") == "v2"
    assert version(env, "/reg/4x") == "v1"


# --- delegate ------------------------------------------------------------------------------


def test_delegate_rules_are_merged_into_the_root(env: Env) -> None:
    assert version(env, "/team/beta/x") == "v2"
    status, hdrs, _ = env.get("/team/alpha")
    assert (status, hdrs["x-version"], hdrs.get("x-delegated")) == (200, "v1", "yes")
    # The conflicting delegate rule (/other outside /team) was dropped: root default.
    status, hdrs, _ = env.get("/other")
    assert (status, hdrs["x-version"], hdrs.get("x-delegated")) == (200, "v1", None)
