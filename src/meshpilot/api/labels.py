"""Kubernetes label keys, values and label selectors.

Istio resources select workloads and scope configuration by labels, and users filter
`list` results with the same `-l app=web,tier!=db` syntax they know from kubectl. The
parser follows Kubernetes' grammar and matching rules (k8s.io/apimachinery
`labels.Parse`), including the non-obvious ones: `a!=b` and `a notin (b)` also match
objects that do not carry `a` at all, and an empty selector matches everything.

Supported terms, joined by `,` (logical AND):

    a=b  a==b  a!=b  a in (x,y)  a notin (x)  a  !a

Syntax errors raise `ValueError` naming the offending term and its 0-based position,
so a CLI can point at the exact character.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Operator = Literal["=", "!=", "in", "notin", "exists", "!"]

_NAME_MAX = 63
_PREFIX_MAX = 253
_NAME_RE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS_SUBDOMAIN_RE = re.compile(rf"{_DNS_LABEL}(\.{_DNS_LABEL})*")
_NAME_CHARS = "alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric"


def _name_problem(name: str, what: str) -> str | None:
    if not name:
        return f"{what} must not be empty"
    if len(name) > _NAME_MAX:
        return f"{what} {name!r} is {len(name)} characters long (at most {_NAME_MAX} allowed)"
    if not _NAME_RE.fullmatch(name):
        return f"{what} {name!r} is invalid: use {_NAME_CHARS}"
    return None


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a valid label key (`[prefix/]name`), or None if it is valid."""
    if not isinstance(key, str):
        return f"label key must be a string, not {type(key).__name__}"
    prefix, slash, name = key.rpartition("/")
    if slash:
        if not prefix:
            return f"label key {key!r} has an empty prefix before '/'"
        if len(prefix) > _PREFIX_MAX:
            return (
                f"label key prefix {prefix!r} is {len(prefix)} characters long"
                f" (at most {_PREFIX_MAX} allowed)"
            )
        if "/" in prefix or not _DNS_SUBDOMAIN_RE.fullmatch(prefix):
            return (
                f"label key prefix {prefix!r} must be a lowercase DNS subdomain"
                " such as 'app.kubernetes.io'"
            )
    problem = _name_problem(name, "label key name" if slash else "label key")
    return problem


def label_value_problem(value: str) -> str | None:
    """Why `value` is not a valid label value, or None. The empty value is valid."""
    if not isinstance(value, str):
        return f"label value must be a string, not {type(value).__name__}"
    if value == "":
        return None
    return _name_problem(value, "label value")


def label_problem(key: str, value: str) -> str | None:
    """Why the pair `key: value` cannot be a Kubernetes label, or None if it can."""
    problem = label_key_problem(key)
    if problem is None:
        problem = label_value_problem(value)
        if problem is not None:
            problem = f"label {key!r}: {problem}"
    return problem


@dataclass(frozen=True)
class Requirement:
    """One term of a selector, e.g. `tier in (web,api)`.

    `values` is sorted so that equal requirements compare equal and print identically.
    """

    key: str
    operator: Operator
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        has = self.key in labels
        if self.operator == "exists":
            return has
        if self.operator == "!":
            return not has
        if self.operator in ("=", "in"):
            return has and labels[self.key] in self.values
        # "!=" and "notin": Kubernetes matches objects lacking the key as well.
        return not has or labels[self.key] not in self.values

    def __str__(self) -> str:
        if self.operator == "exists":
            return self.key
        if self.operator == "!":
            return f"!{self.key}"
        if self.operator in ("=", "!="):
            return f"{self.key}{self.operator}{self.values[0]}"
        return f"{self.key} {self.operator} ({','.join(self.values)})"


@dataclass(frozen=True)
class Selector:
    """A conjunction of requirements. The empty selector matches every object."""

    requirements: tuple[Requirement, ...] = field(default_factory=tuple)

    @classmethod
    def from_match_labels(cls, match_labels: Mapping[str, str]) -> Selector:
        """The selector of a `matchLabels` map: every pair must be present and equal."""
        reqs = []
        for key, value in match_labels.items():
            problem = label_problem(key, value)
            if problem is not None:
                raise ValueError(f"invalid matchLabels: {problem}")
            reqs.append(Requirement(key, "=", (value,)))
        return cls(tuple(sorted(reqs, key=lambda r: r.key)))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)

    def empty(self) -> bool:
        return not self.requirements

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


# --- parser -----------------------------------------------------------------------------

_SPECIAL = "!=(),"


@dataclass(frozen=True)
class _Token:
    kind: Literal["ident", "!", "=", "==", "!=", "(", ")", ",", "end"]
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace():
            i += 1
        elif text.startswith("==", i) or text.startswith("!=", i):
            tokens.append(_Token(text[i : i + 2], text[i : i + 2], i))  # type: ignore[arg-type]
            i += 2
        elif ch in _SPECIAL:
            tokens.append(_Token(ch, ch, i))  # type: ignore[arg-type]
            i += 1
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in _SPECIAL:
                i += 1
            tokens.append(_Token("ident", text[start:i], start))
    tokens.append(_Token("end", "", n))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        tok = self.tokens[self.i]
        if tok.kind != "end":
            self.i += 1
        return tok

    def fail(self, tok: _Token, message: str) -> ValueError:
        found = "end of input" if tok.kind == "end" else repr(tok.text)
        return ValueError(
            f"invalid label selector {self.text!r}: {message} at position {tok.pos} (found {found})"
        )

    def parse(self) -> Selector:
        reqs: list[Requirement] = []
        if self.peek().kind == "end":
            return Selector()
        while True:
            reqs.append(self.requirement())
            tok = self.next()
            if tok.kind == "end":
                break
            if tok.kind != ",":
                raise self.fail(tok, "expected ',' between requirements")
            if self.peek().kind == "end":
                raise self.fail(self.peek(), "expected a requirement after ','")
        return Selector(tuple(reqs))

    def key(self) -> str:
        tok = self.next()
        if tok.kind != "ident":
            raise self.fail(tok, "expected a label key")
        problem = label_key_problem(tok.text)
        if problem is not None:
            raise self.fail(tok, problem)
        return tok.text

    def value(self, key: str) -> str:
        tok = self.peek()
        if tok.kind in (",", "end", ")"):
            return ""  # `a=` selects the empty value, as in Kubernetes
        tok = self.next()
        if tok.kind != "ident":
            raise self.fail(tok, f"expected a value for label {key!r}")
        problem = label_value_problem(tok.text)
        if problem is not None:
            raise self.fail(tok, problem)
        return tok.text

    def requirement(self) -> Requirement:
        if self.peek().kind == "!":
            self.next()
            key = self.key()
            follow = self.peek()
            if follow.kind not in (",", "end"):
                raise self.fail(follow, f"'!{key}' takes no operator or value")
            return Requirement(key, "!")
        key = self.key()
        op = self.peek()
        if op.kind in (",", "end"):
            return Requirement(key, "exists")
        self.next()
        if op.kind in ("=", "=="):
            return Requirement(key, "=", (self.value(key),))
        if op.kind == "!=":
            return Requirement(key, "!=", (self.value(key),))
        if op.kind == "ident" and op.text in ("in", "notin"):
            return Requirement(key, op.text, self.value_set(key, op.text))  # type: ignore[arg-type]
        raise self.fail(op, f"expected one of '=', '==', '!=', 'in', 'notin' after {key!r}")

    def value_set(self, key: str, op: str) -> tuple[str, ...]:
        tok = self.next()
        if tok.kind != "(":
            raise self.fail(tok, f"expected '(' after '{key} {op}'")
        values: set[str] = set()
        while True:
            values.add(self.value(key))
            tok = self.next()
            if tok.kind == ")":
                break
            if tok.kind != ",":
                raise self.fail(tok, f"expected ',' or ')' in the values of '{key} {op}'")
        if values == {""} and self.tokens[self.i - 2].kind == "(":
            raise self.fail(tok, f"'{key} {op}' needs at least one value")
        return tuple(sorted(values))


def parse_selector(text: str) -> Selector:
    """Parse kubectl-style selector text such as `app=web,tier in (a,b),!canary`.

    An empty or blank string yields the empty selector (matches everything).
    """
    if not isinstance(text, str):
        raise TypeError(f"label selector must be a string, not {type(text).__name__}")
    return _Parser(text).parse()
