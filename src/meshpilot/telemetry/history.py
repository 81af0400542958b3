"""A short sample history of the control plane's Istio series, queryable with PromQL.

Why: the seed's canary check asks Prometheus `sum(rate(...[5m])) / sum(rate(...[5m]))` and
`histogram_quantile(0.95, ...)`. A user without a Prometheus has only the cumulative
counters of `/metrics`, and a rate needs their values over time. So the control plane
records them itself, like a one-target Prometheus with a short retention: every
`interval` (5 s by default) it stores the cumulative value of every `istio_*` series
(`istio_requests_total`, each histogram's `_bucket{le}`, `_sum` and `_count`, the four
`istio_tcp_*` counters), keeps `retention` (15 min, enough for a `[5m]` range at any time
in the last 10 min) and answers PromQL over it (promql.py) at `GET /api/v1/query` and in
`meshpilot query`. A query for "now" also sees a sample taken at query time, so the
newest requests count without waiting for the next tick; that sample is not stored.

Samples are taken at wall-clock multiples of the interval (…:00, :05, :10 for 5 s), as
Prometheus keeps each target at a fixed offset in its interval: sample times are
predictable, which tests rely on. Timestamps are whole milliseconds, as Prometheus's.

Memory, per HTTP label set (one row feeds 67 series: the request counter and 3 histograms
of 20 buckets + sum + count): a sample whose counters moved costs one array of 67 doubles
(616 bytes with its header) plus a dict slot, i.e. ~10 bytes per series sample; an idle
label set shares the previous array and costs only the slot (~50 bytes). At 5 s for 15
min (180 samples) that is at most ~120 KB per busy HTTP label set (~1.8 KB per series;
measured with tracemalloc) and ~9 KB per idle one; a TCP label set (4 counters) at most
~25 KB. Sampling reads every row once on the event loop: ~15 µs per label set that
moved, ~1 µs per idle one (15 ms per tick for 1000 busy label sets).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import math
import sys
import time
from array import array
from bisect import bisect_right
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from . import promql
from .metrics import BUCKETS, HttpSeries, MetricStore, TcpSeries
from .model import HTTP_LABELS, TCP_LABELS
from .promql import NAME, Matcher, Series

log = logging.getLogger("meshpilot.telemetry")

DEFAULT_INTERVAL = 5.0  # seconds between samples
DEFAULT_RETENTION = 15 * 60.0  # seconds of samples kept

Key = tuple[str, ...]  # a label tuple of the MetricStore (HTTP_LABELS / TCP_LABELS order)


def _le(bound: float) -> str:
    """The `le` label exactly as /metrics writes it (prometheus.py): `1000`, `0.5`, `+Inf`."""
    if math.isinf(bound):
        return "+Inf"
    return str(int(bound)) if bound == int(bound) else repr(bound)


@dataclass(frozen=True, slots=True)
class Column:
    """One series of a row: its metric name, its index in the row, its `le` if a bucket."""

    name: str
    index: int
    le: str | None = None


_HISTOGRAMS = (("istio_request_duration_milliseconds", "duration"),
               ("istio_request_bytes", "request_bytes"),
               ("istio_response_bytes", "response_bytes"))
_TCP_COUNTERS = (("istio_tcp_sent_bytes_total", "sent_bytes"),
                 ("istio_tcp_received_bytes_total", "received_bytes"),
                 ("istio_tcp_connections_opened_total", "opened"),
                 ("istio_tcp_connections_closed_total", "closed"))


def _http_columns() -> tuple[Column, ...]:
    columns = [Column("istio_requests_total", 0)]
    bounds = [*BUCKETS, math.inf]
    for name, _ in _HISTOGRAMS:
        base = len(columns)
        columns += [Column(f"{name}_bucket", base + i, _le(b)) for i, b in enumerate(bounds)]
        columns += [Column(f"{name}_sum", base + len(bounds)),
                    Column(f"{name}_count", base + len(bounds) + 1)]
    return tuple(columns)


HTTP_COLUMNS = _http_columns()
TCP_COLUMNS = tuple(Column(name, i) for i, (name, _) in enumerate(_TCP_COUNTERS))
METRIC_NAMES = frozenset(c.name for c in (*HTTP_COLUMNS, *TCP_COLUMNS))


def _http_row(s: HttpSeries) -> array:
    values: list[float] = [s.requests]
    for _, attr in _HISTOGRAMS:
        h = getattr(s, attr)
        values += itertools.accumulate(h.counts)
        values += (h.sum, h.count)
    return array("d", values)  # built at its final size: no over-allocation


def _tcp_row(s: TcpSeries) -> array:
    return array("d", (s.sent_bytes, s.received_bytes, s.opened, s.closed))


@dataclass(frozen=True, slots=True)
class Scrape:
    """One sample of every series at `t` (ms). Never mutated once made: readers in other
    threads hold references while the sampler appends new scrapes."""

    t: int
    http: Mapping[Key, array]
    tcp: Mapping[Key, array]


class HistoryStorage:
    """promql.Storage over a fixed list of scrapes (a snapshot of the history)."""

    def __init__(self, scrapes: Sequence[Scrape],
                 labels: Callable[[Key, Sequence[str]], tuple[tuple[str, str], ...]]) -> None:
        self._scrapes = scrapes
        self._times = [s.t for s in scrapes]
        self._labels = labels

    def metric_names(self) -> Collection[str]:
        return METRIC_NAMES

    def select(self, matchers: Sequence[Matcher], start: int, end: int) -> list[Series]:
        window = self._scrapes[bisect_right(self._times, start):bisect_right(self._times, end)]
        if not window:
            return []
        names = [m for m in matchers if m.name == NAME]
        les = [m for m in matchers if m.name == "le"]
        others = [m for m in matchers if m.name not in (NAME, "le")]
        out: list[Series] = []
        for columns, label_names, rows_of in (
                (HTTP_COLUMNS, HTTP_LABELS, lambda s: s.http),
                (TCP_COLUMNS, TCP_LABELS, lambda s: s.tcp)):
            wanted = [c for c in columns if all(m.matches(c.name) for m in names)
                      and all(m.matches(c.le or "") for m in les)]
            if not wanted:
                continue
            keys = dict.fromkeys(k for scrape in window for k in rows_of(scrape))
            for key in keys:
                base = self._labels(key, label_names)
                if others and not all(m.matches(promql.get_label(base, m.name)) for m in others):
                    continue
                rows = [(scrape.t, row) for scrape in window
                        if (row := rows_of(scrape).get(key)) is not None]
                for c in wanted:
                    extra = ((NAME, c.name), ("le", c.le)) if c.le else ((NAME, c.name),)
                    labels = tuple(sorted((*base, *extra)))
                    out.append(Series(labels, [(t, row[c.index]) for t, row in rows]))
        return out


class QueryParamError(promql.PromQLError):
    """A bad HTTP API parameter (`time=...`)."""


def parse_time(text: str) -> int:
    """Prometheus's API time: Unix seconds (fractions rounded to ms) or RFC 3339."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            whole = math.trunc(seconds)
            return whole * 1000 + round((seconds - whole) * 1000)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise QueryParamError(f'invalid parameter "time": cannot parse {text!r} to a valid '
                              "timestamp") from None
    if when.tzinfo is None:
        raise QueryParamError(f'invalid parameter "time": {text!r} has no time zone '
                              "(use Unix seconds or RFC 3339, e.g. 2024-05-01T12:00:00Z)")
    return round(when.timestamp() * 1000)


class MetricHistory:
    """Samples of a MetricStore over time. `sample()` records one; `start()` runs the
    sampler task on the running event loop; `query()`/`api_query()` answer PromQL."""

    def __init__(self, store: MetricStore, *, retention: float = DEFAULT_RETENTION,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._clock = clock
        self.retention = retention
        self.interval = DEFAULT_INTERVAL
        self._scrapes: list[Scrape] = []  # replaced on every change, never mutated
        self._last_http: dict[Key, tuple[tuple[int, ...], array]] = {}
        self._last_tcp: dict[Key, array] = {}
        self._label_cache: dict[Key, tuple[tuple[str, str], ...]] = {}
        self._task: asyncio.Task[None] | None = None

    # --- sampling ---------------------------------------------------------------------

    def _now_ms(self) -> int:
        return round(self._clock() * 1000)

    def _take(self, t: int, remember: bool) -> Scrape:
        """Read every row of the store; a row whose counters did not move since the last
        stored sample shares that sample's array (an idle series costs a dict slot)."""
        http: dict[Key, array] = {}
        for key, s in list(self._store.http.items()):
            sig = (s.requests, s.duration.count, s.request_bytes.count, s.response_bytes.count)
            last = self._last_http.get(key)
            if last is not None and last[0] == sig:
                http[key] = last[1]
                continue
            row = http[key] = _http_row(s)
            if remember:
                self._last_http[key] = (sig, row)
        tcp: dict[Key, array] = {}
        for key, t_series in list(self._store.tcp.items()):
            row = _tcp_row(t_series)
            previous = self._last_tcp.get(key)
            if previous is not None and previous == row:
                row = previous
            elif remember:
                self._last_tcp[key] = row
            tcp[key] = row
        return Scrape(t, http, tcp)

    def sample(self, t: int | None = None) -> Scrape:
        """Record one sample (at `t` ms, default now) and drop those past the retention."""
        t = self._now_ms() if t is None else t
        if self._scrapes and t <= self._scrapes[-1].t:
            return self._scrapes[-1]  # two samples in one millisecond: keep the first
        scrape = self._take(t, remember=True)
        oldest = t - round(self.retention * 1000)
        kept = [s for s in self._scrapes if s.t >= oldest]
        self._scrapes = [*kept, scrape]
        return scrape

    @property
    def scrapes(self) -> Sequence[Scrape]:
        return self._scrapes

    def start(self, interval: float = DEFAULT_INTERVAL) -> None:
        """Run the sampler on the running loop: one sample now, then one at every
        wall-clock multiple of `interval` seconds."""
        if not interval > 0:
            raise ValueError(f"sample interval must be > 0 seconds, not {interval}")
        self.interval = interval
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="metric-history")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        step = max(1, round(self.interval * 1000))
        while True:
            try:
                self.sample()
            except Exception:  # a bug here must not end the sampling for good
                log.exception("metric history: sampling failed")
            now = self._now_ms()
            await asyncio.sleep(((now // step + 1) * step - now) / 1000)

    # --- querying ---------------------------------------------------------------------

    def _labels(self, key: Key, names: Sequence[str]) -> tuple[tuple[str, str], ...]:
        labels = self._label_cache.get(key)
        if labels is None:
            labels = self._label_cache[key] = promql.labels_of(dict(zip(names, key,
                                                                        strict=True)))
        return labels

    def storage(self, fresh: bool = True) -> HistoryStorage:
        """The stored samples (plus, if `fresh`, one taken now, not stored)."""
        scrapes: Sequence[Scrape] = self._scrapes
        if fresh:
            now = self._now_ms()
            if not scrapes or now > scrapes[-1].t:
                scrapes = [*scrapes, self._take(now, remember=False)]
        return HistoryStorage(scrapes, self._labels)

    def query(self, text: str, at: int | None = None) -> promql.Result:
        """Evaluate `text` at `at` (ms; default now, with a sample taken now)."""
        storage = self.storage()
        return promql.evaluate(text, storage, self._now_ms() if at is None else at)

    async def api_query(self, params: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
        """Prometheus's `/api/v1/query`: (HTTP status, JSON body). The fresh sample is taken
        here, on the loop that feeds the store; evaluation runs in a worker thread."""
        try:
            text = params.get("query", "")
            try:
                expr = promql.parse(text)
            except promql.ParseError as e:
                raise promql.ParseError(f'invalid parameter "query": {e}') from None
            storage = self.storage()
            # "now" is read after the fresh sample: a sample stamped a millisecond after
            # the evaluation time would be out of every selector's range.
            at = parse_time(params["time"]) if params.get("time") else self._now_ms()
            result = await asyncio.to_thread(promql.evaluate, expr, storage, at)
        except promql.PromQLError as e:
            status = 422 if e.error_type == "execution" else 400
            return status, {"status": "error", "errorType": e.error_type, "error": str(e)}
        except Exception as e:  # a bug: say so in Prometheus's shape, keep the trace
            log.exception("query %r failed", params.get("query"))
            return 500, {"status": "error", "errorType": "internal",
                         "error": f"internal error: {e!r}"}
        body: dict[str, Any] = {"status": "success", "data": promql.api_data(result)}
        if result.warnings:
            body["warnings"] = list(result.warnings)
        return 200, body

    # --- accounting -------------------------------------------------------------------

    def stats(self) -> dict[str, int]:
        """Scrapes kept, label sets and series in the newest one, and the bytes the
        samples take (arrays counted once however many scrapes share them)."""
        arrays: dict[int, array] = {}
        slots = 0
        for scrape in self._scrapes:
            for rows in (scrape.http, scrape.tcp):
                slots += len(rows)
                for row in rows.values():
                    arrays[id(row)] = row
        newest = self._scrapes[-1] if self._scrapes else None
        label_sets = len(newest.http) + len(newest.tcp) if newest else 0
        series = (len(newest.http) * len(HTTP_COLUMNS) + len(newest.tcp) * len(TCP_COLUMNS)
                  if newest else 0)
        dict_bytes = sum(sys.getsizeof(s.http) + sys.getsizeof(s.tcp) for s in self._scrapes)
        return {"scrapes": len(self._scrapes), "label_sets": label_sets, "series": series,
                "slots": slots,
                "bytes": dict_bytes + sum(sys.getsizeof(a) for a in arrays.values())}
