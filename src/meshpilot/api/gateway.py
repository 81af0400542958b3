"""Istio Gateway (networking.istio.io): the servers a gateway proxy listens with.

Mirrors `networking/v1alpha3/gateway.proto` field for field and applies the checks of
Istio's ValidateGateway (plus the CRD's list-size and one-of rules), so a Gateway that
istiod would reject is rejected here with the field that is wrong. Istio's warnings
(ignored cipher suites, httpsRedirect on a non-HTTP server...) come from `warnings()`.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, field_validator, model_validator
from pydantic_core import PydanticCustomError

from .base import (
    HTTP_FAMILY,
    TLS_FAMILY,
    UNSUPPORTED_PROTOCOL,
    IstioModel,
    invalid,
    is_ip,
    is_istio_dns_label,
    istio_protocol,
    partial_wildcard_problem,
    wildcard_domain_problem,
)
from .errors import Issue, PathPart

UNIX_PREFIX = "unix://"

TLSMode = Literal[
    "PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"
]
TLSProtocol = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]
_TLS_ORDER = {"TLSV1_0": 0, "TLSV1_1": 1, "TLSV1_2": 2, "TLSV1_3": 3}

# Cipher names Envoy's BoringSSL accepts on a gateway (Istio's security.ValidCipherSuites).
VALID_CIPHER_SUITES = frozenset({
    "ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305", "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA", "ECDHE-RSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA", "AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA",
    "AES256-SHA", "DES-CBC3-SHA",
})  # fmt: skip


def is_valid_cipher_suite(name: str) -> bool:
    """Istio's IsValidCipherSuite: known names, `ALL`, or an OpenSSL operator expression."""
    if name in ("", "ALL"):
        return True
    if not name[0].isalnum():
        return True  # `-X`, `+X`, `!X` expressions are passed through unparsed
    return name in VALID_CIPHER_SUITES


def _fail(message: str) -> PydanticCustomError:
    return PydanticCustomError("istio", "{message}", {"message": message, "at": ()})


def unix_address_problem(path: str) -> str | None:
    """Istio's ValidateUnixAddress for the part after `unix://`."""
    if not path:
        return "unix address must not be empty"
    if path.startswith("@"):
        return None  # abstract socket
    if not path.startswith("/") or path.endswith("/"):
        return f"{path} is not an absolute path to a file"
    return None


def gateway_host_problem(host: str) -> str | None:
    """Why `host` is not a valid Gateway server host (`[namespace/]dnsName`)."""
    ns, slash, name = host.partition("/")
    if not slash:
        return _gateway_dns_name_problem(host)
    if not ns or not name:
        return "config namespace and dnsName in host entry cannot be empty"
    if ns not in ("*", ".") and not is_istio_dns_label(ns):
        return f"invalid namespace value {ns!r} in gateway"
    return _gateway_dns_name_problem(name)


def _gateway_dns_name_problem(name: str) -> str | None:
    if name != "*" and "." not in name:
        return f"short names (non FQDN) are not allowed: {name!r}"
    problem = wildcard_domain_problem(name)
    if problem and not is_ip(name):
        return problem
    return partial_wildcard_problem(name)


def _check_gateway_host(host: str) -> str:
    if problem := gateway_host_problem(host):
        raise _fail(problem)
    return host


GatewayHost = Annotated[str, AfterValidator(_check_gateway_host)]


def _check_protocol(value: str) -> str:
    if istio_protocol(value) == UNSUPPORTED_PROTOCOL:
        raise PydanticCustomError(
            "istio",
            "{message}",
            {
                "message": f"invalid protocol {value!r}",
                "at": (),
                "hint": "supported protocols are HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, "
                "MONGO, REDIS, MYSQL",
            },
        )
    return value


class Port(IstioModel):
    """The port a server listens on; `name` must be unique within the Gateway."""

    number: int
    protocol: Annotated[str, AfterValidator(_check_protocol)]
    name: str
    target_port: int | None = None  # deprecated in Istio; any value is rejected

    @field_validator("name")
    @classmethod
    def _name_set(cls, value: str) -> str:
        if not value:
            raise _fail("port name must be set")
        return value

    @field_validator("target_port")
    @classmethod
    def _no_target_port(cls, value: int | None) -> int | None:
        if value is not None and value > 0:
            raise _fail("targetPort has no impact on Gateways")
        return value


class TLSCertificate(IstioModel):
    """One file-based certificate pair of `tlsCertificates`."""

    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None


class ServerTLSSettings(IstioModel):
    """How a server terminates (or passes through) TLS."""

    https_redirect: bool | None = None
    mode: TLSMode | None = None
    server_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    ca_crl: str | None = None
    credential_name: str | None = None
    credential_names: list[str] | None = None
    ca_cert_credential_name: str | None = None
    tls_certificates: list[TLSCertificate] | None = None
    subject_alt_names: list[str] | None = None
    verify_certificate_spki: list[str] | None = None
    verify_certificate_hash: list[str] | None = None
    min_protocol_version: TLSProtocol | None = None
    max_protocol_version: TLSProtocol | None = None
    cipher_suites: list[str] | None = None
    insecure_skip_verify: bool | None = None

    @property
    def effective_mode(self) -> str:
        """The mode Istio uses: the proto default (enum 0) is PASSTHROUGH."""
        return self.mode or "PASSTHROUGH"

    @field_validator("credential_names", "tls_certificates")
    @classmethod
    def _one_or_two(cls, value: list | None) -> list | None:
        # CRD MinItems=1 / MaxItems=2: at most an RSA and an ECDSA certificate.
        if value is not None and not 1 <= len(value) <= 2:
            raise _fail(f"must hold 1 or 2 entries (got {len(value)})")
        return value

    def _file_fields_set(self) -> list[str]:
        names = ("server_certificate", "private_key", "ca_certificates", "ca_crl")
        return [n for n in names if getattr(self, n)]

    @model_validator(mode="after")
    def _rules(self) -> ServerTLSSettings:
        mode = self.effective_mode
        if mode == "ISTIO_MUTUAL":
            for attr, what in (
                ("server_certificate", "server certificate"),
                ("private_key", "private key"),
                ("ca_certificates", "CA bundle"),
                ("tls_certificates", "tlsCertificates"),
                ("credential_name", "credentialName"),
                ("credential_names", "credentialNames"),
            ):
                if getattr(self, attr):
                    raise invalid(
                        f"ISTIO_MUTUAL TLS cannot have associated {what}",
                        at=(_alias(attr),),
                        hint="ISTIO_MUTUAL uses the mesh's own certificates",
                    )
            return self._check_versions()

        sources = [
            name
            for name, present in (
                ("serverCertificate/privateKey", self.server_certificate and self.private_key),
                ("credentialName", self.credential_name),
                ("credentialNames", self.credential_names),
                ("tlsCertificates", self.tls_certificates),
            )
            if present
        ]
        if len(sources) > 1:
            raise invalid(
                "only one of credentialName, credentialNames, serverCertificate/privateKey, "
                f"tlsCertificates should be specified (got {', '.join(sources)})"
            )

        terminating = mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")
        if terminating and (self.credential_name or self.credential_names):
            return self._check_versions()  # the secret supplies certificate, key, CA and CRL
        if terminating:
            label = "SIMPLE TLS" if mode == "SIMPLE" else "MUTUAL TLS"
            if mode != "SIMPLE" and not self.ca_certificates:
                raise invalid(
                    f"{label} requires a client CA bundle",
                    at=("caCertificates",),
                    hint="set caCertificates, or use credentialName with a secret holding ca.crt",
                )
            if self.tls_certificates:
                for i, cert in enumerate(self.tls_certificates):
                    self._check_pair(
                        label, cert.server_certificate, cert.private_key, ("tlsCertificates", i)
                    )
            else:
                self._check_pair(label, self.server_certificate, self.private_key, ())
        if self.ca_crl:
            if self.credential_name:
                raise invalid(
                    "CRL is not supported with credentialName; put the CRL in the credential",
                    at=("caCrl",),
                )
            if mode == "SIMPLE":
                raise invalid("CRL is not supported with SIMPLE TLS", at=("caCrl",))
        return self._check_versions()

    @staticmethod
    def _check_pair(
        label: str, cert: str | None, key: str | None, at: tuple[PathPart, ...]
    ) -> None:
        hint = "or reference a Kubernetes TLS secret with credentialName"
        if not cert:
            raise invalid(
                f"{label} requires a server certificate", at=(*at, "serverCertificate"), hint=hint
            )
        if not key:
            raise invalid(f"{label} requires a private key", at=(*at, "privateKey"), hint=hint)

    def _check_versions(self) -> ServerTLSSettings:
        # Not an Istio check: Envoy cannot negotiate when min > max, so catch it here.
        low, high = self.min_protocol_version, self.max_protocol_version
        if low in _TLS_ORDER and high in _TLS_ORDER and _TLS_ORDER[low] > _TLS_ORDER[high]:
            raise invalid(
                f"minProtocolVersion {low} is higher than maxProtocolVersion {high}",
                at=("minProtocolVersion",),
            )
        return self

    def issues(self, at: tuple[PathPart, ...]) -> list[Issue]:
        """Istio's warnings for these settings (they are accepted, partly ignored)."""
        out: list[Issue] = []
        if self.min_protocol_version in ("TLSV1_0", "TLSV1_1") and not self.cipher_suites:
            out.append(
                _warn(
                    (*at, "minProtocolVersion"),
                    "TLS versions below TLSV1_2 need compatible cipherSuites: the default "
                    "ciphers no longer include any",
                )
            )
        seen: set[str] = set()
        for j, suite in enumerate(self.cipher_suites or []):
            if not is_valid_cipher_suite(suite):
                out.append(
                    _warn(
                        (*at, "cipherSuites", j),
                        f"ignoring invalid cipher suite {suite!r}",
                        hint="see Envoy's cipher_suites for the supported names",
                    )
                )
            elif suite in seen:
                out.append(
                    _warn((*at, "cipherSuites", j), f"ignoring duplicate cipher suite {suite!r}")
                )
            seen.add(suite)
        if self.effective_mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH") and (
            self._file_fields_set()
            or self.tls_certificates
            or self.credential_name
            or self.credential_names
        ):
            out.append(
                _warn(
                    at,
                    f"{self.effective_mode} mode does not use certificates, they will be ignored",
                    hint=None
                    if self.mode
                    else "mode defaults to PASSTHROUGH; set mode: SIMPLE to terminate TLS",
                )
            )
        return out


def _alias(attr: str) -> str:
    return ServerTLSSettings.model_fields[attr].alias or attr


def _warn(path: tuple[PathPart, ...], message: str, *, hint: str | None = None) -> Issue:
    return Issue(path=path, message=message, hint=hint, severity="warning")


class Server(IstioModel):
    """One listener of the gateway: a port, the hosts it serves, and optional TLS."""

    port: Port
    bind: str | None = None
    hosts: list[GatewayHost]
    tls: ServerTLSSettings | None = None
    default_endpoint: str | None = None
    name: str | None = None

    @field_validator("hosts")
    @classmethod
    def _some_hosts(cls, value: list[str]) -> list[str]:
        if not value:
            raise _fail("server config must contain at least one host")
        return value

    @field_validator("bind")
    @classmethod
    def _bind(cls, value: str | None) -> str | None:
        if not value:
            return value
        if value.startswith(UNIX_PREFIX):
            if problem := unix_address_problem(value[len(UNIX_PREFIX) :]):
                raise _fail(problem)
        elif not is_ip(value):
            raise _fail(f"{value} is not a valid IP")
        return value

    @property
    def protocol(self) -> str:
        """Istio's canonical protocol of this server (`GRPC-Web`, `HTTP`, ...)."""
        return istio_protocol(self.port.protocol)

    @model_validator(mode="after")
    def _rules(self) -> Server:
        unix = (self.bind or "").startswith(UNIX_PREFIX)
        number = self.port.number
        if (number > 0 or not unix) and not 1 <= number <= 65535:
            raise invalid(
                f"port number {number} must be in the range 1..65535", at=("port", "number")
            )
        if unix and number != 0:
            raise invalid("port number must be 0 for unix domain socket", at=("port", "number"))
        proto = self.protocol
        if proto in TLS_FAMILY and self.tls is None:
            raise invalid(
                "server must have TLS settings for HTTPS/TLS protocols",
                at=("tls",),
                hint="add tls: {mode: SIMPLE, credentialName: <secret>} or mode: PASSTHROUGH",
            )
        if proto not in TLS_FAMILY and self.tls is not None:
            if proto not in HTTP_FAMILY:
                raise invalid(
                    "server cannot have TLS settings for non HTTPS/TLS ports", at=("tls",)
                )
            tls = self.tls
            passthrough = self.tls.effective_mode in ("PASSTHROUGH", "AUTO_PASSTHROUGH")
            if not passthrough or tls.ca_certificates or tls.private_key or tls.server_certificate:
                raise invalid(
                    "server cannot have TLS settings for plain text HTTP ports",
                    at=("tls",),
                    hint="only tls.httpsRedirect is allowed here; use protocol HTTPS to "
                    "terminate TLS",
                )
        return self


class Gateway(IstioModel):
    """Gateway spec: the servers of every gateway proxy whose labels match `selector`."""

    servers: list[Server] | None = None
    selector: dict[str, str] | None = None

    @model_validator(mode="after")
    def _rules(self) -> Gateway:
        if not self.servers:
            raise invalid("gateway must have at least one server", at=("servers",))
        names: set[str] = set()
        for i, server in enumerate(self.servers):
            if server.port.name in names:
                raise invalid(
                    f"port names in servers must be unique: duplicate name {server.port.name}",
                    at=("servers", i, "port", "name"),
                )
            names.add(server.port.name)
        return self

    def warnings(self) -> list[Issue]:
        """Istio's validation warnings, plus duplicate server names (their stats would merge)."""
        out: list[Issue] = []
        if not self.selector:
            out.append(
                _warn(("selector",), "no selector: this Gateway applies to every gateway proxy")
            )
        names: set[str] = set()
        for i, server in enumerate(self.servers or []):
            at: tuple[PathPart, ...] = ("servers", i)
            if server.tls is not None:
                if server.tls.https_redirect and server.protocol not in HTTP_FAMILY:
                    out.append(
                        _warn(
                            (*at, "tls", "httpsRedirect"),
                            "tls.httpsRedirect should only be used with http servers",
                        )
                    )
                out.extend(server.tls.issues((*at, "tls")))
            if server.name:
                if server.name in names:
                    out.append(
                        _warn(
                            (*at, "name"),
                            f"duplicate server name {server.name!r}: the servers will "
                            "share one stats prefix",
                        )
                    )
                names.add(server.name)
        return out
