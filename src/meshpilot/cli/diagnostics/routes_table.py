"""`proxy-config routes`: istioctl's `NAME  VHOST NAME  DOMAINS  MATCH  VIRTUAL SERVICE`,
one row per route, plus a `DESTINATION` column of our own.

Beyond istioctl (whose MATCH shows only the path): the seed routes by header and splits
by weight, and a table that hides both cannot answer "why did my request go to v2?". So
MATCH appends the header and query conditions in parentheses, `/* (canary=true)`, and
DESTINATION shows where the route sends traffic, `v1:90% v2:10%` (subset names when the
cluster is the vhost's own service and port, else the full cluster name). The first five
columns are istioctl's, so istioctl habits and scripts carry over.
"""

from __future__ import annotations

from typing import Any

from .clusters_table import parse_subset_key
from .configdump import istio_config
from .tabwriter import tabulate

PASSTHROUGH = "PassthroughCluster"


def describe_path_match(match: dict[str, Any]) -> str:
    """istioctl's describeMatch: `/prefix*`, `PathPrefix:/x`, the exact path, `regex re`."""
    conds = []
    if match.get("prefix"):
        conds.append(f"{match['prefix']}*")
    if match.get("path_separated_prefix"):
        conds.append(f"PathPrefix:{match['path_separated_prefix']}")
    if match.get("path"):
        conds.append(str(match["path"]))
    if match.get("safe_regex"):
        conds.append(f"regex {match['safe_regex'].get('regex', '')}")
    return " ".join(conds)


def _string_match(name: str, sm: dict[str, Any], invert: bool) -> str:
    eq = "!=" if invert else "="
    if "exact" in sm:
        return f"{name}{eq}{sm['exact']}"
    if "prefix" in sm:
        return f"{name}{eq}{sm['prefix']}*"
    if "suffix" in sm:
        return f"{name}{eq}*{sm['suffix']}"
    if "contains" in sm:
        return f"{name}{eq}*{sm['contains']}*"
    if "safe_regex" in sm:
        return f"{name}{'!~' if invert else '~'}{sm['safe_regex'].get('regex', '')}"
    return name


def describe_header(h: dict[str, Any]) -> str:
    """One header condition, compactly: `version=v2`, `x=pre*`, `ua~.*Chrome.*`,
    `x` (present), `!x` (absent)."""
    name = str(h.get("name", ""))
    invert = bool(h.get("invert_match"))
    if "present_match" in h:
        present = bool(h["present_match"]) != invert
        return name if present else f"!{name}"
    if "string_match" in h:
        return _string_match(name, h["string_match"], invert)
    for legacy in ("exact_match", "prefix_match", "suffix_match", "contains_match"):
        if legacy in h:
            return _string_match(name, {legacy.removesuffix("_match"): h[legacy]}, invert)
    if "safe_regex_match" in h:
        return _string_match(name, {"safe_regex": h["safe_regex_match"]}, invert)
    return name


def describe_match(match: dict[str, Any]) -> str:
    """The path as istioctl prints it, then headers and query parameters in parentheses."""
    path = describe_path_match(match)
    if "connect_matcher" in match:
        path = (path + " CONNECT").strip()
    extra = [describe_header(h) for h in match.get("headers") or []]
    extra += ["?" + describe_header({**q, "name": q.get("name", "")})
              for q in match.get("query_parameters") or []]
    return f"{path} ({', '.join(extra)})" if extra else path


def _pct(weight: int, total: int) -> str:
    value = weight * 100 / total if total else 0
    return f"{value:.0f}%" if abs(value - round(value)) < 0.05 else f"{value:.1f}%"


def _cluster_label(cluster: str, vhost_name: str) -> str:
    parsed = parse_subset_key(cluster)
    if parsed is not None:
        _direction, port, subset, fqdn = parsed
        if subset and vhost_name == f"{fqdn}:{port}":
            return subset
    return cluster


def describe_destination(route: dict[str, Any], vhost_name: str) -> str:
    """Where a route sends traffic: a cluster, weighted clusters, a redirect or a direct
    response."""
    action = route.get("route")
    if action is not None:
        if action.get("cluster"):
            return _cluster_label(str(action["cluster"]), vhost_name)
        weighted = (action.get("weighted_clusters") or {}).get("clusters") or []
        if weighted:
            total = sum(int(w.get("weight", 0)) for w in weighted)
            return " ".join(f"{_cluster_label(str(w.get('name', '')), vhost_name)}:"
                            f"{_pct(int(w.get('weight', 0)), total)}" for w in weighted)
        if action.get("cluster_header"):
            return f"header {action['cluster_header']}"
        return "-"
    if "redirect" in route:
        r = route["redirect"]
        target = (f"{r.get('scheme_redirect', '')}{'://' if r.get('scheme_redirect') else ''}"
                  f"{r.get('host_redirect', '')}{r.get('path_redirect', '')}")
        return f"redirect {target}".strip()
    if "direct_response" in route:
        return f"direct_response {route['direct_response'].get('status', '')}"
    return "-"


def unexpand_domains(domains: list[str]) -> list[str]:
    """istioctl's unexpandDomains: drop `x.svc.cluster.local`/`x.svc` when `x` is there."""
    unique = set(domains)
    drop = set()
    for h in domains:
        for suffix in (".svc.cluster.local", ".svc"):
            stripped = h.removesuffix(suffix)
            if stripped != h and stripped in unique:
                drop.add(h)
    return [h for h in domains if h not in drop]


def describe_domains(domains: list[str]) -> str:
    """istioctl's describeRouteDomains: at most two port-less domains, `+ N more...`."""
    if not domains:
        return ""
    if len(domains) == 1:
        return domains[0]
    without_port = [d for d in domains
                    if ":" not in d or (d.count(":") > 2 and d.endswith("]"))]
    without_port = unexpand_domains(without_port)
    if len(without_port) > 2:
        return f"{', '.join(without_port[:2])} + {len(without_port) - 2} more..."
    return ", ".join(without_port)


def _is_passthrough(route: dict[str, Any]) -> bool:
    return (route.get("route") or {}).get("cluster") == PASSTHROUGH


def _sort_key(rc: dict[str, Any]) -> tuple[int, int, str]:
    name = str(rc.get("name", ""))
    return (0, int(name), "") if name.isdigit() else (1, 0, name)


def route_rows(route_configs: list[dict[str, Any]], name: str = "", verbose: bool = True,
               include_type: bool = False) -> list[list[str]]:
    header = (["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE", "DESTINATION"]
              if verbose else ["NAME", "VIRTUAL HOSTS"])
    rows = [header]
    for rc in sorted(route_configs, key=_sort_key):
        rc_name = str(rc.get("name", ""))
        if name and name != rc_name:
            continue
        shown = f"route/{rc_name}" if include_type else rc_name
        vhosts = rc.get("virtual_hosts") or []
        if not verbose:
            rows.append([shown, str(len(vhosts))])
            continue
        for vh in vhosts:
            vh_name = str(vh.get("name", ""))
            domains = describe_domains([str(d) for d in vh.get("domains") or []])
            for r in vh.get("routes") or []:
                if not _is_passthrough(r):
                    rows.append([shown, vh_name, domains, describe_match(r.get("match") or {}),
                                 istio_config(r.get("metadata")),
                                 describe_destination(r, vh_name)])
            if not vh.get("routes"):
                rows.append([shown, vh_name, domains, "/*", "404", "-"])
    return rows


def routes_table(route_configs: list[dict[str, Any]], name: str = "", verbose: bool = True,
                 include_type: bool = False) -> str:
    return tabulate(route_rows(route_configs, name, verbose, include_type))
