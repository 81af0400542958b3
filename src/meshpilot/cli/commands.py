"""What each `meshpilot` sub-command does. Messages and output follow kubectl's."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from .. import __version__
from ..api.decode import Decoded, decode
from ..api.errors import InvalidInput, Issue
from ..api.kinds import KINDS, KindInfo, lookup
from ..api.load import Document, read_paths
from . import output
from .client import ApiError, Client

MESHPILOT_API = "/apis/meshpilot.io/v1"


def err(text: str) -> None:
    print(text, file=sys.stderr)


def _print_issues(issues: list[Issue]) -> None:
    for issue in issues:
        text = issue.format()
        if issue.severity == "warning":
            text = "Warning: " + text.removeprefix("warning: ")
        err(text)


def _load(args: argparse.Namespace) -> tuple[Decoded, list[Document]] | None:
    """Read and validate files locally, so errors carry file names and line numbers."""
    try:
        docs = read_paths(args.filename)
    except InvalidInput as e:
        _print_issues(e.issues)
        return None
    decoded = decode(docs, namespace=args.namespace)
    _print_issues(decoded.skipped)
    if decoded.errors:
        _print_issues(decoded.errors + decoded.warnings)
        count = len(decoded.errors)
        err(f"{count} error{'s' if count > 1 else ''}: nothing was applied")
        return None
    return decoded, docs


def _server_issue(cause: dict[str, Any], origins: list[Document]) -> Issue:
    """A server-side cause, located back in the user's file through the document number."""
    path = tuple(int(p) if p.isdigit() else p for p in _split_field(cause.get("field", "")))
    issue = Issue(path, str(cause.get("message", "")), hint=cause.get("hint"),
                  severity=cause.get("severity", "error"), resource=cause.get("resource"))
    index = cause.get("document")
    if isinstance(index, int) and 1 <= index <= len(origins):
        doc = origins[index - 1]
        return doc.locate(issue.located(path=path[len(doc.prefix):]), issue.resource)
    return issue


def _split_field(text: str) -> list[str]:
    parts: list[str] = []
    for chunk in text.replace("]", "").split("."):
        parts += [p for p in chunk.split("[") if p]
    return parts


def _report_api_error(e: ApiError, origins: list[Document] | None = None) -> int:
    if e.code == 0:
        err(f"error: {e}")
        return 1
    if e.causes and origins is not None:
        _print_issues([_server_issue(c, origins) for c in e.causes])
        err("nothing was applied")
    else:
        err(f"Error from server ({e.reason or e.code}): {e}")
    return 1


def apply(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 1
    decoded, _ = loaded
    _print_issues(decoded.warnings)
    if not decoded.resources:
        if decoded.skipped:
            return 0
        err("error: no objects passed to apply")
        return 1
    body = {"objects": [d.data for d in decoded.origins], "namespace": args.namespace,
            "dryRun": args.dry_run, "source": "cli"}
    try:
        report = Client(args.server).post(f"{MESHPILOT_API}/apply", body)
    except ApiError as e:
        return _report_api_error(e, decoded.origins)
    _print_issues([_server_issue(w, decoded.origins) for w in report.get("warnings", [])
                   if not _is_local_warning(w, decoded)])
    suffix = " (dry run)" if args.dry_run else ""
    for r in report["results"]:
        print(f"{r['resource']}/{r['name']} {r['action']}{suffix}")
    return 0


def _is_local_warning(cause: dict[str, Any], decoded: Decoded) -> bool:
    """Validation warnings were already printed locally; the server repeats them."""
    return any(w.message == cause.get("message") for w in decoded.warnings)


def validate(args: argparse.Namespace) -> int:
    loaded = _load(args)
    if loaded is None:
        return 1
    decoded, _ = loaded
    _print_issues(decoded.warnings)
    for res in decoded.resources:
        info = lookup(res.kind)
        name = info.resource_name if info else res.kind.lower()
        print(f"{name}/{res.name} valid ({res.namespace})")
    return 0


def _kinds(text: str) -> list[KindInfo] | None:
    if text.lower() == "all":
        return list(KINDS)
    infos = []
    for part in text.split(","):
        info = lookup(part.strip())
        if info is None:
            err(f'error: the server doesn\'t have a resource type "{part}"')
            return None
        infos.append(info)
    return infos


def _query(args: argparse.Namespace) -> str:
    return f"?labelSelector={_quote(args.selector)}" if args.selector else ""


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def get(args: argparse.Namespace) -> int:
    infos = _kinds(args.kind)
    if infos is None:
        return 1
    client = Client(args.server)
    namespace = None if args.all_namespaces else (args.namespace or "default")
    objects: list[tuple[KindInfo, dict[str, Any]]] = []
    try:
        for info in infos:
            if args.names:
                path = info.collection_path(namespace=namespace or "default")
                objects += [(info, client.get(f"{path}/{name}")) for name in args.names]
            else:
                listing = client.get(info.collection_path(namespace=namespace) + _query(args))
                objects += [(info, item) for item in listing["items"]]
    except ApiError as e:
        return _report_api_error(e)
    fmt = args.output
    if fmt in ("yaml", "json"):
        items = [o for _, o in objects]
        doc = items[0] if args.names and len(items) == 1 else {
            "apiVersion": "v1", "kind": "List", "items": items}
        print(output.to_yaml(doc) if fmt == "yaml" else output.to_json(doc) + "\n", end="")
    elif fmt == "name":
        for info, obj in objects:
            print(f"{info.resource_name}/{obj['metadata']['name']}")
    elif not objects:
        where = "" if namespace is None else f" in {namespace} namespace"
        err(f"No resources found{where}.")
    else:
        blocks = []
        for info in infos:
            mine = [o for i, o in objects if i is info]
            if mine:
                text = output.table(info.kind, mine, all_namespaces=namespace is None,
                                    wide=fmt == "wide")
                blocks.append(text)
        print("\n\n".join(blocks))
    if args.watch:
        return _watch(client, infos, namespace, args)
    return 0


def _watch(client: Client, infos: list[KindInfo], namespace: str | None,
           args: argparse.Namespace) -> int:
    if len(infos) != 1:
        err("error: watch is only supported on one kind at a time")
        return 1
    info = infos[0]
    listing = client.get(info.collection_path(namespace=namespace) + _query(args))
    rv = listing["metadata"]["resourceVersion"]
    sep = "&" if args.selector else "?"
    path = info.collection_path(namespace=namespace) + _query(args) + f"{sep}resourceVersion={rv}"
    try:
        for event in client.watch(path):
            obj = event["object"]
            text = output.table(info.kind, [obj], all_namespaces=namespace is None,
                                wide=args.output == "wide").splitlines()[-1]
            print(f"{event['type']:<9} {text}", flush=True)
    except ApiError as e:
        return _report_api_error(e)
    return 0


def delete(args: argparse.Namespace) -> int:
    client = Client(args.server)
    if args.filename:
        if args.kind:
            err("error: give either -f PATH or KIND NAME, not both")
            return 1
        loaded = _load(args)
        if loaded is None:
            return 1
        decoded, _ = loaded
        body = {"objects": [d.data for d in decoded.origins], "namespace": args.namespace,
                "ignoreNotFound": args.ignore_not_found}
        try:
            report = client.post(f"{MESHPILOT_API}/delete", body)
        except ApiError as e:
            return _report_api_error(e, decoded.origins)
        for r in report["results"]:
            print(f'{r["resource"]} "{r["name"]}" deleted')
        return 0
    if args.kind and args.kind.lower() in ("namespace", "namespaces", "ns"):
        # kubectl's cleanup: every object of the namespace, and its processes here.
        from .down_command import delete_namespaces

        return delete_namespaces(args)
    if not args.kind or not args.names:
        err("error: give -f PATH, or KIND and at least one NAME (e.g. delete vs sample-app)")
        return 1
    infos = _kinds(args.kind)
    if infos is None:
        return 1
    info, code = infos[0], 0
    namespace = args.namespace or "default"
    for name in args.names:
        try:
            client.delete(f"{info.collection_path(namespace=namespace)}/{name}")
            print(f'{info.resource_name} "{name}" deleted')
        except ApiError as e:
            if e.code == 404 and args.ignore_not_found:
                continue
            code = _report_api_error(e)
    return code


def version(args: argparse.Namespace) -> int:
    print(f"client: meshpilot {__version__}")
    try:
        info = Client(args.server).get("/version")
    except ApiError as e:
        return _report_api_error(e)
    print(f"server: meshpilot {info['meshpilot']} (revision {info['revision']})")
    return 0


def demo(args: argparse.Namespace) -> int:
    from ..demo.walkthrough import run

    return run(Path(args.state).resolve(), args.api_port, args.xds_port, args.client_port)


def mesh_settings(args: argparse.Namespace) -> Any:
    """The MeshConfig `up` runs with: Istio's defaults, then `--mesh-config FILE`, then
    `--outbound-traffic-policy` (a flag beats the file, as istiod's flags beat its mesh
    config). Raises MeshConfigError naming the file and field."""
    import dataclasses

    from ..controlplane.meshconfig import load_mesh_config
    from ..snapshot.mesh import MeshConfig

    mesh = MeshConfig()
    if getattr(args, "mesh_config", None):
        mesh = load_mesh_config(Path(args.mesh_config), mesh)
    if getattr(args, "outbound_traffic_policy", None):
        mesh = dataclasses.replace(mesh, outbound_traffic_policy=args.outbound_traffic_policy)
    return mesh


def up(args: argparse.Namespace) -> int:
    from ..controlplane.apply import apply_documents
    from ..controlplane.meshconfig import MeshConfigError
    from ..controlplane.server import ControlPlane, Settings, StateDirBusy, default_state_dir

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s", stream=sys.stderr)
    try:
        mesh = mesh_settings(args)
    except MeshConfigError as e:
        err(f"error: {e}")
        return 1
    state = Path(args.state) if args.state else default_state_dir()
    plane = ControlPlane(Settings(state, args.api_host, args.api_port, args.xds_host,
                                  args.xds_port, args.debounce_after, args.debounce_max,
                                  mesh=mesh))
    try:
        store = plane.open_store()
    except StateDirBusy as e:
        err(f"error: {e}")
        return 1
    if args.filename:
        loaded = _load(args)
        if loaded is None:
            asyncio.run(plane.stop())
            return 1
        _, docs = loaded
        report = apply_documents(store, docs, namespace=args.namespace)
        _print_issues(report.warnings)
        for o in report.outcomes:
            d = o.to_dict()
            print(f"{d['resource']}/{d['name']} {d['action']}", flush=True)
    return asyncio.run(_serve(plane))


async def _serve(plane: Any) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await plane.serve_forever(stop)
    except OSError as e:
        err(f"error: cannot start the API server: {e}")
        await plane.stop()
        return 1
    return 0

