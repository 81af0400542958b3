"""The Grafana dashboard for meshpilot's traffic management, as plain JSON-able data.

It holds the seed tutorial's three panels exactly as written there ("Request Rate by
Version", "Canary Traffic Distribution", "Circuit Breaker Status"; same titles, same
PromQL), translated to the current Grafana schema (`graph` -> `timeseries`, `pie` ->
`piechart`, panels with `gridPos`, a `${datasource}` variable instead of a fixed data
source), plus what Istio's own service dashboard shows: volume, non-5xx success rate,
latency quantiles, 4xx/5xx by code and flags, sizes, TCP traffic, and Envoy's retry,
timeout, circuit-breaker and outlier counters.

Label names are Istio's (`destination_service_name`, `destination_workload_namespace`,
`destination_version`, `reporter`, `response_code`, `response_flags`), so the same JSON
works against meshpilot's `/metrics` and against a real Istio's Prometheus.

Everything here is pure: no I/O, no clock. The CLI (`meshpilot dashboard grafana`)
serialises the result; tests send every expression to a real Prometheus.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import yaml

UID = "meshpilot-traffic"
UID_MAX = 40  # Grafana's limit on dashboard uids
TITLE = "Traffic Management Dashboard"  # the seed's title
SCHEMA_VERSION = 39  # Grafana 10.x/11.x; newer Grafana migrates it on load
DATASOURCE: dict[str, str] = {"type": "prometheus", "uid": "${datasource}"}
GRID_WIDTH = 24

# The Envoy stat tag that carries a cluster's name (`outbound|80|v1|a.ns.svc.cluster.local`).
# Istio's bootstrap names it `cluster_name`; one constant, so a different tag is one edit.
CLUSTER_LABEL = "cluster_name"

# The seed's panels, verbatim (its section "Grafana dashboard").
SEED_RATE_BY_VERSION = "sum(rate(istio_requests_total[5m])) by (destination_version)"
SEED_CIRCUIT_BREAKER = "envoy_cluster_upstream_rq_pending_overflow"
# The seed canary script's `monitor` queries, verbatim with SERVICE_NAME=sample-app and
# CANARY_VERSION=v2 (the demo, `meshpilot query` and the PromQL tests use these).
SEED_SUCCESS_RATE = (
    'sum(rate(istio_requests_total{destination_service_name="sample-app",'
    'destination_version="v2",response_code=~"2.*"}[5m])) / '
    'sum(rate(istio_requests_total{destination_service_name="sample-app",'
    'destination_version="v2"}[5m]))')
SEED_P95 = (
    'histogram_quantile(0.95, sum(rate(istio_request_duration_milliseconds_bucket{'
    'destination_service_name="sample-app",destination_version="v2"}[5m])) by (le))')
SEED_PANELS: tuple[tuple[str, str, str], ...] = (
    ("Request Rate by Version", "timeseries", SEED_RATE_BY_VERSION),
    ("Canary Traffic Distribution", "piechart", SEED_RATE_BY_VERSION),
    ("Circuit Breaker Status", "stat", SEED_CIRCUIT_BREAKER),
)

# `$__rate_interval` is Grafana's own: at least four scrape intervals, so a rate over it
# always has two samples whatever the zoom.
RATE = "[$__rate_interval]"
HTTP_FILTER = ('reporter=~"$reporter", destination_workload_namespace=~"$namespace", '
               'destination_service_name=~"$service", destination_version=~"$version"')
# TCP metrics carry the same labels except response_code and grpc_response_status.
TCP_FILTER = HTTP_FILTER
# Istio's cluster names: outbound|PORT|SUBSET|HOST. With "All" ($service = .*) this
# matches every outbound cluster, ServiceEntry hosts (httpbin.org) included.
CLUSTER_FILTER = (CLUSTER_LABEL + '=~"outbound\\\\|[0-9]+\\\\|[^|]*\\\\|'
                  '$service(\\\\.$namespace\\\\..*)?"')

LATENCY_QUANTILES = (0.5, 0.9, 0.95, 0.99)
SIZE_QUANTILES = (0.5, 0.9, 0.99)


@dataclass(frozen=True)
class Target:
    """One PromQL query of a panel; `instant` for panels that show only the last value."""

    expr: str
    legend: str = ""
    instant: bool = False


@dataclass(frozen=True)
class Panel:
    title: str
    kind: str  # "timeseries" | "piechart" | "stat" | "row"
    targets: Sequence[Target] = ()
    unit: str = "short"
    width: int = 12
    height: int = 8
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    field_defaults: Mapping[str, Any] = field(default_factory=dict)


def _istio(metric: str, extra: str = "", *, by: str = "", filt: str = HTTP_FILTER) -> str:
    """`sum(rate(metric{filter[, extra]}[$__rate_interval])) [by (...)]`."""
    selector = filt + (f", {extra}" if extra else "")
    grouping = f" by ({by})" if by else ""
    return f"sum(rate({metric}{{{selector}}}{RATE})){grouping}"


def _quantile(q: float, metric: str, by: str = "destination_version",
              filt: str = HTTP_FILTER) -> str:
    """Istio's latency/size quantile: buckets summed per `le` (and `by`), then interpolated."""
    grouping = f"le, {by}" if by else "le"
    return (f"histogram_quantile({q}, sum(rate({metric}_bucket{{{filt}}}{RATE})) "
            f"by ({grouping}))")


def _envoy(stat: str, *, rate: bool = True, agg: str = "sum") -> str:
    """A per-cluster Envoy stat over every proxy. Counters are summed (every client's
    retries add up); `agg="max"` for gauges each proxy reports alike (endpoint counts)."""
    inner = f"{stat}{{{CLUSTER_FILTER}}}"
    return f"{agg}({f'rate({inner}{RATE})' if rate else inner}) by ({CLUSTER_LABEL})"


def _pct(q: float) -> str:
    return f"P{round(q * 100):d}"


def _seed_panels() -> list[Panel]:
    (rate_title, _, _), (pie_title, _, _), (cb_title, _, _) = SEED_PANELS
    return [
        Panel("Canary (seed tutorial)", "row"),
        Panel(rate_title, "timeseries",
              [Target(SEED_RATE_BY_VERSION, "{{destination_version}}")],
              unit="reqps", width=12,
              description="Requests per second by destination version, all services, as "
                          "in the tutorial: the canary split made visible."),
        Panel(pie_title, "piechart",
              [Target(SEED_RATE_BY_VERSION, "{{destination_version}}", instant=True)],
              unit="reqps", width=6,
              description="Share of requests per destination version right now; compare "
                          "with the VirtualService weights.",
              options={"pieType": "pie",
                       "reduceOptions": {"calcs": ["lastNotNull"], "fields": "",
                                         "values": False},
                       "legend": {"displayMode": "table", "placement": "right",
                                  "showLegend": True, "values": ["percent"]},
                       "tooltip": {"mode": "single", "sort": "none"}}),
        Panel(cb_title, "stat",
              [Target(SEED_CIRCUIT_BREAKER, f"{{{{pod}}}} {{{{{CLUSTER_LABEL}}}}}")],
              width=6,
              description="Requests Envoy refused because the DestinationRule's "
                          "connectionPool limits were reached (pending queue overflow, "
                          "response flag UO). Any value above 0 means the breaker tripped.",
              field_defaults={"thresholds": {"mode": "absolute", "steps": [
                  {"color": "green", "value": None}, {"color": "red", "value": 1}]}},
              options={"colorMode": "background", "graphMode": "none",
                       "textMode": "value_and_name"}),
    ]


def _overview_panels() -> list[Panel]:
    total = _istio("istio_requests_total")
    ok = _istio("istio_requests_total", 'response_code!~"5.*"')
    return [
        Panel("Service overview", "row"),
        Panel("Request Volume", "stat",
              [Target(f"round({total}, 0.001)", instant=True)],
              unit="reqps", width=6, height=4,
              description="Requests per second to the selected services and versions."),
        Panel("Success Rate (non-5xx)", "stat",
              [Target(f"{ok} / {total}", instant=True)],
              unit="percentunit", width=6, height=4,
              description="Share of requests not answered with a 5xx, Istio's definition.",
              field_defaults={"min": 0, "max": 1, "decimals": 2, "thresholds": {
                  "mode": "absolute", "steps": [{"color": "red", "value": None},
                                                {"color": "yellow", "value": 0.95},
                                                {"color": "green", "value": 0.99}]}}),
        Panel("P95 Request Duration", "stat",
              [Target(_quantile(0.95, "istio_request_duration_milliseconds", by=""),
                      instant=True)],
              unit="ms", width=6, height=4,
              description="95th percentile latency over all selected versions."),
        Panel("5xx Responses", "stat",
              [Target(_istio("istio_requests_total", 'response_code=~"5.*"'), instant=True)],
              unit="reqps", width=6, height=4,
              description="Requests per second answered with a 5xx."),
    ]


def _request_panels() -> list[Panel]:
    ok = _istio("istio_requests_total", 'response_code!~"5.*"', by="destination_version")
    all_ = _istio("istio_requests_total", by="destination_version")
    by_code_flags = "destination_version, response_code, response_flags"
    return [
        Panel("Requests by version", "row"),
        Panel("Success Rate by Version (non-5xx)", "timeseries",
              [Target(f"{ok} / {all_}", "{{destination_version}}")],
              unit="percentunit", width=12,
              description="Per version, the share of requests not answered with a 5xx: "
                          "the number a canary is promoted or rolled back on.",
              field_defaults={"min": 0, "max": 1}),
        Panel("Request Duration by Version", "timeseries",
              [Target(_quantile(q, "istio_request_duration_milliseconds"),
                      f"{{{{destination_version}}}} {_pct(q)}") for q in LATENCY_QUANTILES],
              unit="ms", width=12,
              description="Latency quantiles from istio_request_duration_milliseconds."),
        Panel("4xx Responses by Code and Flags", "timeseries",
              [Target(_istio("istio_requests_total", 'response_code=~"4.*"', by=by_code_flags),
                      "{{destination_version}} {{response_code}} {{response_flags}}")],
              unit="reqps", width=12,
              description="NR: no route matched; FI: fault-injected abort."),
        Panel("5xx Responses by Code and Flags", "timeseries",
              [Target(_istio("istio_requests_total", 'response_code=~"5.*"', by=by_code_flags),
                      "{{destination_version}} {{response_code}} {{response_flags}}")],
              unit="reqps", width=12,
              description="UO: circuit breaker overflow; UH: no healthy upstream (empty "
                          "subset or all ejected); URX: retries exhausted; UT: timeout; "
                          "UF: connection failure."),
        Panel("Requests by Response Code", "timeseries",
              [Target(_istio("istio_requests_total", by="response_code"),
                      "{{response_code}}")],
              unit="reqps", width=12),
        Panel("Response Flags", "timeseries",
              [Target(_istio("istio_requests_total", 'response_flags!="-"',
                             by="destination_version, response_flags"),
                      "{{destination_version}} {{response_flags}}")],
              unit="reqps", width=12,
              description="Every request Envoy flagged (any status): DI delay injected, "
                          "FI abort injected, UO overflow, URX retry limit, UT timeout..."),
    ]


def _size_panels() -> list[Panel]:
    def sizes(metric: str) -> list[Target]:
        return [Target(_quantile(q, metric), f"{{{{destination_version}}}} {_pct(q)}")
                for q in SIZE_QUANTILES]

    return [
        Panel("Request and response size", "row"),
        Panel("Request Size by Version", "timeseries", sizes("istio_request_bytes"),
              unit="bytes", width=8),
        Panel("Response Size by Version", "timeseries", sizes("istio_response_bytes"),
              unit="bytes", width=8),
        Panel("HTTP Bytes Throughput", "timeseries", [
            Target(_istio("istio_request_bytes_sum", by="destination_version"),
                   "{{destination_version}} request"),
            Target(_istio("istio_response_bytes_sum", by="destination_version"),
                   "{{destination_version}} response"),
        ], unit="Bps", width=8),
    ]


def _tcp_panels() -> list[Panel]:
    def tcp(metric: str, legend: str) -> Target:
        return Target(_istio(metric, by="destination_version", filt=TCP_FILTER),
                      f"{{{{destination_version}}}} {legend}")

    return [
        Panel("TCP", "row"),
        Panel("TCP Bytes", "timeseries", [
            tcp("istio_tcp_sent_bytes_total", "sent"),
            tcp("istio_tcp_received_bytes_total", "received"),
        ], unit="Bps", width=12,
              description="Bytes per second through TCP routes (tcp_proxy), per version."),
        Panel("TCP Connections", "timeseries", [
            tcp("istio_tcp_connections_opened_total", "opened"),
            tcp("istio_tcp_connections_closed_total", "closed"),
        ], unit="cps", width=12),
    ]


def _envoy_panels() -> list[Panel]:
    legend = f"{{{{{CLUSTER_LABEL}}}}}"
    return [
        Panel("Envoy resilience (outbound clusters)", "row"),
        Panel("Retries", "timeseries", [
            Target(_envoy("envoy_cluster_upstream_rq_retry"), f"{legend} retry"),
            Target(_envoy("envoy_cluster_upstream_rq_retry_success"), f"{legend} success"),
            Target(_envoy("envoy_cluster_upstream_rq_retry_limit_exceeded"),
                   f"{legend} limit exceeded"),
        ], unit="reqps", width=8,
              description="VirtualService retries: attempts, retries that succeeded, and "
                          "requests that ran out of attempts."),
        Panel("Timeouts", "timeseries", [
            Target(_envoy("envoy_cluster_upstream_rq_timeout"), f"{legend} timeout"),
            Target(_envoy("envoy_cluster_upstream_rq_per_try_timeout"),
                   f"{legend} per-try timeout"),
        ], unit="reqps", width=8,
              description="VirtualService timeout and retries.perTryTimeout firing."),
        Panel("Circuit Breaker Overflows", "timeseries", [
            Target(_envoy("envoy_cluster_upstream_rq_pending_overflow"), f"{legend} pending"),
            Target(_envoy("envoy_cluster_upstream_cx_overflow"), f"{legend} connections"),
            Target(_envoy("envoy_cluster_upstream_rq_retry_overflow"), f"{legend} retries"),
        ], unit="reqps", width=8,
              description="DestinationRule connectionPool limits reached: "
                          "http1MaxPendingRequests, maxConnections, and the retry budget."),
        Panel("Outlier Ejections", "timeseries", [
            Target(_envoy("envoy_cluster_outlier_detection_ejections_enforced_total"),
                   f"{legend} ejections/s"),
            Target(_envoy("envoy_cluster_outlier_detection_ejections_active", rate=False),
                   f"{legend} ejected now"),
        ], width=12,
              description="DestinationRule outlierDetection: ejections per second, and "
                          "hosts out of the load-balancing pool now (summed over clients: "
                          "each client sidecar ejects on its own)."),
        Panel("Healthy Endpoints", "timeseries", [
            Target(_envoy("envoy_cluster_membership_healthy", rate=False, agg="max"),
                   f"{legend} healthy"),
            Target(_envoy("envoy_cluster_membership_total", rate=False, agg="max"),
                   f"{legend} total"),
        ], width=12,
              description="Endpoints per cluster (subset), as the proxies see them; "
                          "healthy counts out hosts that outlier detection ejected."),
    ]


def panels() -> list[Panel]:
    """Every panel, in layout order (rows start sections)."""
    return [*_seed_panels(), *_overview_panels(), *_request_panels(), *_size_panels(),
            *_tcp_panels(), *_envoy_panels()]


def _layout(items: Sequence[Panel]) -> Iterator[tuple[int, Panel, dict[str, int]]]:
    """Pack panels left to right into Grafana's 24-column grid; a row starts a new line."""
    x = y = line_height = 0
    for panel_id, panel in enumerate(items, start=1):
        if panel.kind == "row" or x + panel.width > GRID_WIDTH:
            x, y, line_height = 0, y + line_height, 0
        height = 1 if panel.kind == "row" else panel.height
        yield panel_id, panel, {"h": height, "w": GRID_WIDTH if panel.kind == "row"
                                else panel.width, "x": x, "y": y}
        if panel.kind == "row":
            y += 1
        else:
            x += panel.width
            line_height = max(line_height, height)


def _default_options(kind: str) -> dict[str, Any]:
    if kind == "timeseries":
        return {"legend": {"displayMode": "list", "placement": "bottom", "showLegend": True,
                           "calcs": []},
                "tooltip": {"mode": "multi", "sort": "desc"}}
    if kind == "stat":
        return {"colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                "orientation": "auto", "textMode": "auto",
                "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False}}
    return {}


def _panel_json(panel_id: int, panel: Panel, grid: dict[str, int]) -> dict[str, Any]:
    if panel.kind == "row":
        return {"type": "row", "id": panel_id, "title": panel.title, "collapsed": False,
                "gridPos": grid, "panels": []}
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                              "showPoints": "never", "spanNulls": False}
    defaults.update(panel.field_defaults)
    targets = []
    for index, target in enumerate(panel.targets):
        entry: dict[str, Any] = {"refId": chr(ord("A") + index), "datasource": dict(DATASOURCE),
                                 "expr": target.expr, "range": not target.instant,
                                 "instant": target.instant}
        if target.legend:
            entry["legendFormat"] = target.legend
        targets.append(entry)
    return {
        "type": panel.kind,
        "id": panel_id,
        "title": panel.title,
        "description": panel.description,
        "datasource": dict(DATASOURCE),
        "gridPos": grid,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {**_default_options(panel.kind), **panel.options},
        "targets": targets,
    }


def _current(value: str | None, multi: bool) -> dict[str, Any]:
    """A variable's initial selection: the given value, else All."""
    if value is None:
        return {"selected": True, "text": ["All"], "value": ["$__all"]}
    return {"selected": True, "text": [value] if multi else value,
            "value": [value] if multi else value}


def _query_variable(name: str, label: str, query: str, current: str | None) -> dict[str, Any]:
    return {
        "type": "query", "name": name, "label": label, "datasource": dict(DATASOURCE),
        "definition": query,
        "query": {"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,  # on time-range change: new versions appear as a canary starts
        "includeAll": True, "allValue": ".*", "multi": True, "sort": 1, "regex": "",
        "hide": 0, "options": [], "current": _current(current, multi=True),
    }


def _templating(namespace: str | None, service: str | None) -> list[dict[str, Any]]:
    ns = "destination_workload_namespace"
    svc = "destination_service_name"
    return [
        {"type": "datasource", "name": "datasource", "label": "Data source",
         "query": "prometheus", "regex": "", "refresh": 1, "hide": 0, "current": {}},
        {"type": "custom", "name": "reporter", "label": "Reporter",
         "query": "destination,source", "multi": False, "includeAll": False, "hide": 0,
         "description": "Which proxy's view: the server sidecar (destination) or the "
                        "client sidecar (source); mixing both counts each request twice.",
         "current": _current("destination", multi=False),
         "options": [{"selected": value == "destination", "text": value, "value": value}
                     for value in ("destination", "source")]},
        _query_variable("namespace", "Namespace",
                        f"label_values(istio_requests_total, {ns})", namespace),
        _query_variable("service", "Service",
                        f'label_values(istio_requests_total{{{ns}=~"$namespace"}}, {svc})',
                        service),
        _query_variable("version", "Version",
                        f'label_values(istio_requests_total{{{ns}=~"$namespace", '
                        f'{svc}=~"$service"}}, destination_version)', None),
    ]


def dashboard(*, namespace: str | None = None, service: str | None = None) -> dict[str, Any]:
    """The dashboard JSON (a dict). `namespace`/`service` preselect the template variables;
    the dashboard stays usable for every service (the seed's panels are never filtered)."""
    title = TITLE if service is None else f"{TITLE}: {service}"
    # One uid per preselected service, so per-service copies do not overwrite each other.
    uid = UID if service is None else f"{UID}-{service}"[:UID_MAX]
    return {
        "id": None,
        "uid": uid,
        "title": title,
        "description": "Istio traffic management on meshpilot: canary split, success rate, "
                       "latency, errors, TCP, and Envoy retries/timeouts/circuit breakers.",
        "tags": ["meshpilot", "istio", "traffic-management"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "fiscalYearStartMonth": 0,
        "liveNow": False,
        "refresh": "10s",
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "time": {"from": "now-30m", "to": "now"},
        "timepicker": {},
        "links": [],
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "templating": {"list": _templating(namespace, service)},
        "panels": [_panel_json(i, p, grid) for i, p, grid in _layout(panels())],
    }


def to_json(board: Mapping[str, Any]) -> str:
    return json.dumps(board, indent=2) + "\n"


class _LiteralDumper(yaml.SafeDumper):
    """Multi-line strings as `|` blocks: the embedded JSON stays readable and diffable,
    as in the seed's ConfigMap."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_LiteralDumper.add_representer(str, _str)


def configmap(board: Mapping[str, Any], *, name: str = "traffic-management-dashboard",
              namespace: str = "monitoring",
              key: str = "traffic-dashboard.json") -> dict[str, Any]:
    """The seed's ConfigMap form, picked up by Grafana's dashboard sidecar through the
    `grafana_dashboard: "1"` label. The data holds the dashboard itself, not the seed's
    `{"dashboard": {...}}` wrapper: that wrapper is the HTTP import API's envelope, and a
    provisioned file with it has no top-level title, which Grafana refuses."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace,
                     "labels": {"grafana_dashboard": "1"}},
        "data": {key: to_json(board)},
    }


def to_yaml(obj: Mapping[str, Any]) -> str:
    return yaml.dump(dict(obj), Dumper=_LiteralDumper, sort_keys=False, width=1000)


def expressions(board: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable of `board`."""
    for panel in board.get("panels", []):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} target {target['refId']}", target["expr"]
    for var in board.get("templating", {}).get("list", []):
        if var.get("type") == "query":
            yield f"variable {var['name']!r}", var["query"]["query"]


_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def render(expr: str, values: Mapping[str, str] | None = None) -> str:
    """The PromQL Grafana would send for `expr`: variables substituted (`values`, else
    "All", i.e. `.*`, with `$__rate_interval` = 1m and `$reporter` = destination), and
    a `label_values(selector, label)` variable query turned into the equivalent
    `group by (label) (selector)`. For checking the expressions against Prometheus."""
    chosen = {"__rate_interval": "1m", "__interval": "15s", "__range": "30m",
              "reporter": "destination", **(values or {})}

    def substitute(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return chosen.get(name, ".*")

    query = _LABEL_VALUES.match(expr.strip())
    if query:
        selector = query.group("selector") or "{__name__=~\".+\"}"
        expr = f"group by ({query.group('label')}) ({selector})"
    return _VARIABLE.sub(substitute, expr)
