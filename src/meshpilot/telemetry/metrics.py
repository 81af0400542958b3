"""Cumulative Istio metric series: counters and histograms keyed by their label values.

A series is created once per distinct label tuple and then only incremented; the
collector caches which series an access-log entry lands in, so the steady state is a
dict lookup and a few integer additions per entry. Histograms keep one count per bucket
(not cumulative) and are made cumulative when rendered; a value lands in the first
bucket whose upper bound is >= the value (Prometheus `le` semantics).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from .model import DEFAULT_BUCKETS, HTTP_LABELS, TCP_LABELS

BUCKETS = DEFAULT_BUCKETS
N_BUCKETS = len(BUCKETS) + 1  # + the +Inf bucket


def bucket_index(value: float) -> int:
    """Index of the bucket `value` falls in (len(BUCKETS) is +Inf)."""
    return bisect_left(BUCKETS, value)


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * N_BUCKETS)
    sum: float = 0
    count: int = 0

    def observe(self, value: float) -> int:
        """Record one value; returns its bucket index (the window reuses it)."""
        i = bisect_left(BUCKETS, value)
        self.counts[i] += 1
        self.sum += value
        self.count += 1
        return i

    def cumulative(self) -> list[int]:
        out, total = [], 0
        for c in self.counts:
            total += c
            out.append(total)
        return out


@dataclass
class HttpSeries:
    """istio_requests_total, istio_request_duration_milliseconds, istio_request_bytes and
    istio_response_bytes for one label tuple (they share their labels)."""

    labels: tuple[str, ...]
    requests: int = 0
    duration: Histogram = field(default_factory=Histogram)
    request_bytes: Histogram = field(default_factory=Histogram)
    response_bytes: Histogram = field(default_factory=Histogram)


@dataclass
class TcpSeries:
    """The four istio_tcp_* counters for one label tuple."""

    labels: tuple[str, ...]
    sent_bytes: int = 0
    received_bytes: int = 0
    opened: int = 0
    closed: int = 0


class MetricStore:
    """Every series, by label tuple (HTTP_LABELS / TCP_LABELS order)."""

    def __init__(self) -> None:
        self.http: dict[tuple[str, ...], HttpSeries] = {}
        self.tcp: dict[tuple[str, ...], TcpSeries] = {}

    def http_series(self, labels: tuple[str, ...]) -> HttpSeries:
        assert len(labels) == len(HTTP_LABELS)
        series = self.http.get(labels)
        if series is None:
            series = self.http[labels] = HttpSeries(labels)
        return series

    def tcp_series(self, labels: tuple[str, ...]) -> TcpSeries:
        assert len(labels) == len(TCP_LABELS)
        series = self.tcp.get(labels)
        if series is None:
            series = self.tcp[labels] = TcpSeries(labels)
        return series
