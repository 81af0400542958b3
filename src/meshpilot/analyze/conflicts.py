"""Conflicts Istio accepts but resolves silently, reported as warnings at apply time.

Istio stores both objects and picks one by age; users only find out when traffic
ignores their rules. The seed stacks four VirtualServices on `sample-app`: sidecars
use only the oldest (IST0109). Several DestinationRules for one host are merged:
subsets are unioned (first wins on a duplicate name) and only the oldest's top-level
trafficPolicy applies.
"""

from __future__ import annotations

from collections.abc import Iterable

from ..api.errors import Issue
from ..api.hosts import resolve_short_name
from ..api.resource import Resource

MESH = "mesh"


def _age_key(res: Resource, batch_order: int) -> tuple[int, str, str, str]:
    # Stored objects are older than anything in this batch; ties by name then namespace,
    # as Istio's configCompareByCreationTime.
    stored = 0 if res.creation_timestamp else 1
    return (stored, res.creation_timestamp or f"{batch_order:08d}", res.name, res.namespace)


def _merged_view(batch: list[Resource], existing: Iterable[Resource]) -> list[Resource]:
    """Existing objects with the batch applied over them, oldest first."""
    by_key = {r.key: r for r in existing}
    order: dict[object, int] = {}
    for i, res in enumerate(batch):
        old = by_key.get(res.key)
        by_key[res.key] = res.with_(creation_timestamp=old.creation_timestamp) if old else res
        order[res.key] = i
    return sorted(by_key.values(), key=lambda r: _age_key(r, order.get(r.key, 0)))


def _mesh_hosts(vs: Resource) -> set[str]:
    gateways = vs.body.get("gateways") or [MESH]
    if MESH not in gateways:
        return set()
    return {resolve_short_name(h, vs.namespace) for h in vs.body.get("hosts") or []}


def _virtual_service_conflicts(view: list[Resource], batch_keys: set) -> list[Issue]:
    issues: list[Issue] = []
    owner: dict[str, Resource] = {}
    for vs in (r for r in view if r.kind == "VirtualService"):
        for host in sorted(_mesh_hosts(vs)):
            first = owner.setdefault(host, vs)
            if first is vs or (vs.key not in batch_keys and first.key not in batch_keys):
                continue
            issues.append(Issue(
                ("spec", "hosts"),
                f"host {host} is already routed for sidecars by VirtualService "
                f"{first.namespace}/{first.name}, which is older; sidecars use only the oldest "
                f"VirtualService for a host, so the mesh routes of {vs.namespace}/{vs.name} "
                "are ignored (IST0109)",
                hint="merge the rules into one VirtualService, or delete the other one",
                severity="warning",
                resource=str(vs.key),
            ))
    return issues


def _destination_rule_conflicts(view: list[Resource], batch_keys: set) -> list[Issue]:
    issues: list[Issue] = []
    first_for: dict[tuple[str, str], Resource] = {}
    subsets_for: dict[tuple[str, str], set[str]] = {}
    for dr in (r for r in view if r.kind == "DestinationRule"):
        if dr.body.get("workloadSelector"):
            continue
        key = (dr.namespace, resolve_short_name(dr.body.get("host", ""), dr.namespace))
        names = [s.get("name") for s in dr.body.get("subsets") or []]
        first = first_for.setdefault(key, dr)
        taken = subsets_for.setdefault(key, set())
        if first is not dr and (dr.key in batch_keys or first.key in batch_keys):
            lost = [n for n in names if n in taken]
            parts = []
            if dr.body.get("trafficPolicy"):
                parts.append("its top-level trafficPolicy is ignored")
            if lost:
                parts.append("its subsets " + ", ".join(lost) + " are ignored (already defined)")
            effect = "; ".join(parts) or "its subsets are merged into the older rule"
            issues.append(Issue(
                ("spec", "host"),
                f"DestinationRule {first.namespace}/{first.name} already configures host "
                f"{key[1]}; Istio merges the two and the older one wins: {effect}",
                hint="keep one DestinationRule per host",
                severity="warning",
                resource=str(dr.key),
            ))
        taken.update(n for n in names if n)
    return issues


def find_conflicts(batch: list[Resource], existing: Iterable[Resource]) -> list[Issue]:
    """Warnings for conflicts that involve at least one object of `batch`."""
    view = _merged_view(batch, existing)
    keys = {r.key for r in batch}
    return _virtual_service_conflicts(view, keys) + _destination_rule_conflicts(view, keys)
