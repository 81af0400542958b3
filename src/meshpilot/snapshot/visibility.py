"""Istio's `exportTo` visibility: which namespaces see a VirtualService, DestinationRule,
ServiceEntry or Service (pilot/pkg/model/push_context.go, pkg/config/visibility).

A sidecar in namespace X gets only the config exported to X. Values are `*` (every
namespace, Istio's default through MeshConfig defaultVirtualServiceExportTo /
defaultDestinationRuleExportTo / defaultServiceExportTo), `.` (the object's own
namespace), `~` (nobody; ServiceEntry and Service only) or namespace names. A
Kubernetes Service declares it with the `networking.istio.io/exportTo` annotation (read
by the registry). The helpers normalize a declared list once, so per-namespace views
are set lookups.
"""

from __future__ import annotations

from collections.abc import Iterable

PUBLIC = "*"
PRIVATE = "."
NONE = "~"


def export_set(
    declared: Iterable[str] | None, namespace: str, default: Iterable[str]
) -> frozenset[str]:
    """The effective exportTo of an object in `namespace`: the declared list, else the
    mesh default, with `.` resolved to the owning namespace (Istio's controllers do the
    same, so `.` and the namespace's own name mean one thing)."""
    values = tuple(declared or ()) or tuple(default)
    return frozenset(namespace if v == PRIVATE else v for v in values)


def visible_to(exported: frozenset[str], namespace: str) -> bool:
    """Istio's IsVisible: public, or the namespace is named (`~` names no namespace)."""
    return PUBLIC in exported or namespace in exported
