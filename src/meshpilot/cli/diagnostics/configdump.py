"""Reading Envoy's `/config_dump` JSON (pure functions, so tables are tested from files).

The dump is a list of per-type sections (`BootstrapConfigDump`, `ClustersConfigDump`...);
each holds static and dynamic resources wrapped with versions and timestamps. These
helpers unwrap the resources the way istioctl's configdump.Wrapper does: active dynamic
resources first, then static ones; warming and draining copies are not "what runs".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

ADMIN = "type.googleapis.com/envoy.admin.v3."
BOOTSTRAP = ADMIN + "BootstrapConfigDump"
CLUSTERS = ADMIN + "ClustersConfigDump"
LISTENERS = ADMIN + "ListenersConfigDump"
ROUTES = ADMIN + "RoutesConfigDump"
SECRETS = ADMIN + "SecretsConfigDump"
ENDPOINTS = ADMIN + "EndpointsConfigDump"

# istioctl's admin paths: one section per command, everything (with EDS) for `all`.
PATHS = {
    "all": "/config_dump?include_eds",
    "clusters": "/config_dump?mask=dynamic_active_clusters,dynamic_warming_clusters,"
                "static_clusters",
    "listeners": "/config_dump?mask=dynamic_listeners,static_listeners",
    "routes": "/config_dump?mask=dynamic_route_configs,static_route_configs",
    "secrets": "/config_dump?mask=dynamic_active_secrets,dynamic_warming_secrets",
    "bootstrap": "/config_dump?mask=bootstrap",
}


def section(dump: dict[str, Any], type_url: str) -> dict[str, Any]:
    """One section of the dump (empty when Envoy has nothing of that type)."""
    for cfg in dump.get("configs") or []:
        if cfg.get("@type") == type_url:
            return cfg
    return {}


def clusters(dump: dict[str, Any]) -> list[dict[str, Any]]:
    cd = section(dump, CLUSTERS)
    out = [c["cluster"] for c in cd.get("dynamic_active_clusters") or [] if c.get("cluster")]
    return out + [c["cluster"] for c in cd.get("static_clusters") or [] if c.get("cluster")]


def listeners(dump: dict[str, Any]) -> list[dict[str, Any]]:
    ld = section(dump, LISTENERS)
    out = [(dl.get("active_state") or {}).get("listener")
           for dl in ld.get("dynamic_listeners") or []]
    out += [sl.get("listener") for sl in ld.get("static_listeners") or []]
    return [listener for listener in out if listener]


def route_configs(dump: dict[str, Any]) -> list[dict[str, Any]]:
    rd = section(dump, ROUTES)
    out = [r.get("route_config") for r in rd.get("dynamic_route_configs") or []]
    out += [r.get("route_config") for r in rd.get("static_route_configs") or []]
    return [r for r in out if r]


def dynamic_secrets(dump: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str]]:
    """(wrapper, state) for every SDS secret: WARMING first, then ACTIVE, as istioctl."""
    sd = section(dump, SECRETS)
    for wrapper in sd.get("dynamic_warming_secrets") or []:
        yield wrapper, "WARMING"
    for wrapper in sd.get("dynamic_active_secrets") or []:
        state = "UNINITIALIZED" if wrapper.get("version_info") == "uninitialized" else "ACTIVE"
        yield wrapper, state


def bootstrap(dump: dict[str, Any]) -> dict[str, Any]:
    return section(dump, BOOTSTRAP)


def latest_update(dump: dict[str, Any], type_url: str, key: str) -> str:
    """The newest `last_updated` among a section's dynamic entries (RDS "last loaded")."""
    entries = section(dump, type_url).get(key) or []
    stamps = [str(e.get("last_updated") or (e.get("active_state") or {}).get("last_updated")
                  or "") for e in entries]
    return max((s for s in stamps if s), default="")


def istio_config(metadata: dict[str, Any] | None) -> str:
    """istioctl's describeManagement: `filter_metadata.istio.config` (the Istio resource
    that produced a route or cluster) as `<name>.<namespace>`; "" when absent."""
    istio = ((metadata or {}).get("filter_metadata") or {}).get("istio") or {}
    path = istio.get("config")
    if not path:
        return ""
    if str(path).startswith("/apis/networking.istio.io/"):
        pieces = str(path).split("/")
        return f"{pieces[7]}.{pieces[5]}" if len(pieces) == 8 else ""
    return "<unknown>"
