"""The resolved, indexed view of the whole mesh at one store revision (istiod's PushContext).

`MeshSnapshot.build` does, once per revision, everything that does not depend on which
proxy asks: typed models from stored bodies, Istio's config ordering (oldest first), the
service registry, DestinationRule merging and the "oldest VirtualService wins" choice for
sidecars. The translator then only reads it. Anything that config asks for but will not
take effect is recorded in `diagnostics` instead of being dropped silently.

What a proxy sees depends on its namespace (Istio's `exportTo`): `services_for`,
`virtual_service_for(host, namespace)` and `destination_rule` answer for one namespace.
The per-namespace indexes are built lazily, once per snapshot (cached_property), so the
build itself stays linear in the config and each namespace's view is computed once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
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
from .visibility import NONE, PRIVATE, PUBLIC, export_set, visible_to

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
    # MeshConfig dnsRefreshRate: how often Envoy re-resolves DNS clusters when a lookup
    # fails (successful lookups follow the record's TTL, respect_dns_ttl).
    dns_refresh_rate: str = "60s"
    root_namespace: str = "istio-system"
    # exportTo for objects that declare none (MeshConfig defaultVirtualServiceExportTo,
    # defaultDestinationRuleExportTo, defaultServiceExportTo); Istio's default is `*`.
    default_virtual_service_export_to: tuple[str, ...] = (PUBLIC,)
    default_destination_rule_export_to: tuple[str, ...] = (PUBLIC,)
    default_service_export_to: tuple[str, ...] = (PUBLIC,)
    # MeshConfig defaultProviders.metrics: Istio's standard metrics on (["prometheus"], the
    # default) or off ([]): off, proxies stream no access-log entries to the control plane.
    metrics_enabled: bool = True


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
    # The declared exportTo of the rule this one started from, as written (empty: none
    # declared). Istio merges only rules with the same (or a wider) exportTo.
    export_to: frozenset[str] = frozenset()

    @property
    def first(self) -> Config[DestinationRule]:
        return self.sources[0]

    def exported_to(self, namespace: str) -> bool:
        """Istio's check in getExportedDestinationRuleFromNamespace: no exportTo, `*`, or
        the client namespace by name."""
        return not self.export_to or PUBLIC in self.export_to or namespace in self.export_to

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
        """Istio's PushContext.destinationRule with exportTo: the rules of the proxy's
        namespace that are visible there (for a proxy in the root namespace, only its
        private ones), then the rules the service's namespace exports to the proxy's
        namespace, then those the root namespace exports to it. In each namespace the
        exact host beats the most specific wildcard; if that most specific match is not
        exported to the proxy, the next namespace is tried (not a broader wildcard).
        Among several consolidated rules for one host the last one wins, as in
        SidecarScope.DestinationRule. (workloadSelector rules are not applied yet.)"""
        index = self._dr_index
        root = self.mesh.root_namespace
        local = index.root_local if proxy_namespace == root else index.local.get(proxy_namespace)
        found = local.most_specific(host) if local is not None else None
        if found:
            return found[-1]
        for ns in (service_namespace, root):
            bucket = index.exported.get(ns) if ns else None
            found = bucket.most_specific(host) if bucket is not None else None
            visible = [d for d in found or () if d.exported_to(proxy_namespace)]
            if visible:
                return visible[-1]
        return None

    @cached_property
    def _dr_index(self) -> _DestinationRuleIndex:
        """Istio's destinationRuleIndex, built once per snapshot on first use."""
        return _index_destination_rules(self.destination_rules, self.mesh)

    def secret_data(self, namespace: str, name: str) -> dict[str, bytes] | None:
        """The decoded data of Secret `namespace/name`, or None when there is none."""
        for cfg in self.secrets:
            if cfg.namespace == namespace and cfg.name == name:
                return secret_data(cfg.spec)
        return None

    def virtual_service_for(
        self, host: str, namespace: str | None = None
    ) -> Config[VirtualService] | None:
        """The mesh VirtualService that owns `host` on sidecars of `namespace` (None: every
        VirtualService, ignoring exportTo): an exact host first, else the most specific
        wildcard (the one with precedence among equals)."""
        view = self._vs_view(namespace)
        exact = view.by_host.get(host)
        if exact is not None:
            return exact
        chosen: Config[VirtualService] | None = None
        length = -1
        for vs_host, cfg in view.wildcards:  # precedence order: keep the first longest
            if len(vs_host) > length and host_matches(vs_host, host):
                chosen, length = cfg, len(vs_host)
        return chosen

    def mesh_virtual_services_for(self, namespace: str) -> Mapping[str, Config[VirtualService]]:
        """Resolved host -> the VirtualService that owns it for sidecars of `namespace`."""
        return self._vs_view(namespace).by_host

    def _vs_view(self, namespace: str | None) -> _VirtualServiceView:
        """Istio's SelectVirtualServices for a sidecar's namespace: the VirtualServices
        private to it, then those other namespaces export to it, then the public ones,
        each oldest first; the first to claim a host owns it (later ones are duplicate
        virtual-host domains). Computed once per namespace; when nothing is restricted
        every namespace shares the global view."""
        views = self._vs_views
        view = views.get(namespace)
        if view is not None:
            return view
        private, exported, public = self._vs_tiers
        if namespace is None or (len(public) == len(self._mesh_bound_vs)):
            view = views.get(None) or _VirtualServiceView.of(self.mesh_virtual_services)
            views[None] = view
        else:
            ordered = [*private.get(namespace, ()), *exported.get(namespace, ()), *public]
            view = _VirtualServiceView.of(_claim_hosts(ordered, self.mesh))
        views[namespace] = view
        return view

    @cached_property
    def _vs_views(self) -> dict[str | None, _VirtualServiceView]:
        return {}

    @cached_property
    def _mesh_bound_vs(self) -> tuple[Config[VirtualService], ...]:
        """VirtualServices sidecars can use: not a delegate, bound to the mesh."""
        return tuple(c for c in self.virtual_services
                     if not c.spec.is_delegate and is_mesh_bound(c.spec))

    @cached_property
    def _vs_tiers(self) -> tuple[dict[str, list[Config[VirtualService]]],
                                 dict[str, list[Config[VirtualService]]],
                                 list[Config[VirtualService]]]:
        """Istio's virtualServiceIndex for the `mesh` gateway: private by namespace,
        exported-to by namespace, public; each oldest first."""
        private: dict[str, list[Config[VirtualService]]] = {}
        exported: dict[str, list[Config[VirtualService]]] = {}
        public: list[Config[VirtualService]] = []
        default = self.mesh.default_virtual_service_export_to
        for cfg in self._mesh_bound_vs:
            export = export_set(cfg.spec.export_to, cfg.namespace, default)
            if PUBLIC in export:
                public.append(cfg)
                continue
            for ns in sorted(export - {NONE}):
                tier = private if ns == cfg.namespace else exported
                tier.setdefault(ns, []).append(cfg)
        return private, exported, public

    # --- services visible to a namespace --------------------------------------------

    def services_for(self, namespace: str) -> tuple[ServiceInstance, ...]:
        """The services a proxy in `namespace` sees (Istio's servicesExportedToNamespace),
        in registry order. A service not exported there gets no cluster or vhost."""
        return self._service_view(namespace)[0]

    def visible_service(self, host: str, namespace: str) -> ServiceInstance | None:
        """`service(host)` if it is exported to `namespace`, else None."""
        return self._service_view(namespace)[1].get(host)

    def service_visible(self, svc: ServiceInstance, namespace: str) -> bool:
        """Istio's IsServiceVisible: the service's exportTo (or the mesh default)."""
        default = self.mesh.default_service_export_to
        return visible_to(export_set(svc.export_to, svc.namespace, default), namespace)

    def _service_view(
        self, namespace: str
    ) -> tuple[tuple[ServiceInstance, ...], Mapping[str, ServiceInstance]]:
        views = self._service_views
        view = views.get(namespace)
        if view is None:
            restricted, public = self._service_tiers
            if len(public) == len(self.services):
                view = (self.services, self.registry.by_host)  # everything is public
            else:
                found = sorted([*restricted.get(namespace, ()), *public],
                               key=lambda s: s.hostname)
                view = (tuple(found), {s.hostname: s for s in found})
            views[namespace] = view
        return view

    @cached_property
    def _service_views(
        self,
    ) -> dict[str, tuple[tuple[ServiceInstance, ...], Mapping[str, ServiceInstance]]]:
        return {}

    @cached_property
    def _service_tiers(self) -> tuple[dict[str, list[ServiceInstance]], list[ServiceInstance]]:
        """Istio's ServiceIndex: public services, and the others by namespace exported to
        (`~` alone: nowhere)."""
        restricted: dict[str, list[ServiceInstance]] = {}
        public: list[ServiceInstance] = []
        default = self.mesh.default_service_export_to
        for svc in self.services:
            export = export_set(svc.export_to, svc.namespace, default)
            if PUBLIC in export:
                public.append(svc)
                continue
            for ns in sorted(export - {NONE}):
                restricted.setdefault(ns, []).append(svc)
        return restricted, public

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
                cfg = Config(res.kind, res.name, res.namespace, res.creation_timestamp, spec,
                             dict(res.annotations))
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
    ones as duplicate virtual-host domains, and analyze reports IST0109). This is the
    view ignoring exportTo; a later one is reported only if some namespace sees both."""
    bound = [c for c in vss if not c.spec.is_delegate and is_mesh_bound(c.spec)]
    default = mesh.default_virtual_service_export_to
    exports = {id(c): export_set(c.spec.export_to, c.namespace, default) - {NONE}
               for c in bound}

    def overlap(a: Config[VirtualService], b: Config[VirtualService]) -> bool:
        ea, eb = exports[id(a)], exports[id(b)]
        return bool((PUBLIC in ea and eb) or (PUBLIC in eb and ea) or ea & eb)

    def shadowed(cfg: Config[VirtualService], host: str, first: Config[VirtualService]) -> None:
        if overlap(cfg, first):
            diagnostics.append(
                f"{cfg}: host {host} is already routed by the older {first} "
                "(IST0109); sidecars ignore this VirtualService for that host"
            )

    return _claim_hosts(bound, mesh, shadowed)


def _claim_hosts(
    ordered: Iterable[Config[VirtualService]], mesh: MeshConfig,
    on_shadowed: Callable[[Config[VirtualService], str, Config[VirtualService]], None]
    | None = None,
) -> dict[str, Config[VirtualService]]:
    """Resolved host -> the first VirtualService (in precedence order) that claims it."""
    out: dict[str, Config[VirtualService]] = {}
    for cfg in ordered:
        for raw in cfg.spec.hosts:
            host = resolve_short_name(raw, cfg.namespace, mesh.domain_suffix)
            first = out.get(host)
            if first is None:
                out[host] = cfg
            elif first is not cfg and on_shadowed is not None:
                on_shadowed(cfg, host, first)
    return out


@dataclass(frozen=True)
class _VirtualServiceView:
    """The VirtualServices one namespace's sidecars use: by exact host, and the wildcard
    hosts in precedence order (so the first of equally specific wildcards wins)."""

    by_host: Mapping[str, Config[VirtualService]]
    wildcards: tuple[tuple[str, Config[VirtualService]], ...]

    @classmethod
    def of(cls, claimed: Mapping[str, Config[VirtualService]]) -> _VirtualServiceView:
        return cls(claimed, tuple((h, c) for h, c in claimed.items() if h.startswith("*")))


@dataclass
class _DestinationRuleBucket:
    """Istio's consolidatedDestRules: per host, the consolidated rules in merge order."""

    specific: dict[str, list[MergedDestinationRule]] = field(default_factory=dict)
    wildcard: dict[str, list[MergedDestinationRule]] = field(default_factory=dict)

    def most_specific(self, host: str) -> list[MergedDestinationRule] | None:
        """MostSpecificHostMatch: the exact host, else the longest matching wildcard."""
        exact = self.specific.get(host)
        if exact is not None:
            return exact
        best = max((h for h in self.wildcard if host_matches(h, host)), key=len, default=None)
        return self.wildcard[best] if best is not None else None

    def merge(self, host: str, cfg: Config[DestinationRule], export: frozenset[str]) -> None:
        """Istio's mergeDestinationRule (enhanced merge, rules without workloadSelector):
        a rule merges into each consolidated rule with the same exportTo, or a narrower
        non-empty one (subsets unioned, first wins; the oldest trafficPolicy wins); it
        becomes a rule of its own when the last one it was compared with could not take
        it."""
        bucket = self.wildcard if host.startswith("*") else self.specific
        rules = bucket.setdefault(host, [])
        separate = True
        for i, mdr in enumerate(rules):
            if export == mdr.export_to or (mdr.export_to and export >= mdr.export_to):
                rules[i] = _merge_into(mdr, cfg)
                separate = False
            else:
                separate = True
        if separate:
            rule = DestinationRule.model_construct(
                host=host, traffic_policy=cfg.spec.traffic_policy,
                subsets=list(cfg.spec.subsets or []) or None,
                export_to=None, workload_selector=None,
            )
            rules.append(MergedDestinationRule(host, cfg.namespace, rule, (cfg,), export))


def _merge_into(mdr: MergedDestinationRule, cfg: Config[DestinationRule]) -> MergedDestinationRule:
    subsets = list(mdr.rule.subsets or [])
    names = {s.name for s in subsets}
    subsets += [s for s in cfg.spec.subsets or [] if s.name not in names]
    policy = mdr.rule.traffic_policy or cfg.spec.traffic_policy
    rule = DestinationRule.model_construct(
        host=mdr.host, traffic_policy=policy, subsets=subsets or None,
        export_to=None, workload_selector=None,
    )
    return MergedDestinationRule(mdr.host, mdr.namespace, rule, (*mdr.sources, cfg),
                                 mdr.export_to)


@dataclass
class _DestinationRuleIndex:
    """Istio's destinationRuleIndex: `local` holds, per namespace, the rules visible in
    that namespace; `exported` the rules a namespace shares with others (checked against
    the client namespace on lookup); `root_local` the root namespace's private rules."""

    local: dict[str, _DestinationRuleBucket] = field(default_factory=dict)
    exported: dict[str, _DestinationRuleBucket] = field(default_factory=dict)
    root_local: _DestinationRuleBucket = field(default_factory=_DestinationRuleBucket)


def _index_destination_rules(
    rules: tuple[Config[DestinationRule], ...], mesh: MeshConfig
) -> _DestinationRuleIndex:
    """Istio's setDestinationRules, oldest first. exportTo is kept as written: `.` and
    the own namespace both make a rule private; a mesh default of `.` makes rules that
    declare nothing private too (Istio honours only `.` and `*` there)."""
    index = _DestinationRuleIndex()
    default_private = PRIVATE in mesh.default_destination_rule_export_to
    for cfg in rules:
        if cfg.spec.workload_selector is not None:
            continue  # reported by _merge_destination_rules
        ns = cfg.namespace
        host = resolve_short_name(cfg.spec.host, ns, mesh.domain_suffix)
        export = frozenset(cfg.spec.export_to or ())
        own = PRIVATE in export or ns in export
        if not export or PUBLIC in export or own:
            index.local.setdefault(ns, _DestinationRuleBucket()).merge(host, cfg, export)
        private_only = (not export and default_private) or (len(export) == 1 and own)
        if not private_only:
            index.exported.setdefault(ns, _DestinationRuleBucket()).merge(host, cfg, export)
        elif ns == mesh.root_namespace:
            index.root_local.merge(host, cfg, export)
    return index
