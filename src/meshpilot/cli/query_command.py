"""`meshpilot query 'PROMQL' [--time T] [-o table|json]`: PromQL without a Prometheus.

The seed's canary script asks a Prometheus (`promtool query instant`) for the canary's
success rate and p95. Without one, the control plane answers the same PromQL over the
samples it keeps of its own Istio metrics (telemetry/history.py: every 5 s, the last
15 minutes) through the Prometheus-compatible `GET /api/v1/query`; this command is its
client. `-o json` prints the API's answer unchanged (`.data.result[0].value[1]` is the
number, as with Prometheus); the table puts one label per column, or the whole series
when there are many labels. Exit 1 on any error (bad PromQL, unreachable server).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.parse
from typing import Any

MAX_LABEL_COLUMNS = 6  # more labels than this: one SERIES column instead


def _series(metric: dict[str, str]) -> str:
    name = metric.get("__name__", "")
    labels = ", ".join(f'{k}="{v}"' for k, v in sorted(metric.items()) if k != "__name__")
    return f"{name}{{{labels}}}"


def _label_rows(results: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]] | None:
    """Header and label cells with one column per label name, or None if too many."""
    names = sorted({k for r in results for k in r["metric"]}, key=lambda k: (k != "__name__", k))
    if len(names) > MAX_LABEL_COLUMNS:
        return None
    header = ["NAME" if n == "__name__" else n.upper() for n in names]
    return header, [[r["metric"].get(n, "") for n in names] for r in results]


def render_table(data: dict[str, Any]) -> str:
    """The API's `data` as text: a bare value for scalars, else aligned columns."""
    from .output import format_rows

    kind, result = data["resultType"], data["result"]
    if kind in ("scalar", "string"):
        return str(result[1])
    if not result:
        return ""
    if kind == "matrix":
        rows = [[_series(r["metric"]), value, str(t)] for r in result for t, value in r["values"]]
        return format_rows(["SERIES", "VALUE", "TIMESTAMP"], rows)
    labelled = _label_rows(result)
    if labelled is None:
        return format_rows(["SERIES", "VALUE"],
                           [[_series(r["metric"]), r["value"][1]] for r in result])
    header, cells = labelled
    return format_rows([*header, "VALUE"],
                       [[*row, r["value"][1]] for row, r in zip(cells, result, strict=True)])


def query_command(args: argparse.Namespace) -> int:
    from .client import ApiError, Client

    params = {"query": args.expr}
    if args.time:
        params["time"] = args.time
    try:
        body = Client(args.server).get("/api/v1/query?" + urllib.parse.urlencode(params))
    except ApiError as e:
        if "error" in e.body:  # Prometheus's error shape: errorType and error
            print(f"error: {e.body.get('errorType', 'error')}: {e.body['error']}",
                  file=sys.stderr)
        else:
            print(f"error: {e}", file=sys.stderr)
        return 1
    for warning in body.get("warnings") or []:
        print(f"warning: {warning}", file=sys.stderr)
    if args.output == "json":
        print(json.dumps(body, indent=2))
    else:
        text = render_table(body["data"])
        if text:
            print(text)
    return 0


def add_query_command(sub: argparse._SubParsersAction) -> None:
    """Registers `query`."""
    p = sub.add_parser(
        "query", help="evaluate PromQL over the control plane's recent Istio metrics",
        description="Evaluate an instant PromQL query (as `promtool query instant` would) "
                    "over the samples the control plane keeps of istio_* metrics: every 5 s, "
                    "the last 15 minutes. Supports selectors (=, !=, =~, !~), [range], "
                    "offset, rate/irate/increase/delta, *_over_time, histogram_quantile, "
                    "sum/avg/min/max/count/group/topk/bottomk/quantile/stddev by/without, "
                    "arithmetic, comparisons (bool), and/or/unless with on/ignoring/"
                    "group_left, round/clamp/abs/scalar/vector/time. Envoy's own stats "
                    "(envoy_*) live in the proxies: see `meshpilot stats`.",
        epilog="example: meshpilot query 'sum(rate(istio_requests_total{"
               "destination_version=\"v2\",response_code=~\"2.*\"}[5m])) / "
               "sum(rate(istio_requests_total{destination_version=\"v2\"}[5m]))'")
    p.add_argument("expr", metavar="PROMQL", help="the query")
    p.add_argument("--time", metavar="T",
                   help="evaluation time: Unix seconds or RFC 3339 (default: now)")
    p.add_argument("-o", "--output", choices=["table", "json"], default="table",
                   help="table (default) or the Prometheus HTTP API's JSON")
    p.add_argument("--server", metavar="URL",
                   help="control plane API address (default: $MESHPILOT_SERVER or "
                        "http://127.0.0.1:15014)")
    p.set_defaults(func=query_command)
