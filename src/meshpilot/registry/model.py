"""Plain data for mesh services and their endpoints (Istio's model.Service / IstioEndpoint).

The registry is what Kubernetes + EndpointSlices give istiod; here it is computed from
stored resources only, so the translator never has to know where a service came from.
Everything is frozen and ordered so that translation stays deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from ..api.base import HTTP_FAMILY, TLS_FAMILY, UNSUPPORTED_PROTOCOL

SourceKind = Literal["Service", "ServiceEntry"]


@dataclass(frozen=True)
class ServicePort:
    """One service port with its Istio protocol (HTTP, HTTP2, GRPC, TCP... or sniffed)."""

    name: str
    port: int
    protocol: str
    target_port: int | str | None = None

    @property
    def is_http(self) -> bool:
        """Ports routed by HTTP route configs. A sniffed (unnamed/unknown) port counts: the
        sidecar's outbound listener is an HTTP proxy, so what reaches it is HTTP."""
        return self.protocol in HTTP_FAMILY or self.protocol == UNSUPPORTED_PROTOCOL

    @property
    def is_http2(self) -> bool:
        return self.protocol in ("HTTP2", "GRPC", "GRPC-Web")

    @property
    def is_sniffed(self) -> bool:
        return self.protocol == UNSUPPORTED_PROTOCOL

    @property
    def is_tls(self) -> bool:
        """HTTPS and TLS ports: VirtualService `tls` routes (by SNI) apply to them, `tcp`
        routes do not (Istio's Protocol.IsTLS)."""
        return self.protocol in TLS_FAMILY


@dataclass(frozen=True)
class Endpoint:
    """One workload instance behind a service (a WorkloadEntry or a ServiceEntry endpoint).

    `ports` maps each service port number to the port this workload listens on for it.
    """

    address: str
    ports: Mapping[int, int]
    labels: Mapping[str, str] = field(default_factory=dict)
    workload: str = ""
    namespace: str = ""
    weight: int | None = None
    locality: str = ""

    def port_for(self, service_port: int) -> int | None:
        return self.ports.get(service_port)

    def selected_by(self, labels: Mapping[str, str] | None) -> bool:
        """Subset/selector semantics: every selector label is present with the same value."""
        return all(self.labels.get(k) == v for k, v in (labels or {}).items())


@dataclass(frozen=True)
class ServiceInstance:
    """A mesh service: one hostname, its ports and its endpoints.

    `resolution` follows Istio: STATIC means client-side load balancing over known
    endpoints (EDS), DNS/DNS_ROUND_ROBIN means Envoy resolves the endpoint names, NONE
    means no endpoints are known (Istio would pass traffic through to the original IP).
    """

    hostname: str
    name: str
    namespace: str
    source_kind: SourceKind
    source_name: str
    ports: tuple[ServicePort, ...]
    endpoints: tuple[Endpoint, ...] = ()
    resolution: str = "STATIC"
    location: str = "MESH_INTERNAL"
    selector: Mapping[str, str] | None = None
    addresses: tuple[str, ...] = ()
    creation_timestamp: str = ""
    # The declared exportTo (ServiceEntry spec.exportTo, or a Service's
    # networking.istio.io/exportTo annotation); empty means the mesh default applies.
    export_to: tuple[str, ...] = ()

    @property
    def is_kubernetes(self) -> bool:
        return self.source_kind == "Service"

    def port(self, number: int) -> ServicePort | None:
        return next((p for p in self.ports if p.port == number), None)

    @property
    def http_ports(self) -> tuple[ServicePort, ...]:
        return tuple(p for p in self.ports if p.is_http)

    @property
    def opaque_ports(self) -> tuple[ServicePort, ...]:
        """Ports whose bytes are not HTTP (TCP, TLS, HTTPS, Mongo...): reached by tunnelling
        through the outbound proxy with HTTP CONNECT, routed by `tcp`/`tls` rules."""
        return tuple(p for p in self.ports if not p.is_http)

    def endpoints_for(self, port: int, labels: Mapping[str, str] | None = None) -> list[Endpoint]:
        """Endpoints serving `port` (and matching subset `labels`), in a stable order."""
        found = [
            e for e in self.endpoints if e.port_for(port) is not None and e.selected_by(labels)
        ]
        return sorted(found, key=lambda e: (e.address, e.port_for(port) or 0, e.workload))
