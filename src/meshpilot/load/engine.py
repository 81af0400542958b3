"""The load engine of one process: asyncio, one callback-driven state machine per connection.

Why callbacks (asyncio.Protocol) rather than one coroutine per connection over streams:
a coroutine round trip costs a Future, a task wake-up and several frames per request,
while a read callback parsing the response and writing the next request in the same
call costs little beyond the socket calls (one send, one recv per request). Measured
against a local keep-alive server: ~10 us of CPU per request here versus ~16 us for a
straightforward streams client, i.e. ~60 % more requests per core. That matters when we
compare Envoy with a direct connection: the load tool must not be the bottleneck it
measures.

Latency is `perf_counter_ns()` from just before the request is written (or, when the
connection has to be (re)established, just before connecting: like fortio, a reconnect
is part of that call's latency) to the moment the full body has been read. Transport
failures, protocol errors and timeouts count as code -1; the connection is replaced on
the next call. After such an error an unpaced connection waits ERROR_BACKOFF before
retrying so a refused port does not turn into a busy loop of millions of errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from array import array
from dataclasses import dataclass, field
from time import perf_counter_ns
from typing import Any

from .http1 import ProtocolError, ResponseParser
from .pacing import Pacer
from .progress import PUBLISH_PERIOD, publish

ERROR_BACKOFF = 0.01  # seconds; only for unpaced (qps 0) connections
_CODES = 1000         # status codes are three digits: index a list instead of a dict


@dataclass
class WorkerPlan:
    """One process's share of a run (picklable: it crosses into worker processes)."""

    connect_host: str           # already resolved: no DNS on reconnect
    connect_port: int
    request: bytes
    head: bool
    calls: list[int | None]     # per connection: calls to make, None = until time is up
    first_index: int            # global index of our first connection (for staggering)
    total_connections: int
    qps: float                  # whole run; each connection paces at qps/total_connections
    duration: float | None
    timeout: float
    worker_index: int = 0       # this process's slot in the live-progress counters


@dataclass
class WorkerResult:
    """Raw results of one process, merged exactly by the runner."""

    latencies_ns: array = field(default_factory=lambda: array("q"))
    codes: dict[int, int] = field(default_factory=dict)   # -1: transport errors
    error_kinds: dict[str, int] = field(default_factory=dict)
    sockets: int = 0
    start_ns: int = 0
    end_ns: int = 0
    interrupted: bool = False


RECV_BUFFER = 256 * 1024


def _ignore(nbytes: int) -> None:
    """buffer_updated of a detached connection: its bytes no longer matter."""


class _Proto(asyncio.BufferedProtocol):
    """Per-TCP-connection shim; the long-lived state is in `_Slot`.

    Buffered (recv_into one preallocated buffer per process) because plain `recv(256k)`
    makes CPython allocate and shrink a 256 KiB bytes object per read, which glibc serves
    with mmap/mremap/munmap: three extra syscalls per response. The buffer is shared by
    all connections of the process: the transport calls get_buffer, recv_into and
    buffer_updated back to back, so no two reads can interleave.

    A fresh shim per connection means late callbacks of a replaced connection can be
    recognised (identity check) instead of corrupting the new one. Once connected,
    `buffer_updated` is rebound on the instance straight to the slot's handler, so the
    hot path pays no extra call.
    """

    def __init__(self, slot: _Slot) -> None:
        self.slot = slot
        self.view = slot.w.view

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.view

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.slot.on_made(self, transport)  # type: ignore[arg-type]

    def buffer_updated(self, nbytes: int) -> None:  # replaced per instance when attached
        pass

    def eof_received(self) -> bool | None:
        return None  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.slot.on_lost(self, exc)


class _Slot:
    """One logical connection: sends its calls one at a time, reconnecting as needed."""

    __slots__ = ("busy", "connecting", "finished", "loop", "pacer", "parser", "proto",
                 "remaining", "request", "t0", "timer", "transport", "w")

    def __init__(self, w: _Worker, calls: int | None, pacer: Pacer | None) -> None:
        self.w = w
        self.loop = w.loop
        self.request = w.plan.request
        self.parser = ResponseParser(head=w.plan.head)
        self.remaining = -1 if calls is None else calls
        self.pacer = pacer
        self.transport: asyncio.Transport | None = None
        self.proto: _Proto | None = None
        self.connecting: asyncio.Task[Any] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.busy = False
        self.finished = False
        self.t0 = 0

    # -- scheduling ---------------------------------------------------------------------

    def next(self) -> None:
        """Start the next call now or at its paced time, or finish."""
        if self.remaining == 0 or self.w.stopping:
            self.finish()
            return
        pacer = self.pacer
        if pacer is None:
            self.fire()
            return
        now = self.loop.time()
        due = pacer.next_due(now)
        if due is None:
            self.finish()
        elif due <= now:
            self.fire()
        else:
            self.timer = self.loop.call_at(due, self.fire)

    def fire(self) -> None:
        self.timer = None
        if self.w.stopping:
            self.finish()
            return
        if self.remaining > 0:
            self.remaining -= 1
        self.busy = True
        transport = self.transport
        self.t0 = perf_counter_ns()
        if transport is None:
            self.connect()
        else:
            transport.write(self.request)

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.detach(abort=False)
        self.w.slot_done()

    # -- connection lifecycle -------------------------------------------------------------

    def connect(self) -> None:
        proto = _Proto(self)
        self.proto = proto
        plan = self.w.plan
        task = self.loop.create_task(self.loop.create_connection(
            lambda: proto, plan.connect_host, plan.connect_port))
        self.connecting = task
        task.add_done_callback(self.on_connect_done)

    def on_connect_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        exc = task.exception()
        if self.connecting is not task:
            if exc is None:              # a connection we gave up on (timeout): drop it
                task.result()[0].abort()
            return
        self.connecting = None
        if exc is not None:
            self.fail(type(exc).__name__)

    def on_made(self, proto: _Proto, transport: asyncio.Transport) -> None:
        if self.proto is not proto:
            transport.abort()
            return
        self.transport = transport
        self.w.sockets += 1
        proto.buffer_updated = self.on_bytes  # type: ignore[method-assign]
        if self.busy:
            transport.write(self.request)

    def detach(self, abort: bool) -> None:
        """Forget the current connection (closing it); late callbacks will be ignored."""
        proto, transport, task = self.proto, self.transport, self.connecting
        self.proto = self.transport = self.connecting = None
        if proto is not None:
            proto.buffer_updated = _ignore  # type: ignore[method-assign]
        if task is not None:
            task.cancel()
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()
        self.parser.reset()

    # -- responses and failures ---------------------------------------------------------

    def on_bytes(self, nbytes: int) -> None:
        try:
            status = self.parser.feed(self.w.view[:nbytes].tobytes())
        except ProtocolError:
            self.fail("ProtocolError")
            return
        if status:
            if not self.busy:           # unsolicited response (e.g. 408 on idle): drop it
                self.detach(abort=True)
                return
            w = self.w
            w.lat_append(perf_counter_ns() - self.t0)
            w.codes[status] += 1
            self.busy = False
            if not self.parser.keep_alive:
                self.detach(abort=False)
            self.next()

    def on_lost(self, proto: _Proto, exc: Exception | None) -> None:
        if self.proto is not proto:
            return
        self.proto = self.transport = None
        if not self.busy:
            self.parser.reset()         # idle keep-alive closed: reconnect on next call
            return
        try:
            status = self.parser.feed_eof()
        except ProtocolError:
            status = 0
        if status:                      # close-delimited body completed
            self.parser.reset()
            w = self.w
            w.lat_append(perf_counter_ns() - self.t0)
            w.codes[status] += 1
            self.busy = False
            self.next()
        else:
            self.fail(type(exc).__name__ if exc else "ConnectionClosed")

    def fail(self, kind: str) -> None:
        """Count the in-flight call as an error (-1), drop the connection, carry on."""
        self.detach(abort=True)
        if not self.busy:       # garbage on an idle connection: the schedule stands
            return
        w = self.w
        w.lat_append(perf_counter_ns() - self.t0)
        w.errors += 1
        w.error_kinds[kind] = w.error_kinds.get(kind, 0) + 1
        self.busy = False
        if self.pacer is None and not self.w.stopping and self.remaining != 0:
            self.timer = self.loop.call_later(ERROR_BACKOFF, self.next)
        else:
            self.next()


class _Worker:
    """All connections of one process plus the run's clock, stop switch and timeouts."""

    def __init__(self, plan: WorkerPlan, loop: asyncio.AbstractEventLoop,
                 counters: Any = None) -> None:
        self.plan = plan
        self.loop = loop
        self.counters = counters
        self.view = memoryview(bytearray(RECV_BUFFER))
        self.latencies = array("q")
        self.lat_append = self.latencies.append
        self.codes = [0] * _CODES
        self.errors = 0
        self.error_kinds: dict[str, int] = {}
        self.sockets = 0
        self.stopping = False
        self.interrupted = False
        self.active = 0
        self.slots: list[_Slot] = []
        self.done: asyncio.Future[None] = loop.create_future()

    def slot_done(self) -> None:
        self.active -= 1
        if self.active == 0 and not self.done.done():
            self.done.set_result(None)

    def interrupt(self) -> None:
        """SIGINT: stop early, and remember the run did not complete its plan."""
        self.interrupted = True
        self.stop()

    def stop(self) -> None:
        """End the run: idle connections finish now, busy ones after their response."""
        self.stopping = True
        for slot in self.slots:
            if not slot.busy:
                slot.finish()

    def _watchdog(self, period: float) -> None:
        if self.done.done():
            return
        limit = perf_counter_ns() - int(self.plan.timeout * 1e9)
        for slot in self.slots:
            if slot.busy and slot.t0 < limit:
                slot.fail("Timeout")
        self.loop.call_later(period, self._watchdog, period)

    def _publish(self) -> None:
        """Live progress: a few integers into shared memory, off the per-request path."""
        codes = self.codes
        non_2xx = sum(codes[:200]) + sum(codes[300:])
        publish(self.counters, self.plan.worker_index, len(self.latencies), self.errors,
                non_2xx)
        if not self.done.done():
            self.loop.call_later(PUBLISH_PERIOD, self._publish)

    async def run(self) -> WorkerResult:
        plan, loop = self.plan, self.loop
        n = plan.total_connections
        start = loop.time()
        end = start + plan.duration if plan.duration else None
        for i, calls in enumerate(plan.calls):
            pacer = None
            if plan.qps > 0:
                # stagger connections across one interval so the aggregate is smooth
                interval = n / plan.qps
                offset = (plan.first_index + i) * interval / n
                pacer = Pacer(interval, start + offset, end if calls is None else None)
            self.slots.append(_Slot(self, calls, pacer))
        self.active = len(self.slots)
        if plan.qps == 0 and end is not None:
            loop.call_at(end, self.stop)
        period = min(max(plan.timeout / 10, 0.01), 0.5)
        loop.call_later(period, self._watchdog, period)
        if self.counters is not None:
            loop.call_later(PUBLISH_PERIOD, self._publish)
        start_ns = perf_counter_ns()
        if not self.slots:
            self.done.set_result(None)
        for slot in self.slots:
            slot.next()
        await self.done
        end_ns = perf_counter_ns()
        codes = {code: count for code, count in enumerate(self.codes) if count}
        if self.errors:
            codes[-1] = self.errors
        return WorkerResult(self.latencies, codes, dict(self.error_kinds), self.sockets,
                            start_ns, end_ns, self.interrupted)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop when it happens to be installed (it is not a dependency), else asyncio's."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()  # type: ignore[no-any-return]


def run_worker(plan: WorkerPlan, barrier: Any = None, counters: Any = None) -> WorkerResult:
    """Run one process's share on a private event loop; SIGINT stops it gracefully.

    `barrier` (multiprocessing) lines up the start of all worker processes; `counters`
    (see `progress`) receives this worker's live counts every PUBLISH_PERIOD.
    """
    loop = new_event_loop()
    try:
        worker = _Worker(plan, loop, counters)
        if threading.current_thread() is threading.main_thread():
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signal.SIGINT, worker.interrupt)
        if barrier is not None:
            barrier.wait(timeout=60)
        return loop.run_until_complete(worker.run())
    finally:
        with contextlib.suppress(Exception):
            loop.remove_signal_handler(signal.SIGINT)
        loop.close()
