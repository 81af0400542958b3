"""The resolved, indexed view of the whole mesh at one store revision (istiod's PushContext).

`MeshSnapshot.build` does, once per revision, everything that does not depend on which
proxy asks: typed models from stored bodies, Istio's config ordering (oldest first), the
service registry, DestinationRule merging and the "oldest VirtualService wins" choice for
sidecars. The translator then only reads it. Anything that config asks for but will not
take effect is recorded in `diagnostics` instead of being dropped silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from ..api.core import SecretBody, Service, secret_data
from ..api.destinationrule import DestinationRule, Subset
from ..api.gateway import Gateway
from ..api.hosts import resolve_short_name
from ..api.resource import Resource
from ..api.serviceentry import ServiceEntry, WorkloadEntry
from ..api.virtualservice import MESH_GATEWAY, Destination, VirtualService, host_matches
from ..registry import Registry, ServiceInstance, build_registry
from .config import Config, sort_configs

OutboundPolicy = Literal["ALLOW_ANY", "REGISTRY_ONLY"]
M = TypeVar("M", bound=BaseModel)

_MODELS: dict[str, type[BaseModel]] = {
    "VirtualService": VirtualService,
    "DestinationRule": DestinationRule,
    "Gateway": Gateway,
    "ServiceEntry": ServiceEntry,
    "WorkloadEntry": WorkloadEntry,
    "Service": Service,
    "Secret": SecretBody,
}


@dataclass(frozen=True)
class MeshConfig:
    """The few MeshConfig settings translation needs, with Istio's defaults."""

    domain_suffix: str = "cluster.local"
    outbound_traffic_policy: OutboundPolicy = "ALLOW_ANY"
    connect_timeout: str = "10s"
    root_namespace: str = "istio-system"


def build_subset_key(port: int, subset: str, host: str, direction: str = "outbound") -> str:
    """Istio's model.BuildSubsetKey: `outbound|80|v1|sample-app.traffic-demo.svc.cluster.local`."""
    return f"{direction}|{port}|{subset}|{host}"


@dataclass(frozen=True)
class MergedDestinationRule:
    """All DestinationRules of one namespace for one host, merged as Istio merges them:
    subsets unioned (first wins on a duplicate name), the oldest top-level trafficPolicy
    wins. `rule` is the merged spec; `sources` are the contributing rules, oldest first."""

    host: str
    namespace: str
    rule: DestinationRule
    sources: tuple[Config[DestinationRule], ...]

    @property
    def first(self) -> Config[DestinationRule]:
        return self.sources[0]

    def subset(self, name: str) -> Subset | None:
        return next((s for s in self.rule.subsets or [] if s.name == name), None)

    @property
    def subset_names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.rule.subsets or [])


def is_mesh_bound(vs: VirtualService) -> bool:
    """A VirtualService applies to sidecars when it names no gateways, or names `mesh`."""
    return not vs.gateways or MESH_GATEWAY in vs.gateways


@dataclass(frozen=True)
class MeshSnapshot:
    revision: int
    mesh: MeshConfig
    virtual_services: tuple[Config[VirtualService], ...]
    destination_rules: tuple[Config[DestinationRule], ...]
    gateways: tuple[Config[Gateway], ...]
    service_entries: tuple[Config[ServiceEntry], ...]
    workload_entries: tuple[Config[WorkloadEntry], ...]
    kube_services: tuple[Config[Service], ...]
    registry: Registry
    # (resolved host, namespace) -> the merged rule of that namespace for that host.
    destination_rules_by_host: Mapping[tuple[str, str], MergedDestinationRule]
    # resolved VS host (FQDN or wildcard) -> the oldest mesh-bound VS claiming it.
    mesh_virtual_services: Mapping[str, Config[VirtualService]]
    diagnostics: list[str] = field(default_factory=list)
    # Secrets, read only for DestinationRule tls.credentialName (inlined into clusters).
    secrets: tuple[Config[SecretBody], ...] = ()

    # --- lookups -----------------------------------------------------------------------

    @property
    def services(self) -> tuple[ServiceInstance, ...]:
        return self.registry.services

    def service(self, host: str) -> ServiceInstance | None:
        return self.registry.by_host.get(host)

    def resolve_host(self, host: str, namespace: str) -> str:
        return resolve_short_name(host, namespace, self.mesh.domain_suffix)

    def destination_rule(
        self, host: str, proxy_namespace: str, service_namespace: str | None = None
    ) -> MergedDestinationRule | None:
        """Istio's lookup order: the proxy's namespace, the service's namespace, then the
        root namespace. Within one namespace an exact host beats the most specific
        wildcard. (exportTo and workloadSelector are not applied yet.)"""
        for ns in dict.fromkeys(
            n for n in (proxy_namespace, service_namespace, self.mesh.root_namespace) if n
        ):
            found = self._dr_in_namespace(host, ns)
            if found is not None:
                return found
        return None

    def _dr_in_namespace(self, host: str, namespace: str) -> MergedDestinationRule | None:
        exact = self.destination_rules_by_host.get((host, namespace))
        if exact is not None:
            return exact
        wildcards = [
            dr for h, dr in self._wildcard_rules.get(namespace, ()) if host_matches(h, host)
        ]
        return max(wildcards, key=lambda d: len(d.host), default=None)

    @cached_property
    def _wildcard_rules(self) -> dict[str, list[tuple[str, MergedDestinationRule]]]:
        """Wildcard-host rules by namespace, so a lookup does not scan every rule."""
        index: dict[str, list[tuple[str, MergedDestinationRule]]] = {}
        for (h, ns), dr in self.destination_rules_by_host.items():
            if h.startswith("*"):
                index.setdefault(ns, []).append((h, dr))
        return index

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """The decoded data of Secret `namespace/name`, or None when there is none."""
        for cfg in self.secrets:
            if cfg.namespace == namespace and cfg.name == name:
                return secret_data(cfg.spec)
        return None

    def virtual_service_for(self, host: str) -> Config[VirtualService] | None:
        """The mesh VirtualService that owns `host` on sidecars: an exact host first, else
        the most specific wildcard (the oldest among equals)."""
        exact = self.mesh_virtual_services.get(host)
        if exact is not None:
            return exact
        best: tuple[int, tuple[str, str, str]] | None = None
        chosen = None
        for vs_host, cfg in self.mesh_virtual_services.items():
            if vs_host.startswith("*") and host_matches(vs_host, host):
                rank = (-len(vs_host), cfg.sort_key)
                if best is None or rank < best:
                    best, chosen = rank, cfg
        return chosen

    def destination_cluster(
        self, dest: Destination, namespace: str, listener_port: int | None
    ) -> str | None:
        """The cluster name a VirtualService destination (in `namespace`) refers to."""
        host = self.resolve_host(dest.host, namespace)
        port = dest.port.number if dest.port is not None and dest.port.number else None
        if port is None:
            svc = self.service(host)
            port = svc.ports[0].port if svc is not None and len(svc.ports) == 1 else listener_port
        if port is None:
            return None
        return build_subset_key(port, dest.subset, host)

    # --- construction ------------------------------------------------------------------

    @classmethod
    def build(
        cls, resources: Iterable[Resource], revision: int, mesh: MeshConfig | None = None,
        parsed: dict[tuple[str, str, str, int], Config[Any]] | None = None,
    ) -> MeshSnapshot:
        """`parsed` is a cache owned by the caller: typed configs by (kind, namespace, name,
        resourceVersion), so a rebuild after one change re-validates one object, not all.
        It is updated in place and keeps only the objects of this build."""
        mesh = mesh or MeshConfig()
        diagnostics: list[str] = []
        typed: dict[str, list[Config[Any]]] = {kind: [] for kind in _MODELS}
        seen: dict[tuple[str, str, str, int], Config[Any]] = {}
        for res in resources:
            model = _MODELS.get(res.kind)
            if model is None:
                continue
            key = (res.kind, res.namespace, res.name, res.resource_version)
            cfg = parsed.get(key) if parsed is not None and res.resource_version else None
            if cfg is None:
                try:
                    spec = model.model_validate(res.body, by_alias=True, by_name=False,
                                                context={"namespace": res.namespace})
                except ValidationError as e:
                    diagnostics.append(
                        f"{res.key}: invalid body ignored ({e.error_count()} errors)")
                    continue
                cfg = Config(res.kind, res.name, res.namespace, res.creation_timestamp, spec)
            seen[key] = cfg
            typed[res.kind].append(cfg)
        if parsed is not None:
            parsed.clear()
            parsed.update(seen)
        ordered = {kind: tuple(sort_configs(items)) for kind, items in typed.items()}
        registry = build_registry(
            ordered["Service"], ordered["ServiceEntry"], ordered["WorkloadEntry"],
            mesh.domain_suffix,
        )
        diagnostics += registry.diagnostics
        drs = _merge_destination_rules(ordered["DestinationRule"], mesh, diagnostics)
        vss = _index_mesh_virtual_services(ordered["VirtualService"], mesh, diagnostics)
        snap = cls(
            revision=revision,
            mesh=mesh,
            virtual_services=ordered["VirtualService"],
            destination_rules=ordered["DestinationRule"],
            gateways=ordered["Gateway"],
            service_entries=ordered["ServiceEntry"],
            workload_entries=ordered["WorkloadEntry"],
            kube_services=ordered["Service"],
            registry=registry,
            destination_rules_by_host=drs,
            mesh_virtual_services=vss,
            diagnostics=diagnostics,
            secrets=ordered["Secret"],
        )
        from .checks import check_snapshot  # local: checks reads the finished snapshot

        diagnostics += check_snapshot(snap)
        return snap


def _merge_destination_rules(
    rules: tuple[Config[DestinationRule], ...], mesh: MeshConfig, diagnostics: list[str]
) -> dict[tuple[str, str], MergedDestinationRule]:
    """Istio's mergeDestinationRule for rules without workloadSelector, per namespace."""
    groups: dict[tuple[str, str], list[Config[DestinationRule]]] = {}
    for cfg in rules:  # already oldest first
        if cfg.spec.workload_selector is not None:
            diagnostics.append(
                f"{cfg}: DestinationRules with workloadSelector are not supported yet; ignored"
            )
            continue
        host = resolve_short_name(cfg.spec.host, cfg.namespace, mesh.domain_suffix)
        groups.setdefault((host, cfg.namespace), []).append(cfg)
    out: dict[tuple[str, str], MergedDestinationRule] = {}
    for (host, ns), cfgs in sorted(groups.items()):
        subsets: list[Subset] = []
        names: set[str] = set()
        policy = None
        for cfg in cfgs:
            if policy is None:
                policy = cfg.spec.traffic_policy
            elif cfg.spec.traffic_policy is not None:
                diagnostics.append(
                    f"{cfg}: trafficPolicy ignored: {cfgs[0]} is older and also sets one "
                    f"for {host} (Istio keeps the oldest)"
                )
            for subset in cfg.spec.subsets or []:
                if subset.name in names:
                    diagnostics.append(
                        f"{cfg}: subset {subset.name!r} of {host} is already defined by an "
                        "older DestinationRule; ignored (Istio keeps the first)"
                    )
                    continue
                names.add(subset.name)
                subsets.append(subset)
        merged = DestinationRule.model_construct(
            host=host, traffic_policy=policy, subsets=subsets or None,
            export_to=None, workload_selector=None,
        )
        out[(host, ns)] = MergedDestinationRule(host, ns, merged, tuple(cfgs))
    return out


def _index_mesh_virtual_services(
    vss: tuple[Config[VirtualService], ...], mesh: MeshConfig, diagnostics: list[str]
) -> dict[str, Config[VirtualService]]:
    """For sidecars the oldest VirtualService claiming a host wins (Istio drops the later
    ones as duplicate virtual-host domains, and analyze reports IST0109)."""
    out: dict[str, Config[VirtualService]] = {}
    for cfg in vss:  # oldest first
        if cfg.spec.is_delegate or not is_mesh_bound(cfg.spec):
            continue
        for raw in cfg.spec.hosts:
            host = resolve_short_name(raw, cfg.namespace, mesh.domain_suffix)
            first = out.get(host)
            if first is None:
                out[host] = cfg
            elif first is not cfg:
                diagnostics.append(
                    f"{cfg}: host {host} is already routed by the older {first} "
                    "(IST0109); sidecars ignore this VirtualService for that host"
                )
    return out
