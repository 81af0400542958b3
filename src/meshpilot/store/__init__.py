"""Resource storage with Kubernetes API semantics (see `meshpilot.store.sqlite`)."""

from meshpilot.store.errors import AlreadyExists, Conflict, Gone, NotFound, StoreError
from meshpilot.store.sqlite import SCHEMA_VERSION, ApplyOutcome, SqliteStore, WatchEvent

__all__ = [
    "SCHEMA_VERSION",
    "AlreadyExists",
    "ApplyOutcome",
    "Conflict",
    "Gone",
    "NotFound",
    "SqliteStore",
    "StoreError",
    "WatchEvent",
]
