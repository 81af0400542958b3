"""Host lookups as Istio's analyzers do them (pkg/config/analysis/analyzers/util).

These are deliberately *not* the translator's rules (snapshot/mesh.py): istioctl checks
config against config with simpler keys, and we want its verdicts, false positives
included, so that a message here means the same as the same code from istioctl.

- A host with no dot and no wildcard is a short name: `<host>.<ns>.svc.cluster.local`.
- Services and ServiceEntries are indexed under "scoped FQDNs" `<scope>/<fqdn>`, the
  scope being `*` (exported everywhere) or the namespace they are exported to.
- A Kubernetes Service is looked at as a ServiceEntry with the Service's ports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from .model import AnalysisInput

CLUSTER_DOMAIN = "svc.cluster.local"
ALL_NAMESPACES = "*"
LOCAL_NAMESPACE = "."
MESH_GATEWAY = "mesh"
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"
_FQDN = re.compile(r"^(.+)\.(.+)\.svc\.cluster\.local$")


@dataclass(frozen=True)
class ServicePortInfo:
    number: int
    name: str
    protocol: str  # as written ("" when unset)


@dataclass(frozen=True)
class ServiceInfo:
    """What the analyzers need of a ServiceEntry (or a Service seen as one)."""

    hosts: tuple[str, ...]
    ports: tuple[ServicePortInfo, ...]
    workload_selector: Mapping[str, str] = field(default_factory=dict)


def to_fqdn(namespace: str, host: str) -> str:
    """Istio's ConvertHostToFQDN: only dot-less, non-wildcard names are expanded."""
    if not host.startswith("*") and "." not in host:
        return f"{host}.{namespace}.{CLUSTER_DOMAIN}"
    return host


def scoped(scope: str, namespace: str, host: str) -> str:
    return f"{scope}/{to_fqdn(namespace, host)}"


def split_scoped(value: str) -> tuple[str, str]:
    scope, _, fqdn = value.partition("/")
    return scope, fqdn


def name_from_host(default_namespace: str, host: str) -> tuple[str, str]:
    """Istio's GetResourceNameFromHost: (namespace, name) of a Kubernetes FQDN, else the
    host itself in `default_namespace`."""
    match = _FQDN.match(host)
    if match:
        return match.group(2), match.group(1)
    return default_namespace, host


def host_matches(a: str, b: str) -> bool:
    """Istio's host.Name.Matches: equal, or one wildcard covers the other."""
    a_wild, b_wild = a.startswith("*"), b.startswith("*")
    if a_wild and b_wild:
        return b[1:].endswith(a[1:]) if len(a) < len(b) else a[1:].endswith(b[1:])
    if a_wild:
        return b.endswith(a[1:])
    if b_wild:
        return a.endswith(b[1:])
    return a == b


def export_scopes(export_to: Sequence[str] | None, namespace: str) -> list[str]:
    """Istio's scopes for exportTo: `*` when unset or containing `*`, else the named
    namespaces (`.` is the object's own)."""
    values = list(export_to or [])
    if not values or ALL_NAMESPACES in values:
        return [ALL_NAMESPACES]
    out: list[str] = []
    for value in values:
        scope = namespace if value == LOCAL_NAMESPACE else value
        if scope not in out:
            out.append(scope)
    return out


def service_host_map(data: AnalysisInput) -> dict[str, ServiceInfo]:
    """Istio's InitServiceEntryHostMap: scoped FQDN -> the entry (ServiceEntries first,
    then Services, later ones overwriting earlier ones)."""
    result: dict[str, ServiceInfo] = {}
    for entry in data.of("ServiceEntry"):
        se = entry.spec
        info = ServiceInfo(
            hosts=tuple(se.hosts),
            ports=tuple(ServicePortInfo(p.number, p.name, p.protocol or "")
                        for p in se.ports or []),
            workload_selector=dict(se.workload_selector.labels or {})
            if se.workload_selector is not None else {},
        )
        exports_to_all = False
        for host in se.hosts:
            if not se.export_to or exports_to_all:
                result[scoped(ALL_NAMESPACES, entry.namespace, host)] = info
                continue
            for ns in se.export_to:
                if ns == ALL_NAMESPACES:
                    result[scoped(ALL_NAMESPACES, entry.namespace, host)] = info
                    exports_to_all = True
                    break
                scope = entry.namespace if ns == LOCAL_NAMESPACE else ns
                result[scoped(scope, entry.namespace, host)] = info
    for entry in data.of("Service"):
        svc = entry.spec
        host = to_fqdn(entry.namespace, entry.name)
        info = ServiceInfo(
            hosts=(host,),
            ports=tuple(ServicePortInfo(p.port, p.name or "", p.protocol or "")
                        for p in svc.ports or []),
        )
        for scope in _service_scopes(entry.annotations.get(EXPORT_TO_ANNOTATION, ""),
                                     entry.namespace):
            result[scoped(scope, entry.namespace, entry.name)] = info
    return result


def _service_scopes(annotation: str, namespace: str) -> list[str]:
    if not annotation:
        return [ALL_NAMESPACES]
    return [namespace if ns.strip() == LOCAL_NAMESPACE else ns.strip()
            for ns in annotation.split(",")]


def destination_host(
    source_namespace: str, export_to: Sequence[str] | None, host: str,
    hosts: Mapping[str, ServiceInfo],
) -> ServiceInfo | None:
    """Istio's GetDestinationHost: the entry `host` names for config in
    `source_namespace` exported to `export_to` (exact, then wildcard entries)."""
    found = hosts.get(scoped(ALL_NAMESPACES, source_namespace, host))
    if found is not None:
        return found
    scopes = [source_namespace] if not export_to else [
        source_namespace if e == LOCAL_NAMESPACE else e for e in export_to]
    for scope in scopes:
        found = hosts.get(scoped(scope, source_namespace, host))
        if found is not None:
            return found
    bare = host.removeprefix("*")
    for key, info in hosts.items():
        scope, se_host = split_scoped(key)
        if not se_host.startswith("*"):
            continue
        if scope not in (ALL_NAMESPACES, source_namespace):
            continue
        if bare.endswith(se_host[1:]):
            return info
    return None


def selector_string(labels: Mapping[str, str] | None) -> str:
    """k8s labels.SelectorFromSet(...).String(): `a=1,b=2`, keys sorted; empty: ``."""
    return ",".join(f"{k}={v}" for k, v in sorted((labels or {}).items()))


def selects(selector: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> bool:
    """A label-set selector: every pair present (an empty selector selects everything)."""
    have = labels or {}
    return all(have.get(k) == v for k, v in (selector or {}).items())
