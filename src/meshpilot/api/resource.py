"""The stored shape of every resource: Kubernetes-style metadata plus a validated body.

`Resource` is plain data passed between stages (loader -> store -> API -> snapshot).
Its `body` holds the user's fields exactly as written (Istio camelCase), so a
resource reads back unchanged; typed models are rebuilt from it where needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class ResourceKey:
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        where = f"{self.namespace}/{self.name}" if self.namespace else self.name
        return f"{self.kind} {where}"


@dataclass(frozen=True)
class Resource:
    """One object. Server-owned fields (uid, versions, timestamps) are empty until stored."""

    api_version: str
    kind: str
    name: str
    namespace: str
    body: dict[str, Any]  # `spec` content, or the top-level fields for kinds without spec (Secret)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    uid: str = ""
    resource_version: int = 0  # 0: not stored yet / no precondition
    generation: int = 0
    creation_timestamp: str = ""
    status: dict[str, Any] | None = None

    @property
    def key(self) -> ResourceKey:
        return ResourceKey(self.kind, self.namespace, self.name)

    def with_(self, **changes: Any) -> Resource:
        return replace(self, **changes)

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name}
        if self.namespace:
            meta["namespace"] = self.namespace
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        if self.uid:
            meta["uid"] = self.uid
        if self.resource_version:
            meta["resourceVersion"] = str(self.resource_version)
        if self.generation:
            meta["generation"] = self.generation
        if self.creation_timestamp:
            meta["creationTimestamp"] = self.creation_timestamp
        return meta

    def to_dict(self, *, body_key: str | None = "spec") -> dict[str, Any]:
        """Kubernetes-shaped JSON: apiVersion, kind, metadata, spec (or top-level body), status."""
        out: dict[str, Any] = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": self.metadata(),
        }
        if body_key is None:
            out.update(self.body)
        else:
            out[body_key] = self.body
        if self.status:
            out["status"] = self.status
        return out
