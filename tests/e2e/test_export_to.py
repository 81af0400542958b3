"""exportTo on real Envoys: two client sidecars, `near-client` in traffic-demo (where the
config lives) and `far-client` in other-ns, see different config for the same hosts.

- VirtualService `exportTo: [.]` sending everything to v2: near-client gets v2 only,
  far-client gets the service's default route (both versions).
- DestinationRule `exportTo: [.]` with consistent hashing on `x-user` for a second service
  over the same pods: near-client sticks to one instance per user, far-client round-robins.
- ServiceEntry `exportTo: [.]` for `localhost:<port>` whose endpoint is the v1 app: near-
  client reaches v1 through it; far-client has no such service, so its catch-all
  (ALLOW_ANY passthrough) forwards to whatever really listens on `localhost:<port>`, the
  v2 app.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
import yaml

from .mesh import Mesh, ProxyClient, mesh, wait_for

pytestmark = pytest.mark.e2e
NS = "traffic-demo"
OTHER_NS = "other-ns"
CLIENTS = {"near-client": NS, "far-client": OTHER_NS}


def _service(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
            "spec": {"selector": {"app": "sample-app"},
                     "ports": [{"name": "http", "port": 80, "targetPort": 80}]}}


def _config(v2_port: int, v1_port: int) -> list[dict]:
    subsets = [{"name": v, "labels": {"version": v}} for v in ("v1", "v2")]
    return [
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "sample-app-subsets", "namespace": NS},
         "spec": {"host": "sample-app", "exportTo": ["."], "subsets": subsets}},
        {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
         "metadata": {"name": "sample-app-private", "namespace": NS},
         "spec": {"hosts": ["sample-app"], "exportTo": ["."], "http": [
             {"name": "all-to-v2",
              "route": [{"destination": {"host": "sample-app", "subset": "v2"}}]}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
         "metadata": {"name": "sample-lb-sticky", "namespace": NS},
         "spec": {"host": "sample-lb", "exportTo": ["."], "trafficPolicy": {
             "loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}}}},
        {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
         "metadata": {"name": "local-ext", "namespace": NS},
         "spec": {"hosts": ["localhost"], "exportTo": ["."], "location": "MESH_EXTERNAL",
                  "resolution": "STATIC",
                  "ports": [{"number": v2_port, "name": "http", "protocol": "HTTP"}],
                  "endpoints": [{"address": "127.0.0.1", "ports": {"http": v1_port}}]}},
    ]


@dataclass
class Env:
    mesh: Mesh
    clients: dict[str, ProxyClient]
    ext_url: str

    def seen(self, client: str, url: str, n: int, headers: dict[str, str] | None = None
             ) -> set[tuple[int, str | None, str | None]]:
        return set(self.clients[client].versions(url, n, headers))


def _url(client: str, name: str) -> str:
    return f"http://{name}/" if CLIENTS[client] == NS else f"http://{name}.{NS}/"


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Iterator[Env]:
    with mesh(tmp_path_factory.mktemp("export-to"), "delta") as m:
        m.start_control_plane()
        result = m.run("apply", "-f", "-",
                       stdin=yaml.safe_dump_all([_service("sample-app"), _service("sample-lb")]))
        assert result.returncode == 0, result.stderr
        with ThreadPoolExecutor(max_workers=4) as pool:
            apps = {v: pool.submit(m.workload, f"sample-app-{v}-1", NS,
                                   f"app=sample-app,version={v}", v) for v in ("v1", "v2")}
            outbound = {name: pool.submit(m.client, name, ns) for name, ns in CLIENTS.items()}
            ports = {v: f.result()[0] for v, f in apps.items()}
            clients = {name: ProxyClient(f.result()) for name, f in outbound.items()}
        result = m.run("apply", "-f", "-",
                       stdin=yaml.safe_dump_all(_config(ports["v2"], ports["v1"])))
        assert result.returncode == 0, result.stderr
        e = Env(m, clients, f"http://localhost:{ports['v2']}/")

        def converged() -> bool:
            near = e.seen("near-client", _url("near-client", "sample-app"), 10)
            ext = e.seen("near-client", e.ext_url, 5)
            return {v for _, v, _ in near} == {"v2"} and {v for _, v, _ in ext} == {"v1"}

        wait_for(converged, 20, m.control_plane)
        yield e
        for client in clients.values():
            client.close()


def test_virtual_service_exported_to_own_namespace_only(env: Env) -> None:
    near = env.seen("near-client", _url("near-client", "sample-app"), 20)
    assert {(status, version) for status, version, _ in near} == {(200, "v2")}
    # other-ns does not see the VirtualService: the service's default route, both pods.
    far = env.seen("far-client", _url("far-client", "sample-app"), 20)
    assert {(status, version) for status, version, _ in far} == {(200, "v1"), (200, "v2")}


def test_destination_rule_exported_to_own_namespace_only(env: Env) -> None:
    for user in ("alice", "bob", "carol"):
        near = env.seen("near-client", _url("near-client", "sample-lb"), 12, {"x-user": user})
        assert len(near) == 1 and next(iter(near))[0] == 200, (user, near)
    # other-ns has no DestinationRule for sample-lb: round robin over both pods.
    far = env.seen("far-client", _url("far-client", "sample-lb"), 12, {"x-user": "alice"})
    assert {(status, version) for status, version, _ in far} == {(200, "v1"), (200, "v2")}


def test_service_entry_exported_to_own_namespace_only(env: Env) -> None:
    # near-client: the ServiceEntry's endpoint (the v1 app) answers for localhost:<port>.
    near = env.seen("near-client", env.ext_url, 10)
    assert {(status, version) for status, version, _ in near} == {(200, "v1")}
    # far-client: no such service, so the ALLOW_ANY catch-all passes the request through
    # to what really listens on localhost:<port> (the v2 app itself).
    far = env.seen("far-client", env.ext_url, 10)
    assert {(status, version) for status, version, _ in far} == {(200, "v2")}
