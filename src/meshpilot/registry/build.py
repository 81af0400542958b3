"""Build the service registry from Services, ServiceEntries and WorkloadEntries.

Without Kubernetes there are no pods or EndpointSlices: every workload (a standalone
sidecar included) is a WorkloadEntry, and a Service or ServiceEntry selects them by
labels in its own namespace, as Istio does for WorkloadEntries on Kubernetes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..api.base import is_ip
from ..api.core import Service, service_port_protocol
from ..api.serviceentry import ServiceEntry, WorkloadEntry
from ..api.serviceentry import ServicePort as SEPort
from .model import Endpoint, ServiceInstance, ServicePort

if TYPE_CHECKING:  # the snapshot package imports the registry, not the other way round
    from ..snapshot.config import Config

UNIX_PREFIX = "unix://"
# Istio's annotation.NetworkingExportTo (the snapshot's visibility module applies it).
EXPORT_TO_ANNOTATION = "networking.istio.io/exportTo"


def _export_annotation(value: str | None) -> tuple[str, ...]:
    """Istio splits the annotation on commas and trims each entry; empty means unset."""
    return tuple(v.strip() for v in (value or "").split(",") if v.strip())


@dataclass
class Registry:
    """All mesh services, by FQDN, plus what was ignored while building them."""

    services: tuple[ServiceInstance, ...] = ()
    by_host: Mapping[str, ServiceInstance] = field(default_factory=dict)
    diagnostics: list[str] = field(default_factory=list)


def kubernetes_hostname(name: str, namespace: str, domain: str) -> str:
    return f"{name}.{namespace}.svc.{domain}"


def host_aliases(service: ServiceInstance, client_namespace: str, domain: str) -> list[str]:
    """Names a client in `client_namespace` may use for `service` (most specific last).

    Kubernetes services: `name` only from the same namespace (that is how DNS search paths
    resolve it), then `name.ns`, `name.ns.svc` and the FQDN from anywhere. Other hosts
    (ServiceEntry) are reachable only by the name written in the entry.
    """
    if not service.is_kubernetes:
        return [service.hostname]
    short = service.hostname.removesuffix(f".svc.{domain}")
    name, _, namespace = short.partition(".")
    out = [name] if namespace == client_namespace else []
    return [*out, f"{name}.{namespace}", f"{name}.{namespace}.svc", service.hostname]


def _selected(labels: Mapping[str, str] | None, selector: Mapping[str, str]) -> bool:
    return all((labels or {}).get(k) == v for k, v in selector.items())


def _endpoint_port(
    we: WorkloadEntry, port_name: str, target: int | str | None, number: int, *,
    single_port_rule: bool,
) -> int:
    """Istio's rule (ports[name], else targetPort, else the port), plus one for standalone
    WorkloadEntries: a sidecar registers exactly one inbound port, whatever its name."""
    ports = we.ports or {}
    if port_name and port_name in ports:
        return ports[port_name]
    if single_port_rule and len(ports) == 1:
        return next(iter(ports.values()))
    if isinstance(target, int) and target > 0:
        return target
    return number


def _endpoint(
    we: WorkloadEntry, ports: tuple[ServicePort, ...], workload: str, namespace: str, *,
    standalone: bool,
) -> Endpoint:
    return Endpoint(
        address=we.address or "",
        ports={p.port: _endpoint_port(we, p.name, p.target_port, p.port,
                                      single_port_rule=standalone) for p in ports},
        labels=dict(we.labels or {}),
        workload=workload,
        namespace=namespace,
        weight=we.weight or None,
        locality=we.locality or "",
    )


def _usable_address(address: str, *, dns_ok: bool) -> bool:
    return bool(address) and (is_ip(address) or address.startswith(UNIX_PREFIX) or dns_ok)


class WorkloadIndex:
    """WorkloadEntries by namespace and by label, so a selector looks at few candidates
    (scanning every workload for every service made 5,000 services cost seconds)."""

    def __init__(self, workloads: list[Config[WorkloadEntry]]) -> None:
        self._by_ns: dict[str, list[Config[WorkloadEntry]]] = {}
        self._by_label: dict[tuple[str, str, str], list[Config[WorkloadEntry]]] = {}
        for we in workloads:
            self._by_ns.setdefault(we.namespace, []).append(we)
            for key, value in (we.spec.labels or {}).items():
                self._by_label.setdefault((we.namespace, key, value), []).append(we)

    def candidates(self, namespace: str, selector: Mapping[str, str]
                   ) -> list[Config[WorkloadEntry]]:
        """A superset of the matches, in input order: the shortest per-label list."""
        if not selector:
            return self._by_ns.get(namespace, [])
        lists = [self._by_label.get((namespace, k, v), []) for k, v in selector.items()]
        return min(lists, key=len)


def _select_workloads(
    selector: Mapping[str, str],
    namespace: str,
    ports: tuple[ServicePort, ...],
    workloads: WorkloadIndex,
    owner: str,
    diagnostics: list[str],
) -> tuple[Endpoint, ...]:
    out: list[Endpoint] = []
    for we in workloads.candidates(namespace, selector):
        if we.namespace != namespace or not _selected(we.spec.labels, selector):
            continue
        address = we.spec.address or ""
        if not _usable_address(address, dns_ok=False):
            diagnostics.append(
                f"{we}: address {address!r} is not an IP or unix:// path; {owner} ignores it"
            )
            continue
        out.append(_endpoint(we.spec, ports, we.name, we.namespace, standalone=True))
    return tuple(out)


def _from_service(
    cfg: Config[Service], workloads: WorkloadIndex, domain: str,
    diagnostics: list[str],
) -> ServiceInstance | None:
    spec = cfg.spec
    if spec.effective_type == "ExternalName":
        diagnostics.append(f"{cfg}: ExternalName services are not supported yet; ignored")
        return None
    ports = tuple(
        ServicePort(
            name=p.name or "",
            port=p.port,
            protocol=service_port_protocol(p),
            target_port=p.effective_target_port,
        )
        for p in spec.ports or []
        if p.effective_protocol != "UDP"
    )
    selector = dict(spec.selector or {})
    endpoints: tuple[Endpoint, ...] = ()
    if selector:
        endpoints = _select_workloads(
            selector, cfg.namespace, ports, workloads, str(cfg), diagnostics
        )
    return ServiceInstance(
        hostname=kubernetes_hostname(cfg.name, cfg.namespace, domain),
        name=cfg.name,
        namespace=cfg.namespace,
        source_kind="Service",
        source_name=cfg.name,
        ports=ports,
        endpoints=endpoints,
        resolution="STATIC",
        location="MESH_INTERNAL",
        selector=selector or None,
        addresses=tuple(a for a in [spec.cluster_ip] if a and a != "None"),
        creation_timestamp=cfg.creation_timestamp,
        export_to=_export_annotation(cfg.annotations.get(EXPORT_TO_ANNOTATION)),
    )


def _se_port(p: SEPort) -> ServicePort:
    return ServicePort(name=p.name, port=p.number, protocol=p.istio_protocol,
                       target_port=p.target_port)


def _from_service_entry(
    cfg: Config[ServiceEntry], workloads: WorkloadIndex,
    diagnostics: list[str],
) -> list[ServiceInstance]:
    """One ServiceInstance per host, as Istio's convertServices does."""
    spec = cfg.spec
    ports = tuple(_se_port(p) for p in spec.ports or [] if p.istio_protocol != "UDP")
    resolution = spec.effective_resolution
    dns = resolution in ("DNS", "DNS_ROUND_ROBIN")
    selector = dict(spec.workload_selector.labels or {}) if spec.workload_selector else None
    endpoints: list[Endpoint] = []
    if selector is not None:
        endpoints = list(_select_workloads(selector, cfg.namespace, ports, workloads, str(cfg),
                                           diagnostics))
    for i, we in enumerate(spec.endpoints or []):
        address = we.address or ""
        if not _usable_address(address, dns_ok=dns):
            diagnostics.append(f"{cfg}: endpoints[{i}] address {address!r} ignored")
            continue
        endpoints.append(_endpoint(we, ports, f"{cfg.name}[{i}]", cfg.namespace,
                                   standalone=False))
    out = []
    for host in spec.hosts:
        host_endpoints = endpoints
        if dns and not host_endpoints and not host.startswith("*"):
            # Istio: a DNS entry without endpoints resolves the host itself.
            host_endpoints = [Endpoint(address=host,
                                       ports={p.port: _target(p) for p in ports},
                                       workload=cfg.name, namespace=cfg.namespace)]
        out.append(ServiceInstance(
            hostname=host,
            name=host,
            namespace=cfg.namespace,
            source_kind="ServiceEntry",
            source_name=cfg.name,
            ports=ports,
            endpoints=tuple(host_endpoints),
            resolution=resolution,
            location=spec.effective_location,
            selector=selector,
            addresses=tuple(spec.addresses or ()),
            creation_timestamp=cfg.creation_timestamp,
            export_to=tuple(spec.export_to or ()),
        ))
    return out


def _target(p: ServicePort) -> int:
    return p.target_port if isinstance(p.target_port, int) and p.target_port else p.port


def build_registry(
    services: Iterable[Config[Service]],
    entries: Iterable[Config[ServiceEntry]],
    workloads: Iterable[Config[WorkloadEntry]],
    domain: str,
) -> Registry:
    """Services first, then ServiceEntries; inputs must already be in Istio's config order.

    When two sources claim one hostname, the first (a Kubernetes Service, else the oldest
    ServiceEntry) wins and the other is reported.
    """
    diagnostics: list[str] = []
    wes = WorkloadIndex(sorted(workloads, key=lambda c: (c.namespace, c.name)))
    by_host: dict[str, ServiceInstance] = {}
    candidates: list[ServiceInstance] = []
    for svc in services:
        if (inst := _from_service(svc, wes, domain, diagnostics)) is not None:
            candidates.append(inst)
    for se in entries:
        candidates += _from_service_entry(se, wes, diagnostics)
    for inst in candidates:
        if inst.hostname in by_host:
            first = by_host[inst.hostname]
            diagnostics.append(
                f"{inst.source_kind} {inst.namespace}/{inst.source_name}: host {inst.hostname} "
                f"is already defined by {first.source_kind} {first.namespace}/"
                f"{first.source_name}; ignored"
            )
            continue
        by_host[inst.hostname] = inst
    ordered = tuple(by_host[h] for h in sorted(by_host))
    return Registry(services=ordered, by_host={s.hostname: s for s in ordered},
                    diagnostics=diagnostics)
