"""The Grafana dashboard: valid modern-schema JSON, the seed's panels verbatim, Istio's
label names, and a layout and variables Grafana accepts. (Whether each expression parses
as PromQL is proven against a real Prometheus in tests/e2e/test_dashboard.py.)"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
import yaml

from meshpilot.telemetry import grafana

SEED_TITLES = {"Request Rate by Version": "timeseries",
               "Canary Traffic Distribution": "piechart",
               "Circuit Breaker Status": "stat"}
SEED_EXPR = "sum(rate(istio_requests_total[5m])) by (destination_version)"
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range"}


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    # Through JSON and back: what Grafana reads is the serialised text.
    return json.loads(grafana.to_json(grafana.dashboard()))


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in board["panels"] if p["type"] != "row"]


def all_exprs(board: dict[str, Any]) -> list[str]:
    return [expr for _, expr in grafana.expressions(board)]


def test_modern_schema_top_level(board: dict[str, Any]) -> None:
    assert board["uid"] == "meshpilot-traffic" and len(board["uid"]) <= 40
    assert board["title"] == "Traffic Management Dashboard"
    assert isinstance(board["schemaVersion"], int) and board["schemaVersion"] >= 36
    assert "rows" not in board  # the pre-5.0 layout
    assert {p["type"] for p in board["panels"]} <= {"row", "timeseries", "piechart", "stat"}


def test_datasource_is_a_prometheus_variable_used_by_every_panel_and_target(
        board: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    want = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(board):
        assert panel["datasource"] == want, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == want, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_seed_panels_verbatim(board: dict[str, Any]) -> None:
    by_title = {p["title"]: p for p in board["panels"]}
    for title, kind in SEED_TITLES.items():
        assert by_title[title]["type"] == kind
    rate = by_title["Request Rate by Version"]["targets"]
    assert [(t["expr"], t["legendFormat"]) for t in rate] == [
        (SEED_EXPR, "{{destination_version}}")]
    assert [t["expr"] for t in by_title["Canary Traffic Distribution"]["targets"]] == [SEED_EXPR]
    assert [t["expr"] for t in by_title["Circuit Breaker Status"]["targets"]] == [
        "envoy_cluster_upstream_rq_pending_overflow"]


def test_ids_unique_and_refids_unique_per_panel(board: dict[str, Any]) -> None:
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels(board):
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_grid_inside_24_columns_without_overlap(board: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        g = panel["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, panel["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                 for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def _balanced(expr: str) -> bool:
    """Brackets balance outside string literals and every string is closed."""
    pairs, stack, quoted, escaped = {")": "(", "]": "[", "}": "{"}, [], False, False
    for ch in expr:
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif ch == '"':
            quoted = True
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack and not quoted


def test_every_expression_is_well_formed_and_uses_only_defined_variables(
        board: dict[str, Any]) -> None:
    defined = {v["name"] for v in board["templating"]["list"]} | GRAFANA_BUILTINS
    for where, expr in grafana.expressions(board):
        assert _balanced(expr), where
        used = set(re.findall(r"\$\{?(\w+)", expr))
        assert used <= defined, f"{where}: undefined {used - defined}"


def _label_names(expr: str) -> set[str]:
    """Label names an expression selects on, groups by, or asks label_values for."""
    names = set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr))
    for grouping in re.findall(r"by \(([^)]*)\)", expr):
        names |= {n.strip() for n in grouping.split(",")}
    if expr.startswith("label_values("):
        names.add(expr.rstrip(")").rsplit(",", 1)[-1].strip())
    return names


def test_istio_label_names_exactly(board: dict[str, Any]) -> None:
    text = "\n".join(all_exprs(board))
    for label in ("destination_service_name", "destination_workload_namespace",
                  "destination_version", "reporter", "response_code", "response_flags"):
        assert label in text, label
    # Every label is one of Istio's standard ones (the telemetry package's list), or `le`,
    # or the Envoy cluster tag.
    model = pytest.importorskip("meshpilot.telemetry.model")
    istio_labels = set(getattr(model, "HTTP_LABELS", ()))
    if not istio_labels:
        pytest.skip("meshpilot.telemetry.model has no HTTP_LABELS yet")
    known = istio_labels | {"le", grafana.CLUSTER_LABEL}
    for where, expr in grafana.expressions(board):
        assert _label_names(expr) <= known, f"{where}: {_label_names(expr) - known}"


def test_istio_service_dashboard_essentials_present(board: dict[str, Any]) -> None:
    text = "\n".join(all_exprs(board))
    for q in ("0.5", "0.9", "0.95", "0.99"):
        assert (f"histogram_quantile({q}, sum(rate(istio_request_duration_milliseconds_bucket"
                in text), q
    for metric in ("istio_request_bytes_bucket", "istio_response_bytes_bucket",
                   "istio_tcp_sent_bytes_total", "istio_tcp_received_bytes_total",
                   "istio_tcp_connections_opened_total", "istio_tcp_connections_closed_total",
                   "envoy_cluster_upstream_rq_retry{", "envoy_cluster_upstream_rq_timeout{",
                   "envoy_cluster_outlier_detection_ejections_enforced_total",
                   'response_code!~"5.*"', 'response_code=~"4.*"', 'response_code=~"5.*"'):
        assert metric in text, metric
    titles = {p["title"] for p in panels(board)}
    assert {"Request Volume", "Success Rate (non-5xx)", "Success Rate by Version (non-5xx)",
            "Request Duration by Version", "Retries", "Timeouts",
            "Outlier Ejections"} <= titles


def test_template_variables_chain_namespace_service_version(board: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["namespace"]["query"]["query"] == (
        "label_values(istio_requests_total, destination_workload_namespace)")
    assert '$namespace' in variables["service"]["query"]["query"]
    assert '$service' in variables["version"]["query"]["query"]
    for name in ("namespace", "service", "version"):
        var = variables[name]
        assert var["type"] == "query" and var["includeAll"] and var["allValue"] == ".*"
        assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert var["current"]["value"] == ["$__all"]
    assert variables["reporter"]["current"]["value"] == "destination"


def test_namespace_and_service_preselect_the_variables() -> None:
    board = grafana.dashboard(namespace="traffic-demo", service="sample-app")
    current = {v["name"]: v.get("current") for v in board["templating"]["list"]}
    assert current["namespace"]["value"] == ["traffic-demo"]
    assert current["service"]["value"] == ["sample-app"]
    assert current["version"]["value"] == ["$__all"]
    assert board["uid"] == "meshpilot-traffic-sample-app"
    # The seed's panels stay exactly as written, whatever is preselected.
    seed = [t["expr"] for p in board["panels"] if p["title"] in SEED_TITLES
            for t in p["targets"]]
    assert seed == [SEED_EXPR, SEED_EXPR, "envoy_cluster_upstream_rq_pending_overflow"]


def test_uid_stays_within_grafanas_limit() -> None:
    assert len(grafana.dashboard(service="a" * 100)["uid"]) == 40


def test_configmap_in_the_seeds_form() -> None:
    board = grafana.dashboard()
    text = grafana.to_yaml(grafana.configmap(board))
    cm = yaml.safe_load(text)
    assert cm["apiVersion"] == "v1" and cm["kind"] == "ConfigMap"
    assert cm["metadata"] == {"name": "traffic-management-dashboard", "namespace": "monitoring",
                              "labels": {"grafana_dashboard": "1"}}
    assert json.loads(cm["data"]["traffic-dashboard.json"]) == json.loads(grafana.to_json(board))
    assert "traffic-dashboard.json: |" in text  # a readable block, as in the seed


def test_render_substitutes_variables_and_label_values() -> None:
    expr = 'sum(rate(x{a=~"$namespace", b=~"${service}", r=~"$reporter"}[$__rate_interval]))'
    assert grafana.render(expr, {"namespace": "traffic-demo"}) == (
        'sum(rate(x{a=~"traffic-demo", b=~".*", r=~"destination"}[1m]))')
    assert grafana.render("label_values(m{a=~\"$namespace\"}, b)") == (
        'group by (b) (m{a=~".*"})')
    assert grafana.render("label_values(b)") == 'group by (b) ({__name__=~".+"})'


def test_every_panel_kind_counted(board: dict[str, Any]) -> None:
    kinds = Counter(p["type"] for p in board["panels"])
    assert kinds["piechart"] == 1 and kinds["stat"] >= 2 and kinds["timeseries"] >= 10
