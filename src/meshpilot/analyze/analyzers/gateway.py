"""Gateway analyzers: workloads behind a selector, their ports, credentials, conflicts.

Istio looks at the pods a Gateway selects and the Kubernetes Services selecting those
pods. Here the pods are WorkloadEntries: a `meshpilot gateway` registers one carrying
its labels and a `meshpilot.io/port-map` annotation (`80:8080,443:8443`). That map
plays the part of the gateway's Service (service port -> target port), so IST0162 asks
the same question as in Istio: can a client reach this server port on the gateway?
Offline, the loader adds Istio's stand-in ingress gateway (`istio=ingressgateway` in
istio-system, Service ports 80/443/31400/15443), as `istioctl analyze` does for files.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ...api.core import secret_data
from .. import catalogue as msg
from ..certs import credential_problem
from ..framework import Analyzer
from ..hosts import selector_string, selects
from ..message import Message
from ..model import AnalysisInput, Entry
from .virtualservice import short_or_full_name

PORT_MAP_ANNOTATION = "meshpilot.io/port-map"
GATEWAY_SELECTOR = "{{.spec.selector.{label}}}"
CREDENTIAL_NAME = "{{.spec.servers[{i}].tls.credentialName}}"
METADATA_NAME = "{.metadata.name}"


def _selector_key(selector: str) -> str:
    """Istio's ExtractLabelFromSelectorString: the first label key of the selector."""
    return GATEWAY_SELECTOR.format(label=selector.partition("=")[0]) if "=" in selector else ""


def _selector_not_found(entry: Entry[Any]) -> Message:
    selector = selector_string(entry.spec.selector)
    key = _selector_key(selector)
    return Message(msg.REFERENCED_RESOURCE_NOT_FOUND, ("selector", selector), entry.origin,
                   entry.origin.line_of(key) if key else 0)


def _pods(data: AnalysisInput, selector: Mapping[str, str] | None) -> list[Entry[Any]]:
    return [w for w in data.workloads if selects(selector, w.spec.labels)]


def _port_map(workload: Entry[Any]) -> dict[int, int]:
    out: dict[int, int] = {}
    for item in workload.annotations.get(PORT_MAP_ANNOTATION, "").split(","):
        gateway_port, _, bind = item.strip().partition(":")
        if gateway_port.isdigit():
            out[int(gateway_port)] = int(bind) if bind.isdigit() else int(gateway_port)
    return out


def _target_port(value: Any) -> int:
    """IntOrString.IntValue(): the number, or a string's integer value (0 for a name)."""
    if isinstance(value, int):
        return value
    return int(value) if isinstance(value, str) and value.isdigit() else 0


def ingress_gateway_ports(data: AnalysisInput) -> Iterator[Message]:
    """IST0101 `selector`: the Gateway selects no workload. IST0162: a server port that
    neither the workloads' Services nor their port maps expose."""
    for entry in data.of("Gateway"):
        gw = entry.spec
        target_ports: set[int] = set()
        service_ports: dict[int, int] = {}
        pods = _pods(data, gw.selector)
        for pod in pods:
            labels = pod.spec.labels or {}
            for svc in data.of("Service"):
                if svc.namespace != pod.namespace or not selects(svc.spec.selector, labels):
                    continue
                for port in svc.spec.ports or []:
                    if port.effective_protocol != "TCP":
                        continue
                    target = _target_port(port.target_port)
                    if target:
                        target_ports.add(target)
                        service_ports.setdefault(port.port, target)
                    else:
                        target_ports.add(port.port)
            for number, bind in _port_map(pod).items():
                target_ports.add(bind)
                service_ports.setdefault(number, bind)
        if not pods:
            yield _selector_not_found(entry)
            continue
        selector = selector_string(gw.selector)
        key = _selector_key(selector)
        for server in gw.servers or []:
            number = server.port.number
            if number not in target_ports and number not in service_ports:
                yield Message(msg.GATEWAY_PORT_NOT_DEFINED_ON_SERVICE, (number, selector),
                              entry.origin, entry.origin.line_of(key) if key else 0)


def secrets(data: AnalysisInput) -> Iterator[Message]:
    """Each server's `tls.credentialName` must be a Secret in the namespace of the
    gateway workload (IST0101 `credentialName`) holding a usable certificate and key
    (IST0161). As in Istio, the namespace is that of the first selected workload."""
    for entry in data.of("Gateway"):
        gw = entry.spec
        pods = _pods(data, gw.selector)
        if not pods:
            yield _selector_not_found(entry)
            continue
        namespace = pods[0].namespace
        for i, server in enumerate(gw.servers or []):
            name = server.tls.credential_name if server.tls is not None else None
            if not name:
                continue
            key = CREDENTIAL_NAME.format(i=i)
            line = entry.origin.line_of(key)
            secret = data.find("Secret", *short_or_full_name(namespace, name))
            if secret is None:
                yield Message(msg.REFERENCED_RESOURCE_NOT_FOUND, ("credentialName", name),
                              entry.origin, line)
            elif credential_problem(secret_data(secret.spec)) is not None:
                yield Message(msg.INVALID_GATEWAY_CREDENTIAL, (entry.name, namespace),
                              entry.origin, line)


def conflicting_gateways(data: AnalysisInput) -> Iterator[Message]:
    """IST0145: Gateways selecting the same workloads that serve the same host (and
    bind) on the same port; the proxy can serve only one of them. Hosts are compared as
    strings, like Istio's CheckDuplicates (without its map-order side effects)."""
    index: dict[tuple[str, int], dict[str, dict[str, str]]] = {}
    for entry in data.of("Gateway"):
        selector = selector_string(entry.spec.selector)
        for server in entry.spec.servers or []:
            binds = {host: server.bind or "" for host in server.hosts}
            index.setdefault((selector, server.port.number), {})[entry.full_name] = binds
    for entry in data.of("Gateway"):
        gw = entry.spec
        selector = selector_string(gw.selector)
        hits = [key for key in index if _same_workloads(data, selector, gw.selector, key[0])]
        if selector and not hits:
            yield _selector_not_found(entry)
            continue
        for server in gw.servers or []:
            others: list[str] = []
            for key in hits:
                if key[1] != server.port.number:
                    continue
                for name, binds in index[key].items():
                    if name != entry.full_name and any(
                        binds.get(h) == (server.bind or "") for h in server.hosts
                        if h in binds
                    ):
                        others.append(name)
            if others:
                yield Message(msg.CONFLICTING_GATEWAYS,
                              (",".join(sorted(others)), selector, str(server.port.number),
                               ",".join(server.hosts)), entry.origin)


def _same_workloads(data: AnalysisInput, selector: str, labels: Mapping[str, str] | None,
                    other: str) -> bool:
    """Istio: the same selector string, or one contains the other and some workload is
    selected by both."""
    if selector == other:
        return True
    if other not in selector and selector not in other:
        return False
    other_labels = dict(pair.split("=", 1) for pair in other.split(",") if "=" in pair)
    return any(selects(labels, w.spec.labels) and selects(other_labels, w.spec.labels)
               for w in data.workloads)


def _same_certificate(a: Any, b: Any) -> bool:
    if a.credential_name and b.credential_name:
        return bool(a.credential_name == b.credential_name)
    if not a.credential_name and not b.credential_name and a.server_certificate \
            and a.server_certificate == b.server_certificate:
        return bool(a.private_key and b.private_key and a.private_key == b.private_key)
    return False


def _subset(x: Mapping[str, str], y: Mapping[str, str] | None) -> bool:
    return all((y or {}).get(k) == v for k, v in x.items())


def certificates(data: AnalysisInput) -> Iterator[Message]:
    """IST0138: two Gateways on the same workloads use one certificate; browsers reuse
    the HTTP/2 connection across them and get 404 from the other Gateway's routes."""
    for entry in data.of("Gateway"):
        selector = entry.spec.selector or {}
        for other in data.of("Gateway"):
            if other is entry or not _subset(selector, other.spec.selector):
                continue
            for server in entry.spec.servers or []:
                for theirs in other.spec.servers or []:
                    if server.tls is None or theirs.tls is None:
                        continue
                    if _same_certificate(server.tls, theirs.tls):
                        yield Message(msg.GATEWAY_DUPLICATE_CERTIFICATE,
                                      ([entry.full_name, other.full_name],), entry.origin,
                                      entry.origin.line_of(METADATA_NAME))


ANALYZERS = (
    Analyzer("gateway.CertificateAnalyzer", "Checks a gateway certificate", ("IST0138",),
             lambda d: list(certificates(d))),
    Analyzer("gateway.ConflictingGatewayAnalyzer",
             "Checks a gateway's selector, port number and hosts", ("IST0101", "IST0145"),
             lambda d: list(conflicting_gateways(d))),
    Analyzer("gateway.IngressGatewayPortAnalyzer",
             "Checks a gateway's ports against the gateway's Kubernetes service ports",
             ("IST0101", "IST0162"), lambda d: list(ingress_gateway_ports(d))),
    Analyzer("gateway.SecretAnalyzer", "Checks a gateway's referenced secrets for correctness",
             ("IST0101", "IST0161"), lambda d: list(secrets(d))),
)
