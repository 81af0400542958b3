"""Versioned, consistency-checked resource sets: what the xDS server may ship to one proxy.

Every resource is packed into an `Any` once and versioned by a content hash, so an
identical rebuild produces identical versions and nothing is resent (also across a
control-plane restart). Before a set is published it must pass `consistency_problems`:
every route's cluster, every EDS cluster's endpoints, every listener's RDS and secret
exist in the same set. A set that fails is refused and the proxy keeps the previous one,
which is what makes "503 NR / NC" from our own config impossible by construction.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2, route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from google.protobuf import any_pb2
from google.protobuf.message import Message

from meshpilot.xds.types import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    PUSH_ORDER,
    ROUTE_TYPE,
    SECRET_TYPE,
    SHORT_NAMES,
    ProxyResources,
)

# type_url -> names of that type a resource points at
Refs = Mapping[str, frozenset[str]]

_MESSAGE_TYPES: dict[str, type[Message]] = {
    CLUSTER_TYPE: cluster_pb2.Cluster,
    ENDPOINT_TYPE: endpoint_pb2.ClusterLoadAssignment,
    LISTENER_TYPE: listener_pb2.Listener,
    ROUTE_TYPE: route_pb2.RouteConfiguration,
    SECRET_TYPE: secret_pb2.Secret,
}
_HCM_URL = "type.googleapis.com/" + hcm_pb2.HttpConnectionManager.DESCRIPTOR.full_name
_TCP_PROXY_URL = "type.googleapis.com/" + tcp_proxy_pb2.TcpProxy.DESCRIPTOR.full_name
_DOWNSTREAM_TLS_URL = "type.googleapis.com/" + tls_pb2.DownstreamTlsContext.DESCRIPTOR.full_name
_UPSTREAM_TLS_URL = "type.googleapis.com/" + tls_pb2.UpstreamTlsContext.DESCRIPTOR.full_name


def content_hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=8).hexdigest()


def resource_name(type_url: str, message: Message) -> str:
    """The name Envoy knows a resource by (CLA: cluster_name; everything else: name)."""
    if type_url == ENDPOINT_TYPE:
        return message.cluster_name  # type: ignore[attr-defined]
    return message.name  # type: ignore[attr-defined]


@dataclass(frozen=True)
class VersionedResource:
    """One packed resource, its content-hash version and what it references."""

    type_url: str
    name: str
    version: str
    packed: any_pb2.Any = field(repr=False, compare=False)
    refs: Refs = field(default_factory=dict, compare=False)

    def refs_to(self, type_url: str) -> frozenset[str]:
        return self.refs.get(type_url, frozenset())


def pack(type_url: str, name: str, message: Message) -> VersionedResource:
    """Serialize once (deterministically), hash the bytes, wrap them in an Any."""
    data = message.SerializeToString(deterministic=True)
    packed = any_pb2.Any(type_url=type_url, value=data)
    return VersionedResource(type_url, name, content_hash(data), packed,
                             references(type_url, message))


# --- reference extraction -------------------------------------------------------------

def _sds_names(ctx: common_pb2.CommonTlsContext) -> Iterator[str]:
    """Secrets fetched over ADS. Secrets without `sds_config.ads` are static (bootstrap)."""
    configs = list(ctx.tls_certificate_sds_secret_configs)
    if ctx.HasField("validation_context_sds_secret_config"):
        configs.append(ctx.validation_context_sds_secret_config)
    if ctx.HasField("combined_validation_context"):
        combined = ctx.combined_validation_context
        if combined.HasField("validation_context_sds_secret_config"):
            configs.append(combined.validation_context_sds_secret_config)
    for cfg in configs:
        if cfg.HasField("sds_config") and cfg.sds_config.HasField("ads"):
            yield cfg.name


def _transport_socket_secrets(socket: object) -> Iterator[str]:
    typed = getattr(socket, "typed_config", None)
    if typed is None:
        return
    if typed.type_url == _DOWNSTREAM_TLS_URL:
        ctx: Message = tls_pb2.DownstreamTlsContext()
    elif typed.type_url == _UPSTREAM_TLS_URL:
        ctx = tls_pb2.UpstreamTlsContext()
    else:
        return
    typed.Unpack(ctx)
    yield from _sds_names(ctx.common_tls_context)  # type: ignore[attr-defined]


def _route_clusters(route: route_components_pb2.Route) -> Iterator[str]:
    if not route.HasField("route"):
        return  # direct_response / redirect / filter_action: no cluster
    action = route.route
    if action.cluster:
        yield action.cluster
    for weighted in action.weighted_clusters.clusters:
        if weighted.name:
            yield weighted.name
    for mirror in action.request_mirror_policies:
        if mirror.cluster:
            yield mirror.cluster


def _route_config_clusters(cfg: route_pb2.RouteConfiguration) -> Iterator[str]:
    for vhost in cfg.virtual_hosts:
        for mirror in vhost.request_mirror_policies:
            if mirror.cluster:
                yield mirror.cluster
        for route in vhost.routes:
            yield from _route_clusters(route)


def _filter_chain_refs(chain: listener_components_pb2.FilterChain,
                       out: dict[str, set[str]]) -> None:
    for flt in chain.filters:
        typed = flt.typed_config
        if typed.type_url == _HCM_URL:
            hcm = hcm_pb2.HttpConnectionManager()
            typed.Unpack(hcm)
            if hcm.HasField("rds"):
                out[ROUTE_TYPE].add(hcm.rds.route_config_name)
            elif hcm.HasField("route_config"):
                out[CLUSTER_TYPE].update(_route_config_clusters(hcm.route_config))
        elif typed.type_url == _TCP_PROXY_URL:
            tcp = tcp_proxy_pb2.TcpProxy()
            typed.Unpack(tcp)
            if tcp.cluster:
                out[CLUSTER_TYPE].add(tcp.cluster)
            out[CLUSTER_TYPE].update(c.name for c in tcp.weighted_clusters.clusters if c.name)
    if chain.HasField("transport_socket"):
        out[SECRET_TYPE].update(_transport_socket_secrets(chain.transport_socket))


def references(type_url: str, message: Message) -> Refs:
    """Names of other resources `message` needs in the same snapshot, by type URL."""
    out: dict[str, set[str]] = {t: set() for t in PUSH_ORDER}
    if type_url == LISTENER_TYPE:
        listener: listener_pb2.Listener = message  # type: ignore[assignment]
        for chain in listener.filter_chains:
            _filter_chain_refs(chain, out)
        if listener.HasField("default_filter_chain"):
            _filter_chain_refs(listener.default_filter_chain, out)
    elif type_url == ROUTE_TYPE:
        out[CLUSTER_TYPE].update(_route_config_clusters(message))  # type: ignore[arg-type]
    elif type_url == CLUSTER_TYPE:
        cluster: cluster_pb2.Cluster = message  # type: ignore[assignment]
        if cluster.type == cluster_pb2.Cluster.EDS:
            out[ENDPOINT_TYPE].add(cluster.eds_cluster_config.service_name or cluster.name)
        if cluster.HasField("transport_socket"):
            out[SECRET_TYPE].update(_transport_socket_secrets(cluster.transport_socket))
        for match in cluster.transport_socket_matches:
            out[SECRET_TYPE].update(_transport_socket_secrets(match.transport_socket))
    return {t: frozenset(names) for t, names in out.items() if names}


# --- consistency ------------------------------------------------------------------------

def _problems(by_type: Mapping[str, Mapping[str, Refs]], names_ok: Iterable[str]) -> list[str]:
    problems = list(names_ok)
    wording = {CLUSTER_TYPE: "cluster", ENDPOINT_TYPE: "ClusterLoadAssignment",
               ROUTE_TYPE: "RouteConfiguration (RDS)", SECRET_TYPE: "secret (SDS)",
               LISTENER_TYPE: "listener"}
    present = {t: frozenset(by_type.get(t, {})) for t in PUSH_ORDER}
    for type_url in PUSH_ORDER:
        for name, refs in sorted(by_type.get(type_url, {}).items()):
            for target, wanted in sorted(refs.items()):
                missing = sorted(wanted - present[target])
                for m in missing:
                    problems.append(f"{SHORT_NAMES[type_url]} {name!r} references "
                                    f"{wording[target]} {m!r}, which is not in the snapshot")
    return problems


def consistency_problems(resources: ProxyResources) -> list[str]:
    """Why `resources` must not be shipped; empty when it is self-consistent."""
    return _check(resources, references)


def _check(resources: ProxyResources, refs_of: Callable[[str, Message], Refs]) -> list[str]:
    refs: dict[str, dict[str, Refs]] = {}
    bad_names: list[str] = []
    for type_url, items in resources.by_type.items():
        if type_url not in _MESSAGE_TYPES:
            bad_names.append(f"unknown resource type {type_url}")
            continue
        refs[type_url] = {}
        for key, message in items.items():
            if not isinstance(message, _MESSAGE_TYPES[type_url]):
                bad_names.append(f"{SHORT_NAMES[type_url]} {key!r} is a "
                                 f"{type(message).__name__}, not "
                                 f"{_MESSAGE_TYPES[type_url].__name__}")
                continue
            actual = resource_name(type_url, message)
            if actual != key:
                bad_names.append(f"{SHORT_NAMES[type_url]} stored as {key!r} is named "
                                 f"{actual!r}")
            refs[type_url][key] = refs_of(type_url, message)
    return _problems(refs, bad_names)


class InconsistentSnapshot(ValueError):
    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Snapshot:
    """A frozen, consistent, versioned resource set for one proxy."""

    by_type: Mapping[str, Mapping[str, VersionedResource]]
    version: str

    def get(self, type_url: str) -> Mapping[str, VersionedResource]:
        return self.by_type.get(type_url, {})

    @classmethod
    def build(cls, resources: ProxyResources) -> Snapshot:
        """Pack and check; raises InconsistentSnapshot instead of returning a bad set."""
        packed: dict[int, VersionedResource] = {}

        def pack_once(type_url: str, message: Message) -> Refs:
            res = pack(type_url, resource_name(type_url, message), message)
            packed[id(message)] = res
            return res.refs

        problems = _check(resources, pack_once)  # packs (and finds refs) once per resource
        if problems:
            raise InconsistentSnapshot(problems)
        by_type: dict[str, dict[str, VersionedResource]] = {}
        for type_url in PUSH_ORDER:
            items = resources.get(type_url)
            by_type[type_url] = {name: packed[id(msg)] for name, msg in sorted(items.items())}
        return cls(by_type, state_version(r for t in PUSH_ORDER for r in by_type[t].values()))


def state_version(resources: Iterable[VersionedResource | tuple[str, str]]) -> str:
    """Order-independent version of a set of resources (names and content versions)."""
    parts = sorted(f"{r.type_url}|{r.name}={r.version}" if isinstance(r, VersionedResource)
                   else f"{r[0]}={r[1]}" for r in resources)
    return content_hash("\n".join(parts).encode())
