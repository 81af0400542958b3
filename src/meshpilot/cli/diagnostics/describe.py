"""`meshpilot describe service NAME [-n NS]` (istioctl x describe, for a service): its ports
and workloads, every VirtualService and DestinationRule that touches it and which of them
sidecars use, the gateways that expose it, the effective routes in order, and the live
health of its endpoints per subset as a connected sidecar's Envoy sees them.
"""

from __future__ import annotations

import argparse
from typing import Any

from ...api.kinds import by_kind
from ...registry import ServiceInstance
from ..client import Client
from .admin import DiagnosticsError, admin_json, resolve_proxy
from .clusters_table import (
    endpoint_address,
    endpoint_port,
    health_status,
    outlier_check,
    parse_subset_key,
)
from .common import add_server, guarded
from .describe_model import INDENT, KINDS, MeshView, describe_service_text, find_services
from .proxy_status import PROXIES_PATH
from .tabwriter import tabulate


def add_describe_command(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("describe", help="explain how the mesh treats a service "
                                        "(istioctl x describe)")
    kinds = d.add_subparsers(dest="describe_kind", metavar="KIND", required=True)
    svc = kinds.add_parser("service", aliases=["svc"],
                           help="a Service or ServiceEntry: routes, policies, endpoints")
    svc.add_argument("name", metavar="NAME", help="service name, ServiceEntry name or host")
    svc.add_argument("-n", "--namespace", default="default",
                     help="namespace (default: default)")
    add_server(svc)
    svc.set_defaults(func=guarded(describe_service))


def fetch_objects(client: Client) -> list[dict[str, Any]]:
    objects: list[dict[str, Any]] = []
    for kind in KINDS:
        info = by_kind(kind)
        assert info is not None
        objects += client.get(info.collection_path()).get("items") or []
    return objects


def _live_sidecar(client: Client, svc: ServiceInstance) -> dict[str, Any] | None:
    """A connected sidecar to ask, preferring a client of the service (not one of its own
    workloads) in the service's namespace: that is the view callers get."""
    own = {f"{e.workload}.{e.namespace}" for e in svc.endpoints}
    items = [i for i in client.get(PROXIES_PATH).get("items") or []
             if i.get("connected", True) and i.get("type") == "sidecar"]
    items.sort(key=lambda i: (i.get("namespace") != svc.namespace, i.get("name") in own,
                              str(i.get("name", ""))))
    return items[0] if items else None


def live_endpoint_lines(clusters_json: dict[str, Any], svc: ServiceInstance) -> list[str]:
    rows = [["SUBSET", "PORT", "ENDPOINT", "STATUS", "OUTLIER CHECK"]]
    for status in clusters_json.get("cluster_statuses") or []:
        parsed = parse_subset_key(str(status.get("name", "")))
        if parsed is None or parsed[0] != "outbound" or parsed[3] != svc.hostname:
            continue
        for host in status.get("host_statuses") or []:
            rows.append([parsed[2] or "-", str(parsed[1]),
                         f"{endpoint_address(host)}:{endpoint_port(host)}",
                         health_status(host), outlier_check(host)])
    rows[1:] = sorted(rows[1:], key=lambda r: (r[0] != "-", r[0], r[1], r[2]))
    if len(rows) == 1:
        return [f"{INDENT}(the sidecar has no outbound cluster for {svc.hostname})"]
    return [INDENT + line for line in tabulate(rows, padding=3).splitlines()]


def describe_service(args: argparse.Namespace) -> int:
    client = Client(args.server, timeout=10.0)
    view = MeshView.build(fetch_objects(client))
    services = find_services(view, args.name, args.namespace)
    if not services:
        raise DiagnosticsError(f'service "{args.name}" not found in namespace '
                               f"{args.namespace} (no Service, ServiceEntry or host of that "
                               "name)")
    for i, svc in enumerate(services):
        if i:
            print("\n" + "-" * 60 + "\n")
        print(describe_service_text(view, svc))
        print()
        sidecar = _live_sidecar(client, svc)
        if sidecar is None:
            print(f"Endpoints (live):\n{INDENT}no connected sidecar to ask")
            continue
        name, _, ns = str(sidecar["name"]).partition(".")
        try:
            data = admin_json(resolve_proxy(client, name, ns), "/clusters?format=json")
        except DiagnosticsError as e:
            print(f"Endpoints (live):\n{INDENT}cannot ask sidecar {sidecar['name']}: {e}")
            continue
        print(f"Endpoints (live, as sidecar {sidecar['name']} sees them):")
        print("\n".join(live_endpoint_lines(data, svc)))
    return 0
