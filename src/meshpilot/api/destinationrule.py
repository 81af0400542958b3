"""DestinationRule: what happens to traffic after routing picked a destination host.

The models mirror istio/api `networking/v1alpha3/destination_rule.proto` field for field
(JSON names included), and the validators reproduce what Istio accepts: the Go checks of
`ValidateDestinationRule` plus the constraints Istio's CRD schema enforces (oneofs, integer
ranges, required fields, `duration >= 1ms` rules). Accepting what Istio rejects, or the
reverse, would make the same YAML behave differently here and in a real mesh.

`DestinationRule.warnings()` reports what Istio only warns about (deprecated fields,
settings that cannot take effect), and `effective_subset_policy` resolves the policy a
subset/port cluster really gets, following Istio's block-by-block merge.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, model_validator

from .base import (
    Duration,
    IstioModel,
    check_duration_at_least_1ms,
    check_export_to,
    context_namespace,
    fqdn_problem,
    invalid,
    is_ip,
    parse_duration,
    wildcard_domain_problem,
)
from .errors import Issue, PathPart

# Integer widths of the proto fields. The CRD schema bounds them the same way
# (format int32, or minimum/maximum for the unsigned types).
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
UInt32 = Annotated[int, Field(ge=0, le=2**32 - 1)]
UInt64 = Annotated[int, Field(ge=0, le=2**64 - 1)]
HttpStatus = Annotated[int, Field(ge=100, le=599)]

MAX_PORT_LEVEL_SETTINGS = 4096  # CRD maxItems on portLevelSettings
MAGLEV_TABLE_LIMIT = 5000011  # Envoy's largest maglev table is the prime below this
TOPOLOGY_LABELS = (
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
)


# --- Istio's name rules (they differ from Kubernetes': upper case is allowed) ---------------

_LABEL = r"[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?"
_LABEL_RE = re.compile(_LABEL)
_WILDCARD_LABEL_RE = re.compile(rf"\*|(?:\*|\*-)?{_LABEL}")
_QUALIFIED_NAME = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_TAG_KEY_RE = re.compile(rf"({_LABEL}(?:\.{_LABEL})*/)?({_QUALIFIED_NAME})")
_TAG_VALUE_RE = re.compile(rf"(?:{_QUALIFIED_NAME})?")
_GO_INT_RE = re.compile(r"[+-]?\d+")


def _is_label(value: str) -> bool:
    """Istio's IsDNS1123Label: like Kubernetes' but upper-case letters are accepted."""
    return len(value) <= 63 and bool(_LABEL_RE.fullmatch(value))


def tag_problem(key: str, value: str) -> str | None:
    """Istio's labels.Instance.Validate for one `key: value` pair."""
    match = _TAG_KEY_RE.fullmatch(key)
    if match is None:
        return f"invalid label key {key!r}"
    if match.group(1) and len(match.group(1)) - 1 > 253:
        return f"invalid label key {key!r}: the DNS prefix is longer than 253 characters"
    if len(match.group(2)) > 63:
        return f"invalid label key {key!r}: the name is longer than 63 characters"
    if not _TAG_VALUE_RE.fullmatch(value):
        return f"invalid label value {value!r} for key {key!r}"
    return None


def _durations(model: IstioModel, *names: str) -> None:
    """Istio's ValidateDuration (>= 1ms, whole milliseconds) on each of `names` that is set."""
    for name in names:
        value = getattr(model, name)
        alias = type(model).model_fields[name].alias or name
        check_duration_at_least_1ms(value, (alias,))


def _at_least_1ms(value: str | None, at: tuple[PathPart, ...]) -> None:
    """The CRD's `duration(self) >= duration('1ms')` rule (no whole-millisecond requirement)."""
    if value is not None and parse_duration(value) < Decimal("0.001"):
        raise invalid(f"duration {value} must be at least 1ms", at=at)


def _set_fields(model: IstioModel, names: tuple[str, ...]) -> list[str]:
    """JSON names of the fields among `names` that the user set."""
    fields = type(model).model_fields
    return [fields[n].alias or n for n in names if getattr(model, n) is not None]


def _one_of(model: IstioModel, names: tuple[str, ...], what: str) -> None:
    """Proto oneof: at most one of `names`; the error points at the second one set."""
    chosen = _set_fields(model, names)
    if len(chosen) > 1:
        raise invalid(
            f"only one of {what} can be set, got {' and '.join(chosen)}",
            at=(chosen[1],),
            hint=f"keep {chosen[0]} or {chosen[1]}, not both",
        )


# --- workload selection -----------------------------------------------------------------


class WorkloadSelector(IstioModel):
    """istio.type.v1beta1.WorkloadSelector: the proxies a DestinationRule applies to."""

    match_labels: dict[str, str] | None = None

    @model_validator(mode="after")
    def _check(self) -> WorkloadSelector:
        labels = self.match_labels or {}
        if len(labels) > 4096:
            raise invalid("matchLabels may have at most 4096 entries", at=("matchLabels",))
        for key, value in labels.items():
            if key == "":
                raise invalid(
                    "empty label key is not supported in a workload selector",
                    at=("matchLabels",),
                )
            if "*" in key or "*" in value:
                raise invalid(
                    f"wildcard is not supported in a workload selector: {key}={value}",
                    at=("matchLabels", key),
                    hint="workload selectors match exact label values",
                )
        return self


class PortSelector(IstioModel):
    """networking.PortSelector as used by portLevelSettings (Istio does not range-check it)."""

    number: UInt32 | None = None


# --- TLS ------------------------------------------------------------------------------------

TLSmode = Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]


class ClientTLSSettings(IstioModel):
    """TLS the proxy originates towards the upstream endpoints."""

    mode: TLSmode | None = None
    client_certificate: str | None = None
    private_key: str | None = None
    ca_certificates: str | None = None
    credential_name: str | None = None
    subject_alt_names: list[str] | None = None
    sni: str | None = None
    insecure_skip_verify: bool | None = None
    ca_crl: str | None = None

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> ClientTLSSettings:
        namespace = context_namespace(info) or ""
        cred = self.credential_name or ""
        if cred.startswith("configmap://"):
            ns, _, name = cred[len("configmap://") :].partition("/")
            name = name.split("/")[0]
            if not ns or not name:
                raise invalid(
                    f"invalid configmap:// credentialName {cred!r}: expected "
                    "configmap://<namespace>/<name>",
                    at=("credentialName",),
                )
            if ns != namespace or not namespace:
                raise invalid(
                    f"invalid configmap:// credentialName {cred!r}: the namespace must be the "
                    f"DestinationRule's own namespace {namespace!r}",
                    at=("credentialName",),
                )
        if self.insecure_skip_verify:
            if self.mode == "SIMPLE":
                for name in ("ca_certificates", "credential_name", "subject_alt_names"):
                    if getattr(self, name):
                        raise invalid(
                            "caCertificates, credentialName and subjectAltNames cannot be set "
                            "when insecureSkipVerify is true",
                            at=(type(self).model_fields[name].alias or name,),
                            hint="remove it, or set insecureSkipVerify: false to verify the server",
                        )
            if self.mode == "MUTUAL":
                for name in ("ca_certificates", "subject_alt_names"):
                    if getattr(self, name):
                        raise invalid(
                            "caCertificates and subjectAltNames cannot be set when "
                            "insecureSkipVerify is true",
                            at=(type(self).model_fields[name].alias or name,),
                            hint="remove it, or set insecureSkipVerify: false to verify the server",
                        )
        if self.mode in ("SIMPLE", "MUTUAL") and cred:
            for name in ("client_certificate", "ca_certificates", "private_key", "ca_crl"):
                if getattr(self, name):
                    alias = type(self).model_fields[name].alias or name
                    raise invalid(
                        f"{alias} cannot be set together with credentialName",
                        at=(alias,),
                        hint="put the certificates, key and CRL into the credential, "
                        "or drop credentialName and use file paths",
                    )
            return self
        if self.mode == "MUTUAL":
            if not self.client_certificate:
                raise invalid(
                    "clientCertificate is required for MUTUAL TLS",
                    at=("clientCertificate",),
                    hint="set clientCertificate and privateKey, or credentialName",
                )
            if not self.private_key:
                raise invalid(
                    "privateKey is required for MUTUAL TLS",
                    at=("privateKey",),
                    hint="set clientCertificate and privateKey, or credentialName",
                )
        return self


# --- load balancing -------------------------------------------------------------------------

SimpleLB = Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN",
                   "LEAST_REQUEST"]  # fmt: skip


class RingHash(IstioModel):
    minimum_ring_size: UInt64 | None = None


class MagLev(IstioModel):
    """Maglev's lookup table size; Envoy requires a prime below 5000011."""

    table_size: UInt64 | None = None

    @model_validator(mode="after")
    def _check(self) -> MagLev:
        size = self.table_size or 0
        if size == 0:
            raise invalid(
                "tableSize must be set for maglev",
                at=("tableSize",),
                hint="use a prime such as 65537",
            )
        if size >= MAGLEV_TABLE_LIMIT:
            raise invalid(
                f"tableSize must be less than {MAGLEV_TABLE_LIMIT} for maglev", at=("tableSize",)
            )
        if not _is_prime(size):
            raise invalid(
                f"tableSize {size} must be a prime number for maglev",
                at=("tableSize",),
                hint="e.g. 65537 or 131071",
            )
        return self


def _is_prime(x: int) -> bool:
    """Envoy's primality test (1, 2 and 3 count as prime), so we agree with it exactly."""
    if 0 < x < 4:
        return True
    if x % 2 == 0:
        return False
    factor = 3
    while factor * factor <= x:
        if x % factor == 0:
            return False
        factor += 2
    return True


class Attribute(IstioModel):
    """One extra attribute (e.g. SameSite) of the generated session cookie."""

    name: str
    value: str | None = None


class HTTPCookie(IstioModel):
    name: str
    path: str | None = None
    ttl: Duration | None = None  # 0s is meaningful (a session cookie): no 1ms minimum
    attributes: list[Attribute] | None = None

    @model_validator(mode="after")
    def _check(self) -> HTTPCookie:
        if self.name == "":
            raise invalid("name required for httpCookie", at=("name",))
        seen: set[str] = set()
        for i, attr in enumerate(self.attributes or []):
            if attr.name == "":
                raise invalid("cookie attribute name cannot be empty", at=("attributes", i, "name"))
            if attr.name in seen:
                raise invalid(
                    f"duplicate cookie attribute name {attr.name!r}", at=("attributes", i, "name")
                )
            seen.add(attr.name)
        return self


class ConsistentHashLB(IstioModel):
    """Session affinity: one hash key and optionally one hash algorithm."""

    http_header_name: str | None = None
    http_cookie: HTTPCookie | None = None
    use_source_ip: bool | None = None
    http_query_parameter_name: str | None = None
    ring_hash: RingHash | None = None
    maglev: MagLev | None = None
    minimum_ring_size: UInt64 | None = None  # deprecated: use ringHash.minimumRingSize

    @model_validator(mode="after")
    def _check(self) -> ConsistentHashLB:
        _one_of(self, ("http_header_name", "http_cookie", "use_source_ip",
                       "http_query_parameter_name"), "the consistentHash keys")  # fmt: skip
        _one_of(self, ("ring_hash", "maglev"), "ringHash or maglev")
        if self.minimum_ring_size and (self.ring_hash is not None or self.maglev is not None):
            raise invalid(
                "only one of minimumRingSize or maglev/ringHash can be specified",
                at=("minimumRingSize",),
                hint="move the value to ringHash.minimumRingSize",
            )
        return self


class Distribute(IstioModel):
    from_: str | None = Field(default=None, alias="from")
    to: dict[str, UInt32] | None = None


class Failover(IstioModel):
    from_: str | None = Field(default=None, alias="from")
    to: str | None = None


class ZoneAwareFailover(IstioModel):
    """ZoneAwareLoadBalancerSetting.Failover (same shape as the locality one)."""

    from_: str | None = Field(default=None, alias="from")
    to: str | None = None


def _localities_problem(localities: list[str]) -> str | None:
    """Istio's validateLocalities: `region[/zone[/subzone]]`, one trailing `*`, no overlaps."""
    seen: dict[str, dict[str, dict[str, bool]]] = {}
    overlap = "locality {} overlaps with one specified before"
    for locality in localities:
        stars = locality.count("*")
        if stars and (stars > 1 or not locality.endswith("*")):
            return f"locality {locality}: at most one wildcard '*' is allowed, and only at the end"
        if "*" in seen:
            return overlap.format(locality)
        items = locality.split("/", 2)
        if any(item == "" for item in items):
            return f"locality {locality} must not contain an empty region/zone/subzone"
        region = items[0]
        zone = items[1] if len(items) > 1 else ""
        subzone = items[2] if len(items) > 2 else ""
        if len(items) == 1:
            if region in seen:
                return overlap.format(locality)
            seen[region] = {"*": {"*": True}}
        elif len(items) == 2:
            zones = seen.get(region)
            if zones is not None:
                if "*" in zones or zone in zones:
                    return overlap.format(locality)
                zones[zone] = {"*": True}
            else:
                seen[region] = {zone: {"*": True}}
        else:
            zones = seen.get(region)
            if zones is not None:
                if "*" in zones:
                    return overlap.format(locality)
                subzones = zones.get(zone)
                if subzones is not None:
                    if subzones.get("*") or subzones.get(subzone):
                        return overlap.format(locality)
                    subzones[subzone] = True
                else:
                    zones[zone] = {subzone: True}
            else:
                seen[region] = {zone: {subzone: True}}
    return None


class LocalityLoadBalancerSetting(IstioModel):
    """Locality-weighted distribution or locality failover (not both)."""

    distribute: list[Distribute] | None = None
    failover: list[Failover] | None = None
    failover_priority: list[str] | None = None
    enabled: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> LocalityLoadBalancerSetting:
        distribute, failover = self.distribute or [], self.failover or []
        if distribute and failover:
            raise invalid(
                "distribute and failover cannot be set together",
                at=("failover",),
                hint="use distribute for weighted spreading or failover for ordered "
                "fallback, not both",
            )
        if failover:
            for i, label in enumerate(self.failover_priority or []):
                if label in TOPOLOGY_LABELS:
                    raise invalid(
                        f"failover and the topology label {label!r} in failoverPriority cannot "
                        "be set together",
                        at=("failoverPriority", i),
                        hint="failover already orders regions; list only other labels here",
                    )
        for i, entry in enumerate(distribute):
            total = 0
            for loc, weight in (entry.to or {}).items():
                if not 1 <= weight <= 100:
                    raise invalid(
                        f"locality weight {weight} must be in the range 1..100",
                        at=("distribute", i, "to", loc),
                    )
                total += weight
            if total != 100:
                raise invalid(
                    f"locality weights add up to {total}, they must add up to 100",
                    at=("distribute", i, "to"),
                )
            problem = _localities_problem(list(entry.to or {}))
            if problem:
                raise invalid(problem, at=("distribute", i, "to"))
        problem = _localities_problem([e.from_ or "" for e in distribute])
        if problem:
            raise invalid(problem, at=("distribute",))
        for i, entry in enumerate(failover):
            src, dst = entry.from_ or "", entry.to or ""
            if src == dst:
                raise invalid(
                    "locality failover must name different from and to regions",
                    at=("failover", i, "to"),
                )
            if "/" in src or "/" in dst:
                raise invalid(
                    "locality failover takes regions only (no zone/subzone)",
                    at=("failover", i, "from" if "/" in src else "to"),
                )
            if "*" in src or "*" in dst:
                raise invalid(
                    "locality failover regions cannot contain the '*' wildcard",
                    at=("failover", i, "from" if "*" in src else "to"),
                )
        return self


class ZoneAwareLoadBalancerSetting(IstioModel):
    """Envoy's zone-aware routing; region/zone ordering is automatic."""

    enabled: bool | None = None
    failover: list[ZoneAwareFailover] | None = None
    failover_priority: list[str] | None = None
    min_cluster_size: Annotated[int, Field(ge=1, le=2**64 - 1)] | None = None

    @model_validator(mode="after")
    def _check(self) -> ZoneAwareLoadBalancerSetting:
        for i, label in enumerate(self.failover_priority or []):
            if label in TOPOLOGY_LABELS:
                raise invalid(
                    f"failoverPriority for zone-aware load balancing must not use the topology "
                    f"label {label!r}",
                    at=("failoverPriority", i),
                    hint="region and zone routing are handled automatically",
                )
        for i, entry in enumerate(self.failover or []):
            src, dst = entry.from_ or "", entry.to or ""
            if src == dst:
                raise invalid(
                    "zone-aware failover must name different from and to regions",
                    at=("failover", i, "to"),
                )
            if "/" in src or "/" in dst:
                raise invalid(
                    "zone-aware failover takes regions only; zone and subzone failover are "
                    "automatic",
                    at=("failover", i, "from" if "/" in src else "to"),
                )
            if "*" in src or "*" in dst:
                raise invalid(
                    "zone-aware failover regions cannot contain the '*' wildcard",
                    at=("failover", i, "from" if "*" in src else "to"),
                )
        return self


class WarmupConfiguration(IstioModel):
    """Slow start for new endpoints."""

    duration: Duration
    minimum_percent: Annotated[float, Field(ge=0)] | None = None
    aggression: Annotated[float, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _check(self) -> WarmupConfiguration:
        _durations(self, "duration")
        if self.minimum_percent is not None and self.minimum_percent > 100:
            raise invalid(
                "minimumPercent must be less than or equal to 100", at=("minimumPercent",)
            )
        if self.aggression is not None and self.aggression <= 0:
            raise invalid(
                "aggression must be greater than 0",
                at=("aggression",),
                hint="1.0 (the default) ramps traffic up linearly",
            )
        return self


class LoadBalancerSettings(IstioModel):
    simple: SimpleLB | None = None
    consistent_hash: ConsistentHashLB | None = None
    locality_lb_setting: LocalityLoadBalancerSetting | None = None
    zone_aware_lb_setting: ZoneAwareLoadBalancerSetting | None = None
    warmup_duration_secs: Duration | None = None  # deprecated alternative to warmup
    warmup: WarmupConfiguration | None = None

    @model_validator(mode="after")
    def _check(self) -> LoadBalancerSettings:
        _one_of(self, ("simple", "consistent_hash"), "simple or consistentHash")
        if self.locality_lb_setting is not None and self.zone_aware_lb_setting is not None:
            raise invalid(
                "only one of localityLbSetting and zoneAwareLbSetting can be set",
                at=("zoneAwareLbSetting",),
            )
        _one_of(self, ("warmup_duration_secs", "warmup"), "warmupDurationSecs or warmup")
        _at_least_1ms(self.warmup_duration_secs, ("warmupDurationSecs",))
        return self


# --- connection pool --------------------------------------------------------------------------


class TcpKeepalive(IstioModel):
    probes: UInt32 | None = None
    time: Duration | None = None
    interval: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> TcpKeepalive:
        _durations(self, "time", "interval")
        return self


class TCPSettings(IstioModel):
    max_connections: Int32 | None = None
    connect_timeout: Duration | None = None
    tcp_keepalive: TcpKeepalive | None = None
    max_connection_duration: Duration | None = None
    idle_timeout: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> TCPSettings:
        if self.max_connections is not None and self.max_connections < 0:
            raise invalid("maxConnections must be non-negative", at=("maxConnections",))
        _durations(self, "connect_timeout", "max_connection_duration")
        # Below 1ms (0s in practice) the idle timeout is disabled, which Istio allows.
        if self.idle_timeout is not None and parse_duration(self.idle_timeout) >= Decimal("0.001"):
            _durations(self, "idle_timeout")
        return self


class ConnectionKeepalive(IstioModel):
    """HTTP/2 PING keepalive; Istio requires both fields."""

    interval: Duration | None = None
    timeout: Duration | None = None

    @model_validator(mode="after")
    def _check(self) -> ConnectionKeepalive:
        for name in ("interval", "timeout"):
            if getattr(self, name) is None:
                raise invalid(f"http2 keepalive {name} is required", at=(name,))
        _durations(self, "interval", "timeout")
        return self


H2UpgradePolicy = Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"]


class HTTPSettings(IstioModel):
    http1_max_pending_requests: Int32 | None = None
    http2_max_requests: Int32 | None = None
    max_requests_per_connection: Int32 | None = None
    max_retries: Int32 | None = None
    idle_timeout: Duration | None = None
    h2_upgrade_policy: H2UpgradePolicy | None = None
    use_client_protocol: bool | None = None
    max_concurrent_streams: Int32 | None = None
    http2_keep_alive: ConnectionKeepalive | None = None

    @model_validator(mode="after")
    def _check(self) -> HTTPSettings:
        for name in ("http1_max_pending_requests", "http2_max_requests",
                     "max_requests_per_connection", "max_retries"):  # fmt: skip
            value = getattr(self, name)
            if value is not None and value < 0:
                alias = type(self).model_fields[name].alias or name
                raise invalid(f"{alias} must be non-negative", at=(alias,))
        _durations(self, "idle_timeout")
        if self.h2_upgrade_policy == "UPGRADE" and self.use_client_protocol:
            raise invalid(
                "useClientProtocol must not be true when h2UpgradePolicy is UPGRADE",
                at=("useClientProtocol",),
                hint="either always upgrade to HTTP/2 or follow the client's protocol",
            )
        if self.max_concurrent_streams is not None and self.max_concurrent_streams < 0:
            raise invalid("maxConcurrentStreams must be non-negative", at=("maxConcurrentStreams",))
        return self


class ConnectionPoolSettings(IstioModel):
    """Circuit-breaker limits and connection settings for each upstream host."""

    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None

    @model_validator(mode="after")
    def _check(self) -> ConnectionPoolSettings:
        if self.tcp is None and self.http is None:
            raise invalid(
                "connection pool must have at least one field",
                hint="set tcp and/or http, or remove connectionPool",
            )
        return self


# --- outlier detection ------------------------------------------------------------------------


class OutlierDetection(IstioModel):
    """Passive health checking: eject hosts that keep failing."""

    consecutive_errors: Int32 | None = None  # deprecated and ignored since Istio 1.7
    split_external_local_origin_errors: bool | None = None
    consecutive_local_origin_failures: UInt32 | None = None
    consecutive_gateway_errors: UInt32 | None = None
    consecutive_5xx_errors: UInt32 | None = None
    interval: Duration | None = None
    base_ejection_time: Duration | None = None
    max_ejection_percent: Int32 | None = None
    min_health_percent: Int32 | None = None
    outlier_detection_http_error_codes: list[HttpStatus] | None = None

    @model_validator(mode="after")
    def _check(self) -> OutlierDetection:
        _durations(self, "base_ejection_time")
        if not self.split_external_local_origin_errors and self.consecutive_local_origin_failures:
            raise invalid(
                "consecutiveLocalOriginFailures is set, but splitExternalLocalOriginErrors is "
                "false",
                at=("consecutiveLocalOriginFailures",),
                hint="set splitExternalLocalOriginErrors: true",
            )
        _durations(self, "interval")
        for name in ("max_ejection_percent", "min_health_percent"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 100:
                alias = type(self).model_fields[name].alias or name
                raise invalid(f"percentage {value} is not in the range 0..100", at=(alias,))
        return self


# --- traffic policy ---------------------------------------------------------------------------


class TunnelSettings(IstioModel):
    """Tunnel TCP over HTTP CONNECT or POST to targetHost:targetPort."""

    protocol: str | None = None
    target_host: str
    target_port: UInt32

    @model_validator(mode="after")
    def _check(self) -> TunnelSettings:
        if self.protocol not in (None, "", "CONNECT", "POST"):
            raise invalid(
                f"tunnel protocol {self.protocol!r} is not supported",
                at=("protocol",),
                hint='use "CONNECT" (the default) or "POST"',
            )
        problem = fqdn_problem(self.target_host)
        if problem and not is_ip(self.target_host):
            raise invalid(
                f"tunnel targetHost must be a valid FQDN or IP address: {problem}",
                at=("targetHost",),
            )
        if not 1 <= self.target_port <= 65535:
            raise invalid(
                f"port number {self.target_port} must be in the range 1..65535", at=("targetPort",)
            )
        return self


class ProxyProtocol(IstioModel):
    version: Literal["V1", "V2"] | None = None


class RetryBudget(IstioModel):
    """Retries allowed as a share of active requests (Envoy retry_budget)."""

    percent: Annotated[float, Field(ge=0, le=100)] | None = None
    min_retry_concurrency: UInt32 | None = None
    budget_interval: Duration | None = None  # 0ms is the documented default: no minimum


_BLOCKS = ("load_balancer", "connection_pool", "outlier_detection", "tls")


class PortTrafficPolicy(IstioModel):
    """Policy for one port; it replaces the enclosing policy rather than adding to it."""

    port: PortSelector | None = None
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None

    @model_validator(mode="after")
    def _check(self) -> PortTrafficPolicy:
        if self.port is None:
            raise invalid(
                "port level settings need a port",
                at=("port",),
                hint="add port: {number: <service port>}",
            )
        if all(getattr(self, b) is None for b in _BLOCKS):
            raise invalid(
                "port traffic policy must have at least one field",
                hint="set loadBalancer, connectionPool, outlierDetection or tls, "
                "or remove this entry",
            )
        return self


class TrafficPolicy(IstioModel):
    load_balancer: LoadBalancerSettings | None = None
    connection_pool: ConnectionPoolSettings | None = None
    outlier_detection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    port_level_settings: list[PortTrafficPolicy] | None = None
    tunnel: TunnelSettings | None = None
    proxy_protocol: ProxyProtocol | None = None
    retry_budget: RetryBudget | None = None

    @model_validator(mode="after")
    def _check(self) -> TrafficPolicy:
        others = [getattr(self, n) for n in type(self).model_fields if n != "port_level_settings"]
        if all(v is None for v in others) and not self.port_level_settings:
            raise invalid(
                "traffic policy must have at least one field",
                hint="remove trafficPolicy or set one of its fields",
            )
        if self.tunnel is not None and self.proxy_protocol is not None:
            raise invalid(
                "tunnel and proxyProtocol must not be set together", at=("proxyProtocol",)
            )
        if len(self.port_level_settings or []) > MAX_PORT_LEVEL_SETTINGS:
            raise invalid(
                f"portLevelSettings may have at most {MAX_PORT_LEVEL_SETTINGS} entries",
                at=("portLevelSettings",),
            )
        return self


class Subset(IstioModel):
    """A named group of endpoints (selected by labels) with an optional policy override."""

    name: str
    labels: dict[str, str] | None = None
    traffic_policy: TrafficPolicy | None = None

    @model_validator(mode="after")
    def _check(self) -> Subset:
        if self.name == "":
            raise invalid("subset name cannot be empty", at=("name",))
        if not _is_label(self.name):
            raise invalid(
                f"subset name {self.name!r} is invalid: it must be a DNS-1123 label",
                at=("name",),
                hint="use letters, digits and '-', at most 63 characters, e.g. v1 or canary",
            )
        for key, value in (self.labels or {}).items():
            problem = tag_problem(key, value)
            if problem:
                raise invalid(problem, at=("labels", key))
        return self


class DestinationRule(IstioModel):
    """The DestinationRule spec."""

    host: str
    traffic_policy: TrafficPolicy | None = None
    subsets: list[Subset] | None = None
    export_to: list[str] | None = None
    workload_selector: WorkloadSelector | None = None

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> DestinationRule:
        problem = wildcard_domain_problem(self.host)
        if problem:
            raise invalid(
                problem,
                at=("host",),
                hint="use a service name such as reviews or "
                "reviews.prod.svc.cluster.local, or *.example.com",
            )
        seen: set[str] = set()
        for i, subset in enumerate(self.subsets or []):
            if subset.name in seen:
                raise invalid(
                    f"duplicate subset name {subset.name!r}",
                    at=("subsets", i, "name"),
                    hint="subset names must be unique within a DestinationRule",
                )
            seen.add(subset.name)
        namespace = context_namespace(info)
        try:
            check_export_to(self.export_to, namespace, allow_none=False)
        except Exception as e:  # re-anchor the error below exportTo
            ctx = getattr(e, "context", None) or {}
            if "message" not in ctx:
                raise
            raise invalid(
                str(ctx["message"]), at=("exportTo", *(ctx.get("at") or ())), hint=ctx.get("hint")
            ) from None
        if self.workload_selector is not None and self.export_to:
            own = {".", namespace}
            if not any(v in own for v in self.export_to):
                raise invalid(
                    "a destination rule with a workload selector cannot be exported beyond its "
                    "own namespace",
                    at=("exportTo",),
                    hint='use exportTo: ["."]',
                )
            if len(self.export_to) > 1:
                raise invalid(
                    "a destination rule with a workload selector cannot have multiple exportTo "
                    "entries",
                    at=("exportTo",),
                    hint='use exportTo: ["."]',
                )
        return self

    def warnings(self) -> list[Issue]:
        """What Istio accepts but warns about, with paths relative to the spec."""
        out: list[Issue] = []
        selector = self.workload_selector is not None
        if self.traffic_policy is not None:
            out += _policy_warnings(
                self.traffic_policy, ("trafficPolicy",), top_level=True, has_selector=selector
            )
        for i, subset in enumerate(self.subsets or []):
            if subset.traffic_policy is not None:
                out += _policy_warnings(
                    subset.traffic_policy,
                    ("subsets", i, "trafficPolicy"),
                    top_level=False,
                    has_selector=selector,
                )
        if self.workload_selector is not None and not self.workload_selector.match_labels:
            out.append(
                _warn(
                    ("workloadSelector",),
                    "workload selector specified without labels",
                    "add matchLabels, or remove workloadSelector to apply to all workloads",
                )
            )
        return out


# --- warnings --------------------------------------------------------------------------------


def _warn(path: tuple[PathPart, ...], message: str, hint: str | None = None) -> Issue:
    return Issue(path=path, message=message, hint=hint, severity="warning")


def _policy_warnings(
    policy: TrafficPolicy, at: tuple[PathPart, ...], *, top_level: bool, has_selector: bool
) -> list[Issue]:
    out = _blocks_warnings(policy, at, ca_check=top_level, has_selector=has_selector)
    first_index: dict[int, int] = {}
    for i, pls in enumerate(policy.port_level_settings or []):
        here = (*at, "portLevelSettings", i)
        number = pls.port.number if pls.port is not None and pls.port.number is not None else 0
        if not 1 <= number <= 65535:
            out.append(
                _warn(
                    (*here, "port", "number"),
                    f"port number {number} never matches a service port, so this entry "
                    "has no effect",
                    "use a port number in the range 1..65535",
                )
            )
        if number in first_index:
            out.append(
                _warn(
                    (*here, "port", "number"),
                    f"port {number} is already configured in portLevelSettings"
                    f"[{first_index[number]}]; only the first entry is used",
                    "merge the two entries",
                )
            )
        else:
            first_index[number] = i
        out += _blocks_warnings(pls, here, ca_check=top_level, has_selector=has_selector)
    return out


def _blocks_warnings(
    policy: TrafficPolicy | PortTrafficPolicy,
    at: tuple[PathPart, ...],
    *,
    ca_check: bool,
    has_selector: bool,
) -> list[Issue]:
    out: list[Issue] = []
    od = policy.outlier_detection
    if od is not None:
        out += _outlier_warnings(od, (*at, "outlierDetection"))
    lb = policy.load_balancer
    if lb is not None:
        out += _lb_warnings(lb, (*at, "loadBalancer"), has_outlier=od is not None)
    if policy.tls is not None:
        out += _tls_warnings(policy.tls, (*at, "tls"), ca_check=ca_check, has_selector=has_selector)
    return out


def _outlier_warnings(od: OutlierDetection, at: tuple[PathPart, ...]) -> list[Issue]:
    out: list[Issue] = []
    if od.consecutive_errors:
        out.append(
            _warn(
                (*at, "consecutiveErrors"),
                "consecutiveErrors is deprecated and ignored",
                "use consecutiveGatewayErrors or consecutive5xxErrors instead",
            )
        )
    # 5xx ejection defaults to 5 in Envoy; gateway errors are a subset of 5xx errors.
    explicit = od.consecutive_5xx_errors is not None
    five_xx = od.consecutive_5xx_errors if od.consecutive_5xx_errors is not None else 5
    gateway = od.consecutive_gateway_errors
    if gateway and five_xx and gateway >= five_xx:
        shown = str(five_xx) if explicit else f"{five_xx}, the default"
        out.append(
            _warn(
                (*at, "consecutiveGatewayErrors"),
                f"consecutiveGatewayErrors ({gateway}) has no effect because it is not lower than "
                f"consecutive5xxErrors ({shown}), which already counts gateway errors",
                "lower consecutiveGatewayErrors, or set consecutive5xxErrors: 0 to eject on "
                "gateway errors only",
            )
        )
    return out


def _lb_warnings(
    lb: LoadBalancerSettings, at: tuple[PathPart, ...], *, has_outlier: bool
) -> list[Issue]:
    out: list[Issue] = []
    if lb.simple == "LEAST_CONN":
        out.append(_warn((*at, "simple"), "LEAST_CONN is deprecated", "use LEAST_REQUEST"))
    ch = lb.consistent_hash
    if ch is not None and ch.minimum_ring_size:
        out.append(
            _warn(
                (*at, "consistentHash", "minimumRingSize"),
                "consistentHash.minimumRingSize is deprecated",
                "use consistentHash.ringHash.minimumRingSize instead",
            )
        )
    for name, setting in (("localityLbSetting", lb.locality_lb_setting),
                          ("zoneAwareLbSetting", lb.zone_aware_lb_setting)):  # fmt: skip
        if (
            setting is not None
            and (setting.failover or setting.failover_priority)
            and not (has_outlier)
        ):
            out.append(
                _warn(
                    (*at, name),
                    "outlier detection policy must be provided for failover",
                    "without outlierDetection unhealthy endpoints are never ejected, so "
                    "failover never happens; add outlierDetection to the same policy",
                )
            )
    return out


_FILE_FIELDS = ("client_certificate", "private_key", "ca_certificates", "credential_name", "ca_crl")


def _tls_warnings(
    tls: ClientTLSSettings, at: tuple[PathPart, ...], *, ca_check: bool, has_selector: bool
) -> list[Issue]:
    out: list[Issue] = []
    fields = ClientTLSSettings.model_fields
    if tls.mode == "ISTIO_MUTUAL":
        for name in _FILE_FIELDS:
            if getattr(tls, name):
                alias = fields[name].alias or name
                out.append(
                    _warn(
                        (*at, alias),
                        f"{alias} is ignored in ISTIO_MUTUAL mode, which uses Istio's "
                        "own certificates",
                        f"remove {alias}, or use mode MUTUAL",
                    )
                )
    elif tls.mode in (None, "DISABLE"):
        for name in (*_FILE_FIELDS, "subject_alt_names", "sni", "insecure_skip_verify"):
            if getattr(tls, name):
                alias = fields[name].alias or name
                out.append(
                    _warn(
                        (*at, alias),
                        f"{alias} has no effect because TLS mode is DISABLE",
                        "set mode SIMPLE or MUTUAL to originate TLS",
                    )
                )
    # istioctl analyze IST0128/IST0129: sidecars read credentialName only when the rule has
    # a workloadSelector, so without one a credential's CA does not count.
    if (
        ca_check
        and tls.mode in ("SIMPLE", "MUTUAL")
        and not tls.ca_certificates
        and not (tls.credential_name and has_selector)
    ):
        out.append(
            _warn(
                (*at, "caCertificates"),
                f"TLS mode is {tls.mode} but no caCertificates are set to validate "
                "the server's identity",
                "set caCertificates (or credentialName together with a workloadSelector) so "
                "the upstream certificate is verified",
            )
        )
    return out


# --- policy resolution ------------------------------------------------------------------------


def _for_port(policy: TrafficPolicy | None, port: int | None) -> tuple[TrafficPolicy | None, bool]:
    """Istio's GetPortLevelTrafficPolicy: the first entry for `port` replaces the whole policy."""
    if port is None or policy is None:
        return policy, False
    for pls in policy.port_level_settings or []:
        if pls.port is not None and (pls.port.number or 0) == port:
            return TrafficPolicy.model_construct(**{b: getattr(pls, b) for b in _BLOCKS}), True
    return policy, False


def effective_subset_policy(
    dr: DestinationRule, subset_name: str | None, port: int | None
) -> TrafficPolicy | None:
    """The policy Istio applies to the cluster for `subset_name` (None: the host) and `port`.

    Mirrors util.MergeSubsetTrafficPolicy + model.MergeTrafficPolicy:
    - a matching portLevelSettings entry replaces the whole enclosing policy (its unset blocks
      fall back to defaults, and tunnel/proxyProtocol/retryBudget are dropped);
    - a subset policy replaces each block it sets (connectionPool, outlierDetection,
      loadBalancer, tls, tunnel, proxyProtocol, retryBudget); fields inside a block are never
      merged; when the subset has a port-level entry for `port`, its four blocks replace the
      DR's even where unset.
    Unknown subset names get the host policy, like Istio. Mesh-wide defaultTrafficPolicy is
    not applied here. The result has no portLevelSettings; None means "all defaults".
    """
    original, _ = _for_port(dr.traffic_policy, port)
    subset_policy: TrafficPolicy | None = None
    if subset_name is not None:
        for subset in dr.subsets or []:
            if subset.name == subset_name:
                subset_policy = subset.traffic_policy
                break
    if subset_policy is None:
        result = original
    else:
        sub, has_port_level = _for_port(subset_policy, port)
        if original is None:
            result = sub
        else:
            merged = {name: getattr(original, name) for name in _MERGED}
            for name in _BLOCKS:
                if getattr(sub, name) is not None or has_port_level:
                    merged[name] = getattr(sub, name)
            for name in ("tunnel", "proxy_protocol", "retry_budget"):
                if getattr(sub, name) is not None:
                    merged[name] = getattr(sub, name)
            result = TrafficPolicy.model_construct(**merged)
    if result is None:
        return None
    blocks = {name: getattr(result, name) for name in _MERGED}
    if all(v is None for v in blocks.values()):
        return None
    return TrafficPolicy.model_construct(**blocks)


_MERGED = (*_BLOCKS, "tunnel", "proxy_protocol", "retry_budget")
