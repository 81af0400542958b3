"""Flag-level parsing: durations, headers, targets (direct and via explicit proxy)."""

from __future__ import annotations

import pytest

from meshpilot.cli.main import build_parser
from meshpilot.load.spec import LoadSpec, Target, UsageError, parse_duration, parse_header


@pytest.mark.parametrize("text,seconds", [
    ("5s", 5), ("500ms", 0.5), ("1m30s", 90), ("2", 2), ("0", 0), ("1.5s", 1.5),
    ("1h", 3600), ("250us", 0.00025)])
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5x", "s", "5s3", "-1", "1 s"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(UsageError):
        parse_duration(text)


def test_parse_header() -> None:
    assert parse_header("X-A:  b c ") == ("X-A", "b c")
    assert parse_header("Host: h:1") == ("Host", "h:1")
    for bad in ("nocolon", ": v", "a b: c"):
        with pytest.raises(UsageError):
            parse_header(bad)


def test_direct_target() -> None:
    t = Target.from_spec(LoadSpec("127.0.0.1:9000/a?b=1"))
    assert (t.connect_host, t.connect_port) == ("127.0.0.1", 9000)
    assert t.request.startswith(b"GET /a?b=1 HTTP/1.1\r\nHost: 127.0.0.1:9000\r\n")


def test_proxy_target_uses_absolute_form() -> None:
    t = Target.from_spec(LoadSpec("http://sample-app/x", proxy="http://127.0.0.1:15001"))
    assert (t.connect_host, t.connect_port) == ("127.0.0.1", 15001)
    assert t.request.startswith(b"GET http://sample-app/x HTTP/1.1\r\nHost: sample-app\r\n")


@pytest.mark.parametrize("spec", [
    LoadSpec("https://x/"), LoadSpec("http:///"), LoadSpec("http://x/", connections=0),
    LoadSpec("http://x/", procs=3, connections=2), LoadSpec("http://x/", qps=-1),
    LoadSpec("http://x/", percentiles=(101,)), LoadSpec("http://x/", method="G T")])
def test_invalid_specs(spec: LoadSpec) -> None:
    with pytest.raises(UsageError):
        spec.validate()


def test_cli_accepts_fortio_single_dash_flags() -> None:
    args = build_parser().parse_args(
        ["load", "-c", "20", "-qps", "50", "-t", "30s", "-json", "-", "-p", "50,99.9",
         "-H", "a: b", "-x", "127.0.0.1:15001", "http://sample-app/"])
    assert (args.connections, args.qps, args.duration) == (20, 50.0, 30.0)
    assert args.json == "-" and args.percentiles == (50.0, 99.9)
    assert args.proxy == "127.0.0.1:15001" and args.headers == ["a: b"]
    args = build_parser().parse_args(["load", "--qps", "0", "--procs", "2", "-n", "9", "u"])
    assert (args.qps, args.procs, args.calls) == (0.0, 2, 9)
