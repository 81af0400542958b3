"""Building blocks shared by every Istio resource model.

Models mirror istio/api protos field for field. Python attributes are snake_case;
YAML/JSON uses Istio's camelCase names through aliases. Models are strict (a string
is not silently turned into a number), frozen, and reject unknown fields, which is
what makes the seed's `match: - cookie:` an error instead of a catch-all rule.

Validation errors raised from model validators use `invalid(...)`, whose `at`
argument points below the model (e.g. `at=("route", 1, "weight")`), so the user
sees the exact field, not just the enclosing object.
"""

from __future__ import annotations

import ipaddress
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import re2
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationInfo, model_validator
from pydantic_core import PydanticCustomError


def camel(name: str) -> str:
    """snake_case -> Istio's camelCase (`consecutive_5xx_errors` -> `consecutive5xxErrors`)."""
    first, *rest = name.split("_")
    return first + "".join(p[:1].upper() + p[1:] for p in rest)


class IstioModel(BaseModel):
    """Base of all spec models: strict, frozen, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,
        frozen=True,
        alias_generator=camel,
        populate_by_name=True,
        protected_namespaces=(),
        hide_input_in_errors=True,
    )

    def to_json(self) -> dict[str, Any]:
        """The model as Istio YAML/JSON would spell it (camelCase, unset fields omitted)."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def invalid(message: str, *, at: tuple[str | int, ...] = (), hint: str | None = None) -> Exception:
    """An error for pydantic to report, located `at` a sub-path of the model being checked."""
    return PydanticCustomError("istio", "{message}", {"message": message, "at": at, "hint": hint})


def context_namespace(info: ValidationInfo | None) -> str | None:
    """The namespace of the resource being validated, when the loader passed it in."""
    if info is None or not isinstance(info.context, dict):
        return None
    ns = info.context.get("namespace")
    return ns if isinstance(ns, str) else None


# --- durations ---------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "ms": Decimal("0.001"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}


def parse_duration(text: str) -> Decimal:
    """Seconds in a Go/protobuf duration string (`5s`, `100ms`, `1m30s`, `0.5s`, `1h`).

    Istio accepts Go duration syntax in its CRDs; protobuf JSON's `1.5s` form is a subset.
    """
    if not isinstance(text, str) or not text:
        raise ValueError("duration must be a non-empty string such as 5s, 100ms or 1h")
    pos, total = 0, Decimal(0)
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        try:
            total += Decimal(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        except InvalidOperation:
            break
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit, e.g. 5s, 100ms, 1m30s or 1h"
        )
    return total


def _check_duration(text: str) -> str:
    try:
        parse_duration(text)
    except ValueError as e:
        raise PydanticCustomError("istio", "{message}", {"message": str(e), "at": ()}) from None
    return text


Duration = Annotated[str, AfterValidator(_check_duration)]
"""A duration string, kept as the user wrote it; `parse_duration` gives its value."""


def check_duration_at_least_1ms(text: str | None, at: tuple[str | int, ...]) -> None:
    """Istio's `agent.ValidateDuration`: at least 1ms and a whole number of milliseconds."""
    if text is None:
        return
    seconds = parse_duration(text)
    if seconds < Decimal("0.001"):
        raise invalid(f"duration {text} must be at least 1ms", at=at)
    if (seconds * 1000) % 1 != 0:
        raise invalid(f"duration {text} must be a whole number of milliseconds", at=at)


# --- regular expressions -----------------------------------------------------------------


def _check_re2(pattern: str) -> str:
    """Envoy evaluates regexes with RE2: reject what RE2 rejects (lookarounds, backrefs...)."""
    if pattern == "":
        raise PydanticCustomError("istio", "{message}", {"message": "regex must not be empty"})
    problem = re2_problem(pattern)
    if problem:
        raise PydanticCustomError("istio", "{message}", {"message": problem, "at": ()})
    return pattern


# Istio's bootstrap raises Envoy's re2.max_program_size.error_level to this; so does ours.
ENVOY_MAX_REGEX_PROGRAM_SIZE = 32768


def re2_problem(pattern: str) -> str | None:
    """Why RE2 (Envoy's regex engine) rejects `pattern`, or None if it compiles."""
    options = re2.Options()
    options.log_errors = False
    try:
        compiled = re2.compile(pattern, options)
    except re2.error as e:
        reason = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
        return f"invalid RE2 regular expression {pattern!r}: {reason}"
    if compiled.programsize > ENVOY_MAX_REGEX_PROGRAM_SIZE:
        return (
            f"regular expression {pattern!r} is too complex for Envoy (RE2 program size "
            f"{compiled.programsize} > {ENVOY_MAX_REGEX_PROGRAM_SIZE}); simplify it, e.g. "
            "smaller repetition counts"
        )
    return None


Re2Regex = Annotated[str, AfterValidator(_check_re2)]


# --- names, hosts, addresses -----------------------------------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_dns1123_label(value: str) -> bool:
    return len(value) <= 63 and bool(_DNS1123_LABEL.match(value))


def is_dns1123_subdomain(value: str) -> bool:
    return 0 < len(value) <= 253 and all(is_dns1123_label(p) for p in value.split("."))


def is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def is_cidr_or_ip(value: str) -> bool:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return True


def check_export_to(values: list[str] | None, namespace: str | None, *, allow_none: bool) -> None:
    """Istio's exportTo rules: `.`, `*`, `~` (ServiceEntry only) or namespace names."""
    if not values:
        return
    seen: set[str] = set()
    for i, value in enumerate(values):
        key = "." if namespace is not None and value == namespace else value
        if value == "~" and not allow_none:
            raise invalid("exportTo '~' is only allowed on ServiceEntry", at=(i,))
        if value not in (".", "*", "~") and not is_dns1123_label(value):
            raise invalid(f"exportTo {value!r} is not a namespace name, '.', or '*'", at=(i,))
        if key in seen:
            raise invalid(f"duplicate exportTo entry {value!r}", at=(i,))
        seen.add(key)
    if ("*" in seen or "~" in seen) and len(values) > 1:
        raise invalid("exportTo '*' or '~' cannot be combined with other values")


# --- small shared messages ----------------------------------------------------------------


class StringMatch(IstioModel):
    """Istio StringMatch: exactly one of exact, prefix, regex (an empty object means presence)."""

    exact: str | None = None
    prefix: str | None = None
    regex: Re2Regex | None = None

    @model_validator(mode="after")
    def _one_of(self) -> StringMatch:
        set_fields = [n for n in ("exact", "prefix", "regex") if getattr(self, n) is not None]
        if len(set_fields) > 1:
            got = ", ".join(set_fields)
            raise invalid(f"only one of exact, prefix or regex may be set (got {got})")
        return self

    @property
    def is_empty(self) -> bool:
        return self.exact is None and self.prefix is None and self.regex is None


class Percent(IstioModel):
    """Istio Percent: a value in [0, 100], fractions allowed."""

    value: float = 0.0

    @model_validator(mode="after")
    def _range(self) -> Percent:
        if not 0.0 <= self.value <= 100.0:
            raise invalid("percentage must be in the range [0.0, 100.0]", at=("value",))
        return self


class PortSelector(IstioModel):
    number: int | None = None

    @model_validator(mode="after")
    def _range(self) -> PortSelector:
        if self.number is not None and not 1 <= self.number <= 65535:
            check_port(self.number, ("number",))
        return self


def check_port(number: int | None, at: tuple[str | int, ...]) -> None:
    if number is not None and not 1 <= number <= 65535:
        raise invalid(f"port number {number} must be in the range 1..65535", at=at)


# --- Istio protocol names and host forms (shared by Gateway, ServiceEntry, Service) --------

_ISTIO_PROTOCOLS = {
    "tcp": "TCP", "udp": "UDP", "grpc": "GRPC", "grpc-web": "GRPC-Web", "http": "HTTP",
    "http_proxy": "HTTP_PROXY", "http2": "HTTP2", "https": "HTTPS", "tls": "TLS",
    "mongo": "Mongo", "redis": "Redis", "mysql": "MySQL",
}  # fmt: skip
UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"
HTTP_FAMILY = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-Web"})
TLS_FAMILY = frozenset({"HTTPS", "TLS"})
TCP_FAMILY = frozenset({"TCP", "HTTPS", "TLS", "Mongo", "Redis", "MySQL"})


def istio_protocol(value: str | None) -> str:
    """Istio's protocol.Parse: the canonical name, or UNSUPPORTED_PROTOCOL (means "sniff")."""
    return _ISTIO_PROTOCOLS.get((value or "").lower(), UNSUPPORTED_PROTOCOL)


_ISTIO_DNS_LABEL = re.compile(r"^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_ISTIO_WILDCARD_LABEL = re.compile(r"^(\*|(\*|\*-)?[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?)$")


def is_istio_dns_label(value: str) -> bool:
    """Istio's labels.IsDNS1123Label, which (unlike Kubernetes) accepts upper case."""
    return len(value) <= 63 and bool(_ISTIO_DNS_LABEL.match(value))


_GO_INT = re.compile(r"^[+-]?[0-9]+$")


def _dns_labels_problem(domain: str) -> str | None:
    """Istio's ValidateDNS1123Labels: valid labels, TLD not numeric, a trailing dot allowed."""
    parts = domain.split(".")
    tld = parts[-1]
    if _GO_INT.match(tld) and -(2**63) <= int(tld) < 2**63:
        return f"domain name {domain!r} invalid (top level domain {tld!r} cannot be all-numeric)"
    for i, label in enumerate(parts):
        if i == len(parts) - 1 and label == "":
            return None  # a trailing dot (`istio.io.`) is allowed
        if not is_istio_dns_label(label):
            return f"domain name {domain!r} invalid (label {label!r} invalid)"
    return None


def dns_precondition_problem(name: str) -> str | None:
    if len(name) > 255:
        return f"domain name {name!r} too long (max 255)"
    if not name:
        return "empty domain name not allowed"
    return None


def fqdn_problem(name: str) -> str | None:
    """Istio's ValidateFQDN: DNS-1123 labels, no wildcard, top-level label not all digits."""
    return dns_precondition_problem(name) or _dns_labels_problem(name)


def wildcard_domain_problem(domain: str) -> str | None:
    """Istio's ValidateWildcardDomain: like fqdn_problem, but the first label may be `*`/`*x`."""
    if problem := dns_precondition_problem(domain):
        return problem
    first, dot, rest = domain.partition(".")
    if len(first) > 63 or not _ISTIO_WILDCARD_LABEL.match(first):
        return f"domain name {domain!r} invalid (label {first!r} invalid)"
    return _dns_labels_problem(rest) if dot else None


def partial_wildcard_problem(host: str) -> str | None:
    """Istio's ValidatePartialWildCard: `*` must be the whole host or a leading `*.` label."""
    if "*" in host and host != "*" and not host.startswith("*."):
        return f"partial wildcard {host!r} not allowed"
    return None
