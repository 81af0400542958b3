"""Diagnostics about config that is valid but will not (fully) take effect.

These are per-revision, not per-proxy: a shadowed VirtualService, a destination whose
host or subset does not exist, a field the translator does not implement yet. Each
message names the resource so `analyze`-style output can point the user at it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..api.virtualservice import Destination, HTTPRoute

if TYPE_CHECKING:
    from .config import Config
    from .mesh import MergedDestinationRule, MeshSnapshot

# HTTPRoute fields the translator does not implement yet (a later issue covers them).
UNSUPPORTED_ROUTE_FIELDS = ("fault", "mirror", "mirrors", "cors_policy", "headers", "delegate")


def check_snapshot(snap: MeshSnapshot) -> list[str]:
    out: list[str] = []
    seen: set[int] = set()
    for cfg in snap.mesh_virtual_services.values():
        if id(cfg) in seen:
            continue
        seen.add(id(cfg))
        out += _check_virtual_service(snap, cfg)
    for (host, _ns), dr in snap.destination_rules_by_host.items():
        if not host.startswith("*") and snap.service(host) is None:
            out.append(f"{dr.first}: host {host} matches no service (IST0174)")
        out += _check_policies(dr)
    for svc in snap.services:
        if svc.resolution in ("NONE", "DYNAMIC_DNS") and not svc.endpoints:
            out.append(
                f"ServiceEntry {svc.namespace}/{svc.source_name}: host {svc.hostname} has "
                f"resolution {svc.resolution} and no endpoints; an explicit-proxy sidecar "
                "cannot pass its traffic through, so it gets 503"
            )
    return out


def _check_policies(dr: MergedDestinationRule) -> list[str]:
    """Policy blocks the translator does not map yet (the seed's later issue covers them)."""
    out: list[str] = []
    policies = [("trafficPolicy", dr.rule.traffic_policy)]
    policies += [(f"subset {s.name}", s.traffic_policy) for s in dr.rule.subsets or []]
    for where, policy in policies:
        if policy is None:
            continue
        blocks = [policy, *(policy.port_level_settings or [])]
        for block in blocks:
            lb = block.load_balancer
            unsupported = {
                "loadBalancer.consistentHash": lb is not None and lb.consistent_hash is not None,
                "loadBalancer.simple PASSTHROUGH": lb is not None and lb.simple == "PASSTHROUGH",
                "loadBalancer.localityLbSetting": lb is not None
                and lb.locality_lb_setting is not None,
                "loadBalancer.warmup": lb is not None
                and (lb.warmup is not None or lb.warmup_duration_secs is not None),
                "tls": block.tls is not None,
            }
            for name, used in unsupported.items():
                if used:
                    out.append(f"{dr.first}: {where}: {name} is not implemented yet; ignored")
    return sorted(set(out))


def _check_virtual_service(snap: MeshSnapshot, cfg: Config) -> list[str]:
    out: list[str] = []
    vs = cfg.spec
    if vs.tls or vs.tcp:
        out.append(f"{cfg}: tls/tcp routes are not supported on sidecars yet; ignored")
    for i, route in enumerate(vs.http):
        out += _check_route(snap, cfg, i, route)
    return out


def _check_route(snap: MeshSnapshot, cfg: Config, i: int, route: HTTPRoute) -> list[str]:
    out: list[str] = []
    label = f"{cfg}: http[{i}]" + (f" ({route.name})" if route.name else "")
    for name in UNSUPPORTED_ROUTE_FIELDS:
        value = getattr(route, name)
        if value:
            out.append(f"{label}: {name} is not implemented yet; ignored")
    dests: list[Destination] = [d.destination for d in route.route]
    for dest in dests:
        out += _check_destination(snap, cfg, label, dest)
    return out


def _check_destination(snap: MeshSnapshot, cfg: Config, label: str, dest: Destination) -> list[str]:
    host = snap.resolve_host(dest.host, cfg.namespace)
    svc = snap.service(host)
    if svc is None:
        return [f"{label}: destination host {host} matches no service (IST0101); "
                "its traffic gets 503"]
    out: list[str] = []
    if dest.port is not None and dest.port.number and svc.port(dest.port.number) is None:
        out.append(f"{label}: destination port {dest.port.number} is not a port of {host}")
    if dest.port is None and len(svc.ports) > 1:
        out.append(f"{label}: destination {host} has several ports; set destination.port "
                   "(IST0112)")
    if dest.subset:
        dr = snap.destination_rule(host, cfg.namespace, svc.namespace)
        if dr is None or dr.subset(dest.subset) is None:
            out.append(f"{label}: subset {dest.subset!r} of {host} is defined by no "
                       "DestinationRule (IST0101); its traffic gets 503")
    return out
