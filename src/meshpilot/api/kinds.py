"""The resource kinds meshpilot understands, with Kubernetes' naming for each.

One table drives the loader (apiVersion + kind -> model), the REST API (group, version,
plural -> kind) and the CLI (`vs`, `virtualservices`, `VirtualService` -> kind).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from pydantic import BaseModel

ISTIO_NETWORKING = "networking.istio.io"
ISTIO_VERSIONS = ("v1", "v1beta1", "v1alpha3")
MESHPILOT_GROUP = "meshpilot.io"


@dataclass(frozen=True)
class KindInfo:
    kind: str
    group: str  # "" is the Kubernetes core group
    versions: tuple[str, ...]  # first is the preferred (storage) version
    plural: str
    short_names: tuple[str, ...]
    model_ref: str  # "module:Class" of the body model, imported on first use
    body_key: str | None = "spec"  # None: body fields sit at the top level (Secret)
    namespaced: bool = True

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def api_versions(self) -> tuple[str, ...]:
        return tuple(f"{self.group}/{v}" if self.group else v for v in self.versions)

    @property
    def preferred_api_version(self) -> str:
        return self.api_versions[0]

    @property
    def resource_name(self) -> str:
        """kubectl's `virtualservice.networking.istio.io` form, used in command output."""
        return f"{self.singular}.{self.group}" if self.group else self.singular

    def model(self) -> type[BaseModel]:
        return _import_model(self.model_ref)

    def collection_path(self, version: str | None = None, namespace: str | None = None) -> str:
        version = version or self.versions[0]
        root = f"/apis/{self.group}/{version}" if self.group else f"/api/{version}"
        if namespace is not None and self.namespaced:
            return f"{root}/namespaces/{namespace}/{self.plural}"
        return f"{root}/{self.plural}"


@cache
def _import_model(ref: str) -> type[BaseModel]:
    module, _, name = ref.partition(":")
    model = getattr(importlib.import_module(module), name)
    assert isinstance(model, type) and issubclass(model, BaseModel)
    return model


KINDS: tuple[KindInfo, ...] = (
    KindInfo("VirtualService", ISTIO_NETWORKING, ISTIO_VERSIONS, "virtualservices", ("vs",),
             "meshpilot.api.virtualservice:VirtualService"),
    KindInfo("DestinationRule", ISTIO_NETWORKING, ISTIO_VERSIONS, "destinationrules", ("dr",),
             "meshpilot.api.destinationrule:DestinationRule"),
    KindInfo("Gateway", ISTIO_NETWORKING, ISTIO_VERSIONS, "gateways", ("gw",),
             "meshpilot.api.gateway:Gateway"),
    KindInfo("ServiceEntry", ISTIO_NETWORKING, ISTIO_VERSIONS, "serviceentries", ("se",),
             "meshpilot.api.serviceentry:ServiceEntry"),
    KindInfo("WorkloadEntry", ISTIO_NETWORKING, ISTIO_VERSIONS, "workloadentries", ("we",),
             "meshpilot.api.serviceentry:WorkloadEntry"),
    KindInfo("Service", "", ("v1",), "services", ("svc",), "meshpilot.api.core:Service"),
    KindInfo("Secret", "", ("v1",), "secrets", (), "meshpilot.api.core:SecretBody",
             body_key=None),
    # meshpilot's own: progressive delivery (rollout/). Only `spec` is validated; the
    # controller writes `status` through the store's status subresource.
    KindInfo("Canary", MESHPILOT_GROUP, ("v1alpha1",), "canaries", ("canary", "cn"),
             "meshpilot.api.canary:CanarySpec"),
)  # fmt: skip

# Istio kinds users may reasonably send that meshpilot does not act on yet.
KNOWN_UNHANDLED = {
    "Sidecar", "EnvoyFilter", "WorkloadGroup", "ProxyConfig", "PeerAuthentication",
    "AuthorizationPolicy", "RequestAuthentication", "Telemetry", "WasmPlugin",
}  # fmt: skip


def _index() -> dict[str, KindInfo]:
    names: dict[str, KindInfo] = {}
    for info in KINDS:
        for name in (info.kind, info.plural, info.singular, *info.short_names):
            names[name.lower()] = info
            if info.group:
                names[f"{name.lower()}.{info.group}"] = info
    return names


_BY_NAME = _index()


def lookup(name: str) -> KindInfo | None:
    """Find a kind by any of kubectl's spellings: `vs`, `virtualservices`, `VirtualService`,
    `virtualservice.networking.istio.io`."""
    return _BY_NAME.get(name.lower())


def by_kind(kind: str) -> KindInfo | None:
    return next((k for k in KINDS if k.kind == kind), None)


def by_group_plural(group: str, plural: str) -> KindInfo | None:
    return next((k for k in KINDS if k.group == group and k.plural == plural), None)


def split_api_version(api_version: str) -> tuple[str, str]:
    group, _, version = api_version.rpartition("/")
    return group, version
