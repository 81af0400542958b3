"""Latency statistics: exact percentiles from every recorded latency, plus a histogram.

The engine records each latency (integer nanoseconds), so merging processes is a plain
concatenation and percentiles are exact, not bucket approximations. Percentiles use
linear interpolation between the closest ranks (numpy's default "linear" method), so
p50 of [1, 2] is 1.5 and p100 is the max. The histogram only exists for display and for
consumers that want a distribution shape; its buckets follow fortio's boundary list
scaled by a resolution (default 0.1 ms, finer than fortio's 1 ms, since local runs are
often sub-millisecond).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Sequence
from operator import mul
from typing import Any

# fortio's histogramBucketValues, in units of the resolution
FORTIO_BUCKETS: tuple[int, ...] = (
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
    12, 14, 16, 18, 20,
    25, 30, 35, 40, 45, 50,
    60, 70, 80, 90, 100,
    120, 140, 160, 180, 200,
    250, 300, 350, 400, 450, 500,
    600, 700, 800, 900, 1000,
    2000, 3000, 4000, 5000, 7500, 10000,
    20000, 30000, 40000, 50000, 75000, 100000,
)


def percentile(sorted_values: Sequence[float], p: float) -> float:
    """The p-th percentile (0..100) of already-sorted values, linearly interpolated."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    if not 0 <= p <= 100:
        raise ValueError(f"percentile {p} outside 0..100")
    rank = p / 100.0 * (n - 1)
    lo = int(rank)
    hi = min(lo + 1, n - 1)
    frac = rank - lo
    a, b = sorted_values[lo], sorted_values[hi]
    return a + (b - a) * frac


def percentile_key(p: float) -> str:
    """JSON key for a percentile: p50, p99.9."""
    return f"p{p:g}"


def histogram(sorted_ns: Sequence[int], resolution_s: float) -> list[dict[str, Any]]:
    """Non-empty buckets as fortio exports them: start/end (ms), count, cumulative %.

    The first bucket starts at the min and the last ends at the max, like fortio.
    """
    n = len(sorted_ns)
    if n == 0:
        return []
    step_ns = resolution_s * 1e9
    edges = [b * step_ns for b in FORTIO_BUCKETS]
    out: list[dict[str, Any]] = []
    lo_idx = 0
    cumulative = 0
    lo_val = float(sorted_ns[0])
    for edge in [*edges[1:], math.inf]:
        hi_idx = bisect_left(sorted_ns, edge, lo_idx) if edge != math.inf else n
        count = hi_idx - lo_idx
        if count:
            cumulative += count
            end = min(edge, float(sorted_ns[-1]))
            start = float(sorted_ns[0]) if not out else lo_val
            out.append({
                "start_ms": round(start / 1e6, 6),
                "end_ms": round(end / 1e6, 6),
                "count": count,
                "percent": round(100.0 * cumulative / n, 4),
            })
        lo_idx = hi_idx
        lo_val = edge
        if lo_idx >= n:
            break
    return out


def summarize(sorted_ns: Sequence[int], percentiles: Sequence[float]) -> dict[str, float]:
    """min/avg/max/stddev and the requested percentiles, in milliseconds."""
    n = len(sorted_ns)
    if n == 0:
        return {}
    total = sum(sorted_ns)
    mean = total / n
    # integer ns: exact integer arithmetic, so the one-pass variance cannot cancel badly
    var = (n * sum(map(mul, sorted_ns, sorted_ns)) - total * total) / (n * n)
    out = {
        "min": sorted_ns[0] / 1e6,
        "avg": mean / 1e6,
        "max": sorted_ns[-1] / 1e6,
        "stddev": math.sqrt(var) / 1e6,
    }
    for p in percentiles:
        out[percentile_key(p)] = percentile(sorted_ns, p) / 1e6
    return out
