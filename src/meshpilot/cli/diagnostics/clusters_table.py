"""`proxy-config clusters` and `endpoints`: istioctl's tables, column for column.

Clusters come from the config dump (`SERVICE FQDN  PORT  SUBSET  DIRECTION  TYPE
DESTINATION RULE`); endpoints from the admin `/clusters?format=json` (`ENDPOINT  STATUS
OUTLIER CHECK  CLUSTER`), which is where Envoy reports live health and outlier ejections.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .configdump import istio_config
from .tabwriter import tabulate


@dataclass(frozen=True)
class ClusterFilter:
    """istioctl's ClusterFilter: substring matches on the cluster name."""

    fqdn: str = ""
    port: int = 0
    subset: str = ""
    direction: str = ""

    def verify(self, name: str) -> bool:
        if self.fqdn and self.fqdn not in name:
            return False
        if self.direction and self.direction not in name:
            return False
        if self.subset and self.subset not in name:
            return False
        return not self.port or f"|{self.port}|" in name


def parse_subset_key(name: str) -> tuple[str, int, str, str] | None:
    """Istio's ParseSubsetKey: `direction|port|subset|fqdn`; None for other names."""
    parts = name.split("|")
    if len(parts) <= 3:
        return None
    port = int(parts[1]) if parts[1].isdigit() else 0
    return parts[0], port, parts[2], parts[3]


def cluster_type(cluster: dict[str, Any]) -> str:
    """Envoy's discovery type. A custom cluster (our PassthroughCluster is a dynamic
    forward proxy where Istio's is ORIGINAL_DST) shows its extension's short name."""
    if cluster.get("type"):
        return str(cluster["type"])
    custom = (cluster.get("cluster_type") or {}).get("name")
    if custom:
        return str(custom).rsplit(".", 1)[-1].upper()
    return "STATIC"


def _sort_key(cluster: dict[str, Any]) -> tuple[str, str, int, str]:
    parsed = parse_subset_key(str(cluster.get("name", "")))
    if parsed is None:
        return str(cluster.get("name", "")), "", 0, ""
    direction, port, subset, fqdn = parsed
    return fqdn, subset, port, direction


def cluster_rows(clusters: list[dict[str, Any]], flt: ClusterFilter,
                 include_type: bool = False) -> list[list[str]]:
    header = ["SERVICE FQDN", "PORT", "SUBSET", "DIRECTION", "TYPE", "DESTINATION RULE"]
    rows = [["NAME", *header] if include_type else header]
    for c in sorted(clusters, key=_sort_key):
        name = str(c.get("name", ""))
        if not flt.verify(name):
            continue
        parsed = parse_subset_key(name)
        if parsed is not None:
            direction, port, subset, fqdn = parsed
            cells = [fqdn, str(port), subset or "-", direction]
        else:
            cells = [name, "-", "-", "-"]
        row = [*cells, cluster_type(c), istio_config(c.get("metadata"))]
        rows.append([f"cluster/{name}", *row] if include_type else row)
    return rows


def clusters_table(clusters: list[dict[str, Any]], flt: ClusterFilter,
                   include_type: bool = False) -> str:
    return tabulate(cluster_rows(clusters, flt, include_type))


@dataclass(frozen=True)
class EndpointFilter:
    """istioctl's EndpointFilter: exact address/port/cluster/status (case-insensitive)."""

    address: str = ""
    port: int = 0
    cluster: str = ""
    status: str = ""

    def verify(self, host: dict[str, Any], cluster: str) -> bool:
        if self.address and endpoint_address(host).lower() != self.address.lower():
            return False
        if self.port and endpoint_port(host) != self.port:
            return False
        if self.cluster and cluster.lower() != self.cluster.lower():
            return False
        return not self.status or health_status(host).lower() == self.status.lower()


def endpoint_address(host: dict[str, Any]) -> str:
    address = host.get("address") or {}
    if "socket_address" in address:
        return str(address["socket_address"].get("address", ""))
    if "pipe" in address:
        return "unix://" + str(address["pipe"].get("path", ""))
    internal = address.get("envoy_internal_address")
    if internal:
        return f"envoy://{internal.get('server_listener_name', '')}/" \
               f"{internal.get('endpoint_id', '')}"
    return "unknown"


def endpoint_port(host: dict[str, Any]) -> int:
    return int(((host.get("address") or {}).get("socket_address") or {}).get("port_value", 0))


def health_status(host: dict[str, Any]) -> str:
    """Envoy's EDS health status name (UNKNOWN is proto3's omitted zero value)."""
    return str((host.get("health_status") or {}).get("eds_health_status") or "UNKNOWN")


def outlier_check(host: dict[str, Any]) -> str:
    return "FAILED" if (host.get("health_status") or {}).get("failed_outlier_check") else "OK"


def endpoint_rows(clusters_json: dict[str, Any], flt: EndpointFilter) -> list[list[str]]:
    found: list[tuple[str, int, str, dict[str, Any]]] = []
    for status in clusters_json.get("cluster_statuses") or []:
        name = str(status.get("name", ""))
        for host in status.get("host_statuses") or []:
            if flt.verify(host, name):
                found.append((endpoint_address(host), endpoint_port(host), name, host))
    rows = [["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]]
    for address, port, name, host in sorted(found, key=lambda f: (f[0], f[1], f[2])):
        endpoint = f"{address}:{port}" if port else address
        rows.append([endpoint, health_status(host), outlier_check(host), name])
    return rows


def endpoints_table(clusters_json: dict[str, Any], flt: EndpointFilter) -> str:
    return tabulate(endpoint_rows(clusters_json, flt))


def filter_cluster_statuses(clusters_json: dict[str, Any], flt: EndpointFilter) -> (
    list[dict[str, Any]]
):
    """`-o json|yaml` for endpoints: the cluster statuses with a matching host."""
    return [s for s in clusters_json.get("cluster_statuses") or []
            if any(flt.verify(h, str(s.get("name", ""))) for h in s.get("host_statuses") or [])]
