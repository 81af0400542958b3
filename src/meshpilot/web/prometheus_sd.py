"""Prometheus HTTP service discovery of every running proxy's Envoy stats.

Istio gets Envoy scraped through Kubernetes pod discovery (`prometheus.io/*` annotations,
port 15090). Without Kubernetes the mesh's own registry is the inventory: each running
sidecar or gateway registers a WorkloadEntry that carries its Envoy admin port in the
`meshpilot.io/admin-port` annotation. This module turns those entries into Prometheus's
`http_sd_configs` format, one target group per proxy, labelled the way Istio's pod
discovery would label them (`namespace`, `pod`, `app`, `version`), so Envoy's
`/stats/prometheus` series can be joined with the istio_* metrics by the same names.

The admin listener binds 127.0.0.1 (see proxy/bootstrap.py), so the targets are only
reachable by a Prometheus on the same host as the proxies, which is the standalone
deployment this serves; in Kubernetes, pod discovery replaces it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import Any

from aiohttp import web

from ..api.resource import Resource

ANNOTATION_PREFIX = "meshpilot.io/"  # the same prefix proxy/registration.py writes
ADMIN_PORT = ANNOTATION_PREFIX + "admin-port"
PROXY_TYPE = ANNOTATION_PREFIX + "proxy-type"
METRICS_PATH = "/stats/prometheus"
ADMIN_HOST = "127.0.0.1"  # where every proxy's Envoy admin listens (bootstrap.py)

# Istio's canonical-name rules (pkg/model/labels): the app/version a workload reports.
APP_LABELS = ("app", "app.kubernetes.io/name", "service.istio.io/canonical-name")
VERSION_LABELS = ("version", "app.kubernetes.io/version",
                  "service.istio.io/canonical-revision")

WorkloadEntryLike = Resource | Mapping[str, Any]


def _fields(entry: WorkloadEntryLike) -> tuple[str, str, dict[str, str], dict[str, str]]:
    """(namespace, name, workload labels, annotations) from a stored Resource or from the
    Kubernetes-shaped JSON the REST API returns: SD is needed on both sides of the API."""
    if isinstance(entry, Resource):
        labels = entry.body.get("labels") or entry.labels
        return entry.namespace, entry.name, dict(labels or {}), dict(entry.annotations)
    meta = entry.get("metadata") or {}
    spec = entry.get("spec") or {}
    labels = spec.get("labels") or meta.get("labels") or {}
    return (str(meta.get("namespace") or "default"), str(meta.get("name") or ""),
            dict(labels), dict(meta.get("annotations") or {}))


def _first(labels: Mapping[str, str], keys: Iterable[str]) -> str | None:
    return next((str(labels[k]) for k in keys if labels.get(k)), None)


def _admin_port(annotations: Mapping[str, str]) -> int | None:
    text = str(annotations.get(ADMIN_PORT, "")).strip()
    return int(text) if text.isdigit() and 0 < int(text) < 65536 else None


def target_group(entry: WorkloadEntryLike) -> dict[str, Any] | None:
    """The SD target group for one WorkloadEntry, or None when it names no Envoy admin port
    (a hand-written entry for a VM or an external endpoint: nothing of ours to scrape)."""
    namespace, name, labels, annotations = _fields(entry)
    port = _admin_port(annotations)
    if port is None or not name:
        return None
    out = {"namespace": namespace, "pod": name}
    if app := _first(labels, APP_LABELS):
        out["app"] = app
    if version := _first(labels, VERSION_LABELS):
        out["version"] = version
    if proxy_type := annotations.get(PROXY_TYPE):
        out["proxy_type"] = str(proxy_type)
    out["__metrics_path__"] = METRICS_PATH
    return {"targets": [f"{ADMIN_HOST}:{port}"], "labels": out}


def sd_targets(entries: Iterable[WorkloadEntryLike]) -> list[dict[str, Any]]:
    """Prometheus HTTP SD JSON for every proxy among `entries`, sorted (namespace, pod) so
    the answer is stable and Prometheus sees no spurious target churn between refreshes.

    Entries of a proxy that died without deregistering stay listed: Prometheus then
    reports `up == 0` for it, which is the signal an operator wants.
    """
    groups = [g for g in (target_group(e) for e in entries) if g is not None]
    groups.sort(key=lambda g: (g["labels"]["namespace"], g["labels"]["pod"]))
    return groups


async def prometheus_targets(request: web.Request) -> web.Response:
    """GET /apis/meshpilot.io/v1/prometheus/targets[?namespace=NS]: the SD document.

    The store is read in a worker thread (as every handler in web/app.py does): a SQLite
    read must not stall watches served by the same event loop.
    """
    from .app import STORE  # here, not at the top: web/app.py imports this module

    store = request.app[STORE]
    namespace = request.query.get("namespace") or None
    entries = await asyncio.to_thread(store.list, kind="WorkloadEntry", namespace=namespace)
    return web.json_response(sd_targets(entries))
