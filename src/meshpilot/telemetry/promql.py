"""A PromQL subset: parser and evaluator for instant queries, pure (no clock, no I/O).

Why: the seed's canary script, Flagger-style checks and the Grafana dashboard ask their
questions in PromQL. A user without a Prometheus still has the control plane, which keeps a
short sample history of Istio's series (history.py); this module answers the same PromQL
over that history (`meshpilot query`, `GET /api/v1/query`), or over any other sample source
(tests feed it samples fetched from a real Prometheus and expect identical answers).

Semantics are Prometheus's own (promql/engine.go, functions.go, quantile.go, read at
Prometheus 3.x), not an approximation:

- instant selectors take each series' newest sample in (t - 5m, t]; range selectors
  `[5m]` take the samples in (t - 5m, t] (left-open, as Prometheus 3; 2.x was closed);
- `rate`/`increase`/`delta` extrapolate as `extrapolatedRate` does, including the
  zero-point limit for counters in its >= 2.51 form (`extrapolated_rate` below; Prometheus
  before 2.51 let that limit *lengthen* the extrapolation in one corner case);
- `histogram_quantile` sorts and coalesces buckets, forces monotonicity (ignoring
  1e-12 relative noise), needs a +Inf bucket and interpolates linearly in the bucket the
  rank falls in, returning the highest finite bound when the rank is in +Inf;
- vector matching is one-to-one by all labels but the name, with `on`/`ignoring` and
  `group_left`/`group_right`; arithmetic drops the metric name, comparisons filter unless
  `bool`; duplicate results are errors with Prometheus's messages;
- numbers print as Go's `strconv.FormatFloat(v, 'f', -1, 64)`, as the HTTP API does.

What is not implemented (subqueries, `count_values`, `label_replace`, native histograms,
...) is refused at parse time with the construct and its position, never half-evaluated.
Regexes are Python's `re`, fully anchored and with `.` matching newlines like Prometheus's
RE2 patterns; RE2 has no lookaround or backreferences, so those are refused too.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Protocol

Labels = tuple[tuple[str, str], ...]  # sorted by name; empty values never stored
NAME = "__name__"
LOOKBACK_MS = 5 * 60 * 1000  # Prometheus's default --query.lookback-delta

# --- errors ---------------------------------------------------------------------------


class PromQLError(Exception):
    """A query Prometheus would refuse; `error_type` is the HTTP API's errorType."""

    error_type = "bad_data"


class ParseError(PromQLError):
    """Bad syntax or types, located as Prometheus locates them (`line:column: ...`)."""


class UnsupportedError(ParseError):
    """Valid PromQL that this subset does not implement."""


class EvalError(PromQLError):
    """The query parsed but cannot be evaluated on this data (many-to-many matching...)."""

    error_type = "execution"


# --- values ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    labels: Labels
    value: float


@dataclass(frozen=True, slots=True)
class Series:
    labels: Labels
    samples: Sequence[tuple[int, float]]  # (milliseconds since the epoch, value), ascending


@dataclass(frozen=True, slots=True)
class Scalar:
    value: float


@dataclass(frozen=True, slots=True)
class String:
    value: str


@dataclass(frozen=True, slots=True)
class Vector:
    samples: list[Sample]
    ordered: bool = False  # sort(), topk(): keep this order in the output


@dataclass(frozen=True, slots=True)
class Matrix:
    series: list[Series]


Value = Scalar | String | Vector | Matrix


def labels_of(mapping: Mapping[str, str]) -> Labels:
    """Canonical label set: sorted, empty values dropped (Prometheus stores no empty label)."""
    return tuple(sorted((k, v) for k, v in mapping.items() if v != ""))


def get_label(labels: Labels, name: str) -> str:
    """A label's value, "" when absent (Prometheus treats both alike)."""
    for k, v in labels:
        if k == name:
            return v
    return ""


def _drop_name(labels: Labels) -> Labels:
    return tuple(kv for kv in labels if kv[0] != NAME)


def format_labels(labels: Labels) -> str:
    """`name{a="b", ...}`, as Prometheus prints label sets in its messages."""
    name = get_label(labels, NAME)
    rest = ", ".join(f'{k}="{_escape(v)}"' for k, v in labels if k != NAME)
    return f"{name}{{{rest}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


# --- matchers and storage -------------------------------------------------------------

_LOOKAROUND = re.compile(r"\(\?<?[=!]")
_BACKREF = re.compile(r"(?<!\\)(?:\\\\)*\\[1-9]")


@dataclass(frozen=True)
class Matcher:
    """A label matcher; regexes are anchored at both ends (`fullmatch`), as Prometheus's."""

    name: str
    op: str  # "=", "!=", "=~", "!~"
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def make(cls, name: str, op: str, value: str) -> Matcher:
        """Raises ValueError (with the reason) for a regex RE2 would refuse."""
        regex = None
        if op in ("=~", "!~"):
            if _LOOKAROUND.search(value):
                raise ValueError("lookaround assertions ((?=...), (?!...), (?<=...)) are "
                                 "Perl syntax that Prometheus's RE2 regexes do not support")
            if _BACKREF.search(value):
                raise ValueError("backreferences (\\1...) are not supported by RE2")
            try:
                regex = re.compile(value, re.DOTALL)
            except re.error as e:
                raise ValueError(str(e)) from None
        return cls(name, op, value, regex)

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.regex is not None
        found = self.regex.fullmatch(value) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{_escape(self.value)}"'


class Storage(Protocol):
    """Where samples come from: the control plane's history, or test data."""

    def select(self, matchers: Sequence[Matcher], start: int, end: int) -> Iterable[Series]:
        """Series matching every matcher, each with its samples in (start, end] (ms)."""
        ...

    def metric_names(self) -> Collection[str] | None:
        """Every metric name held (for "no such metric" warnings), or None if unknown."""
        ...


class SeriesStore:
    """Storage over given series: for tests, and for samples fetched from elsewhere."""

    def __init__(self, series: Iterable[tuple[Mapping[str, str], Sequence[tuple[int, float]]]]
                 ) -> None:
        self._series = [Series(labels_of(labels), sorted(samples)) for labels, samples in series]

    def select(self, matchers: Sequence[Matcher], start: int, end: int) -> list[Series]:
        out = []
        for s in self._series:
            if all(m.matches(get_label(s.labels, m.name)) for m in matchers):
                samples = [(t, v) for t, v in s.samples if start < t <= end]
                if samples:
                    out.append(Series(s.labels, samples))
        return out

    def metric_names(self) -> Collection[str]:
        return {get_label(s.labels, NAME) for s in self._series}


# --- lexer ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Token:
    kind: str  # num dur str id op ( ) { } [ ] , : @ eof
    text: str
    pos: int
    value: float | int | str | None = None


_NUMBER = re.compile(r"0[xX][0-9a-fA-F]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_DURATION = re.compile(r"(?:[0-9]+(?:ms|[smhdwy]))+")
_DURATION_PART = re.compile(r"([0-9]+)(ms|[smhdwy])")
_UNITS_MS = {"y": 365 * 86_400_000, "w": 7 * 86_400_000, "d": 86_400_000, "h": 3_600_000,
             "m": 60_000, "s": 1000, "ms": 1}
_UNIT_ORDER = ("y", "w", "d", "h", "m", "s", "ms")
_IDENT = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_WORD_CHAR = re.compile(r"[a-zA-Z0-9_]")
_OPERATORS = ("==", "!=", "=~", "!~", ">=", "<=", "+", "-", "*", "/", "%", "^", ">", "<", "=")
_PUNCT = "(){}[],:@"
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\"}


def _position(text: str, pos: int) -> str:
    line = text.count("\n", 0, pos) + 1
    col = pos - (text.rfind("\n", 0, pos) + 1) + 1
    return f"{line}:{col}"


def parse_duration(text: str) -> int:
    """`5m`, `1h30m`, `250ms` -> milliseconds; units descending, each at most once."""
    if not _DURATION.fullmatch(text):
        raise ValueError(f"not a valid duration string: {text!r}")
    total, last = 0, -1
    for amount, unit in _DURATION_PART.findall(text):
        rank = _UNIT_ORDER.index(unit)
        if rank <= last:
            raise ValueError(f"not a valid duration string: {text!r} (units must be in "
                             "descending order, each once)")
        last = rank
        total += int(amount) * _UNITS_MS[unit]
    return total


class _Lexer:
    def __init__(self, text: str) -> None:
        self.text = text

    def error(self, pos: int, message: str) -> ParseError:
        return ParseError(f"{_position(self.text, pos)}: parse error: {message}")

    def tokens(self) -> list[Token]:
        text, i, out = self.text, 0, []
        while i < len(text):
            c = text[i]
            if c.isspace():
                i += 1
            elif c == "#":
                end = text.find("\n", i)
                i = len(text) if end < 0 else end
            elif c in _PUNCT:
                out.append(Token(c, c, i))
                i += 1
            elif c in "\"'`":
                token, i = self._string(i)
                out.append(token)
            elif c.isdigit() or (c == "." and i + 1 < len(text) and text[i + 1].isdigit()):
                token, i = self._number(i)
                out.append(token)
            elif _IDENT.match(text, i):
                m = _IDENT.match(text, i)
                assert m is not None
                word = m.group()
                if word.lower() in ("inf", "nan"):
                    out.append(Token("num", word, i, float(word)))
                else:
                    out.append(Token("id", word, i))
                i = m.end()
            else:
                op = next((o for o in _OPERATORS if text.startswith(o, i)), None)
                if op is None:
                    hint = (" (a Grafana variable: substitute it first, e.g. $__rate_interval "
                            "-> 1m)" if c == "$" else "")
                    raise self.error(i, f"unexpected character: {c!r}{hint}")
                out.append(Token("op", op, i))
                i += len(op)
        out.append(Token("eof", "", len(text)))
        return out

    def _number(self, i: int) -> tuple[Token, int]:
        text = self.text
        d = _DURATION.match(text, i)
        if d and not (d.end() < len(text) and _WORD_CHAR.match(text, d.end())):
            try:
                return Token("dur", d.group(), i, parse_duration(d.group())), d.end()
            except ValueError as e:
                raise self.error(i, str(e)) from None
        m = _NUMBER.match(text, i)
        assert m is not None
        if m.end() < len(text) and (_WORD_CHAR.match(text, m.end()) or text[m.end()] == "."):
            raise self.error(i, f"bad number or duration syntax: {text[i:m.end() + 1]!r}")
        word = m.group()
        value = float(int(word, 16)) if word[:2].lower() == "0x" else float(word)
        return Token("num", word, i, value), m.end()

    def _string(self, i: int) -> tuple[Token, int]:
        text, quote = self.text, self.text[i]
        out: list[str] = []
        j = i + 1
        while True:
            if j >= len(text):
                raise self.error(i, "unterminated quoted string")
            c = text[j]
            if c == quote:
                return Token("str", text[i:j + 1], i, "".join(out)), j + 1
            if quote == "`":
                out.append(c)
                j += 1
                continue
            if c == "\n":
                raise self.error(i, "unterminated quoted string")
            if c != "\\":
                out.append(c)
                j += 1
                continue
            if j + 1 >= len(text):
                raise self.error(i, "unterminated quoted string")
            e = text[j + 1]
            if e in _ESCAPES:
                out.append(_ESCAPES[e])
                j += 2
            elif e == quote:
                out.append(quote)
                j += 2
            elif e in "xuU01234567":
                width = {"x": 2, "u": 4, "U": 8}.get(e, 3)
                start = j + (1 if e in "01234567" else 2)
                digits = text[start:start + width]
                base = 8 if e in "01234567" else 16
                try:
                    code = int(digits, base) if len(digits) == width else -1
                except ValueError:
                    code = -1
                if code < 0 or code > 0x10FFFF:
                    raise self.error(j, f"invalid escape sequence: {text[j:start + width]!r}")
                out.append(chr(code))
                j = start + width
            else:
                raise self.error(j, f"unknown escape sequence: '\\{e}'")


# --- syntax tree ----------------------------------------------------------------------

SCALAR, VECTOR, MATRIX, STRING = "scalar", "instant vector", "range vector", "string"


@dataclass(frozen=True)
class NumberLiteral:
    value: float
    pos: int


@dataclass(frozen=True)
class StringLiteral:
    value: str
    pos: int


@dataclass(frozen=True)
class VectorSelector:
    matchers: tuple[Matcher, ...]
    pos: int
    offset: int | None = None  # ms
    at: int | str | None = None  # ms since the epoch, or "start"/"end"

    @property
    def name(self) -> str | None:
        return next((m.value for m in self.matchers if m.name == NAME and m.op == "="), None)


@dataclass(frozen=True)
class MatrixSelector:
    selector: VectorSelector
    range: int  # ms
    pos: int


@dataclass(frozen=True)
class Call:
    func: str
    args: tuple[Expr, ...]
    pos: int


@dataclass(frozen=True)
class Aggregate:
    op: str
    expr: Expr
    param: Expr | None
    grouping: tuple[str, ...]
    without: bool
    pos: int


@dataclass(frozen=True)
class VectorMatching:
    card: str  # one-to-one, many-to-one, one-to-many, many-to-many
    labels: tuple[str, ...] = ()
    on: bool = False
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class Binary:
    op: str
    lhs: Expr
    rhs: Expr
    pos: int
    matching: VectorMatching | None = None
    return_bool: bool = False


@dataclass(frozen=True)
class Unary:
    op: str
    expr: Expr
    pos: int


@dataclass(frozen=True)
class Paren:
    expr: Expr
    pos: int


Expr = (NumberLiteral | StringLiteral | VectorSelector | MatrixSelector | Call | Aggregate
        | Binary | Unary | Paren)


def type_of(node: Expr) -> str:
    if isinstance(node, NumberLiteral):
        return SCALAR
    if isinstance(node, StringLiteral):
        return STRING
    if isinstance(node, VectorSelector | Aggregate):
        return VECTOR
    if isinstance(node, MatrixSelector):
        return MATRIX
    if isinstance(node, Call):
        return FUNCTIONS[node.func].returns
    if isinstance(node, Paren | Unary):
        return type_of(node.expr)
    lt, rt = type_of(node.lhs), type_of(node.rhs)
    return SCALAR if lt == SCALAR and rt == SCALAR else VECTOR


# --- the grammar ----------------------------------------------------------------------

_PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, ">": 3, "<": 3, ">=": 3,
               "<=": 3, "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "atan2": 5, "^": 6}
_COMPARISONS = frozenset({"==", "!=", ">", "<", ">=", "<="})
_SET_OPS = frozenset({"and", "or", "unless"})
_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right", "bool",
                       "offset", "and", "or", "unless", "atan2"})
AGGREGATORS = ("sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk",
               "bottomk", "quantile")
_UNSUPPORTED_AGGREGATORS = frozenset({"count_values", "limitk", "limit_ratio"})
_PARAM_AGGREGATORS = frozenset({"topk", "bottomk", "quantile"})

# Prometheus's other functions: refused as "not supported", not as "unknown".
_PROMETHEUS_FUNCTIONS = frozenset({
    "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh",
    "changes", "cos", "cosh", "day_of_month", "day_of_week", "day_of_year", "days_in_month",
    "deg", "deriv", "double_exponential_smoothing", "histogram_avg", "histogram_count",
    "histogram_fraction", "histogram_stddev", "histogram_stdvar", "histogram_sum",
    "holt_winters", "hour", "info", "label_join", "label_replace", "mad_over_time", "minute",
    "month", "pi", "predict_linear", "present_over_time", "quantile_over_time", "rad",
    "resets", "sin", "sinh", "sort_by_label", "sort_by_label_desc", "stddev_over_time",
    "stdvar_over_time", "tan", "tanh", "timestamp", "year", "ts_of_max_over_time",
    "ts_of_min_over_time", "ts_of_last_over_time", "first_over_time",
})


@dataclass(frozen=True)
class Function:
    args: tuple[str, ...]
    returns: str
    optional: int = 0  # trailing arguments that may be left out


_MATH = ("abs", "ceil", "floor", "sqrt", "exp", "ln", "log2", "log10", "sgn")
_RANGE_FUNCS = ("rate", "irate", "increase", "delta", "idelta", "sum_over_time",
                "avg_over_time", "min_over_time", "max_over_time", "count_over_time",
                "last_over_time")
FUNCTIONS: dict[str, Function] = {
    **{name: Function((MATRIX,), VECTOR) for name in _RANGE_FUNCS},
    **{name: Function((VECTOR,), VECTOR) for name in _MATH},
    "histogram_quantile": Function((SCALAR, VECTOR), VECTOR),
    "round": Function((VECTOR, SCALAR), VECTOR, optional=1),
    "clamp": Function((VECTOR, SCALAR, SCALAR), VECTOR),
    "clamp_min": Function((VECTOR, SCALAR), VECTOR),
    "clamp_max": Function((VECTOR, SCALAR), VECTOR),
    "scalar": Function((VECTOR,), SCALAR),
    "vector": Function((SCALAR,), VECTOR),
    "time": Function((), SCALAR),
    "sort": Function((VECTOR,), VECTOR),
    "sort_desc": Function((VECTOR,), VECTOR),
}


def supported() -> str:
    """One line naming what this subset implements (for error messages and --help)."""
    return ("selectors with =, !=, =~, !~; [range]; offset; @; + - * / % ^ atan2; "
            "== != > < >= <= (bool); and or unless; on/ignoring, group_left/group_right; "
            f"aggregations {', '.join(AGGREGATORS)} with by/without; "
            f"functions {', '.join(sorted(FUNCTIONS))}")


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _Lexer(text).tokens()
        self.i = 0

    # -- helpers --

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.i + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.peek()
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return tok

    def error(self, pos: int, message: str) -> ParseError:
        return ParseError(f"{_position(self.text, pos)}: parse error: {message}")

    def unsupported(self, pos: int, what: str, hint: str) -> UnsupportedError:
        return UnsupportedError(f"{_position(self.text, pos)}: {what} is not supported by "
                                f"meshpilot query ({hint})")

    @staticmethod
    def describe(tok: Token) -> str:
        if tok.kind == "eof":
            return "end of input"
        if tok.kind == "id" and tok.text not in _KEYWORDS:
            return f"identifier {tok.text!r}"
        if tok.kind == "num":
            return f"number {tok.text!r}"
        if tok.kind == "dur":
            return f"duration {tok.text!r}"
        if tok.kind == "str":
            return f"string {tok.text}"
        return repr(tok.text)

    def expect(self, kind: str, context: str) -> Token:
        tok = self.next()
        if tok.kind != kind:
            raise self.error(tok.pos, f"unexpected {self.describe(tok)} {context}")
        return tok

    def is_id(self, tok: Token, *words: str) -> bool:
        return tok.kind == "id" and tok.text in words

    # -- entry --

    def parse(self) -> Expr:
        if self.peek().kind == "eof":
            raise self.error(0, "no expression found in input")
        node = self.expr(0)
        tok = self.peek()
        if tok.kind != "eof":
            raise self.error(tok.pos, f"unexpected {self.describe(tok)}")
        return node

    def expr(self, min_prec: int) -> Expr:
        left = self.unary()
        while True:
            tok = self.peek()
            op = tok.text if (tok.kind == "op" or tok.kind == "id") else ""
            prec = _PRECEDENCE.get(op)
            if prec is None or prec < min_prec:
                return left
            self.next()
            return_bool, matching = self.modifiers(op)
            rhs = self.expr(prec if op == "^" else prec + 1)
            left = self.binary(op, left, rhs, tok.pos, return_bool, matching)

    def unary(self) -> Expr:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("+", "-"):
            self.next()
            operand = self.expr(_PRECEDENCE["^"])
            kind = type_of(operand)
            if kind not in (SCALAR, VECTOR):
                raise self.error(tok.pos, "unary expression only allowed on expressions of "
                                          f"type scalar or instant vector, got {kind}")
            if isinstance(operand, NumberLiteral):
                value = -operand.value if tok.text == "-" else operand.value
                return NumberLiteral(value, tok.pos)
            return Unary(tok.text, operand, tok.pos)
        return self.postfix(self.primary())

    def primary(self) -> Expr:
        tok = self.next()
        if tok.kind == "num":
            assert isinstance(tok.value, float)
            return NumberLiteral(tok.value, tok.pos)
        if tok.kind == "str":
            assert isinstance(tok.value, str)
            return StringLiteral(tok.value, tok.pos)
        if tok.kind == "(":
            inner = self.expr(0)
            self.expect(")", "in parenthesized expression, expected ')'")
            return Paren(inner, tok.pos)
        if tok.kind == "{":
            return self.selector(None, tok.pos)
        if tok.kind == "id":
            word, nxt = tok.text, self.peek()
            if word in _UNSUPPORTED_AGGREGATORS:
                raise self.unsupported(tok.pos, f"the {word} aggregation",
                                       f"aggregations: {', '.join(AGGREGATORS)}")
            if word in AGGREGATORS and (nxt.kind == "(" or self.is_id(nxt, "by", "without")):
                return self.aggregate(word, tok.pos)
            if nxt.kind == "(":
                return self.call(word, tok.pos)
            if word in _KEYWORDS or word in AGGREGATORS:
                raise self.error(tok.pos, f"unexpected {word!r}")
            if nxt.kind == "{":
                self.next()
                return self.selector(word, tok.pos)
            return VectorSelector((Matcher(NAME, "=", word),), tok.pos)
        raise self.error(tok.pos, f"unexpected {self.describe(tok)}")

    def postfix(self, node: Expr) -> Expr:
        while True:
            tok = self.peek()
            if tok.kind == "[":
                node = self.range(node)
            elif self.is_id(tok, "offset"):
                node = self.offset(node)
            elif tok.kind == "@":
                node = self.at(node)
            else:
                return node

    def range(self, node: Expr) -> Expr:
        bracket = self.next()
        length = self.duration("in range selector")
        if self.peek().kind == ":":
            raise self.unsupported(bracket.pos, "a subquery "
                                   f"({self.text[bracket.pos:self._close(bracket.pos)]})",
                                   "only range selectors on series, e.g. rate(x[5m])")
        self.expect("]", "in range selector, expected ']'")
        if not isinstance(node, VectorSelector):
            raise self.error(bracket.pos, "ranges only allowed for vector selectors")
        if node.offset is not None or node.at is not None:
            raise self.error(bracket.pos, "no offset or @ modifiers allowed before range")
        if length <= 0:
            raise self.error(bracket.pos, "duration must be greater than 0")
        return MatrixSelector(node, length, node.pos)

    def _close(self, start: int) -> int:
        end = self.text.find("]", start)
        return len(self.text) if end < 0 else end + 1

    def duration(self, context: str) -> int:
        tok = self.next()
        if tok.kind == "dur":
            assert isinstance(tok.value, int)
            return tok.value
        if tok.kind == "num" and tok.value is not None and float(tok.value).is_integer():
            return int(float(tok.value) * 1000)  # a plain number of seconds (Prometheus 3)
        raise self.error(tok.pos, f"unexpected {self.describe(tok)} {context}, expected a "
                                  "duration like 5m")

    def _selector_of(self, node: Expr, modifier: str, pos: int) -> VectorSelector:
        target = node.selector if isinstance(node, MatrixSelector) else node
        if not isinstance(target, VectorSelector):
            raise self.error(pos, f"{modifier} modifier must be preceded by an instant vector "
                                  "selector or range vector selector")
        return target

    def _with_selector(self, node: Expr, selector: VectorSelector) -> Expr:
        return replace(node, selector=selector) if isinstance(node, MatrixSelector) else selector

    def offset(self, node: Expr) -> Expr:
        tok = self.next()
        target = self._selector_of(node, "offset", tok.pos)
        if target.offset is not None:
            raise self.error(tok.pos, "offset may not be set multiple times")
        sign = 1
        if self.peek().kind == "op" and self.peek().text in ("+", "-"):
            sign = -1 if self.next().text == "-" else 1
        return self._with_selector(node, replace(target, offset=sign * self.duration(
            "after offset")))

    def at(self, node: Expr) -> Expr:
        tok = self.next()
        target = self._selector_of(node, "@", tok.pos)
        if target.at is not None:
            raise self.error(tok.pos, "@ <timestamp> may not be set multiple times")
        nxt = self.next()
        sign = 1.0
        if nxt.kind == "op" and nxt.text in ("+", "-"):
            sign = -1.0 if nxt.text == "-" else 1.0
            nxt = self.next()
        when: int | str
        if nxt.kind == "num":
            assert isinstance(nxt.value, float)
            if not math.isfinite(nxt.value):
                raise self.error(nxt.pos, "timestamp out of bounds for @ modifier")
            when = round(sign * nxt.value * 1000)
        elif self.is_id(nxt, "start", "end") and self.peek().kind == "(":
            self.next()
            self.expect(")", "after start/end, expected ')'")
            when = nxt.text
        else:
            raise self.error(nxt.pos, f"unexpected {self.describe(nxt)} after @, expected a "
                                      "timestamp, start() or end()")
        return self._with_selector(node, replace(target, at=when))

    def selector(self, name: str | None, pos: int) -> VectorSelector:
        matchers: list[Matcher] = []
        while self.peek().kind != "}":
            label = self.next()
            if label.kind != "id":
                raise self.error(label.pos, f"unexpected {self.describe(label)} in label "
                                            "matching, expected label")
            op = self.next()
            if op.kind != "op" or op.text not in ("=", "!=", "=~", "!~"):
                raise self.error(op.pos, f"unexpected {self.describe(op)} in label matching, "
                                         "expected label matching operator")
            value = self.next()
            if value.kind != "str":
                raise self.error(value.pos, f"unexpected {self.describe(value)} in label "
                                            "matching, expected string")
            assert isinstance(value.value, str)
            try:
                matchers.append(Matcher.make(label.text, op.text, value.value))
            except ValueError as e:
                raise self.error(value.pos, f"invalid regular expression {value.text} in "
                                            f"matcher for {label.text!r}: {e}") from None
            if self.peek().kind == ",":
                self.next()
            elif self.peek().kind != "}":
                tok = self.peek()
                raise self.error(tok.pos, f"unexpected {self.describe(tok)} in label matching, "
                                          "expected ',' or '}'")
        self.next()
        if name is not None:
            for m in matchers:
                if m.name == NAME:
                    raise self.error(pos, f"metric name must not be set twice: {name!r} or "
                                          f"{m.value!r}")
            matchers.insert(0, Matcher(NAME, "=", name))
        if all(m.matches("") for m in matchers):
            raise self.error(pos, "vector selector must contain at least one non-empty matcher")
        return VectorSelector(tuple(matchers), pos)

    def labels(self, context: str) -> tuple[str, ...]:
        self.expect("(", f"in {context}, expected '('")
        names: list[str] = []
        while self.peek().kind != ")":
            tok = self.next()
            if tok.kind != "id":
                raise self.error(tok.pos, f"unexpected {self.describe(tok)} in {context}, "
                                          "expected label")
            names.append(tok.text)
            if self.peek().kind == ",":
                self.next()
            elif self.peek().kind != ")":
                nxt = self.peek()
                raise self.error(nxt.pos, f"unexpected {self.describe(nxt)} in {context}, "
                                          "expected ',' or ')'")
        self.next()
        return tuple(names)

    def aggregate(self, op: str, pos: int) -> Aggregate:
        grouping: tuple[str, ...] | None = None
        without = False
        if self.is_id(self.peek(), "by", "without"):
            without = self.next().text == "without"
            grouping = self.labels("grouping")
        self.expect("(", f"in aggregation {op!r}, expected '('")
        param = None
        if op in _PARAM_AGGREGATORS:
            param = self.expr(0)
            self.expect(",", f"in aggregation {op!r}, expected ',' after its parameter")
        inner = self.expr(0)
        self.expect(")", f"in aggregation {op!r}, expected ')'")
        if self.is_id(self.peek(), "by", "without"):
            if grouping is not None:
                tok = self.peek()
                raise self.error(tok.pos, "aggregation must only contain one grouping clause")
            without = self.next().text == "without"
            grouping = self.labels("grouping")
        if type_of(inner) != VECTOR:
            raise self.error(pos, f"expected type {VECTOR} in aggregation expression, got "
                                  f"{type_of(inner)}")
        if param is not None and type_of(param) != SCALAR:
            raise self.error(pos, f"expected type {SCALAR} in aggregation parameter, got "
                                  f"{type_of(param)}")
        return Aggregate(op, inner, param, grouping or (), without, pos)

    def call(self, name: str, pos: int) -> Call:
        if name not in FUNCTIONS:
            if name in _PROMETHEUS_FUNCTIONS:
                raise self.unsupported(pos, f"the function {name}()",
                                       f"functions: {', '.join(sorted(FUNCTIONS))}")
            raise self.error(pos, f"unknown function with name {name!r}")
        self.next()  # (
        args: list[Expr] = []
        while self.peek().kind != ")":
            args.append(self.expr(0))
            if self.peek().kind == ",":
                self.next()
            elif self.peek().kind != ")":
                tok = self.peek()
                raise self.error(tok.pos, f"unexpected {self.describe(tok)} in call to "
                                          f"{name!r}, expected ',' or ')'")
        self.next()
        fn = FUNCTIONS[name]
        if not len(fn.args) - fn.optional <= len(args) <= len(fn.args):
            want = (f"{len(fn.args) - fn.optional} or {len(fn.args)}" if fn.optional
                    else str(len(fn.args)))
            raise self.error(pos, f"expected {want} argument(s) in call to {name!r}, got "
                                  f"{len(args)}")
        for arg, want_type in zip(args, fn.args, strict=False):
            got = type_of(arg)
            if got != want_type:
                raise self.error(_pos(arg), f"expected type {want_type} in call to function "
                                            f"{name!r}, got {got}")
        return Call(name, tuple(args), pos)

    def modifiers(self, op: str) -> tuple[bool, VectorMatching | None]:
        return_bool = False
        if self.is_id(self.peek(), "bool"):
            tok = self.next()
            if op not in _COMPARISONS:
                raise self.error(tok.pos, "bool modifier can only be used on comparison "
                                          "operators")
            return_bool = True
        matching: VectorMatching | None = None
        if self.is_id(self.peek(), "on", "ignoring"):
            on = self.next().text == "on"
            names = self.labels("on/ignoring clause")
            matching = VectorMatching("many-to-many" if op in _SET_OPS else "one-to-one",
                                      names, on)
        if self.is_id(self.peek(), "group_left", "group_right"):
            tok = self.next()
            if op in _SET_OPS:
                raise self.error(tok.pos, f"no grouping allowed for {op!r} operation")
            include = self.labels("grouping") if self.peek().kind == "(" else ()
            card = "many-to-one" if tok.text == "group_left" else "one-to-many"
            base = matching or VectorMatching("one-to-one")
            if base.on:
                for label in include:
                    if label in base.labels:
                        raise self.error(tok.pos, f"label {label!r} must not occur in ON and "
                                                  "GROUP clause at once")
            matching = replace(base, card=card, include=include)
        return return_bool, matching

    def binary(self, op: str, lhs: Expr, rhs: Expr, pos: int, return_bool: bool,
               matching: VectorMatching | None) -> Binary:
        lt, rt = type_of(lhs), type_of(rhs)
        if lt not in (SCALAR, VECTOR) or rt not in (SCALAR, VECTOR):
            raise self.error(pos, "binary expression must contain only scalar and instant "
                                  f"vector types (got {lt} {op} {rt})")
        both_vectors = lt == VECTOR and rt == VECTOR
        if op in _SET_OPS and not both_vectors:
            raise self.error(pos, f"set operator {op!r} not allowed in binary scalar "
                                  "expression")
        if op in _COMPARISONS and lt == SCALAR and rt == SCALAR and not return_bool:
            raise self.error(pos, "comparisons between scalars must use BOOL modifier")
        if matching is not None and not both_vectors:
            raise self.error(pos, "vector matching only allowed between instant vectors")
        if both_vectors and matching is None:
            matching = VectorMatching("many-to-many" if op in _SET_OPS else "one-to-one")
        return Binary(op, lhs, rhs, pos, matching, return_bool)


def _pos(node: Expr) -> int:
    return node.pos


def parse(text: str) -> Expr:
    """The syntax tree of `text`; ParseError (or UnsupportedError) says what and where."""
    return _Parser(text).parse()


# --- arithmetic with Go's float semantics ----------------------------------------------


def _div(a: float, b: float) -> float:
    try:
        return a / b
    except ZeroDivisionError:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)


def _mod(a: float, b: float) -> float:
    if b == 0 or math.isinf(a) or math.isnan(a) or math.isnan(b):
        return math.nan
    return math.fmod(a, b)


def _pow(a: float, b: float) -> float:
    try:
        return math.pow(a, b)
    except OverflowError:
        odd = b.is_integer() and int(b) % 2 == 1
        return -math.inf if a < 0 and odd else math.inf
    except (ValueError, ZeroDivisionError):
        if a == 0 and b < 0:  # Go: Pow(±0, y<0) = ±Inf (sign kept for odd integer y)
            odd = b.is_integer() and int(b) % 2 == 1
            return math.copysign(math.inf, a) if odd else math.inf
        return math.nan


def _arith(op: str, a: float, b: float) -> float:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if op == "/":
        return _div(a, b)
    if op == "%":
        return _mod(a, b)
    if op == "^":
        return _pow(a, b)
    if op == "atan2":
        return math.atan2(a, b)
    raise AssertionError(op)


def _compare(op: str, a: float, b: float) -> bool:
    if op == "==":
        return a == b
    if op == "!=":
        return a != b
    if op == ">":
        return a > b
    if op == "<":
        return a < b
    if op == ">=":
        return a >= b
    if op == "<=":
        return a <= b
    raise AssertionError(op)


def _elem(op: str, a: float, b: float) -> tuple[float, bool]:
    """Prometheus's vectorElemBinop: comparisons keep the left value when true."""
    if op in _COMPARISONS:
        return a, _compare(op, a, b)
    return _arith(op, a, b), True


def _go_max(a: float, b: float) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)


def _go_min(a: float, b: float) -> float:
    return math.nan if math.isnan(a) or math.isnan(b) else min(a, b)


def _safe(fn: Callable[[float], float], v: float, *, below: float = math.nan,
          overflow: float = math.inf) -> float:
    """`fn` with Go's answers where Python raises: `below` outside the domain, `overflow`."""
    if math.isnan(v):
        return v
    try:
        return fn(v)
    except OverflowError:
        return overflow
    except ValueError:
        return below


def _log(fn: Callable[[float], float]) -> Callable[[float], float]:
    def apply(v: float) -> float:
        if v == 0:
            return -math.inf
        if v < 0:
            return math.nan
        return _safe(fn, v)
    return apply


def _integral(fn: Callable[[float], int]) -> Callable[[float], float]:
    return lambda v: v if not math.isfinite(v) else float(fn(v))


def _sgn(v: float) -> float:
    if math.isnan(v):
        return v
    return 1.0 if v > 0 else -1.0 if v < 0 else 0.0


_MATH_FUNCS: dict[str, Callable[[float], float]] = {
    "abs": abs,
    "ceil": _integral(math.ceil),
    "floor": _integral(math.floor),
    "sqrt": lambda v: _safe(math.sqrt, v),
    "exp": lambda v: _safe(math.exp, v),
    "ln": _log(math.log),
    "log2": _log(math.log2),
    "log10": _log(math.log10),
    "sgn": _sgn,
}


def _sum(values: Sequence[float]) -> float:
    """Correctly rounded sum (Prometheus uses Kahan summation: the same to ~1e-16)."""
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):  # infinities of both signs, or an overflow
        return sum(values, 0.0)


# --- rates and quantiles --------------------------------------------------------------


def extrapolated_rate(samples: Sequence[tuple[int, float]], range_start: int, range_end: int,
                      range_ms: int, *, is_counter: bool, is_rate: bool) -> float | None:
    """Prometheus's `extrapolatedRate` for float samples (rate, increase, delta).

    The increase between the first and last sample (plus every value before a counter
    reset) is extrapolated towards the range's ends: all the way when the gap is under
    1.1 average sample intervals, else half an interval (the series presumably started or
    ended there); a counter is not extrapolated below zero. None below two samples."""
    if len(samples) < 2:
        return None
    first_t, first_v = samples[0]
    last_t, last_v = samples[-1]
    result = last_v - first_v
    if is_counter:
        prev = first_v
        for _, v in samples[1:]:
            if v < prev:
                result += prev
            prev = v
    duration_to_start = (first_t - range_start) / 1000
    duration_to_end = (range_end - last_t) / 1000
    sampled = (last_t - first_t) / 1000
    average = sampled / (len(samples) - 1)
    threshold = average * 1.1
    if duration_to_start >= threshold:
        duration_to_start = average / 2
    if is_counter and result > 0 and first_v >= 0:
        to_zero = sampled * (first_v / result)
        if to_zero < duration_to_start:
            duration_to_start = to_zero
    if duration_to_end >= threshold:
        duration_to_end = average / 2
    factor = 1.0
    if sampled != 0:
        factor = (sampled + duration_to_start + duration_to_end) / sampled
    if is_rate:
        factor /= range_ms / 1000
    return result * factor


def instant_rate(samples: Sequence[tuple[int, float]], *, is_rate: bool) -> float | None:
    """irate / idelta: from the last two samples only (a counter reset restarts at 0)."""
    if len(samples) < 2:
        return None
    (prev_t, prev_v), (last_t, last_v) = samples[-2], samples[-1]
    result = last_v if is_rate and last_v < prev_v else last_v - prev_v
    interval = last_t - prev_t
    if interval == 0:
        return None
    if is_rate:
        result /= interval / 1000
    return result


def _almost_equal(a: float, b: float, epsilon: float) -> bool:
    """Prometheus's util/almost.Equal."""
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    min_normal = 2.2250738585072014e-308
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < min_normal:
        return diff < epsilon * min_normal
    return diff / min(abs_sum, 1.7976931348623157e308) < epsilon


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """Prometheus's classic `histogram_quantile` on (upper bound, cumulative count) pairs.

    NaN without a +Inf bucket, with fewer than two buckets or no observations; -Inf/+Inf
    for q < 0 / q > 1; the highest finite bound when the rank lands in +Inf; the first
    bound when it lands in a first bucket whose bound is <= 0; else linear interpolation
    inside the bucket (from 0 for the first bucket)."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    if not buckets:
        return math.nan
    ordered = sorted(buckets, key=lambda b: b[0])
    if not math.isinf(ordered[-1][0]) or ordered[-1][0] < 0:
        return math.nan
    coalesced: list[list[float]] = []
    for upper, count in ordered:
        if coalesced and coalesced[-1][0] == upper:
            coalesced[-1][1] += count
        else:
            coalesced.append([upper, count])
    prev = coalesced[0][1]
    for b in coalesced[1:]:
        if b[1] == prev:
            continue
        if _almost_equal(prev, b[1], 1e-12) or b[1] < prev:
            b[1] = prev
            continue
        prev = b[1]
    if len(coalesced) < 2:
        return math.nan
    observations = coalesced[-1][1]
    if observations == 0:
        return math.nan
    rank = q * observations
    n = len(coalesced) - 1
    b = next((i for i in range(n) if coalesced[i][1] >= rank), n)
    if b == n:
        return coalesced[n - 1][0]
    if b == 0 and coalesced[0][0] <= 0:
        return coalesced[0][0]
    start, end, count = 0.0, coalesced[b][0], coalesced[b][1]
    if b > 0:
        start = coalesced[b - 1][0]
        count -= coalesced[b - 1][1]
        rank -= coalesced[b - 1][1]
    return start + (end - start) * (rank / count)


def _quantile(q: float, values: list[float]) -> float:
    """The `quantile` aggregation: weighted average of the two nearest ranks."""
    if not values or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    values = sorted(values, key=lambda v: (not math.isnan(v), v))
    n = len(values)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return values[lower] * (1 - weight) + values[upper] * weight


# --- evaluation -----------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    value: Value
    time: int  # ms: the evaluation time
    warnings: tuple[str, ...] = ()


class _Evaluator:
    def __init__(self, storage: Storage, time_ms: int, lookback_ms: int) -> None:
        self.storage = storage
        self.time = time_ms
        self.lookback = lookback_ms
        self.warnings: list[str] = []
        self._names: Collection[str] | None = None
        self._names_loaded = False

    def eval(self, node: Expr) -> Value:
        if isinstance(node, NumberLiteral):
            return Scalar(node.value)
        if isinstance(node, StringLiteral):
            return String(node.value)
        if isinstance(node, Paren):
            return self.eval(node.expr)
        if isinstance(node, VectorSelector):
            return self.instant(node)
        if isinstance(node, MatrixSelector):
            return Matrix(self.range(node))
        if isinstance(node, Unary):
            return self.unary(node)
        if isinstance(node, Aggregate):
            return self.aggregate(node)
        if isinstance(node, Call):
            return self.call(node)
        return self.binary(node)

    # -- selectors --

    def _at(self, vs: VectorSelector) -> int:
        base = self.time if vs.at is None or isinstance(vs.at, str) else vs.at
        return base - (vs.offset or 0)

    def _warn_unknown(self, vs: VectorSelector) -> None:
        name = vs.name
        if name is None:
            return
        if not self._names_loaded:
            self._names, self._names_loaded = self.storage.metric_names(), True
        if self._names is not None and name not in self._names:
            hint = (" (Envoy's own stats are not in the control plane: scrape the proxies "
                    "with Prometheus, or see `meshpilot stats PROXY`)"
                    if name.startswith("envoy_") else "")
            warning = f"no series named {name!r} in the sample history{hint}"
            if warning not in self.warnings:
                self.warnings.append(warning)

    def instant(self, vs: VectorSelector) -> Vector:
        self._warn_unknown(vs)
        at = self._at(vs)
        out = [Sample(s.labels, s.samples[-1][1])
               for s in self.storage.select(vs.matchers, at - self.lookback, at) if s.samples]
        return Vector(out)

    def range(self, ms: MatrixSelector) -> list[Series]:
        self._warn_unknown(ms.selector)
        at = self._at(ms.selector)
        return [s for s in self.storage.select(ms.selector.matchers, at - ms.range, at)
                if s.samples]

    # -- operators --

    def unary(self, node: Unary) -> Value:
        value = self.eval(node.expr)
        if node.op == "+":
            return value
        if isinstance(value, Scalar):
            return Scalar(-value.value)
        assert isinstance(value, Vector)
        return self.unique(Vector([Sample(_drop_name(s.labels), -s.value)
                                   for s in value.samples]))

    def unique(self, vector: Vector) -> Vector:
        seen: set[Labels] = set()
        for s in vector.samples:
            if s.labels in seen:
                raise EvalError("vector cannot contain metrics with the same labelset: "
                                f"{format_labels(s.labels)}")
            seen.add(s.labels)
        return vector

    def binary(self, node: Binary) -> Value:
        lhs, rhs = self.eval(node.lhs), self.eval(node.rhs)
        op = node.op
        if isinstance(lhs, Scalar) and isinstance(rhs, Scalar):
            if op in _COMPARISONS:
                return Scalar(1.0 if _compare(op, lhs.value, rhs.value) else 0.0)
            return Scalar(_arith(op, lhs.value, rhs.value))
        if isinstance(lhs, Vector) and isinstance(rhs, Scalar):
            return self.vector_scalar(op, lhs, rhs.value, False, node.return_bool)
        if isinstance(lhs, Scalar) and isinstance(rhs, Vector):
            return self.vector_scalar(op, rhs, lhs.value, True, node.return_bool)
        assert isinstance(lhs, Vector) and isinstance(rhs, Vector)
        assert node.matching is not None
        if op in _SET_OPS:
            return self.set_op(op, lhs, rhs, node.matching)
        return self.vector_vector(op, lhs, rhs, node.matching, node.return_bool)

    def vector_scalar(self, op: str, vector: Vector, scalar: float, swap: bool,
                      return_bool: bool) -> Vector:
        out = []
        for s in vector.samples:
            left, right = (scalar, s.value) if swap else (s.value, scalar)
            value, keep = _elem(op, left, right)
            if op in _COMPARISONS and swap:
                value = right  # the vector's own value, even when it is on the right
            if return_bool:
                value, keep = (1.0 if keep else 0.0), True
            if keep:
                drop = return_bool or op not in _COMPARISONS
                out.append(Sample(_drop_name(s.labels) if drop else s.labels, value))
        return self.unique(Vector(out))

    @staticmethod
    def _signature(labels: Labels, matching: VectorMatching) -> Labels:
        if matching.on:
            keep = set(matching.labels)
            return tuple(kv for kv in labels if kv[0] in keep)
        drop = {NAME, *matching.labels}
        return tuple(kv for kv in labels if kv[0] not in drop)

    def set_op(self, op: str, lhs: Vector, rhs: Vector, matching: VectorMatching) -> Vector:
        right = {self._signature(s.labels, matching) for s in rhs.samples}
        if op == "and":
            return Vector([s for s in lhs.samples
                           if self._signature(s.labels, matching) in right])
        if op == "unless":
            return Vector([s for s in lhs.samples
                           if self._signature(s.labels, matching) not in right])
        left = {self._signature(s.labels, matching) for s in lhs.samples}
        return Vector([*lhs.samples, *(s for s in rhs.samples
                                       if self._signature(s.labels, matching) not in left)])

    def _result_labels(self, left: Labels, right: Labels, op: str,
                       matching: VectorMatching, return_bool: bool) -> Labels:
        """Prometheus's resultMetric: the 'many' side's labels, reduced by on/ignoring for
        one-to-one matching, plus group_x's labels from the 'one' side."""
        out = dict(left)
        if op not in _COMPARISONS or return_bool:
            out.pop(NAME, None)
        if matching.card == "one-to-one":
            if matching.on:
                out = {k: v for k, v in out.items() if k in matching.labels}
            else:
                for name in matching.labels:
                    out.pop(name, None)
        rdict = dict(right)
        for name in matching.include:
            if rdict.get(name):
                out[name] = rdict[name]
            else:
                out.pop(name, None)
        return tuple(sorted(out.items()))

    def vector_vector(self, op: str, lhs: Vector, rhs: Vector, matching: VectorMatching,
                      return_bool: bool) -> Vector:
        if not lhs.samples or not rhs.samples:
            return Vector([])
        many, one = (rhs, lhs) if matching.card == "one-to-many" else (lhs, rhs)
        one_side = "left" if matching.card == "one-to-many" else "right"
        by_sig: dict[Labels, Sample] = {}
        for s in one.samples:
            sig = self._signature(s.labels, matching)
            if sig in by_sig:
                raise EvalError(
                    f"found duplicate series for the match group {format_labels(sig)} on the "
                    f"{one_side} hand-side of the operation: [{format_labels(s.labels)}, "
                    f"{format_labels(by_sig[sig].labels)}];many-to-many matching not "
                    "allowed: matching labels must be unique on one side")
            by_sig[sig] = s
        matched: dict[Labels, set[Labels]] = {}
        out = []
        for s in many.samples:
            sig = self._signature(s.labels, matching)
            other = by_sig.get(sig)
            if other is None:
                continue
            left, right = s.value, other.value
            if matching.card == "one-to-many":
                left, right = right, left
            value, keep = _elem(op, left, right)
            if return_bool:
                value, keep = (1.0 if keep else 0.0), True
            if not keep:
                continue
            labels = self._result_labels(s.labels, other.labels, op, matching, return_bool)
            if matching.card == "one-to-one":
                if sig in matched:
                    raise EvalError("multiple matches for labels: many-to-one matching must "
                                    "be explicit (group_left/group_right)")
                matched[sig] = set()
            else:
                inserted = matched.setdefault(sig, set())
                if labels in inserted:
                    raise EvalError("multiple matches for labels: grouping labels must "
                                    "ensure unique matches")
                inserted.add(labels)
            out.append(Sample(labels, value))
        return self.unique(Vector(out))

    # -- aggregation --

    def aggregate(self, node: Aggregate) -> Vector:
        vector = self.eval(node.expr)
        assert isinstance(vector, Vector)
        param = None
        if node.param is not None:
            p = self.eval(node.param)
            assert isinstance(p, Scalar)
            param = p.value
        groups: dict[Labels, list[Sample]] = {}
        drop = {NAME, *node.grouping} if node.without else None
        keep = set(node.grouping)
        for s in vector.samples:
            if drop is not None:
                key = tuple(kv for kv in s.labels if kv[0] not in drop)
            else:
                key = tuple(kv for kv in s.labels if kv[0] in keep)
            groups.setdefault(key, []).append(s)
        op = node.op
        if op in ("topk", "bottomk"):
            assert param is not None
            if math.isnan(param):
                raise EvalError(f"Parameter value is NaN for {op}")
            k = int(param) if math.isfinite(param) else (len(vector.samples) if param > 0
                                                         else 0)
            out: list[Sample] = []
            if k < 1:
                return Vector([], ordered=True)
            for members in groups.values():
                ranked = sorted(members, key=lambda s: (math.isnan(s.value),
                                                        -s.value if op == "topk" else s.value))
                out.extend(ranked[:k])
            return Vector(out, ordered=True)
        result = []
        for key, members in groups.items():
            values = [s.value for s in members]
            result.append(Sample(key, self._reduce(op, values, param)))
        return Vector(result)

    @staticmethod
    def _reduce(op: str, values: list[float], param: float | None) -> float:
        if op == "sum":
            return _sum(values)
        if op == "avg":
            return _sum(values) / len(values)
        if op == "count":
            return float(len(values))
        if op == "group":
            return 1.0
        if op in ("min", "max"):
            best = values[0]
            for v in values[1:]:
                if math.isnan(best) or (v < best if op == "min" else v > best):
                    best = v
            return best
        if op in ("stddev", "stdvar"):
            count, mean, acc = 0, 0.0, 0.0
            for v in values:  # Welford, as Prometheus
                count += 1
                delta = v - mean
                mean += delta / count
                acc += delta * (v - mean)
            variance = acc / count
            return math.sqrt(variance) if op == "stddev" else variance
        if op == "quantile":
            assert param is not None
            return _quantile(param, values)
        raise AssertionError(op)

    # -- functions --

    def call(self, node: Call) -> Value:
        name = node.func
        if name in _RANGE_FUNCS:
            return self.range_function(node)
        args = [self.eval(a) for a in node.args]
        if name == "time":
            return Scalar(self.time / 1000)
        if name == "vector":
            assert isinstance(args[0], Scalar)
            return Vector([Sample((), args[0].value)])
        if name == "histogram_quantile":
            q, vector = args
            assert isinstance(q, Scalar) and isinstance(vector, Vector)
            return self.histogram_quantile(q.value, vector)
        vector = args[0]
        assert isinstance(vector, Vector)
        if name == "scalar":
            return Scalar(vector.samples[0].value if len(vector.samples) == 1 else math.nan)
        if name in ("sort", "sort_desc"):
            desc = name == "sort_desc"
            ordered = sorted(vector.samples, key=lambda s: (math.isnan(s.value),
                                                            -s.value if desc else s.value))
            return Vector(ordered, ordered=True)
        scalars = [a.value for a in args[1:] if isinstance(a, Scalar)]
        fn: Callable[[float], float]
        if name in _MATH_FUNCS:
            fn = _MATH_FUNCS[name]
        elif name == "round":
            fn = _rounder(scalars[0] if scalars else 1.0)
        elif name == "clamp":
            low, high = scalars
            if high < low:
                return Vector([])

            def fn(v: float) -> float:
                return _go_max(low, _go_min(high, v))
        elif name == "clamp_min":
            def fn(v: float) -> float:
                return _go_max(v, scalars[0])
        elif name == "clamp_max":
            def fn(v: float) -> float:
                return _go_min(v, scalars[0])
        else:
            raise AssertionError(name)
        return self.unique(Vector([Sample(_drop_name(s.labels), fn(s.value))
                                   for s in vector.samples]))

    def range_function(self, node: Call) -> Vector:
        ms = node.args[0]
        while isinstance(ms, Paren):  # rate((x[5m])) is rate(x[5m]), as in Prometheus
            ms = ms.expr
        assert isinstance(ms, MatrixSelector)
        end = self._at(ms.selector)
        start = end - ms.range
        name = node.func
        out = []
        for series in self.range(ms):
            samples = series.samples
            value: float | None
            if name in ("rate", "increase", "delta"):
                value = extrapolated_rate(samples, start, end, ms.range,
                                          is_counter=name != "delta", is_rate=name == "rate")
            elif name in ("irate", "idelta"):
                value = instant_rate(samples, is_rate=name == "irate")
            else:
                value = _over_time(name, [v for _, v in samples])
            if value is None:
                continue
            labels = series.labels if name == "last_over_time" else _drop_name(series.labels)
            out.append(Sample(labels, value))
        return self.unique(Vector(out))

    def histogram_quantile(self, q: float, vector: Vector) -> Vector:
        if math.isnan(q) or q < 0 or q > 1:
            self.warnings.append(f"quantile value should be between 0 and 1, got {q:g}")
        groups: dict[Labels, list[tuple[float, float]]] = {}
        for s in vector.samples:
            le = get_label(s.labels, "le")
            try:
                upper = float(le)
            except ValueError:
                continue
            key = tuple(kv for kv in s.labels if kv[0] not in (NAME, "le"))
            groups.setdefault(key, []).append((upper, s.value))
        return Vector([Sample(key, bucket_quantile(q, buckets))
                       for key, buckets in groups.items()])


def _rounder(to_nearest: float) -> Callable[[float], float]:
    inverse = 1.0 / to_nearest if to_nearest != 0 else math.inf

    def apply(v: float) -> float:
        x = v * inverse + 0.5
        floored = float(math.floor(x)) if math.isfinite(x) else x
        return _div(floored, inverse)
    return apply


def _over_time(name: str, values: list[float]) -> float:
    if name == "sum_over_time":
        return _sum(values)
    if name == "avg_over_time":
        return _sum(values) / len(values)
    if name == "count_over_time":
        return float(len(values))
    if name == "last_over_time":
        return values[-1]
    best = values[0]
    for v in values[1:]:
        if math.isnan(best) or (v < best if name == "min_over_time" else v > best):
            best = v
    return best


def evaluate(expr: Expr | str, storage: Storage, time_ms: int,
             lookback_ms: int = LOOKBACK_MS) -> Result:
    """Evaluate an instant query at `time_ms` (milliseconds since the epoch)."""
    node = parse(expr) if isinstance(expr, str) else expr
    evaluator = _Evaluator(storage, time_ms, lookback_ms)
    value = evaluator.eval(node)
    if isinstance(value, Vector) and not value.ordered:
        value = Vector(sorted(value.samples, key=lambda s: s.labels))
    return Result(value, time_ms, tuple(evaluator.warnings))


# --- Prometheus HTTP API output -------------------------------------------------------


def format_value(v: float) -> str:
    """Go's strconv.FormatFloat(v, 'f', -1, 64): shortest round-trip digits, no exponent."""
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    d = Decimal(repr(v))
    if d == d.to_integral_value():
        return str(int(d))
    return format(d, "f")


def _timestamp(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


def result_type(value: Value) -> str:
    return {Scalar: "scalar", String: "string", Vector: "vector", Matrix: "matrix"}[type(value)]


def api_data(result: Result) -> dict[str, object]:
    """The `data` member of Prometheus's /api/v1/query answer."""
    value, t = result.value, _timestamp(result.time)
    body: object
    if isinstance(value, Scalar):
        body = [t, format_value(value.value)]
    elif isinstance(value, String):
        body = [t, value.value]
    elif isinstance(value, Vector):
        body = [{"metric": dict(s.labels), "value": [t, format_value(s.value)]}
                for s in value.samples]
    else:
        body = [{"metric": dict(s.labels),
                 "values": [[_timestamp(ts), format_value(v)] for ts, v in s.samples]}
                for s in sorted(value.series, key=lambda s: s.labels)]
    return {"resultType": result_type(value), "result": body}
