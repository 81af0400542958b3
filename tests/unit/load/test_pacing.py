"""Pacing with a fake clock: uniform spacing, exact counts, no catch-up bursts."""

from __future__ import annotations

import itertools

import pytest

from meshpilot.load.pacing import Pacer, split_evenly


def run(pacer: Pacer, service_time: float) -> list[float]:
    """Simulate a connection whose responses take `service_time`; return send times."""
    now, sent = 0.0, []
    while (due := pacer.next_due(now)) is not None:
        now = max(now, due)
        sent.append(now)
        now += service_time
    return sent


def test_uniform_spacing_and_count_within_duration() -> None:
    sent = run(Pacer(0.04, start=0.0, end=2.0), service_time=0.001)
    assert len(sent) == 50
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(sent)}
    assert gaps == {0.04}


def test_schedule_does_not_drift_with_timer_lag() -> None:
    # timers fire late but the schedule is anchored to due times, not fire times
    pacer = Pacer(0.01, start=0.0, end=1.0)
    times = []
    now = 0.0
    while (due := pacer.next_due(now)) is not None:
        times.append(due)
        now = due + 0.004   # timer lag + response, still within the interval
    assert len(times) == 100
    assert times[-1] == pytest.approx(0.99)


def test_no_catch_up_after_a_slow_response() -> None:
    pacer = Pacer(0.1, start=0.0)
    assert pacer.next_due(0.0) == 0.0
    # the response took 0.35 s: three sends were "missed"; the next goes now...
    assert pacer.next_due(0.35) == 0.35
    # ...and the one after keeps the interval, no burst of the missed ones
    assert pacer.next_due(0.36) == pytest.approx(0.45)


def test_staggered_start_and_end_boundary() -> None:
    pacer = Pacer(1.0, start=0.5, end=2.5)
    assert run(pacer, 0.0) == [0.5, 1.5]
    with pytest.raises(ValueError):
        Pacer(0, start=0)


def test_split_evenly() -> None:
    assert split_evenly(10, 4) == [3, 3, 2, 2]
    assert split_evenly(2, 4) == [1, 1, 0, 0]
    assert sum(split_evenly(1001, 7)) == 1001
