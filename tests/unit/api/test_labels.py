"""Label selector parsing and matching follow Kubernetes, including its edge cases."""

from __future__ import annotations

import pytest

from meshpilot.api.labels import (
    Requirement,
    Selector,
    label_key_problem,
    label_problem,
    label_value_problem,
    parse_selector,
)

LABELS = {"app": "web", "tier": "front", "app.kubernetes.io/name": "shop", "empty": ""}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", True),
        ("   ", True),
        ("app=web", True),
        ("app==web", True),
        ("app = web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("missing!=x", True),  # absent key matches !=, as in Kubernetes
        ("app in (web,db)", True),
        ("app in (db)", False),
        ("missing in (x)", False),
        ("app notin (db,cache)", True),
        ("app notin (web)", False),
        ("missing notin (x)", True),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("app.kubernetes.io/name=shop", True),
        ("empty=", True),
        ("empty=,app=web", True),
        ("app=", False),
        ("app in (web, db) , !canary , tier", True),
    ],
)
def test_matches(text: str, expected: bool) -> None:
    assert parse_selector(text).matches(LABELS) is expected


def test_empty_selector_matches_no_labels() -> None:
    assert parse_selector("").matches({})
    assert parse_selector("").empty()
    assert Selector().matches(None)


def test_parse_structure_and_canonical_text() -> None:
    sel = parse_selector("a==1, b notin (z,y), c, !d, e!=2")
    assert sel.requirements == (
        Requirement("a", "=", ("1",)),
        Requirement("b", "notin", ("y", "z")),
        Requirement("c", "exists"),
        Requirement("d", "!"),
        Requirement("e", "!=", ("2",)),
    )
    assert str(sel) == "a=1,b notin (y,z),c,!d,e!=2"
    assert parse_selector(str(sel)) == sel


def test_from_match_labels() -> None:
    sel = Selector.from_match_labels({"tier": "front", "app": "web"})
    assert str(sel) == "app=web,tier=front"
    assert sel.matches(LABELS)
    assert not sel.matches({"app": "web"})
    assert Selector.from_match_labels({}).matches({})
    with pytest.raises(ValueError, match="matchLabels"):
        Selector.from_match_labels({"bad key": "x"})


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("a in ()", "'a in' needs at least one value at position 6"),
        ("a in (x", "expected ',' or ')' in the values of 'a in' at position 7"),
        ("a in x", "expected '(' after 'a in' at position 5"),
        ("a notin", "expected '(' after 'a notin' at position 7"),
        ("!a=b", "'!a' takes no operator or value at position 2"),
        ("a=b=c", "expected ',' between requirements at position 3"),
        ("a b", "expected one of '=', '==', '!=', 'in', 'notin' after 'a' at position 2"),
        ("a,", "expected a requirement after ',' at position 2"),
        (",a", "expected a label key at position 0"),
        ("=a", "expected a label key at position 0"),
        ("a=(", "expected a value for label 'a' at position 2"),
        ("x/y/z=1", "prefix 'x/y' must be a lowercase DNS subdomain"),
        ("-a=1", "label key '-a' is invalid"),
        ("a=b$", "label value 'b$' is invalid"),
        ("a=" + "v" * 64, "64 characters long"),
    ],
)
def test_syntax_errors_name_term_and_position(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_selector(text)
    assert fragment in str(info.value)
    assert repr(text) in str(info.value)


def test_non_string_selector_is_type_error() -> None:
    with pytest.raises(TypeError):
        parse_selector(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key",
    ["app", "a", "A-b_c.d", "app.kubernetes.io/name", "example.com/x", "x" * 63, "a/b"],
)
def test_valid_keys(key: str) -> None:
    assert label_key_problem(key) is None


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "must not be empty"),
        ("x" * 64, "at most 63"),
        ("-app", "is invalid"),
        ("app-", "is invalid"),
        ("has space", "is invalid"),
        ("/name", "empty prefix"),
        ("Example.com/name", "lowercase DNS subdomain"),
        ("a..b/name", "lowercase DNS subdomain"),
        ("example.com/", "label key name must not be empty"),
        ("a" * 254 + "/name", "at most 253"),
    ],
)
def test_invalid_keys(key: str, fragment: str) -> None:
    problem = label_key_problem(key)
    assert problem is not None and fragment in problem


def test_values() -> None:
    assert label_value_problem("") is None
    assert label_value_problem("v1.2_beta-3") is None
    assert "at most 63" in (label_value_problem("v" * 64) or "")
    assert "is invalid" in (label_value_problem("a b") or "")
    assert "must be a string" in (label_value_problem(3) or "")  # type: ignore[arg-type]


def test_label_problem_combines_key_and_value() -> None:
    assert label_problem("app", "web") is None
    assert label_problem("app", "") is None
    assert "label key" in (label_problem("bad key", "x") or "")
    assert (label_problem("app", "bad value") or "").startswith("label 'app': label value")
