"""VirtualService delegation, merged exactly as Istio merges it (model/virtualservice.go).

A root rule with `delegate: {name, namespace}` is replaced by the delegate's rules; each
delegate match is ANDed with every root match it does not conflict with, a delegate rule
whose match conflicts with all root matches is dropped, and fields the delegate rule leaves
unset are inherited from the root rule. Destination hosts are resolved in the namespace of
the VirtualService that names them *before* merging, as Istio's ResolveVirtualServiceShortnames
does, so a delegate in another namespace still points at its own services.

Pure: the same snapshot always gives the same rules and the same diagnostics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..api.base import StringMatch
from ..api.hosts import resolve_short_name
from ..api.virtualservice import Destination, HTTPMatchRequest, HTTPRoute, VirtualService
from .visibility import export_set, visible_to

if TYPE_CHECKING:
    from .config import Config
    from .mesh import MeshSnapshot

# HTTPRoute fields a delegate rule inherits from the root rule when it leaves them unset
# (mergeHTTPRoute; redirect and route are deliberately not inherited).
_INHERITED = ("rewrite", "direct_response", "timeout", "retries", "fault", "mirror",
              "mirror_percent", "mirror_percentage", "cors_policy", "mirrors", "headers")


def _resolve_destination(dest: Destination, namespace: str, domain: str) -> Destination:
    return dest.model_copy(update={"host": resolve_short_name(dest.host, namespace, domain)})


def resolve_rule_hosts(rule: HTTPRoute, namespace: str, domain: str) -> HTTPRoute:
    """Destination and mirror hosts as FQDNs of `namespace` (ResolveVirtualServiceShortnames)."""
    update: dict[str, object] = {}
    if rule.route:
        update["route"] = [
            d.model_copy(update={"destination": _resolve_destination(d.destination, namespace,
                                                                     domain)})
            for d in rule.route
        ]
    if rule.mirror is not None:
        update["mirror"] = _resolve_destination(rule.mirror, namespace, domain)
    if rule.mirrors:
        update["mirrors"] = [
            m.model_copy(update={"destination": _resolve_destination(m.destination, namespace,
                                                                     domain)})
            for m in rule.mirrors
        ]
    return rule.model_copy(update=update) if update else rule


def string_match_conflict(root: StringMatch | None, leaf: StringMatch | None) -> bool:
    """stringMatchConflict: the leaf must select a subset of what the root selects."""
    if root is None or leaf is None:
        return False
    if root.regex and (leaf.regex or leaf.prefix or leaf.exact):
        return True
    if leaf.regex and (root.regex or root.prefix or root.exact):
        return True
    if root.exact:
        return bool(leaf.prefix) or leaf.exact != root.exact
    if root.prefix:
        if leaf.prefix:
            return not leaf.prefix.startswith(root.prefix)
        if leaf.exact:
            return not leaf.exact.startswith(root.prefix)
    return True


def has_conflict(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> bool:
    """hasConflict: fields both set must agree, the leaf narrowing the root."""
    for field in ("uri", "scheme", "method", "authority"):
        if string_match_conflict(getattr(root, field), getattr(leaf, field)):
            return True
    for field in ("headers", "without_headers", "query_params"):
        rmap, lmap = getattr(root, field), getattr(leaf, field)
        if any(string_match_conflict(rmap.get(k), v) for k, v in lmap.items()):
            return True
    if root.ignore_uri_case != leaf.ignore_uri_case:
        return True
    if root.port and leaf.port and root.port != leaf.port:
        return True
    if root.source_namespace and leaf.source_namespace != root.source_namespace:
        return True
    if any(k in root.source_labels and root.source_labels[k] != v
           for k, v in leaf.source_labels.items()):
        return True
    if root.gateways and leaf.gateways:
        return len(root.gateways) < len(leaf.gateways) or not set(leaf.gateways) <= set(
            root.gateways)
    return False


def merge_match(root: HTTPMatchRequest, leaf: HTTPMatchRequest) -> HTTPMatchRequest:
    """mergeHTTPMatchRequest: the leaf's fields, the root's where the leaf has none."""
    name = leaf.name
    if not name:
        name = root.name
    elif root.name:
        name = f"{root.name}-{leaf.name}"
    return leaf.model_copy(update={
        "name": name,
        "uri": leaf.uri if leaf.uri is not None else root.uri,
        "scheme": leaf.scheme if leaf.scheme is not None else root.scheme,
        "method": leaf.method if leaf.method is not None else root.method,
        "authority": leaf.authority if leaf.authority is not None else root.authority,
        "headers": {**root.headers, **leaf.headers},
        "without_headers": {**root.without_headers, **leaf.without_headers},
        "query_params": {**root.query_params, **leaf.query_params},
        "port": leaf.port or root.port,
        "source_labels": {**root.source_labels, **leaf.source_labels},
        "source_namespace": leaf.source_namespace or root.source_namespace,
        "gateways": leaf.gateways or root.gateways,
        "stat_prefix": leaf.stat_prefix or root.stat_prefix,
    })


def merge_matches(
    root: list[HTTPMatchRequest], leaf: list[HTTPMatchRequest]
) -> list[HTTPMatchRequest] | None:
    """mergeHTTPMatchRequests; None on conflict (a delegate match no root match admits)."""
    if not root:
        return list(leaf)
    if not leaf:
        return list(root)
    out: list[HTTPMatchRequest] = []
    for sub in leaf:
        found = False
        for r in root:
            if has_conflict(r, sub):
                continue
            out.append(merge_match(r, sub))
            found = True
        if not found:
            return None
    return out or None


def merge_rule(root: HTTPRoute, leaf: HTTPRoute) -> HTTPRoute | None:
    """mergeHTTPRoute: None when the delegate rule's matches conflict with the root's."""
    matches = merge_matches(root.match, leaf.match)
    if matches is None:
        return None
    name = leaf.name
    if not name:
        name = root.name
    elif root.name:
        name = f"{root.name}-{leaf.name}"
    update: dict[str, object] = {"match": matches, "name": name, "delegate": None}
    for field in _INHERITED:
        if getattr(leaf, field) in (None, []):
            update[field] = getattr(root, field)
    return leaf.model_copy(update=update)


def find_delegate(
    snap: MeshSnapshot, root: Config[VirtualService], name: str, namespace: str
) -> Config[VirtualService] | None:
    """The delegate VS (no hosts) by name, visible to the root's namespace (exportTo)."""
    ns = namespace or root.namespace
    default = snap.mesh.default_virtual_service_export_to
    for cfg in snap.virtual_services:
        if cfg.name == name and cfg.namespace == ns and cfg.spec.is_delegate:
            export = export_set(cfg.spec.export_to, cfg.namespace, default)
            return cfg if visible_to(export, root.namespace) else None
    return None


def merged_http_routes(
    snap: MeshSnapshot, root: Config[VirtualService]
) -> tuple[list[HTTPRoute], list[str]]:
    """The root's HTTP rules with delegates expanded, and why any rule was dropped."""
    domain = snap.mesh.domain_suffix
    spec = root.spec
    if not any(rule.delegate is not None for rule in spec.http):
        return list(spec.http), []
    out: list[HTTPRoute] = []
    problems: list[str] = []
    for i, rule in enumerate(spec.http):
        resolved = resolve_rule_hosts(rule, root.namespace, domain)
        if rule.delegate is None:
            out.append(resolved)
            continue
        ns = rule.delegate.namespace or root.namespace
        label = f"{root}: http[{i}]"
        target = find_delegate(snap, root, rule.delegate.name, rule.delegate.namespace)
        if target is None:
            problems.append(f"{label}: delegate VirtualService {ns}/{rule.delegate.name} not "
                            "found or not exported to this namespace; rule ignored")
            continue
        for j, leaf in enumerate(target.spec.http):
            merged = merge_rule(resolved, resolve_rule_hosts(leaf, target.namespace, domain))
            if merged is None:
                problems.append(f"{label}: delegate {target} http[{j}] matches conflict with "
                                "the root's matches; that rule is dropped (as Istio does)")
                continue
            out.append(merged)
    return out, problems
