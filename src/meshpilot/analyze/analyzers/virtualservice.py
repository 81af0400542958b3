"""VirtualService analyzers: destinations, subsets, gateways and conflicting mesh hosts.

Each follows the Istio analyzer of the same name (pkg/config/analysis/analyzers/
virtualservice); the docstrings say what it checks and where it blames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ...api.virtualservice import Destination, VirtualService
from .. import catalogue as msg
from ..framework import Analyzer
from ..hosts import (
    ALL_NAMESPACES,
    MESH_GATEWAY,
    ServiceInfo,
    destination_host,
    host_matches,
    name_from_host,
    scoped,
    service_host_map,
    split_scoped,
)
from ..message import Message
from ..model import AnalysisInput, Entry

DESTINATION_HOST = "{{.spec.{rule}[{i}].route[{j}].destination.host}}"
MIRROR_HOST = "{{.spec.http[{i}].mirror.host}}"
# Istio's key for mirrors lacks `.destination`, so it never finds a line (kept as is).
MIRRORS_HOST = "{{.spec.http[{i}].mirrors[{j}].host}}"
VS_GATEWAY = "{{.spec.gateways[{i}]}}"
METADATA_NAME = "{.metadata.name}"


@dataclass(frozen=True)
class Annotated:
    """A destination and where it sits: rule kind (`http`, `tcp`, `tls`, `http.mirror`,
    `http.mirrors`), rule index and destination index."""

    rule: str
    i: int
    j: int
    destination: Destination

    @property
    def key(self) -> str:
        if self.rule == "http.mirror":
            return MIRROR_HOST.format(i=self.i)
        if self.rule == "http.mirrors":
            return MIRRORS_HOST.format(i=self.i, j=self.j)
        return DESTINATION_HOST.format(rule=self.rule, i=self.i, j=self.j)


def route_destinations(vs: VirtualService) -> list[Annotated]:
    """tcp, then tls, then http route destinations (Istio's getRouteDestinations)."""
    out: list[Annotated] = []
    for rule, routes in (("tcp", vs.tcp), ("tls", vs.tls), ("http", vs.http)):
        for i, route in enumerate(routes):
            out += [Annotated(rule, i, j, rd.destination) for j, rd in enumerate(route.route)]
    return out


def mirror_destinations(vs: VirtualService) -> list[Annotated]:
    out: list[Annotated] = []
    for i, route in enumerate(vs.http):
        if route.mirror is not None:
            out.append(Annotated("http.mirror", i, 0, route.mirror))
        out += [Annotated("http.mirrors", i, j, m.destination) for j, m in enumerate(route.mirrors)]
    return out


def _message(mtype: msg.MessageType, entry: Entry[Any], *params: Any, key: str = "") -> Message:
    line = entry.origin.line_of(key) if key else 0
    return Message(mtype, tuple(params), entry.origin, line)


# --- virtualservice.DestinationHostAnalyzer ------------------------------------------------


def _check_ports(entry: Entry[Any], d: Annotated, service: ServiceInfo) -> Iterator[Message]:
    """IST0112 when a multi-port service is named without a port; IST0101 `host:port`
    when the port is not one of the service's."""
    dest = d.destination
    if dest.port is None:
        if len(service.ports) > 1:
            yield _message(msg.VS_DESTINATION_PORT_SELECTOR_REQUIRED, entry, dest.host,
                           [p.number for p in service.ports], key=d.key)
        return
    number = dest.port.number or 0
    if not any(p.number == number for p in service.ports):
        yield _message(msg.REFERENCED_RESOURCE_NOT_FOUND, entry, "host:port",
                       f"{dest.host}:{number}", key=d.key)


def _subset_destinations(data: AnalysisInput) -> dict[str, list[Destination]]:
    """VirtualServices routing to one of their own hosts with a subset (by `ns/name`)."""
    out: dict[str, list[Destination]] = {}
    for entry in data.of("VirtualService"):
        vs = entry.spec
        for route in vs.http:
            for rd in route.route:
                dest = rd.destination
                if dest.subset and dest.host in vs.hosts:
                    out.setdefault(entry.full_name, []).append(dest)
    return out


def destination_hosts(data: AnalysisInput) -> Iterator[Message]:
    """Destination and mirror hosts must be a Service or ServiceEntry visible to the
    VirtualService (IST0101 `host` / `mirror host`), with a valid port (IST0101
    `host:port`, IST0112). IST0140: a gateway route without a subset to a host that a
    mesh VirtualService splits by subsets (the subsets do not apply to the gateway)."""
    hosts = service_host_map(data)
    with_subsets = _subset_destinations(data)
    for entry in data.of("VirtualService"):
        vs = entry.spec
        for d in route_destinations(vs):
            service = destination_host(entry.namespace, vs.export_to, d.destination.host, hosts)
            if service is None:
                yield _message(msg.REFERENCED_RESOURCE_NOT_FOUND, entry, "host",
                               d.destination.host, key=d.key)
                continue
            yield from _check_ports(entry, d, service)
        for d in mirror_destinations(vs):
            service = destination_host(entry.namespace, vs.export_to, d.destination.host, hosts)
            if service is None:
                yield _message(msg.REFERENCED_RESOURCE_NOT_FOUND, entry, "mirror host",
                               d.destination.host, key=d.key)
                continue
            yield from _check_ports(entry, d, service)
        if not vs.gateways:
            continue
        for route in vs.http:
            for rd in route.route:
                if rd.destination.subset:
                    continue
                for other, dests in with_subsets.items():
                    if any(dest.host == rd.destination.host for dest in dests):
                        # Istio's line key uses the route's name; it never resolves.
                        yield _message(msg.INGRESS_ROUTE_RULES_NOT_AFFECTED, entry, other,
                                       entry.full_name)


# --- virtualservice.DestinationRuleAnalyzer ------------------------------------------------


def destination_rules(data: AnalysisInput) -> Iterator[Message]:
    """A destination's subset must be defined by a DestinationRule for that host, keyed
    as Istio keys them: a Kubernetes FQDN by its namespace/name, any other host by the
    VirtualService's (or DestinationRule's) own namespace (IST0101 `host+subset in
    destinationrule`, `mirror+subset in destinationrule`)."""
    known: set[tuple[str, str, str]] = set()
    for entry in data.of("DestinationRule"):
        dr = entry.spec
        ns, name = name_from_host(entry.namespace, dr.host)
        known.update((ns, name, s.name) for s in dr.subsets or [])

    def missing(namespace: str, dest: Destination) -> bool:
        if not dest.subset:
            return False
        ns, name = name_from_host(namespace, dest.host)
        return (ns, name, dest.subset) not in known

    for entry in data.of("VirtualService"):
        for d in route_destinations(entry.spec):
            if missing(entry.namespace, d.destination):
                yield _message(msg.REFERENCED_RESOURCE_NOT_FOUND, entry,
                               "host+subset in destinationrule",
                               f"{d.destination.host}+{d.destination.subset}", key=d.key)
        for d in mirror_destinations(entry.spec):
            if missing(entry.namespace, d.destination):
                yield _message(msg.REFERENCED_RESOURCE_NOT_FOUND, entry,
                               "mirror+subset in destinationrule",
                               f"{d.destination.host}+{d.destination.subset}", key=d.key)


# --- virtualservice.GatewayAnalyzer --------------------------------------------------------


def short_or_full_name(default_namespace: str, name: str) -> tuple[str, str]:
    """Istio's NewShortOrFullName: `ns/name`, or `name` in `default_namespace`."""
    ns, sep, rest = name.partition("/")
    return (ns, rest) if sep else (default_namespace, name)


def _gateway_hosts(server_hosts: list[str], gateway_namespace: str) -> list[str]:
    """Istio's sanitizeServerHostNamespace: `./h` -> `<gw ns>/h`, `*/h` -> `h`, and
    `*/*` makes the server's hosts just `*`."""
    out: list[str] = []
    for host in server_hosts:
        if "/" in host:
            ns, _, name = host.partition("/")
            if ns == ".":
                host = f"{gateway_namespace}/{name}"
            elif ns == "*":
                if name == "*":
                    return ["*"]
                host = name
        out.append(host)
    return out


def _names_for_namespace(hosts: list[str], namespace: str) -> list[str]:
    """Istio's host.NamesForNamespace: `ns/h` counts only for `namespace` (or `*`)."""
    out: list[str] = []
    for host in hosts:
        ns, sep, name = host.partition("/")
        if sep:
            if ns not in (namespace, "*"):
                continue
            host = name
        out.append(host)
    return out


def vs_host_in_gateway(data: AnalysisInput, gateway: tuple[str, str], vs_hosts: list[str],
                       vs_namespace: str) -> bool:
    found = data.find("Gateway", *gateway)
    if found is None:
        return False
    hosts: list[str] = []
    for server in found.spec.servers or []:
        hosts += _gateway_hosts(list(server.hosts), found.namespace)
    return any(host_matches(gh, vh)
               for gh in _names_for_namespace(hosts, vs_namespace) for vh in vs_hosts)


def gateways(data: AnalysisInput) -> Iterator[Message]:
    """Every gateway a VirtualService names must exist (IST0101 `gateway`), and one of its
    hosts must be served by that Gateway (IST0132; also reported for a missing Gateway,
    as istioctl does). The raw VirtualService hosts are compared, not their FQDNs."""
    for entry in data.of("VirtualService"):
        vs = entry.spec
        for i, name in enumerate(vs.gateways):
            if name == MESH_GATEWAY:
                continue
            target = short_or_full_name(entry.namespace, name)
            key = VS_GATEWAY.format(i=i)
            if data.find("Gateway", *target) is None:
                yield _message(msg.REFERENCED_RESOURCE_NOT_FOUND, entry, "gateway", name,
                               key=key)
            if not vs_host_in_gateway(data, target, list(vs.hosts), entry.namespace):
                yield _message(msg.VS_HOST_NOT_FOUND_IN_GATEWAY, entry, list(vs.hosts),
                               entry.full_name, f"{target[0]}/{target[1]}", key=key)


# --- virtualservice.ConflictingMeshGatewayHostsAnalyzer ------------------------------------


def _mesh_hosts(data: AnalysisInput) -> dict[str, list[Entry[Any]]]:
    """Scoped FQDN -> the mesh-bound VirtualServices claiming it, in input order."""
    out: dict[str, list[Entry[Any]]] = {}
    for entry in data.of("VirtualService"):
        vs = entry.spec
        if vs.gateways and MESH_GATEWAY not in vs.gateways:
            continue
        if not vs.export_to or ALL_NAMESPACES in vs.export_to:
            scopes = [ALL_NAMESPACES]
        else:
            scopes = sorted({entry.namespace if e == "." else e for e in vs.export_to})
        for scope in scopes:
            for host in vs.hosts:
                out.setdefault(scoped(scope, entry.namespace, host), []).append(entry)
    return out


def conflicting_mesh_gateway_hosts(data: AnalysisInput) -> Iterator[Message]:
    """Two or more VirtualServices bound to `mesh` claiming one host in one scope: Istio
    sidecars use only the oldest (IST0109, on each of them, blamed at metadata.name).
    A VirtualService is reported once, for the first conflicting host in sorted order
    (istioctl picks one in map order)."""
    index = _mesh_hosts(data)
    reported: set[str] = set()
    for key in sorted(index):
        entries = list(index[key])
        scope, host = split_scoped(key)
        if scope != ALL_NAMESPACES:
            for other, more in index.items():
                other_scope, other_host = split_scoped(other)
                if other_scope == ALL_NAMESPACES and host_matches(host, other_host):
                    entries += more
        if len(entries) < 2:
            continue
        names = ",".join(sorted(e.full_name for e in entries))
        for entry in entries:
            if entry.full_name in reported:
                continue
            reported.add(entry.full_name)
            yield _message(msg.CONFLICTING_MESH_GATEWAY_VS_HOSTS, entry, names, key,
                           key=METADATA_NAME)


ANALYZERS = (
    Analyzer("virtualservice.ConflictingMeshGatewayHostsAnalyzer",
             "Checks if multiple virtual services associated with the mesh gateway have "
             "conflicting hosts", ("IST0109",), lambda d: list(conflicting_mesh_gateway_hosts(d))),
    Analyzer("virtualservice.DestinationHostAnalyzer",
             "Checks the destination hosts associated with each virtual service",
             ("IST0101", "IST0112", "IST0140"), lambda d: list(destination_hosts(d))),
    Analyzer("virtualservice.DestinationRuleAnalyzer",
             "Checks the destination rules associated with each virtual service",
             ("IST0101",), lambda d: list(destination_rules(d))),
    Analyzer("virtualservice.GatewayAnalyzer",
             "Checks the gateways associated with each virtual service",
             ("IST0101", "IST0132"), lambda d: list(gateways(d))),
)
