"""Live progress: the counters' protocol, the reporter's arithmetic, when it is shown."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

from meshpilot.load.progress import (
    Progress,
    Reporter,
    interval_for,
    new_counters,
    publish,
    read_slot,
    wanted,
)


def test_publish_then_read_round_trips_per_slot() -> None:
    counters = new_counters(2)
    publish(counters, 1, 10, 2, 3)
    assert read_slot(counters, 1)[:3] == (10, 2, 3)
    assert read_slot(counters, 0) == (0, 0, 0, 0)
    assert counters[5] % 2 == 0  # the sequence number is even between publications


def test_shared_counters_cross_processes() -> None:
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    counters = new_counters(2, ctx)
    proc = ctx.Process(target=publish, args=(counters, 1, 7, 0, 1))
    proc.start()
    proc.join(10)
    assert read_slot(counters, 1)[:3] == (7, 0, 1)


def test_reporter_sums_workers_and_rates() -> None:
    counters = new_counters(2)
    seen: list[Progress] = []
    stop_writing = threading.Event()

    def writer() -> None:
        calls = 0
        while not stop_writing.is_set():
            calls += 100                       # 100 calls per 10 ms and worker: 10k/s each
            publish(counters, 0, calls, 1, 0)
            publish(counters, 1, calls, 0, 2)
            time.sleep(0.01)

    t = threading.Thread(target=writer)
    t.start()
    with Reporter(counters, 2, seen.append, 0.3, 10.0):
        time.sleep(1.0)
    stop_writing.set()
    t.join()
    assert len(seen) == 3                      # at 0.3, 0.6, 0.9 s and none after exit
    last = seen[-1]
    assert (last.errors, last.non_2xx, last.duration_s) == (1, 2, 10.0)
    assert last.calls > seen[0].calls > 0
    # sleep(0.01) overshoots, so the real rate is below 20k/s, but of that order
    assert 5_000 < last.qps_now <= 21_000, last.qps_now
    assert 0.85 < last.elapsed_s < 1.0


def test_line_and_when_progress_is_shown() -> None:
    line = Progress(4.0, 10.0, 2000, 510.0, 1, 3).line()
    assert line == "[   4.0s/10s] 2000 calls, 510.0 qps now (500.0 avg), 1 errors, 3 non-2xx"
    assert "/" not in Progress(4.0, None, 0, 0.0, 0, 0).line().split("]")[0]
    assert wanted(5.0, None) and wanted(None, None)
    assert not wanted(3.0, None) and not wanted(60.0, 1000)
    assert interval_for(5) == 2.0 and interval_for(60) == 6.0 and interval_for(3600) == 10.0
    assert interval_for(None) == 5.0
