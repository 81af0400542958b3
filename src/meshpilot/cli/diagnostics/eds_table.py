"""The endpoints section of `proxy-config all`: istioctl's `NAME  STATUS  LOCALITY  CLUSTER`
from the config dump's EDS (what the control plane sent), where `proxy-config endpoints`
shows Envoy's live view from `/clusters`."""

from __future__ import annotations

from typing import Any

from .configdump import ENDPOINTS, section
from .tabwriter import tabulate


def _locality(loc: dict[str, Any] | None) -> str:
    """Istio's LocalityToString: region[/zone[/subzone]]."""
    loc = loc or {}
    out = str(loc.get("region", ""))
    if not loc.get("zone"):
        return out
    out += f"/{loc['zone']}"
    return out + f"/{loc['sub_zone']}" if loc.get("sub_zone") else out


def _address(ep: dict[str, Any]) -> str:
    sock = ((ep.get("endpoint") or {}).get("address") or {}).get("socket_address") or {}
    return f"{sock.get('address', '')}:{sock.get('port_value', 0)}" if sock else "unknown"


def eds_rows(dump: dict[str, Any], include_type: bool = False) -> list[list[str]]:
    sec = section(dump, ENDPOINTS)
    configs = [c.get("endpoint_config") or {}
               for c in [*(sec.get("dynamic_endpoint_configs") or []),
                         *(sec.get("static_endpoint_configs") or [])]]
    rows = [["NAME", "STATUS", "LOCALITY", "CLUSTER"]]
    for cla in sorted(configs, key=lambda c: str(c.get("cluster_name", ""))):
        for llb in cla.get("endpoints") or []:
            for ep in llb.get("lb_endpoints") or []:
                addr = _address(ep)
                rows.append([f"endpoint/{addr}" if include_type else addr,
                             str(ep.get("health_status") or "UNKNOWN"),
                             _locality(llb.get("locality")), str(cla.get("cluster_name", ""))])
    return rows


def eds_table(dump: dict[str, Any], include_type: bool = False) -> str:
    return tabulate(eds_rows(dump, include_type))
