"""A trivial keep-alive HTTP/1.1 server: the fixed point for testing and benchmarking the
load tool itself (`python -m meshpilot.load.server --port 8080`).

`/fail...` answers 503, `/mix` answers 503 to every 4th request it gets, `/close` answers
with `Connection: close` and closes, `/chunked` answers with a chunked body, anything else
200 with a short canned body. It counts requests and remembers request lines and Host
headers (the e2e tests check that `-n 200` really sends 200 and that proxy mode sends the
absolute-form target). It is deliberately minimal so that, when we
measure how many requests per second the load tool drives, the server is not the limit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import threading
from collections import Counter

OK = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n")
FAIL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 5\r\n\r\nfail\n")
CLOSE = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nok\n"
CHUNKED = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"3\r\nok\n\r\n4\r\nmore\r\n0\r\n\r\n")


_VIEW = memoryview(bytearray(64 * 1024))  # one per process; reads never interleave


class _Handler(asyncio.BufferedProtocol):
    """Answers every complete request head in the buffer (pipelining-safe).

    Buffered (recv_into a shared buffer) for the same reason as the load engine: a plain
    Protocol costs mmap/munmap syscalls per read, and this server should be cheap.
    """

    def __init__(self, server: TrivialServer) -> None:
        self.server = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections += 1

    def get_buffer(self, sizehint: int) -> memoryview:
        return _VIEW

    def buffer_updated(self, nbytes: int) -> None:
        data = _VIEW[:nbytes].tobytes()
        buf = self.buf + data if self.buf else data
        server = self.server
        out = []
        pos = 0
        while True:
            end = buf.find(b"\r\n\r\n", pos)
            if end < 0:
                break
            eol = buf.find(b"\r\n", pos)
            line = buf[pos:eol]
            pos = end + 4
            server.requests += 1
            if server.record:
                server.record_request(buf[eol + 2:end + 2], line)
            if b"/fail" in line:
                out.append(FAIL)
            elif b"/mix " in line:
                server.mix += 1
                out.append(FAIL if server.mix % 4 == 0 else OK)
            elif b"/close " in line:
                out.append(CLOSE)
                break
            elif b"/chunked " in line:
                out.append(CHUNKED)
            elif line.startswith(b"HEAD "):
                out.append(OK[:-3])        # same head, no body
            else:
                out.append(OK)
        self.buf = buf[pos:]
        if out:
            assert self.transport is not None
            self.transport.write(b"".join(out) if len(out) > 1 else out[0])
            if out[-1] is CLOSE:
                self.transport.close()


class TrivialServer:
    """Run with `with TrivialServer() as srv:` (background thread) or `serve_forever()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, record: bool = True) -> None:
        self.host = host
        self.port = port
        self.record = record
        self.requests = 0
        self.connections = 0
        self.mix = 0
        self.request_lines: list[str] = []
        self.hosts: Counter[str] = Counter()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    def record_request(self, fields: bytes, line: bytes) -> None:
        self.request_lines.append(line.decode("latin-1"))
        for header in fields.split(b"\r\n"):
            name, _, value = header.partition(b":")
            if name.strip().lower() == b"host":
                self.hosts[value.strip().decode("latin-1")] += 1

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(lambda: _Handler(self), self.host, self.port,
                                       backlog=1024)
        self.port = srv.sockets[0].getsockname()[1]
        self._stop = asyncio.Event()
        self._ready.set()
        async with srv:
            await self._stop.wait()

    def serve_forever(self) -> None:
        asyncio.run(self._serve())

    def __enter__(self) -> TrivialServer:
        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            with contextlib.suppress(Exception):
                loop.run_until_complete(self._serve())
            loop.close()

        self._thread = threading.Thread(target=run, name="trivial-http", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("trivial server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8080)
    args = ap.parse_args()
    server = TrivialServer(args.host, args.port, record=False)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
