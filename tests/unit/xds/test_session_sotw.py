"""Scripted SotW exchanges against the sans-IO session: request in, responses out."""

from __future__ import annotations

from meshpilot.xds.session import SotwSession

from .builders import cla, cluster, resources, simple, tcp_listener
from .playbook import (
    CDS,
    EDS,
    LDS,
    RDS,
    ack,
    clusters_in,
    nack,
    only,
    req,
    route_targets,
    shape,
    snap,
)

AB = {"a": 8001, "b": 8002}


def bring_up(s: SotwSession, snapshot) -> dict:
    """Envoy's start-up dance: CDS, EDS, (ACKs), LDS, RDS. Returns last response per type."""
    last = {}
    _, out = s.handle_request(req(CDS))
    if snapshot is not None:
        out = out + s.set_desired(snapshot)
    last[CDS] = only(out, CDS)
    cla_names = sorted(clusters_in(last[CDS]))
    _, out = s.handle_request(req(EDS, cla_names))
    last[EDS] = only(out, EDS)
    _, out = s.handle_request(ack(last[EDS], cla_names))
    assert out == []
    _, out = s.handle_request(ack(last[CDS]))
    assert out == []
    _, out = s.handle_request(req(LDS))
    last[LDS] = only(out, LDS)
    _, out = s.handle_request(req(RDS, ["route_0"]))
    last[RDS] = only(out, RDS)
    s.handle_request(ack(last[LDS]))
    s.handle_request(ack(last[RDS], ["route_0"]))
    return last


def test_nothing_is_sent_before_a_snapshot_exists() -> None:
    s = SotwSession(nonce_prefix="n")
    events, out = s.handle_request(req(CDS))
    assert [e.kind for e in events] == ["initial"] and out == []
    out = s.set_desired(snap(simple(clusters=AB, route_to="a")))
    assert shape(out) == [("CDS", ["a", "b"], [])]


def test_initial_subscribe_sends_in_order_and_acks_sync() -> None:
    s = SotwSession(nonce_prefix="n")
    last = bring_up(s, snap(simple(clusters=AB, route_to="a")))
    assert shape([last[t] for t in (CDS, EDS, LDS, RDS)]) == [
        ("CDS", ["a", "b"], []), ("EDS", ["a", "b"], []),
        ("LDS", ["listener_0"], []), ("RDS", ["route_0"], [])]
    status = s.status()
    assert {st.short_name: st.state for st in status.values()} == {
        "CDS": "SYNCED", "EDS": "SYNCED", "LDS": "SYNCED", "RDS": "SYNCED"}
    assert status[CDS].acked_version == last[CDS].version


def test_identical_snapshot_sends_nothing() -> None:
    s = SotwSession()
    bring_up(s, snap(simple(clusters=AB, route_to="a")))
    assert s.set_desired(snap(simple(clusters=AB, route_to="a"))) == []


def test_route_change_sends_only_rds() -> None:
    s = SotwSession()
    bring_up(s, snap(simple(clusters=AB, route_to="a")))
    out = s.set_desired(snap(simple(clusters=AB, route_to={"a": 90, "b": 10})))
    assert shape(out) == [("RDS", ["route_0"], [])]
    assert route_targets(out[0]) == {"a", "b"}


def test_nack_is_recorded_and_not_resent_then_a_fix_goes_out() -> None:
    s = SotwSession()
    last = bring_up(s, snap(simple(clusters=AB, route_to="a")))
    out = s.set_desired(snap(simple(clusters=AB, route_to="b", header="v2")))
    bad = only(out, RDS)
    events, out = s.handle_request(nack(bad, last[RDS].version, "invalid regex",
                                        ["route_0"]))
    assert [(e.kind, e.version, e.message) for e in events] == [
        ("nack", last[RDS].version, "invalid regex")]
    assert out == []  # the same content is not resent
    st = s.status()[RDS]
    assert st.state == "NACKED" and st.nack.message == "invalid regex"
    assert st.acked_version == last[RDS].version  # last good kept
    # Envoy re-requests with the same nonce and no error: still no resend
    _, out = s.handle_request(req(RDS, ["route_0"], version=last[RDS].version,
                                  nonce=bad.nonce))
    assert out == []
    out = s.set_desired(snap(simple(clusters=AB, route_to="b", header="v3")))
    _, more = s.handle_request(ack(only(out, RDS), ["route_0"]))
    assert more == [] and s.status()[RDS].state == "SYNCED"


def test_stale_nonce_is_ignored() -> None:
    s = SotwSession()
    last = bring_up(s, snap(simple(clusters=AB, route_to="a")))
    s.set_desired(snap(simple(clusters=AB, route_to="b")))
    events, out = s.handle_request(req(EDS, ["a"], version=last[EDS].version,
                                       nonce="old-nonce"))
    assert [e.kind for e in events] == ["stale"] and out == []
    # an older nonce of ours with a changed subscription is ignored too
    events, out = s.handle_request(req(RDS, [], nonce=last[RDS].nonce,
                                       version=last[RDS].version))
    assert [e.kind for e in events] == ["stale"] and out == []
    assert s.status()[RDS].state == "STALE"  # the new route is still unacknowledged


def test_reconnect_with_version_info_gets_full_state() -> None:
    first = SotwSession()
    last = bring_up(first, snap(simple(clusters=AB, route_to="a")))
    s = SotwSession()  # a new stream (maybe a restarted control plane)
    s.set_desired(snap(simple(clusters=AB, route_to="a")))
    events, out = s.handle_request(req(CDS, version=last[CDS].version))
    assert [e.kind for e in events] == ["reconnect"]
    assert shape(out) == [("CDS", ["a", "b"], [])]
    assert out[0].version == last[CDS].version  # content-hash versions survive restarts
    _, out = s.handle_request(req(EDS, ["a", "b"], version=last[EDS].version))
    assert shape(out) == [("EDS", ["a", "b"], [])]


def test_changed_cluster_resends_its_endpoints() -> None:
    s = SotwSession()
    bring_up(s, snap(simple(clusters=AB, route_to="a")))
    out = s.set_desired(snap(simple(clusters=AB, route_to="a", timeout_ms=300)))
    assert shape(out) == [("CDS", ["a", "b"], []), ("EDS", ["a", "b"], [])]


def test_new_cluster_gates_the_route_until_acked_and_old_cluster_goes_last() -> None:
    """Make before break: route a -> c. c first, then the route, then a is removed."""
    s = SotwSession()
    bring_up(s, snap(simple(clusters=AB, route_to="a")))
    out = s.set_desired(snap(simple(clusters={"b": 8002, "c": 8003}, route_to="c")))
    # a stays (the held route uses it), c is added; the route waits for c
    cds = only(out, CDS)
    assert shape(out) == [("CDS", ["a", "b", "c"], [])]
    # Envoy subscribes to c's endpoints
    _, out = s.handle_request(req(EDS, ["a", "b", "c"], version="x", nonce="stale-one"))
    assert out == []  # stale: Envoy's re-request with an old nonce
    eds_nonce = s.status()[EDS].sent_nonce
    _, out = s.handle_request(req(EDS, ["a", "b", "c"], version=s.status()[EDS].acked_version,
                                  nonce=eds_nonce))
    eds = only(out, EDS)
    assert shape(out) == [("EDS", ["c"], [])]
    _, out = s.handle_request(ack(eds, ["a", "b", "c"]))
    assert out == []  # CDS not ACKed yet: still no route
    _, out = s.handle_request(ack(cds))
    assert shape(out) == [("RDS", ["route_0"], [])]
    assert route_targets(out[0]) == {"c"}
    assert "a" in clusters_in(cds)
    _, out = s.handle_request(ack(out[0], ["route_0"]))
    # only now is a dropped from the full-state CDS
    assert shape(out) == [("CDS", ["b", "c"], [])]
    _, out = s.handle_request(ack(out[0]))
    _, out = s.handle_request(req(EDS, ["b", "c"], version=s.status()[EDS].acked_version,
                                  nonce=s.status()[EDS].sent_nonce))
    assert out == []
    assert {st.state for st in s.status().values()} == {"SYNCED"}


def test_nacked_route_keeps_the_cluster_it_would_have_dropped() -> None:
    s = SotwSession()
    last = bring_up(s, snap(simple(clusters=AB, route_to="a")))
    out = s.set_desired(snap(simple(clusters={"b": 8002}, route_to="b", header="x")))
    rds = only(out, RDS)  # b is already ACKed: no gating
    assert shape(out) == [("RDS", ["route_0"], [])]
    _, out = s.handle_request(nack(rds, last[RDS].version, "no", ["route_0"]))
    assert out == []  # a stays: Envoy still runs the old route to a
    out = s.set_desired(snap(simple(clusters={"b": 8002}, route_to="b", header="y")))
    _, out = s.handle_request(ack(only(out, RDS), ["route_0"]))
    assert shape(out) == [("CDS", ["b"], [])]


def test_unsubscribe_forgets_and_resubscribe_resends() -> None:
    s = SotwSession()
    last = bring_up(s, snap(simple(clusters=AB, route_to="a")))
    _, out = s.handle_request(ack(last[EDS], ["a"]))
    assert out == []
    eds = s.status()[EDS]
    _, out = s.handle_request(req(EDS, ["a", "b"], version=eds.acked_version,
                                  nonce=eds.sent_nonce))
    assert shape(out) == [("EDS", ["b"], [])]


def test_types_never_requested_are_never_sent() -> None:
    s = SotwSession()
    s.set_desired(snap(simple(clusters=AB, route_to="a")))
    _, out = s.handle_request(req(LDS))
    assert shape(out) == [("LDS", ["listener_0"], [])]



def test_reconnect_gates_routes_until_clusters_are_acked() -> None:
    """All four requests arrive at once on reconnect; RDS waits for the clusters' ACKs."""
    s = SotwSession()
    s.set_desired(snap(simple(clusters=AB, route_to="a")))
    outs = []
    for r in (req(CDS, version="old"), req(EDS, ["a", "b"], version="old"),
              req(LDS, version="old"), req(RDS, ["route_0"], version="old")):
        outs += s.handle_request(r)[1]
    assert shape(outs) == [("CDS", ["a", "b"], []), ("EDS", ["a", "b"], []),
                           ("LDS", ["listener_0"], [])]
    s.handle_request(ack(outs[1], ["a", "b"]))
    _, out = s.handle_request(ack(outs[0]))
    assert shape(out) == [("RDS", ["route_0"], [])]


def test_reconnect_never_sends_a_listener_set_missing_a_gated_listener() -> None:
    """A full-state LDS without the TCP listener (waiting for its cluster) would delete it
    in Envoy: the whole LDS response waits instead."""
    s = SotwSession()
    s.set_desired(snap(resources(clusters=[cluster("db")], endpoints=[cla("db", 5432)],
                                 listeners=[tcp_listener("tcp", 15432, "db")])))
    _, out = s.handle_request(req(LDS, version="old"))
    assert out == []
    _, out = s.handle_request(req(CDS, version="old"))
    cds = only(out, CDS)
    _, out = s.handle_request(req(EDS, ["db"], version="old"))
    s.handle_request(ack(only(out, EDS), ["db"]))
    _, out = s.handle_request(ack(cds))
    assert shape(out) == [("LDS", ["tcp"], [])]
