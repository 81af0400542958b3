"""istioctl-grade diagnostics against real Envoy: proxy-config, proxy-status (with a real
NACK), logs (text and JSON), stats and describe, on the seed's header routing + 90/10
canary with the subsets DestinationRule.

One mesh for the module; tests run in file order and the NACK test, which breaks and then
restores the routes, comes last.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .conftest import free_port
from .mesh import MESHPILOT, Mesh, ProxyClient, _http_ok, mesh, wait_for

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).parents[2] / "examples" / "traffic-demo"
NS = "traffic-demo"
HOST = "sample-app.traffic-demo.svc.cluster.local"
URL = "http://sample-app/"
CLIENT = f"test-client.{NS}"
JSON_CLIENT = f"json-client.{NS}"
ISTIO_JSON_KEYS = {
    "start_time", "route_name", "method", "path", "protocol", "response_code",
    "response_flags", "response_code_details", "connection_termination_details",
    "bytes_received", "bytes_sent", "duration", "upstream_service_time", "x_forwarded_for",
    "user_agent", "request_id", "authority", "upstream_host", "upstream_cluster",
    "upstream_local_address", "downstream_local_address", "downstream_remote_address",
    "requested_server_name", "upstream_transport_failure_reason",
}


class Demo:
    def __init__(self, m: Mesh, client: ProxyClient, json_client: ProxyClient) -> None:
        self.m, self.client, self.json_client = m, client, json_client

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        result = self.m.run(*args)
        if ok:
            assert result.returncode == 0, f"meshpilot {' '.join(args)}:\n{result.stderr}"
        return result

    def annotation(self, name: str, key: str) -> str:
        out = self.run("get", "we", name, "-n", NS, "-o", "json")
        return json.loads(out.stdout)["metadata"]["annotations"][f"meshpilot.io/{key}"]


def table(text: str, columns: list[str]) -> list[dict[str, str]]:
    """Rows of a tabwriter table as dicts, cut at the header's column starts (cells may
    contain single spaces, and the listener table pads with one space only)."""
    lines = [line for line in text.splitlines() if line.strip()]
    header = lines[0]
    starts = [header.index(c) for c in columns]
    rows = []
    for line in lines[1:]:
        cells = [line[s:e].strip() for s, e in zip(starts, [*starts[1:], None], strict=True)]
        rows.append(dict(zip(columns, cells, strict=True)))
    return rows


def json_sidecar(m: Mesh, name: str) -> int:
    """A client sidecar whose access log is Istio's JSON (--access-log-encoding JSON)."""
    outbound, admin = free_port(), free_port()
    proc = m.spawn(name, "sidecar", "--name", name, "-n", NS, "--labels", f"app={name}",
                   "--app-port", str(free_port()), "--outbound-port", str(outbound),
                   "--admin-port", str(admin), "--access-log-encoding", "JSON",
                   "--workload", "json-client-deployment")
    wait_for(lambda: _http_ok(f"http://127.0.0.1:{admin}/ready"), 30, proc)
    return outbound


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    with mesh(tmp_path_factory.mktemp("diagnostics")) as m:
        m.start_control_plane()
        m.apply(EXAMPLES / "base" / "10-sample-app-service.yaml",
                EXAMPLES / "base" / "20-sample-app-subsets.yaml",
                EXAMPLES / "sections" / "03-canary.yaml")
        for version in ("v1", "v2"):
            m.workload(f"sample-app-{version}-1", NS, f"app=sample-app,version={version}",
                       version)
        client = ProxyClient(m.client())
        json_client = ProxyClient(json_sidecar(m, "json-client"))
        for c in (client, json_client):
            wait_for(lambda c=c: c.get(URL, {"canary": "true"})[0] == 200, 15)
            for _ in range(5):
                c.get(URL)
        yield Demo(m, client, json_client)
        client.close()
        json_client.close()


def test_routes_show_header_match_and_weighted_split(demo: Demo) -> None:
    out = demo.run("proxy-config", "routes", CLIENT).stdout
    cols = ["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE", "DESTINATION"]
    assert out.splitlines()[0].split() == ["NAME", "VHOST", "NAME", "DOMAINS", "MATCH",
                                           "VIRTUAL", "SERVICE", "DESTINATION"]
    rows = [r for r in table(out, cols) if r["VHOST NAME"] == f"{HOST}:80"]
    outbound_port = demo.annotation("test-client", "outbound-port")
    assert rows == [
        {"NAME": outbound_port, "VHOST NAME": f"{HOST}:80",
         "DOMAINS": "sample-app, sample-app.traffic-demo", "MATCH": "/* (canary=true)",
         "VIRTUAL SERVICE": f"sample-app-routing.{NS}", "DESTINATION": "v2"},
        {"NAME": outbound_port, "VHOST NAME": f"{HOST}:80",
         "DOMAINS": "sample-app, sample-app.traffic-demo", "MATCH": "/*",
         "VIRTUAL SERVICE": f"sample-app-routing.{NS}", "DESTINATION": "v1:90% v2:10%"},
    ]
    # the passthrough catch-all is hidden, as istioctl hides it
    assert "PassthroughCluster" not in out
    raw = json.loads(demo.run("pc", "r", "test-client", "-n", NS, "--name", outbound_port,
                              "-o", "json").stdout)
    [route_config] = raw
    assert route_config["name"] == outbound_port
    [vhost] = [v for v in route_config["virtual_hosts"] if v["name"] == f"{HOST}:80"]
    weighted = vhost["routes"][1]["route"]["weighted_clusters"]["clusters"]
    assert [(c["name"], c["weight"]) for c in weighted] == [
        (f"outbound|80|v1|{HOST}", 90), (f"outbound|80|v2|{HOST}", 10)]


def test_clusters_show_subsets_and_destination_rule(demo: Demo) -> None:
    out = demo.run("pc", "clusters", CLIENT, "--fqdn", "sample-app").stdout
    cols = ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]
    rows = table(out, cols)
    dr = f"sample-app-subsets.{NS}"
    assert rows == [
        {"SERVICE FQDN": HOST, "PORT": "80", "SUBSET": s, "DIRECTION": "outbound",
         "TYPE": "EDS", "DESTINATION RULE": dr} for s in ("-", "v1", "v2")]
    only_v2 = table(demo.run("pc", "c", CLIENT, "--subset", "v2").stdout, cols)
    assert [r["SUBSET"] for r in only_v2] == ["v2"]
    names = {c["name"] for c in json.loads(demo.run("pc", "c", CLIENT, "-o", "json").stdout)}
    assert {f"outbound|80|{s}|{HOST}" for s in ("", "v1", "v2")} <= names
    assert {"BlackHoleCluster", "PassthroughCluster"} <= names


def test_endpoints_are_healthy_per_subset(demo: Demo) -> None:
    cols = ["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]
    for version in ("v1", "v2"):
        port = demo.annotation(f"sample-app-{version}-1", "inbound-port")
        out = demo.run("pc", "endpoints", CLIENT, "--cluster",
                       f"outbound|80|{version}|{HOST}").stdout
        assert table(out, cols) == [{"ENDPOINT": f"127.0.0.1:{port}", "STATUS": "HEALTHY",
                                     "OUTLIER CHECK": "OK",
                                     "CLUSTER": f"outbound|80|{version}|{HOST}"}]
    healthy = table(demo.run("pc", "ep", CLIENT, "--status", "healthy").stdout, cols)
    assert len([r for r in healthy if r["CLUSTER"] == f"outbound|80||{HOST}"]) == 2


def test_listeners(demo: Demo) -> None:
    out = demo.run("pc", "listeners", CLIENT).stdout
    rows = table(out, ["ADDRESSES", "PORT", "MATCH", "DESTINATION"])
    outbound = demo.annotation("test-client", "outbound-port")
    inbound = demo.annotation("test-client", "inbound-port")
    app = demo.annotation("test-client", "app-port")
    assert {(r["PORT"], r["MATCH"], r["DESTINATION"]) for r in rows} == {
        (outbound, "ALL", f"Route: {outbound}"), (inbound, "ALL", f"Route: inbound|{app}||")}
    short = demo.run("pc", "l", CLIENT, "--no-verbose", "--port", outbound).stdout
    assert table(short, ["ADDRESSES", "PORT", "TYPE"]) == [
        {"ADDRESSES": "127.0.0.1", "PORT": outbound, "TYPE": "HTTP"}]


def test_all_and_bootstrap(demo: Demo) -> None:
    dump = json.loads(demo.run("pc", "all", CLIENT, "-o", "json").stdout)
    types = {c["@type"].rsplit(".", 1)[-1] for c in dump["configs"]}
    assert {"BootstrapConfigDump", "ClustersConfigDump", "ListenersConfigDump",
            "RoutesConfigDump", "EndpointsConfigDump"} <= types
    summary = demo.run("pc", "a", CLIENT, "--with-headers").stdout
    for title in ("BOOTSTRAP INFO", "CLUSTER INFO", "LISTENER INFO", "ROUTE INFO",
                  "SECRET INFO", "ENDPOINTS INFO"):
        assert f"------ {title} ------" in summary
    assert f"cluster/outbound|80|v1|{HOST}" in summary
    assert "listener/virtualOutbound" in summary
    boot = yaml.safe_load(demo.run("pc", "bootstrap", CLIENT, "-o", "yaml").stdout)
    assert boot["bootstrap"]["node"]["id"] == CLIENT
    meta = json.loads(demo.run("pc", "b", JSON_CLIENT).stdout)["bootstrap"]["node"]["metadata"]
    assert meta["ACCESS_LOG_ENCODING"] == "JSON"
    assert meta["WORKLOAD_NAME"] == "json-client-deployment"
    # a saved dump reads the same way (istioctl's --file)
    saved = demo.m.root / "dump.json"
    saved.write_text(json.dumps(dump))
    assert demo.run("pc", "c", "--file", str(saved)).stdout == \
        demo.run("pc", "c", CLIENT).stdout


def test_proxy_status_shows_every_type_synced(demo: Demo) -> None:
    def synced() -> bool:
        out = demo.run("proxy-status", "-n", NS).stdout
        rows = table(out, ["NAME", "TYPE", "CDS", "LDS", "EDS", "RDS", "SDS", "ISTIOD",
                           "VERSION"])
        names = {r["NAME"] for r in rows}
        return names == {CLIENT, JSON_CLIENT, f"sample-app-v1-1.{NS}",
                         f"sample-app-v2-1.{NS}"} and all(
            r[t].startswith("SYNCED (") for r in rows for t in ("CDS", "LDS", "EDS", "RDS"))

    wait_for(synced, 10, every=0.3)
    single = demo.run("proxy-status", CLIENT).stdout
    assert "Clusters Match" in single and "Listeners Match" in single
    assert "Routes Match (RDS last loaded at " in single
    items = json.loads(demo.run("ps", "test-client", "-o", "json").stdout)["items"]
    assert [i["name"] for i in items] == [CLIENT]


def test_logs_text_and_json(demo: Demo) -> None:
    lines = demo.run("logs", CLIENT, "--tail", "3").stdout.splitlines()
    assert len(lines) == 3
    for line in lines:
        assert line.startswith("[20") and '"GET / HTTP/1.1" 200' in line, line
        assert "outbound|80|v" in line
    assert "envoy" in demo.run("logs", CLIENT, "--envoy", "--tail", "5").stdout.lower()

    listeners = demo.run("pc", "l", JSON_CLIENT, "-o", "json").stdout
    if "json_format" not in listeners:
        pytest.skip("access_logs() callers (xds/translate/listeners.py, gateway.py) do not "
                    "pass proxy.access_log_encoding yet")
    entries = [json.loads(line) for line in
               demo.run("logs", JSON_CLIENT, "--tail", "2").stdout.splitlines()]
    assert len(entries) == 2
    for entry in entries:
        assert set(entry) == ISTIO_JSON_KEYS
        assert entry["response_code"] == 200 and entry["method"] == "GET"
        assert entry["upstream_cluster"].startswith("outbound|80|v")


def test_logs_follow_prints_new_requests(demo: Demo) -> None:
    proc = subprocess.Popen([*MESHPILOT, "logs", CLIENT, "-f", "--tail", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=demo.m.env())
    try:
        time.sleep(1.0)  # the command is following before the request
        assert demo.client.get(URL, {"canary": "true", "x-request-id": "follow-me"})[0] == 200
        line = proc.stdout.readline() if proc.stdout else ""
        assert '"follow-me"' in line and f"outbound|80|v2|{HOST}" in line
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 0


def test_stats_named_filters(demo: Demo) -> None:
    out = demo.run("stats", CLIENT, "--filter", "retry").stdout
    names = {line.split(":")[0] for line in out.splitlines()}
    assert f"cluster.outbound|80|v1|{HOST};.upstream_rq_retry" in names
    assert all("retry" in n for n in names)
    cb = demo.run("stats", CLIENT, "--filter", "circuit_breaker", "--cluster", "|v2|").stdout
    assert cb and all("|v2|" in line for line in cb.splitlines())
    prom = demo.run("stats", CLIENT, "--filter", "outlier", "-o", "prometheus").stdout
    assert all(line.startswith("#") or "outlier" in line for line in prom.splitlines())
    bad = demo.run("stats", CLIENT, "--filter", "(", ok=False)
    assert bad.returncode == 1 and "not a filter name" in bad.stderr


def test_describe_service(demo: Demo) -> None:
    out = demo.run("describe", "service", "sample-app", "-n", NS).stdout
    assert f"Host:      {HOST}" in out
    assert f"sample-app-routing.{NS}   [mesh]   EFFECTIVE on sidecars in {NS}" in out
    assert f"sample-app-subsets.{NS}   subsets: v1, v2" in out
    assert "1. (header canary=true)\n      -> v2 100%" in out
    assert "2. any request\n      -> v1 90%, v2 10%" in out
    live = out.split("Endpoints (live")[1]
    assert live.count("HEALTHY") == 4  # v1, v2 and both in the default cluster
    missing = demo.run("describe", "svc", "nope", "-n", NS, ok=False)
    assert missing.returncode == 1 and 'service "nope" not found' in missing.stderr


def test_nacked_push_shows_envoys_error(demo: Demo) -> None:
    """Istio accepts any weights; Envoy rejects a route whose weights sum past 2^32-1."""
    heavy = 2_000_000_000
    vs = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
          "metadata": {"name": "sample-app-routing", "namespace": NS},
          "spec": {"hosts": ["sample-app"], "http": [{"route": [
              {"destination": {"host": "sample-app", "subset": s}, "weight": heavy}
              for s in ("v1", "v2")] + [{"destination": {"host": "sample-app"},
                                         "weight": heavy}]}]}}
    assert demo.m.run("apply", "-f", "-", stdin=yaml.safe_dump(vs)).returncode == 0
    cols = ["NAME", "TYPE", "CDS", "LDS", "EDS", "RDS", "SDS", "ISTIOD", "VERSION"]

    def nacked() -> bool:
        rows = table(demo.run("proxy-status").stdout.split("\n\n")[0], cols)
        return any(r["NAME"] == CLIENT and r["RDS"].startswith("NACKED (") for r in rows)

    try:
        wait_for(nacked, 15, every=0.3)
        out = demo.run("proxy-status").stdout
        [message] = [line for line in out.splitlines()
                     if line.startswith(f"{CLIENT} RDS NACKED version ")]
        assert "sum of weights" in message
        single = demo.run("proxy-status", CLIENT).stdout
        assert "Routes Don't Match" in single and "RDS is NACKED" in single
        # Envoy keeps serving its last good routes, and proxy-config shows them.
        assert "v1:90% v2:10%" in demo.run("pc", "r", CLIENT).stdout
    finally:
        demo.m.apply(EXAMPLES / "sections" / "03-canary.yaml")
    wait_for(lambda: not nacked(), 15, every=0.3)
