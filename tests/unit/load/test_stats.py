"""Percentile math and the histogram: results must be exact, not bucket-approximated."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from meshpilot.load.stats import histogram, percentile, percentile_key, summarize


def test_percentile_linear_interpolation() -> None:
    assert percentile([1, 2], 50) == 1.5
    assert percentile([10], 99.9) == 10
    values = list(range(1, 101))            # 1..100
    assert percentile(values, 0) == 1
    assert percentile(values, 100) == 100
    assert percentile(values, 50) == 50.5
    assert percentile(values, 90) == pytest.approx(90.1)
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile(values, 101)


def test_percentile_matches_statistics_quantiles_inclusive() -> None:
    rng = random.Random(7)
    values = sorted(rng.randint(1, 10**7) for _ in range(1001))
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    for i in (1, 50, 75, 90, 99):
        assert percentile(values, i) == pytest.approx(cuts[i - 1])


def test_summarize_in_ms() -> None:
    ns = sorted([1_000_000, 2_000_000, 3_000_000, 4_000_000])
    s = summarize(ns, (50, 99.9))
    assert s["min"] == 1.0 and s["max"] == 4.0 and s["avg"] == 2.5
    assert s["p50"] == 2.5
    assert s["p99.9"] == pytest.approx(3.997)
    assert s["stddev"] == pytest.approx(statistics.pstdev([1, 2, 3, 4]))
    assert summarize([], (50,)) == {}


def test_percentile_key() -> None:
    assert percentile_key(50.0) == "p50"
    assert percentile_key(99.9) == "p99.9"


def test_histogram_counts_and_edges() -> None:
    ms = 1_000_000
    ns = sorted([int(0.05 * ms), int(0.15 * ms), int(0.15 * ms), int(2.5 * ms), 20 * 1000 * ms])
    buckets = histogram(ns, 0.0001)
    assert sum(b["count"] for b in buckets) == len(ns)
    assert buckets[0]["start_ms"] == 0.05            # first bucket starts at the min
    assert buckets[-1]["end_ms"] == 20_000.0          # beyond the last edge: up to the max
    assert buckets[-1]["percent"] == 100.0
    assert [b["count"] for b in buckets] == [1, 2, 1, 1]
    assert histogram([], 0.001) == []
