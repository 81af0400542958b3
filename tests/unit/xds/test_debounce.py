"""Debouncer timing with a fake clock: quiet period, max delay, one run at a time."""

from __future__ import annotations

import asyncio

from meshpilot.xds.debounce import Debouncer


class FakeClock:
    """Time only moves when the test says so; sleepers wake when their deadline passes."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        fut = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + delay, fut))
        await fut

    async def advance(self, dt: float) -> None:
        self.now += dt
        for entry in list(self._sleepers):
            if entry[0] <= self.now + 1e-9:
                self._sleepers.remove(entry)
                entry[1].set_result(None)
        for _ in range(10):
            await asyncio.sleep(0)


def run(coro) -> None:
    asyncio.run(coro)


def test_quiet_period_coalesces_a_burst() -> None:
    async def scenario() -> None:
        clock, calls = FakeClock(), []
        d = Debouncer(calls.append, quiet=0.1, max_delay=10, clock=clock, sleep=clock.sleep)
        d.trigger("a")
        await clock.advance(0.05)
        d.trigger("b")
        await clock.advance(0.05)
        d.trigger("a")
        await clock.advance(0.09)
        assert calls == []
        await clock.advance(0.02)
        assert calls == [["a", "b"]]
    run(scenario())


def test_max_delay_bounds_a_steady_trickle() -> None:
    async def scenario() -> None:
        clock, calls = FakeClock(), []
        d = Debouncer(calls.append, quiet=0.1, max_delay=0.5, clock=clock, sleep=clock.sleep)
        for i in range(8):  # a trigger every 80 ms never leaves 100 ms of quiet
            d.trigger(f"t{i}")
            await clock.advance(0.08)
        assert len(calls) == 1 and calls[0] == ["t0", "t1", "t2", "t3", "t4", "t5", "t6"]
        assert clock.now >= 0.5
    run(scenario())


def test_one_run_at_a_time_and_triggers_during_a_run_schedule_another() -> None:
    async def scenario() -> None:
        clock, calls, running = FakeClock(), [], []
        release = asyncio.Event()

        async def slow(reasons: list[str]) -> None:
            running.append(1)
            assert len(running) == 1
            calls.append(reasons)
            await release.wait()
            running.pop()

        d = Debouncer(slow, quiet=0.1, clock=clock, sleep=clock.sleep)
        d.trigger("first")
        await clock.advance(0.1)
        assert calls == [["first"]]
        d.trigger("during")
        await clock.advance(0.2)
        assert calls == [["first"]]  # still running
        release.set()
        await clock.advance(0)
        await clock.advance(0.1)
        assert calls == [["first"], ["during"]]
        await d.close()
    run(scenario())


def test_callback_errors_do_not_stop_later_runs() -> None:
    async def scenario() -> None:
        clock, calls = FakeClock(), []

        def flaky(reasons: list[str]) -> None:
            calls.append(reasons)
            raise RuntimeError("boom")

        d = Debouncer(flaky, quiet=0.1, clock=clock, sleep=clock.sleep)
        d.trigger("a")
        await clock.advance(0.1)
        d.trigger("b")
        await clock.advance(0.1)
        assert calls == [["a"], ["b"]]
    run(scenario())
