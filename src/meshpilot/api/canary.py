"""Canary (`meshpilot.io/v1alpha1`): a progressive rollout of one service's canary subset.

The shape follows Flagger's Canary where the two meet (analysis interval, failure limits,
`stepWeights`/`stepWeight`/`maxWeight`, `iterations`, `match`, webhooks, session
affinity, the `request-success-rate`/`request-duration` metric names and units), and
Argo Rollouts' explicit `steps` where Flagger has no equivalent. It differs on purpose
where Flagger's behaviour surprises users:

- the target is a host plus two DestinationRule subsets (subset-level splitting, as the
  seed tutorial does), not `-primary`/`-canary` Services;
- `stepWeight` never overshoots `maxWeight` (Flagger's 20/50 runs 20, 40, 60);
- "no data" is not "failed": every built-in metric has `minRequests` and `noTraffic`;
- a metric window can never be longer than the step it judges (the seed's 5-minute
  window over 30-second steps mostly measured the previous steps).

Only `spec` is modelled and validated: `status` belongs to the controller, which writes
it through the store's status subresource, so a `get -o yaml` output with its status
re-applies cleanly (decode ignores `status`).

Errors follow the VirtualService's conventions: `invalid(msg, at=..., hint=...)` with
the path below the model, so users read `spec.analysis.metrics[1].window: ...`.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Literal
from urllib.parse import urlsplit

from pydantic import model_validator

from .base import (
    Duration,
    IstioModel,
    check_port,
    fqdn_problem,
    invalid,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_istio_dns_label,
    parse_duration,
)
from .errors import Issue, PathPart
from .schema import suggest
from .virtualservice import HTTPMatchRequest

Path = tuple[PathPart, ...]

SUCCESS_RATE = "request-success-rate"
DURATION = "request-duration"
BUILTIN_METRICS = (SUCCESS_RATE, DURATION)
DEFAULT_QUANTILE = 0.99  # Flagger's request-duration is a p99
DEFAULT_MIN_REQUESTS = 1
DEFAULT_INTERVAL = "1m"  # Flagger's default analysis interval
DEFAULT_PROGRESS_DEADLINE = "10m"  # Flagger's progressDeadlineSeconds default (600)
DEFAULT_SESSION_MAX_AGE = "24h"  # Flagger's sessionAffinity.maxAge default (86400)
DEFAULT_WEBHOOK_TIMEOUT = "10s"  # Flagger's webhook timeout default

WEBHOOK_TYPES = (
    "pre-rollout", "rollout", "confirm-rollout", "confirm-traffic-increase",
    "confirm-promotion", "post-rollout", "rollback", "event",
)  # fmt: skip
STRATEGIES = ("canary", "abTest", "blueGreen")
NO_TRAFFIC_POLICIES = ("fail", "hold", "pass")

Strategy = Literal["canary", "abTest", "blueGreen"]
NoTraffic = Literal["fail", "hold", "pass"]

# RFC 6265 cookie-name = token; cookie-value chars without quotes (no space, ; , \ ").
_TOKEN_RE = re.compile(r"^[!#$%&'*+\-.^_`|~A-Za-z0-9]+$")


def _seconds(text: str) -> Decimal:
    return parse_duration(text)


def _number(value: float) -> str:
    """99.0 -> "99", 0.95 -> "0.95": bounds as people write them."""
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def _url_problem(url: str) -> str | None:
    try:
        parts = urlsplit(url)
    except ValueError as e:
        return f"invalid URL {url!r}: {e}"
    if parts.scheme not in ("http", "https"):
        return f"URL {url!r} must start with http:// or https://"
    if not parts.hostname:
        return f"URL {url!r} has no host"
    try:
        parts.port  # noqa: B018 - raises ValueError on a port out of range
    except ValueError:
        return f"URL {url!r} has an invalid port"
    return None


def _check_url(url: str, at: Path, example: str) -> None:
    problem = _url_problem(url)
    if problem:
        raise invalid(problem, at=at, hint=f"e.g. {example}")


def _check_positive_duration(text: str | None, at: Path, *, minimum: str = "1ms") -> None:
    if text is not None and _seconds(text) < _seconds(minimum):
        raise invalid(f"duration {text} must be at least {minimum}", at=at)


def _match_is_empty(m: HTTPMatchRequest) -> bool:
    return not m.model_dump(exclude_defaults=True)


def _check_matches(matches: list[HTTPMatchRequest], at: Path) -> None:
    """An empty match block matches every request: as a canary route it would send all
    traffic to the canary, which is never what a header/cookie route means."""
    for i, m in enumerate(matches):
        if _match_is_empty(m):
            raise invalid(
                "an empty match matches every request and would send all traffic to the canary",
                at=(*at, i),
                hint='match a header or cookie, e.g. {headers: {x-canary: {exact: "true"}}}',
            )


# --- metrics --------------------------------------------------------------------------------


class ThresholdRange(IstioModel):
    """Flagger's thresholdRange: the value must be >= min and/or <= max."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _check(self) -> ThresholdRange:
        if self.min is None and self.max is None:
            raise invalid(
                "thresholdRange needs min or max (or both)",
                hint="e.g. thresholdRange: {min: 99} for a success rate, {max: 500} for a "
                "duration in ms",
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise invalid(
                f"min {_number(self.min)} is greater than max {_number(self.max)}",
                at=("min",),
                hint="no value could pass; swap them",
            )
        return self

    def text(self) -> str:
        """">= 99", "<= 500", or ">= 1, <= 10" (the analysis engine's wording)."""
        parts = []
        if self.min is not None:
            parts.append(f">= {_number(self.min)}")
        if self.max is not None:
            parts.append(f"<= {_number(self.max)}")
        return ", ".join(parts)


class MetricBaseline(IstioModel):
    """Canary compared with stable over the same window (built-in metrics only):
    success rate `canary >= stable - maxDecrease` (points), duration
    `canary <= stable * maxRatio`."""

    max_decrease: float | None = None
    max_ratio: float | None = None

    @model_validator(mode="after")
    def _check(self) -> MetricBaseline:
        if (self.max_decrease is None) == (self.max_ratio is None):
            raise invalid(
                "baseline needs exactly one of maxDecrease or maxRatio",
                hint="maxDecrease (points) for request-success-rate, maxRatio for "
                "request-duration",
            )
        if self.max_decrease is not None and not 0 <= self.max_decrease <= 100:
            raise invalid(
                f"maxDecrease {_number(self.max_decrease)} must be in 0..100 (percentage "
                "points)",
                at=("maxDecrease",),
            )
        if self.max_ratio is not None and self.max_ratio <= 0:
            raise invalid(
                f"maxRatio {_number(self.max_ratio)} must be positive",
                at=("maxRatio",),
                hint="e.g. 1.2: the canary may be at most 20% slower than stable",
            )
        return self


class PrometheusCheck(IstioModel):
    """An instant PromQL query against an external Prometheus; must return one number."""

    address: str
    query: str
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> PrometheusCheck:
        _check_url(self.address, ("address",), "http://127.0.0.1:9090")
        if not self.query.strip():
            raise invalid("query must not be empty", at=("query",))
        _check_positive_duration(self.timeout, ("timeout",))
        return self


class HTTPCheck(IstioModel):
    """GET `url`, read the number at the dotted `jsonPath` of the JSON body
    (absent: the body itself is the number)."""

    url: str
    json_path: str | None = None
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> HTTPCheck:
        _check_url(self.url, ("url",), "http://127.0.0.1:8080/check")
        if self.json_path is not None:
            path = self.json_path.strip()
            if path.startswith("{") and path.endswith("}"):
                path = path[1:-1].strip()
            if path.startswith("$"):
                path = path[1:].lstrip(".")
            if path and any(not part for part in path.split(".")):
                raise invalid(
                    f"jsonPath {self.json_path!r} has an empty segment",
                    at=("jsonPath",),
                    hint="a dotted path such as value, data.rate or items.0.value",
                )
        _check_positive_duration(self.timeout, ("timeout",))
        return self


class CanaryMetric(IstioModel):
    """One check run at the end of each analysis interval.

    `request-success-rate` (non-5xx % of the canary subset's requests, 0-100) and
    `request-duration` (a latency quantile in ms) are computed from meshpilot's own
    telemetry; any other name is a custom metric read from `prometheus` or `http`.
    """

    name: str
    threshold_range: ThresholdRange | None = None
    window: Duration | None = None
    min_requests: int | None = None
    no_traffic: NoTraffic | None = None
    baseline: MetricBaseline | None = None
    quantile: float | None = None
    prometheus: PrometheusCheck | None = None
    http: HTTPCheck | None = None

    @property
    def is_builtin(self) -> bool:
        return self.name in BUILTIN_METRICS

    @property
    def unit(self) -> str:
        """"%" for the success rate, "ms" for the duration, "" for custom metrics."""
        return {SUCCESS_RATE: "%", DURATION: "ms"}.get(self.name, "")

    @property
    def effective_quantile(self) -> float:
        return DEFAULT_QUANTILE if self.quantile is None else self.quantile

    @property
    def effective_min_requests(self) -> int:
        return DEFAULT_MIN_REQUESTS if self.min_requests is None else self.min_requests

    @property
    def effective_no_traffic(self) -> NoTraffic:
        return self.no_traffic or "fail"

    def window_seconds(self, interval_seconds: float) -> float:
        """The query window: `window`, else the analysis interval."""
        return float(_seconds(self.window)) if self.window is not None else interval_seconds

    def threshold_text(self) -> str:
        """The static threshold for status display: ">= 99", "<= 500", ">= 1, <= 10"
        (baseline bounds depend on stable's value and are rendered by the analysis)."""
        return self.threshold_range.text() if self.threshold_range is not None else ""

    @model_validator(mode="after")
    def _check(self) -> CanaryMetric:
        if not self.name:
            raise invalid("metric name must not be empty", at=("name",),
                          hint=f"use {SUCCESS_RATE}, {DURATION} or a name of your own")
        if self.is_builtin:
            self._check_builtin()
        else:
            self._check_custom()
        if self.window is not None:
            _check_positive_duration(self.window, ("window",), minimum="1s")
        return self

    def _check_builtin(self) -> None:
        for field, alias in (("prometheus", "prometheus"), ("http", "http")):
            if getattr(self, field) is not None:
                raise invalid(
                    f"{self.name} is a built-in metric computed from meshpilot's telemetry; "
                    f"it takes no {alias} query",
                    at=(alias,),
                    hint=f"remove {alias}, or give the metric another name to make it custom",
                )
        if self.threshold_range is None and self.baseline is None:
            example = "{min: 99}" if self.name == SUCCESS_RATE else "{max: 500}"
            raise invalid(
                f"{self.name} needs thresholdRange or baseline",
                at=("thresholdRange",),
                hint=f"e.g. thresholdRange: {example}",
            )
        tr = self.threshold_range
        if self.name == SUCCESS_RATE:
            if tr is not None:
                for bound, value in (("min", tr.min), ("max", tr.max)):
                    if value is not None and not 0 <= value <= 100:
                        raise invalid(
                            f"{SUCCESS_RATE} is a percentage; {bound} {_number(value)} is "
                            "outside 0..100",
                            at=("thresholdRange", bound),
                            hint="e.g. min: 99 for at least 99 % non-5xx responses",
                        )
            if self.quantile is not None:
                raise invalid(
                    f"quantile applies to {DURATION}, not {SUCCESS_RATE}", at=("quantile",)
                )
            if self.baseline is not None and self.baseline.max_ratio is not None:
                raise invalid(
                    f"baseline.maxRatio applies to {DURATION}",
                    at=("baseline", "maxRatio"),
                    hint="for a success rate use maxDecrease (percentage points), e.g. 1",
                )
        else:
            if tr is not None:
                for bound, value in (("min", tr.min), ("max", tr.max)):
                    if value is not None and value < 0:
                        raise invalid(
                            f"{DURATION} is in milliseconds; {bound} {_number(value)} is "
                            "negative",
                            at=("thresholdRange", bound),
                        )
            if self.quantile is not None and not 0 < self.quantile < 1:
                raise invalid(
                    f"quantile {_number(self.quantile)} must be between 0 and 1 (exclusive)",
                    at=("quantile",),
                    hint="e.g. 0.95 for p95, 0.99 for p99",
                )
            if self.baseline is not None and self.baseline.max_decrease is not None:
                raise invalid(
                    f"baseline.maxDecrease applies to {SUCCESS_RATE}",
                    at=("baseline", "maxDecrease"),
                    hint="for a duration use maxRatio, e.g. 1.2",
                )
        if self.min_requests is not None and self.min_requests < 1:
            raise invalid(
                f"minRequests {self.min_requests} must be at least 1",
                at=("minRequests",),
                hint="a check needs at least one request; use noTraffic to decide what an "
                "idle canary means",
            )

    def _check_custom(self) -> None:
        providers = [a for f, a in (("prometheus", "prometheus"), ("http", "http"))
                     if getattr(self, f) is not None]
        if not providers:
            close = suggest(self.name, list(BUILTIN_METRICS))
            hint = (f"did you mean {close!r}?" if close else
                    f"the built-in metrics are {SUCCESS_RATE} and {DURATION}; a custom metric "
                    "needs prometheus: {address, query} or http: {url, jsonPath}")
            raise invalid(f"unknown metric {self.name!r}: not built in, and it has neither "
                          "prometheus nor http", at=("name",), hint=hint)
        if len(providers) > 1:
            raise invalid("a custom metric needs exactly one of prometheus or http (got both)",
                          at=("http",))
        if self.threshold_range is None:
            raise invalid(f"custom metric {self.name!r} needs thresholdRange",
                          at=("thresholdRange",), hint="e.g. thresholdRange: {min: 0.95}")
        for field, alias in (("min_requests", "minRequests"), ("no_traffic", "noTraffic"),
                             ("baseline", "baseline"), ("quantile", "quantile")):
            if getattr(self, field) is not None:
                raise invalid(
                    f"{alias} applies only to the built-in metrics {SUCCESS_RATE} and "
                    f"{DURATION}",
                    at=(alias,),
                    hint="a custom query decides these itself (an empty result is no data)",
                )
        if self.window is not None:
            raise invalid(
                "window applies only to the built-in metrics; a custom query sets its own "
                "range",
                at=("window",),
                hint="put the range in the query, e.g. [30s]",
            )


# --- analysis -------------------------------------------------------------------------------


class CanaryAnalysis(IstioModel):
    """When and how the canary is judged, and how much failure is tolerated."""

    interval: Duration = DEFAULT_INTERVAL
    failure_limit: int = 1
    consecutive_failure_limit: int | None = None
    inconclusive_limit: int = 0
    progress_deadline: Duration = DEFAULT_PROGRESS_DEADLINE
    metrics: list[CanaryMetric] = []

    @property
    def interval_seconds(self) -> float:
        return float(_seconds(self.interval))

    @property
    def progress_deadline_seconds(self) -> float:
        return float(_seconds(self.progress_deadline))

    @model_validator(mode="after")
    def _check(self) -> CanaryAnalysis:
        interval = _seconds(self.interval)
        if interval < 1:
            raise invalid(
                f"interval {self.interval} is shorter than the minimum 1s",
                at=("interval",),
                hint="telemetry is summarised per second; use 1s or more",
            )
        if self.failure_limit < 1:
            raise invalid(f"failureLimit {self.failure_limit} must be at least 1",
                          at=("failureLimit",),
                          hint="1 rolls back on the first failed check")
        if self.consecutive_failure_limit is not None and self.consecutive_failure_limit < 1:
            raise invalid(
                f"consecutiveFailureLimit {self.consecutive_failure_limit} must be at least 1",
                at=("consecutiveFailureLimit",),
            )
        if self.inconclusive_limit < 0:
            raise invalid(
                f"inconclusiveLimit {self.inconclusive_limit} must not be negative",
                at=("inconclusiveLimit",),
                hint="0 never pauses on inconclusive checks",
            )
        deadline = _seconds(self.progress_deadline)
        if deadline < interval:
            raise invalid(
                f"progressDeadline {self.progress_deadline} is shorter than interval "
                f"{self.interval}: no step could finish in time",
                at=("progressDeadline",),
                hint="make it several intervals long (default 10m)",
            )
        seen: dict[str, int] = {}
        for i, metric in enumerate(self.metrics):
            if metric.name in seen:
                raise invalid(
                    f"duplicate metric name {metric.name!r} (also metrics[{seen[metric.name]}])",
                    at=("metrics", i, "name"),
                    hint="names identify checks in status and events; make them unique",
                )
            seen[metric.name] = i
            if metric.window is not None and _seconds(metric.window) > interval:
                raise invalid(
                    f"window {metric.window} is longer than the analysis interval "
                    f"{self.interval}: the check would mostly measure earlier steps",
                    at=("metrics", i, "window"),
                    hint=f"use a window of at most {self.interval}, or omit it (= interval)",
                )
        return self

    def warnings(self) -> list[Issue]:
        out: list[Issue] = []
        if (self.consecutive_failure_limit is not None
                and self.consecutive_failure_limit > self.failure_limit):
            out.append(Issue(
                ("consecutiveFailureLimit",),
                f"consecutiveFailureLimit {self.consecutive_failure_limit} is above "
                f"failureLimit {self.failure_limit} and can never be reached first",
                hint="lower it, or raise failureLimit", severity="warning"))
        for i, m in enumerate(self.metrics):
            tr = m.threshold_range
            if m.name == SUCCESS_RATE and tr is not None and tr.min is not None and 0 < tr.min <= 1:
                out.append(Issue(
                    ("metrics", i, "thresholdRange", "min"),
                    f"{SUCCESS_RATE} is a percentage: min {_number(tr.min)} means "
                    f"{_number(tr.min)} %, not {_number(tr.min * 100)} %",
                    hint=f"did you mean min: {_number(tr.min * 100)}?", severity="warning"))
        return out


# --- steps ----------------------------------------------------------------------------------


class PauseStep(IstioModel):
    """Wait `duration`, or (no duration) until `meshpilot canary resume/promote`."""

    duration: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> PauseStep:
        _check_positive_duration(self.duration, ("duration",))
        return self

    @property
    def seconds(self) -> float | None:
        return None if self.duration is None else float(_seconds(self.duration))


class StepAnalysis(IstioModel):
    """Run every check of `spec.analysis` now, once (holds on failure). No options yet."""


class MirrorStep(IstioModel):
    """Mirror `percentage` % of the default route's traffic to the canary subset
    (0 stops mirroring)."""

    percentage: float

    @model_validator(mode="after")
    def _check(self) -> MirrorStep:
        if not 0 <= self.percentage <= 100:
            raise invalid(f"percentage {_number(self.percentage)} must be in 0..100",
                          at=("percentage",), hint="0 stops mirroring")
        return self


class SetHeaderRoute(IstioModel):
    """A managed route sending requests that match to the canary (100 %); an empty
    `match` removes the route of that name (Argo Rollouts' setHeaderRoute, with Istio's
    HTTPMatchRequest, so cookies are matched as `headers: {cookie: {regex: ...}}`)."""

    name: str
    match: list[HTTPMatchRequest] = []

    @model_validator(mode="after")
    def _check(self) -> SetHeaderRoute:
        if not is_dns1123_label(self.name):
            raise invalid(f"route name {self.name!r} is not a DNS-1123 label", at=("name",),
                          hint="lowercase letters, digits and '-', e.g. beta-users")
        _check_matches(self.match, ("match",))
        return self


STEP_ACTIONS = ("setWeight", "pause", "analysis", "mirror", "setHeaderRoute")


class CanaryStep(IstioModel):
    """One explicit step (Argo Rollouts style): exactly one action."""

    set_weight: int | None = None
    pause: PauseStep | None = None
    analysis: StepAnalysis | None = None
    mirror: MirrorStep | None = None
    set_header_route: SetHeaderRoute | None = None

    @property
    def action(self) -> str:
        return next(a for a, f in zip(STEP_ACTIONS, self._fields(), strict=True)
                    if getattr(self, f) is not None)

    @staticmethod
    def _fields() -> tuple[str, ...]:
        return ("set_weight", "pause", "analysis", "mirror", "set_header_route")

    @model_validator(mode="after")
    def _check(self) -> CanaryStep:
        chosen = [a for a, f in zip(STEP_ACTIONS, self._fields(), strict=True)
                  if getattr(self, f) is not None]
        if len(chosen) != 1:
            got = f" (got {', '.join(chosen)})" if chosen else ""
            raise invalid(
                f"a step needs exactly one of {', '.join(STEP_ACTIONS)}{got}",
                at=(chosen[1],) if len(chosen) > 1 else (),
                hint="split it into one step per action" if chosen else
                "e.g. - setWeight: 10, then - pause: {duration: 30s}",
            )
        if self.set_weight is not None and not 0 <= self.set_weight <= 100:
            raise invalid(f"setWeight {self.set_weight} must be in 0..100",
                          at=("setWeight",), hint="a percentage of the default route's traffic")
        return self


# --- webhooks and session affinity -----------------------------------------------------------


class CanaryWebhook(IstioModel):
    """A Flagger webhook: POST {name, namespace, phase, checksum, metadata}; 200..202 passes."""

    name: str
    type: str = "rollout"
    url: str
    timeout: Duration = DEFAULT_WEBHOOK_TIMEOUT
    metadata: dict[str, str] = {}

    @property
    def timeout_seconds(self) -> float:
        return float(_seconds(self.timeout))

    @model_validator(mode="after")
    def _check(self) -> CanaryWebhook:
        if not self.name:
            raise invalid("webhook name must not be empty", at=("name",))
        if self.type not in WEBHOOK_TYPES:
            close = suggest(self.type, list(WEBHOOK_TYPES))
            hint = f"did you mean {close!r}? " if close else ""
            raise invalid(f"unknown webhook type {self.type!r}", at=("type",),
                          hint=hint + "use one of " + ", ".join(WEBHOOK_TYPES))
        _check_url(self.url, ("url",), "http://127.0.0.1:9999/")
        _check_positive_duration(self.timeout, ("timeout",))
        return self


class SessionAffinity(IstioModel):
    """Flagger's cookie stickiness: a client that got a canary response (which sets
    `cookieName`) keeps reaching the canary for `maxAge` (a duration, or seconds as
    Flagger writes it)."""

    cookie_name: str
    max_age: Duration | int = DEFAULT_SESSION_MAX_AGE

    @property
    def max_age_seconds(self) -> int:
        if isinstance(self.max_age, int):
            return self.max_age
        return int(_seconds(self.max_age))

    @model_validator(mode="after")
    def _check(self) -> SessionAffinity:
        if not _TOKEN_RE.match(self.cookie_name):
            raise invalid(f"cookie name {self.cookie_name!r} is not a valid cookie name",
                          at=("cookieName",),
                          hint="letters, digits and - _ . (no spaces, = or ;), e.g. canary-session")
        seconds = (Decimal(self.max_age) if isinstance(self.max_age, int)
                   else _seconds(self.max_age))
        if seconds < 1 or seconds % 1:
            raise invalid(f"maxAge {self.max_age} must be a whole number of seconds, at least 1",
                          at=("maxAge",), hint="e.g. 24h or 86400")
        return self


# --- the spec -------------------------------------------------------------------------------


class CanarySpec(IstioModel):
    """The Canary spec: the target (host, subsets, VirtualService), one schedule (steps,
    stepWeights, stepWeight or iterations), analysis, webhooks and session affinity."""

    host: str
    port: int | None = None
    stable_subset: str
    canary_subset: str
    virtual_service: str | None = None
    strategy: Strategy | None = None
    steps: list[CanaryStep] | None = None
    step_weights: list[int] | None = None
    step_weight: int | None = None
    max_weight: int | None = None
    iterations: int | None = None
    match: list[HTTPMatchRequest] | None = None
    analysis: CanaryAnalysis = CanaryAnalysis()
    webhooks: list[CanaryWebhook] = []
    session_affinity: SessionAffinity | None = None
    skip_analysis: bool = False

    @property
    def effective_strategy(self) -> Strategy:
        """The declared strategy, else Flagger's inference: `match` -> abTest,
        only `iterations` -> blueGreen, otherwise canary."""
        if self.strategy is not None:
            return self.strategy
        if self.match:
            return "abTest"
        if self.iterations is not None:
            return "blueGreen"
        return "canary"

    @property
    def effective_max_weight(self) -> int:
        """The weight of the last step before promotion (stepWeight's cap)."""
        if self.step_weights:
            return self.step_weights[-1]
        return 100 if self.max_weight is None else self.max_weight

    @model_validator(mode="after")
    def _check(self) -> CanarySpec:
        self._check_target()
        strategy = self.effective_strategy
        if strategy == "canary":
            self._check_canary()
        else:
            self._check_iterations(strategy)
        self._check_webhooks()
        return self

    def _check_target(self) -> None:
        if "*" in self.host:
            raise invalid(f"host {self.host!r} must name one service, not a wildcard",
                          at=("host",), hint="e.g. sample-app or sample-app.ns.svc.cluster.local")
        problem = fqdn_problem(self.host)
        if problem:
            raise invalid(problem, at=("host",),
                          hint="the service host as a VirtualService destination names it, "
                          "e.g. sample-app")
        check_port(self.port, ("port",))
        for field, alias in (("stable_subset", "stableSubset"), ("canary_subset", "canarySubset")):
            value = getattr(self, field)
            if not is_istio_dns_label(value):
                raise invalid(f"subset name {value!r} is not a DNS-1123 label", at=(alias,),
                              hint="the name of a DestinationRule subset, e.g. v1")
        if self.stable_subset == self.canary_subset:
            raise invalid(
                f"canarySubset is the same as stableSubset ({self.stable_subset!r})",
                at=("canarySubset",),
                hint="the canary is the new version's subset, e.g. stableSubset: v1, "
                "canarySubset: v2",
            )
        if self.virtual_service is not None and not is_dns1123_subdomain(self.virtual_service):
            raise invalid(f"virtualService {self.virtual_service!r} is not a valid resource name",
                          at=("virtualService",),
                          hint="the name of a VirtualService in the Canary's namespace")

    def _check_canary(self) -> None:
        for field, alias in (("iterations", "iterations"), ("match", "match")):
            if getattr(self, field) is not None:
                raise invalid(
                    f"{alias} applies to the abTest and blueGreen strategies, not canary",
                    at=(alias,),
                    hint="remove strategy: canary to let match/iterations select abTest or "
                    "blueGreen, or use steps with setHeaderRoute for header routing",
                )
        given = [a for f, a in (("steps", "steps"), ("step_weights", "stepWeights"),
                                ("step_weight", "stepWeight")) if getattr(self, f) is not None]
        if not given:
            raise invalid(
                "the canary strategy needs steps, stepWeights or stepWeight",
                hint="e.g. stepWeights: [10, 25, 50, 75], or stepWeight: 10 with maxWeight: 50",
            )
        if len(given) > 1:
            raise invalid(
                f"{' and '.join(given)} are mutually exclusive",
                at=(given[1],),
                hint="use explicit steps, or the stepWeights/stepWeight shorthand, not both",
            )
        if self.max_weight is not None and self.step_weight is None:
            which = "stepWeights (its last weight is the maximum)" if self.step_weights \
                else "steps (the last setWeight is the maximum)"
            raise invalid("maxWeight applies to stepWeight only", at=("maxWeight",),
                          hint=f"remove maxWeight; with {which}")
        if self.max_weight is not None and not 1 <= self.max_weight <= 100:
            raise invalid(f"maxWeight {self.max_weight} must be in 1..100", at=("maxWeight",))
        if self.step_weight is not None:
            if not 1 <= self.step_weight <= 100:
                raise invalid(f"stepWeight {self.step_weight} must be in 1..100",
                              at=("stepWeight",))
            if self.step_weight > self.effective_max_weight:
                raise invalid(
                    f"stepWeight {self.step_weight} is above maxWeight "
                    f"{self.effective_max_weight}",
                    at=("stepWeight",),
                    hint="the first step would already be capped at maxWeight",
                )
        if self.step_weights is not None:
            self._check_step_weights(self.step_weights)
        if self.steps is not None:
            self._check_steps(self.steps)

    @staticmethod
    def _check_step_weights(weights: list[int]) -> None:
        if not weights:
            raise invalid("stepWeights must not be empty", at=("stepWeights",),
                          hint="e.g. stepWeights: [10, 25, 50, 75]")
        for i, w in enumerate(weights):
            if not 0 <= w <= 100:
                raise invalid(f"weight {w} must be in 0..100", at=("stepWeights", i))
            if i and w <= weights[i - 1]:
                raise invalid(
                    f"stepWeights must increase strictly: {w} follows {weights[i - 1]}",
                    at=("stepWeights", i),
                    hint="list the canary weights in the order they are reached, e.g. "
                    "[10, 25, 50, 75]",
                )

    @staticmethod
    def _check_steps(steps: list[CanaryStep]) -> None:
        if not steps:
            raise invalid("steps must not be empty", at=("steps",),
                          hint="e.g. - setWeight: 10, then - pause: {duration: 30s}")
        active: set[str] = set()
        for i, step in enumerate(steps):
            route = step.set_header_route
            if route is None:
                continue
            if route.match:
                active.add(route.name)
            elif route.name in active:
                active.discard(route.name)
            else:
                raise invalid(
                    f"setHeaderRoute {route.name!r} with an empty match removes a route that "
                    "no earlier step set",
                    at=("steps", i, "setHeaderRoute", "match"),
                    hint="give it a match, or check the route name",
                )

    def _check_iterations(self, strategy: str) -> None:
        for field, alias in (("steps", "steps"), ("step_weights", "stepWeights"),
                             ("step_weight", "stepWeight"), ("max_weight", "maxWeight")):
            if getattr(self, field) is not None:
                raise invalid(
                    f"{alias} applies to the canary strategy, not {strategy}",
                    at=(alias,),
                    hint=f"{strategy} runs `iterations` analysis intervals and then promotes",
                )
        if self.iterations is None:
            raise invalid(f"{strategy} needs iterations", at=("iterations",),
                          hint="the number of analysis intervals before promotion, e.g. 10")
        if self.iterations < 1:
            raise invalid(f"iterations {self.iterations} must be at least 1",
                          at=("iterations",))
        if strategy == "abTest":
            if not self.match:
                raise invalid(
                    "abTest needs match: the requests that go to the canary",
                    at=("match",),
                    hint='e.g. match: [{headers: {cookie: {regex: "^(.*?;)?(user=beta)(;.*)?$"}}}]',
                )
            _check_matches(self.match, ("match",))
        elif self.match is not None:
            raise invalid("match applies to abTest, not blueGreen", at=("match",),
                          hint="remove strategy: blueGreen to run an A/B test")
        if self.session_affinity is not None:
            raise invalid(
                f"sessionAffinity applies to the canary strategy, not {strategy}",
                at=("sessionAffinity",),
                hint="abTest already pins matching requests to the canary",
            )

    def _check_webhooks(self) -> None:
        seen: dict[str, int] = {}
        for i, hook in enumerate(self.webhooks):
            if hook.name in seen:
                raise invalid(
                    f"duplicate webhook name {hook.name!r} (also webhooks[{seen[hook.name]}])",
                    at=("webhooks", i, "name"),
                    hint="names identify hooks in status and events; make them unique",
                )
            seen[hook.name] = i

    def warnings(self) -> list[Issue]:
        """Valid but probably not what was meant; paths relative to the spec."""
        out = [w.located(path=("analysis", *w.path)) for w in self.analysis.warnings()]
        if self.skip_analysis and self.analysis.metrics:
            out.append(Issue(("skipAnalysis",),
                             "skipAnalysis is true: the metrics are never checked",
                             hint="set it to false to gate the rollout on them",
                             severity="warning"))
        return out
