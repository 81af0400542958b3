"""Kubernetes core/v1 Service and Secret bodies, checked as the API server checks them.

meshpilot has no API server, so these models carry the Kubernetes validation a user
would otherwise get from `kubectl apply` (port ranges, port names, IANA service names,
Secret data keys and base64). `service_port_protocol` reproduces how Istio derives a
Service port's protocol, which later stages need to build listeners.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .base import (
    UNSUPPORTED_PROTOCOL,
    IstioModel,
    invalid,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_ip,
    istio_protocol,
)
from .errors import Issue, PathPart


def _fail(message: str, *, at: tuple[PathPart, ...] = (), hint: str | None = None) -> Exception:
    return PydanticCustomError("istio", "{message}", {"message": message, "at": at, "hint": hint})


def _warn(path: tuple[PathPart, ...], message: str, *, hint: str | None = None) -> Issue:
    return Issue(path=path, message=message, hint=hint, severity="warning")


# --- Kubernetes name syntax ----------------------------------------------------------------

_IANA_SVC_NAME = re.compile(r"^[-a-z0-9]+$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_BASE64 = re.compile(r"^[A-Za-z0-9+/]*={0,2}$")


def iana_svc_name_problem(name: str) -> str | None:
    """Kubernetes IsValidPortName: the named-port form of a targetPort."""
    if not 1 <= len(name) <= 15:
        return "must be no more than 15 characters"
    if not _IANA_SVC_NAME.match(name):
        return "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
    if not re.search(r"[a-z]", name):
        return "must contain at least one letter (a-z)"
    if "--" in name:
        return "must not contain consecutive hyphens"
    if name.startswith("-") or name.endswith("-"):
        return "must not begin or end with a hyphen"
    return None


def qualified_name_problem(name: str) -> str | None:
    """Kubernetes IsQualifiedName: `[dns-subdomain/]name`, as label keys and appProtocol."""
    prefix, slash, short = name.rpartition("/")
    if slash and (not prefix or not is_dns1123_subdomain(prefix)):
        return f"prefix {prefix!r} must be a lowercase DNS subdomain"
    if not short or len(short) > 63 or not _QUALIFIED_NAME.match(short):
        return (
            "name part must be at most 63 alphanumeric characters, '-', '_' or '.', "
            "starting and ending with an alphanumeric character"
        )
    return None


def config_key_problem(key: str) -> str | None:
    """Kubernetes IsConfigMapKey: what a Secret/ConfigMap data key may be."""
    if len(key) > 253:
        return "must be no more than 253 characters"
    if not _CONFIG_KEY.match(key):
        return (
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.' "
            "(e.g. 'key.name', or 'KEY_NAME', or 'key-name')"
        )
    if key in (".", ".."):
        return f"must not be {key!r}"
    if key.startswith(".."):
        return "must not start with '..'"
    return None


def _check_selector(selector: dict[str, str] | None) -> dict[str, str] | None:
    for key, value in (selector or {}).items():
        if problem := qualified_name_problem(key):
            raise _fail(f"invalid label key {key!r}: {problem}", at=(key,))
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise _fail(
                f"invalid label value {value!r}: at most 63 alphanumeric characters, '-', '_' "
                "or '.', starting and ending with an alphanumeric character",
                at=(key,),
            )
    return selector


# --- Service -------------------------------------------------------------------------------


def _check_int_or_string(value: Any) -> int | str:
    """targetPort: a port number, or the name of a container port (IANA_SVC_NAME)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _fail("targetPort must be a port number or a port name")
    if isinstance(value, int):
        if value != 0 and not 1 <= value <= 65535:  # 0 defaults to `port`
            raise _fail(f"targetPort {value} must be between 1 and 65535, inclusive")
        return value
    if value and (problem := iana_svc_name_problem(value)):
        raise _fail(f"targetPort {value!r} is not a valid port name: {problem}")
    return value


IntOrString = Annotated[Any, AfterValidator(_check_int_or_string)]
"""Kubernetes IntOrString: one field, checked by one validator so error paths stay flat."""


class ServicePort(IstioModel):
    """One port of a Kubernetes Service."""

    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] | None = None
    app_protocol: str | None = None
    port: int
    target_port: IntOrString | None = None
    node_port: int | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value and not is_dns1123_label(value):
            raise _fail(
                f"invalid port name {value!r}: must be a lowercase DNS-1123 label",
                hint="e.g. http, http-web or grpc-api; the prefix tells Istio the protocol",
            )
        return value

    @field_validator("port", "node_port")
    @classmethod
    def _range(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 65535:
            raise _fail(f"{value} must be between 1 and 65535, inclusive")
        return value

    @field_validator("app_protocol")
    @classmethod
    def _app_protocol(cls, value: str | None) -> str | None:
        if value is not None and (problem := qualified_name_problem(value)):
            raise _fail(f"invalid appProtocol {value!r}: {problem}")
        return value

    @property
    def effective_protocol(self) -> str:
        return self.protocol or "TCP"

    @property
    def effective_target_port(self) -> int | str:
        """Where traffic goes: Kubernetes defaults a missing/0/"" targetPort to `port`."""
        return self.target_port if self.target_port not in (None, 0, "") else self.port


class ClientIPConfig(IstioModel):
    timeout_seconds: int | None = None

    @field_validator("timeout_seconds")
    @classmethod
    def _timeout(cls, value: int | None) -> int | None:
        if value is not None and not 0 < value <= 86400:
            raise _fail(f"timeoutSeconds {value} must be greater than 0 and at most 86400")
        return value


class SessionAffinityConfig(IstioModel):
    client_ip: ClientIPConfig | None = Field(default=None, alias="clientIP")


ServiceType = Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]


class Service(IstioModel):
    """Kubernetes Service spec: the ports and pod selector Istio builds a service from."""

    selector: Annotated[dict[str, str], AfterValidator(_check_selector)] | None = None
    ports: list[ServicePort] | None = None
    type: ServiceType | None = None
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    cluster_ips: list[str] | None = Field(default=None, alias="clusterIPs")
    external_name: str | None = None
    external_ips: list[str] | None = Field(default=None, alias="externalIPs")
    session_affinity: Literal["None", "ClientIP"] | None = None
    session_affinity_config: SessionAffinityConfig | None = None
    ip_families: list[Literal["IPv4", "IPv6"]] | None = None
    ip_family_policy: Literal["SingleStack", "PreferDualStack", "RequireDualStack"] | None = None
    publish_not_ready_addresses: bool | None = None
    external_traffic_policy: Literal["Cluster", "Local"] | None = None
    internal_traffic_policy: Literal["Cluster", "Local"] | None = None
    health_check_node_port: int | None = None
    load_balancer_ip: str | None = Field(default=None, alias="loadBalancerIP")
    load_balancer_source_ranges: list[str] | None = None
    load_balancer_class: str | None = None
    allocate_load_balancer_node_ports: bool | None = None
    traffic_distribution: str | None = None

    @property
    def effective_type(self) -> str:
        return self.type or "ClusterIP"

    @property
    def is_headless(self) -> bool:
        return self.cluster_ip == "None"

    @field_validator("cluster_ip")
    @classmethod
    def _cluster_ip(cls, value: str | None) -> str | None:
        if value and value != "None" and not is_ip(value):
            raise _fail("must be empty, 'None', or a valid IP address")
        return value

    @field_validator("cluster_ips")
    @classmethod
    def _cluster_ips(cls, value: list[str] | None) -> list[str] | None:
        value = value or []
        if len(value) > 2:
            raise _fail("may only hold up to 2 values")
        for i, ip in enumerate(value):
            if ip == "None" and len(value) == 1:
                continue
            if not is_ip(ip):
                raise _fail("must be 'None' (alone) or a valid IP address", at=(i,))
        if len(value) == 2 and is_ip(value[0]) and _family(value[0]) == _family(value[1]):
            raise _fail("may specify no more than one IP for each IP family", at=(1,))
        return value or None

    @field_validator("external_ips")
    @classmethod
    def _external_ips(cls, value: list[str] | None) -> list[str] | None:
        for i, ip in enumerate(value or []):
            if not is_ip(ip):
                raise _fail(f"{ip!r} must be a valid IP address", at=(i,))
        return value

    @field_validator("ip_families")
    @classmethod
    def _ip_families(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(value) > 2:
            raise _fail("may specify no more than 2 ipFamilies")
        if value and len(set(value)) != len(value):
            raise _fail("duplicate IP family", at=(1,))
        return value

    @field_validator("load_balancer_source_ranges")
    @classmethod
    def _source_ranges(cls, value: list[str] | None) -> list[str] | None:
        for i, cidr in enumerate(value or []):
            try:
                ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                raise _fail(
                    f"{cidr!r} must be an IP range such as 10.240.0.0/24", at=(i,)
                ) from None
        return value

    @field_validator("external_name")
    @classmethod
    def _external_name(cls, value: str | None) -> str | None:
        if value and not is_dns1123_subdomain(value.removesuffix(".")):
            raise _fail(f"{value!r} must be a lowercase DNS-1123 subdomain, e.g. example.com")
        return value

    @model_validator(mode="after")
    def _rules(self) -> Service:
        kind = self.effective_type
        ports = self.ports or []
        if not ports and not self.is_headless and kind != "ExternalName":
            raise invalid(
                "required field is missing",
                at=("ports",),
                hint="a Service needs at least one port (unless headless or ExternalName)",
            )
        if kind == "ExternalName":
            if self.cluster_ip:
                raise invalid("must be empty for ExternalName services", at=("clusterIP",))
            if not self.external_name:
                raise invalid(
                    "required field is missing for ExternalName services", at=("externalName",)
                )
        if kind in ("NodePort", "LoadBalancer") and self.is_headless:
            raise invalid(f"may not be set to 'None' for {kind} services", at=("clusterIP",))
        if self.cluster_ip and self.cluster_ips and self.cluster_ips[0] != self.cluster_ip:
            raise invalid("must match clusterIP when clusterIPs[0] is set", at=("clusterIPs", 0))
        self._check_ports(kind, ports)
        self._check_families()
        self._check_affinity()
        self._check_type_fields(kind)
        return self

    @staticmethod
    def _check_ports(kind: str, ports: list[ServicePort]) -> None:
        names: set[str] = set()
        seen: set[tuple[int, str]] = set()
        node_ports: set[tuple[int, str]] = set()
        for i, port in enumerate(ports):
            at: tuple[PathPart, ...] = ("ports", i)
            if len(ports) > 1 and not port.name:
                raise invalid(
                    "required field is missing: every port needs a name when the "
                    "Service has more than one port",
                    at=(*at, "name"),
                )
            if port.name:
                if port.name in names:
                    raise invalid(f"duplicate port name {port.name!r}", at=(*at, "name"))
                names.add(port.name)
            key = (port.port, port.effective_protocol)
            if key in seen:
                raise invalid(f"duplicate port {port.port}/{key[1]}", at=at)
            seen.add(key)
            if port.node_port is not None:
                if kind == "ClusterIP":
                    raise invalid(
                        "may not be used when `type` is 'ClusterIP'", at=(*at, "nodePort")
                    )
                node_key = (port.node_port, port.effective_protocol)
                if node_key in node_ports:
                    raise invalid(f"duplicate nodePort {port.node_port}", at=(*at, "nodePort"))
                node_ports.add(node_key)

    def _check_families(self) -> None:
        families = self.ip_families or []
        if self.ip_family_policy == "SingleStack":
            if len(families) > 1:
                raise invalid(
                    "must be RequireDualStack or PreferDualStack when multiple "
                    "ipFamilies are specified",
                    at=("ipFamilyPolicy",),
                )
            if self.cluster_ips and len(self.cluster_ips) > 1:
                raise invalid(
                    "must be RequireDualStack or PreferDualStack when multiple "
                    "clusterIPs are specified",
                    at=("ipFamilyPolicy",),
                )
        if self.is_headless or not self.cluster_ips:
            return
        for i, ip in enumerate(self.cluster_ips):
            if i < len(families) and _family(ip) != families[i]:
                raise invalid(
                    f"expected an {families[i]} address to match ipFamilies[{i}]",
                    at=("clusterIPs", i),
                )

    def _check_affinity(self) -> None:
        if self.session_affinity == "ClientIP":
            return
        if self.session_affinity_config is not None:
            raise invalid(
                "must not be set when session affinity is None", at=("sessionAffinityConfig",)
            )

    def _check_type_fields(self, kind: str) -> None:
        external = kind in ("NodePort", "LoadBalancer") or bool(self.external_ips)
        if self.external_traffic_policy is not None and not external:
            raise invalid(
                "may only be set for externally-accessible services", at=("externalTrafficPolicy",)
            )
        lb_only = (
            ("load_balancer_source_ranges", "loadBalancerSourceRanges"),
            ("load_balancer_class", "loadBalancerClass"),
            ("allocate_load_balancer_node_ports", "allocateLoadBalancerNodePorts"),
        )
        for attr, alias in lb_only:
            if getattr(self, attr) is not None and kind != "LoadBalancer":
                raise invalid("may only be used when `type` is 'LoadBalancer'", at=(alias,))
        if self.load_balancer_class is not None and (
            problem := qualified_name_problem(self.load_balancer_class)
        ):
            raise invalid(problem, at=("loadBalancerClass",))
        if self.health_check_node_port is not None and (
            kind != "LoadBalancer" or self.external_traffic_policy != "Local"
        ):
            raise invalid(
                "may only be set when `type` is 'LoadBalancer' and "
                "`externalTrafficPolicy` is 'Local'",
                at=("healthCheckNodePort",),
            )

    def warnings(self) -> list[Issue]:
        """Istio's view of the Service: ports whose protocol it must guess (IST0118)."""
        out: list[Issue] = []
        if self.effective_type == "ExternalName" and self.selector:
            out.append(_warn(("selector",), "selector is ignored for ExternalName services"))
        for i, port in enumerate(self.ports or []):
            if port.effective_protocol != "TCP" or port.app_protocol is not None:
                continue
            if service_port_protocol(port) == UNSUPPORTED_PROTOCOL:
                shown = repr(port.name) if port.name else "(unnamed)"
                out.append(
                    _warn(
                        ("ports", i, "name") if port.name else ("ports", i),
                        f"port name {shown} does not follow Istio's <protocol>[-<suffix>] naming "
                        "convention; the protocol will be detected from the traffic",
                        hint="name it http, http-*, grpc-*, tcp-*... or set appProtocol",
                    )
                )
        return out


def _family(ip: str) -> str:
    return "IPv6" if ":" in ip else "IPv4"


# Ports Istio treats as TCP when a name gives no protocol (SMTP, DNS, MySQL, MongoDB).
_WELL_KNOWN_TCP_PORTS = frozenset({25, 53, 3306, 27017})


def service_port_protocol(port: ServicePort) -> str:
    """The Istio protocol of a Service port (kube.ConvertProtocol).

    UDP wins; then appProtocol (with the kubernetes.io/h2c, ws, wss aliases), else the
    port name; a `grpc-web` prefix, then the text before the first `-`, is parsed like
    any Istio protocol. An unknown result stays UnsupportedProtocol (Istio sniffs the
    traffic) except on a few well-known TCP ports.
    """
    if port.protocol == "UDP":
        return "UDP"
    name = port.name or ""
    if port.app_protocol is not None:
        name = port.app_protocol
        aliases = {
            "kubernetes.io/h2c": "HTTP2",
            "kubernetes.io/ws": "HTTP",
            "kubernetes.io/wss": "HTTPS",
        }
        if name in aliases:
            return aliases[name]
    if name[:8].lower() == "grpc-web":
        return "GRPC-Web"
    proto = istio_protocol(name.split("-", 1)[0])
    if proto == UNSUPPORTED_PROTOCOL and port.port in _WELL_KNOWN_TCP_PORTS:
        return "TCP"
    return proto


# --- Secret --------------------------------------------------------------------------------

MAX_SECRET_BYTES = 1024 * 1024

# Keys each well-known Secret type must carry (at least one of each inner tuple).
_REQUIRED_KEYS: dict[str, tuple[tuple[str, ...], ...]] = {
    "kubernetes.io/tls": (("tls.crt",), ("tls.key",)),
    "kubernetes.io/basic-auth": (("username", "password"),),
    "kubernetes.io/ssh-auth": (("ssh-privatekey",),),
    "kubernetes.io/dockercfg": ((".dockercfg",),),
    "kubernetes.io/dockerconfigjson": ((".dockerconfigjson",),),
}


def _decode_base64(text: str) -> bytes:
    """Kubernetes decodes `data` values as standard, padded base64 (newlines ignored)."""
    text = text.replace("\n", "").replace("\r", "")
    if len(text) % 4 or not _BASE64.match(text):
        raise ValueError("not standard padded base64")
    return base64.b64decode(text, validate=True)


def _check_data(data: dict[str, str] | None) -> dict[str, str] | None:
    for key, value in (data or {}).items():
        if problem := config_key_problem(key):
            raise _fail(f"invalid key {key!r}: {problem}", at=(key,))
        try:
            _decode_base64(value)
        except (binascii.Error, ValueError):
            raise _fail(
                "value is not valid base64",
                at=(key,),
                hint="encode it (base64 -w0 file) or put the plain text under stringData",
            ) from None
    return data


def _check_string_data(data: dict[str, str] | None) -> dict[str, str] | None:
    for key in data or {}:
        if problem := config_key_problem(key):
            raise _fail(f"invalid key {key!r}: {problem}", at=(key,))
    return data


class SecretBody(IstioModel):
    """A Secret's top-level fields; gateways read TLS credentials from it."""

    type: str | None = None
    data: Annotated[dict[str, str], AfterValidator(_check_data)] | None = None
    string_data: Annotated[dict[str, str], AfterValidator(_check_string_data)] | None = None
    immutable: bool | None = None

    @property
    def effective_type(self) -> str:
        return self.type or "Opaque"

    @model_validator(mode="after")
    def _rules(self) -> SecretBody:
        merged = secret_data(self)
        if sum(len(v) for v in merged.values()) > MAX_SECRET_BYTES:
            raise invalid(f"secret data must have at most {MAX_SECRET_BYTES} bytes", at=("data",))
        kind = self.effective_type
        for options in _REQUIRED_KEYS.get(kind, ()):
            if not any(merged.get(key) for key in options):
                raise invalid(
                    "required field is missing",
                    at=("data", options[0]),
                    hint=f"a {kind} Secret needs "
                    + " or ".join(repr(k) for k in options)
                    + " in data or stringData",
                )
        json_key = {
            "kubernetes.io/dockercfg": ".dockercfg",
            "kubernetes.io/dockerconfigjson": ".dockerconfigjson",
        }.get(kind)
        if json_key is not None:
            try:
                json.loads(merged[json_key])
            except ValueError:
                raise invalid("must be valid JSON", at=("data", json_key)) from None
        return self

    def warnings(self) -> list[Issue]:
        """TLS material that will not load into Envoy (it would fail only at push time)."""
        out: list[Issue] = []
        merged = secret_data(self)
        pem_keys = ("tls.crt", "tls.key", "ca.crt")
        if self.effective_type != "kubernetes.io/tls" and "cert" in merged:
            pem_keys = ("cert", "key", "cacert")  # Istio's Opaque gateway-credential layout
        for key in pem_keys:
            if key in merged and b"-----BEGIN" not in merged[key]:
                where = "stringData" if key in (self.string_data or {}) else "data"
                out.append(
                    _warn(
                        (where, key),
                        f"{key} does not look like PEM data",
                        hint="expected a -----BEGIN ...----- block",
                    )
                )
        return out


def secret_data(body: SecretBody) -> dict[str, bytes]:
    """The Secret's data as bytes: `data` decoded, then `stringData` written over it."""
    out = {k: _decode_base64(v) for k, v in (body.data or {}).items()}
    out.update({k: v.encode() for k, v in (body.string_data or {}).items()})
    return out
