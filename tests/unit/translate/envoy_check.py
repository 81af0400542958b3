"""Put translated resources into a bootstrap and ask real Envoy whether it accepts them.

`envoy --mode validate` checks static resources only, so the bootstrap inlines what xDS
would deliver: each listener's RDS route configuration becomes an inline `route_config`,
and each ClusterLoadAssignment is checked as the load_assignment of a STATIC twin cluster.
EDS clusters stay as they are, reading from an ADS config that is never dialled.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from meshpilot.xds.types import ProxyResources


def _dict(msg: Any) -> dict[str, Any]:
    return json_format.MessageToDict(msg, preserving_proto_field_name=True)


def bootstrap_for(resources: ProxyResources) -> dict[str, Any]:
    routes = {name: _dict(rc) for name, rc in resources.routes.items()}
    listeners = []
    for listener in resources.listeners.values():
        data = _dict(listener)
        for chain in data.get("filter_chains", []):
            for f in chain.get("filters", []):
                hcm = f.get("typed_config", {})
                rds = hcm.pop("rds", None)
                if rds is not None:
                    hcm["route_config"] = routes[rds["route_config_name"]]
        listeners.append(data)
    clusters = [_dict(c) for c in resources.clusters.values()]
    for name, cla in resources.endpoints.items():
        clusters.append({"name": f"eds-check|{name}", "type": "STATIC",
                         "connect_timeout": "1s", "load_assignment": _dict(cla)})
    clusters.append({
        "name": "xds_cluster", "type": "STATIC", "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3."
                         "HttpProtocolOptions",
                "explicit_http_config": {"http2_protocol_options": {}},
            }
        },
        "load_assignment": {"cluster_name": "xds_cluster", "endpoints": [{"lb_endpoints": [
            {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1",
                                                         "port_value": 1}}}}]}]},
    })
    # SDS secrets stay ADS-delivered in the listeners; listing them as static secrets too
    # makes Envoy parse each one (PEM included) with its own validation.
    secrets = [_dict(s) for s in resources.secrets.values()]
    return {
        "node": {"id": "validate", "cluster": "validate"},
        "dynamic_resources": {"ads_config": {
            "api_type": "GRPC", "transport_api_version": "V3",
            "grpc_services": [{"envoy_grpc": {"cluster_name": "xds_cluster"}}],
        }},
        "static_resources": {"listeners": listeners, "clusters": clusters,
                             **({"secrets": secrets} if secrets else {})},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
    }


def envoy_validate(envoy: Path, resources: ProxyResources) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bootstrap.json"
        path.write_text(json.dumps(bootstrap_for(resources), indent=1))
        return subprocess.run(
            [str(envoy), "--mode", "validate", "-c", str(path), "-l", "error"],
            capture_output=True, text=True, timeout=120, check=False,
        )


def static_bootstrap_for(resources: ProxyResources, admin_port: int = 0) -> dict[str, Any]:
    """A bootstrap that runs the translated config with no control plane: EDS clusters get
    their assignments inline (as STATIC) and route configurations are inlined."""
    boot = bootstrap_for(resources)
    del boot["dynamic_resources"]
    clusters = []
    for c in boot["static_resources"]["clusters"]:
        name = c["name"]
        if name == "xds_cluster" or name.startswith("eds-check|"):
            continue
        if c.get("type") == "EDS":
            c = dict(c)
            c.pop("eds_cluster_config")
            c["type"] = "STATIC"
            c["load_assignment"] = _dict(resources.endpoints[name])
        clusters.append(c)
    boot["static_resources"]["clusters"] = clusters
    boot["admin"]["address"]["socket_address"]["port_value"] = admin_port
    return boot
