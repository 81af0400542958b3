"""Live progress of a running load (fortio prints a line every few seconds; so do we).

Why shared counters instead of messages: the workers' hot path must not pay for progress.
Each worker publishes four integers (calls so far, transport errors, non-2xx answers, the
moment it published) into its own slot of a shared array from a 0.1 s timer, and a
reporter thread in the parent reads them every few seconds. With `--procs N` the array is
shared memory (`multiprocessing.RawArray`); with one process it is a plain array the
in-process worker writes and the reporter thread reads.

A slot is guarded by a sequence number (a seqlock): the writer makes it odd while
writing, even when done, and the reader retries on an odd or changed number, so a reader
never sees the call count of one publication with the timestamp of another. The current
rate is the sum over workers of (calls since the last report) / (time between that
worker's two publications), which is exact whatever the timer's lag.
"""

from __future__ import annotations

import threading
import time
from array import array
from collections.abc import Callable, MutableSequence
from dataclasses import dataclass
from time import perf_counter_ns
from typing import TextIO

PUBLISH_PERIOD = 0.1   # seconds between a worker's publications
SLOT = 5               # seq, calls, errors, non-2xx, published-at (perf_counter_ns)
MIN_DURATION = 3.0     # shorter -t runs print no progress: the final report follows at once


def new_counters(workers: int, ctx: object | None = None) -> MutableSequence[int]:
    """Zeroed slots for `workers` workers: shared memory for processes, else an array."""
    if ctx is None:
        return array("q", [0] * (workers * SLOT))
    return ctx.RawArray("q", workers * SLOT)  # type: ignore[attr-defined,no-any-return]


def publish(counters: MutableSequence[int], slot: int, calls: int, errors: int,
            non_2xx: int) -> None:
    """Writer side of the seqlock (one writer per slot: its worker)."""
    base = slot * SLOT
    seq = counters[base]
    counters[base] = seq + 1
    counters[base + 1] = calls
    counters[base + 2] = errors
    counters[base + 3] = non_2xx
    counters[base + 4] = perf_counter_ns()
    counters[base] = seq + 2


def read_slot(counters: MutableSequence[int], slot: int) -> tuple[int, int, int, int]:
    """Reader side: a consistent (calls, errors, non-2xx, published-at) of one worker."""
    base = slot * SLOT
    while True:
        seq = counters[base]
        if seq % 2 == 0:
            values = (counters[base + 1], counters[base + 2], counters[base + 3],
                      counters[base + 4])
            if counters[base] == seq:
                return values
        time.sleep(0.0005)  # the writer is mid-publication: microseconds


def interval_for(duration: float | None) -> float:
    """Every few seconds: 2 s for short runs, up to 10 s for long ones (~10 lines a run);
    5 s when running until Ctrl-C."""
    if duration is None:
        return 5.0
    return min(max(duration / 10, 2.0), 10.0)


def wanted(duration: float | None, calls: int | None) -> bool:
    """Progress is for timed runs that last long enough to wonder (or run until Ctrl-C)."""
    return calls is None and (duration is None or duration > MIN_DURATION)


@dataclass(frozen=True)
class Progress:
    """One live report. `errors` are transport errors (code -1), as in the final report."""

    elapsed_s: float
    duration_s: float | None     # the planned -t, None until Ctrl-C
    calls: int
    qps_now: float
    errors: int
    non_2xx: int

    def line(self) -> str:
        of = f"/{self.duration_s:g}s" if self.duration_s else ""
        avg = self.calls / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (f"[{self.elapsed_s:6.1f}s{of}] {self.calls} calls, {self.qps_now:.1f} qps now "
                f"({avg:.1f} avg), {self.errors} errors, {self.non_2xx} non-2xx")


def printer(stream: TextIO) -> Callable[[Progress], None]:
    """A progress callback writing one line per report (the CLI passes stderr)."""

    def show(progress: Progress) -> None:
        print(progress.line(), file=stream, flush=True)

    return show


class Reporter:
    """Thread that turns the workers' counters into a `Progress` every `interval` s."""

    def __init__(self, counters: MutableSequence[int], workers: int,
                 callback: Callable[[Progress], None], interval: float,
                 duration: float | None) -> None:
        self.counters = counters
        self.workers = workers
        self.callback = callback
        self.interval = interval
        self.duration = duration
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="meshpilot-load-progress",
                                        daemon=True)
        self._start_ns = 0

    def __enter__(self) -> Reporter:
        self._start_ns = perf_counter_ns()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop before the final report is printed, so no progress line follows it."""
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last = [(0, self._start_ns)] * self.workers
        tick = 0
        while True:
            tick += 1
            wake = self._start_ns + int(tick * self.interval * 1e9)
            if self._stop.wait(max(0.0, (wake - perf_counter_ns()) / 1e9)):
                return
            calls = errors = non_2xx = 0
            rate = 0.0
            for i in range(self.workers):
                c, e, n, at = read_slot(self.counters, i)
                calls, errors, non_2xx = calls + c, errors + e, non_2xx + n
                prev_calls, prev_at = last[i]
                if at > prev_at:
                    rate += (c - prev_calls) / ((at - prev_at) / 1e9)
                    last[i] = (c, at)
            elapsed = (perf_counter_ns() - self._start_ns) / 1e9
            self.callback(Progress(elapsed, self.duration, calls, rate, errors, non_2xx))
