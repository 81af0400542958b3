"""Every PromQL expression of the Grafana dashboard parses and type-checks in a real
Prometheus, with the variables interpolated as Grafana would (All, one value, several).

An empty answer is fine here (nothing is scraped); an error is not: Prometheus parses,
compiles the regex matchers and type-checks an expression before it looks at any data.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from meshpilot.telemetry import grafana

from .prometheus import Prometheus, PromQLError, prometheus, require_prometheus

pytestmark = pytest.mark.e2e

# What Grafana substitutes: All (.*), one value, and a multi-value selection, which
# Grafana formats for a Prometheus regex matcher as (a|b).
SELECTIONS = {
    "all": {},
    "one": {"namespace": "traffic-demo", "service": "sample-app", "version": "v1",
            "reporter": "source"},
    "several": {"namespace": "(traffic-demo|default)", "service": "(sample-app|reviews)",
                "version": "(v1|v2)"},
}


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    require_prometheus()
    with prometheus(Path(tmp_path_factory.mktemp("prometheus-dashboard"))) as p:
        yield p


def invalid(prom: Prometheus, board: dict, values: dict[str, str]) -> tuple[int, list[str]]:
    """(how many expressions were sent, the errors Prometheus gave, each with its place)."""
    checked, failures = 0, []
    for where, expr in grafana.expressions(board):
        try:
            prom.query(grafana.render(expr, values))
        except PromQLError as e:
            failures.append(f"{where}: {e}")
        checked += 1
    return checked, failures


@pytest.mark.parametrize("selection", sorted(SELECTIONS))
def test_every_dashboard_expression_is_valid_promql(prom: Prometheus, selection: str) -> None:
    checked, failures = invalid(prom, grafana.dashboard(), SELECTIONS[selection])
    assert not failures, "\n".join(failures)
    assert checked >= 40  # every panel target and variable query, not a handful


def test_preselected_service_dashboard_is_valid_too(prom: Prometheus) -> None:
    board = grafana.dashboard(namespace="traffic-demo", service="sample-app")
    _, failures = invalid(prom, board, {"namespace": "traffic-demo", "service": "sample-app"})
    assert not failures, "\n".join(failures)


def test_the_check_has_teeth(prom: Prometheus) -> None:
    """A broken expression, or a regex Prometheus cannot compile, is reported."""
    with pytest.raises(PromQLError):
        prom.query("sum(rate(istio_requests_total[5m]) by (destination_version)")
    with pytest.raises(PromQLError):
        prom.query('istio_requests_total{destination_service_name=~"(sample-app"}')
    with pytest.raises(PromQLError):  # a type error: rate() of an instant vector
        prom.query("rate(istio_requests_total)")
