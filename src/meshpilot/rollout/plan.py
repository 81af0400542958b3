"""A Canary spec as the ordered list of steps the controller walks (pure, no I/O).

Three spellings of a schedule end up as one list, so the controller has a single loop
and `status.stepIndex` means the same thing for all of them:

- explicit `steps` (Argo Rollouts style) are taken as written;
- Flagger's `stepWeights: [10, 25, 50]` and `stepWeight: 10` + `maxWeight` expand to
  `setWeight(w)` followed by `analysis` (dwell one interval, then run the checks) for each
  weight. Unlike Flagger, `stepWeight` never overshoots `maxWeight`: 20 with max 50 gives
  20, 40, 50 (Flagger runs 20, 40, 60);
- abTest and blueGreen run `iterations` x `iteration` (one interval, then the checks).

Promotion is not a step: after the last step the controller promotes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..api.canary import CanarySpec, CanaryStep
from ..api.virtualservice import HTTPMatchRequest

Action = Literal["setWeight", "pause", "analysis", "mirror", "setHeaderRoute", "iteration"]


@dataclass(frozen=True)
class Step:
    action: Action
    weight: int | None = None  # setWeight
    duration: float | None = None  # pause: seconds; None = until resumed
    percentage: float | None = None  # mirror
    route_name: str | None = None  # setHeaderRoute
    match: tuple[dict[str, Any], ...] = ()  # setHeaderRoute: HTTPMatchRequest dicts (camelCase)

    def describe(self) -> str:
        """One line for status, events and `meshpilot canary get`."""
        if self.action == "setWeight":
            return f"setWeight {self.weight}"
        if self.action == "pause":
            return "pause" if self.duration is None else f"pause {_seconds(self.duration)}"
        if self.action == "mirror":
            return f"mirror {_number(self.percentage or 0)}%"
        if self.action == "setHeaderRoute":
            verb = "set" if self.match else "remove"
            return f"setHeaderRoute {self.route_name} ({verb})"
        return self.action


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def _seconds(value: float) -> str:
    return f"{_number(value)}s"


def stepped_weights(step: int, maximum: int) -> list[int]:
    """step, 2*step, ... capped at `maximum`, which is always the last weight."""
    if step <= 0:
        raise ValueError(f"stepWeight must be positive, not {step}")
    weights = list(range(step, maximum, step))
    return [*weights, maximum]


def match_dicts(matches: Sequence[HTTPMatchRequest] | None) -> tuple[dict[str, Any], ...]:
    """HTTPMatchRequests as a user writes them in a VirtualService (camelCase, defaults
    left out), so managed rules read like hand-written ones. Also gives the controller
    `RouteState.ab_match` from `spec.match`."""
    return tuple(m.model_dump(by_alias=True, exclude_defaults=True, mode="json")
                 for m in matches or ())


def _explicit(step: CanaryStep) -> Step:
    if step.set_weight is not None:
        return Step("setWeight", weight=step.set_weight)
    if step.pause is not None:
        return Step("pause", duration=step.pause.seconds)
    if step.analysis is not None:
        return Step("analysis")
    if step.mirror is not None:
        return Step("mirror", percentage=float(step.mirror.percentage))
    route = step.set_header_route
    assert route is not None  # the model guarantees exactly one action
    return Step("setHeaderRoute", route_name=route.name, match=match_dicts(route.match))


def plan_steps(spec: CanarySpec) -> list[Step]:
    """The steps of one rollout, in order (see the module docstring)."""
    strategy = spec.effective_strategy
    if strategy != "canary":
        return [Step("iteration") for _ in range(spec.iterations or 0)]
    if spec.steps is not None:
        return [_explicit(s) for s in spec.steps]
    if spec.step_weights is not None:
        weights = list(spec.step_weights)
    elif spec.step_weight is not None:
        weights = stepped_weights(spec.step_weight, spec.effective_max_weight)
    else:  # the model requires one of the three for the canary strategy
        weights = []
    out: list[Step] = []
    for w in weights:
        out += [Step("setWeight", weight=w), Step("analysis")]
    return out


def planned_weights(steps: list[Step]) -> list[int]:
    """The canary weights the steps reach, in order (for display and tests)."""
    return [s.weight for s in steps if s.action == "setWeight" and s.weight is not None]
