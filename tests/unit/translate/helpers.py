"""Shared helpers: load manifests into a snapshot, and check translated resources."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from envoy.config.route.v3 import route_pb2
from google.protobuf import json_format

from meshpilot.api.decode import decode
from meshpilot.api.load import read_paths
from meshpilot.api.resource import Resource
from meshpilot.snapshot import MeshConfig, MeshSnapshot
from meshpilot.xds.types import ProxyInfo, ProxyResources

ROOT = Path(__file__).resolve().parents[3]
SEED = ROOT / "tests" / "data" / "seed"
EXAMPLES = ROOT / "examples" / "traffic-demo"
DATA = ROOT / "tests" / "data" / "translate"
GOLDEN = ROOT / "tests" / "data" / "golden"

CLIENT = ProxyInfo(
    name="sleep", namespace="traffic-demo", labels={"app": "sleep"},
    inbound_port=15006, app_port=8080, outbound_port=15001,
)

# `meshpilot gateway --name istio-ingressgateway -n istio-system --labels
# istio=ingressgateway --port-map 80:8080,443:8443`
GATEWAY = ProxyInfo(
    name="istio-ingressgateway", namespace="istio-system", kind="gateway",
    labels={"istio": "ingressgateway"}, outbound_port=None, port_map={80: 8080, 443: 8443},
)


def stamp(resources: Iterable[Resource]) -> list[Resource]:
    """Creation times in input order, as if each was applied one second after the last."""
    return [
        r.with_(creation_timestamp=f"2026-01-01T00:{i // 60:02d}:{i % 60:02d}Z")
        for i, r in enumerate(resources)
    ]


def load(*paths: Path | str) -> list[Resource]:
    decoded = decode(read_paths([str(p) for p in paths]))
    assert not decoded.errors, decoded.errors
    return stamp(decoded.resources)


def snapshot(*paths: Path | str, mesh: MeshConfig | None = None, revision: int = 1) -> (
    MeshSnapshot
):
    return MeshSnapshot.build(load(*paths), revision, mesh)


def resource(kind: str, name: str, body: dict[str, Any], namespace: str = "traffic-demo",
             created: str = "") -> Resource:
    api = "v1" if kind == "Service" else "networking.istio.io/v1"
    return Resource(api, kind, name, namespace, body, creation_timestamp=created)


def route_clusters(resources: ProxyResources) -> set[str]:
    """Every cluster any route of any route configuration can send traffic to."""
    out: set[str] = set()
    for rc in resources.routes.values():
        assert isinstance(rc, route_pb2.RouteConfiguration)
        for vh in rc.virtual_hosts:
            for r in vh.routes:
                if not r.HasField("route"):
                    continue
                if r.route.cluster:
                    out.add(r.route.cluster)
                out.update(w.name for w in r.route.weighted_clusters.clusters)
    return out


def assert_consistent(resources: ProxyResources) -> None:
    """What the xDS server checks before publishing: routes only name existing clusters,
    every EDS cluster has an assignment, every RDS name a listener uses exists. The xDS
    cache's own check must agree."""
    from meshpilot.xds.cache import consistency_problems

    assert consistency_problems(resources) == []
    missing = route_clusters(resources) - set(resources.clusters)
    assert not missing, f"routes name missing clusters: {sorted(missing)}"
    for name, cluster in resources.clusters.items():
        if cluster.HasField("eds_cluster_config"):  # type: ignore[attr-defined]
            assert name in resources.endpoints, f"EDS cluster {name} has no assignment"
    for listener in resources.listeners.values():
        data = json_format.MessageToDict(listener, preserving_proto_field_name=True)
        for chain in data["filter_chains"]:
            for f in chain["filters"]:
                rds = f["typed_config"].get("rds")
                if rds is not None:
                    assert rds["route_config_name"] in resources.routes
