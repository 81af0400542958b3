"""VirtualService match fields that depend on *who* asks and *where*: `port`,
`sourceLabels`, `sourceNamespace`, `gateways`, plus rule/match `name`s and the OR/AND
semantics of several match blocks, as real client Envoys see them.

These fields are evaluated by the control plane, per proxy (Istio drops a match whose
source or gateway does not fit the sidecar before translating it), so each needs its own
client sidecar: alpha-client and beta-client in traffic-demo, ns-client in other-ns.
One mesh for the module (delta xDS), one VirtualService; each test selects its rule
with a path prefix (or the port), so the config converges once.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from .mesh import Mesh, ProxyClient, mesh, wait_for

pytestmark = pytest.mark.e2e
EXAMPLES = Path(__file__).parents[2] / "examples" / "traffic-demo"
NS = "traffic-demo"
OTHER_NS = "other-ns"
FQDN = f"sample-app.{NS}.svc.cluster.local"
CLIENTS = {"alpha-client": NS, "beta-client": NS, "ns-client": OTHER_NS}


def dest(subset: str) -> list[dict]:
    return [{"destination": {"host": "sample-app", "subset": subset}}]


SERVICE = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "sample-app", "namespace": NS},
    "spec": {"selector": {"app": "sample-app"}, "ports": [
        {"name": "http", "port": 80, "targetPort": 80},
        {"name": "http-alt", "port": 8080, "targetPort": 80},
    ]},
}
GATEWAY = {
    "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
    "metadata": {"name": "edge", "namespace": NS},
    "spec": {"selector": {"istio": "ingressgateway"}, "servers": [
        {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["*"]}]},
}
# Same pods under a second name, for a VirtualService bound to the `edge` gateway only.
EDGE_SERVICE = {
    "apiVersion": "v1", "kind": "Service",
    "metadata": {"name": "sample-edge", "namespace": NS},
    "spec": {"selector": {"app": "sample-app"}, "ports": [{"name": "http", "port": 80}]},
}
EDGE_VS = {
    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "sample-edge", "namespace": NS},
    # Not bound to the mesh at the top: Istio never gives it to sidecars, even though
    # one match names `mesh` (a match can narrow the VirtualService's gateways, not widen).
    "spec": {"hosts": ["sample-edge"], "gateways": ["edge"], "http": [
        {"name": "edge-to-v2", "match": [{"gateways": ["mesh"]}], "route": dest("v2")}]},
}
RULES: list[dict] = [
    # match.port: only the 8080 virtual host gets this (catch-all there) rule.
    {"name": "alt-port", "match": [{"name": "on-8080", "port": 8080}], "route": dest("v2")},
    {"name": "beta-only", "match": [{"name": "beta", "uri": {"prefix": "/src"},
                                     "sourceLabels": {"app": "beta-client"}}],
     "route": dest("v2")},
    {"name": "beta-web", "match": [{"uri": {"prefix": "/tier"},
                                    "sourceLabels": {"app": "beta-client", "tier": "web"}}],
     "route": dest("v2")},
    {"name": "other-ns-only", "match": [{"uri": {"prefix": "/ns"},
                                         "sourceNamespace": OTHER_NS}],
     "route": dest("v2")},
    # A gateway-only match: the VirtualService is bound to the mesh too, but this rule
    # is for the `edge` gateway alone and must not reach any sidecar.
    {"name": "edge-only", "match": [{"uri": {"prefix": "/gw"}, "gateways": ["edge"]}],
     "route": dest("v2")},
    {"name": "mesh-only", "match": [{"uri": {"prefix": "/mesh"}, "gateways": ["mesh"]}],
     "route": dest("v2")},
    # Match blocks are OR-ed; the fields inside one block are AND-ed.
    {"name": "or-and", "match": [
        {"name": "first", "uri": {"prefix": "/and"}, "headers": {"x-a": {"exact": "1"}},
         "method": {"exact": "GET"}},
        {"name": "second", "uri": {"prefix": "/or"}, "queryParams": {"mode": {"exact": "beta"}}},
        {"name": "third", "headers": {"x-or": {"exact": "yes"}}},
    ], "route": dest("v2")},
    {"name": "default", "route": dest("v1")},
]
VIRTUAL_SERVICE = {
    "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
    "metadata": {"name": "sample-app-match-fields", "namespace": NS},
    "spec": {"hosts": ["sample-app"], "gateways": ["edge", "mesh"], "http": RULES},
}


@dataclass
class Env:
    mesh: Mesh
    clients: dict[str, ProxyClient]

    def version(self, client: str, url: str, headers: dict[str, str] | None = None) -> str:
        status, hdrs, body = self.clients[client].get(url, headers)
        assert status == 200, (client, url, status, body)
        return {k.lower(): v for k, v in hdrs.items()}["x-version"]

    def route_names(self, client: str) -> dict[str, list[str]]:
        """Route names per virtual host in the client's live RDS config (Envoy admin)."""
        port = self.mesh.admin_port(client, CLIENTS[client])
        url = f"http://127.0.0.1:{port}/config_dump?resource=dynamic_route_configs"
        with urllib.request.urlopen(url, timeout=5) as r:
            dump = json.loads(r.read())
        out: dict[str, list[str]] = {}
        for config in dump["configs"]:
            for vhost in config["route_config"].get("virtual_hosts", []):
                out[vhost["name"]] = [route.get("name", "") for route in vhost.get("routes", [])]
        return out


def _url(client: str, path: str = "/", port: int | None = None) -> str:
    """Short name from the service's namespace, namespace-qualified from elsewhere."""
    host = "sample-app" if CLIENTS[client] == NS else f"sample-app.{NS}"
    return f"http://{host}{f':{port}' if port else ''}{path}"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    with mesh(tmp_path_factory.mktemp("match-fields"), "delta") as m:
        m.start_control_plane()
        result = m.run("apply", "-f", "-", stdin=yaml.safe_dump_all([SERVICE, EDGE_SERVICE]))
        assert result.returncode == 0, result.stderr
        m.apply(EXAMPLES / "base" / "20-sample-app-subsets.yaml")
        # Six Envoys: start them side by side rather than one after another.
        with ThreadPoolExecutor(max_workers=5) as pool:
            apps = [pool.submit(m.workload, f"sample-app-{v}-1", NS,
                                f"app=sample-app,version={v}", v) for v in ("v1", "v2")]
            outbound = {name: pool.submit(m.client, name, ns) for name, ns in CLIENTS.items()}
            for app in apps:
                app.result()
            clients = {name: ProxyClient(f.result()) for name, f in outbound.items()}
        result = m.run("apply", "-f", "-", stdin=yaml.safe_dump_all([GATEWAY, VIRTUAL_SERVICE,
                                                                    EDGE_VS]))
        assert result.returncode == 0, result.stderr
        e = Env(m, clients)

        def converged() -> bool:
            # Every client has the VirtualService: the last rule-specific probe of each
            # answers from v2 ten times in a row (one could be the old config by chance).
            probes = [("beta-client", _url("beta-client", "/src")),
                      ("ns-client", _url("ns-client", "/ns")),
                      ("alpha-client", _url("alpha-client", "/", 8080)),
                      ("alpha-client", _url("alpha-client", "/mesh"))]
            return all(e.version(c, url) == "v2" for _ in range(10) for c, url in probes)

        wait_for(converged, 20, m.control_plane)
        yield e
        for client in clients.values():
            client.close()


def test_match_port_routes_only_the_matching_service_port(env: Env) -> None:
    for client in CLIENTS:
        assert {env.version(client, _url(client, "/", 8080)) for _ in range(10)} == {"v2"}
        assert {env.version(client, _url(client, "/")) for _ in range(10)} == {"v1"}
        assert env.version(client, _url(client, "/", 80)) == "v1"


def test_source_labels_route_only_the_matching_client(env: Env) -> None:
    assert {env.version("beta-client", _url("beta-client", "/src/x")) for _ in range(10)} \
        == {"v2"}
    assert {env.version("alpha-client", _url("alpha-client", "/src/x")) for _ in range(10)} \
        == {"v1"}
    assert env.version("ns-client", _url("ns-client", "/src")) == "v1"
    # Istio drops a non-matching source match from that proxy's config altogether.
    assert "beta-only.beta" in env.route_names("beta-client")[f"{FQDN}:80"]
    assert "beta-only.beta" not in env.route_names("alpha-client")[f"{FQDN}:80"]
    # All source labels must match: beta-client has app=beta-client but no tier=web.
    assert env.version("beta-client", _url("beta-client", "/tier")) == "v1"


def test_source_namespace_routes_only_clients_of_that_namespace(env: Env) -> None:
    assert {env.version("ns-client", _url("ns-client", "/ns")) for _ in range(10)} == {"v2"}
    for client in ("alpha-client", "beta-client"):
        assert {env.version(client, _url(client, "/ns")) for _ in range(10)} == {"v1"}
    # The same service by its FQDN from other-ns: still the other-ns client's rule.
    assert env.version("ns-client", f"http://{FQDN}/ns") == "v2"


def test_gateway_only_rule_never_reaches_sidecars_and_mesh_rule_does(env: Env) -> None:
    for client in CLIENTS:
        assert env.version(client, _url(client, "/gw")) == "v1"
        assert env.version(client, _url(client, "/mesh")) == "v2"
        names = env.route_names(client)[f"{FQDN}:80"]
        assert "edge-only" not in names
        assert "mesh-only" in names


def test_gateway_bound_virtual_service_is_not_widened_by_a_mesh_match(env: Env) -> None:
    edge = f"sample-edge.{NS}.svc.cluster.local:80"
    for client in CLIENTS:
        assert env.route_names(client)[edge] == ["default"], client
    url = "http://sample-edge/"
    seen = {env.version("alpha-client", url) for _ in range(30)}
    assert seen == {"v1", "v2"}    # the service's own endpoints, not the rule's v2


def test_match_blocks_are_ored_and_fields_anded(env: Env) -> None:
    v = env.version
    url = _url("alpha-client", "/and/x")
    assert v("alpha-client", url, {"x-a": "1"}) == "v2"          # uri AND header AND GET
    assert v("alpha-client", url) == "v1"                         # header missing
    assert v("alpha-client", url, {"x-a": "2"}) == "v1"           # header differs
    assert v("alpha-client", _url("alpha-client", "/elsewhere"), {"x-a": "1"}) == "v1"
    assert v("alpha-client", _url("alpha-client", "/or?mode=beta")) == "v2"   # 2nd block
    assert v("alpha-client", _url("alpha-client", "/or?mode=alpha")) == "v1"
    assert v("alpha-client", _url("alpha-client", "/anything"), {"x-or": "yes"}) == "v2"
    assert v("alpha-client", _url("alpha-client", "/anything"), {"x-or": "no"}) == "v1"


def test_route_names_are_rule_dot_match_in_envoy(env: Env) -> None:
    # Istio names a route `<rule name>` or `<rule name>.<match name>`, in rule order; the
    # matches a proxy does not qualify for (port, source, gateway) are not there at all.
    shared = ["mesh-only", "or-and.first", "or-and.second", "or-and.third", "default"]
    expected = {"alpha-client": shared, "beta-client": ["beta-only.beta", *shared],
                "ns-client": ["other-ns-only", *shared]}
    for client, routes in expected.items():
        names = env.route_names(client)
        assert names[f"{FQDN}:8080"] == ["alt-port.on-8080"], client
        assert names[f"{FQDN}:80"] == routes, client
