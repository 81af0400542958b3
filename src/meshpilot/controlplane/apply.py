"""The one write path for manifests: decode, check conflicts, store atomically.

Used by the REST API and by `meshpilot up -f`, so every entrance validates the same way
and a batch with any invalid document stores nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..analyze.conflicts import find_conflicts
from ..api.decode import decode
from ..api.errors import Issue
from ..api.kinds import by_kind
from ..api.load import Document
from ..api.resource import Resource
from ..store import SqliteStore

Action = Literal["created", "configured", "unchanged", "deleted"]


@dataclass
class Outcome:
    resource: Resource
    action: Action

    def to_dict(self) -> dict[str, Any]:
        info = by_kind(self.resource.kind)
        return {
            "kind": self.resource.kind,
            "apiVersion": self.resource.api_version,
            "namespace": self.resource.namespace,
            "name": self.resource.name,
            "resource": info.resource_name if info else self.resource.kind.lower(),
            "action": self.action,
            "resourceVersion": str(self.resource.resource_version),
        }


@dataclass
class ApplyReport:
    outcomes: list[Outcome] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    skipped: list[Issue] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [o.to_dict() for o in self.outcomes],
            "warnings": [w.to_dict() for w in self.warnings],
            "skipped": [s.to_dict() for s in self.skipped],
        }


def documents_from_json(items: list[Any], source: str = "request") -> list[Document]:
    """Wrap JSON objects (already parsed by a client) as Documents numbered from 1."""
    return [Document(source, i + 1, obj, 0) for i, obj in enumerate(items)]


def apply_documents(
    store: SqliteStore,
    documents: list[Document],
    *,
    namespace: str | None = None,
    dry_run: bool = False,
) -> ApplyReport:
    """Validate the whole batch, then store it in one transaction; raises InvalidInput."""
    decoded = decode(documents, namespace=namespace)
    decoded.raise_for_errors()
    existing = store.list(kind="VirtualService") + store.list(kind="DestinationRule")
    warnings = decoded.warnings + find_conflicts(decoded.resources, existing)
    outcomes = store.apply(decoded.resources, dry_run=dry_run)
    return ApplyReport(
        outcomes=[Outcome(o.resource, o.action) for o in outcomes],
        warnings=warnings,
        skipped=decoded.skipped,
    )


def delete_documents(
    store: SqliteStore, documents: list[Document], *, namespace: str | None = None,
    ignore_not_found: bool = False,
) -> ApplyReport:
    """Delete every object named by the documents, atomically (`delete -f`)."""
    decoded = decode(documents, namespace=namespace)
    decoded.raise_for_errors()
    keys = [r.key for r in decoded.resources]
    if ignore_not_found:
        keys = [k for k in keys if store.get(k.kind, k.namespace, k.name) is not None]
    deleted = store.delete_many(keys)
    return ApplyReport(outcomes=[Outcome(r, "deleted") for r in deleted], skipped=decoded.skipped)

