"""SqliteStore keeps Kubernetes API semantics: versions, generations, atomic batches,
optimistic concurrency, status separation and a resumable event stream."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from meshpilot.api.labels import parse_selector
from meshpilot.api.resource import Resource, ResourceKey
from meshpilot.store import (
    SCHEMA_VERSION,
    AlreadyExists,
    Conflict,
    Gone,
    NotFound,
    SqliteStore,
    StoreError,
    WatchEvent,
)

VS = "VirtualService"
DR = "DestinationRule"
API = "networking.istio.io/v1"


class Clock:
    """Deterministic clock: each call advances one second from 2026-11-27T10:00:00Z."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        current = self.now
        self.now += timedelta(seconds=1)
        return current


def uids() -> Any:
    counter = itertools.count(1)
    return lambda: f"uid-{next(counter)}"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "nested" / "dir" / "store.db"


@pytest.fixture
def store(db: Path) -> Iterator[SqliteStore]:
    with SqliteStore(db, clock=Clock(), uid_factory=uids()) as s:
        yield s


def vs(name: str = "sample-app", ns: str = "traffic-demo", **kw: Any) -> Resource:
    body = kw.pop("body", {"hosts": [name], "http": [{"route": [{"destination": {"host": name}}]}]})
    return Resource(API, VS, name, ns, body, **kw)


def dr(name: str = "sample-app", ns: str = "traffic-demo", **kw: Any) -> Resource:
    return Resource(API, DR, name, ns, kw.pop("body", {"host": name}), **kw)


# --- basics ------------------------------------------------------------------------------


def test_create_assigns_server_fields(store: SqliteStore, db: Path) -> None:
    assert db.exists()  # parent dirs created
    created = store.create(vs(labels={"app": "web"}, annotations={"note": "x"}))
    assert created.uid == "uid-1"
    assert created.resource_version == 1
    assert created.generation == 1
    assert created.creation_timestamp == "2026-11-27T10:00:00Z"
    assert created.status is None
    assert store.get(VS, "traffic-demo", "sample-app") == created
    assert store.revision == 1


def test_pragmas_and_schema_version(store: SqliteStore) -> None:
    conn = store._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_newer_schema_is_refused(db: Path) -> None:
    SqliteStore(db).close()
    import sqlite3

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE schema_version SET version = 999")
    with pytest.raises(StoreError, match="schema version 999 is newer"):
        SqliteStore(db)


def test_server_owned_input_fields_are_ignored(store: SqliteStore) -> None:
    res = vs(uid="mine", generation=7, creation_timestamp="1999-01-01T00:00:00Z", status={"x": 1})
    (outcome,) = store.apply([res])
    assert outcome.action == "created"
    got = outcome.resource
    assert (got.uid, got.generation, got.creation_timestamp, got.status) == (
        "uid-1",
        1,
        "2026-11-27T10:00:00Z",
        None,
    )
    created = store.create(vs("other", resource_version=99, status={"a": 1}))
    assert created.resource_version == 2 and created.status is None


def test_api_version_and_body_key_order_preserved(store: SqliteStore) -> None:
    body = {"zeta": 1, "alpha": {"b": 2, "a": 1}}
    store.create(Resource("networking.istio.io/v1beta1", VS, "x", "ns", body))
    got = store.get(VS, "ns", "x")
    assert got is not None
    assert got.api_version == "networking.istio.io/v1beta1"
    assert list(got.body) == ["zeta", "alpha"] and list(got.body["alpha"]) == ["b", "a"]


def test_returned_objects_are_copies(store: SqliteStore) -> None:
    res = vs(labels={"app": "web"})
    created = store.create(res)
    res.body["hosts"].append("mutated")
    created.labels["app"] = "mutated"
    got = store.get(VS, "traffic-demo", "sample-app")
    assert got is not None
    assert got.body["hosts"] == ["sample-app"] and got.labels == {"app": "web"}


def test_create_existing_raises_already_exists(store: SqliteStore) -> None:
    store.create(vs())
    with pytest.raises(AlreadyExists, match="VirtualService traffic-demo/sample-app already"):
        store.create(vs())
    assert store.revision == 1


def test_same_name_different_kind_or_namespace_coexist(store: SqliteStore) -> None:
    store.create(vs())
    store.create(dr())
    store.create(vs(ns="other"))
    assert [(r.kind, r.namespace) for r in store.list()] == [
        (DR, "traffic-demo"),
        (VS, "other"),
        (VS, "traffic-demo"),
    ]


def test_get_missing_is_none(store: SqliteStore) -> None:
    assert store.get(VS, "ns", "nope") is None


def test_list_filters_and_sorting(store: SqliteStore) -> None:
    store.apply(
        [
            vs("b", "ns1", labels={"app": "web", "tier": "front"}),
            vs("a", "ns2", labels={"app": "api"}),
            vs("a", "ns1"),
            dr("z", "ns1", labels={"app": "web"}),
            Resource("v1", "Secret", "creds", "ns3", {"data": {}}),
        ]
    )
    keys = [str(r.key) for r in store.list()]
    assert keys == [
        "DestinationRule ns1/z",
        "Secret ns3/creds",
        "VirtualService ns1/a",
        "VirtualService ns1/b",
        "VirtualService ns2/a",
    ]
    assert [r.name for r in store.list(VS, "ns1")] == ["a", "b"]
    assert [str(r.key) for r in store.list(namespace="ns1")] == [
        "DestinationRule ns1/z",
        "VirtualService ns1/a",
        "VirtualService ns1/b",
    ]
    web = store.list(selector=parse_selector("app=web"))
    assert [str(r.key) for r in web] == ["DestinationRule ns1/z", "VirtualService ns1/b"]
    assert [r.name for r in store.list(VS, selector=parse_selector("app notin (web)"))] == [
        "a",
        "a",
    ]
    assert store.list("Gateway") == []
    assert store.namespaces() == ["ns1", "ns2", "ns3"]


def test_namespaces_excludes_cluster_scoped_and_empty_ones(store: SqliteStore) -> None:
    store.create(Resource("v1", "Namespace", "ns1", "", {}))
    store.create(vs("a", "ns2"))
    assert store.namespaces() == ["ns2"]
    store.delete(VS, "ns2", "a")
    assert store.namespaces() == []


# --- versions and generations ------------------------------------------------------------


def test_resource_version_is_global_across_kinds(store: SqliteStore) -> None:
    a = store.create(vs("a"))
    b = store.create(dr("b"))
    c = store.update(a.with_(body={"hosts": ["changed"]}))
    assert (a.resource_version, b.resource_version, c.resource_version) == (1, 2, 3)


def test_resource_version_never_reused_after_delete_and_reopen(db: Path) -> None:
    with SqliteStore(db) as s:
        s.create(vs("a"))
        s.create(vs("b"))
        s.delete(VS, "traffic-demo", "a")
        s.delete(VS, "traffic-demo", "b")
        assert s.revision == 4
        assert s.list() == []
    with SqliteStore(db) as s:
        assert s.revision == 4
        again = s.create(vs("a"))
        assert again.resource_version == 5
        assert [e.resource_version for e in s.events_since(0)] == [1, 2, 3, 4, 5]


def test_data_survives_reopen(db: Path) -> None:
    with SqliteStore(db, clock=Clock(), uid_factory=uids()) as s:
        created = s.create(vs(labels={"app": "web"}))
        with_status = s.update_status(VS, "traffic-demo", "sample-app", {"ok": True})
    with SqliteStore(db) as s:
        assert s.get(VS, "traffic-demo", "sample-app") == with_status
        assert with_status.uid == created.uid


def test_generation_rules(store: SqliteStore) -> None:
    a = store.create(vs(labels={"app": "web"}))
    assert a.generation == 1
    relabeled = store.update(a.with_(labels={"app": "api"}, annotations={"n": "1"}))
    assert relabeled.generation == 1
    assert relabeled.resource_version == a.resource_version + 1
    new_api = store.update(relabeled.with_(api_version="networking.istio.io/v1beta1"))
    assert new_api.generation == 1 and new_api.api_version.endswith("v1beta1")
    spec = store.update(new_api.with_(body={"hosts": ["other"]}))
    assert spec.generation == 2
    spec2 = store.apply([spec.with_(body={"hosts": ["third"]}, resource_version=0)])[0]
    assert spec2.resource.generation == 3
    status = store.update_status(VS, "traffic-demo", "sample-app", {"observed": 3})
    assert status.generation == 3 and status.resource_version == spec2.resource.resource_version + 1
    assert status.uid == a.uid and status.creation_timestamp == a.creation_timestamp


def test_unchanged_detection(store: SqliteStore) -> None:
    events: list[WatchEvent] = []
    store.subscribe(events.extend)
    res = vs(body={"b": 1, "a": [1, 2]}, labels={"x": "1", "y": "2"})
    (first,) = store.apply([res])
    reordered = vs(body={"a": [1, 2], "b": 1}, labels={"y": "2", "x": "1"})
    (second,) = store.apply([reordered])
    assert second.action == "unchanged"
    assert second.resource == first.resource
    assert store.revision == 1 and len(events) == 1
    # update() with identical content is a no-op too
    assert store.update(reordered) == first.resource
    assert store.revision == 1
    # a list order change is a real change
    (third,) = store.apply([vs(body={"a": [2, 1], "b": 1}, labels={"x": "1", "y": "2"})])
    assert third.action == "configured" and third.resource.generation == 2


def test_apply_outcomes_mixed(store: SqliteStore) -> None:
    store.apply([vs("a"), vs("b")])
    outcomes = store.apply([vs("a"), vs("b", body={"hosts": ["new"]}), vs("c")])
    assert [(o.resource.name, o.action) for o in outcomes] == [
        ("a", "unchanged"),
        ("b", "configured"),
        ("c", "created"),
    ]
    assert [o.resource.resource_version for o in outcomes] == [1, 3, 4]


def test_apply_same_key_twice_applies_in_order(store: SqliteStore) -> None:
    outcomes = store.apply([vs(body={"v": 1}), vs(body={"v": 2})])
    assert [o.action for o in outcomes] == ["created", "configured"]
    got = store.get(VS, "traffic-demo", "sample-app")
    assert got is not None and got.body == {"v": 2} and got.generation == 2


def test_clock_naive_datetime_is_utc(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "s.db", clock=lambda: datetime(2026, 1, 2, 3, 4, 5, 999)) as s:
        assert s.create(vs()).creation_timestamp == "2026-01-02T03:04:05Z"
    aware = datetime(2026, 1, 2, 12, 0, tzinfo=UTC).astimezone(timezone(timedelta(hours=5)))
    with SqliteStore(tmp_path / "t.db", clock=lambda: aware) as s:
        assert s.create(vs()).creation_timestamp == "2026-01-02T12:00:00Z"


# --- optimistic concurrency --------------------------------------------------------------


def test_update_with_stale_version_conflicts(store: SqliteStore) -> None:
    a = store.create(vs())
    b = store.update(a.with_(body={"hosts": ["x"]}))
    with pytest.raises(Conflict) as info:
        store.update(a.with_(body={"hosts": ["y"]}))
    assert str(info.value) == (
        "VirtualService traffic-demo/sample-app: resourceVersion 1 is stale (current 2);"
        " get the object again and retry"
    )
    assert (info.value.given, info.value.current) == (1, 2)
    assert info.value.key == a.key
    assert store.get(VS, "traffic-demo", "sample-app") == b
    # current version (or no precondition) succeeds
    assert store.update(b.with_(body={"hosts": ["z"]})).resource_version == 3
    assert store.update(vs(body={"hosts": ["w"]})).resource_version == 4


def test_update_missing_is_not_found(store: SqliteStore) -> None:
    with pytest.raises(NotFound, match="VirtualService traffic-demo/sample-app not found"):
        store.update(vs())


def test_apply_precondition(store: SqliteStore) -> None:
    a = store.create(vs())
    store.update(a.with_(labels={"v": "2"}))
    with pytest.raises(Conflict, match="resourceVersion 1 is stale"):
        store.apply([a.with_(labels={"v": "3"})])
    # matching precondition passes, even when content is unchanged
    cur = store.get(VS, "traffic-demo", "sample-app")
    assert cur is not None
    assert store.apply([cur])[0].action == "unchanged"
    # stale precondition fails even if content would be unchanged
    with pytest.raises(Conflict):
        store.apply([cur.with_(resource_version=1)])


def test_apply_precondition_on_missing_object_is_not_found(store: SqliteStore) -> None:
    with pytest.raises(NotFound, match="resourceVersion 5 was required"):
        store.apply([vs(resource_version=5)])
    assert store.list() == [] and store.revision == 0


def test_delete(store: SqliteStore) -> None:
    a = store.create(vs(labels={"app": "web"}))
    store.update_status(VS, "traffic-demo", "sample-app", {"s": 1})
    deleted = store.delete(VS, "traffic-demo", "sample-app")
    assert deleted.resource_version == 3 and deleted.uid == a.uid
    assert deleted.labels == {"app": "web"} and deleted.status == {"s": 1}
    assert store.get(VS, "traffic-demo", "sample-app") is None
    with pytest.raises(NotFound, match="VirtualService traffic-demo/sample-app not found"):
        store.delete(VS, "traffic-demo", "sample-app")
    # recreating gives a new uid and generation 1
    again = store.create(vs())
    assert again.uid != a.uid and again.generation == 1 and again.resource_version == 4


def test_delete_precondition(store: SqliteStore) -> None:
    a = store.create(vs())
    b = store.update(a.with_(labels={"x": "y"}))
    with pytest.raises(Conflict, match="resourceVersion 1 is stale \\(current 2\\)"):
        store.delete(VS, "traffic-demo", "sample-app", resource_version=1)
    assert store.get(VS, "traffic-demo", "sample-app") == b
    store.delete(VS, "traffic-demo", "sample-app", resource_version=2)
    assert store.list() == []


def test_delete_many_atomic(store: SqliteStore) -> None:
    store.apply([vs("a"), vs("b"), dr("c")])
    events: list[WatchEvent] = []
    store.subscribe(events.extend)
    keys = [ResourceKey(VS, "traffic-demo", "a"), ResourceKey(VS, "traffic-demo", "zz")]
    keys.append(ResourceKey(DR, "traffic-demo", "nope"))
    with pytest.raises(NotFound) as info:
        store.delete_many(keys)
    assert "2 of 3 objects not found" in str(info.value)
    assert "VirtualService traffic-demo/zz" in str(info.value)
    assert "DestinationRule traffic-demo/nope" in str(info.value)
    assert "nothing was deleted" in str(info.value)
    assert len(store.list()) == 3 and events == [] and store.revision == 3

    a_key = ResourceKey(VS, "traffic-demo", "a")
    deleted = store.delete_many([a_key, ResourceKey(DR, "traffic-demo", "c"), a_key])
    assert [(d.name, d.resource_version) for d in deleted] == [("a", 4), ("c", 5)]
    assert [r.name for r in store.list()] == ["b"]
    assert [(e.type, e.resource.name) for e in events] == [("DELETED", "a"), ("DELETED", "c")]
    assert store.delete_many([]) == []


# --- atomic batches ----------------------------------------------------------------------


def test_batch_with_conflict_in_the_middle_stores_nothing(store: SqliteStore) -> None:
    existing = store.create(dr("x"))
    store.update(existing.with_(labels={"v": "2"}))
    events: list[WatchEvent] = []
    store.subscribe(events.extend)
    before_rev = store.revision
    batch = [vs("a"), vs("b"), existing.with_(body={"host": "new"}), vs("c")]
    with pytest.raises(Conflict, match="DestinationRule traffic-demo/x"):
        store.apply(batch)
    assert store.revision == before_rev
    assert store.list(VS) == []
    got = store.get(DR, "traffic-demo", "x")
    assert got is not None and got.body == {"host": "x"}
    assert events == []
    assert [e.resource_version for e in store.events_since(0)] == [1, 2]
    # and the next successful write continues right after
    assert store.apply([vs("a")])[0].resource.resource_version == before_rev + 1


def test_invalid_input_rejected_before_anything_is_stored(store: SqliteStore) -> None:
    with pytest.raises(ValueError, match=r"metadata\.labels: label key 'bad key'"):
        store.apply([vs("a"), vs("b", labels={"bad key": "x"})])
    with pytest.raises(ValueError, match="name must be a non-empty string"):
        store.apply([vs("")])
    with pytest.raises(ValueError, match="body must be a mapping"):
        store.create(Resource(API, VS, "x", "ns", [1, 2]))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="annotations"):
        store.create(vs(annotations={"a": 1}))
    assert store.list() == [] and store.revision == 0


def test_unserializable_body_rolls_back(store: SqliteStore) -> None:
    with pytest.raises(TypeError):
        store.apply([vs("a"), vs("b", body={"when": datetime.now()})])
    assert store.list() == [] and store.revision == 0


# --- dry run -----------------------------------------------------------------------------


def test_dry_run_computes_outcomes_without_writing(store: SqliteStore) -> None:
    store.apply([vs("a"), vs("b")])
    events: list[WatchEvent] = []
    store.subscribe(events.extend)
    outcomes = store.apply([vs("a"), vs("b", labels={"x": "1"}), vs("c")], dry_run=True)
    assert [(o.resource.name, o.action) for o in outcomes] == [
        ("a", "unchanged"),
        ("b", "configured"),
        ("c", "created"),
    ]
    assert outcomes[1].resource.labels == {"x": "1"}
    assert outcomes[2].resource.generation == 1
    assert store.revision == 2 and events == []
    assert [r.name for r in store.list()] == ["a", "b"]
    assert len(store.events_since(0)) == 2
    with pytest.raises(Conflict):
        store.apply([vs("a", resource_version=99)], dry_run=True)


# --- status ------------------------------------------------------------------------------


def test_status_is_separate_from_spec(store: SqliteStore) -> None:
    a = store.create(vs())
    s1 = store.update_status(VS, "traffic-demo", "sample-app", {"conditions": [{"ok": True}]})
    assert s1.resource_version == 2 and s1.generation == 1 and s1.body == a.body
    # apply/update never touch status, even if the input carries one
    (applied,) = store.apply([vs(body={"hosts": ["n"]}, status={"evil": 1})])
    assert applied.resource.status == {"conditions": [{"ok": True}]}
    assert applied.resource.generation == 2
    updated = store.update(applied.resource.with_(labels={"l": "1"}, status=None))
    assert updated.status == {"conditions": [{"ok": True}]}
    # identical status: no new version
    same = store.update_status(VS, "traffic-demo", "sample-app", {"conditions": [{"ok": True}]})
    assert same.resource_version == updated.resource_version
    # status precondition
    with pytest.raises(Conflict):
        store.update_status(VS, "traffic-demo", "sample-app", {"x": 1}, resource_version=1)
    s2 = store.update_status(
        VS, "traffic-demo", "sample-app", {"x": 1}, resource_version=updated.resource_version
    )
    assert s2.status == {"x": 1} and s2.generation == 2 and s2.labels == {"l": "1"}
    with pytest.raises(NotFound):
        store.update_status(VS, "traffic-demo", "missing", {"x": 1})
    with pytest.raises(ValueError):
        store.update_status(VS, "traffic-demo", "sample-app", [])  # type: ignore[arg-type]


# --- events ------------------------------------------------------------------------------


def test_events_since(store: SqliteStore) -> None:
    a = store.create(vs("a"))
    store.create(dr("b", ns="other"))
    store.update(a.with_(labels={"x": "1"}))
    store.update_status(VS, "traffic-demo", "a", {"s": 1})
    store.delete(VS, "traffic-demo", "a")
    events = store.events_since(0)
    assert [(e.type, e.resource.kind, e.resource_version) for e in events] == [
        ("ADDED", VS, 1),
        ("ADDED", DR, 2),
        ("MODIFIED", VS, 3),
        ("MODIFIED", VS, 4),
        ("DELETED", VS, 5),
    ]
    assert all(e.resource.resource_version == e.resource_version for e in events)
    deleted = events[-1].resource
    assert deleted.labels == {"x": "1"} and deleted.status == {"s": 1}
    assert [e.resource_version for e in store.events_since(3)] == [4, 5]
    assert store.events_since(5) == []
    assert store.events_since(50) == []
    assert [e.resource_version for e in store.events_since(0, kind=DR)] == [2]
    assert [e.resource_version for e in store.events_since(0, namespace="other")] == [2]
    assert store.events_since(0, kind=DR, namespace="traffic-demo") == []


def test_events_since_raises_gone_after_compaction(db: Path) -> None:
    with SqliteStore(db, history=3) as s:
        for i in range(5):
            s.create(vs(f"o{i}"))
        assert [e.resource_version for e in s.events_since(2)] == [3, 4, 5]
        with pytest.raises(Gone) as info:
            s.events_since(1)
        assert info.value.requested == 1 and info.value.compacted == 2
        assert "resourceVersion 1 is too old" in str(info.value)
        with pytest.raises(Gone):
            s.events_since(0)
        # a batch larger than history compacts within its own transaction
        s.apply([vs(f"p{i}") for i in range(4)])
        assert [e.resource_version for e in s.events_since(6)] == [7, 8, 9]
        with pytest.raises(Gone):
            s.events_since(5)
    with SqliteStore(db, history=3) as s:  # compaction mark is persisted
        with pytest.raises(Gone):
            s.events_since(5)
        assert len(s.events_since(6)) == 3


def test_history_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="history"):
        SqliteStore(tmp_path / "x.db", history=0)


# --- subscribe ---------------------------------------------------------------------------


def test_subscribe_receives_each_commit(store: SqliteStore) -> None:
    calls: list[list[WatchEvent]] = []
    unsubscribe = store.subscribe(calls.append)
    store.apply([vs("a"), vs("b")])
    store.apply([vs("a")])  # unchanged: no call
    store.delete(VS, "traffic-demo", "b")
    assert [[(e.type, e.resource.name) for e in batch] for batch in calls] == [
        [("ADDED", "a"), ("ADDED", "b")],
        [("DELETED", "b")],
    ]
    unsubscribe()
    unsubscribe()  # idempotent
    store.create(vs("c"))
    assert len(calls) == 2


def test_raising_subscriber_does_not_break_store(
    store: SqliteStore, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(events: list[WatchEvent]) -> None:
        raise RuntimeError("boom")

    seen: list[int] = []
    store.subscribe(broken)
    store.subscribe(lambda evs: seen.extend(e.resource_version for e in evs))
    created = store.create(vs())
    assert created.resource_version == 1 and seen == [1]
    assert store.get(VS, "traffic-demo", "sample-app") == created
    assert "boom" in caplog.text
    store.create(vs("b"))
    assert seen == [1, 2]


def test_subscriber_may_read_the_store(store: SqliteStore) -> None:
    seen: list[Resource | None] = []
    store.subscribe(lambda evs: seen.append(store.get(VS, "traffic-demo", evs[0].resource.name)))
    created = store.create(vs())
    assert seen == [created]


def test_same_callback_subscribed_twice_unsubscribes_once(store: SqliteStore) -> None:
    calls: list[list[WatchEvent]] = []
    first = store.subscribe(calls.append)
    store.subscribe(calls.append)
    first()
    store.create(vs())
    assert len(calls) == 1


# --- threads and lifecycle ---------------------------------------------------------------


def test_concurrent_writers_get_unique_versions(store: SqliteStore) -> None:
    seen: list[int] = []
    store.subscribe(lambda evs: seen.extend(e.resource_version for e in evs))

    def writer(n: int) -> None:
        for i in range(25):
            store.apply([vs(f"t{n}-{i}"), dr(f"t{n}-{i}")])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.revision == 200
    assert seen == list(range(1, 201))  # delivered in commit order
    assert sorted(r.resource_version for r in store.list()) == list(range(1, 201))


def test_closed_store_raises(db: Path) -> None:
    s = SqliteStore(db)
    s.close()
    s.close()
    with pytest.raises(StoreError, match="closed"):
        s.get(VS, "a", "b")
    with pytest.raises(StoreError, match="closed"):
        s.create(vs())


def test_in_memory_store() -> None:
    with SqliteStore(":memory:") as s:
        assert s.create(vs()).resource_version == 1
