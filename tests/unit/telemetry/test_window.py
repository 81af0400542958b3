"""The per-second window and Prometheus's histogram_quantile, against hand-computed values."""

from __future__ import annotations

import math

import pytest

from meshpilot.telemetry.metrics import BUCKETS, Histogram, bucket_index
from meshpilot.telemetry.window import RING_SECONDS, RequestWindow, histogram_quantile


class Clock:
    def __init__(self, now: float = 5000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_bucket_le_semantics() -> None:
    assert bucket_index(0) == 0 and bucket_index(0.5) == 0  # value <= le
    assert bucket_index(0.51) == 1 and bucket_index(1) == 1 and bucket_index(2) == 2
    assert bucket_index(3600000) == len(BUCKETS) - 1
    assert bucket_index(3600001) == len(BUCKETS)  # +Inf
    h = Histogram()
    for v in (0.5, 1, 1, 7, 4_000_000):
        h.observe(v)
    cumulative = h.cumulative()
    assert cumulative[0] == 1 and cumulative[1] == 3 and cumulative[3] == 4
    assert cumulative[-2] == 4 and cumulative[-1] == 5 == h.count


def test_quantile_interpolates_inside_the_bucket() -> None:
    bounds = (1, 5, 10)
    # 10 observations: 2 in (0,1], 6 in (1,5], 2 in (5,10], none above.
    cumulative = [2, 8, 10, 10]
    # p50: rank 5 -> bucket (1,5]: 1 + 4 * (5-2)/6 = 3.
    assert histogram_quantile(0.5, cumulative, bounds) == pytest.approx(3.0)
    # p10: rank 1 -> first bucket, starting at 0: 0 + 1 * 1/2.
    assert histogram_quantile(0.1, cumulative, bounds) == pytest.approx(0.5)
    # p90: rank 9 -> (5,10]: 5 + 5 * (9-8)/2 = 7.5.
    assert histogram_quantile(0.9, cumulative, bounds) == pytest.approx(7.5)
    assert histogram_quantile(1.0, cumulative, bounds) == pytest.approx(10.0)


def test_quantile_in_inf_bucket_is_the_highest_bound() -> None:
    assert histogram_quantile(0.99, [0, 0, 1, 10], (1, 5, 10)) == 10.0


def test_quantile_edges() -> None:
    assert math.isnan(histogram_quantile(0.5, [0, 0, 0], (1, 2)))
    assert histogram_quantile(-0.1, [1, 1, 1], (1, 2)) == -math.inf
    assert histogram_quantile(1.1, [1, 1, 1], (1, 2)) == math.inf
    assert histogram_quantile(0.0, [4, 4, 4], (1, 2)) == 0.0


def test_window_counts_success_and_latency_over_the_last_seconds() -> None:
    clock = Clock()
    w = RequestWindow(clock)
    key_v1 = ("destination", "reviews", "bookinfo", "v1")
    key_v2 = ("destination", "reviews", "bookinfo", "v2")
    for _ in range(90):
        w.record(key_v1, 200, bucket_index(3))  # (1, 5] ms
    for _ in range(10):
        w.record(key_v1, 503, bucket_index(40))  # (25, 50] ms
    w.record(key_v2, 200, bucket_index(1))
    clock.now += 30
    w.record(key_v1, 0, bucket_index(0.2))  # no response: not a 5xx (Flagger's rule)
    s = w.summary("reviews", version="v1", seconds=60, quantile=0.95)
    assert (s.requests, s.errors_5xx) == (101, 10)
    assert s.success_rate == pytest.approx(91 / 101)
    # rank 95.95: buckets le0.5=1, le1=1, le5=91, le10=91, le25=91, le50=101 ->
    # 25 + 25 * (95.95 - 91) / 10.
    assert s.latency_ms == pytest.approx(25 + 25 * (95.95 - 91) / 10)
    # Only the last 10 seconds: the request of now.
    recent = w.summary("reviews", version="v1", seconds=10)
    assert (recent.requests, recent.success_rate) == (1, 1.0)
    assert w.summary("reviews", seconds=60).requests == 102  # every version
    assert w.summary("reviews", seconds=60, reporter="source").requests == 0
    assert w.summary("reviews", seconds=60, namespace="other").requests == 0


def test_window_forgets_what_the_ring_overwrote() -> None:
    clock = Clock()
    w = RequestWindow(clock)
    key = ("source", "a", "ns", "v1")
    w.record(key, 200, 0)
    clock.now += RING_SECONDS  # same slot, another second
    w.record(key, 200, 0)
    assert w.summary("a", reporter="source", seconds=600).requests == 1
    clock.now += 601
    empty = w.summary("a", reporter="source", seconds=600)
    assert (empty.requests, empty.success_rate, empty.latency_ms) == (0, None, None)
