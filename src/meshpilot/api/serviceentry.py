"""Istio ServiceEntry and WorkloadEntry (networking.istio.io): services outside the registry.

Mirrors `service_entry.proto` / `workload_entry.proto` and applies Istio's
ValidateServiceEntry / ValidateWorkloadEntry plus the CRD's CEL rules, so that what
istiod would refuse is refused here with the exact field. A ServiceEntry's `endpoints`
are WorkloadEntry specs; the same model serves the standalone WorkloadEntry kind.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .base import (
    HTTP_FAMILY,
    TCP_FAMILY,
    TLS_FAMILY,
    UNSUPPORTED_PROTOCOL,
    IstioModel,
    check_export_to,
    context_namespace,
    fqdn_problem,
    invalid,
    is_ip,
    is_istio_dns_label,
    istio_protocol,
    partial_wildcard_problem,
    wildcard_domain_problem,
)
from .errors import Issue, PathPart
from .gateway import UNIX_PREFIX, unix_address_problem

Location = Literal["MESH_EXTERNAL", "MESH_INTERNAL"]
Resolution = Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"]


def _fail(message: str, *, at: tuple[PathPart, ...] = (), hint: str | None = None) -> Exception:
    return PydanticCustomError("istio", "{message}", {"message": message, "at": at, "hint": hint})


def _warn(path: tuple[PathPart, ...], message: str, *, hint: str | None = None) -> Issue:
    return Issue(path=path, message=message, hint=hint, severity="warning")


# --- Istio label maps (labels.Instance.Validate) ----------------------------------------------

_LABEL_NAME = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_DNS_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_LABEL_KEY = re.compile(rf"^({_DNS_LABEL}(?:\.{_DNS_LABEL})*/)?({_LABEL_NAME})$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")


def istio_label_problem(key: str, value: str) -> str | None:
    """Why a label pair fails Istio's label check (Kubernetes syntax, Istio's messages)."""
    m = _LABEL_KEY.match(key)
    if m is None:
        return f"invalid tag key: {key!r}"
    if m.group(1) and len(m.group(1)) - 1 > 253:
        return f"invalid tag key: {key!r} (DNS prefix is too long)"
    if len(m.group(2)) > 63:
        return f"invalid tag key: {key!r} (name is too long)"
    if not _LABEL_VALUE.match(value):
        return f"invalid tag value: {value!r}"
    return None


def _check_labels(labels: dict[str, str] | None) -> dict[str, str] | None:
    for key, value in (labels or {}).items():
        if problem := istio_label_problem(key, value):
            raise _fail(problem, at=(key,))
    return labels


# --- WorkloadEntry ---------------------------------------------------------------------------


class WorkloadEntry(IstioModel):
    """One workload (VM, process, or ServiceEntry endpoint): an address plus port mapping."""

    address: str | None = None
    ports: dict[str, int] | None = None
    labels: dict[str, str] | None = None
    network: str | None = None
    locality: str | None = None
    weight: int | None = None
    service_account: str | None = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None and len(value) > 256:
            raise _fail("at most 256 labels are allowed")
        return _check_labels(value)

    @field_validator("address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if len(value) > 256:
            raise _fail("address must be at most 256 characters")
        if value.startswith(UNIX_PREFIX):
            if problem := unix_address_problem(value[len(UNIX_PREFIX) :]):
                raise _fail(problem, hint="use unix:///absolute/path or unix://@abstract")
        elif value and not is_ip(value) and fqdn_problem(value):
            raise _fail(f"endpoint address {value!r} is not a valid FQDN or an IP address")
        return value

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: dict[str, int] | None) -> dict[str, int] | None:
        if value is not None and len(value) > 128:
            raise _fail("at most 128 ports are allowed")
        for name, number in (value or {}).items():
            if not is_istio_dns_label(name):
                raise _fail(f"invalid port name: {name}", at=(name,))
            if not 1 <= number <= 65535:
                raise _fail(f"port number {number} must be in the range 1..65535", at=(name,))
        return value

    @field_validator("weight")
    @classmethod
    def _weight(cls, value: int | None) -> int | None:
        if value is not None and not 0 <= value <= 0xFFFFFFFF:
            raise _fail(f"weight {value} must be in the range 0..4294967295")
        return value

    @field_validator("network", "locality")
    @classmethod
    def _max_2048(cls, value: str | None) -> str | None:
        if value is not None and len(value) > 2048:
            raise _fail("must be at most 2048 characters")
        return value

    @field_validator("service_account")
    @classmethod
    def _max_253(cls, value: str | None) -> str | None:
        if value is not None and len(value) > 253:
            raise _fail("must be at most 253 characters")
        return value

    @property
    def is_unix(self) -> bool:
        return (self.address or "").startswith(UNIX_PREFIX)

    @model_validator(mode="after")
    def _rules(self) -> WorkloadEntry:
        if not self.address and not self.network:
            raise invalid(
                "address is required",
                at=("address",),
                hint="set an IP, a DNS name or unix:///path (or a network)",
            )
        if self.is_unix and self.ports:
            raise invalid(f"unix endpoint {self.address} must not include ports", at=("ports",))
        return self

    def warnings(self) -> list[Issue]:
        """Istio's warning for an address-less entry reached only through its network."""
        if not self.address and self.network:
            return [_warn(("address",), f"address is unset with network {self.network!r}")]
        return []


# --- ServiceEntry ----------------------------------------------------------------------------


def _check_se_host(host: str) -> str:
    if host == "*":
        raise _fail("invalid host '*': a ServiceEntry host cannot be the full wildcard")
    if problem := wildcard_domain_problem(host):
        raise _fail(problem)
    return host


def _check_address(value: str) -> str:
    if len(value) > 64:
        raise _fail("address must be at most 64 characters")
    if value.count("/") == 1:
        ip, _, bits = value.partition("/")
        try:
            if not bits.isdigit() or not is_ip(ip):
                raise ValueError
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise _fail(f"{value} is not a valid CIDR block") from None
    elif not is_ip(value):
        raise _fail(f"{value} is not a valid IP")
    return value


def _check_port_number(value: int) -> int:
    if not 1 <= value <= 65535:
        raise _fail(f"port number {value} must be in the range 1..65535")
    return value


def _check_port_name(value: str) -> str:
    if not is_istio_dns_label(value):
        raise _fail(f"invalid port name: {value}", hint="use a DNS label such as http or tcp-db")
    return value


def _check_se_protocol(value: str) -> str:
    if value and istio_protocol(value) == UNSUPPORTED_PROTOCOL:
        raise _fail(
            f"unsupported protocol: {value}",
            hint="use HTTP, HTTPS, HTTP2, GRPC, TCP, TLS, MONGO, REDIS or MYSQL, "
            "or leave it empty to detect it",
        )
    return value


PortNumber = Annotated[int, AfterValidator(_check_port_number)]


class ServicePort(IstioModel):
    """A port of the service; endpoints map `name` to their own port numbers."""

    number: PortNumber
    protocol: Annotated[str, AfterValidator(_check_se_protocol)] | None = None
    name: Annotated[str, AfterValidator(_check_port_name)]
    target_port: PortNumber | None = None

    @property
    def istio_protocol(self) -> str:
        """Canonical protocol; UnsupportedProtocol (unset or unknown) means "sniffed"."""
        return istio_protocol(self.protocol)


class WorkloadSelector(IstioModel):
    """Pods/WorkloadEntries (in the ServiceEntry's namespace) that back the service."""

    labels: dict[str, str] | None = None

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, val in (value or {}).items():
            if key == "":
                raise _fail(f"empty key is not supported in selector: '={val}'", at=(key,))
            if "*" in key or "*" in val:
                raise _fail(f"wildcard is not supported in selector: '{key}={val}'", at=(key,))
            if len(val) > 63:
                raise _fail("label values must be at most 63 characters", at=(key,))
        return value


class ServiceEntry(IstioModel):
    """ServiceEntry spec: adds hosts (and how to reach them) to the mesh's registry."""

    hosts: list[Annotated[str, AfterValidator(_check_se_host)]]
    addresses: list[Annotated[str, AfterValidator(_check_address)]] | None = None
    ports: list[ServicePort] | None = None
    location: Location | None = None
    resolution: Resolution | None = None
    endpoints: list[WorkloadEntry] | None = None
    workload_selector: WorkloadSelector | None = None
    export_to: list[str] | None = None
    subject_alt_names: list[str] | None = None

    @property
    def effective_resolution(self) -> str:
        return self.resolution or "NONE"

    @property
    def effective_location(self) -> str:
        return self.location or "MESH_EXTERNAL"

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        if not value:
            raise _fail("service entry must have at least one host")
        if len(value) > 256:
            raise _fail(f"at most 256 hosts are allowed (got {len(value)})")
        return value

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(value) > 256:
            raise _fail(f"at most 256 addresses are allowed (got {len(value)})")
        return value

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: list[ServicePort] | None) -> list[ServicePort] | None:
        if value is not None and len(value) > 256:
            raise _fail(f"at most 256 ports are allowed (got {len(value)})")
        names: set[str] = set()
        numbers: set[int] = set()
        for j, port in enumerate(value or []):
            if port.name in names:
                raise _fail(
                    f"service entry port name {port.name!r} already defined", at=(j, "name")
                )
            if port.number in numbers:
                raise _fail(f"service entry port {port.number} already defined", at=(j, "number"))
            names.add(port.name)
            numbers.add(port.number)
        return value

    @field_validator("endpoints")
    @classmethod
    def _endpoint_count(cls, value: list[WorkloadEntry] | None) -> list[WorkloadEntry] | None:
        if value is not None and len(value) > 4096:
            raise _fail(f"at most 4096 endpoints are allowed (got {len(value)})")
        return value

    @field_validator("export_to")
    @classmethod
    def _export_to(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        check_export_to(value, context_namespace(info), allow_none=True)
        return value

    @model_validator(mode="after")
    def _rules(self) -> ServiceEntry:
        if self.workload_selector is not None and self.endpoints:
            raise invalid(
                "only one of WorkloadSelector or Endpoints is allowed in Service Entry",
                at=("workloadSelector",),
            )
        resolution = self.effective_resolution
        for i, address in enumerate(self.addresses or []):
            if "/" in address and resolution not in ("NONE", "STATIC"):
                raise invalid(
                    "CIDR addresses are allowed only for NONE/STATIC resolution types",
                    at=("addresses", i),
                )
        port_names = {p.name for p in self.ports or []}
        endpoints = self.endpoints or []
        if resolution == "NONE" and endpoints:
            raise invalid(
                "no endpoints should be provided for resolution type NONE",
                at=("endpoints",),
                hint="use resolution STATIC (IP endpoints) or DNS (host name endpoints)",
            )
        if resolution == "STATIC":
            for i, ep in enumerate(endpoints):
                at: tuple[PathPart, ...] = ("endpoints", i)
                if ep.address and not ep.is_unix and not is_ip(ep.address):
                    raise invalid(
                        f"endpoint address {ep.address!r} is not a valid IP address",
                        at=(*at, "address"),
                        hint="STATIC resolution needs IP endpoints; use DNS for host names",
                    )
                self._check_endpoint_ports(ep, port_names, at)
                if ep.is_unix and len(port_names) != 1:
                    raise invalid(
                        "exactly 1 service port required for unix endpoints", at=(*at, "address")
                    )
        if resolution in ("DNS", "DNS_ROUND_ROBIN"):
            self._check_dns(resolution, port_names)
        if resolution == "DYNAMIC_DNS":
            self._check_dynamic_dns()
        if resolution != "NONE" and len(self.hosts) > 1:
            for j, port in enumerate(self.ports or []):
                proto = port.istio_protocol
                if proto not in HTTP_FAMILY and proto not in TLS_FAMILY:
                    raise invalid(
                        "multiple hosts provided with non-HTTP, non-TLS ports",
                        at=("ports", j),
                        hint="plain TCP cannot tell the hosts apart; use one ServiceEntry "
                        "per host or resolution NONE",
                    )
        return self

    @staticmethod
    def _check_endpoint_ports(
        ep: WorkloadEntry, port_names: set[str], at: tuple[PathPart, ...]
    ) -> None:
        for name, number in (ep.ports or {}).items():
            if name not in port_names:
                raise invalid(
                    f"endpoint port {number} is not defined by the service entry "
                    f"(no port named {name!r})",
                    at=(*at, "ports", name),
                    hint="endpoint ports map a ServiceEntry port name to the endpoint's port",
                )

    def _check_dns(self, resolution: str, port_names: set[str]) -> None:
        endpoints = self.endpoints or []
        if not endpoints:
            for i, host in enumerate(self.hosts):
                if problem := fqdn_problem(host):
                    raise invalid(
                        "hosts must be FQDN or contain only prefix wildcards if no endpoints "
                        f"are provided for resolution mode {resolution}, {problem}",
                        at=("hosts", i),
                        hint="add endpoints, or use resolution NONE for wildcard hosts",
                    )
        if resolution == "DNS_ROUND_ROBIN" and len(endpoints) > 1:
            raise invalid(
                f"there must only be 0 or 1 endpoint for resolution mode {resolution}",
                at=("endpoints",),
            )
        for i, ep in enumerate(endpoints):
            address = ep.address or ""
            if not is_ip(address) and fqdn_problem(address):
                raise invalid(
                    f"endpoint address {address!r} is not a valid FQDN or an IP address",
                    at=("endpoints", i, "address"),
                )
            self._check_endpoint_ports(ep, port_names, ("endpoints", i))

    def _check_dynamic_dns(self) -> None:
        mode = "DYNAMIC_DNS"
        for i, host in enumerate(self.hosts):
            if not host.startswith("*"):
                raise invalid(
                    f"host must be wildcarded for resolution mode {mode}", at=("hosts", i)
                )
        if self.addresses:
            raise invalid(
                f"addresses cannot be set for resolution type {mode}; HTTP route "
                "domains are generated from hosts only",
                at=("addresses",),
            )
        if self.endpoints:
            raise invalid(
                f"endpoints cannot be set for resolution type {mode}; the destination "
                "address comes from the requested host",
                at=("endpoints",),
            )
        for j, port in enumerate(self.ports or []):
            if port.istio_protocol not in ("HTTP", "TLS", "GRPC", "HTTP2"):
                raise invalid(
                    f"only HTTP, TLS, GRPC, and HTTP2 protocols are supported for "
                    f"resolution type {mode}",
                    at=("ports", j, "protocol"),
                )

    def warnings(self) -> list[Issue]:
        """Istio's ServiceEntry warnings (each is accepted by istiod)."""
        out: list[Issue] = []
        resolution = self.effective_resolution
        if resolution != "DYNAMIC_DNS":
            for i, host in enumerate(self.hosts):
                if problem := partial_wildcard_problem(host):
                    out.append(_warn(("hosts", i), problem))
        sel = self.workload_selector
        if sel is not None:
            if not sel.labels:
                out.append(
                    _warn(
                        ("workloadSelector",),
                        "service entry: workload selector specified without labels, will be "
                        "applied to all services in namespace",
                    )
                )
            if resolution == "NONE":
                out.append(
                    _warn(
                        ("workloadSelector",),
                        "workloadSelector should not be set when resolution mode is NONE",
                    )
                )
            if self.effective_location == "MESH_EXTERNAL":
                out.append(
                    _warn(
                        ("workloadSelector",),
                        "workloadSelector applies only to MESH_INTERNAL services",
                    )
                )
        # Istio auto-allocates a VIP except with resolution NONE (or user addresses).
        if not self.addresses and resolution == "NONE":
            for j, port in enumerate(self.ports or []):
                if port.protocol in (None, "", "TCP"):
                    out.append(
                        _warn(
                            ("ports", j),
                            "addresses are required for ports serving TCP (or unset) protocol "
                            "when IP Autoallocation is not enabled",
                            hint="without addresses, all traffic to this port on any IP matches",
                        )
                    )
        tcp_port = any(p.istio_protocol in TCP_FAMILY for p in self.ports or [])
        dns = resolution in ("DNS", "DNS_ROUND_ROBIN")
        if dns and self.addresses and len(self.hosts) > 1 and tcp_port:
            out.append(
                _warn(
                    ("hosts",),
                    "service entry can not have more than one host specified simultaneously "
                    "with address and tcp port",
                )
            )
        for i, ep in enumerate(self.endpoints or []):
            out.extend(w.located(path=("endpoints", i, *w.path)) for w in ep.warnings())
        return out
