"""`meshpilot proxy-status [PROXY]`: every connected proxy and, per xDS type, whether it
runs what the control plane last sent (istioctl proxy-status, pre-1.27 / verbose layout).

Cells are `SYNCED (<age of the ACK>)`, `STALE` (sent, not ACKed yet), `NOT SENT`, or
`NACKED (<age>)`; each NACK's Envoy error is printed under the table, because that
message is the one thing a user needs to fix the config. With one PROXY, the control
plane's view is compared with what that Envoy reports in its own config dump, like
istioctl's per-pod `proxy-status` diff (counts and load times: the API does not expose
the generated resources themselves).
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

from .. import output
from ..client import Client
from . import configdump as cd
from .admin import DiagnosticsError, admin_json, resolve_proxy
from .common import add_server, dump_structured, guarded
from .tabwriter import tabulate

PROXIES_PATH = "/apis/meshpilot.io/v1/proxies"
XDS_COLUMNS = ("CDS", "LDS", "EDS", "RDS", "SDS")
_KINDS = (("CDS", "Clusters", cd.CLUSTERS, "dynamic_active_clusters"),
          ("LDS", "Listeners", cd.LISTENERS, "dynamic_listeners"),
          ("RDS", "Routes", cd.ROUTES, "dynamic_route_configs"))


def add_proxy_status_command(sub: argparse._SubParsersAction) -> None:
    ps = sub.add_parser(
        "proxy-status", aliases=["ps"],
        help="per proxy and xDS type: SYNCED, STALE, NOT SENT or NACKED (with Envoy's error)",
        description="Show whether every connected proxy runs the config the control plane "
                    "sent. With PROXY, also compare it with that Envoy's own config dump.")
    ps.add_argument("proxy", nargs="?", metavar="PROXY",
                    help="only proxies whose node id (NAME.NAMESPACE) contains this")
    ps.add_argument("-n", "--namespace", help="only proxies in this namespace")
    ps.add_argument("-o", "--output", choices=["json", "yaml"],
                    help="the control plane's status as JSON or YAML")
    ps.add_argument("-v", "--verbose", action="store_true",
                    help="also xDS variant and connection age; include disconnected proxies")
    add_server(ps)
    ps.set_defaults(func=guarded(proxy_status))


def age(seconds: float | None) -> str:
    """kubectl's compact age (45s, 5m10s, 3h) for a number of seconds ago."""
    if seconds is None:
        return "?"
    now = datetime.now(UTC)
    return output.age((now - timedelta(seconds=seconds)).isoformat(), now)


def xds_cell(entry: dict[str, Any] | None) -> str:
    if entry is None:
        return "NOT SENT"
    state = entry.get("state")
    if state == "SYNCED":
        return f"SYNCED ({age(entry.get('ackedSecondsAgo'))})"
    if state == "NACKED":
        return f"NACKED ({age((entry.get('nack') or {}).get('secondsAgo'))})"
    if state == "STALE":
        return "STALE" if entry.get("ackedVersion") else "STALE (Never Acknowledged)"
    return str(state or "NOT SENT")


def select(items: list[dict[str, Any]], proxy: str | None, namespace: str | None,
           verbose: bool) -> list[dict[str, Any]]:
    """istioctl's filtering: node id contains PROXY (an exact id wins), in -n's namespace."""
    chosen = [i for i in items if (verbose or i.get("connected", True))
              and (not namespace or i.get("namespace") == namespace)]
    if proxy:
        exact = [i for i in chosen if i.get("name") in (proxy, f"{proxy}.{namespace}")]
        chosen = exact or [i for i in chosen if proxy in str(i.get("name", ""))]
    return sorted(chosen, key=lambda i: str(i.get("name", "")))


def status_rows(items: list[dict[str, Any]], istiod: str, version: str,
                verbose: bool = False) -> list[list[str]]:
    header = ["NAME", "TYPE", *(["XDS"] if verbose else []), *XDS_COLUMNS, "ISTIOD", "VERSION"]
    rows = [header + (["CONNECTED"] if verbose else [])]
    for item in items:
        types = item.get("types") or {}
        row = [str(item.get("name", "")), str(item.get("type", ""))]
        if verbose:
            row.append(str(item.get("xds", "")))
        row += [xds_cell(types.get(t)) for t in XDS_COLUMNS]
        row += [istiod, version]
        if verbose:
            row.append(age(item.get("connectedSecondsAgo")) if item.get("connected", True)
                       else "no")
        rows.append(row)
    return rows


def problems(items: list[dict[str, Any]]) -> list[str]:
    """One line per NACKed type (Envoy's own message) and per generation failure."""
    lines = []
    for item in items:
        for short, entry in sorted((item.get("types") or {}).items()):
            nack = entry.get("nack")
            if entry.get("state") == "NACKED" and nack:
                lines.append(f"{item.get('name')} {short} NACKED version "
                             f"{nack.get('version') or '?'} ({age(nack.get('secondsAgo'))} "
                             f"ago): {nack.get('message', '')}")
        error = item.get("error")
        if error:
            lines.append(f"{item.get('name')}: config not generated: {error.get('message')}")
    return lines


def compare(item: dict[str, Any], dump: dict[str, Any]) -> list[str]:
    """Control plane view vs the proxy's config dump, per type (istioctl's diff headline)."""
    lines = []
    types = item.get("types") or {}
    for short, label, section_type, key in _KINDS:
        entry = types.get(short) or {}
        sent = entry.get("resources")
        sec = cd.section(dump, section_type)
        entries = sec.get(key) or []
        if short == "LDS":
            running = sum(1 for e in entries if e.get("active_state"))
            warming = sum(1 for e in entries if e.get("warming_state"))
        else:
            running, warming = len(entries), len(sec.get("dynamic_warming_clusters") or [])
        detail = f"{running} {label.lower()}"
        if short == "RDS":
            loaded = cd.latest_update(dump, section_type, key)
            detail = f"RDS last loaded at {loaded}" if loaded else detail
        if entry.get("state") == "SYNCED" and sent == running and not warming:
            lines.append(f"{label} Match ({detail})")
        else:
            why = f"control plane sent {sent if sent is not None else 0}, Envoy runs {running}"
            if warming:
                why += f" ({warming} warming)"
            if entry.get("state") and entry.get("state") != "SYNCED":
                why += f"; {short} is {entry['state']}"
            lines.append(f"{label} Don't Match: {why}")
    return lines


def proxy_status(args: argparse.Namespace) -> int:
    client = Client(args.server, timeout=10.0)
    items = select(client.get(PROXIES_PATH).get("items") or [], args.proxy, args.namespace,
                   args.verbose)
    if args.output:
        print(dump_structured({"items": items}, args.output))
        return 0
    version = str((client.get("/version") or {}).get("meshpilot", ""))
    istiod = client.server.split("://", 1)[-1]
    print(tabulate(status_rows(items, istiod, version, args.verbose)))
    lines = problems(items)
    if lines:
        print()
        print("\n".join(lines))
    if args.proxy and len(items) == 1 and items[0].get("connected", True):
        name, _, ns = str(items[0]["name"]).partition(".")
        try:
            target = resolve_proxy(client, name, ns)
            dump = admin_json(target, cd.PATHS["all"])
        except DiagnosticsError as e:
            print(f"\n(cannot compare with the proxy's Envoy: {e})")
            return 0
        print()
        print("\n".join(compare(items[0], dump)))
    return 0
