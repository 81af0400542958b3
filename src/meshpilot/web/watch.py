"""Fan store commits out to streaming watch clients.

The store calls back in the thread that committed; the hub hops onto the event loop
and hands each open watch the events in commit order. Watches subscribe before they
replay history, then skip anything they already sent, so no event falls in between.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from ..store import SqliteStore, WatchEvent

CLOSED: list[WatchEvent] = []  # sentinel batch telling a watch the server is stopping


class WatchHub:
    def __init__(self, store: SqliteStore, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._queues: set[asyncio.Queue[Sequence[WatchEvent]]] = set()
        self._unsubscribe = store.subscribe(self._on_commit)

    def _on_commit(self, events: list[WatchEvent]) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._fan_out, list(events))

    def _fan_out(self, events: list[WatchEvent]) -> None:
        for queue in self._queues:
            queue.put_nowait(events)

    def open(self) -> asyncio.Queue[Sequence[WatchEvent]]:
        queue: asyncio.Queue[Sequence[WatchEvent]] = asyncio.Queue()
        self._queues.add(queue)
        return queue

    def close(self, queue: asyncio.Queue[Sequence[WatchEvent]]) -> None:
        self._queues.discard(queue)

    def shutdown(self) -> None:
        self._unsubscribe()
        for queue in self._queues:
            queue.put_nowait(CLOSED)
