"""kubectl-style output: resource tables with per-kind columns, ages, YAML and JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import yaml

Row = Callable[[dict[str, Any]], str]


def age(timestamp: str | None, now: datetime | None = None) -> str:
    """kubectl's compact age: 45s, 5m, 3h, 2d, 2y (with the next unit while it is small)."""
    if not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    if seconds < 0:
        return "0s"
    if seconds < 120:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 10:
        rest = seconds % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = minutes // 60
    if hours < 8:
        rest = minutes % 60
        return f"{hours}h{rest}m" if rest else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        rest = hours % 24
        return f"{days}d{rest}h" if rest else f"{days}d"
    return f"{days}d" if days < 365 * 2 else f"{days // 365}y"


def _spec(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("spec") or {}


def _json_list(values: Any) -> str:
    return json.dumps(values, separators=(",", ":")) if values else ""


def _service_ports(obj: dict[str, Any]) -> str:
    ports = _spec(obj).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _selector(obj: dict[str, Any]) -> str:
    sel = _spec(obj).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sel.items()) or "<none>"


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("status") or {}


def _canary_weight(obj: dict[str, Any]) -> str:
    """The canary's share of the default route; blank until the controller wrote status."""
    weight = _status(obj).get("canaryWeight")
    return "" if weight is None else str(weight)


def _canary_step_weights(obj: dict[str, Any]) -> str:
    spec = _spec(obj)
    if spec.get("stepWeights"):
        return ",".join(str(w) for w in spec["stepWeights"])
    if spec.get("steps"):
        return ",".join(str(s["setWeight"]) for s in spec["steps"] if "setWeight" in s)
    return str(spec.get("stepWeight", ""))


# Per-kind columns after NAME, like Istio's CRD printer columns and kubectl's built-ins.
COLUMNS: dict[str, list[tuple[str, Row]]] = {
    "VirtualService": [
        ("GATEWAYS", lambda o: _json_list(_spec(o).get("gateways"))),
        ("HOSTS", lambda o: _json_list(_spec(o).get("hosts"))),
    ],
    "DestinationRule": [("HOST", lambda o: str(_spec(o).get("host", "")))],
    "Gateway": [],
    "ServiceEntry": [
        ("HOSTS", lambda o: _json_list(_spec(o).get("hosts"))),
        ("LOCATION", lambda o: str(_spec(o).get("location", ""))),
        ("RESOLUTION", lambda o: str(_spec(o).get("resolution", ""))),
    ],
    "WorkloadEntry": [("ADDRESS", lambda o: str(_spec(o).get("address", "")))],
    "Service": [
        ("TYPE", lambda o: str(_spec(o).get("type", "ClusterIP"))),
        ("CLUSTER-IP", lambda o: str(_spec(o).get("clusterIP") or "<none>")),
        ("PORT(S)", _service_ports),
    ],
    "Secret": [
        ("TYPE", lambda o: str(o.get("type", "Opaque"))),
        ("DATA", lambda o: str(len(o.get("data") or {}))),
    ],
    # Flagger's printer columns for `kubectl get canaries` (status is the controller's).
    "Canary": [
        ("STATUS", lambda o: str(_status(o).get("phase", ""))),
        ("WEIGHT", _canary_weight),
        ("LASTTRANSITIONTIME", lambda o: str(_status(o).get("lastTransitionTime", ""))),
    ],
}
WIDE: dict[str, list[tuple[str, Row]]] = {
    "Service": [("SELECTOR", _selector)],
    "Canary": [
        ("HOST", lambda o: str(_spec(o).get("host", ""))),
        ("FAILEDCHECKS", lambda o: str(_status(o).get("failedChecks", ""))),
        ("INTERVAL", lambda o: str((_spec(o).get("analysis") or {}).get("interval", "1m"))),
        ("STEPWEIGHTS", _canary_step_weights),
        ("MAXWEIGHT", lambda o: str(_spec(o).get("maxWeight", ""))),
        ("VIRTUALSERVICE", lambda o: str(_status(o).get("virtualService")
                                         or _spec(o).get("virtualService", ""))),
    ],
}


def _labels(obj: dict[str, Any]) -> str:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "<none>"


def table(kind: str, objects: list[dict[str, Any]], *, all_namespaces: bool, wide: bool,
          now: datetime | None = None) -> str:
    columns: list[tuple[str, Row]] = [("NAME", lambda o: o["metadata"]["name"])]
    if all_namespaces:
        columns.insert(0, ("NAMESPACE", lambda o: o["metadata"].get("namespace", "")))
    columns += COLUMNS.get(kind, [])
    columns.append(("AGE", lambda o: age(o["metadata"].get("creationTimestamp"), now)))
    if wide:
        columns += [*WIDE.get(kind, []), ("LABELS", _labels)]
    return format_rows([c[0] for c in columns], [[f(o) for _, f in columns] for o in objects])


def format_rows(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    lines = []
    for row in [header, *rows]:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=False)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


def to_yaml(obj: Any) -> str:
    return yaml.safe_dump(obj, sort_keys=False, default_flow_style=False, allow_unicode=True)


def to_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False)
