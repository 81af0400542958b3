"""`meshpilot proxy-config` (alias `pc`): what one Envoy actually runs, as istioctl shows it.

Every table is read from the proxy's own admin API (`/config_dump`, with istioctl's masks;
`/clusters?format=json` for endpoints), never from the control plane: when the two
disagree, the proxy is the truth and the disagreement is the bug to find. `-o json|yaml`
prints the raw Envoy JSON of the selected resources (`all`: the whole dump, EDS included);
`--file` reads a saved dump instead of a live proxy.
"""

from __future__ import annotations

import argparse
from typing import Any

from .admin import DiagnosticsError, ProxyTarget, admin_json, target_from_args
from .clusters_table import (
    ClusterFilter,
    EndpointFilter,
    clusters_table,
    endpoints_table,
    filter_cluster_statuses,
)
from .common import add_proxy_target, dump_structured, guarded, read_json_file
from .configdump import PATHS, bootstrap, clusters, listeners, route_configs, section
from .configdump import SECRETS as SECRETS_SECTION
from .eds_table import eds_table
from .listeners_table import ListenerFilter, listeners_table
from .routes_table import routes_table
from .secrets_table import secrets_table
from .tabwriter import tabulate

OUTPUTS = ("json", "yaml", "short")
# canonical type -> istioctl's aliases
TYPES: dict[str, tuple[str, ...]] = {
    "cluster": ("clusters", "c"),
    "listener": ("listeners", "l"),
    "route": ("routes", "r"),
    "endpoint": ("endpoints", "ep"),
    "secret": ("secrets", "s"),
    "bootstrap": ("b",),
    "all": ("a",),
}


def _cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fqdn", default="", help="filter clusters by substring of Service FQDN")
    p.add_argument("--direction", default="", help="filter clusters by Direction field")
    p.add_argument("--subset", default="", help="filter clusters by substring of Subset field")


def _listener_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--address", default="", help="filter listeners (endpoints) by address")
    p.add_argument("--type", default="", help="filter listeners by type (HTTP, TCP, HTTP+TCP)")


def _verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("--verbose", action=argparse.BooleanOptionalAction, default=True,
                   help="more columns (default; --no-verbose for istioctl's short tables)")


def add_proxy_config_command(sub: argparse._SubParsersAction) -> None:
    pc = sub.add_parser(
        "proxy-config", aliases=["pc"],
        help="show the Envoy config of a proxy (clusters, listeners, routes, endpoints, "
             "secrets, bootstrap), as istioctl proxy-config",
        description="Read what a proxy's Envoy actually runs from its admin API.")
    types = pc.add_subparsers(dest="pc_type", metavar="TYPE", required=True)
    for name, aliases in TYPES.items():
        p = types.add_parser(name, aliases=list(aliases), help=f"{name} config of a proxy")
        add_proxy_target(p, required=False)
        p.add_argument("-o", "--output", choices=OUTPUTS,
                       default="json" if name == "bootstrap" else "short",
                       help="json|yaml (raw Envoy JSON) or short (table)")
        p.add_argument("-f", "--file", metavar="PATH",
                       help="read a saved /config_dump (endpoints: /clusters?format=json) "
                            "instead of asking a live proxy")
        if name in ("cluster", "all"):
            _cluster_flags(p)
        if name in ("cluster", "listener", "endpoint", "all"):
            p.add_argument("--port", type=int, default=0, help="filter by port")
        if name in ("listener", "all"):
            _listener_flags(p)
        elif name == "endpoint":
            p.add_argument("--address", default="", help="filter endpoints by address")
        if name in ("route", "all"):
            p.add_argument("--name", default="", help="filter routes by route config name")
        if name in ("listener", "route", "all"):
            _verbose(p)
        if name in ("endpoint", "all"):
            p.add_argument("--cluster", default="", help="filter endpoints by cluster name")
            p.add_argument("--status", default="", help="filter endpoints by status, e.g. "
                                                       "HEALTHY, UNHEALTHY")
        if name == "all":
            p.add_argument("--with-headers", action="store_true",
                           help="print a header before each section")
        p.set_defaults(func=guarded(proxy_config), pc_kind=name)


def _source(args: argparse.Namespace) -> ProxyTarget | None:
    if args.file:
        return None
    if not args.proxy and not args.admin:
        raise DiagnosticsError(f"proxy-config {args.pc_kind} needs a PROXY (or --admin URL, "
                               "or --file)")
    return target_from_args(args)


def _dump(args: argparse.Namespace, target: ProxyTarget | None, kind: str) -> dict[str, Any]:
    if target is None:
        return read_json_file(args.file)
    return admin_json(target, PATHS[kind])


def _clusters_json(args: argparse.Namespace, target: ProxyTarget | None) -> dict[str, Any]:
    if target is None:
        return read_json_file(args.file)
    return admin_json(target, "/clusters?format=json")


def _filters(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "cluster": ClusterFilter(getattr(args, "fqdn", ""), getattr(args, "port", 0),
                                 getattr(args, "subset", ""), getattr(args, "direction", "")),
        "listener": ListenerFilter(getattr(args, "address", ""), getattr(args, "port", 0),
                                   getattr(args, "type", ""), getattr(args, "verbose", True)),
        "endpoint": EndpointFilter(getattr(args, "address", ""), getattr(args, "port", 0),
                                   getattr(args, "cluster", ""), getattr(args, "status", "")),
    }


def bootstrap_summary(dump: dict[str, Any]) -> str:
    """istioctl's PrintBootstrapSummary: the Envoy build (and who the node is)."""
    node = (bootstrap(dump).get("bootstrap") or {}).get("node") or {}
    build = node.get("user_agent_build_version") or {}
    v = build.get("version") or {}
    meta = build.get("metadata") or {}
    text = f"{v.get('major_number', 0)}.{v.get('minor_number', 0)}.{v.get('patch', 0)}"
    for key, sep in (("build.label", "-"), ("revision.status", "/"), ("build.type", "/"),
                     ("ssl.version", "/")):
        if key in meta:
            text += f"{sep}{meta[key]}"
    rows = [["Node:", str(node.get("id", ""))]] if node.get("id") else []
    rows.append(["Envoy Version:", text])
    return tabulate(rows, padding=1)


def proxy_config(args: argparse.Namespace) -> int:
    kind: str = args.pc_kind
    target = _source(args)
    structured = args.output in ("json", "yaml")
    flt = _filters(args)
    if kind == "endpoint":
        data = _clusters_json(args, target)
        print(dump_structured(filter_cluster_statuses(data, flt["endpoint"]), args.output)
              if structured else endpoints_table(data, flt["endpoint"]))
        return 0
    dump = _dump(args, target, {"cluster": "clusters", "listener": "listeners",
                                "route": "routes", "secret": "secrets",
                                "bootstrap": "bootstrap", "all": "all"}[kind])
    if kind == "all":
        print(dump_structured(dump, args.output) if structured else _all_summary(args, dump))
        return 0
    if kind == "bootstrap":
        print(bootstrap_summary(dump) if args.output == "short"
              else dump_structured(bootstrap(dump), args.output))
        return 0
    if kind == "secret":
        print(secrets_table(dump) if not structured
              else dump_structured(section(dump, SECRETS_SECTION), args.output))
        return 0
    if kind == "cluster":
        items = clusters(dump)
        if structured:
            print(dump_structured([c for c in items
                                   if flt["cluster"].verify(str(c.get("name", "")))],
                                  args.output))
        else:
            print(clusters_table(items, flt["cluster"]))
        return 0
    if kind == "listener":
        items = listeners(dump)
        print(dump_structured([li for li in items if flt["listener"].verify(li)], args.output)
              if structured else listeners_table(items, flt["listener"]))
        return 0
    items = route_configs(dump)
    if structured:
        print(dump_structured([r for r in items if not args.name or r.get("name") == args.name],
                              args.output))
    else:
        print(routes_table(items, args.name, args.verbose))
    return 0


def _all_summary(args: argparse.Namespace, dump: dict[str, Any]) -> str:
    """istioctl's PrintFullSummary: every table with a NAME column of `type/name`."""
    flt = _filters(args)
    parts: list[tuple[str, str]] = [
        ("BOOTSTRAP INFO", bootstrap_summary(dump)),
        ("CLUSTER INFO", clusters_table(clusters(dump), flt["cluster"], include_type=True)),
        ("LISTENER INFO", listeners_table(listeners(dump), flt["listener"], include_type=True)),
        ("ROUTE INFO", routes_table(route_configs(dump), args.name, args.verbose,
                                    include_type=True)),
        ("SECRET INFO", secrets_table(dump, include_type=True)),
        ("ENDPOINTS INFO", eds_table(dump, include_type=True)),
    ]
    blocks = []
    for title, body in parts:
        blocks.append(f"------ {title} ------\n\n{body}" if args.with_headers else body)
    return "\n\n".join(blocks)
