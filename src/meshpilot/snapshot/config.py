"""A typed resource with the metadata translation needs (Istio's config.Config).

The store keeps bodies as plain dicts; the snapshot turns each into its typed model once,
and keeps the identity and age that Istio's precedence rules (oldest wins) depend on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from pydantic import BaseModel

S = TypeVar("S", bound=BaseModel)

# Istio's config paths (`/apis/<group>/<version>/namespaces/<ns>/<kind-path>/<name>`), used as
# provenance metadata on routes and clusters so `proxy-config` can say which resource won.
_KIND_PATHS = {
    "VirtualService": "virtual-service",
    "DestinationRule": "destination-rule",
    "ServiceEntry": "service-entry",
    "WorkloadEntry": "workload-entry",
}


@dataclass(frozen=True)
class Config(Generic[S]):
    kind: str
    name: str
    namespace: str
    creation_timestamp: str
    spec: S
    # metadata.annotations: a few change how Istio treats the object (a Service's
    # networking.istio.io/exportTo).
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def sort_key(self) -> tuple[str, str, str]:
        """Istio's sortConfigByCreationTime: oldest first, then name, then namespace."""
        return (self.creation_timestamp, self.name, self.namespace)

    @property
    def ref(self) -> str:
        """`<name>.<namespace>`, as istioctl prints a config reference."""
        return f"{self.name}.{self.namespace}"

    def __str__(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}"

    @property
    def provenance(self) -> str:
        if self.kind == "Service":
            return f"/api/v1/namespaces/{self.namespace}/services/{self.name}"
        path = _KIND_PATHS.get(self.kind, self.kind.lower())
        return f"/apis/networking.istio.io/v1/namespaces/{self.namespace}/{path}/{self.name}"


def sort_configs(configs: list[Config[S]]) -> list[Config[S]]:
    return sorted(configs, key=lambda c: c.sort_key)
