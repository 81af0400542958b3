"""The small pieces behind the diagnostics commands: Go tabwriter alignment, proxy names,
stat filters, log tailing and following, certificate facts, route match rendering."""

from __future__ import annotations

import io
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from meshpilot.cli.diagnostics.admin import DiagnosticsError, split_proxy_name
from meshpilot.cli.diagnostics.certs import cert_info, is_ca_certificate
from meshpilot.cli.diagnostics.logs import follow, tail_lines
from meshpilot.cli.diagnostics.routes_table import (
    describe_destination,
    describe_domains,
    describe_match,
)
from meshpilot.cli.diagnostics.stats import FILTERS, drop_zero, stat_regex, stats_path
from meshpilot.cli.diagnostics.tabwriter import tabulate
from meshpilot.cli.main import build_parser

DATA = Path(__file__).parents[2] / "data" / "diagnostics"


def test_tabwriter_pads_every_cell_but_the_last() -> None:
    assert tabulate([["A", "BB", "C"], ["aaa", "b", "c"]]) == "A       BB     C\naaa     b      c"
    assert tabulate([["A", "B"], ["x", ""]], padding=1) == "A B\nx"  # no trailing spaces
    assert tabulate([]) == ""


@pytest.mark.parametrize(("text", "ns", "expected"), [
    ("client", None, ("client", None)),
    ("client.traffic-demo", None, ("client", "traffic-demo")),
    ("client", "traffic-demo", ("client", "traffic-demo")),
    ("client.traffic-demo", "traffic-demo", ("client", "traffic-demo")),
])
def test_proxy_names_like_istioctl(text: str, ns: str | None,
                                   expected: tuple[str, str | None]) -> None:
    assert split_proxy_name(text, ns) == expected


def test_parser_has_istioctl_aliases() -> None:
    parser = build_parser()
    for argv, kind in ((["pc", "c", "p"], "cluster"), (["proxy-config", "routes", "p"], "route"),
                       (["pc", "ep", "p"], "endpoint"), (["pc", "l", "p"], "listener"),
                       (["pc", "s", "p"], "secret"), (["pc", "b", "p"], "bootstrap"),
                       (["pc", "a", "p"], "all")):
        assert parser.parse_args(argv).pc_kind == kind
    assert parser.parse_args(["pc", "b", "p"]).output == "json"  # istioctl's default
    assert parser.parse_args(["pc", "c", "p"]).output == "short"
    assert parser.parse_args(["ps"]).proxy is None
    assert parser.parse_args(["describe", "svc", "x"]).namespace == "default"


def test_stat_filters() -> None:
    assert stat_regex("retry") == f"(?:{FILTERS['retry']})"
    assert stat_regex("circuit-breaker") == f"(?:{FILTERS['circuit_breaker']})"
    assert stat_regex("upstream_rq_5xx") == "(?:upstream_rq_5xx)"
    assert stat_regex(None, "|v2|") == r"cluster\.[^ ]*\|v2\|"
    assert stat_regex(None) is None
    with pytest.raises(DiagnosticsError, match="not a filter name"):
        stat_regex("(")
    assert stats_path("text", None) == "/stats"
    assert stats_path("json", "a|b") == "/stats?format=json&filter=a%7Cb"
    assert stats_path("prometheus", "x") == "/stats/prometheus?filter=x"
    assert drop_zero("a: 0\nb: 3\nc: P0(nan,0)\n") == "b: 3\nc: P0(nan,0)\n"


def test_tail_lines(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    log.write_bytes(b"".join(f"line {i}\n".encode() for i in range(10000)))
    size = log.stat().st_size
    assert tail_lines(log, 2, size) == b"line 9998\nline 9999\n"
    assert tail_lines(log, 0, size) == b""
    assert tail_lines(log, -1, 14) == b"line 0\nline 1\n"
    assert tail_lines(log, 3, 14) == b"line 0\nline 1\n"


def test_follow_survives_truncation_and_late_files(tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    out = io.BytesIO()

    def writer() -> None:
        time.sleep(0.3)
        log.write_bytes(b"first\n")  # created after follow started
        time.sleep(0.5)
        with log.open("ab") as f:
            f.write(b"second\n")
        time.sleep(0.5)
        log.write_bytes(b"new\n")  # truncated and rewritten (log rotation)

    t = threading.Thread(target=writer)
    t.start()
    follow(log, out, offset=0, stop_after=2.5)
    t.join()
    assert out.getvalue() == b"first\nsecond\nnew\n"


def test_certificate_facts() -> None:
    ca = cert_info((DATA / "ca.crt").read_text(), now=datetime(2026, 11, 28, tzinfo=UTC))
    leaf = cert_info((DATA / "leaf.crt").read_text(), now=datetime(2030, 1, 1, tzinfo=UTC))
    assert ca is not None and ca.is_ca and ca.valid
    assert ca.serial == "b2c04d36328813d4e6bb56ab23a8d66eb94ff0c"
    assert (ca.not_before, ca.not_after) == ("2026-11-27T12:26:25Z", "2026-11-29T12:26:25Z")
    assert leaf is not None and not leaf.is_ca and not leaf.valid
    assert cert_info("not a certificate") is None
    assert is_ca_certificate(b"") is False


def test_route_match_and_destination_rendering() -> None:
    assert describe_match({"prefix": "/"}) == "/*"
    assert describe_match({"path": "/exact"}) == "/exact"
    assert describe_match({"safe_regex": {"regex": "/v[12]/.*"}}) == "regex /v[12]/.*"
    assert describe_match({"path_separated_prefix": "/api"}) == "PathPrefix:/api"
    assert describe_match({"prefix": "/", "headers": [
        {"name": "version", "string_match": {"exact": "v2"}},
        {"name": "user-agent", "string_match": {"safe_regex": {"regex": ".*Chrome.*"}}},
        {"name": "x-pre", "string_match": {"prefix": "a"}},
        {"name": "x-no", "present_match": True, "invert_match": True},
        {"name": "x-not", "string_match": {"exact": "b"}, "invert_match": True}],
        "query_parameters": [{"name": "debug", "string_match": {"exact": "1"}}]}) == (
        "/* (version=v2, user-agent~.*Chrome.*, x-pre=a*, !x-no, x-not!=b, ?debug=1)")
    vh = "h.ns.svc.cluster.local:80"
    weighted = {"route": {"weighted_clusters": {"clusters": [
        {"name": "outbound|80|v1|h.ns.svc.cluster.local", "weight": 1},
        {"name": "outbound|80|v2|h.ns.svc.cluster.local", "weight": 2}]}}}
    assert describe_destination(weighted, vh) == "v1:33.3% v2:66.7%"
    assert describe_destination({"route": {"cluster": "outbound|80||h.ns.svc.cluster.local"}},
                                vh) == "outbound|80||h.ns.svc.cluster.local"
    assert describe_destination({"direct_response": {"status": 502}}, vh) == \
        "direct_response 502"
    assert describe_destination({"redirect": {"scheme_redirect": "https"}}, vh) == \
        "redirect https://"


def test_domains_like_istioctl() -> None:
    assert describe_domains(["*"]) == "*"
    assert describe_domains(["a", "a:80", "a.ns", "a.ns:80", "a.ns.svc", "a.ns.svc:80",
                             "a.ns.svc.cluster.local", "a.ns.svc.cluster.local:80"]) == "a, a.ns"
    assert describe_domains(["x.com", "y.com", "z.com"]) == "x.com, y.com + 1 more..."
