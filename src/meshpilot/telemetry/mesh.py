"""What the collector needs to know about the mesh to label an access-log entry: which
workload listens at an upstream address, which service a cluster or authority names,
which services select a workload.

Built from each mesh snapshot the control plane builds (WorkloadEntries are the mesh's
workloads; Services and ServiceEntries its services). Endpoints that disappear are kept
for a while (`RETAIN_SECONDS`, at most `RETAIN_MAX`): a request that raced a scale-down
is logged after the snapshot dropped its endpoint, and should still name the workload
that served it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..registry import ServiceInstance
from ..snapshot import MeshSnapshot

RETAIN_SECONDS = 600.0
RETAIN_MAX = 10_000


@dataclass(frozen=True)
class WorkloadRef:
    """One WorkloadEntry: a workload instance the mesh knows by name and labels."""

    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def proxy_id(self) -> str:
        """The node id of the sidecar that registered it (`<name>.<namespace>`)."""
        return f"{self.name}.{self.namespace}"


@dataclass(frozen=True)
class ServiceRef:
    """Istio's destination_service (FQDN) and destination_service_name/namespace: a
    Kubernetes-style Service `name.ns.svc.<domain>` is (`name`, `ns`); a ServiceEntry
    host is (the host itself, the entry's namespace)."""

    host: str
    name: str
    namespace: str
    aliases: frozenset[str] = frozenset()


def _service_ref(svc: ServiceInstance, domain: str) -> ServiceRef:
    aliases = {svc.hostname, *svc.addresses}
    if svc.is_kubernetes:
        short = svc.hostname.removesuffix(f".svc.{domain}")
        aliases |= {svc.name, short, f"{short}.svc"}
    return ServiceRef(svc.hostname, svc.name, svc.namespace, frozenset(aliases))


class MeshIndex:
    """Lookups over one snapshot, plus what recently left it (see module doc)."""

    def __init__(self, snap: MeshSnapshot | None = None, previous: MeshIndex | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.endpoints: dict[tuple[str, int], WorkloadRef] = {}
        self.workloads: dict[tuple[str, str], WorkloadRef] = {}
        self.services: dict[str, ServiceRef] = {}
        self.services_of: dict[tuple[str, str], tuple[ServiceRef, ...]] = {}
        # Removed endpoints/workloads: key -> (value, when it was removed), oldest first.
        self._gone_endpoints: OrderedDict[tuple[str, int], tuple[WorkloadRef, float]] = (
            OrderedDict())
        self._gone_workloads: OrderedDict[tuple[str, str], tuple[WorkloadRef, float]] = (
            OrderedDict())
        if snap is not None:
            self._build(snap)
        if previous is not None:
            self._retain(previous)

    def _build(self, snap: MeshSnapshot) -> None:
        for cfg in snap.workload_entries:
            ref = WorkloadRef(cfg.name, cfg.namespace, dict(cfg.spec.labels or {}))
            self.workloads[(cfg.namespace, cfg.name)] = ref
            address = cfg.spec.address or ""
            for port in (cfg.spec.ports or {}).values():
                self.endpoints[(address, int(port))] = ref
        selected: dict[tuple[str, str], list[ServiceRef]] = {}
        for svc in snap.services:
            ref = _service_ref(svc, snap.mesh.domain_suffix)
            self.services[svc.hostname] = ref
            for ep in svc.endpoints:
                key = (ep.namespace, ep.workload)
                if key in self.workloads and ref not in selected.setdefault(key, []):
                    selected[key].append(ref)
        self.services_of = {k: tuple(v) for k, v in selected.items()}

    def _retain(self, previous: MeshIndex) -> None:
        now = self._clock()
        gone_e = previous._gone_endpoints.copy()
        for key, ref in previous.endpoints.items():
            if self.endpoints.get(key) != ref:
                gone_e[key] = (ref, now)
        gone_w = previous._gone_workloads.copy()
        for key, ref in previous.workloads.items():
            if key not in self.workloads:
                gone_w[key] = (ref, now)
        for gone, current in ((gone_e, self.endpoints), (gone_w, self.workloads)):
            for key in [k for k in gone if k in current]:
                del gone[key]  # back in the mesh: the live entry wins
            gone_sorted = sorted(gone.items(), key=lambda kv: kv[1][1])
            gone.clear()
            for key, value in gone_sorted:
                if now - value[1] <= RETAIN_SECONDS:
                    gone[key] = value
            while len(gone) > RETAIN_MAX:
                gone.popitem(last=False)
        self._gone_endpoints, self._gone_workloads = gone_e, gone_w

    def endpoint(self, address: str, port: int) -> WorkloadRef | None:
        """The workload at an upstream `address:port`, live or recently removed."""
        ref = self.endpoints.get((address, port))
        if ref is None and (gone := self._gone_endpoints.get((address, port))) is not None:
            ref = gone[0]
        return ref

    def workload(self, namespace: str, name: str) -> WorkloadRef | None:
        ref = self.workloads.get((namespace, name))
        if ref is None and (gone := self._gone_workloads.get((namespace, name))) is not None:
            ref = gone[0]
        return ref

    def service(self, host: str) -> ServiceRef | None:
        return self.services.get(host)

    def service_for_authority(self, namespace: str, name: str, authority: str) -> (
        ServiceRef | None
    ):
        """reporter=destination: the service a request to workload `namespace/name` was
        for, from its `:authority` (any name a client may use for it); else the workload's
        only service; else None."""
        candidates = self.services_of.get((namespace, name), ())
        host = _strip_port(authority).lower()
        for ref in candidates:
            if host in ref.aliases:
                return ref
        return candidates[0] if len(candidates) == 1 else None


def _strip_port(authority: str) -> str:
    if authority.startswith("["):  # [v6]:port
        return authority[1:].split("]", 1)[0]
    host, sep, port = authority.rpartition(":")
    return host if sep and port.isdigit() and ":" not in host else authority
