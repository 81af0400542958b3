"""Scripted delta (incremental) exchanges against the sans-IO session."""

from __future__ import annotations

from meshpilot.xds.session import DeltaSession
from meshpilot.xds.types import ProxyResources

from .builders import simple
from .playbook import CDS, EDS, LDS, RDS, dack, dreq, only, route_targets, shape, snap

AB = {"a": 8001, "b": 8002}


def bring_up(s: DeltaSession, snapshot) -> dict:
    last = {}
    _, out = s.handle_request(dreq(CDS))
    out = out + s.set_desired(snapshot)
    last[CDS] = only(out, CDS)
    _, out = s.handle_request(dreq(EDS, sorted(last[CDS].resource_names)))
    last[EDS] = only(out, EDS)
    assert s.handle_request(dack(last[EDS]))[1] == []
    assert s.handle_request(dack(last[CDS]))[1] == []
    _, out = s.handle_request(dreq(LDS))
    last[LDS] = only(out, LDS)
    _, out = s.handle_request(dreq(RDS, ["route_0"]))
    last[RDS] = only(out, RDS)
    s.handle_request(dack(last[LDS]))
    s.handle_request(dack(last[RDS]))
    return last


def test_initial_wildcard_and_named_subscriptions() -> None:
    s = DeltaSession()
    last = bring_up(s, snap(simple(clusters=AB, route_to="a")))
    assert shape([last[t] for t in (CDS, EDS, LDS, RDS)]) == [
        ("CDS", ["a", "b"], []), ("EDS", ["a", "b"], []),
        ("LDS", ["listener_0"], []), ("RDS", ["route_0"], [])]
    assert {st.state for st in s.status().values()} == {"SYNCED"}
    res = last[CDS].message.resources[0]
    assert res.name == "a" and res.version == snap(
        simple(clusters=AB, route_to="a")).get(CDS)["a"].version


def test_only_changed_resources_are_sent() -> None:
    s = DeltaSession()
    bring_up(s, snap(simple(clusters=AB, route_to="a")))
    out = s.set_desired(snap(simple(clusters={"a": 8001, "b": 9002}, route_to="a")))
    assert shape(out) == [("EDS", ["b"], [])]


def test_changed_cluster_resends_its_endpoints() -> None:
    s = DeltaSession()
    bring_up(s, snap(simple(clusters=AB, route_to="a")))
    out = s.set_desired(snap(simple(clusters=AB, route_to="a", timeout_ms=300)))
    assert shape(out) == [("CDS", ["a", "b"], []), ("EDS", ["a", "b"], [])]


def test_nack_is_recorded_and_not_resent() -> None:
    s = DeltaSession()
    last = bring_up(s, snap(simple(clusters=AB, route_to="a")))
    out = s.set_desired(snap(simple(clusters=AB, route_to="b", header="x")))
    events, more = s.handle_request(dack(only(out, RDS), error="bad route"))
    assert [(e.kind, e.version, e.message) for e in events] == [
        ("nack", last[RDS].version, "bad route")]
    assert more == []
    assert s.status()[RDS].state == "NACKED"
    assert s.set_desired(snap(simple(clusters=AB, route_to="b", header="x"))) == []


def test_stale_nonce_is_ignored() -> None:
    s = DeltaSession()
    bring_up(s, snap(simple(clusters=AB, route_to="a")))
    events, out = s.handle_request(dreq(EDS, nonce="from-another-life"))
    assert [e.kind for e in events] == ["stale"] and out == []


def test_make_before_break_removal() -> None:
    s = DeltaSession()
    bring_up(s, snap(simple(clusters=AB, route_to="a")))
    out = s.set_desired(snap(simple(clusters={"b": 8002, "c": 8003}, route_to="c")))
    assert shape(out) == [("CDS", ["c"], [])]  # a kept, route waits for c
    cds = out[0]
    _, out = s.handle_request(dreq(EDS, ["c"]))
    assert shape(out) == [("EDS", ["c"], [])]
    assert s.handle_request(dack(out[0]))[1] == []
    _, out = s.handle_request(dack(cds))
    assert shape(out) == [("RDS", ["route_0"], [])] and route_targets(out[0]) == {"c"}
    _, out = s.handle_request(dack(out[0]))
    assert shape(out) == [("CDS", [], ["a"])]
    removal = out[0]
    # Envoy drops a's endpoints subscription, then ACKs
    _, out = s.handle_request(dreq(EDS, unsub=["a"]))
    assert out == []
    assert s.handle_request(dack(removal))[1] == []
    assert {st.state for st in s.status().values()} == {"SYNCED"}


def test_removed_listener_goes_at_once_and_its_route_after() -> None:
    s = DeltaSession()
    bring_up(s, snap(simple(clusters=AB, route_to="a")))
    no_listener = snap(ProxyResources({CDS: {}, EDS: {}, LDS: {}, RDS: {}}))
    out = s.set_desired(no_listener)
    # b is unused and goes at once; a and the route stay while the listener may be held
    assert shape(out) == [("CDS", [], ["b"]), ("LDS", [], ["listener_0"])]
    s.handle_request(dack(out[0]))
    out = [out[1]]
    _, out = s.handle_request(dack(out[0]))
    assert shape(out) == [("RDS", [], ["route_0"])]
    _, out = s.handle_request(dack(out[0]))
    assert shape(out) == [("CDS", [], ["a"])]


def test_reconnect_with_initial_resource_versions_sends_only_differences() -> None:
    first = DeltaSession()
    old = snap(simple(clusters=AB, route_to="a"))
    bring_up(first, old)
    new = snap(simple(clusters={"a": 8001, "c": 8003}, route_to="a", header="v2"))
    s = DeltaSession()
    s.set_desired(new)
    held = {n: r.version for n, r in old.get(CDS).items()}
    events, out = s.handle_request(dreq(CDS, initial=held))
    assert [e.kind for e in events] == ["reconnect"]
    # c is new; b is not removed yet: listeners/routes Envoy holds are unknown so far
    assert shape(out) == [("CDS", ["c"], [])]
    cds = out[0]
    _, out = s.handle_request(dreq(EDS, ["a", "b", "c"],
                                   initial={n: r.version for n, r in old.get(EDS).items()}))
    assert shape(out) == [("EDS", ["c"], [])]
    s.handle_request(dack(out[0]))
    s.handle_request(dack(cds))
    _, out = s.handle_request(dreq(LDS, initial={
        "listener_0": old.get(LDS)["listener_0"].version}))
    assert out == [] or shape(out) == [("LDS", [], [])]
    _, out = s.handle_request(dreq(RDS, ["route_0"], initial={
        "route_0": old.get(RDS)["route_0"].version}))
    assert shape(out) == [("RDS", ["route_0"], [])]
    _, out = s.handle_request(dack(out[0]))
    assert shape(out) == [("CDS", [], ["b"])]


def test_unsubscribe_and_resubscribe() -> None:
    s = DeltaSession()
    bring_up(s, snap(simple(clusters=AB, route_to="a")))
    _, out = s.handle_request(dreq(EDS, unsub=["b"]))
    assert out == []
    _, out = s.handle_request(dreq(EDS, ["b"]))
    assert shape(out) == [("EDS", ["b"], [])]
