"""Per-connection request pacing: uniform spacing, no catch-up bursts.

Kept free of asyncio so it can be tested with a fake clock: the engine asks
`next_due(now)` after each response and schedules the next request at that time.
"""

from __future__ import annotations


class Pacer:
    """Hands out send times `start, start+i, start+2i, ...` for one connection.

    Times follow the *schedule*, not the moment a timer happened to fire, so timer lag
    (asyncio's ~1 ms granularity) does not lower the achieved rate. When a response
    arrives after its successor was due, the next request goes out immediately and the
    schedule re-anchors there: a slow response costs throughput instead of causing a
    burst of back-to-back requests later (what fortio calls -nocatchup).
    """

    __slots__ = ("_end", "_interval", "_next")

    def __init__(self, interval: float, start: float, end: float | None = None) -> None:
        if interval <= 0:
            raise ValueError("interval must be > 0")
        self._interval = interval
        self._next = start
        self._end = end

    def next_due(self, now: float) -> float | None:
        """When to send the next request, or None once the run's end is reached."""
        due = self._next
        if due < now:
            due = now
        if self._end is not None and due >= self._end:
            return None
        self._next = due + self._interval
        return due


def split_evenly(total: int, parts: int) -> list[int]:
    """`total` as `parts` integers differing by at most one, larger ones first (fortio's -n)."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
