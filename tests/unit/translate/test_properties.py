"""Property tests: random valid routing config -> translation is consistent and stable.

Whatever subsets, weights and header matches users combine (including subsets no
DestinationRule defines), every route must name a cluster that exists, every EDS cluster
must have an assignment, and translating twice must give byte-identical resources.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpilot.api.resource import Resource
from meshpilot.snapshot import MeshSnapshot
from meshpilot.xds.translate import translate

from .helpers import CLIENT, assert_consistent, resource

SUBSET = st.sampled_from(["v1", "v2", "v3", "canary", "stable"])
TOKEN = st.text(alphabet="abcdefghij0123456789", min_size=1, max_size=6)
HEADER = st.sampled_from(["version", "canary", "user-group", "cookie", "x-debug"])


@st.composite
def string_match(draw: st.DrawFn) -> dict[str, str]:
    kind = draw(st.sampled_from(["exact", "prefix", "regex", "presence"]))
    if kind == "presence":
        return {}
    value = draw(TOKEN)
    return {kind: f"^{value}.*" if kind == "regex" else value}


@st.composite
def match_block(draw: st.DrawFn) -> dict[str, Any]:
    out: dict[str, Any] = {}
    headers = draw(st.dictionaries(HEADER, string_match(), max_size=2))
    if headers:
        out["headers"] = headers
    if draw(st.booleans()):
        out["uri"] = {"prefix": "/" + draw(TOKEN)}
    if draw(st.booleans()):
        out["method"] = {"exact": draw(st.sampled_from(["GET", "POST"]))}
    return out


@st.composite
def destination(draw: st.DrawFn, weighted: bool) -> dict[str, Any]:
    dest: dict[str, Any] = {"host": draw(st.sampled_from(["sample-app", "other", "ghost"]))}
    if draw(st.booleans()):
        dest["subset"] = draw(SUBSET)
    out: dict[str, Any] = {"destination": dest}
    if weighted:
        out["weight"] = draw(st.integers(min_value=0, max_value=100))
    return out


@st.composite
def http_route(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=3))
    route = [draw(destination(n > 1)) for _ in range(n)]
    if n > 1 and sum(d["weight"] for d in route) == 0:
        route[0]["weight"] = 1
    out: dict[str, Any] = {"route": route}
    matches = draw(st.lists(match_block(), max_size=3))
    if matches:
        out["match"] = matches
    if draw(st.booleans()):
        out["retries"] = {"attempts": draw(st.integers(min_value=0, max_value=5))}
    if draw(st.booleans()):
        out["timeout"] = f"{draw(st.integers(min_value=1, max_value=30))}s"
    return out


@st.composite
def mesh(draw: st.DrawFn) -> list[Resource]:
    res = [
        resource("Service", "sample-app", {"selector": {"app": "sample-app"},
                                           "ports": [{"name": "http", "port": 80}]}),
        resource("Service", "other", {"selector": {"app": "other"},
                                      "ports": [{"name": "http", "port": 8080}]}),
    ]
    for i, version in enumerate(draw(st.lists(SUBSET, max_size=4))):
        res.append(resource("WorkloadEntry", f"we-{i}", {
            "address": f"127.0.1.{i + 1}", "labels": {"app": "sample-app", "version": version},
            "ports": {"http": 9000 + i}}))
    subsets = draw(st.lists(SUBSET, max_size=4, unique=True))
    if subsets:
        res.append(resource("DestinationRule", "dr", {"host": "sample-app", "subsets": [
            {"name": s, "labels": {"version": s}} for s in subsets]}))
    for i in range(draw(st.integers(min_value=0, max_value=2))):
        res.append(resource("VirtualService", f"vs-{i}", {
            "hosts": [draw(st.sampled_from(["sample-app", "other", "virtual.example.com"]))],
            "http": draw(st.lists(http_route(), min_size=1, max_size=4)),
        }, created=f"2026-01-01T00:00:0{i}Z"))
    return res


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mesh())
def test_translation_is_consistent_and_deterministic(resources: list[Resource]) -> None:
    snap = MeshSnapshot.build(resources, 1)
    assert not any("invalid body" in d for d in snap.diagnostics), snap.diagnostics
    first = translate(snap, CLIENT)
    assert_consistent(first)
    again = translate(MeshSnapshot.build(list(reversed(resources)), 1), CLIENT)
    assert list(first.by_type) == list(again.by_type)
    for type_url, items in first.by_type.items():
        other = again.get(type_url)
        assert list(items) == list(other)
        for name, msg in items.items():
            assert msg.SerializeToString(deterministic=True) == other[name].SerializeToString(
                deterministic=True
            ), (type_url, name)
    for rc in first.routes.values():
        domains = [d for vh in rc.virtual_hosts for d in vh.domains]  # type: ignore
        assert len(domains) == len(set(domains)), f"a domain appears twice in {rc.name}"
