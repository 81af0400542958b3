"""Service analyzer: ports whose name (or appProtocol) tells Istio no protocol."""

from __future__ import annotations

from collections.abc import Iterator

from ...api.base import UNSUPPORTED_PROTOCOL
from ...api.core import service_port_protocol
from .. import catalogue as msg
from ..framework import Analyzer
from ..message import Message
from ..model import AnalysisInput

PORT_IN_PORTS = "{{.spec.ports[{i}].port}}"
GATEWAY_MANAGED_LABEL = "gateway.istio.io/managed"
MANAGED_BY_ISTIO = ("istio.io-gateway-controller", "istio.io-mesh-controller",
                    "istio.io-eastwest-controller")


def port_names(data: AnalysisInput) -> Iterator[Message]:
    """IST0118 (Info): the protocol will be sniffed from the first bytes, so a sidecar
    cannot apply HTTP routing before it has seen traffic, and server-first protocols
    break. Istio's control-plane Services (label `istio` or `release: istio`) and
    gateway-managed Services are skipped. IST0150 for an ExternalName port `tcp`."""
    for entry in data.of("Service"):
        if "istio" in entry.labels or entry.labels.get("release") == "istio":
            continue
        if entry.labels.get(GATEWAY_MANAGED_LABEL) in MANAGED_BY_ISTIO:
            continue
        svc = entry.spec
        external = svc.type == "ExternalName"
        for i, port in enumerate(svc.ports or []):
            if service_port_protocol(port) != UNSUPPORTED_PROTOCOL and not (
                    port.name == "tcp" and external):
                continue
            line = entry.origin.line_of(PORT_IN_PORTS.format(i=i))
            if external:
                yield Message(msg.EXTERNAL_NAME_INVALID_PORT_NAME, (), entry.origin, line)
                continue
            target = port.target_port if port.target_port is not None else 0
            yield Message(msg.PORT_NAME_NOT_UNDER_NAMING_CONVENTION,
                          (port.name or "", port.port, str(target)), entry.origin, line)


ANALYZERS = (
    Analyzer("service.PortNameAnalyzer", "Checks the port names associated with each service",
             ("IST0118", "IST0150"), lambda d: list(port_names(d))),
)
