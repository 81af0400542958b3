"""`run_load`: validate, check the target is reachable, run 1..N worker processes, merge.

Merging is exact: workers return every latency, the parent concatenates and sorts them,
so percentiles over `--procs 2` are the same numbers one process would have computed.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import signal
import socket
import threading
from array import array
from collections.abc import Callable, Iterator, MutableSequence
from multiprocessing.connection import Connection
from typing import Any

from .engine import WorkerPlan, WorkerResult, run_worker
from .pacing import split_evenly
from .progress import Progress, Reporter, interval_for, new_counters
from .result import LoadResult
from .spec import LoadSpec, Target


class TargetUnreachable(RuntimeError):
    """Nothing answers at the address we would connect to (target or proxy)."""


def _resolve(host: str, port: int) -> str:
    """Resolve once up front: reconnects must not pay for (or vary with) DNS."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise TargetUnreachable(f"cannot resolve {host}: {e}") from None
    return str(infos[0][4][0])


def _preflight(host: str, port: int, timeout: float) -> None:
    """One TCP connect (no HTTP request, so server-side request counts stay exact)."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as e:
        raise TargetUnreachable(f"cannot connect to {host}:{port}: {e}") from None


def make_plans(spec: LoadSpec, target: Target, address: str) -> list[WorkerPlan]:
    """Split connections (and -n calls) evenly over processes; qps follows connections."""
    per_conn: list[int | None]
    if spec.calls is not None:
        per_conn = list(split_evenly(spec.calls, spec.connections))
    else:
        per_conn = [None] * spec.connections
    plans: list[WorkerPlan] = []
    first = 0
    for count in split_evenly(spec.connections, spec.procs):
        plans.append(WorkerPlan(
            connect_host=address, connect_port=target.connect_port,
            request=target.request, head=target.head,
            calls=per_conn[first:first + count], first_index=first,
            total_connections=spec.connections, qps=spec.qps,
            duration=None if spec.calls is not None else (spec.duration or None),
            timeout=spec.timeout, worker_index=len(plans)))
        first += count
    return plans


def _child(plan: WorkerPlan, barrier: Any, out: Connection, counters: Any) -> None:
    """Worker process entry point: run, then ship the raw results to the parent."""
    try:
        out.send(run_worker(plan, barrier, counters))
    except BaseException as e:  # the parent must hear about it, not hang
        with contextlib.suppress(Exception):
            out.send(e)
    finally:
        out.close()


@contextlib.contextmanager
def _forward_sigint(procs: list[Any]) -> Iterator[None]:
    """SIGINT to the parent is passed on to the workers, which stop and report; the parent
    then merges their results instead of dying with them. (A terminal's Ctrl-C reaches
    the whole process group anyway; a second SIGINT to a worker is harmless.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def forward(signum: int, frame: object) -> None:
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                with contextlib.suppress(OSError):
                    os.kill(proc.pid, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, forward)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _context() -> Any:
    # fork: no re-import of __main__ (spawn would re-run `python -m meshpilot`'s module)
    method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
    return mp.get_context(method)


def _run_processes(plans: list[WorkerPlan], ctx: Any,
                   counters: MutableSequence[int] | None) -> list[WorkerResult]:
    barrier = ctx.Barrier(len(plans))
    procs, pipes = [], []
    for plan in plans:
        reader, writer = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(plan, barrier, writer, counters), daemon=True,
                           name="meshpilot-load-worker")
        proc.start()
        writer.close()
        procs.append(proc)
        pipes.append(reader)
    results: list[WorkerResult] = []
    failure: BaseException | None = None
    with _forward_sigint(procs):
        for proc, reader in zip(procs, pipes, strict=True):
            try:
                item = reader.recv()
            except EOFError:
                item = RuntimeError(f"load worker {proc.pid} died (exit {proc.exitcode})")
            if isinstance(item, BaseException):
                failure = failure or item
            else:
                results.append(item)
            reader.close()
        for proc in procs:
            proc.join(timeout=10)
    if failure is not None:
        raise failure
    return results


def merge(spec: LoadSpec, results: list[WorkerResult]) -> LoadResult:
    """Exact merge: concatenated latencies, summed counts, earliest start to latest end."""
    latencies = array("q")
    codes: dict[int, int] = {}
    kinds: dict[str, int] = {}
    for r in results:
        latencies.extend(r.latencies_ns)
        for code, count in r.codes.items():
            codes[code] = codes.get(code, 0) + count
        for kind, count in r.error_kinds.items():
            kinds[kind] = kinds.get(kind, 0) + count
    # perf_counter_ns is CLOCK_MONOTONIC on Linux: comparable across processes
    start = min(r.start_ns for r in results)
    end = max(r.end_ns for r in results)
    duration = (end - start) / 1e9
    if spec.calls is None and spec.duration and not any(r.interrupted for r in results):
        # A completed -t run measured the whole window, even if its last call (paced and
        # staggered) was sent and answered a little before the window closed.
        duration = max(duration, spec.duration)
    return LoadResult(
        spec=spec, requests=len(latencies), duration_s=duration, codes=codes,
        sockets=sum(r.sockets for r in results),
        latencies_ns=array("q", sorted(latencies)), error_kinds=kinds)


def run_load(spec: LoadSpec, progress: Callable[[Progress], None] | None = None,
             progress_every: float | None = None) -> LoadResult:
    """Run a load synchronously (own event loop, or `spec.procs` worker processes).

    Raises UsageError for a bad spec and TargetUnreachable when nothing accepts a TCP
    connection at the target (or the -x proxy). Individual failed calls are not
    exceptions: they are counted as code -1. Call it from a thread when an event loop
    is already running in the current one.

    `progress`, when given, is called from a helper thread every `progress_every`
    seconds (default: `progress.interval_for(spec.duration)`) while the load runs; it is
    never called after run_load returns. Whether a run is worth reporting on is the
    caller's choice (`progress.wanted`).
    """
    spec.validate()
    target = Target.from_spec(spec)
    address = _resolve(target.connect_host, target.connect_port)
    _preflight(address, target.connect_port, min(spec.timeout, 5.0))
    plans = make_plans(spec, target, address)
    ctx = _context() if len(plans) > 1 else None
    counters = new_counters(len(plans), ctx) if progress is not None else None
    reporter: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
    if progress is not None and counters is not None:
        duration = None if spec.calls is not None else spec.duration or None
        every = progress_every or interval_for(duration)
        reporter = Reporter(counters, len(plans), progress, every, duration)
    with reporter:
        if ctx is None:
            results = [run_worker(plans[0], None, counters)]
        else:
            results = _run_processes(plans, ctx, counters)
    return merge(spec, results)
