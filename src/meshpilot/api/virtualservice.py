"""VirtualService: Istio's HTTP/TLS/TCP routing rules, modelled field for field.

The models follow `istio/api networking/v1alpha3/virtual_service.proto`; the validators
reproduce Istio's `ValidateVirtualService` (pkg/config/validation), so a manifest Istio
rejects is rejected here too, with the error pinned to the exact field. Proto3 scalar
fields default to their zero value (Istio's validation reasons about `""`/`0`), while
oneof members, wrappers (BoolValue, UInt32Value) and messages default to None, because
for them "set" and "zero" mean different things.

A few checks go beyond Istio where Istio would silently ignore what the user wrote
(a delegate route with directResponse, a delegate without a name, sourceNamespace on
TLS/TCP matches); they are marked "meshpilot:" in comments below.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from .base import (
    Duration,
    IstioModel,
    Percent,
    PortSelector,
    StringMatch,
    check_duration_at_least_1ms,
    check_export_to,
    check_port,
    context_namespace,
    dns_precondition_problem,
    fqdn_problem,
    invalid,
    is_cidr_or_ip,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_ip,
    parse_duration,
    re2_problem,
    wildcard_domain_problem,
)
from .errors import Issue, PathPart

UInt32 = Annotated[int, Field(ge=0, le=4_294_967_295)]
Int32 = Annotated[int, Field(ge=-2_147_483_648, le=2_147_483_647)]
Path = tuple[PathPart, ...]

MESH_GATEWAY = "mesh"

# --- Istio's name rules ------------------------------------------------------------------
# Istio's own DNS label check accepts upper case (pkg/config/labels), unlike Kubernetes.

_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_LABEL_RE = re.compile(f"^{_LABEL}$")
_WILDCARD_LABEL_RE = re.compile(rf"^(\*|(\*|\*-)?{_LABEL})$")
_QUALIFIED = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY_RE = re.compile(rf"^({_LABEL}(?:\.{_LABEL})*/)?({_QUALIFIED})$")
_LABEL_VALUE_RE = re.compile(rf"^({_QUALIFIED})?$")
_NUMERIC_RE = re.compile(r"^[+-]?[0-9]+$")
_TCHAR_NAME_RE = re.compile(r"^[!#$%&'*+\-.^_`|~A-Za-z0-9]+$")
_CONTROL_CHARS_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_PSEUDO_HEADERS = frozenset({":method", ":scheme", ":authority", ":path", ":status"})
_JWT_CLAIM_PREFIX = "@request.auth.claims"
_REGEX_MAX_LEN = 1024


def _is_label(value: str) -> bool:
    return len(value) <= 63 and bool(_LABEL_RE.match(value))


def _gateway_domain_problem(sni: bool, domain: str) -> str | None:
    """Gateway-bound hosts may also be AUTO_PASSTHROUGH names (`outbound_.80_._.svc.ns.svc...`)."""
    problem = dns_precondition_problem(domain)
    if problem:
        return problem
    if sni and domain.startswith("outbound_"):
        parts = domain.split("_")
        fmt = "outbound_.<PORT>_._.<HOSTNAME>"
        if len(parts) < 4:
            return f"domain name {domain!r} is invalid: auto-generated SNI names look like {fmt}"
        port, hostname = parts[1].strip("."), parts[3].strip(".")
        if not re.search(r"[0-9]", port) or not re.search(r"[a-zA-Z]", hostname):
            return f"domain name {domain!r} is invalid: auto-generated SNI names look like {fmt}"
        return None
    return wildcard_domain_problem(domain)


def host_matches(a: str, b: str) -> bool:
    """Istio host.Name.Matches: the two (wildcard) names have a host in common."""
    if a.startswith("*"):
        if b.startswith("*"):
            return b[1:].endswith(a[1:]) if len(a) < len(b) else a[1:].endswith(b[1:])
        return b.endswith(a[1:])
    if b.startswith("*"):
        return a.endswith(b[1:])
    return a == b


def host_subset_of(a: str, b: str) -> bool:
    """Istio host.Name.SubsetOf: every host named by `a` is also named by `b`."""
    if a.startswith("*"):
        return b.startswith("*") and len(a) >= len(b) and a[1:].endswith(b[1:])
    if b.startswith("*"):
        return a.endswith(b[1:])
    return a == b


def _gateway_name_problem(name: str) -> str | None:
    """Istio's validateGatewayNames for one entry: `ns/name`, `name`, `mesh`, legacy `name.ns`."""
    if "/" not in name:
        problem = fqdn_problem(name)
        return f"invalid gateway name {name!r}: {problem}" if problem else None
    ns, _, gw = name.partition("/")
    if not ns or not gw:
        return f"invalid gateway {name!r}: namespace and gateway name cannot be empty"
    if not _is_label(ns):
        return f"invalid gateway {name!r}: namespace {ns!r} is not a DNS-1123 label"
    if not _is_label(gw):
        return f"invalid gateway {name!r}: name {gw!r} is not a DNS-1123 label"
    return None


_GATEWAY_HINT = "write <namespace>/<gateway-name>, a gateway name in this namespace, or mesh"


def _check_gateway_names(names: list[str], at: Path) -> None:
    for i, name in enumerate(names):
        problem = _gateway_name_problem(name)
        if problem:
            raise invalid(problem, at=(*at, i), hint=_GATEWAY_HINT)


def _legacy_gateway_warnings(names: list[str], at: Path) -> list[Issue]:
    out: list[Issue] = []
    for i, name in enumerate(names):
        if "/" not in name and "." in name:
            parts = name.split(".")
            out.append(
                _warning(
                    (*at, i),
                    f"legacy gateway name format {name!r}",
                    f"prefer <namespace>/<name>: {parts[1]}/{parts[0]}",
                )
            )
    return out


def _check_labels(labels: dict[str, str], at: Path) -> None:
    """Istio's labels.Instance.Validate: Kubernetes-style label keys and values."""
    for key, value in labels.items():
        m = _LABEL_KEY_RE.match(key)
        if m is None or len(m.group(2)) > 63 or (m.group(1) and len(m.group(1)) - 1 > 253):
            raise invalid(f"invalid label key {key!r}", at=(*at, key))
        if not _LABEL_VALUE_RE.match(value):
            raise invalid(f"invalid label value {value!r}", at=(*at, key))


def _check_source_namespace(value: str, at: Path) -> None:
    if value and not _is_label(value):
        raise invalid(f"sourceNamespace {value!r} is not a valid namespace name", at=at)


def _check_subnets(subnets: list[str], at: Path) -> None:
    """Istio's ValidateIPSubnet: an IP address or a CIDR block."""
    for i, subnet in enumerate(subnets):
        ok = is_cidr_or_ip(subnet) if subnet.count("/") == 1 else is_ip(subnet)
        if not ok:
            raise invalid(
                f"{subnet!r} is not a valid IP address or CIDR block",
                at=(*at, i),
                hint="e.g. 10.0.0.0/16 or 192.168.1.5",
            )


def _regex_problem(pattern: str) -> str | None:
    if len(pattern) > _REGEX_MAX_LEN:
        return f"regex is too large: {len(pattern)} characters, at most {_REGEX_MAX_LEN} allowed"
    return re2_problem(pattern)


def _is_jwt_claim(name: str) -> bool:
    """Header keys like `@request.auth.claims.group` route on JWT claims (gateways only)."""
    if not name.lower().startswith(_JWT_CLAIM_PREFIX):
        return False
    rest = name[len(_JWT_CLAIM_PREFIX) :]
    return (rest.startswith(".") and len(rest) > 1) or (
        rest.startswith("[") and rest.endswith("]") and len(rest) > 2
    )


def _match_header_name_problem(name: str) -> str | None:
    if not name:
        return "header name cannot be empty"
    if _is_jwt_claim(name) or name in _PSEUDO_HEADERS:
        return None
    if not _TCHAR_NAME_RE.match(name):
        return f"{name!r} is not a valid header name"
    return None


def _is_authority_header(name: str) -> bool:
    return name.lower() in (":authority", "host")


def header_value_problem(value: str) -> str | None:
    """Why Envoy would reject a custom header value: control characters or broken `%VAR%` syntax.

    `%%` is a literal percent; `%VAR%` and `%VAR(args)%`/`%VAR(["a","b"])%` are variables.
    """
    if _CONTROL_CHARS_RE.search(value):
        return "header value contains control characters"
    state, i, n = "literal", 0, len(value)
    while i < n:
        ch = value[i]
        has_next = i + 1 < n
        if state == "literal":
            if ch == "%":
                if not has_next:
                    return "header value ends with an unescaped '%'; write %% for a literal %"
                if value[i + 1] == "%":
                    i += 1
                else:
                    state = "name"
        elif state == "name":
            if ch == "%":
                state = "literal"
            elif ch == "(":
                state = "array?"
        elif state == "array?":
            if ch == "[":
                state = "string?"
            elif ch != " ":
                state = "string"
        elif state == "string?":
            if ch == '"':
                state = "string"
            elif ch != " ":
                return "header value variable arguments must be JSON strings starting with '\"'"
        elif state == "string":
            if ch == "\\":
                if not has_next:
                    return "header value has an unterminated backslash in a variable argument"
                i += 1
            elif ch == ")":
                state = "end%"
            elif ch == '"':
                state = "delim"
        elif state == "delim":
            if ch == ",":
                state = "string?"
            elif ch == "]":
                state = "args)"
            elif ch != " ":
                return "header value variable arguments: expected ',', ']' or a space"
        elif state == "args)":
            if ch == ")":
                state = "end%"
            elif ch != " ":
                return "header value variable arguments: expected ')' after ']'"
        elif state == "end%":
            if ch == "%":
                state = "literal"
            elif ch != " ":
                return "header value variable: expected '%' after ')'"
        i += 1
    if state != "literal":
        return f"header value {value!r} has an unterminated %VARIABLE% expression"
    return None


# --- shared small messages -----------------------------------------------------------------


class WithoutHeaderMatch(StringMatch):
    """StringMatch for `withoutHeaders`, where `regex: "*"` means "header present" (not RE2)."""

    regex: str | None = None

    @model_validator(mode="after")
    def _regex(self) -> WithoutHeaderMatch:
        if self.regex is not None and self.regex != "*":
            if self.regex == "":
                raise invalid("regex must not be empty", at=("regex",))
            problem = _regex_problem(self.regex)
            if problem:
                raise invalid(problem, at=("regex",))
        return self


class Destination(IstioModel):
    """Where traffic goes: a service host, optionally a DestinationRule subset and a port."""

    host: str
    subset: str = ""
    port: PortSelector | None = None

    @model_validator(mode="after")
    def _check(self) -> Destination:
        if self.host == "*":
            raise invalid("destination host cannot be *", at=("host",), hint=_HOST_HINT)
        problem = wildcard_domain_problem(self.host)
        if problem:
            raise invalid(problem, at=("host",), hint=_HOST_HINT)
        if self.subset and not _is_label(self.subset):
            raise invalid(
                f"subset name {self.subset!r} is not a DNS-1123 label",
                at=("subset",),
                hint="use the name of a subset defined in a DestinationRule, e.g. v1",
            )
        if self.port is not None and not self.port.number:
            raise invalid(
                "port number is required", at=("port", "number"), hint="e.g. port: {number: 80}"
            )
        return self


_HOST_HINT = (
    "use a service name (reviews), an FQDN (reviews.prod.svc.cluster.local) or a ServiceEntry host"
)


class HeaderOperations(IstioModel):
    """Set (overwrite), add (append) and remove headers on a request or a response."""

    set: dict[str, str] = {}
    add: dict[str, str] = {}
    remove: list[str] = []


class Headers(IstioModel):
    """Header manipulation for requests and responses (route level or per destination)."""

    request: HeaderOperations | None = None
    response: HeaderOperations | None = None

    @model_validator(mode="after")
    def _check(self) -> Headers:
        if self.request is not None:
            ops = self.request
            for op in ("set", "add"):
                for name, value in getattr(ops, op).items():
                    at = ("request", op, name)
                    if not name:
                        raise invalid("header name cannot be empty", at=at)
                    if (
                        name.startswith(":") or name.lower() == "host"
                    ) and not _is_authority_header(name):
                        raise invalid(
                            f"header {name!r} cannot be modified: names starting with ':' are "
                            "reserved",
                            at=at,
                            hint="only :authority (or Host) may be set",
                        )
                    _check_header_value(value, at)
            for i, name in enumerate(ops.remove):
                _check_header_op_name(name, ("request", "remove", i), removing=True)
        if self.response is not None:
            ops = self.response
            for op in ("set", "add"):
                for name, value in getattr(ops, op).items():
                    _check_header_op_name(name, ("response", op, name), removing=False)
                    _check_header_value(value, ("response", op, name))
            for i, name in enumerate(ops.remove):
                _check_header_op_name(name, ("response", "remove", i), removing=True)
        return self


def _check_header_op_name(name: str, at: Path, *, removing: bool) -> None:
    if not name:
        raise invalid("header name cannot be empty", at=at)
    if name.lower() == "host":
        verb = "removed" if removing else "set on a response"
        raise invalid(
            f"the Host header cannot be {verb}",
            at=at,
            hint="to change the authority use headers.request.set[:authority] or rewrite.authority",
        )
    if name.startswith(":"):
        raise invalid(
            f"header {name!r} cannot be modified: names starting with ':' are reserved", at=at
        )


def _check_header_value(value: str, at: Path) -> None:
    problem = header_value_problem(value)
    if problem:
        raise invalid(
            problem,
            at=at,
            hint="Envoy reads %NAME% as a variable such as %HOSTNAME%; write %% for a literal %",
        )


def _check_weights(weights: list[int], at: Path) -> None:
    if len(weights) > 1 and sum(weights) == 0:
        raise invalid(
            "total destination weight is 0",
            at=at,
            hint="give at least one destination a positive weight; weights are relative and "
            "need not add up to 100",
        )


class HTTPRouteDestination(IstioModel):
    """One weighted HTTP destination with its own header manipulation."""

    destination: Destination
    weight: Int32 = 0
    headers: Headers | None = None

    @model_validator(mode="after")
    def _check(self) -> HTTPRouteDestination:
        if self.weight < 0:
            raise invalid(f"weight {self.weight} must not be negative", at=("weight",))
        return self


class RouteDestination(IstioModel):
    """One weighted TCP/TLS destination."""

    destination: Destination
    weight: Int32 = 0

    @model_validator(mode="after")
    def _check(self) -> RouteDestination:
        if self.weight < 0:
            raise invalid(f"weight {self.weight} must not be negative", at=("weight",))
        return self


class Delegate(IstioModel):
    """A root route hands matching requests to another (host-less) VirtualService."""

    name: str = ""
    namespace: str = ""

    @model_validator(mode="after")
    def _check(self) -> Delegate:
        # meshpilot: Istio accepts these, but the delegate can then never be found.
        if not self.name:
            raise invalid(
                "delegate name is required",
                at=("name",),
                hint="name the delegate VirtualService (one without hosts)",
            )
        if not is_dns1123_subdomain(self.name):
            raise invalid(f"delegate name {self.name!r} is not a valid resource name", at=("name",))
        if self.namespace and not is_dns1123_label(self.namespace):
            raise invalid(
                f"delegate namespace {self.namespace!r} is not a valid namespace name",
                at=("namespace",),
            )
        return self


# --- HTTP -------------------------------------------------------------------------------------


class HTTPMatchRequest(IstioModel):
    """Conditions a request must meet (ANDed); a route's match blocks are ORed."""

    name: str = ""
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] = {}
    port: UInt32 = 0
    source_labels: dict[str, str] = {}
    gateways: list[str] = []
    query_params: dict[str, StringMatch] = {}
    ignore_uri_case: bool = False
    without_headers: dict[str, WithoutHeaderMatch] = {}
    source_namespace: str = ""
    stat_prefix: str = ""

    @model_validator(mode="after")
    def _check(self) -> HTTPMatchRequest:
        for field, alias in (("headers", "headers"), ("without_headers", "withoutHeaders")):
            for name, sm in getattr(self, field).items():
                problem = _match_header_name_problem(name)
                if problem:
                    raise invalid(
                        problem,
                        at=(alias, name),
                        hint="header names are HTTP tokens such as x-user-group",
                    )
                if not (field == "without_headers" and sm.regex == "*"):
                    _check_match(sm, (alias, name), allow_empty_prefix=False)
        if self.uri is not None:
            _check_match(self.uri, ("uri",), allow_empty_prefix=True)
        for name in ("scheme", "method", "authority"):
            sm = getattr(self, name)
            if sm is not None:
                _check_match(sm, (name,), allow_empty_prefix=False)
        for key, sm in self.query_params.items():
            _check_match(sm, ("queryParams", key), allow_empty_prefix=False)
        if self.port:
            check_port(self.port, ("port",))
        _check_labels(self.source_labels, ("sourceLabels",))
        _check_gateway_names(self.gateways, ("gateways",))
        _check_source_namespace(self.source_namespace, ("sourceNamespace",))
        return self


def _check_match(sm: StringMatch, at: Path, *, allow_empty_prefix: bool) -> None:
    """Envoy rejects an empty prefix for headers/query params (a uri prefix may be empty)."""
    if sm.prefix == "" and not allow_empty_prefix:
        raise invalid(
            "prefix match must not be empty",
            at=(*at, "prefix"),
            hint="use {} to match on presence, or give a non-empty prefix",
        )
    if sm.regex is not None and len(sm.regex) > _REGEX_MAX_LEN:
        raise invalid(
            f"regex is too large: {len(sm.regex)} characters, at most {_REGEX_MAX_LEN} allowed",
            at=(*at, "regex"),
        )


class HTTPRedirect(IstioModel):
    """A 3xx response instead of forwarding."""

    uri: str = ""
    authority: str = ""
    port: UInt32 | None = None
    derive_port: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str = ""
    redirect_code: UInt32 = 0
    prefix_rewrite: str = ""

    @model_validator(mode="after")
    def _check(self) -> HTTPRedirect:
        if self.port is not None and self.derive_port is not None:
            raise invalid("only one of port or derivePort may be set", at=("derivePort",))
        if self.uri and self.prefix_rewrite:
            raise invalid(
                "redirect may set only one of uri or prefixRewrite", at=("prefixRewrite",)
            )
        if not (self.uri or self.prefix_rewrite or self.authority or self.scheme) and (
            self.port is None and self.derive_port is None
        ):
            raise invalid(
                "redirect must specify uri, prefixRewrite, authority, scheme or port",
                hint="e.g. redirect: {uri: /new-path}",
            )
        if self.redirect_code and not 300 <= self.redirect_code <= 399:
            raise invalid(
                f"{self.redirect_code} is not a valid redirect code; it must be 3xx",
                at=("redirectCode",),
                hint="use 301, 302, 303, 307 or 308",
            )
        if self.scheme and self.scheme not in ("http", "https"):
            raise invalid(
                f"invalid redirect scheme {self.scheme!r}",
                at=("scheme",),
                hint='use "http" or "https"',
            )
        if self.port:
            check_port(self.port, ("port",))
        return self


class HTTPBody(IstioModel):
    """Direct response body: text, or base64-encoded bytes."""

    string: str | None = None
    bytes: str | None = None

    @model_validator(mode="after")
    def _check(self) -> HTTPBody:
        if self.string is not None and self.bytes is not None:
            raise invalid("only one of string or bytes may be set", at=("bytes",))
        if self.bytes is not None:
            try:
                base64.b64decode(self.bytes, validate=True)
            except (binascii.Error, ValueError):
                raise invalid(
                    "bytes must be base64-encoded", at=("bytes",), hint="use string: for plain text"
                ) from None
        return self

    @property
    def size(self) -> int:
        """Size in bytes of the body Envoy will send."""
        if self.bytes is not None:
            return len(base64.b64decode(self.bytes))
        return len((self.string or "").encode())


_KB = 1024
_MB = 1024 * _KB


class HTTPDirectResponse(IstioModel):
    """A fixed response sent by the proxy itself."""

    status: UInt32
    body: HTTPBody | None = None

    @model_validator(mode="after")
    def _check(self) -> HTTPDirectResponse:
        if self.body is not None and self.body.size > _MB:
            field = "bytes" if self.body.bytes is not None else "string"
            raise invalid(
                f"direct response body is {self.body.size} bytes; it must be under 1MB",
                at=("body", field),
            )
        _check_http_status(self.status, ("status",))
        return self


def _check_http_status(status: int, at: Path) -> None:
    # Istio checks `status < 200 || status > 600`, so 600 itself passes.
    if status < 200 or status > 600:
        raise invalid(f"HTTP status {status} is not in range 200-599", at=at)


class RegexRewrite(IstioModel):
    """Rewrite the path with an RE2 regex and a substitution (`\\1` backreferences)."""

    match: str = ""
    rewrite: str = ""

    @model_validator(mode="after")
    def _check(self) -> RegexRewrite:
        if not self.match:
            raise invalid("uriRegexRewrite needs both match and rewrite", at=("match",))
        if not self.rewrite:
            raise invalid(
                "uriRegexRewrite needs both match and rewrite",
                at=("rewrite",),
                hint='use rewrite: "/" to collapse the matched path',
            )
        problem = _regex_problem(self.match)
        if problem:
            raise invalid(problem, at=("match",))
        return self


class HTTPRewrite(IstioModel):
    """Change the path and/or authority before forwarding."""

    uri: str = ""
    authority: str = ""
    uri_regex_rewrite: RegexRewrite | None = None

    @model_validator(mode="after")
    def _check(self) -> HTTPRewrite:
        if self.uri and self.uri_regex_rewrite is not None:
            raise invalid(
                "rewrite may contain only one of uri or uriRegexRewrite", at=("uriRegexRewrite",)
            )
        if not self.uri and self.uri_regex_rewrite is None and not self.authority:
            raise invalid("rewrite must specify at least one of uri, uriRegexRewrite or authority")
        return self


RETRY_ON_POLICIES = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx",
    "refused-stream", "retriable-status-codes", "retriable-headers", "envoy-ratelimited",
    "http3-post-connect-failure",
    # gRPC (x-envoy-retry-grpc-on)
    "cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable",
})  # fmt: skip

# Status codes Go's net/http knows (http.StatusText != ""), which Istio accepts in retryOn.
_KNOWN_HTTP_STATUS = frozenset(
    {100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226}
    | {300, 301, 302, 303, 304, 305, 307, 308}
    | set(range(400, 419)) | {421, 422, 423, 424, 425, 426, 428, 429, 431, 451}
    | {500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511}
)  # fmt: skip


def _retry_on_valid(policy: str) -> bool:
    if policy in RETRY_ON_POLICIES:
        return True
    return bool(_NUMERIC_RE.match(policy)) and int(policy) in _KNOWN_HTTP_STATUS


class HTTPRetry(IstioModel):
    """Retry policy; attempts 0 disables retries."""

    attempts: Int32 = 0
    per_try_timeout: Duration | None = None
    retry_on: str = ""
    retry_remote_localities: bool | None = None
    retry_ignore_previous_hosts: bool | None = None
    backoff: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> HTTPRetry:
        if self.attempts < 0:
            raise invalid("attempts cannot be negative", at=("attempts",))
        if self.attempts == 0:
            for name, alias in (
                ("per_try_timeout", "perTryTimeout"),
                ("retry_on", "retryOn"),
                ("retry_remote_localities", "retryRemoteLocalities"),
            ):
                if getattr(self, name) not in (None, ""):
                    raise invalid(
                        f"{alias} is set but attempts is 0, which disables retries",
                        at=(alias,),
                        hint="set attempts to 1 or more, or remove " + alias,
                    )
        check_duration_at_least_1ms(self.per_try_timeout, ("perTryTimeout",))
        if self.retry_on:
            for policy in self.retry_on.split(","):
                if not _retry_on_valid(policy):
                    raise invalid(
                        f"{policy!r} is not a valid retryOn policy",
                        at=("retryOn",),
                        hint="a comma-separated list without spaces of "
                        + ", ".join(sorted(RETRY_ON_POLICIES))
                        + ", or HTTP status codes such as 503",
                    )
        check_duration_at_least_1ms(self.backoff, ("backoff",))
        return self


CORS_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*"}
)


class CorsPolicy(IstioModel):
    """Cross-Origin Resource Sharing answers."""

    allow_origin: list[str] = []  # deprecated: use allowOrigins
    allow_origins: list[StringMatch] = []
    allow_methods: list[str] = []
    allow_headers: list[str] = []
    expose_headers: list[str] = []
    max_age: Duration | None = None
    allow_credentials: bool | None = None
    unmatched_preflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None

    @model_validator(mode="after")
    def _check(self) -> CorsPolicy:
        for i, origin in enumerate(self.allow_origins):
            if not (origin.exact or origin.prefix or origin.regex):
                raise invalid(
                    "allowOrigins entry needs a non-empty exact, prefix or regex",
                    at=("allowOrigins", i),
                    hint='e.g. {exact: "https://example.com"}',
                )
            _check_match(origin, ("allowOrigins", i), allow_empty_prefix=True)
        for i, method in enumerate(self.allow_methods):
            if method not in CORS_METHODS:
                raise invalid(
                    f"{method!r} is not a supported HTTP method",
                    at=("allowMethods", i),
                    hint="use one of " + ", ".join(sorted(CORS_METHODS)),
                )
        for field in ("allowHeaders", "exposeHeaders"):
            names = self.allow_headers if field == "allowHeaders" else self.expose_headers
            for i, name in enumerate(names):
                if not name:
                    raise invalid("header name cannot be empty", at=(field, i))
                if name != "*" and not _TCHAR_NAME_RE.match(name):
                    raise invalid(f"{name!r} is not a valid header name", at=(field, i))
        if self.max_age is not None:
            check_duration_at_least_1ms(self.max_age, ("maxAge",))
            if parse_duration(self.max_age) % 1 != 0:
                raise invalid(
                    f"maxAge {self.max_age} must be a whole number of seconds",
                    at=("maxAge",),
                    hint="e.g. 24h or 86400s",
                )
        return self


def _check_fault_percentage(p: Percent | None, at: Path) -> None:
    if p is not None and 0.0 < p.value < 0.0001:
        raise invalid(
            f"percentage {p.value} is neither 0 nor in the range [0.0001, 100]", at=(*at, "value")
        )


class Delay(IstioModel):
    """Delay a share of requests before forwarding them."""

    percent: Int32 = 0  # deprecated: use percentage
    fixed_delay: Duration | None = None
    exponential_delay: Duration | None = None
    percentage: Percent | None = None

    @model_validator(mode="after")
    def _check(self) -> Delay:
        if self.fixed_delay is not None and self.exponential_delay is not None:
            raise invalid(
                "only one of fixedDelay or exponentialDelay may be set", at=("exponentialDelay",)
            )
        _check_fault_percentage(self.percentage, ("percentage",))
        check_duration_at_least_1ms(self.fixed_delay, ("fixedDelay",))
        if self.exponential_delay is not None:
            check_duration_at_least_1ms(self.exponential_delay, ("exponentialDelay",))
            raise invalid(
                "exponentialDelay is not supported", at=("exponentialDelay",), hint="use fixedDelay"
            )
        return self


GRPC_STATUS_CODES = (
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
    "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
    "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
)  # fmt: skip


class Abort(IstioModel):
    """Answer a share of requests with an error instead of forwarding them."""

    http_status: Int32 | None = None
    grpc_status: str | None = None
    http2_error: str | None = None
    percentage: Percent | None = None

    @model_validator(mode="after")
    def _check(self) -> Abort:
        chosen = [
            alias
            for name, alias in (
                ("http_status", "httpStatus"),
                ("grpc_status", "grpcStatus"),
                ("http2_error", "http2Error"),
            )
            if getattr(self, name) is not None
        ]
        if len(chosen) > 1:
            raise invalid(
                f"only one of httpStatus, grpcStatus or http2Error may be set "
                f"(got {', '.join(chosen)})",
                at=(chosen[1],),
            )
        _check_fault_percentage(self.percentage, ("percentage",))
        if self.grpc_status is not None and self.grpc_status not in GRPC_STATUS_CODES:
            raise invalid(
                f"gRPC status {self.grpc_status!r} is not supported",
                at=("grpcStatus",),
                hint="use an upper-case gRPC code name such as UNAVAILABLE or NOT_FOUND",
            )
        if self.http2_error is not None:
            raise invalid(
                "HTTP/2 abort fault injection is not supported",
                at=("http2Error",),
                hint="use httpStatus or grpcStatus",
            )
        if self.http_status is not None:
            _check_http_status(self.http_status, ("httpStatus",))
        return self


class HTTPFaultInjection(IstioModel):
    """Delays and/or aborts injected on the client side."""

    delay: Delay | None = None
    abort: Abort | None = None

    @model_validator(mode="after")
    def _check(self) -> HTTPFaultInjection:
        if self.delay is None and self.abort is None:
            raise invalid(
                "fault injection must have an abort and/or a delay",
                hint="e.g. fault: {delay: {fixedDelay: 5s, percentage: {value: 100}}}",
            )
        return self


class HTTPMirrorPolicy(IstioModel):
    """One mirror destination with the share of traffic copied to it."""

    destination: Destination
    percentage: Percent | None = None


class HTTPRoute(IstioModel):
    """One ordered HTTP rule: matches, then one action (route/redirect/directResponse/delegate)."""

    name: str = ""
    match: list[HTTPMatchRequest] = []
    route: list[HTTPRouteDestination] = []
    redirect: HTTPRedirect | None = None
    direct_response: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] = []
    mirror_percent: UInt32 | None = None  # deprecated: use mirrorPercentage
    mirror_percentage: Percent | None = None
    cors_policy: CorsPolicy | None = None
    headers: Headers | None = None

    @model_validator(mode="after")
    def _check(self) -> HTTPRoute:
        self._check_actions()
        if self.redirect is not None and self.redirect.prefix_rewrite:
            for j, m in enumerate(self.match):
                if m.uri is not None and m.uri.prefix is None:
                    raise invalid(
                        f"redirect prefixRewrite requires every uri match to be a prefix match "
                        f"(match[{j}].uri is not)",
                        at=("redirect", "prefixRewrite"),
                        hint="use redirect.uri, or match uri with prefix:",
                    )
        if self.mirror_percent is not None and self.mirror_percent > 100:
            raise invalid(
                f"mirrorPercent must be at most 100 (it is {self.mirror_percent})",
                at=("mirrorPercent",),
            )
        check_duration_at_least_1ms(self.timeout, ("timeout",))
        self._check_authority()
        _check_weights([d.weight for d in self.route], ("route",))
        return self

    def _check_actions(self) -> None:
        if self.delegate is not None:
            for field, alias in (
                ("redirect", "redirect"),
                ("route", "route"),
                ("direct_response", "directResponse"),  # meshpilot: Istio ignores it silently
            ):
                if getattr(self, field):
                    raise invalid(
                        f"a route with delegate must not also set {alias}",
                        at=(alias,),
                        hint="the delegate VirtualService decides where traffic goes; "
                        f"remove {alias} or delegate",
                    )
        elif self.redirect is not None:
            for field, alias in (
                ("route", "route"),
                ("fault", "fault"),
                ("rewrite", "rewrite"),
                ("direct_response", "directResponse"),
            ):
                if getattr(self, field):
                    raise invalid(
                        f"HTTP route cannot contain both {alias} and redirect",
                        at=(alias,),
                        hint=f"remove {alias} or redirect",
                    )
        elif self.direct_response is not None:
            for field in ("route", "fault", "rewrite"):
                if getattr(self, field):
                    raise invalid(
                        f"HTTP route cannot contain both {field} and directResponse",
                        at=(field,),
                        hint=f"remove {field} or directResponse",
                    )
        elif not self.route:
            raise invalid(
                "HTTP route needs one of route, redirect, directResponse or delegate",
                hint="e.g. route: [{destination: {host: reviews}}]",
            )
        if self.mirror is not None and self.mirrors:
            raise invalid(
                "HTTP route cannot contain both mirror and mirrors",
                at=("mirrors",),
                hint="move mirror into the mirrors list",
            )

    def _check_authority(self) -> None:
        """The authority may be rewritten in one place only."""
        current = self.rewrite.authority if self.rewrite is not None else ""
        request = self.headers.request if self.headers is not None else None
        if request is None:
            return
        for op in ("set", "add"):
            for name, value in getattr(request, op).items():
                if not _is_authority_header(name):
                    continue
                if current:
                    raise invalid(
                        f"authority is set more than once: have {current!r}, attempting to set "
                        f"{value!r}",
                        at=("headers", "request", op, name),
                        hint="set the authority in one place: rewrite.authority or one header",
                    )
                current = value


# --- TLS and TCP ------------------------------------------------------------------------------


class TLSMatchAttributes(IstioModel):
    """Match for TLS connections, by SNI."""

    sni_hosts: list[str] = []
    destination_subnets: list[str] = []
    port: UInt32 = 0
    source_labels: dict[str, str] = {}
    gateways: list[str] = []
    source_namespace: str = ""

    @model_validator(mode="after")
    def _check(self) -> TLSMatchAttributes:
        if not self.sni_hosts:
            raise invalid(
                "TLS match must have at least one SNI host",
                at=("sniHosts",),
                hint="list the server names clients send, e.g. [api.example.com]",
            )
        _check_subnets(self.destination_subnets, ("destinationSubnets",))
        if self.port:
            check_port(self.port, ("port",))
        _check_labels(self.source_labels, ("sourceLabels",))
        _check_gateway_names(self.gateways, ("gateways",))
        # meshpilot: Istio checks sourceNamespace only on HTTP matches.
        _check_source_namespace(self.source_namespace, ("sourceNamespace",))
        return self


class L4MatchAttributes(IstioModel):
    """Match for TCP connections."""

    destination_subnets: list[str] = []
    port: UInt32 = 0
    source_subnet: str = ""
    source_labels: dict[str, str] = {}
    gateways: list[str] = []
    source_namespace: str = ""

    @model_validator(mode="after")
    def _check(self) -> L4MatchAttributes:
        _check_subnets(self.destination_subnets, ("destinationSubnets",))
        if self.port:
            check_port(self.port, ("port",))
        _check_labels(self.source_labels, ("sourceLabels",))
        _check_gateway_names(self.gateways, ("gateways",))
        # meshpilot: Istio checks sourceNamespace only on HTTP matches.
        _check_source_namespace(self.source_namespace, ("sourceNamespace",))
        return self


class TLSRoute(IstioModel):
    """Routing for unterminated TLS (passthrough) by SNI."""

    match: list[TLSMatchAttributes] = []
    route: list[RouteDestination] = []

    @model_validator(mode="after")
    def _check(self) -> TLSRoute:
        if not self.match:
            raise invalid(
                "TLS route must have at least one match condition",
                at=("match",),
                hint="e.g. match: [{sniHosts: [api.example.com]}]",
            )
        if not self.route:
            raise invalid("TLS route needs at least one destination", at=("route",))
        _check_weights([d.weight for d in self.route], ("route",))
        return self


class TCPRoute(IstioModel):
    """Routing for opaque TCP."""

    match: list[L4MatchAttributes] = []
    route: list[RouteDestination] = []

    @model_validator(mode="after")
    def _check(self) -> TCPRoute:
        if not self.route:
            raise invalid("TCP route needs at least one destination", at=("route",))
        _check_weights([d.weight for d in self.route], ("route",))
        return self


# --- the spec ---------------------------------------------------------------------------------


class VirtualService(IstioModel):
    """The VirtualService spec."""

    hosts: list[str] = []
    gateways: list[str] = []
    http: list[HTTPRoute] = []
    tls: list[TLSRoute] = []
    tcp: list[TCPRoute] = []
    export_to: list[str] = []

    @field_validator("gateways")
    @classmethod
    def _gateways(cls, value: list[str]) -> list[str]:
        _check_gateway_names(value, ())
        return value

    @field_validator("export_to")
    @classmethod
    def _export_to(cls, value: list[str], info: ValidationInfo) -> list[str]:
        check_export_to(value, context_namespace(info), allow_none=False)
        return value

    @property
    def is_delegate(self) -> bool:
        """A VirtualService without hosts is a delegate, reachable only from a root's delegate."""
        return not self.hosts

    @property
    def bound_to_gateways_only(self) -> bool:
        return bool(self.gateways) and MESH_GATEWAY not in self.gateways

    @model_validator(mode="after")
    def _check(self) -> VirtualService:
        if self.is_delegate:
            for field in ("gateways", "tls", "tcp"):
                if getattr(self, field):
                    what = "gateways" if field == "gateways" else f"{field} routes"
                    raise invalid(
                        f"a delegate VirtualService (one without hosts) must have no {what}",
                        at=(field,),
                        hint=f"remove {field}, or add hosts to make it a root",
                    )
        if not (self.http or self.tcp or self.tls):
            raise invalid(
                "http, tcp or tls must be provided in virtual service",
                hint="add at least one routing rule, e.g. http: [{route: [...]}]",
            )
        self._check_hosts()
        for i, route in enumerate(self.http):
            if self.is_delegate and route.delegate is not None:
                raise invalid(
                    "a delegate VirtualService cannot delegate again", at=("http", i, "delegate")
                )
        if not self.bound_to_gateways_only:
            for i, route in enumerate(self.http):
                for j, m in enumerate(route.match):
                    for field in ("headers", "withoutHeaders"):
                        values = m.headers if field == "headers" else m.without_headers
                        for key in values:
                            if _is_jwt_claim(key):
                                raise invalid(
                                    f"JWT claim based routing ({key}) is only supported on "
                                    "gateways",
                                    at=("http", i, "match", j, field, key),
                                    hint="bind the VirtualService to gateways only (no mesh)",
                                )
        self._check_sni_hosts()
        return self

    def _check_hosts(self) -> None:
        gateway_only = self.bound_to_gateways_only
        sni = any(m.sni_hosts for t in self.tls for m in t.match)
        for i, host in enumerate(self.hosts):
            problem = (
                _gateway_domain_problem(sni, host)
                if gateway_only
                else (wildcard_domain_problem(host))
            )
            if problem:
                if not is_ip(host):
                    raise invalid(problem, at=("hosts", i), hint=_HOST_HINT)
            elif not gateway_only and host == "*":
                raise invalid(
                    "wildcard host * is not allowed for virtual services bound to the mesh",
                    at=("hosts", i),
                    hint="list the service hosts, or bind it only to gateways (without mesh)",
                )
        for j in range(1, len(self.hosts)):
            for i in range(j):
                a, b = self.hosts[i], self.hosts[j]
                if host_matches(a, b):
                    raise invalid(
                        f"duplicate hosts in virtual service: {a} & {b}",
                        at=("hosts", j),
                        hint="hosts of one VirtualService must not "
                        "overlap (a wildcard covers the names below it)",
                    )

    def _check_sni_hosts(self) -> None:
        gateway = MESH_GATEWAY not in self.gateways  # Istio's isGateway: true when none listed
        for i, route in enumerate(self.tls):
            for j, m in enumerate(route.match):
                for k, sni in enumerate(m.sni_hosts):
                    at = ("tls", i, "match", j, "sniHosts", k)
                    problem = (
                        _gateway_domain_problem(True, sni)
                        if gateway
                        else (wildcard_domain_problem(sni))
                    )
                    if problem:
                        if is_ip(sni):
                            continue  # a warning, see warnings()
                        raise invalid(problem, at=at)
                    if not any(host_subset_of(sni, h) for h in self.hosts):
                        raise invalid(
                            f"SNI host {sni!r} is not covered by any of the virtual service "
                            f"hosts: [{', '.join(self.hosts)}]",
                            at=at,
                            hint="add the name (or a wildcard covering it) to hosts",
                        )

    # --- warnings -----------------------------------------------------------------------

    def warnings(self) -> list[Issue]:
        """Istio's validation warnings (plus a few of meshpilot's), paths relative to the spec."""
        out = _legacy_gateway_warnings(self.gateways, ("gateways",))
        mesh_applies = not self.gateways or MESH_GATEWAY in self.gateways
        for i, route in enumerate(self.http):
            out.extend(_route_warnings(route, ("http", i), mesh_applies=mesh_applies))
        for i, tls in enumerate(self.tls):
            for j, tm in enumerate(tls.match):
                at = ("tls", i, "match", j)
                out.extend(_legacy_gateway_warnings(tm.gateways, (*at, "gateways")))
                out.extend(
                    _warning((*at, "sniHosts", k), _IP_SNI.format(sni=sni))
                    for k, sni in enumerate(tm.sni_hosts)
                    if is_ip(sni)
                )
        for i, tcp in enumerate(self.tcp):
            for j, lm in enumerate(tcp.match):
                out.extend(
                    _legacy_gateway_warnings(lm.gateways, ("tcp", i, "match", j, "gateways"))
                )
        out.extend(_unreachable_warnings("http", self.http))
        out.extend(_unreachable_warnings("tls", self.tls))
        out.extend(_unreachable_warnings("tcp", self.tcp))
        out.extend(_overlapping_prefix_warnings(self.http))
        return out


_IP_SNI = "using an IP address ({sni!r}) as SNI goes against the SNI spec; most clients omit it"


def _warning(path: Path, message: str, hint: str | None = None) -> Issue:
    return Issue(path=path, message=message, hint=hint, severity="warning")


def _route_warnings(route: HTTPRoute, at: Path, *, mesh_applies: bool) -> list[Issue]:
    out: list[Issue] = []
    if route.mirror_percent is not None:
        out.append(
            _warning(
                (*at, "mirrorPercent"),
                'using deprecated setting "mirrorPercent"',
                'use "mirrorPercentage: {value: N}" instead',
            )
        )
    fault = route.fault
    if (
        fault is not None
        and fault.abort is not None
        and not (fault.abort.http_status is not None or fault.abort.grpc_status is not None)
    ):
        out.append(
            _warning(
                (*at, "fault", "abort"),
                "abort configured, but error type not set",
                "set httpStatus or grpcStatus; without one the abort is ignored",
            )
        )
    if fault is not None and fault.delay is not None:
        if fault.delay.fixed_delay is None and fault.delay.exponential_delay is None:
            out.append(
                _warning(
                    (*at, "fault", "delay"),
                    "delay has no fixedDelay and is ignored",
                    "set fixedDelay, e.g. 5s",
                )
            )
        if fault.delay.percent:
            out.append(
                _warning(
                    (*at, "fault", "delay", "percent"),
                    'using deprecated setting "percent"',
                    'use "percentage: {value: N}" instead',
                )
            )
    if route.cors_policy is not None and route.cors_policy.allow_origin:
        out.append(
            _warning(
                (*at, "corsPolicy", "allowOrigin"),
                'using deprecated setting "allowOrigin"',
                'use "allowOrigins: [{exact: ...}]" instead',
            )
        )
    body = route.direct_response.body if route.direct_response is not None else None
    if body is not None and body.size > 100 * _KB:
        out.append(
            _warning(
                (*at, "directResponse", "body"),
                "large direct responses may impact control plane performance",
            )
        )
    if route.redirect is not None and route.redirect.redirect_code not in (
        0,
        301,
        302,
        303,
        307,
        308,
    ):
        out.append(
            _warning(
                (*at, "redirect", "redirectCode"),
                f"redirect code {route.redirect.redirect_code} is not supported by Envoy; "
                "the route gets no action",
                "use 301, 302, 303, 307 or 308",
            )
        )
    for j, m in enumerate(route.match):
        mat = (*at, "match", j)
        out.extend(_legacy_gateway_warnings(m.gateways, (*mat, "gateways")))
        for field, values in (("headers", m.headers), ("withoutHeaders", m.without_headers)):
            for key in values:
                if key != key.lower() and not _is_jwt_claim(key):
                    out.append(
                        _warning(
                            (*mat, field, key),
                            f"header name {key!r} is not lowercase",
                            f"Istio expects lowercase header keys: {key.lower()}",
                        )
                    )
        if m.ignore_uri_case and (m.uri is None or m.uri.regex is not None):
            out.append(
                _warning(
                    (*mat, "ignoreUriCase"),
                    "ignoreUriCase only affects exact and prefix uri matches",
                )
            )
        if not mesh_applies and (m.source_labels or m.source_namespace):
            out.append(
                _warning(
                    (*mat, "sourceLabels" if m.source_labels else "sourceNamespace"),
                    "sourceLabels/sourceNamespace select sidecars, but this VirtualService is not "
                    "bound to mesh",
                    "add mesh to gateways, or remove the selector",
                )
            )
    return out


def _match_key(match: IstioModel) -> str:
    """A canonical form of a match without its name, to find identical matches."""
    data = match.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data.pop("name", None)
    return json.dumps(data, sort_keys=True)


def _unreachable_warnings(
    kind: str, routes: list[HTTPRoute] | list[TLSRoute] | list[TCPRoute]
) -> list[Issue]:
    """Istio's unreachable-rule analysis: rules after a catch-all, and repeated matches."""
    out: list[Issue] = []
    seen: dict[str, int] = {}
    catch_all = -1
    for n, route in enumerate(routes):
        label = _rule_label(route, n)
        if not route.match:
            if catch_all >= 0:
                out.append(
                    _warning(
                        (kind, n),
                        f"virtualService rule {label} not used "
                        "(only the last rule can have no matches)",
                        f"rule {catch_all} has no match and catches everything",
                    )
                )
            catch_all = n
            continue
        if catch_all >= 0:
            out.append(
                _warning(
                    (kind, n),
                    f"virtualService rule {label} not used (route without matches defined before)",
                    f"rule {catch_all} has no match and catches everything; "
                    "move the catch-all rule last",
                )
            )
            continue
        duplicates = 0
        for j, m in enumerate(route.match):
            key = _match_key(m)
            if key in seen:
                duplicates += 1
                earlier = _rule_label(routes[seen[key]], seen[key])
                out.append(
                    _warning(
                        (kind, n, "match", j),
                        f"virtualService rule {label} match {_match_label(m, j)} is not used "
                        f"(duplicate/overlapping match in rule {earlier})",
                    )
                )
            else:
                seen[key] = n
        if duplicates == len(route.match):
            out.append(
                _warning(
                    (kind, n),
                    f"virtualService rule {label} not used (all matches used by prior rules)",
                )
            )
    return out


def _rule_label(route: object, n: int) -> str:
    name = getattr(route, "name", "")
    return f'"{name}"' if name else f"#{n}"


def _match_label(match: object, n: int) -> str:
    name = getattr(match, "name", "")
    return f'"{name}"' if name else f"#{n}"


def _exact_or_prefix(sm: StringMatch | None) -> str:
    if sm is None:
        return ""
    if sm.exact:
        return "exact:" + sm.exact
    if sm.prefix:
        return "prefix:" + sm.prefix
    return ""


def _overlapping_prefix_warnings(routes: list[HTTPRoute]) -> list[Issue]:
    """Istio's check that an earlier uri prefix match does not cover a later one.

    meshpilot also requires equal gateways, source selectors and scheme before calling a
    match covered, since those make a rule apply to different traffic.
    """
    seen: set[str] = set()
    prefixed: list[tuple[int, int, HTTPRoute, HTTPMatchRequest]] = []
    catch_all = False
    for n, route in enumerate(routes):
        if not route.match:
            catch_all = True
            continue
        if catch_all:
            continue
        for j, m in enumerate(route.match):
            key = _match_key(m)
            if key in seen:
                continue
            seen.add(key)
            if m.uri is not None and m.uri.prefix:
                prefixed.append((n, j, route, m))
    out: list[Issue] = []
    for a_idx, (an, aj, a_route, a) in enumerate(prefixed):
        for bn, bj, b_route, b in prefixed[a_idx + 1 :]:
            assert a.uri is not None and b.uri is not None
            if a.uri.prefix == b.uri.prefix or not _covers(a, b):
                continue
            out.append(
                _warning(
                    ("http", bn, "match", bj),
                    f"virtualService rule {_rule_label(b_route, bn)} match {_match_label(b, bj)} "
                    f"of prefix {b.uri.prefix} is not used "
                    f"(covered by match {_match_label(a, aj)} of prefix {a.uri.prefix} "
                    f"on rule {_rule_label(a_route, an)})",
                    "order the longer prefix first",
                )
            )
    return out


def _covers(a: HTTPMatchRequest, b: HTTPMatchRequest) -> bool:
    assert a.uri is not None and b.uri is not None
    if not (b.uri.prefix or "").startswith(a.uri.prefix or ""):
        return False
    if a.port != b.port:
        return False
    if (a.gateways, a.source_labels, a.source_namespace, a.scheme) != (
        b.gateways,
        b.source_labels,
        b.source_namespace,
        b.scheme,
    ):
        return False
    a_method = _exact_or_prefix(a.method) or "exact:GET"
    b_method = _exact_or_prefix(b.method) or "exact:GET"
    if a_method != b_method and not a_method.startswith(b_method):
        return False
    a_auth, b_auth = _exact_or_prefix(a.authority), _exact_or_prefix(b.authority)
    if a_auth != b_auth and not a_auth.startswith(b_auth):
        return False
    for a_map, b_map in (
        (a.headers, b.headers),
        (a.query_params, b.query_params),
        (a.without_headers, b.without_headers),
    ):
        if len(a_map) != len(b_map):
            return False
        for key, value in a_map.items():
            if key not in b_map:
                return False
            av, bv = _exact_or_prefix(value), _exact_or_prefix(b_map[key])
            if av != bv and not av.startswith(bv):
                return False
    return True
