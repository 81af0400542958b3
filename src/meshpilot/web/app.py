"""REST API shaped like Kubernetes': the same paths, verbs, list/watch and Status errors.

`create_app` takes the store (and nothing global), so tests can run several control
planes in one process. Store calls run in a worker thread: SQLite's durable commit
waits for the disk, and the event loop must keep serving watches meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .. import __version__
from ..api.errors import InvalidInput, Issue
from ..api.kinds import KindInfo, by_group_plural, by_kind
from ..api.labels import Selector, parse_selector
from ..api.resource import Resource
from ..controlplane.apply import apply_documents, delete_documents, documents_from_json
from ..store import AlreadyExists, Conflict, Gone, NotFound, SqliteStore, StoreError, WatchEvent
from ..telemetry import CONTENT_TYPE as METRICS_CONTENT_TYPE
from ..telemetry import TelemetryCollector
from ..telemetry import render as render_metrics
from .prometheus_sd import prometheus_targets
from .status import error
from .watch import CLOSED, WatchHub

log = logging.getLogger("meshpilot.api")

STORE: web.AppKey[SqliteStore] = web.AppKey("store", SqliteStore)
HUB: web.AppKey[WatchHub] = web.AppKey("hub", WatchHub)
INFO: web.AppKey[dict] = web.AppKey("info", dict)
PROXIES: web.AppKey[Callable[[], dict]] = web.AppKey("proxies")
TELEMETRY: web.AppKey[TelemetryCollector] = web.AppKey("telemetry", TelemetryCollector)
ROLLOUTS: web.AppKey[Any] = web.AppKey("rollouts")
MESHPILOT_API = "/apis/meshpilot.io/v1"
CANARY_ITEM = "/apis/meshpilot.io/v1alpha1/namespaces/{namespace}/canaries/{name}"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class HTTPProblem(Exception):
    def __init__(self, code: int, message: str, causes: list[Issue] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.causes = code, message, causes


@web.middleware
async def _errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except HTTPProblem as p:
        return error(p.code, p.message, p.causes)
    except InvalidInput as e:
        errors = e.errors or e.issues
        first = errors[0].format().removeprefix("error: ") if errors else "invalid input"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        return error(422, first + more, e.issues)
    except NotFound as e:
        return error(404, str(e))
    except (AlreadyExists, Conflict) as e:
        reason = "AlreadyExists" if isinstance(e, AlreadyExists) else "Conflict"
        return error(409, str(e), reason=reason)
    except Gone as e:
        return error(410, str(e))
    except StoreError as e:
        return error(400, str(e))
    except web.HTTPException:
        raise
    except Exception as e:
        log.exception("internal error serving %s %s", request.method, request.path)
        return error(500, f"internal error: {e}")


def _store(request: web.Request) -> SqliteStore:
    return request.app[STORE]


async def _call(request: web.Request, fn: Callable[..., Any], *args: Any, **kw: Any) -> Any:
    return await asyncio.to_thread(fn, *args, **kw)


async def _json(request: web.Request) -> Any:
    try:
        return await request.json(loads=json.loads)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise HTTPProblem(400, f"request body is not valid JSON: {e}") from None


def _kind(request: web.Request) -> KindInfo:
    group = request.match_info.get("group", "")
    version = request.match_info["version"]
    plural = request.match_info["plural"]
    info = by_group_plural(group, plural)
    if info is None or version not in info.versions:
        where = f"{group}/{version}" if group else version
        raise HTTPProblem(404, f"the server does not serve {plural} in {where}")
    return info


def _selector(request: web.Request) -> Selector | None:
    text = request.query.get("labelSelector")
    if not text:
        return None
    try:
        return parse_selector(text)
    except ValueError as e:
        raise HTTPProblem(400, f"invalid labelSelector: {e}") from None


def render(res: Resource) -> dict[str, Any]:
    info = by_kind(res.kind)
    return res.to_dict(body_key=info.body_key if info else "spec")


def _list_body(info: KindInfo, version: str, items: list[Resource], revision: int) -> dict:
    return {
        "apiVersion": f"{info.group}/{version}" if info.group else version,
        "kind": f"{info.kind}List",
        "metadata": {"resourceVersion": str(revision)},
        "items": [render(r) for r in items],
    }


def _is_watch(request: web.Request) -> bool:
    return request.query.get("watch", "").lower() in ("1", "true", "yes")


async def list_resources(request: web.Request) -> web.StreamResponse:
    info = _kind(request)
    namespace = request.match_info.get("namespace")
    selector = _selector(request)
    if _is_watch(request):
        return await _watch(request, info, namespace, selector)
    store = _store(request)

    def snapshot() -> tuple[list[Resource], int]:
        return store.list(kind=info.kind, namespace=namespace, selector=selector), store.revision

    items, revision = await _call(request, snapshot)
    return web.json_response(_list_body(info, request.match_info["version"], items, revision))


async def _watch(
    request: web.Request, info: KindInfo, namespace: str | None, selector: Selector | None
) -> web.StreamResponse:
    store, hub = _store(request), request.app[HUB]
    raw_rv = request.query.get("resourceVersion", "")
    if raw_rv and not raw_rv.isdigit():
        raise HTTPProblem(400, f"resourceVersion {raw_rv!r} must be a number")
    queue = hub.open()
    try:
        if raw_rv and raw_rv != "0":
            since = int(raw_rv)
            backlog = await _call(request, store.events_since, since, kind=info.kind,
                                  namespace=namespace)
        else:
            def current() -> tuple[list[Resource], int]:
                return store.list(kind=info.kind, namespace=namespace), store.revision

            items, since = await _call(request, current)
            backlog = [WatchEvent("ADDED", r, r.resource_version) for r in items]
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        sent = since

        async def send(events: list[WatchEvent], replay: bool) -> None:
            nonlocal sent
            for ev in events:
                if not replay and ev.resource_version <= sent:
                    continue
                res = ev.resource
                if res.kind != info.kind or (namespace and res.namespace != namespace):
                    continue
                if selector is not None and not selector.matches(res.labels):
                    continue
                line = json.dumps({"type": ev.type, "object": render(res)})
                await response.write(line.encode() + b"\n")
            if events:
                sent = max(sent, max(e.resource_version for e in events))

        await send(backlog, replay=True)
        while True:
            batch = await queue.get()
            if batch is CLOSED:
                break
            await send(list(batch), replay=False)
        await response.write_eof()
        return response
    finally:
        hub.close(queue)


async def get_resource(request: web.Request) -> web.Response:
    info = _kind(request)
    ns, name = request.match_info["namespace"], request.match_info["name"]
    res = await _call(request, _store(request).get, info.kind, ns, name)
    if res is None:
        raise NotFound(f'{info.resource_name} "{name}" not found in namespace {ns}')
    return web.json_response(render(res))


def _decode_one(info: KindInfo, obj: Any, namespace: str, name: str | None) -> Resource:
    from ..api.decode import decode

    if isinstance(obj, dict):
        obj.setdefault("kind", info.kind)
        obj.setdefault("apiVersion", info.preferred_api_version)
        if obj.get("kind") != info.kind:
            raise HTTPProblem(400, f"kind {obj.get('kind')!r} does not match {info.plural}")
    decoded = decode(documents_from_json([obj]), namespace=namespace)
    decoded.raise_for_errors()
    if not decoded.resources:
        raise HTTPProblem(400, "the request body holds no resource this endpoint serves")
    res = decoded.resources[0]
    if name is not None and res.name != name:
        raise HTTPProblem(400, f"metadata.name {res.name!r} does not match the URL ({name!r})")
    return res


async def create_resource(request: web.Request) -> web.Response:
    info = _kind(request)
    res = _decode_one(info, await _json(request), request.match_info["namespace"], None)
    created = await _call(request, _store(request).create, res)
    return web.json_response(render(created), status=201)


async def replace_resource(request: web.Request) -> web.Response:
    info = _kind(request)
    res = _decode_one(info, await _json(request), request.match_info["namespace"],
                      request.match_info["name"])
    updated = await _call(request, _store(request).update, res)
    return web.json_response(render(updated))


async def delete_resource(request: web.Request) -> web.Response:
    info = _kind(request)
    ns, name = request.match_info["namespace"], request.match_info["name"]
    rv = request.query.get("resourceVersion", "0")
    deleted = await _call(request, _store(request).delete, info.kind, ns, name,
                          resource_version=int(rv) if rv.isdigit() else 0)
    return web.json_response(render(deleted))


async def get_status(request: web.Request) -> web.Response:
    return await get_resource(request)


async def replace_status(request: web.Request) -> web.Response:
    info = _kind(request)
    body = await _json(request)
    if not isinstance(body, dict) or not isinstance(body.get("status"), dict):
        raise HTTPProblem(400, "the request body must be an object with a status mapping")
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    rv = str(meta.get("resourceVersion", "0"))
    updated = await _call(
        request, _store(request).update_status, info.kind, request.match_info["namespace"],
        request.match_info["name"], body["status"], resource_version=int(rv) if rv.isdigit() else 0,
    )
    return web.json_response(render(updated))


def _batch_args(body: Any) -> tuple[list[Any], str | None]:
    if not isinstance(body, dict) or not isinstance(body.get("objects"), list):
        raise HTTPProblem(400, 'the request body must be {"objects": [...]}')
    namespace = body.get("namespace")
    if namespace is not None and not isinstance(namespace, str):
        raise HTTPProblem(400, "namespace must be a string")
    return body["objects"], namespace


async def apply_batch(request: web.Request) -> web.Response:
    """Create-or-update a batch atomically: meshpilot's `kubectl apply -f` for many objects."""
    body = await _json(request)
    objects, namespace = _batch_args(body)
    docs = documents_from_json(objects, str(body.get("source") or "request"))
    report = await _call(request, apply_documents, _store(request), docs, namespace=namespace,
                         dry_run=bool(body.get("dryRun")))
    return web.json_response(report.to_dict())


async def delete_batch(request: web.Request) -> web.Response:
    body = await _json(request)
    objects, namespace = _batch_args(body)
    docs = documents_from_json(objects, str(body.get("source") or "request"))
    report = await _call(request, delete_documents, _store(request), docs, namespace=namespace,
                         ignore_not_found=bool(body.get("ignoreNotFound")))
    return web.json_response(report.to_dict())


async def list_namespaces(request: web.Request) -> web.Response:
    names = await _call(request, _store(request).namespaces)
    return web.json_response({
        "apiVersion": "v1",
        "kind": "NamespaceList",
        "items": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}}
                  for n in names],
    })


async def healthz(request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def controlplane_info(request: web.Request) -> web.Response:
    """What a proxy needs to join: the xDS address (so MESHPILOT_SERVER is all it needs)."""
    return web.json_response(request.app[INFO])


async def proxies(request: web.Request) -> web.Response:
    """Connected proxies and, per xDS type, what was sent, ACKed or NACKed."""
    source = request.app.get(PROXIES)
    return web.json_response(source() if source else {"items": []})


def _telemetry(request: web.Request) -> TelemetryCollector:
    collector = request.app.get(TELEMETRY)
    if collector is None:
        raise HTTPProblem(404, "this server collects no telemetry")
    return collector


async def metrics(request: web.Request) -> web.Response:
    """Istio's standard metrics (and the access-log pipeline's health) for Prometheus."""
    rollouts = request.app.get(ROLLOUTS)
    extra = [rollouts.metrics_lines] if rollouts is not None else []
    body = render_metrics(_telemetry(request), extra)
    return web.Response(body=body.encode(), headers={"Content-Type": METRICS_CONTENT_TYPE})


async def prometheus_query(request: web.Request) -> web.Response:
    """Prometheus's instant-query API (GET or form POST, as Grafana sends it) over the
    control plane's sample history, so tools can use the control plane as a Prometheus."""
    params = dict(request.query)
    if request.method == "POST":
        params.update({k: str(v) for k, v in (await request.post()).items()})
    status, body = await _telemetry(request).history.api_query(params)
    return web.json_response(body, status=status)


def _query_number(request: web.Request, name: str, default: float, low: float,
                  high: float) -> float:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise HTTPProblem(400, f"{name}={raw!r} is not a number") from None
    if not low <= value <= high:
        raise HTTPProblem(400, f"{name}={raw} must be between {low:g} and {high:g}")
    return value


async def telemetry_window(request: web.Request) -> web.Response:
    """Recent requests to one service (optionally one version): count, non-5xx success
    rate and a latency quantile, over the last `seconds` (the canary analysis inputs)."""
    collector = _telemetry(request)
    service = request.query.get("service", "")
    if not service:
        raise HTTPProblem(400, "query parameter 'service' (destination_service_name) is "
                               "required")
    reporter = request.query.get("reporter", "destination")
    if reporter not in ("source", "destination"):
        raise HTTPProblem(400, f"reporter={reporter!r} must be 'source' or 'destination'")
    summary = collector.window.summary(
        service, version=request.query.get("version") or None,
        namespace=request.query.get("namespace") or None, reporter=reporter,
        seconds=int(_query_number(request, "seconds", 60, 1, 600)),
        quantile=_query_number(request, "quantile", 0.99, 0, 1))
    return web.json_response(summary.to_dict())


def _rollouts(request: web.Request) -> Any:
    controller = request.app.get(ROLLOUTS)
    if controller is None:
        raise HTTPProblem(404, "this server runs no canary controller")
    return controller


async def _rollout_call(call: Awaitable[Any]) -> Any:
    """The controller's ActionError carries the HTTP status to answer with."""
    from ..rollout.controller import ActionError

    try:
        return await call
    except ActionError as e:
        raise HTTPProblem(e.code, e.message) from None


async def canary_action(request: web.Request) -> web.Response:
    """POST .../canaries/NAME/actions/{start,promote,pause,resume,abort,rollback,undo,
    retry,set-weight}: a user's decision, applied by the controller (body e.g.
    {"full": true} for promote, {"weight": 10} for set-weight, {"reason": ...})."""
    body = await _json(request) if request.can_read_body else {}
    if not isinstance(body, dict):
        raise HTTPProblem(400, "the request body must be a JSON object")
    m = request.match_info
    result = await _rollout_call(_rollouts(request).act(m["namespace"], m["name"],
                                                        m["action"], body))
    return web.json_response(result)


async def canary_events(request: web.Request) -> web.Response:
    """GET .../canaries/NAME/events?limit=N: the rollout history (stored event log)."""
    limit = int(_query_number(request, "limit", 50, 1, 1000))
    m = request.match_info
    items = await _rollouts(request).events(m["namespace"], m["name"], limit)
    return web.json_response({"items": items})


async def canary_analysis(request: web.Request) -> web.Response:
    """GET .../canaries/NAME/analysis: run the Canary's checks once, now (changes
    nothing); `meshpilot canary analyze`."""
    m = request.match_info
    result = await _rollout_call(_rollouts(request).analyze(m["namespace"], m["name"]))
    return web.json_response(result)


async def version(request: web.Request) -> web.Response:
    return web.json_response({"meshpilot": __version__, "revision": _store(request).revision})


def create_app(store: SqliteStore, info: dict | None = None,
               proxy_status: Callable[[], dict] | None = None,
               telemetry: TelemetryCollector | None = None,
               rollouts: Any = None) -> web.Application:
    """`info` is served at /apis/meshpilot.io/v1/controlplane (the xDS address...);
    `proxy_status` at /apis/meshpilot.io/v1/proxies; `telemetry` at /metrics and
    /apis/meshpilot.io/v1/telemetry/window; `rollouts` (the canary controller) at
    .../canaries/NAME/{actions/ACTION,events,analysis} and on /metrics."""
    app = web.Application(middlewares=[_errors], client_max_size=16 * 1024 * 1024)
    app[STORE] = store
    app[INFO] = info if info is not None else {}
    if proxy_status is not None:
        app[PROXIES] = proxy_status
    if telemetry is not None:
        app[TELEMETRY] = telemetry
    if rollouts is not None:
        app[ROLLOUTS] = rollouts

    async def start_hub(app: web.Application) -> None:
        app[HUB] = WatchHub(store, asyncio.get_running_loop())

    async def stop_hub(app: web.Application) -> None:
        app[HUB].shutdown()

    app.on_startup.append(start_hub)
    app.on_shutdown.append(stop_hub)
    r = app.router
    r.add_get("/healthz", healthz)
    r.add_get("/readyz", healthz)
    r.add_get("/version", version)
    r.add_post(f"{MESHPILOT_API}/apply", apply_batch)
    r.add_post(f"{MESHPILOT_API}/delete", delete_batch)
    r.add_get(f"{MESHPILOT_API}/controlplane", controlplane_info)
    r.add_get(f"{MESHPILOT_API}/proxies", proxies)
    r.add_get(f"{MESHPILOT_API}/prometheus/targets", prometheus_targets)
    r.add_get("/metrics", metrics)
    r.add_get("/api/v1/query", prometheus_query)  # before /api/{version}/{plural}
    r.add_post("/api/v1/query", prometheus_query)
    r.add_get(f"{MESHPILOT_API}/telemetry/window", telemetry_window)
    r.add_post(CANARY_ITEM + "/actions/{action}", canary_action)
    r.add_get(CANARY_ITEM + "/events", canary_events)
    r.add_get(CANARY_ITEM + "/analysis", canary_analysis)
    r.add_get("/api/v1/namespaces", list_namespaces)
    for root in ("/apis/{group}/{version}", "/api/{version}"):
        coll = root + "/namespaces/{namespace}/{plural}"
        item = coll + "/{name}"
        r.add_get(coll, list_resources)
        r.add_post(coll, create_resource)
        r.add_get(item, get_resource)
        r.add_put(item, replace_resource)
        r.add_delete(item, delete_resource)
        r.add_get(item + "/status", get_status)
        r.add_put(item + "/status", replace_status)
        r.add_get(root + "/{plural}", list_resources)
    return app
