"""Response framing: the parser must find exactly where each response ends, however the
bytes are split across reads, or the load tool would mis-count and desynchronise."""

from __future__ import annotations

import itertools

import pytest

from meshpilot.load.http1 import ProtocolError, ResponseParser, build_request

CL = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
           b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\n")


def feed_split(parser: ResponseParser, data: bytes, at: list[int]) -> list[int]:
    """Feed data cut at the given offsets; return the feed results."""
    cuts = [0, *at, len(data)]
    return [parser.feed(data[a:b]) for a, b in itertools.pairwise(cuts) if b > a]


@pytest.mark.parametrize("data,status,body", [(CL, 200, 5), (CHUNKED, 201, 11)])
def test_every_single_split_point(data: bytes, status: int, body: int) -> None:
    for cut in range(1, len(data)):
        p = ResponseParser()
        results = feed_split(p, data, [cut])
        assert results[-1] == status, cut
        assert all(r == 0 for r in results[:-1]), cut
        assert p.body_bytes == body
        assert p.keep_alive


@pytest.mark.parametrize("data,status", [(CL, 200), (CHUNKED, 201)])
def test_byte_at_a_time_then_next_response(data: bytes, status: int) -> None:
    p = ResponseParser()
    for _ in range(2):  # the same parser carries on with the next response
        results = [p.feed(data[i:i + 1]) for i in range(len(data))]
        assert results[-1] == status
        assert results.count(status) == 1


def test_repeated_identical_responses_use_cache_consistently() -> None:
    p = ResponseParser()
    for _ in range(3):
        assert p.feed(CL) == 200
        assert p.body_bytes == 5 and p.keep_alive


def test_connection_close_and_http10() -> None:
    p = ResponseParser()
    assert p.feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n") == 200
    assert not p.keep_alive
    p = ResponseParser()
    assert p.feed(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok") == 200
    assert not p.keep_alive
    p = ResponseParser()
    assert p.feed(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n"
                  b"Content-Length: 2\r\n\r\nok") == 200
    assert p.keep_alive


def test_header_names_are_case_insensitive_and_values_trimmed() -> None:
    p = ResponseParser()
    assert p.feed(b"HTTP/1.1 404 Not Found\r\ncOnTeNt-LeNgTh:   3  \r\n\r\nabc") == 404
    assert p.body_bytes == 3


def test_similar_header_names_do_not_match() -> None:
    p = ResponseParser()
    data = b"HTTP/1.1 200 OK\r\nX-Content-Length: 99\r\nContent-Length: 1\r\n\r\nx"
    assert p.feed(data) == 200


def test_close_delimited_body_completes_at_eof() -> None:
    p = ResponseParser()
    assert p.feed(b"HTTP/1.1 200 OK\r\n\r\nsome body") == 0
    assert p.feed(b" more") == 0
    assert p.feed_eof() == 200
    assert not p.keep_alive
    assert p.body_bytes == len(b"some body more")


def test_no_body_statuses_and_head() -> None:
    p = ResponseParser()
    assert p.feed(b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n") == 204
    assert p.feed(b"HTTP/1.1 304 Not Modified\r\n\r\n") == 304
    head = ResponseParser(head=True)
    assert head.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n") == 200
    assert head.keep_alive


def test_interim_100_continue_is_skipped() -> None:
    p = ResponseParser()
    data = b"HTTP/1.1 100 Continue\r\n\r\n" + CL
    assert p.feed(data) == 200
    p = ResponseParser()
    assert p.feed(b"HTTP/1.1 100 Continue\r\n\r\n") == 0
    assert p.feed(CL) == 200


def test_status_line_without_reason() -> None:
    assert ResponseParser().feed(b"HTTP/1.1 503\r\nContent-Length: 0\r\n\r\n") == 503


@pytest.mark.parametrize("data", [
    b"HTTP/2 200 OK\r\n\r\n",
    b"XTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-5\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXX",
    b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabEXTRA",
])
def test_malformed_responses_raise(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        ResponseParser().feed(data)


def test_oversized_head_raises() -> None:
    p = ResponseParser()
    with pytest.raises(ProtocolError):
        p.feed(b"HTTP/1.1 200 OK\r\n" + b"X: " + b"a" * 70_000)


def test_eof_mid_response_is_an_error() -> None:
    p = ResponseParser()
    assert p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc") == 0
    with pytest.raises(ProtocolError):
        p.feed_eof()
    with pytest.raises(ProtocolError):
        ResponseParser().feed_eof()


def test_reset_discards_partial_state() -> None:
    p = ResponseParser()
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Le")
    p.reset()
    assert p.feed(CL) == 200


def test_build_request_defaults_and_overrides() -> None:
    req = build_request("GET", "/x?y=1", "example:8080", [("X-A", "1")])
    assert req.startswith(b"GET /x?y=1 HTTP/1.1\r\nHost: example:8080\r\n")
    assert b"\r\nX-A: 1\r\n" in req and req.endswith(b"\r\n\r\n")
    req = build_request("GET", "/", "a", [("host", "b"), ("User-Agent", "me")])
    assert b"Host: a" not in req and b"host: b" in req and req.count(b"User-Agent") == 1
    post = build_request("POST", "/", "a", [], b"data")
    assert post.endswith(b"Content-Length: 4\r\n\r\ndata")
