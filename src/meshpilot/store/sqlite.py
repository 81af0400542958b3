"""The embedded resource store: Kubernetes API semantics on one SQLite file.

meshpilot runs without Kubernetes, yet users and controllers expect what the
Kubernetes API server gives them: optimistic concurrency through `resourceVersion`,
`generation` that moves only when the spec does, a status kept apart from the spec,
atomic `apply` of a whole set of files, and a watch stream that resumes from a
revision (or answers 410 Gone when it can no longer). This module provides exactly
that on SQLite, with the following rules:

* One global revision counter, shared by all kinds and persisted in the database,
  is bumped once per object write. It is never reused: not after deletes, not after
  events are compacted, not after a restart. Every write of an object gets its own
  revision, which is both the object's `resource_version` and the revision of the
  watch event recording the write.
* Writes that change nothing (same apiVersion, body, labels and annotations, or the
  same status) are no-ops: no revision bump, no event, as in Kubernetes.
* `generation` starts at 1 and grows by one only when `body` changes.
* A nonzero `resource_version` in the input is a precondition. For an object that
  does not exist it cannot hold, and the store answers `NotFound` -- what the
  Kubernetes API server answers for a PUT with a resourceVersion to a missing object
  (it never creates an object from a request that expected an existing one). `create`
  has no precondition and ignores the field.
* A write and its events are committed in one transaction. Durability: WAL with
  `synchronous=FULL`, so a write acknowledged by a returning call survives a process
  kill and a power loss.
* Subscribers are called synchronously, in commit order, after each commit, while
  the store's lock is held (that is what keeps the order). They may read from the
  store on the calling thread, but must not wait for other threads that use it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, TypeVar

from meshpilot.api.labels import Selector, label_problem
from meshpilot.api.resource import Resource, ResourceKey
from meshpilot.store.errors import AlreadyExists, Conflict, Gone, NotFound, StoreError

log = logging.getLogger(__name__)

T = TypeVar("T")

ApplyAction = Literal["created", "configured", "unchanged"]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]

SCHEMA_VERSION = 2

# Per-object event log (rollout history): the newest EVENT_LOG_KEEP entries per object.
EVENT_LOG_KEEP = 1000

# Migration N turns a database at schema version N-1 into version N. Append only:
# a released migration is never edited, so every database converges to the same shape.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value INTEGER NOT NULL
        )""",
        "INSERT INTO meta (key, value) VALUES ('revision', 0), ('compacted', 0)",
        """CREATE TABLE objects (
            id                 INTEGER PRIMARY KEY,
            kind               TEXT NOT NULL,
            namespace          TEXT NOT NULL,
            name               TEXT NOT NULL,
            api_version        TEXT NOT NULL,
            uid                TEXT NOT NULL UNIQUE,
            resource_version   INTEGER NOT NULL,
            generation         INTEGER NOT NULL,
            creation_timestamp TEXT NOT NULL,
            labels             TEXT NOT NULL,
            annotations        TEXT NOT NULL,
            body               TEXT NOT NULL,
            status             TEXT
        )""",
        "CREATE UNIQUE INDEX objects_key ON objects (kind, namespace, name)",
        "CREATE INDEX objects_namespace ON objects (namespace)",
        """CREATE TABLE events (
            rv        INTEGER PRIMARY KEY,
            type      TEXT NOT NULL CHECK (type IN ('ADDED', 'MODIFIED', 'DELETED')),
            kind      TEXT NOT NULL,
            namespace TEXT NOT NULL,
            name      TEXT NOT NULL,
            object    TEXT NOT NULL
        )""",
    ),
    # An append-only log of what controllers did to an object (the canary controller's
    # rollout history), kept apart from watch events: it is not compacted with them and
    # survives the object's re-creation, so `canary get` can show why a release failed.
    2: (
        """CREATE TABLE object_log (
            id        INTEGER PRIMARY KEY AUTOINCREMENT,
            kind      TEXT NOT NULL,
            namespace TEXT NOT NULL,
            name      TEXT NOT NULL,
            time      TEXT NOT NULL,
            type      TEXT NOT NULL,
            reason    TEXT NOT NULL,
            message   TEXT NOT NULL,
            data      TEXT NOT NULL
        )""",
        "CREATE INDEX object_log_key ON object_log (kind, namespace, name, id)",
    ),
}


@dataclass(frozen=True)
class ApplyOutcome:
    """What `apply` did (or, in a dry run, would do) with one input resource."""

    resource: Resource
    action: ApplyAction


@dataclass(frozen=True)
class LogEntry:
    """One entry of an object's event log (see `SqliteStore.append_event`)."""

    id: int
    kind: str
    namespace: str
    name: str
    time: str  # RFC 3339, UTC, millisecond precision
    type: str  # Normal | Warning (Kubernetes event types)
    reason: str
    message: str
    data: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "time": self.time, "type": self.type, "reason": self.reason,
                "message": self.message, "data": self.data}


@dataclass(frozen=True)
class WatchEvent:
    """One committed change. For DELETED, `resource` is the last state, stamped with the
    revision of the delete (as Kubernetes does), so `resource.resource_version` always
    equals `resource_version`."""

    type: EventType
    resource: Resource
    resource_version: int


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _new_uid() -> str:
    return str(uuid.uuid4())


def _rfc3339(moment: datetime) -> str:
    """`2026-11-27T10:00:00Z`; a naive datetime is taken to be UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dump(value: Any) -> str:
    """Storage form: keeps the user's key order so a resource reads back as written."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _canon(value: Any) -> str:
    """Comparison form: key order does not make two bodies different."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def _same_content(stored: Resource, new: Resource) -> bool:
    return (
        stored.api_version == new.api_version
        and _canon(stored.body) == _canon(new.body)
        and _canon(stored.labels) == _canon(new.labels)
        and _canon(stored.annotations) == _canon(new.annotations)
    )


def _check_input(res: Resource) -> None:
    """Reject malformed input before it is stored; the loader reports user errors with
    field paths, this is the last guard so nothing unselectable or unreadable lands."""
    where = f"{res.kind or '<no kind>'} {res.namespace}/{res.name}".replace(" /", " ")
    for attr in ("api_version", "kind", "name"):
        value = getattr(res, attr)
        if not isinstance(value, str) or not value:
            raise ValueError(f"{where}: {attr} must be a non-empty string")
    if not isinstance(res.namespace, str):
        raise ValueError(f"{where}: namespace must be a string ('' for cluster-scoped kinds)")
    if not isinstance(res.body, dict):
        raise ValueError(f"{where}: body must be a mapping, not {type(res.body).__name__}")
    if not isinstance(res.labels, dict) or not isinstance(res.annotations, dict):
        raise ValueError(f"{where}: labels and annotations must be mappings")
    for key, value in res.labels.items():
        problem = label_problem(key, value)
        if problem is not None:
            raise ValueError(f"{where}: metadata.labels: {problem}")
    for key, value in res.annotations.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise ValueError(f"{where}: metadata.annotations: keys and values must be strings")


def _resource_json(res: Resource) -> str:
    return _dump(
        {
            "apiVersion": res.api_version,
            "kind": res.kind,
            "namespace": res.namespace,
            "name": res.name,
            "uid": res.uid,
            "resourceVersion": res.resource_version,
            "generation": res.generation,
            "creationTimestamp": res.creation_timestamp,
            "labels": res.labels,
            "annotations": res.annotations,
            "body": res.body,
            "status": res.status,
        }
    )


def _resource_from_json(text: str) -> Resource:
    d = json.loads(text)
    return Resource(
        api_version=d["apiVersion"],
        kind=d["kind"],
        name=d["name"],
        namespace=d["namespace"],
        body=d["body"],
        labels=d["labels"],
        annotations=d["annotations"],
        uid=d["uid"],
        resource_version=d["resourceVersion"],
        generation=d["generation"],
        creation_timestamp=d["creationTimestamp"],
        status=d["status"],
    )


_COLUMNS = (
    "kind, namespace, name, api_version, uid, resource_version, generation,"
    " creation_timestamp, labels, annotations, body, status"
)


def _from_row(row: sqlite3.Row) -> Resource:
    return Resource(
        api_version=row["api_version"],
        kind=row["kind"],
        name=row["name"],
        namespace=row["namespace"],
        body=json.loads(row["body"]),
        labels=json.loads(row["labels"]),
        annotations=json.loads(row["annotations"]),
        uid=row["uid"],
        resource_version=row["resource_version"],
        generation=row["generation"],
        creation_timestamp=row["creation_timestamp"],
        status=json.loads(row["status"]) if row["status"] is not None else None,
    )


class _Batch:
    """The state of one write transaction: its connection and the events it recorded."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.events: list[WatchEvent] = []

    def next_revision(self) -> int:
        self.conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'revision'")
        return int(self.conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])

    def record(self, type_: EventType, res: Resource) -> None:
        rv = res.resource_version
        self.conn.execute(
            "INSERT INTO events (rv, type, kind, namespace, name, object)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (rv, type_, res.kind, res.namespace, res.name, _resource_json(res)),
        )
        self.events.append(WatchEvent(type_, res, rv))


class SqliteStore:
    """Kubernetes-like object store in one SQLite file. Thread-safe; see module docs."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], datetime] = _utc_now,
        uid_factory: Callable[[], str] = _new_uid,
        history: int = 10_000,
    ) -> None:
        if history < 1:
            raise ValueError(f"history must keep at least 1 event, got {history}")
        self._clock = clock
        self._uid_factory = uid_factory
        self._history = history
        self._lock = threading.RLock()
        self._subscribers: list[tuple[object, Callable[[list[WatchEvent]], None]]] = []
        in_memory = str(path) == ":memory:"
        self.path = str(path) if in_memory else Path(path)
        if isinstance(self.path, Path):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so every transaction
        # boundary is explicit. timeout: wait for another process's write lock.
        conn = sqlite3.connect(
            str(path), check_same_thread=False, isolation_level=None, timeout=30.0
        )
        conn.row_factory = sqlite3.Row
        try:
            if not in_memory:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise StoreError(f"{path}: cannot enable WAL journal mode (got {mode!r})")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._migrate(conn)
        except BaseException:
            conn.close()
            raise
        self._conn: sqlite3.Connection | None = conn

    # --- lifecycle ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database. Idempotent; later calls raise `StoreError`."""
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> SqliteStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    @staticmethod
    def _migrate(conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_version ("
                " id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
            )
            row = conn.execute("SELECT version FROM schema_version WHERE id = 1").fetchone()
            current = int(row[0]) if row else 0
            if current > SCHEMA_VERSION:
                raise StoreError(
                    f"database schema version {current} is newer than this meshpilot"
                    f" supports ({SCHEMA_VERSION}); upgrade meshpilot"
                )
            for version in range(current + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[version]:
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_version (id, version) VALUES (1, ?)"
                " ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                (SCHEMA_VERSION,),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError("the store is closed")
        return self._conn

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            yield self._connection()

    def _write(self, work: Callable[[_Batch], T], *, dry_run: bool = False) -> T:
        """Run `work` in one IMMEDIATE transaction: commit (or roll back for a dry run or
        on any error), then hand the committed events to subscribers."""
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            batch = _Batch(conn)
            try:
                result = work(batch)
                if dry_run:
                    conn.execute("ROLLBACK")
                else:
                    if batch.events:
                        self._compact(conn)
                    conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            if batch.events and not dry_run:
                self._notify(batch.events)
            return result

    def _compact(self, conn: sqlite3.Connection) -> None:
        """Drop all but the newest `history` events and remember the highest dropped rv."""
        lo, hi = conn.execute("SELECT min(rv), max(rv) FROM events").fetchone()
        if lo is None or hi - lo + 1 <= self._history:  # span bounds the count from above
            return
        row = conn.execute(
            "SELECT rv FROM events ORDER BY rv DESC LIMIT 1 OFFSET ?", (self._history,)
        ).fetchone()
        if row is None:
            return
        cutoff = int(row[0])
        conn.execute("DELETE FROM events WHERE rv <= ?", (cutoff,))
        conn.execute("UPDATE meta SET value = max(value, ?) WHERE key = 'compacted'", (cutoff,))

    def _notify(self, events: list[WatchEvent]) -> None:
        for _, callback in list(self._subscribers):
            try:
                callback(list(events))
            except Exception:
                # A broken watcher must not fail a write that is already committed.
                log.exception("store subscriber %r raised; ignored", callback)

    # --- reads ----------------------------------------------------------------------------

    @property
    def revision(self) -> int:
        """The current global resource_version (0 for a store that was never written)."""
        with self._reading() as conn:
            return int(conn.execute("SELECT value FROM meta WHERE key = 'revision'").fetchone()[0])

    @staticmethod
    def _fetch(conn: sqlite3.Connection, key: ResourceKey) -> Resource | None:
        row = conn.execute(
            f"SELECT {_COLUMNS} FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
            (key.kind, key.namespace, key.name),
        ).fetchone()
        return _from_row(row) if row is not None else None

    def get(self, kind: str, namespace: str, name: str) -> Resource | None:
        """The stored object, or None if there is none."""
        with self._reading() as conn:
            return self._fetch(conn, ResourceKey(kind, namespace, name))

    def list(
        self,
        kind: str | None = None,
        namespace: str | None = None,
        selector: Selector | None = None,
    ) -> list[Resource]:
        """Objects filtered by kind, namespace and label selector, sorted by
        (kind, namespace, name) so output is stable for users and diffs."""
        clauses, params = [], []
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        if namespace is not None:
            clauses.append("namespace = ?")
            params.append(namespace)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._reading() as conn:
            rows = conn.execute(
                f"SELECT {_COLUMNS} FROM objects{where} ORDER BY kind, namespace, name", params
            ).fetchall()
        out = [_from_row(r) for r in rows]
        if selector is not None and not selector.empty():
            out = [r for r in out if selector.matches(r.labels)]
        return out

    def namespaces(self) -> list[str]:
        """Sorted namespaces holding at least one object (cluster-scoped '' excluded)."""
        with self._reading() as conn:
            rows = conn.execute(
                "SELECT DISTINCT namespace FROM objects WHERE namespace != '' ORDER BY namespace"
            ).fetchall()
        return [r[0] for r in rows]

    def events_since(
        self, resource_version: int, *, kind: str | None = None, namespace: str | None = None
    ) -> list[WatchEvent]:
        """Events with a revision above `resource_version`, oldest first.

        Raises `Gone` when some of those events were compacted away: the caller missed
        changes it can no longer learn from events and must list again.
        """
        with self._reading() as conn:
            compacted = int(
                conn.execute("SELECT value FROM meta WHERE key = 'compacted'").fetchone()[0]
            )
            if resource_version < compacted:
                raise Gone(
                    f"resourceVersion {resource_version} is too old: events up to"
                    f" {compacted} were compacted (the store keeps the last"
                    f" {self._history}); list again and watch from the list's revision",
                    requested=resource_version,
                    compacted=compacted,
                )
            clauses, params = ["rv > ?"], [resource_version]
            if kind is not None:
                clauses.append("kind = ?")
                params.append(kind)
            if namespace is not None:
                clauses.append("namespace = ?")
                params.append(namespace)
            rows = conn.execute(
                f"SELECT rv, type, object FROM events WHERE {' AND '.join(clauses)} ORDER BY rv",
                params,
            ).fetchall()
        return [WatchEvent(r["type"], _resource_from_json(r["object"]), r["rv"]) for r in rows]

    def subscribe(self, callback: Callable[[list[WatchEvent]], None]) -> Callable[[], None]:
        """Call `callback(events)` after every commit that produced events; returns an
        idempotent unsubscribe function."""
        token = object()
        with self._lock:
            self._subscribers.append((token, callback))

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = [(t, cb) for t, cb in self._subscribers if t is not token]

        return unsubscribe

    # --- write helpers (inside a transaction) ---------------------------------------------

    def _insert(self, batch: _Batch, res: Resource) -> Resource:
        rv = batch.next_revision()
        body, labels, annotations = _dump(res.body), _dump(res.labels), _dump(res.annotations)
        stored = Resource(
            api_version=res.api_version,
            kind=res.kind,
            name=res.name,
            namespace=res.namespace,
            body=json.loads(body),
            labels=json.loads(labels),
            annotations=json.loads(annotations),
            uid=self._uid_factory(),
            resource_version=rv,
            generation=1,
            creation_timestamp=_rfc3339(self._clock()),
            status=None,
        )
        batch.conn.execute(
            f"INSERT INTO objects ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                stored.kind,
                stored.namespace,
                stored.name,
                stored.api_version,
                stored.uid,
                rv,
                1,
                stored.creation_timestamp,
                labels,
                annotations,
                body,
                None,
            ),
        )
        batch.record("ADDED", stored)
        return stored

    def _replace(self, batch: _Batch, current: Resource, res: Resource) -> Resource:
        rv = batch.next_revision()
        body, labels, annotations = _dump(res.body), _dump(res.labels), _dump(res.annotations)
        generation = current.generation
        if _canon(current.body) != _canon(res.body):
            generation += 1
        stored = current.with_(
            api_version=res.api_version,
            body=json.loads(body),
            labels=json.loads(labels),
            annotations=json.loads(annotations),
            resource_version=rv,
            generation=generation,
        )
        batch.conn.execute(
            "UPDATE objects SET api_version = ?, resource_version = ?, generation = ?,"
            " labels = ?, annotations = ?, body = ?"
            " WHERE kind = ? AND namespace = ? AND name = ?",
            (res.api_version, rv, generation, labels, annotations, body, *_key_params(res.key)),
        )
        batch.record("MODIFIED", stored)
        return stored

    @staticmethod
    def _precondition(current: Resource, resource_version: int) -> None:
        if resource_version and resource_version != current.resource_version:
            raise Conflict(
                f"{current.key}: resourceVersion {resource_version} is stale"
                f" (current {current.resource_version}); get the object again and retry",
                key=current.key,
                given=resource_version,
                current=current.resource_version,
            )

    @staticmethod
    def _not_found(key: ResourceKey, resource_version: int = 0) -> NotFound:
        if resource_version:
            return NotFound(
                f"{key} not found, but resourceVersion {resource_version} was required;"
                " omit resourceVersion to create it",
                key=key,
            )
        return NotFound(f"{key} not found", key=key)

    def _existing(self, batch: _Batch, key: ResourceKey, resource_version: int) -> Resource:
        current = self._fetch(batch.conn, key)
        if current is None:
            raise self._not_found(key, resource_version)
        self._precondition(current, resource_version)
        return current

    # --- writes ---------------------------------------------------------------------------

    def apply(self, resources: Sequence[Resource], *, dry_run: bool = False) -> list[ApplyOutcome]:
        """Create or update every resource in one transaction: all of them or none.

        Resources are applied in order, so a key given twice applies twice. Server-owned
        input fields (uid, generation, creation_timestamp, status) are ignored; a nonzero
        resource_version is a precondition (`Conflict` if stale, `NotFound` if missing).
        A dry run returns the outcomes a real apply would have now, including the
        versions it would assign (not reserved), and stores and announces nothing.
        """
        items = list(resources)
        for res in items:
            _check_input(res)

        def work(batch: _Batch) -> list[ApplyOutcome]:
            outcomes: list[ApplyOutcome] = []
            for res in items:
                current = self._fetch(batch.conn, res.key)
                if current is None:
                    if res.resource_version:
                        raise self._not_found(res.key, res.resource_version)
                    outcomes.append(ApplyOutcome(self._insert(batch, res), "created"))
                    continue
                self._precondition(current, res.resource_version)
                if _same_content(current, res):
                    outcomes.append(ApplyOutcome(current, "unchanged"))
                else:
                    outcomes.append(ApplyOutcome(self._replace(batch, current, res), "configured"))
            return outcomes

        return self._write(work, dry_run=dry_run)

    def create(self, resource: Resource) -> Resource:
        """Store a new object; `AlreadyExists` if the key is taken."""
        _check_input(resource)

        def work(batch: _Batch) -> Resource:
            current = self._fetch(batch.conn, resource.key)
            if current is not None:
                raise AlreadyExists(
                    f"{resource.key} already exists (resourceVersion"
                    f" {current.resource_version}); use update or apply to change it",
                    key=resource.key,
                )
            return self._insert(batch, resource)

        return self._write(work)

    def update(self, resource: Resource) -> Resource:
        """Replace apiVersion, body, labels and annotations of an existing object.

        `NotFound` if missing, `Conflict` if a nonzero resource_version is stale. An
        update that changes nothing returns the stored object without a new version.
        """
        _check_input(resource)

        def work(batch: _Batch) -> Resource:
            current = self._existing(batch, resource.key, resource.resource_version)
            if _same_content(current, resource):
                return current
            return self._replace(batch, current, resource)

        return self._write(work)

    def update_status(
        self,
        kind: str,
        namespace: str,
        name: str,
        status: dict[str, Any],
        *,
        resource_version: int = 0,
    ) -> Resource:
        """Replace the status only; body and generation are untouched (the status
        subresource). An identical status is a no-op without a new version."""
        if not isinstance(status, dict):
            raise ValueError(f"status must be a mapping, not {type(status).__name__}")
        key = ResourceKey(kind, namespace, name)
        text = _dump(status)

        def work(batch: _Batch) -> Resource:
            current = self._existing(batch, key, resource_version)
            if current.status is not None and _canon(current.status) == _canon(status):
                return current
            rv = batch.next_revision()
            stored = current.with_(status=json.loads(text), resource_version=rv)
            batch.conn.execute(
                "UPDATE objects SET status = ?, resource_version = ?"
                " WHERE kind = ? AND namespace = ? AND name = ?",
                (text, rv, *_key_params(key)),
            )
            batch.record("MODIFIED", stored)
            return stored

        return self._write(work)

    def _delete_one(self, batch: _Batch, current: Resource) -> Resource:
        rv = batch.next_revision()
        batch.conn.execute(
            "DELETE FROM objects WHERE kind = ? AND namespace = ? AND name = ?",
            _key_params(current.key),
        )
        deleted = current.with_(resource_version=rv)
        batch.record("DELETED", deleted)
        return deleted

    def delete(
        self, kind: str, namespace: str, name: str, *, resource_version: int = 0
    ) -> Resource:
        """Delete one object and return its last state, stamped with the delete's
        revision. `NotFound` if missing, `Conflict` if a nonzero version is stale."""
        key = ResourceKey(kind, namespace, name)

        def work(batch: _Batch) -> Resource:
            return self._delete_one(batch, self._existing(batch, key, resource_version))

        return self._write(work)

    def delete_many(self, keys: Sequence[ResourceKey]) -> list[Resource]:
        """Delete all keys atomically (duplicates count once). If any is missing, nothing
        is deleted and `NotFound` lists every missing key."""
        unique = list(dict.fromkeys(keys))

        def work(batch: _Batch) -> list[Resource]:
            found: list[Resource] = []
            missing: list[ResourceKey] = []
            for key in unique:
                current = self._fetch(batch.conn, key)
                if current is None:
                    missing.append(key)
                else:
                    found.append(current)
            if missing:
                names = ", ".join(str(k) for k in missing)
                raise NotFound(
                    f"{len(missing)} of {len(unique)} objects not found: {names};"
                    " nothing was deleted",
                    key=missing[0],
                )
            return [self._delete_one(batch, current) for current in found]

        return self._write(work)


    # --- event log ------------------------------------------------------------------------

    def append_event(
        self,
        kind: str,
        namespace: str,
        name: str,
        *,
        reason: str,
        message: str,
        type_: str = "Normal",
        data: dict[str, Any] | None = None,
        keep: int = EVENT_LOG_KEEP,
    ) -> LogEntry:
        """Append to the object's event log (durable on return) and drop its entries
        beyond the newest `keep`. Not a watch event: no revision, no subscribers, so a
        controller's history never triggers a mesh rebuild."""
        moment = self._clock()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        stamp = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
            f"{moment.microsecond // 1000:03d}Z")
        payload = data or {}
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                cur = conn.execute(
                    "INSERT INTO object_log (kind, namespace, name, time, type, reason,"
                    " message, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (kind, namespace, name, stamp, type_, reason, message, _dump(payload)),
                )
                entry_id = int(cur.lastrowid or 0)
                row = conn.execute(
                    "SELECT id FROM object_log WHERE kind = ? AND namespace = ? AND name = ?"
                    " ORDER BY id DESC LIMIT 1 OFFSET ?",
                    (kind, namespace, name, max(1, keep)),
                ).fetchone()
                if row is not None:
                    conn.execute(
                        "DELETE FROM object_log WHERE kind = ? AND namespace = ? AND name = ?"
                        " AND id <= ?",
                        (kind, namespace, name, int(row[0])),
                    )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        return LogEntry(entry_id, kind, namespace, name, stamp, type_, reason, message,
                        json.loads(_dump(payload)))

    def events(
        self, kind: str, namespace: str, name: str, *, since_id: int = 0,
        limit: int | None = None,
    ) -> list[LogEntry]:
        """The object's event log, oldest first: entries after `since_id`, at most the
        newest `limit` of them."""
        sql = ("SELECT id, kind, namespace, name, time, type, reason, message, data"
               " FROM object_log WHERE kind = ? AND namespace = ? AND name = ? AND id > ?"
               " ORDER BY id DESC")
        params: list[Any] = [kind, namespace, name, since_id]
        if limit is not None:
            sql += " LIMIT ?"
            params.append(max(0, limit))
        with self._reading() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [LogEntry(r["id"], r["kind"], r["namespace"], r["name"], r["time"], r["type"],
                         r["reason"], r["message"], json.loads(r["data"]))
                for r in reversed(rows)]


def _key_params(key: ResourceKey) -> tuple[str, str, str]:
    return (key.kind, key.namespace, key.name)
