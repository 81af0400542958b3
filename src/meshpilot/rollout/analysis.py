"""Canary analysis: evaluate each metric of a Canary once and say pass, fail, no-data or error.

Two kinds of checks:

- built-in `request-success-rate` (non-5xx %, 0-100, Flagger's definition) and
  `request-duration` (a latency quantile in ms), answered by meshpilot's own telemetry
  window (`MetricsSource`, i.e. `TelemetryCollector.window_summary`) for the canary
  subset's `destination_version`, `reporter="destination"` as Flagger queries Istio;
- external `prometheus` (an instant PromQL query that must give one number) and `http`
  (GET a JSON document, a dotted path to a number), each with a timeout, one attempt.

Why four verdicts and not a boolean: the tutorial's script (and Flagger) turn "the canary
got no traffic" into "the canary failed", and a crashed query into either. Here too few
requests (`minRequests`), an empty PromQL vector or NaN are `no-data` (the controller
applies the metric's `noTraffic` policy: fail, hold or pass), and anything that prevented
a measurement (HTTP error, bad JSON, several samples) is `error`, which the controller
counts as a failure. A failing check always names its value and the bound it missed,
Flagger-style: "success rate 97.50% < 99%", "request duration 612ms > 500ms".

Baseline-relative checks compare the canary with the stable subset over the same window:
success rate `canary >= stable - maxDecrease` (points), duration
`canary <= stable * maxRatio`. When `thresholdRange` is given too, both must hold. When the
stable subset has fewer than `minRequests` requests in the window there is nothing to
compare with: the absolute `thresholdRange` alone decides and the message says the
baseline was skipped, or, with no absolute threshold, the verdict is `no-data` (so the
noTraffic policy applies rather than a silent pass).

Windows: the telemetry ring has one slot per whole second and a summary of N seconds
covers the current (partial) second and the N-1 before it. The window is therefore
rounded *down* to whole seconds (at least 1): a check at the end of a dwell of `interval`
seconds then never sees requests from before the dwell began, i.e. from the previous
weight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal, Protocol

import aiohttp

from meshpilot.api.base import parse_duration
from meshpilot.api.canary import (
    BUILTIN_METRICS,
    DEFAULT_MIN_REQUESTS,
    DEFAULT_QUANTILE,
    SUCCESS_RATE,
)
from meshpilot.telemetry.window import MAX_WINDOW, WindowSummary

if TYPE_CHECKING:
    from meshpilot.api.canary import CanaryMetric

log = logging.getLogger(__name__)

Verdict = Literal["pass", "fail", "no-data", "error"]

EXTERNAL_TIMEOUT = 10.0  # seconds, when a prometheus/http check sets none
MAX_BODY = 1 << 20  # a metric answer is a few hundred bytes; refuse to buffer megabytes
EXCERPT = 200  # characters of a response body quoted in a message


@dataclass(frozen=True)
class CheckResult:
    """One evaluation of one metric; the controller stores it in `status.checks`."""

    name: str
    verdict: Verdict
    value: float | None  # in the metric's unit (% for success rate, ms for duration)
    threshold: str  # e.g. ">= 99", "<= 500", ">= stable - 1 (98.5)"
    requests: int | None  # canary requests in the window (None for external checks)
    message: str
    baseline: float | None = None  # the stable subset's value, for baseline checks


class MetricsSource(Protocol):
    """What the built-in checks need from telemetry (`TelemetryCollector` provides it)."""

    def window_summary(self, service: str, *, version: str | None = None,
                       namespace: str | None = None, reporter: str = "destination",
                       seconds: int = 60, quantile: float = 0.99) -> WindowSummary: ...


@dataclass(frozen=True)
class AnalysisTarget:
    """Whose telemetry the built-in checks read."""

    service_name: str  # destination_service_name (e.g. "sample-app")
    service_namespace: str
    canary_version: str  # destination_version label of the canary subset
    stable_version: str


def duration_seconds(value: object, default: float) -> float:
    """Seconds in a model duration: a Go-style string ("30s", "1m30s", via the API's own
    `parse_duration`), a number of seconds, a timedelta, or None (-> `default`)."""
    if value is None:
        return default
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool):
        raise TypeError(f"not a duration: {value!r}")
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, str):
        return float(parse_duration(value))
    raise TypeError(f"not a duration: {value!r}")


def window_seconds(window: float) -> int:
    """The whole-second window a summary is asked for (see the module doc: rounded down,
    at least 1, at most what the telemetry ring keeps)."""
    return max(1, min(int(window), MAX_WINDOW))


# --- formatting ------------------------------------------------------------------------------


def format_number(value: float) -> str:
    """A bound or a plain value as people write it: 99, 99.5, 0.95, 1e-05."""
    if not math.isfinite(value):
        return str(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e6 else (
        f"{value:.4f}".rstrip("0").rstrip("."))


def _pct(value: float) -> str:
    return f"{value:.2f}%"


def _ms(value: float) -> str:
    """Milliseconds as a latency is read: 612ms, 17.5ms, 0.75ms."""
    if value >= 100:
        return f"{value:.0f}ms"
    return f"{value:.2f}".rstrip("0").rstrip(".") + "ms"


def excerpt(text: str, limit: int = EXCERPT) -> str:
    """A response body fit for one line of status: whitespace collapsed, cut at `limit`."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


# --- evaluation ------------------------------------------------------------------------------


class NoCheckData(Exception):
    """The measurement has no value (no traffic, empty vector, NaN): verdict no-data."""


class CheckError(Exception):
    """The measurement could not be taken (HTTP, JSON, PromQL errors): verdict error."""


@dataclass(frozen=True)
class _Unit:
    """How one metric's values and bounds read in messages."""

    label: str  # "success rate", "request duration", or the metric's name
    value: Callable[[float], str]  # for measured values
    bound: Callable[[float], str]  # for thresholds


_SUCCESS_UNIT = _Unit("success rate", _pct, lambda b: f"{format_number(b)}%")
_DURATION_UNIT = _Unit("request duration", _ms, _ms)


def _threshold_parts(metric: CanaryMetric) -> tuple[float | None, float | None]:
    tr = getattr(metric, "threshold_range", None)
    if tr is None:
        return None, None
    return getattr(tr, "min", None), getattr(tr, "max", None)


def _absolute_text(lo: float | None, hi: float | None) -> list[str]:
    return ([f">= {format_number(lo)}"] if lo is not None else []) + (
        [f"<= {format_number(hi)}"] if hi is not None else [])


def _absolute_failure(value: float, lo: float | None, hi: float | None,
                      unit: _Unit) -> str | None:
    """Flagger's wording for a value outside thresholdRange, or None when inside."""
    if lo is not None and value < lo:
        return f"{unit.label} {unit.value(value)} < {unit.bound(lo)}"
    if hi is not None and value > hi:
        return f"{unit.label} {unit.value(value)} > {unit.bound(hi)}"
    return None


def _baseline_text(success: bool, max_decrease: float | None, max_ratio: float | None,
                   bound: float | None = None) -> str:
    """">= stable - 1 (98.5)" / "<= stable x 1.2 (480)"; the bound once stable is known."""
    text = (f">= stable - {format_number(max_decrease or 0)}" if success
            else f"<= stable x {format_number(max_ratio or 1)}")
    return text if bound is None else f"{text} ({format_number(round(bound, 4))})"


def _external_result(metric: CanaryMetric, value: float) -> CheckResult:
    """Judge a number an external provider returned against thresholdRange."""
    lo, hi = _threshold_parts(metric)
    unit = _Unit(metric.name, format_number, format_number)
    threshold = ", ".join(_absolute_text(lo, hi)) or "none"
    failure = _absolute_failure(value, lo, hi, unit)
    if failure is not None:
        return CheckResult(metric.name, "fail", value, threshold, None, failure)
    within = f" ({threshold})" if lo is not None or hi is not None else " (no threshold)"
    return CheckResult(metric.name, "pass", value, threshold, None,
                       f"{metric.name} {format_number(value)}{within}")


def _builtin(metric: CanaryMetric, target: AnalysisTarget, source: MetricsSource,
             default_window: float) -> CheckResult:
    """request-success-rate / request-duration from the telemetry window (see module doc)."""
    name = metric.name
    success = name == SUCCESS_RATE
    unit = _SUCCESS_UNIT if success else _DURATION_UNIT
    seconds = window_seconds(duration_seconds(getattr(metric, "window", None), default_window))
    quantile = getattr(metric, "quantile", None)
    quantile = DEFAULT_QUANTILE if quantile is None else float(quantile)
    min_requests = getattr(metric, "min_requests", None)
    min_requests = DEFAULT_MIN_REQUESTS if min_requests is None else int(min_requests)
    lo, hi = _threshold_parts(metric)
    baseline = getattr(metric, "baseline", None)
    max_decrease = getattr(baseline, "max_decrease", None) if baseline is not None else None
    max_ratio = getattr(baseline, "max_ratio", None) if baseline is not None else None
    # Baseline-relative? (The model allows only the field that fits the metric.)
    compare = (max_decrease if success else max_ratio) is not None
    texts = _absolute_text(lo, hi)

    def result(verdict: Verdict, value: float | None, requests: int | None, message: str,
               base: float | None = None, extra: Sequence[str] = ()) -> CheckResult:
        return CheckResult(name, verdict, value, ", ".join([*texts, *extra]) or "none",
                           requests, message, base)

    def summary(version: str) -> WindowSummary:
        return source.window_summary(target.service_name, version=version,
                                     namespace=target.service_namespace,
                                     reporter="destination", seconds=seconds,
                                     quantile=quantile)

    def value_of(s: WindowSummary) -> float | None:
        raw = s.success_rate if success else s.latency_ms
        if raw is None or math.isnan(raw):
            return None
        return raw * 100 if success else raw

    canary = summary(target.canary_version)
    needed = max(min_requests, 1)  # zero requests never have a value, whatever minRequests says
    value = value_of(canary) if canary.requests >= needed else None
    if value is None:
        extra = [_baseline_text(success, max_decrease, max_ratio)] if compare else []
        return result("no-data", None, canary.requests,
                      f"no traffic: {canary.requests} < minRequests {min_requests} "
                      f"in the last {canary.seconds}s", extra=extra)

    failures: list[str] = []
    notes: list[str] = []
    failure = _absolute_failure(value, lo, hi, unit)
    if failure is not None:
        failures.append(failure)
    base_value: float | None = None
    extra: list[str] = []
    if compare:
        stable = summary(target.stable_version)
        base_value = value_of(stable) if stable.requests >= needed else None
        if base_value is None:
            extra.append(_baseline_text(success, max_decrease, max_ratio))
            why = (f"stable {target.stable_version} has {stable.requests} < minRequests "
                   f"{min_requests} in the last {stable.seconds}s")
            if lo is None and hi is None:
                return result("no-data", value, canary.requests,
                              f"no baseline: {why}", extra=extra)
            notes.append(f"baseline skipped: {why}")
        elif success and max_decrease is not None:
            bound = base_value - max_decrease
            extra.append(_baseline_text(success, max_decrease, max_ratio, bound))
            if value < bound:
                failures.append(f"success rate {_pct(value)} < stable {_pct(base_value)} - "
                                f"{format_number(max_decrease)}")
        elif max_ratio is not None:
            bound = base_value * max_ratio
            extra.append(_baseline_text(success, max_decrease, max_ratio, bound))
            if value > bound:
                failures.append(f"request duration {_ms(value)} > stable {_ms(base_value)} "
                                f"x {format_number(max_ratio)}")

    if failures:
        return result("fail", value, canary.requests, "; ".join([*failures, *notes]),
                      base_value, extra)
    label = unit.label if success else f"p{format_number(quantile * 100)} {unit.label}"
    parts = [f"{label} {unit.value(value)}"]
    if base_value is not None:
        parts.append(f"stable {unit.value(base_value)}")
    parts.append(f"{canary.requests} requests in {canary.seconds}s")
    return result("pass", value, canary.requests, ", ".join(parts + notes), base_value, extra)


# --- external providers --------------------------------------------------------------------


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most `limit` + 1 bytes of the body (so callers can tell "more than limit"):
    a huge or endless body costs a bounded buffer and the timeout, never all memory."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit:
        chunk = await resp.content.read(limit + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


async def _read_json(resp: aiohttp.ClientResponse, what: str) -> Any:
    """The body as JSON, refusing bodies over MAX_BODY."""
    body = await read_limited(resp, MAX_BODY)
    if len(body) > MAX_BODY:
        raise CheckError(f"{what}: response larger than {MAX_BODY} bytes")
    text = body.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        raise CheckError(f"{what}: HTTP {resp.status}, not JSON: {excerpt(text)!r}") from None


async def _get_json(session: aiohttp.ClientSession, url: str, what: str,
                    timeout: float, params: dict[str, str] | None = None,
                    ) -> tuple[int, Any]:
    try:
        async with session.get(url, params=params,
                               timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            return resp.status, await _read_json(resp, what)
    except TimeoutError:
        raise CheckError(f"{what}: timed out after {format_number(timeout)}s") from None
    except aiohttp.ClientError as e:
        raise CheckError(f"{what}: {type(e).__name__}: {e}") from None


def _sample(value: Any) -> float:
    """A Prometheus sample value ("0.97", "NaN", "+Inf") as a finite float."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise CheckError(f"query returned a non-numeric sample {value!r}") from None
    if math.isnan(number):
        raise NoCheckData("query returned NaN (no samples in range, e.g. 0/0)")
    if math.isinf(number):
        raise CheckError(f"query returned {value}: not a usable number")
    return number


async def _prometheus(metric: CanaryMetric, session: aiohttp.ClientSession) -> float:
    """One instant query; the answer must be a scalar or a one-sample vector."""
    prom = metric.prometheus
    assert prom is not None
    address = str(prom.address).rstrip("/")
    what = f"prometheus {address}"
    timeout = duration_seconds(getattr(prom, "timeout", None), EXTERNAL_TIMEOUT)
    status, body = await _get_json(session, f"{address}/api/v1/query", what, timeout,
                                   params={"query": prom.query})
    if not isinstance(body, dict):
        raise CheckError(f"{what}: HTTP {status}, unexpected answer {excerpt(str(body))!r}")
    if body.get("status") != "success":
        # 400 bad_data / 422 execution / 503 timeout carry errorType and error.
        raise CheckError(f"{what}: HTTP {status}, {body.get('errorType', 'error')}: "
                      f"{excerpt(str(body.get('error', body)))}")
    data = body.get("data") or {}
    kind, result = data.get("resultType"), data.get("result")
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        return _sample(result[1])
    if kind != "vector" or not isinstance(result, list):
        raise CheckError(f"query returned a {kind}; want a scalar or an instant vector with "
                      f"one sample")
    if not result:
        raise NoCheckData("query returned no samples (empty vector)")
    if len(result) > 1:
        shown = ", ".join(json.dumps(r.get("metric", {}), sort_keys=True) for r in result[:3])
        raise CheckError(f"query returned {len(result)} samples, want one (aggregate it, e.g. "
                      f"with sum()): {excerpt(shown)}")
    try:
        return _sample(result[0]["value"][1])
    except (KeyError, IndexError, TypeError):
        raise CheckError(f"unexpected sample {excerpt(json.dumps(result[0]))}") from None


def json_path_value(document: Any, path: str | None) -> Any:
    """Follow a dotted path ("value", "data.rate", "items.0.x"; a leading "$." or "{$.}"
    wrapper as Argo writes it is accepted) through dicts and lists."""
    text = (path or "").strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:].lstrip(".")
    node, walked = document, "$"
    for part in text.split(".") if text else ():
        if isinstance(node, dict):
            if part not in node:
                keys = ", ".join(sorted(map(str, node))[:10])
                raise CheckError(f"jsonPath {path!r}: no key {part!r} in {walked} "
                              f"(keys: {keys or 'none'})")
            node = node[part]
        elif isinstance(node, list):
            if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                raise CheckError(f"jsonPath {path!r}: {walked} is a list of {len(node)}, "
                              f"{part!r} is not an index in it")
            node = node[int(part)]
        else:
            raise CheckError(f"jsonPath {path!r}: {walked} is {json.dumps(node)}, not an object "
                          f"or list")
        walked = f"{walked}.{part}"
    return node


def _number_at(document: Any, path: str | None) -> float:
    """The number at `path`. Numbers and numeric strings count (Prometheus-backed APIs
    send "0.97"); null means the endpoint has no value yet (no-data); anything else is an
    error."""
    value = json_path_value(document, path)
    if value is None:
        raise NoCheckData(f"jsonPath {path!r} is null")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise CheckError(f"jsonPath {path!r} is {excerpt(json.dumps(value))}, not a number")
    try:
        number = float(value)
    except ValueError:
        raise CheckError(f"jsonPath {path!r} is {value!r}, not a number") from None
    if math.isnan(number):
        raise NoCheckData(f"jsonPath {path!r} is NaN")
    if math.isinf(number):
        raise CheckError(f"jsonPath {path!r} is {value!r}, not a usable number")
    return number


async def _http(metric: CanaryMetric, session: aiohttp.ClientSession) -> float:
    check = metric.http
    assert check is not None
    url = str(check.url)
    what = f"GET {url}"
    timeout = duration_seconds(getattr(check, "timeout", None), EXTERNAL_TIMEOUT)
    status, body = await _get_json(session, url, what, timeout)
    if not 200 <= status <= 299:
        raise CheckError(f"{what}: HTTP {status}: {excerpt(json.dumps(body))}")
    return _number_at(body, getattr(check, "json_path", None))


async def _external(metric: CanaryMetric, session: aiohttp.ClientSession) -> CheckResult:
    lo, hi = _threshold_parts(metric)
    threshold = ", ".join(_absolute_text(lo, hi)) or "none"
    provider = _prometheus if getattr(metric, "prometheus", None) is not None else _http
    try:
        value = await provider(metric, session)
    except NoCheckData as e:
        return CheckResult(metric.name, "no-data", None, threshold, None, str(e))
    except CheckError as e:
        return CheckResult(metric.name, "error", None, threshold, None, str(e))
    return _external_result(metric, value)


def _is_external(metric: CanaryMetric) -> bool:
    return (getattr(metric, "prometheus", None) is not None
            or getattr(metric, "http", None) is not None)


async def _guarded(metric: CanaryMetric, check: Awaitable[CheckResult]) -> CheckResult:
    """Run one check; a bug in it becomes this metric's `error`, not the whole tick's."""
    try:
        return await check
    except Exception as e:  # a check must never take the controller down
        log.exception("canary check %s crashed", metric.name)
        return CheckResult(metric.name, "error", None, "", None,
                           f"check crashed: {type(e).__name__}: {e}")


async def run_checks(metrics: Sequence[CanaryMetric], target: AnalysisTarget,
                     source: MetricsSource, default_window: float) -> list[CheckResult]:
    """Evaluate every metric once, in declaration order.

    Built-in checks read the in-process telemetry window synchronously (a few hundred
    dict lookups: cheap, and the window is only safe to read on the event loop); external
    ones run concurrently, each bounded by its timeout and tried once, so a tick costs at
    most the slowest external timeout. `default_window` (seconds, normally the analysis
    interval) applies to metrics without a `window`.
    """

    async def builtin(metric: CanaryMetric) -> CheckResult:
        return _builtin(metric, target, source, default_window)

    async def unknown(metric: CanaryMetric) -> CheckResult:
        return CheckResult(metric.name, "error", None, "", None,
                           f"unknown metric {metric.name!r}: the built-ins are "
                           f"{' and '.join(BUILTIN_METRICS)}; other metrics need a "
                           f"prometheus or http provider")

    results: list[CheckResult | None] = [None] * len(metrics)
    external = [i for i, m in enumerate(metrics) if _is_external(m)]
    for i, metric in enumerate(metrics):
        if i in external:
            continue
        check = builtin(metric) if metric.name in BUILTIN_METRICS else unknown(metric)
        results[i] = await _guarded(metric, check)
    if external:
        # trust_env=False (the default): checks go where the Canary says, not via a proxy.
        async with aiohttp.ClientSession() as session:
            done = await asyncio.gather(
                *(_guarded(metrics[i], _external(metrics[i], session)) for i in external))
        for i, res in zip(external, done, strict=True):
            results[i] = res
    return [r for r in results if r is not None]
