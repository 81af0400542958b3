"""What analyzers read: every resource with its typed spec and origin, resolved once.

An `AnalysisInput` is plain data (istioctl's analysis context without the I/O): the
resources of all namespaces, indexed by kind and by name, plus the validation findings
the loader made (schema errors and warnings, reported as IST0106/IST0133 by the schema
analyzers). Analyzers are pure functions over it, so unit tests build one from a YAML
string and compare messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from ..api.errors import Issue
from ..api.resource import Resource
from .message import Origin

S = TypeVar("S", bound=BaseModel)


@dataclass(frozen=True)
class Entry(Generic[S]):
    """One resource: stored shape, typed spec, and where it came from."""

    resource: Resource
    spec: S
    origin: Origin
    status: Mapping[str, Any] | None = None

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def name(self) -> str:
        return self.resource.name

    @property
    def namespace(self) -> str:
        return self.resource.namespace

    @property
    def full_name(self) -> str:
        """`ns/name`, Istio's resource.FullName.String()."""
        return f"{self.namespace}/{self.name}"

    @property
    def labels(self) -> Mapping[str, str]:
        return self.resource.labels

    @property
    def annotations(self) -> Mapping[str, str]:
        return self.resource.annotations


@dataclass(frozen=True)
class SchemaFinding:
    """A validation error (the resource could not be modelled as written) or warning."""

    origin: Origin
    issue: Issue


@dataclass
class AnalysisInput:
    """All resources to analyze (every namespace; messages are filtered afterwards)."""

    entries: list[Entry[Any]] = field(default_factory=list)
    schema_errors: list[SchemaFinding] = field(default_factory=list)
    schema_warnings: list[SchemaFinding] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.entries = sorted(self.entries, key=lambda e: (e.kind, e.namespace, e.name))
        self._by_kind: dict[str, list[Entry[Any]]] = {}
        self._by_key: dict[tuple[str, str, str], Entry[Any]] = {}
        for entry in self.entries:
            self._by_kind.setdefault(entry.kind, []).append(entry)
            self._by_key[(entry.kind, entry.namespace, entry.name)] = entry

    def of(self, kind: str) -> list[Entry[Any]]:
        """Resources of one kind, ordered by namespace then name."""
        return self._by_kind.get(kind, [])

    def find(self, kind: str, namespace: str, name: str) -> Entry[Any] | None:
        return self._by_key.get((kind, namespace, name))

    @property
    def workloads(self) -> list[Entry[Any]]:
        """meshpilot's pods: WorkloadEntries (a sidecar or gateway registers one)."""
        return self.of("WorkloadEntry")


def merge_entries(*layers: Iterable[Entry[Any]]) -> list[Entry[Any]]:
    """Later layers win by (kind, namespace, name): files over the live config, as
    istioctl overlays files on the cluster, and a later file over an earlier one."""
    out: dict[tuple[str, str, str], Entry[Any]] = {}
    for layer in layers:
        for entry in layer:
            out[(entry.kind, entry.namespace, entry.name)] = entry
    return list(out.values())
