"""Per-proxy xDS status as JSON for the API and `proxy-status` (istioctl's vocabulary)."""

from __future__ import annotations

import time
from typing import Any

from ..xds.server import ProxyStatus
from ..xds.types import SHORT_NAMES


def _ago(then: float | None, now: float) -> float | None:
    return None if then is None else round(now - then, 3)


def proxy_status_json(statuses: list[ProxyStatus], now: float | None = None) -> dict[str, Any]:
    """`{"items": [...]}` with, per proxy and xDS type, SYNCED / STALE / NOT SENT / NACKED."""
    now = time.monotonic() if now is None else now
    items = []
    for st in statuses:
        types: dict[str, Any] = {}
        for type_url, ts in sorted(st.types.items()):
            entry: dict[str, Any] = {
                "state": ts.state,
                "sentVersion": ts.sent_version,
                "sentNonce": ts.sent_nonce,
                "sentSecondsAgo": _ago(ts.sent_time, now),
                "ackedVersion": ts.acked_version,
                "ackedSecondsAgo": _ago(ts.acked_time, now),
                "resources": ts.resources,
            }
            if ts.nack is not None:
                entry["nack"] = {"version": ts.nack.version, "nonce": ts.nack.nonce,
                                 "message": ts.nack.message,
                                 "secondsAgo": _ago(ts.nack.time, now)}
            types[SHORT_NAMES.get(type_url, type_url)] = entry
        item: dict[str, Any] = {
            "name": st.id,
            "type": st.proxy.kind,
            "namespace": st.proxy.namespace,
            "labels": dict(st.proxy.labels),
            "xds": st.mode,
            "peer": st.peer,
            "connected": st.connected,
            "connectedSecondsAgo": _ago(st.connected_since, now),
            "snapshotVersion": st.snapshot_version,
            "types": types,
        }
        if st.error:
            item["error"] = {"message": st.error, "secondsAgo": _ago(st.error_time, now)}
        items.append(item)
    return {"items": items}
