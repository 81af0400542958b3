"""The seed's egress flow: a sidecar's request to an external host goes through the egress
gateway, which forwards it out; a stand-in "external" API on 127.0.0.1 plays httpbin.org.

The mesh is REGISTRY_ONLY and every name is declared before the first request, so no
test traffic and no DNS query ever leaves this machine.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from .mesh import Mesh, ProxyClient, mesh, wait_for

pytestmark = pytest.mark.e2e
EXTERNAL = "api.external.test"
NS = "traffic-demo"


def egress_config(external_port: int) -> list[dict]:
    """The seed's ServiceEntry, egress Gateway and VirtualService, with a local endpoint."""
    net = "networking.istio.io/v1beta1"
    return [
        {"apiVersion": "v1", "kind": "Service",
         "metadata": {"name": "istio-egressgateway", "namespace": "istio-system"},
         "spec": {"selector": {"istio": "egressgateway"},
                  "ports": [{"name": "http2", "port": 80}]}},
        {"apiVersion": net, "kind": "ServiceEntry",
         "metadata": {"name": "external-api", "namespace": NS},
         "spec": {"hosts": [EXTERNAL], "location": "MESH_EXTERNAL", "resolution": "STATIC",
                  "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
                  "endpoints": [{"address": "127.0.0.1", "ports": {"http": external_port}}]}},
        {"apiVersion": net, "kind": "Gateway",
         "metadata": {"name": "egress-gateway", "namespace": NS},
         "spec": {"selector": {"istio": "egressgateway"}, "servers": [
             {"port": {"number": 80, "name": "http", "protocol": "HTTP"},
              "hosts": [EXTERNAL]}]}},
        {"apiVersion": net, "kind": "VirtualService",
         "metadata": {"name": "external-api-vs", "namespace": NS},
         "spec": {"hosts": [EXTERNAL], "gateways": ["egress-gateway", "mesh"], "http": [
             {"match": [{"gateways": ["mesh"], "port": 80}],
              "route": [{"destination": {
                  "host": "istio-egressgateway.istio-system.svc.cluster.local",
                  "port": {"number": 80}}, "weight": 100}]},
             {"match": [{"gateways": ["egress-gateway"], "port": 80}],
              "route": [{"destination": {"host": EXTERNAL, "port": {"number": 80}},
                         "weight": 100}]}]}},
    ]


def access_log(m: Mesh, name: str, namespace: str) -> str:
    out = m.run("get", "we", name, "-n", namespace, "-o", "json")
    assert out.returncode == 0, out.stderr
    path = json.loads(out.stdout)["metadata"]["annotations"].get("meshpilot.io/access-log")
    return Path(path).read_text() if path and Path(path).exists() else ""


@pytest.fixture(scope="module")
def egress(tmp_path_factory) -> Iterator[tuple[Mesh, ProxyClient, int]]:
    from meshpilot.proxy.ports import free_port

    root = tmp_path_factory.mktemp("egress")
    with mesh(root) as m:
        external = free_port()
        m.spawn("external-api", "demo-app", "--port", str(external), "--service", "httpbin",
                "--version", "external", "--name", "external-api")
        m.start_control_plane("--outbound-traffic-policy", "REGISTRY_ONLY")
        result = m.run("apply", "-f", "-", stdin=yaml.safe_dump_all(egress_config(external)))
        assert result.returncode == 0, result.stderr
        admin = free_port()
        gw = m.spawn("egress-gateway", "gateway", "--name", "istio-egressgateway",
                     "-n", "istio-system", "--labels", "istio=egressgateway",
                     "--port-map", f"80:{free_port()}", "--admin-port", str(admin))

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{admin}/ready", timeout=1) as r:
                    return r.status == 200
            except OSError:
                return False

        wait_for(ready, 30, gw)
        client = ProxyClient(m.client("sleep", NS))
        yield m, client, external
        client.close()


def test_request_to_the_external_host_goes_through_the_egress_gateway(egress) -> None:
    m, client, _ = egress

    def answered() -> bool:
        status, headers, _ = client.get(f"http://{EXTERNAL}/echo")
        return status == 200 and headers.get("x-instance") == "external-api"

    wait_for(answered, 20, m.control_plane)
    status, _, body = client.get(f"http://{EXTERNAL}/echo")
    assert status == 200
    seen = json.loads(body)
    assert seen["headers"]["Host"] == EXTERNAL
    # Both proxies logged the request: the sidecar sent it to the egress gateway's
    # cluster, and the gateway forwarded it to the external host.
    wait_for(lambda: "/echo" in access_log(m, "istio-egressgateway", "istio-system"), 10)
    sidecar_log = access_log(m, "sleep", NS)
    gateway_log = access_log(m, "istio-egressgateway", "istio-system")
    assert "outbound|80||istio-egressgateway.istio-system.svc.cluster.local" in sidecar_log
    assert f"outbound|80||{EXTERNAL}" in gateway_log


def test_registry_only_still_blocks_undeclared_hosts(egress) -> None:
    _, client, _ = egress
    assert client.get("http://undeclared.external.test/")[0] == 502
