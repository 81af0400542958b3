"""Minimal HTTP/1.1 client framing for the load engine.

Only what a keep-alive load generator needs: pre-built request bytes and an incremental
response parser that finds where one response ends (Content-Length, chunked, or
close-delimited) and whether the connection may be reused. It deliberately does not
build header dicts: the hot loop needs the status code and framing only, and every
avoided allocation is throughput.
"""

from __future__ import annotations

from collections.abc import Iterable

USER_AGENT = "meshpilot-load/0.1"
MAX_HEAD = 64 * 1024          # a status line + headers bigger than this is malformed
_MAX_CHUNK_LINE = 4096

# parser states
_HEAD, _BODY, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _EOF = range(7)


# Servers answer a load test with the same bytes over and over (the Date header changes
# once a second), so a whole single-read response seen before is recognised by one dict
# lookup instead of being parsed again. Keyed per HEAD-ness; bounded by clearing.
_SEEN: dict[bool, dict[bytes, tuple[bool, int, int, int]]] = {False: {}, True: {}}
_SEEN_MAX = 256
_SEEN_MAX_LEN = 4096


class ProtocolError(Exception):
    """The peer sent something that is not a valid HTTP/1.x response."""


def build_request(method: str, target: str, authority: str,
                  headers: Iterable[tuple[str, str]] = (), payload: bytes = b"") -> bytes:
    """Encode the request once; user headers override our defaults (case-insensitively)."""
    given = {name.lower() for name, _ in headers}
    lines = [f"{method} {target} HTTP/1.1"]
    if "host" not in given:
        lines.append(f"Host: {authority}")
    if "user-agent" not in given:
        lines.append(f"User-Agent: {USER_AGENT}")
    if "accept" not in given:
        lines.append("Accept: */*")
    lines.extend(f"{name}: {value}" for name, value in headers)
    if (payload or method in ("POST", "PUT", "PATCH")) and "content-length" not in given:
        lines.append(f"Content-Length: {len(payload)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


class ResponseParser:
    """Incremental parser for the responses on one connection, one request at a time.

    `feed(data)` returns the status code once a full response (final status, body and
    trailers) has been read, else 0. Afterwards `keep_alive` says whether the connection
    can carry the next request. 1xx interim responses are skipped. Bytes arriving after
    a complete response are a protocol error, since we never pipeline.
    """

    __slots__ = ("_cache", "_remaining", "_rest", "_state", "_status", "body_bytes",
                 "head", "header_bytes", "keep_alive")

    def __init__(self, head: bool = False) -> None:
        self.head = head          # the request was HEAD: responses carry no body
        self._cache = _SEEN[head]
        self._rest = b""
        self._state = _HEAD
        self._remaining = 0
        self._status = 0
        self.keep_alive = True
        self.body_bytes = 0
        self.header_bytes = 0

    def reset(self) -> None:
        """Forget a half-read response (the connection is being replaced)."""
        self._rest = b""
        self._state = _HEAD
        self._remaining = 0
        self.keep_alive = True

    def feed(self, data: bytes) -> int:
        if self._rest:
            data = self._rest + data
            self._rest = b""
        state = self._state
        # Fast path: a whole Content-Length response in one read, the common case.
        if state == _HEAD:
            if len(data) <= _SEEN_MAX_LEN:
                seen = self._cache.get(data)
                if seen is not None:
                    self.keep_alive, self.header_bytes, self.body_bytes, status = seen
                    return status
            end = data.find(b"\r\n\r\n")
            if end >= 0:
                self.body_bytes = 0
                self._parse_head(data, end)
                pos = end + 4
                state = self._state
                if state == _BODY:
                    extra = len(data) - pos - self._remaining
                    if extra == 0:
                        self.body_bytes = self._remaining
                        self._state = _HEAD
                        if len(data) <= _SEEN_MAX_LEN:
                            self._remember(data)
                        return self._status
                    if extra > 0:
                        raise ProtocolError("unexpected bytes after the response")
                    self.body_bytes = len(data) - pos
                    self._remaining = -extra
                    return 0
                if state == _HEAD and self._status >= 200:   # no body
                    return self._done(data, pos)
                return self._slow(data, pos)
            if len(data) > MAX_HEAD:
                raise ProtocolError("response head too large")
            self._rest = data
            return 0
        return self._slow(data, 0)

    def _remember(self, data: bytes) -> None:
        cache = self._cache
        if len(cache) >= _SEEN_MAX:
            cache.clear()
        cache[data] = (self.keep_alive, self.header_bytes, self.body_bytes, self._status)

    def _slow(self, data: bytes, pos: int) -> int:
        """General state machine: split reads, chunked bodies, trailers, 1xx, EOF bodies."""
        n = len(data)
        while True:
            state = self._state
            if state == _BODY:
                avail = n - pos
                if avail < self._remaining:
                    self._remaining -= avail
                    self.body_bytes += avail
                    return 0
                pos += self._remaining
                self.body_bytes += self._remaining
                self._remaining = 0
                return self._done(data, pos)
            if state == _HEAD:
                end = data.find(b"\r\n\r\n", pos)
                if end < 0:
                    if n - pos > MAX_HEAD:
                        raise ProtocolError("response head too large")
                    self._rest = data[pos:]
                    return 0
                self.body_bytes = 0
                self._parse_head(data, end, pos)
                pos = end + 4
                if self._state == _HEAD and self._status >= 200:   # no body: 204/304/HEAD
                    return self._done(data, pos)
                continue
            if state in (_CHUNK_SIZE, _TRAILER):
                eol = data.find(b"\r\n", pos)
                if eol < 0:
                    if n - pos > _MAX_CHUNK_LINE:
                        raise ProtocolError("chunk-size or trailer line too long")
                    self._rest = data[pos:]
                    return 0
                line = data[pos:eol]
                pos = eol + 2
                if state == _TRAILER:
                    if not line:
                        return self._done(data, pos)
                    continue
                size_text = line.split(b";", 1)[0].strip()
                try:
                    if not size_text or size_text.startswith((b"-", b"+", b"0x", b"0X")):
                        raise ValueError
                    size = int(size_text, 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size {line[:40]!r}") from None
                if size == 0:
                    self._state = _TRAILER
                else:
                    self._state = _CHUNK_DATA
                    self._remaining = size
                continue
            if state == _CHUNK_DATA:
                avail = n - pos
                if avail < self._remaining:
                    self._remaining -= avail
                    self.body_bytes += avail
                    return 0
                pos += self._remaining
                self.body_bytes += self._remaining
                self._remaining = 0
                self._state = _CHUNK_END
                continue
            if state == _CHUNK_END:
                if n - pos < 2:
                    self._rest = data[pos:]
                    return 0
                if data[pos:pos + 2] != b"\r\n":
                    raise ProtocolError("chunk data not followed by CRLF")
                pos += 2
                self._state = _CHUNK_SIZE
                continue
            # _EOF: the body runs until the server closes the connection
            self.body_bytes += n - pos
            return 0

    def _done(self, data: bytes, pos: int) -> int:
        if pos != len(data):
            raise ProtocolError("unexpected bytes after the response")
        self._state = _HEAD
        return self._status

    def feed_eof(self) -> int:
        """The peer closed: completes a close-delimited body, else the response is lost."""
        if self._state == _EOF:
            self._state = _HEAD
            return self._status
        if self._state == _HEAD and not self._rest:
            raise ProtocolError("connection closed before a response")
        raise ProtocolError("connection closed in the middle of a response")

    def _parse_head(self, data: bytes, end: int, start: int = 0) -> None:
        """Read status and framing headers of data[start:end] and set the next state."""
        if data[start:start + 7] != b"HTTP/1." or data[start + 8:start + 9] != b" ":
            raise ProtocolError(f"bad status line {data[start:start + 40]!r}")
        code = data[start + 9:start + 12]
        if not code.isdigit() or (end > start + 12 and data[start + 12] not in b" \r"):
            raise ProtocolError(f"bad status code in {data[start:start + 40]!r}")
        status = int(code)
        if status < 100:
            raise ProtocolError(f"bad status code {status}")
        http10 = data[start + 7] == 48  # b"0"
        self._status = status
        self.header_bytes = end + 4 - start
        eol = data.find(b"\r\n", start, end)
        # Every header line, lower-cased, each ending in CRLF and starting after one, so a
        # find(b"\r\nname:") is an exact header-name match.
        fields = data[eol:end + 2].lower() if eol >= 0 else b"\r\n"
        keep_alive = not http10
        i = fields.find(b"\r\nconnection:")
        if i >= 0:
            value = fields[i + 13:fields.find(b"\r\n", i + 13)]
            if b"close" in value:
                keep_alive = False
            elif b"keep-alive" in value:
                keep_alive = True
        self.keep_alive = keep_alive
        if status < 200:
            if status == 101:
                raise ProtocolError("unexpected 101 Switching Protocols")
            self._state = _HEAD        # interim response: the real one follows
            return
        if self.head or status == 204 or status == 304:
            self._state = _HEAD
            return
        i = fields.find(b"\r\ntransfer-encoding:")
        if i >= 0:
            value = fields[i + 20:fields.find(b"\r\n", i + 20)]
            if value.rstrip().endswith(b"chunked"):
                self._state = _CHUNK_SIZE
                return
            self._state = _EOF
            self.keep_alive = False
            return
        i = fields.find(b"\r\ncontent-length:")
        if i >= 0:
            value = fields[i + 17:fields.find(b"\r\n", i + 17)].strip()
            if not value.isdigit():
                raise ProtocolError(f"bad Content-Length {value[:40]!r}")
            length = int(value)
            if length == 0:
                self._state = _HEAD
            else:
                self._state = _BODY
                self._remaining = length
            return
        self._state = _EOF             # no framing: the body ends when the server closes
        self.keep_alive = False
