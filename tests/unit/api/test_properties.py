"""Property tests: random and mutated documents never crash the loader, and nothing invalid
is ever stored."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpilot.api.decode import decode
from meshpilot.api.errors import InvalidInput
from meshpilot.api.load import Document, parse_text
from meshpilot.controlplane.apply import apply_documents, documents_from_json
from meshpilot.store import SqliteStore

ROOT = Path(__file__).parents[3]
VALID_DOCS: list[dict[str, Any]] = [
    d
    for folder in (ROOT / "examples" / "traffic-demo", ROOT / "tests" / "data" / "seed")
    for f in sorted(folder.rglob("*.yaml"))
    if f.name != "09-ab-test.yaml"
    for d in yaml.safe_load_all(f.read_text())
    if d and d.get("kind") not in ("Deployment", "ConfigMap")
]
KINDS = ["VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "WorkloadEntry",
         "Service", "Secret", "List", "Deployment"]
API_VERSIONS = ["networking.istio.io/v1", "networking.istio.io/v1beta1",
                "networking.istio.io/v1alpha3", "v1", "apps/v1", "networking.istio.io/v9"]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=True),
    st.text(max_size=12), st.sampled_from(["*", "v1", "5s", "0s", "-1", "100ms", "a.b", "[", ""]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(max_size=10) | st.sampled_from(
            ["hosts", "http", "route", "match", "subsets", "name", "port", "spec", "host"]),
            inner, max_size=4),
    ),
    max_leaves=20,
)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_documents(draw: st.DrawFn) -> dict[str, Any]:
    """A valid document with one to three random edits: replace, delete, or add a field."""
    doc = copy.deepcopy(draw(st.sampled_from(VALID_DOCS)))
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=8))] = draw(json_values)
    return doc


@st.composite
def random_documents(draw: st.DrawFn) -> Any:
    if draw(st.booleans()):
        return draw(json_values)
    doc = draw(st.dictionaries(st.sampled_from(["metadata", "spec", "items", "data", "type"]),
                               json_values, max_size=4))
    doc["apiVersion"] = draw(st.sampled_from(API_VERSIONS))
    doc["kind"] = draw(st.sampled_from(KINDS))
    return doc


def _decode_never_crashes(doc: Any) -> None:
    decoded = decode(documents_from_json([doc]))
    assert all(i.message for i in decoded.errors + decoded.warnings + decoded.skipped)
    if decoded.errors:
        assert all(i.severity == "error" for i in decoded.errors)
        return
    for res in decoded.resources:
        again = decode(documents_from_json([res.to_dict(body_key=None if res.kind == "Secret"
                                                        else "spec")]))
        assert not again.errors, [e.format() for e in again.errors]
        assert again.resources[0].body == res.body


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_documents())
def test_mutated_documents_never_crash_and_valid_ones_round_trip(doc: dict[str, Any]) -> None:
    _decode_never_crashes(doc)


@settings(max_examples=300, deadline=None)
@given(random_documents())
def test_random_documents_never_crash(doc: Any) -> None:
    _decode_never_crashes(doc)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_is_yaml_or_a_located_error(text: str) -> None:
    try:
        docs = parse_text(text, "fuzz.yaml")
    except InvalidInput as e:
        assert e.issues and all(i.source == "fuzz.yaml" for i in e.issues)
        return
    assert all(isinstance(d, Document) for d in docs)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated_documents(), min_size=1, max_size=4))
def test_store_never_holds_an_invalid_object(batch: list[dict[str, Any]]) -> None:
    with SqliteStore(":memory:") as store:
        before = store.revision
        try:
            apply_documents(store, documents_from_json(batch))
        except InvalidInput:
            assert store.revision == before and store.list() == []
            return
        except Exception as e:  # store-level refusals (e.g. a duplicate) are fine if atomic
            assert store.list() == [], e
            return
        for res in store.list():
            decoded = decode(documents_from_json([res.to_dict(
                body_key=None if res.kind == "Secret" else "spec")]))
            assert not decoded.errors, [e.format() for e in decoded.errors]
