"""Coalesce bursts of config changes into one push (Istio's PILOT_DEBOUNCE_AFTER / _MAX).

A `kubectl apply -f dir/` or a registry flap produces many events within milliseconds;
regenerating every proxy's config for each would waste CPU and make Envoy churn. The
callback runs once `quiet` seconds pass without a new trigger, but no later than
`max_delay` after the first pending trigger, so a steady trickle cannot starve pushes.
Only one callback runs at a time; triggers that arrive meanwhile schedule another run.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)

Callback = Callable[[list[str]], Awaitable[None] | None]


class Debouncer:
    def __init__(self, callback: Callback, *, quiet: float = 0.1, max_delay: float = 10.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._callback = callback
        self._quiet = quiet
        self._max_delay = max_delay
        self._clock = clock
        self._sleep = sleep
        self._reasons: list[str] = []
        self._first: float | None = None
        self._last = 0.0
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    @property
    def pending(self) -> bool:
        return bool(self._reasons)

    def trigger(self, reason: str) -> None:
        """Note a change; call from the event loop thread."""
        now = self._clock()
        if reason not in self._reasons:
            self._reasons.append(reason)
        if self._first is None:
            self._first = now
        self._last = now
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while self._reasons:
            while True:
                assert self._first is not None
                deadline = min(self._last + self._quiet, self._first + self._max_delay)
                delay = deadline - self._clock()
                if delay <= 0:
                    break
                await self._sleep(delay)
            await self._fire()

    async def _fire(self) -> None:
        reasons, self._reasons, self._first = self._reasons, [], None
        self.runs += 1
        try:
            result = self._callback(reasons)
            if inspect.isawaitable(result):
                await result
        except Exception:
            log.exception("debounced callback failed (reasons: %s)", ", ".join(reasons))

    async def close(self) -> None:
        """Stop waiting; pending triggers are dropped."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._reasons, self._first = [], None
