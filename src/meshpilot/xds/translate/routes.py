"""VirtualService HTTP rules -> Envoy routes (Istio's route/route.go and retry/retry.go).

One Envoy route per match block, in VirtualService order; fields inside a block are ANDed
by Envoy, separate blocks become separate routes (ORed by first-match). Emission stops
after the first catch-all route, since Envoy would never reach what follows.

Fault injection and CORS live in HTTP filters that every HCM carries with an empty config
(see listeners.py); a route switches them on through `typed_per_filter_config`, so only the
rule that matched is faulted or CORS-checked, exactly as Istio does it.
"""

from __future__ import annotations

import base64
from collections.abc import Collection
from dataclasses import dataclass

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.filters.http.cors.v3 import cors_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.retry.host.previous_hosts.v3 import previous_hosts_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from ...api.base import Percent, StringMatch
from ...api.virtualservice import (
    GRPC_STATUS_CODES,
    MESH_GATEWAY,
    CorsPolicy,
    Destination,
    Headers,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRoute,
    HTTPRouteDestination,
    VirtualService,
)
from ...snapshot import Config, MeshSnapshot
from ...snapshot.delegate import merged_http_routes
from ..types import ProxyInfo
from .common import BLACKHOLE_CLUSTER, DEFAULT_ROUTE, duration, istio_metadata, pack, u32
from .hashing import apply_route_hash

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
INBOUND_RETRY_ON = "reset-before-request"
PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"
FAULT_FILTER = "envoy.filters.http.fault"
CORS_FILTER = "envoy.filters.http.cors"
# Istio's DISABLE_SHADOW_HOST_SUFFIX defaults to true (1.28+): mirrored requests keep their
# Host instead of getting Envoy's `-shadow` suffix.
DISABLE_SHADOW_HOST_SUFFIX = True

HVO = base_pb2.HeaderValueOption

_REDIRECT_CODES = {
    0: rc.RedirectAction.MOVED_PERMANENTLY,
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


# --- retries and timeouts -----------------------------------------------------------------


def _previous_hosts() -> rc.RetryPolicy.RetryHostPredicate:
    return rc.RetryPolicy.RetryHostPredicate(
        name=PREVIOUS_HOSTS, typed_config=pack(previous_hosts_pb2.PreviousHostsPredicate())
    )


def default_retry_policy() -> rc.RetryPolicy:
    """Istio's default (1.24+): 2 retries on connection-level failures, other hosts first."""
    return rc.RetryPolicy(
        retry_on=DEFAULT_RETRY_ON,
        num_retries=u32(2),
        host_selection_retry_max_attempts=5,
        retry_host_predicate=[_previous_hosts()],
    )


def retry_policy(retries: HTTPRetry | None) -> rc.RetryPolicy | None:
    """retry.ConvertPolicy: no VS retries -> default; attempts <= 0 -> no policy at all."""
    if retries is None:
        return default_retry_policy()
    if retries.attempts <= 0:
        return None
    out = default_retry_policy()
    out.num_retries.value = retries.attempts
    if retries.retry_on:
        names: list[str] = []
        codes: list[int] = []
        for part in (p.strip() for p in retries.retry_on.split(",")):
            if not part:
                continue
            if part.isdigit():
                codes.append(int(part))
            else:
                names.append(part)
        out.retry_on = ",".join(names)
        if codes:
            out.retriable_status_codes.extend(codes)
            if "retriable-status-codes" not in out.retry_on:
                out.retry_on = ",".join([*names, "retriable-status-codes"])
    if retries.per_try_timeout is not None:
        out.per_try_timeout.CopyFrom(duration(retries.per_try_timeout))
    if retries.retry_ignore_previous_hosts is not None and not retries.retry_ignore_previous_hosts:
        del out.retry_host_predicate[:]
    if retries.backoff is not None:
        out.retry_back_off.base_interval.CopyFrom(duration(retries.backoff))
    return out


def set_timeout(action: rc.RouteAction, timeout: str | None) -> None:
    """Istio's setTimeout: 0s (disabled) unless the VS sets one; the grpc-timeout header is
    honoured up to the same value through the deprecated max_grpc_timeout, exactly as Istio
    does. Not max_stream_duration.grpc_timeout_header_max: any max_stream_duration switches
    Envoy's router to its "new timeouts", which ignore the route `timeout`, so a VS timeout
    would never fire (Istio's comment: "the replacement MaxStreamDuration has some
    regressions"); the e2e timeout test proves it fires."""
    value = duration(timeout) if timeout is not None else duration(seconds=0)
    action.timeout.CopyFrom(value)
    action.max_grpc_timeout.CopyFrom(value)


# --- matches ---------------------------------------------------------------------------------


def string_matcher(sm: StringMatch) -> string_pb2.StringMatcher:
    if sm.exact is not None:
        return string_pb2.StringMatcher(exact=sm.exact)
    if sm.prefix is not None:
        return string_pb2.StringMatcher(prefix=sm.prefix)
    return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=sm.regex or ""))


def _is_presence(sm: StringMatch) -> bool:
    """An empty StringMatch, or Istio's `regex: "*"`, means "the header is present"."""
    return sm.is_empty or sm.regex == "*"


def header_matcher(name: str, sm: StringMatch, *, invert: bool = False) -> rc.HeaderMatcher:
    out = rc.HeaderMatcher(name=name)
    if _is_presence(sm):
        out.present_match = True
    else:
        out.string_match.CopyFrom(string_matcher(sm))
        if invert:
            out.treat_missing_header_as_empty = True
    if invert:
        out.invert_match = True
    return out


def route_match(match: HTTPMatchRequest | None) -> rc.RouteMatch:
    """TranslateRouteMatch."""
    out = rc.RouteMatch(prefix="/")
    if match is None:
        return out
    headers = [header_matcher(k, v) for k, v in match.headers.items()]
    headers += [header_matcher(k, v, invert=True) for k, v in match.without_headers.items()]
    headers.sort(key=lambda h: h.name)
    if match.uri is not None:
        uri = match.uri
        if uri.exact is not None:
            out.path = uri.exact
        elif uri.prefix is not None:
            out.prefix = uri.prefix
        elif uri.regex is not None:
            out.safe_regex.regex = uri.regex
    out.case_sensitive.CopyFrom(wrappers_pb2.BoolValue(value=not match.ignore_uri_case))
    for pseudo, sm in ((":method", match.method), (":authority", match.authority),
                       (":scheme", match.scheme)):
        if sm is not None:
            headers.append(header_matcher(pseudo, sm))
    out.headers.extend(headers)
    for name in sorted(match.query_params):
        sm = match.query_params[name]
        qp = out.query_parameters.add(name=name)
        if _is_presence(sm):
            qp.present_match = True
        else:
            qp.string_match.CopyFrom(string_matcher(sm))
    return out


def is_catch_all(route: rc.Route) -> bool:
    """IsCatchAllRoute: prefix `/` or regex `.*`, with no header or query matchers."""
    m = route.match
    spec = m.WhichOneof("path_specifier")
    catch_all = (spec == "prefix" and m.prefix == "/") or (
        spec == "safe_regex" and m.safe_regex.regex == ".*"
    )
    return catch_all and not m.headers and not m.query_parameters


def qualified_gateway_names(names: Collection[str], namespace: str) -> frozenset[str]:
    """Gateway references as `ns/name` (a short name is in the VirtualService's namespace),
    as Istio's resolveGatewayName; `mesh` stays `mesh`."""
    return frozenset(n if n == MESH_GATEWAY or "/" in n else f"{namespace}/{n}" for n in names)


def _applies_to_sidecar(
    vs: VirtualService, match: HTTPMatchRequest | None, listen_port: int, proxy: ProxyInfo,
    gateways_in_use: frozenset[str] = frozenset(), namespace: str = "",
) -> bool:
    """The port, gateways and source checks Istio makes before translating a match.
    `gateways_in_use`: empty for a sidecar (the rule must apply to `mesh`), else the
    `ns/name` of the Gateway being built (the rule must name it, or name no gateway and
    belong to a VirtualService that does)."""
    if match is None:
        return True
    if match.port and match.port != listen_port:
        return False
    gateways = match.gateways or vs.gateways
    if gateways_in_use:
        if not gateways_in_use & qualified_gateway_names(gateways, namespace):
            return False
    elif gateways and MESH_GATEWAY not in gateways:
        return False
    if any(proxy.labels.get(k) != v for k, v in match.source_labels.items()):
        return False
    return not (match.source_namespace and match.source_namespace != proxy.namespace)


# --- percentages, fault, CORS, mirrors, headers --------------------------------------------


def percent_fraction(p: Percent) -> percent_pb2.FractionalPercent:
    """translatePercentToFractionalPercent: Istio keeps 4 decimals, per million, truncated."""
    return percent_pb2.FractionalPercent(
        numerator=int(p.value * 10000), denominator=percent_pb2.FractionalPercent.MILLION
    )


def integer_fraction(p: int) -> percent_pb2.FractionalPercent:
    """translateIntegerToFractionalPercent: the legacy integer percents, per hundred."""
    return percent_pb2.FractionalPercent(
        numerator=p, denominator=percent_pb2.FractionalPercent.HUNDRED
    )


def translate_fault(fault: HTTPFaultInjection) -> fault_pb2.HTTPFault | None:
    """TranslateFault. A delay without `percentage` falls back to the deprecated integer
    `percent` (0 when unset: nothing is delayed); an abort without one gets no percentage,
    which Envoy reads as 0%, so it never fires - both exactly as in Istio."""
    out = fault_pb2.HTTPFault()
    if fault.delay is not None and fault.delay.fixed_delay is not None:
        delay = out.delay
        if fault.delay.percentage is not None:
            delay.percentage.CopyFrom(percent_fraction(fault.delay.percentage))
        else:
            delay.percentage.CopyFrom(integer_fraction(fault.delay.percent))
        delay.fixed_delay.CopyFrom(duration(fault.delay.fixed_delay))
    abort = fault.abort
    if abort is not None and (abort.http_status is not None or abort.grpc_status is not None):
        if abort.percentage is not None:
            out.abort.percentage.CopyFrom(percent_fraction(abort.percentage))
        if abort.http_status is not None:
            out.abort.http_status = abort.http_status
        else:
            out.abort.grpc_status = GRPC_STATUS_CODES.index(abort.grpc_status or "OK")
    if not out.HasField("delay") and not out.HasField("abort"):
        return None
    return out


def translate_cors(cors: CorsPolicy) -> cors_pb2.CorsPolicy:
    """TranslateCORSPolicy: always enabled (100%), unmatched preflights forwarded unless
    `unmatchedPreflights: IGNORE`, list fields comma-joined, maxAge in whole seconds."""
    out = cors_pb2.CorsPolicy(
        forward_not_matching_preflights=wrappers_pb2.BoolValue(
            value=cors.unmatched_preflights != "IGNORE"
        ),
    )
    if cors.allow_origins:
        out.allow_origin_string_match.extend(string_matcher(m) for m in cors.allow_origins)
    elif cors.allow_origin:
        out.allow_origin_string_match.extend(
            string_pb2.StringMatcher(exact=o) for o in cors.allow_origin
        )
    out.filter_enabled.default_value.CopyFrom(integer_fraction(100))
    if cors.allow_credentials is not None:
        out.allow_credentials.value = cors.allow_credentials
    out.allow_headers = ",".join(cors.allow_headers)
    out.allow_methods = ",".join(cors.allow_methods)
    out.expose_headers = ",".join(cors.expose_headers)
    if cors.max_age is not None:
        out.max_age = str(int(duration(cors.max_age).seconds))
    return out


def mirror_fraction(http: HTTPRoute) -> percent_pb2.FractionalPercent | None:
    """MirrorPercent: mirrorPercentage, else the deprecated mirrorPercent, else 100%;
    an explicit 0 means no mirroring at all."""
    if http.mirror_percentage is not None:
        return percent_fraction(http.mirror_percentage) if http.mirror_percentage.value > 0 \
            else None
    if http.mirror_percent is not None:
        return integer_fraction(http.mirror_percent) if http.mirror_percent > 0 else None
    return integer_fraction(100)


def mirror_policy(cluster: str, fraction: percent_pb2.FractionalPercent) -> (
    rc.RouteAction.RequestMirrorPolicy
):
    """TranslateRequestMirrorPolicy."""
    out = rc.RouteAction.RequestMirrorPolicy(
        cluster=cluster,
        trace_sampled=wrappers_pb2.BoolValue(value=False),
        disable_shadow_host_suffix_append=DISABLE_SHADOW_HOST_SUFFIX,
    )
    out.runtime_fraction.default_value.CopyFrom(fraction)
    return out


def _is_authority(name: str) -> bool:
    return name.lower() in (":authority", "host")


def _is_internal(name: str) -> bool:
    """Pseudo-headers and Host cannot be added or removed by Envoy (isInternalHeader)."""
    return name.startswith(":") or name.lower() == "host"


def _header_options(values: dict[str, str], append: bool) -> tuple[list[HVO], str]:
    """translateAppendHeaders: sorted by name; an authority becomes a host rewrite instead."""
    authority = ""
    out: list[HVO] = []
    action = HVO.APPEND_IF_EXISTS_OR_ADD if append else HVO.OVERWRITE_IF_EXISTS_OR_ADD
    for name in sorted(values):
        if _is_authority(name):
            authority = values[name]
        if _is_internal(name):
            continue
        out.append(HVO(header=base_pb2.HeaderValue(key=name, value=values[name]),
                       append_action=action))
    return out, authority


@dataclass(frozen=True)
class HeaderOps:
    """TranslateHeadersOperations' result: set before add, removes without internals."""

    request_add: list[HVO]
    request_remove: list[str]
    response_add: list[HVO]
    response_remove: list[str]
    authority: str


def header_operations(headers: Headers) -> HeaderOps:
    req, resp = headers.request, headers.response
    req_set, set_auth = _header_options(req.set if req else {}, False)
    req_add, add_auth = _header_options(req.add if req else {}, True)
    resp_set, _ = _header_options(resp.set if resp else {}, False)
    resp_add, _ = _header_options(resp.add if resp else {}, True)
    return HeaderOps(
        request_add=req_set + req_add,
        request_remove=[n for n in (req.remove if req else []) if not _is_internal(n)],
        response_add=resp_set + resp_add,
        response_remove=[n for n in (resp.remove if resp else []) if not _is_internal(n)],
        authority=set_auth or add_auth,
    )


def _apply_header_ops(
    out: rc.Route | rc.WeightedCluster.ClusterWeight, ops: HeaderOps
) -> None:
    out.request_headers_to_add.extend(ops.request_add)
    out.request_headers_to_remove.extend(ops.request_remove)
    out.response_headers_to_add.extend(ops.response_add)
    out.response_headers_to_remove.extend(ops.response_remove)


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteContext:
    snap: MeshSnapshot
    proxy: ProxyInfo
    vs: Config[VirtualService]
    listen_port: int
    clusters: Collection[str]
    # `ns/name` of the Gateway whose server is being built; empty for sidecars.
    gateways: frozenset[str] = frozenset()

    def cluster_for(self, dst: HTTPRouteDestination) -> str:
        """The destination's cluster, or BlackHoleCluster when it does not exist (Istio would
        name a missing cluster and Envoy answer 503 NC; we keep every route consistent)."""
        name = self.snap.destination_cluster(dst.destination, self.vs.namespace, self.listen_port)
        return name if name is not None and name in self.clusters else BLACKHOLE_CLUSTER

    def mirror_cluster(self, dest: Destination) -> str | None:
        """The mirror's cluster, or None when it does not exist: a copy of the request sent
        to BlackHoleCluster would only cost work, so that mirror is left out (and the
        snapshot checks report the missing destination)."""
        name = self.snap.destination_cluster(dest, self.vs.namespace, self.listen_port)
        return name if name is not None and name in self.clusters else None


def operation(route: rc.Route, vs_name: str, port: int) -> str:
    """GetRouteOperation: `<host>:<port><path>` for one cluster, else `<vs>:<port><path>`."""
    m = route.match
    spec = m.WhichOneof("path_specifier")
    path = {"prefix": f"{m.prefix}*", "path": m.path, "safe_regex": m.safe_regex.regex}.get(
        spec or "", "/*"
    )
    cluster = route.route.cluster if route.HasField("route") else ""
    parts = cluster.split("|")
    if len(parts) == 4 and parts[1].isdigit():
        return f"{parts[3]}:{parts[1]}{path}"
    return f"{vs_name}:{port}{path}"


def _apply_redirect(out: rc.Route, redirect: HTTPRedirect, listen_port: int) -> None:
    action = out.redirect
    if redirect.uri:
        action.path_redirect = redirect.uri
    elif redirect.prefix_rewrite:
        action.prefix_rewrite = redirect.prefix_rewrite
    if redirect.authority:
        action.host_redirect = redirect.authority
    if redirect.scheme:
        action.scheme_redirect = redirect.scheme
    port = redirect.port
    if redirect.derive_port == "FROM_REQUEST_PORT":
        port = listen_port
    if port:
        action.port_redirect = port
    action.response_code = _REDIRECT_CODES.get(
        redirect.redirect_code, rc.RedirectAction.MOVED_PERMANENTLY
    )


def _apply_destinations(
    out: rc.Route, http: HTTPRoute, ctx: RouteContext, authority: str
) -> None:
    """applyHTTPRouteDestination. `authority` comes from the rule's headers; rewrite.authority
    wins over it, and a destination's own authority applies only when neither is set."""
    action = out.route
    set_timeout(action, http.timeout)
    if http.rewrite is not None:
        rw = http.rewrite
        if rw.uri_regex_rewrite is not None:
            action.regex_rewrite.pattern.regex = rw.uri_regex_rewrite.match
            action.regex_rewrite.substitution = rw.uri_regex_rewrite.rewrite
        elif rw.uri:
            action.prefix_rewrite = rw.uri
        if rw.authority:
            authority = rw.authority
    if authority:
        action.host_rewrite_literal = authority
    mirrors: list[tuple[Destination, percent_pb2.FractionalPercent | None]] = []
    if http.mirror is not None:
        mirrors.append((http.mirror, mirror_fraction(http)))
    for mp in http.mirrors:
        fraction = (integer_fraction(100) if mp.percentage is None
                    else percent_fraction(mp.percentage) if mp.percentage.value > 0 else None)
        mirrors.append((mp.destination, fraction))
    for dest, fraction in mirrors:
        cluster = ctx.mirror_cluster(dest)
        if fraction is not None and cluster is not None:
            action.request_mirror_policies.append(mirror_policy(cluster, fraction))
    if len(http.route) == 1:
        dst = http.route[0]
        action.cluster = ctx.cluster_for(dst)
        if dst.headers is not None:
            ops = header_operations(dst.headers)
            _apply_header_ops(out, ops)
            if ops.authority and not action.host_rewrite_literal:
                action.host_rewrite_literal = ops.authority
    else:
        weighted = action.weighted_clusters
        for dst in http.route:
            if dst.weight == 0:
                continue
            cw = weighted.clusters.add(name=ctx.cluster_for(dst), weight=u32(dst.weight))
            if dst.headers is not None:
                ops = header_operations(dst.headers)
                _apply_header_ops(cw, ops)
                if ops.authority:
                    cw.host_rewrite_literal = ops.authority
    policy = retry_policy(http.retries)
    if policy is not None:
        action.retry_policy.CopyFrom(policy)
    apply_route_hash(action, http, ctx.snap, ctx.proxy, ctx.vs.namespace)  # DR consistentHash


def translate_route(
    http: HTTPRoute, match: HTTPMatchRequest | None, ctx: RouteContext
) -> rc.Route | None:
    """TranslateRoute for one (rule, match block); None when the block is not for us."""
    if not _applies_to_sidecar(ctx.vs.spec, match, ctx.listen_port, ctx.proxy, ctx.gateways,
                               ctx.vs.namespace):
        return None
    name = http.name
    if match is not None and match.name:
        name = f"{name}.{match.name}"
    out = rc.Route(name=name, match=route_match(match))
    out.metadata.CopyFrom(istio_metadata(config=ctx.vs.provenance))
    if match is not None and match.stat_prefix:
        out.stat_prefix = match.stat_prefix
    authority = ""
    if http.headers is not None:
        ops = header_operations(http.headers)
        _apply_header_ops(out, ops)
        authority = ops.authority
    if http.redirect is not None:
        _apply_redirect(out, http.redirect, ctx.listen_port)
    elif http.direct_response is not None:
        dr = http.direct_response
        out.direct_response.status = dr.status
        if dr.body is not None and dr.body.string is not None:
            out.direct_response.body.inline_string = dr.body.string
        elif dr.body is not None and dr.body.bytes is not None:
            out.direct_response.body.inline_bytes = base64.b64decode(dr.body.bytes)
    elif http.route:
        _apply_destinations(out, http, ctx, authority)
    else:
        return None
    out.decorator.operation = operation(out, ctx.vs.name, ctx.listen_port)
    if http.fault is not None:
        fault = translate_fault(http.fault)
        if fault is not None:
            out.typed_per_filter_config[FAULT_FILTER].CopyFrom(pack(fault))
    if http.cors_policy is not None:
        out.typed_per_filter_config[CORS_FILTER].CopyFrom(pack(translate_cors(http.cors_policy)))
    return out


def virtual_service_routes(ctx: RouteContext) -> list[rc.Route]:
    """BuildHTTPRoutesForVirtualService for a sidecar, delegates merged into the root."""
    out: list[rc.Route] = []
    rules, _problems = merged_http_routes(ctx.snap, ctx.vs)  # checks.py reports problems
    for http in rules:
        matches: list[HTTPMatchRequest | None] = list(http.match) or [None]
        for match in matches:
            route = translate_route(http, match, ctx)
            if route is None:
                continue
            out.append(route)
            if is_catch_all(route):
                return out
    return out


def default_route(cluster: str, host: str, port: int) -> rc.Route:
    """BuildDefaultHTTPOutboundRoute: everything to the service, default retries, no timeout."""
    out = rc.Route(name=DEFAULT_ROUTE, match=rc.RouteMatch(prefix="/"))
    out.route.cluster = cluster
    set_timeout(out.route, None)
    out.route.retry_policy.CopyFrom(default_retry_policy())
    out.decorator.operation = f"{host}:{port}/*"
    return out


def inbound_route(cluster: str) -> rc.Route:
    """Istio's inbound default route: no timeout, retry only resets before the request."""
    out = rc.Route(name=DEFAULT_ROUTE, match=rc.RouteMatch(prefix="/"))
    action = out.route
    action.cluster = cluster
    action.timeout.CopyFrom(duration(seconds=0))
    action.max_stream_duration.max_stream_duration.CopyFrom(duration(seconds=0))
    action.max_stream_duration.grpc_timeout_header_max.CopyFrom(duration(seconds=0))
    action.retry_policy.CopyFrom(rc.RetryPolicy(retry_on=INBOUND_RETRY_ON, num_retries=u32(2)))
    return out

