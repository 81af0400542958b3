"""plan_steps: the three schedule spellings become one ordered list of steps."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from meshpilot.api.canary import CanarySpec
from meshpilot.rollout.plan import (
    Step,
    match_dicts,
    plan_steps,
    planned_weights,
    stepped_weights,
)

TARGET = {"host": "sample-app", "stableSubset": "v1", "canarySubset": "v2"}


def spec(**fields: Any) -> CanarySpec:
    return CanarySpec.model_validate({**TARGET, **fields}, by_alias=True, by_name=False)


def test_step_weights_expand_to_weight_then_analysis() -> None:
    steps = plan_steps(spec(stepWeights=[10, 25, 50, 75]))
    assert steps == [
        Step("setWeight", weight=10), Step("analysis"),
        Step("setWeight", weight=25), Step("analysis"),
        Step("setWeight", weight=50), Step("analysis"),
        Step("setWeight", weight=75), Step("analysis"),
    ]


@pytest.mark.parametrize(("step", "maximum", "weights"), [
    (10, None, [10, 20, 30, 40, 50, 60, 70, 80, 90, 100]),
    (20, 50, [20, 40, 50]),  # Flagger runs 20, 40, 60: never overshoot
    (25, 100, [25, 50, 75, 100]),
    (30, 100, [30, 60, 90, 100]),
    (50, 50, [50]),
    (1, 3, [1, 2, 3]),
    (33, 99, [33, 66, 99]),
])
def test_step_weight_never_overshoots_max_weight(step: int, maximum: int | None,
                                                  weights: list[int]) -> None:
    fields: dict[str, Any] = {"stepWeight": step}
    if maximum is not None:
        fields["maxWeight"] = maximum
    steps = plan_steps(spec(**fields))
    assert planned_weights(steps) == weights
    assert [s.action for s in steps] == ["setWeight", "analysis"] * len(weights)


@given(st.integers(1, 100), st.integers(1, 100))
def test_stepped_weights_properties(step: int, maximum: int) -> None:
    if step > maximum:  # the model rejects stepWeight above maxWeight
        return
    weights = stepped_weights(step, maximum)
    assert weights[0] == step and weights[-1] == maximum
    assert all(0 < w <= maximum for w in weights)
    assert all(0 < b - a <= step for a, b in itertools.pairwise(weights))


def test_stepped_weights_rejects_a_non_positive_step() -> None:
    with pytest.raises(ValueError, match="stepWeight must be positive"):
        stepped_weights(0, 50)


def test_explicit_steps_are_taken_as_written() -> None:
    beta = {"headers": {"x-beta": {"exact": "true"}}}
    steps = plan_steps(spec(steps=[
        {"setWeight": 10},
        {"pause": {"duration": "1m30s"}},
        {"pause": {}},
        {"analysis": {}},
        {"mirror": {"percentage": 50}},
        {"setHeaderRoute": {"name": "beta", "match": [beta]}},
        {"setWeight": 5},  # explicit steps may go down (Argo allows it)
        {"setHeaderRoute": {"name": "beta"}},
    ]))
    assert steps == [
        Step("setWeight", weight=10),
        Step("pause", duration=90.0),
        Step("pause", duration=None),
        Step("analysis"),
        Step("mirror", percentage=50.0),
        Step("setHeaderRoute", route_name="beta", match=(beta,)),
        Step("setWeight", weight=5),
        Step("setHeaderRoute", route_name="beta", match=()),
    ]
    assert [s.describe() for s in steps] == [
        "setWeight 10", "pause 90s", "pause", "analysis", "mirror 50%",
        "setHeaderRoute beta (set)", "setWeight 5", "setHeaderRoute beta (remove)"]


def test_header_route_matches_are_camel_case_dicts_as_stored() -> None:
    match = {"queryParams": {"beta": {"exact": "1"}}, "ignoreUriCase": True,
             "uri": {"prefix": "/api"}}
    (step,) = plan_steps(spec(steps=[{"setHeaderRoute": {"name": "q", "match": [match]}}]))
    assert step.match == (match,)


@pytest.mark.parametrize(("fields", "count"), [
    ({"iterations": 3, "match": [{"headers": {"x-ab": {"exact": "b"}}}]}, 3),  # abTest
    ({"iterations": 1}, 1),  # blueGreen
    ({"iterations": 10, "strategy": "blueGreen"}, 10),
])
def test_iterations_for_ab_and_blue_green(fields: dict[str, Any], count: int) -> None:
    steps = plan_steps(spec(**fields))
    assert steps == [Step("iteration")] * count
    assert planned_weights(steps) == []


def test_plans_are_deterministic() -> None:
    s = spec(stepWeights=[10, 50])
    assert plan_steps(s) == plan_steps(s)
    assert len(set(plan_steps(s))) == 3  # frozen: weight steps without match are hashable


def test_match_dicts_for_the_ab_match() -> None:
    s = spec(iterations=2, match=[{"headers": {"cookie": {"regex": "^(.*?;)?(user=beta)(;.*)?$"}}},
                                  {"sourceLabels": {"app": "web"}, "port": 8080}])
    assert match_dicts(s.match) == (
        {"headers": {"cookie": {"regex": "^(.*?;)?(user=beta)(;.*)?$"}}},
        {"sourceLabels": {"app": "web"}, "port": 8080})
    assert match_dicts(None) == ()
