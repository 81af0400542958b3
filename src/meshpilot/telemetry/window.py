"""Recent request statistics per destination, for canary analysis.

Cumulative counters answer "how many since the start"; a canary controller asks "over
the last minute, how many requests did v2 get, how many succeeded, how slow were they" —
what Flagger asks Prometheus with `rate(...[1m])` and `histogram_quantile`. This keeps a
ring of one slot per second (`RING_SECONDS`, a little over 10 minutes) holding, per
(reporter, destination_service_name, destination_service_namespace, destination_version),
the request count, the 5xx count and the duration histogram's bucket counts of that
second, and answers those questions without a Prometheus:

- success rate: non-5xx / all, as Flagger's `request-success-rate` (a request with no
  response, code 0, counts as a success there too);
- latency: Prometheus `histogram_quantile` on Envoy's buckets, interpolated linearly
  inside the bucket the rank falls in (see `histogram_quantile`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .metrics import BUCKETS, N_BUCKETS
from .promql import bucket_quantile

RING_SECONDS = 660
MAX_WINDOW = 600

WindowKey = tuple[str, str, str, str]  # reporter, service name, service namespace, version


class _Slot:
    __slots__ = ("second", "stats")

    def __init__(self) -> None:
        self.second = -1
        self.stats: dict[WindowKey, list[int]] = {}


def _new_stats() -> list[int]:
    """[requests, 5xx, bucket counts...]."""
    return [0] * (2 + N_BUCKETS)


@dataclass(frozen=True)
class WindowSummary:
    service: str
    namespace: str | None
    version: str | None
    reporter: str
    seconds: int
    requests: int
    errors_5xx: int
    success_rate: float | None  # None when there were no requests
    quantile: float
    latency_ms: float | None  # None when there were no requests

    def to_dict(self) -> dict[str, object]:
        return {
            "service": self.service, "namespace": self.namespace, "version": self.version,
            "reporter": self.reporter, "seconds": self.seconds, "requests": self.requests,
            "errors5xx": self.errors_5xx, "successRate": self.success_rate,
            "quantile": self.quantile, "latencyMs": self.latency_ms,
        }


def histogram_quantile(q: float, cumulative: Sequence[float],
                       bounds: Sequence[float] = BUCKETS) -> float:
    """Prometheus's histogram_quantile on the window's buckets: `cumulative[i]` counts
    values <= bounds[i]; the last entry is the +Inf bucket (promql.bucket_quantile)."""
    return bucket_quantile(q, list(zip([*bounds, math.inf], cumulative, strict=True)))


class RequestWindow:
    """The per-second ring (see module doc). Not thread-safe: fed and queried on the
    control plane's event loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._ring = [_Slot() for _ in range(RING_SECONDS)]

    def stats(self, key: WindowKey) -> list[int]:
        """The counters of `key` for the current second (to increment in place; valid
        until the second changes, so callers fetch it per entry)."""
        now = int(self._clock())
        slot = self._ring[now % RING_SECONDS]
        if slot.second != now:
            slot.second = now
            slot.stats = {}
        stats = slot.stats.get(key)
        if stats is None:
            stats = slot.stats[key] = _new_stats()
        return stats

    def record(self, key: WindowKey, code: int, bucket: int) -> None:
        stats = self.stats(key)
        stats[0] += 1
        if 500 <= code <= 599:
            stats[1] += 1
        stats[2 + bucket] += 1

    def summary(self, service: str, *, version: str | None = None,
                namespace: str | None = None, reporter: str = "destination",
                seconds: int = 60, quantile: float = 0.99) -> WindowSummary:
        """Requests to `service` (destination_service_name) over the last `seconds`
        (including the current one), optionally only `version` / `namespace`."""
        seconds = max(1, min(int(seconds), MAX_WINDOW))
        now = int(self._clock())
        requests = errors = 0
        buckets = [0] * N_BUCKETS
        for second in range(now - seconds + 1, now + 1):
            slot = self._ring[second % RING_SECONDS]
            if slot.second != second:
                continue
            for (rep, name, ns, ver), stats in slot.stats.items():
                if rep != reporter or name != service:
                    continue
                if (version is not None and ver != version) or (
                        namespace is not None and ns != namespace):
                    continue
                requests += stats[0]
                errors += stats[1]
                for i in range(N_BUCKETS):
                    buckets[i] += stats[2 + i]
        cumulative, total = [], 0
        for c in buckets:
            total += c
            cumulative.append(total)
        latency = histogram_quantile(quantile, cumulative) if requests else math.nan
        return WindowSummary(
            service=service, namespace=namespace, version=version, reporter=reporter,
            seconds=seconds, requests=requests, errors_5xx=errors,
            success_rate=(requests - errors) / requests if requests else None,
            quantile=quantile, latency_ms=None if math.isnan(latency) else latency,
        )
