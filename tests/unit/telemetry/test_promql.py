"""The PromQL subset against hand-computed values from Prometheus's own algorithms.

Every rate/increase case below is worked through `extrapolatedRate` (promql/functions.go,
Prometheus >= 2.51) by hand in its comment; histogram_quantile cases through
`BucketQuantile` (promql/quantile.go)."""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Mapping, Sequence

import pytest

from meshpilot.telemetry import grafana, promql
from meshpilot.telemetry.grafana import SEED_P95, SEED_SUCCESS_RATE
from meshpilot.telemetry.promql import (
    Matrix,
    ParseError,
    Scalar,
    SeriesStore,
    UnsupportedError,
    Vector,
    bucket_quantile,
    evaluate,
    extrapolated_rate,
    format_value,
    parse,
)

S = 1000  # ms per second
NAME = "__name__"


def db(*series: tuple[Mapping[str, str], Sequence[tuple[float, float]]]) -> SeriesStore:
    """Series with sample times in seconds."""
    return SeriesStore([(labels, [(round(t * S), v) for t, v in samples])
                        for labels, samples in series])


def run(query: str, storage: SeriesStore, at: float) -> promql.Value:
    return evaluate(query, storage, round(at * S)).value


def vec(query: str, storage: SeriesStore, at: float) -> dict[tuple[tuple[str, str], ...], float]:
    value = run(query, storage, at)
    assert isinstance(value, Vector), value
    return {s.labels: s.value for s in value.samples}


def one(query: str, storage: SeriesStore, at: float) -> float:
    value = run(query, storage, at)
    if isinstance(value, Scalar):
        return value.value
    assert isinstance(value, Vector) and len(value.samples) == 1, value
    return value.samples[0].value


def L(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


EMPTY = db()

# --- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize("query, message", [
    ("", "1:1: parse error: no expression found in input"),
    ("1 +", "1:4: parse error: unexpected end of input"),
    ("sum(x", "1:6: parse error: unexpected end of input in aggregation 'sum'"),
    ("x{a=b}", "1:5: parse error: unexpected identifier 'b' in label matching, expected string"),
    ("x{a~\"b\"}", "1:4: parse error: unexpected character: '~'"),
    ('{a=""}', "vector selector must contain at least one non-empty matcher"),
    ('x{__name__="y"}', "metric name must not be set twice"),
    ("foo(x)", "1:1: parse error: unknown function with name 'foo'"),
    ("rate(x)", "1:6: parse error: expected type range vector in call to function 'rate', "
                "got instant vector"),
    ("histogram_quantile(0.9)", "expected 2 argument(s) in call to 'histogram_quantile'"),
    ("sum(x[5m])", "expected type instant vector in aggregation expression, got range vector"),
    ("1 > 2", "comparisons between scalars must use BOOL modifier"),
    ("x and 1", "set operator 'and' not allowed in binary scalar expression"),
    ("x + bool y", "bool modifier can only be used on comparison operators"),
    ("1 + on(a) x", "vector matching only allowed between instant vectors"),
    ("x and on(a) group_left y", "no grouping allowed for 'and' operation"),
    ("rate(x[5m]) offset 1m", "offset modifier must be preceded by an instant vector selector"),
    ("x offset 1m [5m]", "no offset or @ modifiers allowed before range"),
    ("sum(x)[5m]", "ranges only allowed for vector selectors"),
    ("x[5m] + 1", "binary expression must contain only scalar and instant vector types"),
    ("-x[5m]", "unary expression only allowed on expressions of type scalar or instant vector"),
    ("x[0s]", "duration must be greater than 0"),
    ("x[5m1h]", "not a valid duration string"),
    ('x{a="\\q"}', "1:6: parse error: unknown escape sequence: '\\q'"),
    ('x{a="b', "1:5: parse error: unterminated quoted string"),
    ('x{a=~"(?=b)"}', "lookaround"),
    ('x{a=~"(b"}', "invalid regular expression"),
    ("rate(x[$__rate_interval])", "a Grafana variable: substitute it first"),
    ("sum by (a) (x) by (b)", "aggregation must only contain one grouping clause"),
    ("x\n  + by", "2:5: parse error: unexpected 'by'"),
    ("5m", "unexpected duration '5m'"),
    ("1x", "bad number or duration syntax"),
])
def test_parse_errors_say_what_and_where(query: str, message: str) -> None:
    with pytest.raises(ParseError) as err:
        parse(query)
    assert message in str(err.value)
    assert err.value.error_type == "bad_data"


@pytest.mark.parametrize("query, construct, where", [
    ("rate(x[5m:1m])", "a subquery ([5m:1m])", "1:7"),
    ('label_replace(x, "a", "$1", "b", "(.*)")', "the function label_replace()", "1:1"),
    ('sum(x) / count_values("v", x)', "the count_values aggregation", "1:10"),
    ("predict_linear(x[5m], 60)", "the function predict_linear()", "1:1"),
])
def test_unsupported_constructs_are_named_with_their_position(query: str, construct: str,
                                                              where: str) -> None:
    with pytest.raises(UnsupportedError) as err:
        parse(query)
    text = str(err.value)
    assert text.startswith(f"{where}: {construct} is not supported by meshpilot query"), text


def test_every_dashboard_expression_parses() -> None:
    """The Grafana dashboard's own PromQL (as Grafana sends it) is inside the subset."""
    board = grafana.dashboard()
    exprs = [grafana.render(e, {"namespace": "ns", "service": "svc"})
             for _, e in grafana.expressions(board)]
    assert len(exprs) > 30
    for expr in exprs:
        parse(expr)


@pytest.mark.parametrize("query, expected", [
    ("1 + 2 * 3", 7), ("(1 + 2) * 3", 9), ("2 ^ 3 ^ 2", 512), ("-2 ^ 2", -4),
    ("10 % 3", 1), ("7 - 2 - 1", 4), ("2 > bool 1", 1), ("2 < bool 1", 0),
    ("1 == bool 1", 1), ("0x10 + 1e1", 26), ("- -1", 1), ("8 / 2 / 2", 2),
    ("2 * 3 > bool 5", 1), ("1 atan2 1", math.atan2(1, 1)),
])
def test_scalar_arithmetic_and_precedence(query: str, expected: float) -> None:
    assert one(query, EMPTY, 0) == pytest.approx(expected)


@pytest.mark.parametrize("query, expected", [
    ("1 / 0", math.inf), ("-1 / 0", -math.inf), ("0 / 0", math.nan), ("1 % 0", math.nan),
    ("Inf - Inf", math.nan), ("NaN == bool NaN", 0), ("(-8) ^ 0.5", math.nan),
    ("0 ^ -1", math.inf), ("10 ^ 400", math.inf),
])
def test_float_edge_cases_follow_go(query: str, expected: float) -> None:
    value = one(query, EMPTY, 0)
    assert (math.isnan(value) and math.isnan(expected)) or value == expected


def test_strings_unescape_like_go() -> None:
    # Grafana's cluster filter: PromQL text `\\|` is the regex `\|` (a literal bar).
    data = db(({"__name__": "m", "cluster": "outbound|80||a.ns.svc.cluster.local"}, [(1, 1)]),
              ({"__name__": "m", "cluster": "inbound|80||"}, [(1, 2)]))
    assert vec('m{cluster=~"outbound\\\\|[0-9]+\\\\|[^|]*\\\\|a(\\\\.ns\\\\..*)?"}', data, 2) \
        == {L(__name__="m", cluster="outbound|80||a.ns.svc.cluster.local"): 1}
    assert one("vector(1)", EMPTY, 0) == 1
    assert run('"a\\tb\\x41\\u00e9"', EMPTY, 0) == promql.String("a\tbAé")
    assert run("`raw\\n`", EMPTY, 0) == promql.String("raw\\n")
    assert run("'single \\' quote'", EMPTY, 0) == promql.String("single ' quote")


# --- selectors ------------------------------------------------------------------------

REQUESTS = db(
    ({"__name__": "req", "code": "200", "version": "v1"}, [(10, 1), (20, 2)]),
    ({"__name__": "req", "code": "503", "version": "v1"}, [(10, 3), (20, 4)]),
    ({"__name__": "req", "code": "200", "version": "v2"}, [(10, 5), (20, 6)]),
    ({"__name__": "req", "code": "200", "version": "v10", "extra": "x"}, [(10, 7), (20, 8)]),
    ({"__name__": "other", "code": "200", "version": "v1"}, [(10, 9), (20, 10)]),
)


@pytest.mark.parametrize("query, values", [
    ('req{version="v1"}', {2, 4}),
    ('req{version!="v1"}', {6, 8}),
    ('req{version=~"v1"}', {2, 4}),  # anchored: not v10
    ('req{version=~"v1|v2"}', {2, 4, 6}),
    ('req{version=~"v1.*"}', {2, 4, 8}),
    ('req{version!~"v1.*"}', {6}),
    ('req{code=~"2.*", version="v1"}', {2}),
    ('req{extra=""}', {2, 4, 6}),  # an absent label matches the empty string
    ('req{extra!=""}', {8}),
    ('{__name__=~"req|other", version="v1", code="200"}', {2, 10}),
    ('{version="v2"}', {6}),
])
def test_label_matchers(query: str, values: set[float]) -> None:
    assert set(vec(query, REQUESTS, 25).values()) == values


def test_instant_selector_takes_the_newest_sample_within_the_lookback() -> None:
    data = db(({"__name__": "m"}, [(0, 1), (100, 2), (200, 3)]))
    assert one("m", data, 200) == 3
    assert one("m", data, 199.999) == 2
    assert one("m", data, 400) == 3  # 200 s old: within 5 min
    assert vec("m", data, 500) == {}  # exactly 5 min: the window (t-5m, t] excludes it
    assert one("m", data, 499.999) == 3
    assert one("m offset 100s", data, 200) == 2
    assert one("m @ 100", data, 1000) == 2
    assert one("m @ 150 offset 50s", data, 1000) == 2


def test_range_selector_is_left_open() -> None:
    data = db(({"__name__": "m", "a": "b"}, [(0, 1), (10, 2), (20, 3)]))
    value = run("m[20s]", data, 20)
    assert isinstance(value, Matrix)
    [series] = value.series
    assert series.labels == L(__name__="m", a="b")
    assert list(series.samples) == [(10 * S, 2), (20 * S, 3)]  # the sample at t-20s is out


def test_warning_for_a_metric_the_storage_does_not_hold() -> None:
    result = evaluate("sum(envoy_cluster_upstream_rq_pending_overflow)", REQUESTS, 20 * S)
    assert result.value == Vector([])
    assert "Envoy's own stats" in result.warnings[0]


# --- rate, increase, irate, delta -----------------------------------------------------


def counter(*samples: tuple[float, float]) -> SeriesStore:
    return db(({"__name__": "c", "job": "j"}, samples))


def test_rate_extrapolates_to_both_ends_when_samples_are_close() -> None:
    # Samples 5..55 s every 10 s (10 -> 60) in [0, 60]: increase 50; gaps to the ends are
    # 5 s < 1.1 * 10 s, so extrapolate fully: 50 * (50 + 5 + 5) / 50 = 60 -> 1/s.
    data = counter((5, 10), (15, 20), (25, 30), (35, 40), (45, 50), (55, 60))
    assert one("increase(c[1m])", data, 60) == pytest.approx(60)
    assert one("rate(c[1m])", data, 60) == pytest.approx(1.0)
    assert vec("rate(c[1m])", data, 60).keys() == {L(job="j")}  # the name is dropped


def test_rate_extrapolates_half_an_interval_where_the_series_starts() -> None:
    # 30 s -> 100, 40 s -> 110, 50 s -> 120, range [0, 60]: 30 s from the start >= 11 s,
    # so only avg/2 = 5 s there; zero point 20 * 100/20 = 100 s is farther. End gap 10 s
    # < 11 s: full. 20 * (20 + 5 + 10) / 20 = 35.
    data = counter((30, 100), (40, 110), (50, 120))
    assert one("increase(c[1m])", data, 60) == pytest.approx(35)
    assert one("rate(c[1m])", data, 60) == pytest.approx(35 / 60)


def test_rate_never_extrapolates_a_counter_below_zero() -> None:
    # 30 s -> 1, 40 s -> 11, 50 s -> 21: the zero point is 20 * 1/20 = 1 s before the
    # first sample, shorter than avg/2 = 5 s. 20 * (20 + 1 + 10) / 20 = 31.
    data = counter((30, 1), (40, 11), (50, 21))
    assert one("increase(c[1m])", data, 60) == pytest.approx(31)


def test_zero_point_limits_but_never_lengthens_extrapolation() -> None:
    # 30 s -> 8, 40 s -> 18, 50 s -> 28: zero point 8 s away, between avg/2 (5 s) and
    # 1.1 * avg (11 s). Prometheus >= 2.51 extrapolates 5 s: 20 * 35/20 = 35. (Older
    # versions took the 8 s: 38.)
    data = counter((30, 8), (40, 18), (50, 28))
    assert one("increase(c[1m])", data, 60) == pytest.approx(35)


def test_rate_handles_counter_resets() -> None:
    # (10,5) (20,10) (30,2) (40,7) in (5, 45]: 7 - 5 + 10 (reset after 10) = 12; gaps
    # 5 s < 11 s both ends: 12 * (30 + 5 + 5) / 30 = 16; rate 16 / 40 s = 0.4.
    data = counter((10, 5), (20, 10), (30, 2), (40, 7))
    assert one("increase(c[40s])", data, 45) == pytest.approx(16)
    assert one("rate(c[40s])", data, 45) == pytest.approx(0.4)


def test_rate_needs_two_samples() -> None:
    assert vec("rate(c[1m])", counter((30, 5)), 60) == {}
    assert vec("rate(c[10s])", counter((30, 5), (45, 6)), 60) == {}  # one in (50, 60]


def test_delta_is_not_a_counter() -> None:
    # A gauge going down: -10, extrapolated like rate but never limited by a zero point:
    # 30 s start gap -> 5 s; 10 s end gap: -10 * (20 + 5 + 10) / 20 = -17.5.
    data = counter((30, 10), (40, 5), (50, 0))
    assert one("delta(c[1m])", data, 60) == pytest.approx(-17.5)


def test_irate_and_idelta_use_the_last_two_samples() -> None:
    assert one("irate(c[1m])", counter((10, 5), (20, 10), (25, 20)), 30) == pytest.approx(2)
    # A reset between the last two: the new value counts from zero, 4 over 10 s.
    assert one("irate(c[1m])", counter((10, 5), (20, 10), (30, 4)), 30) == pytest.approx(0.4)
    assert one("idelta(c[1m])", counter((10, 5), (20, 10), (30, 4)), 30) == pytest.approx(-6)


def test_extrapolated_rate_function_directly() -> None:
    samples = [(5 * S, 10.0), (15 * S, 20.0), (25 * S, 30.0), (35 * S, 40.0), (45 * S, 50.0),
               (55 * S, 60.0)]
    assert extrapolated_rate(samples, 0, 60 * S, 60 * S, is_counter=True,
                             is_rate=True) == pytest.approx(1.0)
    assert extrapolated_rate(samples[:1], 0, 60 * S, 60 * S, is_counter=True,
                             is_rate=True) is None


def test_over_time_functions() -> None:
    data = counter((10, 4), (20, 1), (30, 7))
    at = 30
    assert one("sum_over_time(c[1m])", data, at) == 12
    assert one("avg_over_time(c[1m])", data, at) == 4
    assert one("min_over_time(c[1m])", data, at) == 1
    assert one("max_over_time(c[1m])", data, at) == 7
    assert one("count_over_time(c[1m])", data, at) == 3
    assert vec("last_over_time(c[1m])", data, at) == {L(__name__="c", job="j"): 7}


# --- histogram_quantile ---------------------------------------------------------------


def buckets(*pairs: tuple[str, float], **labels: str) -> list[tuple[dict[str, str],
                                                                 list[tuple[float, float]]]]:
    return [({"__name__": "h_bucket", "le": le, **labels}, [(10, count)]) for le, count in pairs]


@pytest.mark.parametrize("q, expected", [
    (0.5, 1.0),  # rank 10 = the first bucket's count: its upper bound
    (0.25, 0.5),  # rank 5 in [0, 1]: interpolated from 0
    (0.75, 1.5),  # rank 15: 5 of the 10 in (1, 2]
    (1.0, 2.0),
    (0.0, 0.0),
])
def test_histogram_quantile_interpolates_inside_the_bucket(q: float, expected: float) -> None:
    data = db(*buckets(("1", 10), ("2", 20), ("+Inf", 20)))
    assert one(f"histogram_quantile({q}, h_bucket)", data, 10) == pytest.approx(expected)


def test_histogram_quantile_edge_cases() -> None:
    # Rank in the +Inf bucket: the highest finite bound.
    assert bucket_quantile(0.9, [(1, 10), (math.inf, 20)]) == 1
    # Rank in the first bucket: interpolated from 0 (not from a lower bound).
    assert bucket_quantile(0.5, [(100, 10), (math.inf, 10)]) == 50
    # A first bucket with a bound <= 0: that bound.
    assert bucket_quantile(0.1, [(-1, 5), (0, 6), (math.inf, 10)]) == -1
    # No +Inf bucket, only +Inf, no observations: NaN.
    assert math.isnan(bucket_quantile(0.5, [(1, 10), (2, 20)]))
    assert math.isnan(bucket_quantile(0.5, [(math.inf, 20)]))
    assert math.isnan(bucket_quantile(0.5, [(1, 0), (math.inf, 0)]))
    assert math.isnan(bucket_quantile(0.5, []))
    # q outside [0, 1].
    assert bucket_quantile(-0.1, [(1, 1), (math.inf, 1)]) == -math.inf
    assert bucket_quantile(1.1, [(1, 1), (math.inf, 1)]) == math.inf
    assert math.isnan(bucket_quantile(math.nan, [(1, 1), (math.inf, 1)]))
    # Unsorted input, duplicate bounds coalesced (summed), non-monotonic counts raised.
    assert bucket_quantile(0.5, [(math.inf, 20), (2, 20), (1, 10)]) == 1
    assert bucket_quantile(0.5, [(1, 4), (1, 6), (2, 20), (math.inf, 20)]) == 1
    assert bucket_quantile(0.5, [(1, 10), (2, 8), (5, 20), (math.inf, 20)]) == 1


def test_histogram_quantile_groups_by_every_label_but_le() -> None:
    data = db(*buckets(("1", 10), ("2", 20), ("+Inf", 20), version="v1"),
              *buckets(("1", 0), ("2", 10), ("+Inf", 10), version="v2"),
              ({"__name__": "h_bucket", "version": "v3"}, [(10, 5)]))  # no le: ignored
    result = evaluate("histogram_quantile(0.5, h_bucket)", data, 10 * S)
    assert {s.labels: s.value for s in result.value.samples} == {  # type: ignore[union-attr]
        L(version="v1"): 1.0, L(version="v2"): 1.5}
    assert not result.warnings
    assert "quantile value should be between 0 and 1" in evaluate(
        "histogram_quantile(2, h_bucket)", data, 10 * S).warnings[0]
    empty = db(*buckets(("1", 0), ("+Inf", 0)))
    assert math.isnan(one("histogram_quantile(0.5, h_bucket)", empty, 10))


def test_seed_expressions_on_a_known_mix() -> None:
    """The seed's success rate and p95 on two samples 10 s apart: 100 requests to v2 (85
    fast, 10 at 300 ms, 5 fast 503s), prewarm values equal to the mix so every series
    extrapolates alike."""
    t0, t1 = 100, 110
    base = {"destination_service_name": "sample-app", "destination_version": "v2"}
    series = []
    for code, fast, slow in (("200", 85, 10), ("503", 5, 0)):
        labels = {**base, "response_code": code}
        n = fast + slow
        series.append(({"__name__": "istio_requests_total", **labels}, [(t0, n), (t1, 2 * n)]))
        for le, count in (("100", fast), ("250", fast), ("500", n), ("+Inf", n)):
            series.append(({"__name__": "istio_request_duration_milliseconds_bucket",
                            "le": le, **labels}, [(t0, count), (t1, 2 * count)]))
    data = db(*series)
    success, p95 = SEED_SUCCESS_RATE, SEED_P95
    assert one(success, data, 112) == pytest.approx(0.95, abs=1e-12)
    # Rank 95 of 100 (both scaled alike by rate); 90 at or below 250 ms, all 100 at or
    # below 500 ms: 250 + (500 - 250) * (95 - 90) / 10 = 375.
    assert one(p95, data, 112) == pytest.approx(375)
    # Rank 90 is exactly the 100 ms bucket's count: that bucket's bound.
    assert one(p95.replace("0.95", "0.9"), data, 112) == pytest.approx(100)


# --- aggregation ----------------------------------------------------------------------


AGG = db(
    ({"__name__": "x", "svc": "a", "version": "v1", "code": "200"}, [(1, 1)]),
    ({"__name__": "x", "svc": "a", "version": "v2", "code": "200"}, [(1, 2)]),
    ({"__name__": "x", "svc": "a", "version": "v2", "code": "503"}, [(1, 3)]),
    ({"__name__": "x", "svc": "b", "version": "v1", "code": "200"}, [(1, 10)]),
)


@pytest.mark.parametrize("query, expected", [
    ("sum(x)", {(): 16}),
    ("sum by (version) (x)", {L(version="v1"): 11, L(version="v2"): 5}),
    ("sum(x) by (version)", {L(version="v1"): 11, L(version="v2"): 5}),
    ("sum without (code, svc) (x)", {L(version="v1"): 11, L(version="v2"): 5}),
    ("avg by (svc) (x)", {L(svc="a"): 2, L(svc="b"): 10}),
    ("min by (svc) (x)", {L(svc="a"): 1, L(svc="b"): 10}),
    ("max by (svc) (x)", {L(svc="a"): 3, L(svc="b"): 10}),
    ("count by (svc) (x)", {L(svc="a"): 3, L(svc="b"): 1}),
    ("group by (svc) (x)", {L(svc="a"): 1, L(svc="b"): 1}),
    ("sum by (nothere) (x)", {(): 16}),
    ("stdvar by (svc) (x)", {L(svc="a"): pytest.approx(2 / 3), L(svc="b"): 0}),
    ("stddev(x{svc=\"a\"})", {(): pytest.approx(math.sqrt(2 / 3))}),
    ("quantile(0.5, x)", {(): 2.5}),
    ("quantile by (svc) (0.5, x)", {L(svc="a"): 2, L(svc="b"): 10}),
])
def test_aggregations(query: str, expected: dict) -> None:
    assert vec(query, AGG, 1) == expected


def test_topk_and_bottomk_keep_the_whole_series() -> None:
    value = run("topk(2, x)", AGG, 1)
    assert isinstance(value, Vector)
    assert [s.value for s in value.samples] == [10, 3]
    assert value.samples[0].labels == L(__name__="x", svc="b", version="v1", code="200")
    assert [s.value for s in run("bottomk by (svc) (1, x)", AGG, 1).samples] == [1, 10]  # type: ignore[union-attr]
    assert vec("topk(0, x)", AGG, 1) == {}


# --- binary operators -----------------------------------------------------------------


def test_vector_scalar_arithmetic_drops_the_name_and_comparisons_filter() -> None:
    assert vec('x{svc="b"} * 2', AGG, 1) == {L(svc="b", version="v1", code="200"): 20}
    assert vec("2 - x{svc=\"b\"}", AGG, 1) == {L(svc="b", version="v1", code="200"): -8}
    assert set(vec("x > 2", AGG, 1).values()) == {3, 10}
    assert vec("x > 2", AGG, 1).keys() >= {L(__name__="x", svc="b", version="v1", code="200")}
    assert set(vec("5 < x", AGG, 1).values()) == {10}  # the vector's value, not the 5
    assert sorted(vec("x > bool 2", AGG, 1).values()) == [0, 0, 1, 1]
    assert all(NAME not in dict(k) for k in vec("x > bool 2", AGG, 1))



def test_vector_matching_one_to_one() -> None:
    data = db(
        ({"__name__": "ok", "version": "v1"}, [(1, 9)]),
        ({"__name__": "ok", "version": "v2"}, [(1, 1)]),
        ({"__name__": "all", "version": "v1"}, [(1, 10)]),
        ({"__name__": "all", "version": "v2"}, [(1, 4)]),
        ({"__name__": "all", "version": "v3"}, [(1, 4)]),
    )
    assert vec("ok / all", data, 1) == {L(version="v1"): 0.9, L(version="v2"): 0.25}
    assert vec("ok / on(version) all", data, 1) == {L(version="v1"): 0.9, L(version="v2"): 0.25}
    assert vec("ok > all", data, 1) == {}
    assert vec("all > ok", data, 1) == {L(__name__="all", version="v1"): 10,
                                        L(__name__="all", version="v2"): 4}
    assert vec("ok == bool on() group_left sum(ok)", data, 1) == {
        L(version="v1"): 0, L(version="v2"): 0}


def test_on_ignoring_and_group_left() -> None:
    data = db(
        ({"__name__": "req", "version": "v1", "code": "200"}, [(1, 8)]),
        ({"__name__": "req", "version": "v1", "code": "503"}, [(1, 2)]),
        ({"__name__": "tot", "version": "v1", "team": "t"}, [(1, 10)]),
    )
    assert vec("req / ignoring(code) group_left sum by (version) (req)", data, 1) == {
        L(version="v1", code="200"): 0.8, L(version="v1", code="503"): 0.2}
    assert vec("req / on(version) group_left(team) tot", data, 1) == {
        L(version="v1", code="200", team="t"): 0.8, L(version="v1", code="503", team="t"): 0.2}
    assert vec("sum by (version) (req) / on(version) tot", data, 1) == {L(version="v1"): 1}
    assert vec("tot / on(version) group_right req", data, 1) == {
        L(version="v1", code="200"): 1.25, L(version="v1", code="503"): 5}


def test_matching_errors_are_prometheus_s() -> None:
    data = db(({"__name__": "a", "v": "1", "c": "x"}, [(1, 1)]),
              ({"__name__": "a", "v": "1", "c": "y"}, [(1, 1)]),
              ({"__name__": "b", "v": "1"}, [(1, 1)]), ({"__name__": "b2", "v": "1"}, [(1, 1)]))
    with pytest.raises(promql.EvalError, match="many-to-one matching must be explicit"):
        run("a / on(v) b", data, 1)
    with pytest.raises(promql.EvalError, match="found duplicate series for the match group"):
        run("b / on(v) a", data, 1)
    with pytest.raises(promql.EvalError, match="vector cannot contain metrics with the same"):
        run('{__name__=~"b|b2"} * 1', data, 1)


def test_set_operators() -> None:
    data = db(({"__name__": "a", "v": "1"}, [(1, 1)]), ({"__name__": "a", "v": "2"}, [(1, 2)]),
              ({"__name__": "b", "v": "2"}, [(1, 20)]), ({"__name__": "b", "v": "3"}, [(1, 30)]))
    assert set(vec("a and b", data, 1).values()) == {2}
    assert set(vec("a unless b", data, 1).values()) == {1}
    assert set(vec("a or b", data, 1).values()) == {1, 2, 30}
    assert set(vec("a and on() b", data, 1).values()) == {1, 2}


# --- other functions ------------------------------------------------------------------


def test_math_functions() -> None:
    data = db(({"__name__": "m"}, [(1, -2.5)]))
    assert one("abs(m)", data, 1) == 2.5
    assert one("ceil(m)", data, 1) == -2
    assert one("floor(m)", data, 1) == -3
    assert one("round(m)", data, 1) == -2  # Prometheus rounds half up: floor(x + 0.5)
    assert one("round(m * 1.2345, 0.001)", data, 1) == pytest.approx(-3.086)
    assert one("clamp(m, -1, 1)", data, 1) == -1
    assert one("clamp_min(m, 0)", data, 1) == 0
    assert one("clamp_max(m, -3)", data, 1) == -3
    assert vec("clamp(m, 1, -1)", data, 1) == {}
    assert one("sgn(m)", data, 1) == -1
    assert math.isnan(one("sqrt(m)", data, 1))
    assert one("ln(m * 0)", data, 1) == -math.inf
    assert one("scalar(m)", data, 1) == -2.5
    assert math.isnan(one("scalar(nothing)", data, 1))
    assert one("time()", data, 12.5) == 12.5
    assert one("vector(time()) + 1", data, 2) == 3
    # `or` matches on labels without the name: vector(7) has the same (none) as m.
    assert vec("m or vector(7)", data, 1) == {L(__name__="m"): -2.5}
    two = db(({"__name__": "m", "i": "1"}, [(1, 1)]), ({"__name__": "m", "i": "2"}, [(1, 2)]))
    assert [s.value for s in run("sort_desc(m)", two, 1).samples] == [2, 1]  # type: ignore[union-attr]
    assert [s.value for s in run("sort(m)", two, 1).samples] == [1, 2]  # type: ignore[union-attr]


# --- output ---------------------------------------------------------------------------


@pytest.mark.parametrize("value, text", [
    (0.95, "0.95"), (1.0, "1"), (375.0, "375"), (1e-7, "0.0000001"),
    (1e22, "10000000000000000000000"), (123.456, "123.456"), (math.inf, "+Inf"),
    (-math.inf, "-Inf"), (math.nan, "NaN"), (-0.0, "-0"), (0.1 + 0.2, "0.30000000000000004"),
])
def test_values_print_like_go_format_float(value: float, text: str) -> None:
    assert format_value(value) == text


def test_api_data_shapes() -> None:
    data = db(({"__name__": "m", "a": "b"}, [(1, 1), (1.5, 2)]))
    vector = promql.api_data(evaluate("m", data, 2 * S))
    assert vector == {"resultType": "vector",
                      "result": [{"metric": {"__name__": "m", "a": "b"}, "value": [2, "2"]}]}
    scalar = promql.api_data(evaluate("1 / 4", data, 2500))
    assert scalar == {"resultType": "scalar", "result": [2.5, "0.25"]}
    matrix = promql.api_data(evaluate("m[1m]", data, 2 * S))
    assert matrix == {"resultType": "matrix", "result": [
        {"metric": {"__name__": "m", "a": "b"}, "values": [[1, "1"], [1.5, "2"]]}]}


def test_parenthesized_ranges_and_offsets_in_functions() -> None:
    data = counter((5, 10), (15, 20), (25, 30), (35, 40), (45, 50), (55, 60))
    assert one("rate((c[1m]))", data, 60) == pytest.approx(1.0)
    # Offset 10 s: the window (-10, 50] holds 5..45 s (10 -> 50): increase 40; start gap
    # 15 s >= 11 s -> avg/2 = 5 s (zero point 10 s away: not binding); end gap 5 s:
    # 40 * (40 + 5 + 5) / 40 = 50.
    assert one("increase(c[1m] offset 10s)", data, 60) == pytest.approx(50)


FRAGMENTS = ["sum", "rate", "(", ")", "{", "}", "[", "]", "5m", ",", "x", "y", "1", "0.5",
             '"a"', "=", "=~", "!=", "+", "-", "*", "/", "^", ">", "bool", "by", "without",
             "on", "ignoring", "group_left", "offset", "@", "and", "or", "le", ":",
             "histogram_quantile", "topk", "abs", "time", "Inf", "`b`", "'c'", "#", "\n"]


def test_random_input_gives_a_value_or_a_promql_error_never_a_crash() -> None:
    rng = random.Random(1)
    data = db(({"__name__": "x", "le": "1"}, [(1, 1), (2, 3)]),
              ({"__name__": "y", "le": "+Inf"}, [(1, 2), (2, 5)]))
    parsed = 0
    for _ in range(4000):
        text = " ".join(rng.choice(FRAGMENTS) for _ in range(rng.randint(1, 9)))
        try:
            node = parse(text)
        except promql.PromQLError:
            continue
        parsed += 1
        with contextlib.suppress(promql.EvalError):
            evaluate(node, data, 2 * S)
    assert parsed > 100
