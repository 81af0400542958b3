"""DestinationRule traffic policy -> cluster fields, with Istio's mapping and defaults.

Follows pilot/pkg/networking/core/cluster_traffic_policy.go: the circuit-breaker
thresholds are always set (2^32-1 instead of Envoy's 1024/1024/1024/3), only positive
connectionPool values override them, outlier detection disables success-rate ejection
and panic mode, and the default load balancer is LEAST_REQUEST.

Not translated (the snapshot diagnostics say so): `simple: PASSTHROUGH` (Istio makes the
cluster ORIGINAL_DST, whose "original destination" behind an explicit HTTP proxy is the
proxy itself, so the cluster keeps load balancing over the registry endpoints) and
locality/zone-aware settings (sidecars here have no locality, and Istio applies locality
priorities only relative to the proxy's own locality).
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.common.matcher.v3 import matcher_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from envoy.type.matcher.v3 import string_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import wrappers_pb2

from ...api.destinationrule import (
    ConnectionPoolSettings,
    LoadBalancerSettings,
    OutlierDetection,
    RetryBudget,
    TrafficPolicy,
    WarmupConfiguration,
)
from ...registry import ServicePort
from .common import HTTP_PROTOCOL_OPTIONS, MAX_UINT32, duration, pack, u32
from .tls import SecretLookup, apply_tls

Cluster = cluster_pb2.Cluster

_SIMPLE_LB = {
    "ROUND_ROBIN": Cluster.ROUND_ROBIN,
    "LEAST_REQUEST": Cluster.LEAST_REQUEST,
    "LEAST_CONN": Cluster.LEAST_REQUEST,
    "RANDOM": Cluster.RANDOM,
}


def default_thresholds() -> circuit_breaker_pb2.CircuitBreakers.Thresholds:
    """Istio's getDefaultCircuitBreakerThresholds (track_remaining off, as Istio 1.29+)."""
    return circuit_breaker_pb2.CircuitBreakers.Thresholds(
        max_connections=u32(MAX_UINT32),
        max_pending_requests=u32(MAX_UINT32),
        max_requests=u32(MAX_UINT32),
        max_retries=u32(MAX_UINT32),
    )


def apply_retry_budget(
    threshold: circuit_breaker_pb2.CircuitBreakers.Thresholds, budget: RetryBudget | None
) -> None:
    """applyRetryBudget: 20% and 3 concurrent retries unless set (Envoy's own defaults)."""
    if budget is None:
        return
    out = threshold.retry_budget
    out.budget_percent.value = budget.percent if budget.percent is not None else 20.0
    out.min_retry_concurrency.value = budget.min_retry_concurrency or 3
    if budget.budget_interval is not None:
        out.budget_interval.CopyFrom(duration(budget.budget_interval))


def apply_connection_pool(
    cluster: cluster_pb2.Cluster,
    options: hpo.HttpProtocolOptions,
    pool: ConnectionPoolSettings | None,
    retry_budget: RetryBudget | None = None,
) -> None:
    """applyConnectionPool: thresholds, connect timeout, per-connection HTTP limits.

    maxConcurrentStreams and http2KeepAlive only reach Envoy when the cluster already
    speaks HTTP/2 (an http2/grpc port or h2UpgradePolicy UPGRADE), as in Istio."""
    threshold = default_thresholds()
    apply_retry_budget(threshold, retry_budget)
    idle_timeout = None
    if pool is not None and pool.http is not None:
        http = pool.http
        if (http.http2_max_requests or 0) > 0:
            threshold.max_requests.value = http.http2_max_requests or 0
        if (http.http1_max_pending_requests or 0) > 0:
            threshold.max_pending_requests.value = http.http1_max_pending_requests or 0
        if (http.max_retries or 0) > 0:
            threshold.max_retries.value = http.max_retries or 0
        idle_timeout = http.idle_timeout
        if (http.max_requests_per_connection or 0) > 0:
            options.common_http_protocol_options.max_requests_per_connection.value = (
                http.max_requests_per_connection or 0
            )
    if pool is not None and pool.tcp is not None:
        tcp = pool.tcp
        if tcp.connect_timeout is not None:
            cluster.connect_timeout.CopyFrom(duration(tcp.connect_timeout))
        if (tcp.max_connections or 0) > 0:
            threshold.max_connections.value = tcp.max_connections or 0
        if tcp.max_connection_duration is not None:
            options.common_http_protocol_options.max_connection_duration.CopyFrom(
                duration(tcp.max_connection_duration)
            )
        if idle_timeout is None:
            idle_timeout = tcp.idle_timeout
        if tcp.tcp_keepalive is not None:
            ka = tcp.tcp_keepalive
            keepalive = cluster.upstream_connection_options.tcp_keepalive
            keepalive.SetInParent()
            if ka.probes:
                keepalive.keepalive_probes.value = ka.probes
            if ka.time is not None:
                keepalive.keepalive_time.value = int(duration(ka.time).seconds)
            if ka.interval is not None:
                keepalive.keepalive_interval.value = int(duration(ka.interval).seconds)
    if idle_timeout is not None:
        options.common_http_protocol_options.idle_timeout.CopyFrom(duration(idle_timeout))
    cluster.circuit_breakers.thresholds.append(threshold)
    if pool is not None and pool.http is not None and options.explicit_http_config.HasField(
        "http2_protocol_options"
    ):
        h2 = options.explicit_http_config.http2_protocol_options
        if (pool.http.max_concurrent_streams or 0) > 0:
            h2.max_concurrent_streams.value = pool.http.max_concurrent_streams or 0
        keepalive = pool.http.http2_keep_alive
        if keepalive is not None:
            h2.connection_keepalive.SetInParent()
            if keepalive.interval is not None:
                h2.connection_keepalive.interval.CopyFrom(duration(keepalive.interval))
            if keepalive.timeout is not None:
                h2.connection_keepalive.timeout.CopyFrom(duration(keepalive.timeout))
    if pool is not None and pool.http is not None and pool.http.use_client_protocol:
        use_downstream_protocol(options)


def use_downstream_protocol(options: hpo.HttpProtocolOptions) -> None:
    """Upstream speaks whatever the client spoke (Istio: sniffed ports, useClientProtocol)."""
    cfg = options.use_downstream_protocol_config
    cfg.http_protocol_options.SetInParent()
    cfg.http2_protocol_options.SetInParent()


def use_http2(options: hpo.HttpProtocolOptions) -> None:
    if options.WhichOneof("upstream_protocol_options") is None:
        options.explicit_http_config.http2_protocol_options.SetInParent()


def should_upgrade_h2(port: ServicePort, pool: ConnectionPoolSettings | None) -> bool:
    """shouldH2Upgrade with the mesh h2UpgradePolicy left at its default (DO_NOT_UPGRADE).
    Never for TCP/TLS ports: their clusters carry tunnelled bytes, not HTTP (Istio: "Do
    not upgrade non-http ports")."""
    if pool is None or pool.http is None or pool.http.use_client_protocol:
        return False
    if not port.is_http:
        return False
    return pool.http.h2_upgrade_policy == "UPGRADE"


def apply_outlier_detection(cluster: cluster_pb2.Cluster, od: OutlierDetection | None) -> None:
    """applyOutlierDetection: consecutive errors enforce at 100% (0 disables), success rate
    never enforced, and panic mode disabled via healthy_panic_threshold = minHealthPercent."""
    if od is None:
        return
    out = outlier_detection_pb2.OutlierDetection(enforcing_success_rate=u32(0))
    if od.consecutive_5xx_errors is not None:
        v = od.consecutive_5xx_errors
        out.consecutive_5xx.value = v
        out.enforcing_consecutive_5xx.value = 100 if v > 0 else 0
    if od.consecutive_gateway_errors is not None:
        v = od.consecutive_gateway_errors
        out.consecutive_gateway_failure.value = v
        out.enforcing_consecutive_gateway_failure.value = 100 if v > 0 else 0
    if od.interval is not None:
        out.interval.CopyFrom(duration(od.interval))
    if od.base_ejection_time is not None:
        out.base_ejection_time.CopyFrom(duration(od.base_ejection_time))
    if (od.max_ejection_percent or 0) > 0:
        out.max_ejection_percent.value = od.max_ejection_percent or 0
    if od.split_external_local_origin_errors:
        out.split_external_local_origin_errors = True
        if (od.consecutive_local_origin_failures or 0) > 0:
            out.consecutive_local_origin_failure.value = od.consecutive_local_origin_failures or 0
            out.enforcing_consecutive_local_origin_failure.value = 100
        out.enforcing_local_origin_success_rate.value = 0
    cluster.outlier_detection.CopyFrom(out)
    min_health = od.min_health_percent or 0
    if min_health >= 0:
        cluster.common_lb_config.healthy_panic_threshold.CopyFrom(
            percent_pb2.Percent(value=float(min_health))
        )


def apply_outlier_error_codes(
    options: hpo.HttpProtocolOptions, od: OutlierDetection | None
) -> None:
    """applyOutlierDetectionErrorCodes: only these statuses count as outlier errors (an OR of
    `:status` exact matches) instead of Envoy's "any 5xx"."""
    codes = (od.outlier_detection_http_error_codes or []) if od is not None else []
    if not codes:
        return
    rules = [
        matcher_pb2.MatchPredicate(
            http_response_headers_match=matcher_pb2.HttpHeadersMatch(
                headers=[rc.HeaderMatcher(
                    name=":status", string_match=string_pb2.StringMatcher(exact=str(code))
                )]
            )
        )
        for code in codes
    ]
    target = options.outlier_detection.error_matcher
    if len(rules) == 1:
        target.CopyFrom(rules[0])
    else:
        target.or_match.rules.extend(rules)


def slow_start(lb: LoadBalancerSettings) -> cluster_pb2.Cluster.SlowStartConfig | None:
    """setWarmup / setSlowStartConfig: aggression 1.0 (linear; runtime key "(" as Istio,
    i.e. never overridden) and min weight 10% unless set; the deprecated
    warmupDurationSecs sets only the window."""
    if lb.warmup is not None:
        return _warmup(lb.warmup)
    if lb.warmup_duration_secs is not None:
        return cluster_pb2.Cluster.SlowStartConfig(
            slow_start_window=duration(lb.warmup_duration_secs)
        )
    return None


def _warmup(w: WarmupConfiguration) -> cluster_pb2.Cluster.SlowStartConfig:
    return cluster_pb2.Cluster.SlowStartConfig(
        slow_start_window=duration(w.duration),
        aggression=base_pb2.RuntimeDouble(
            default_value=w.aggression if w.aggression is not None else 1.0, runtime_key="("
        ),
        min_weight_percent=percent_pb2.Percent(
            value=w.minimum_percent if w.minimum_percent is not None else 10.0
        ),
    )


def apply_load_balancer(cluster: cluster_pb2.Cluster, policy: TrafficPolicy | None) -> None:
    """applyLoadBalancer: `simple` (unset/UNSPECIFIED/PASSTHROUGH -> LEAST_REQUEST here),
    slow start on ROUND_ROBIN/LEAST_REQUEST, then ApplyRingHashLoadBalancer.

    Only clusters Envoy load-balances itself are touched (the DFP cluster is
    CLUSTER_PROVIDED). The route half of consistent hashing is in `hashing.py`."""
    if cluster.lb_policy == Cluster.CLUSTER_PROVIDED:
        return
    lb = policy.load_balancer if policy is not None else None
    simple = lb.simple if lb is not None else None
    cluster.lb_policy = _SIMPLE_LB.get(simple or "", Cluster.LEAST_REQUEST)
    if lb is None:
        return
    warm = slow_start(lb)
    if warm is not None and cluster.lb_policy == Cluster.ROUND_ROBIN:
        cluster.round_robin_lb_config.slow_start_config.CopyFrom(warm)
    elif warm is not None and cluster.lb_policy == Cluster.LEAST_REQUEST:
        cluster.least_request_lb_config.slow_start_config.CopyFrom(warm)
    apply_consistent_hash_lb(cluster, lb)


def apply_consistent_hash_lb(cluster: cluster_pb2.Cluster, lb: LoadBalancerSettings) -> None:
    """ApplyRingHashLoadBalancer: maglev{tableSize} -> MAGLEV, ringHash{minimumRingSize} ->
    RING_HASH, neither -> RING_HASH with the deprecated minimumRingSize (default 1024).
    A zero size leaves lb_config as it was, exactly as Istio does."""
    ch = lb.consistent_hash
    if ch is None:
        return
    if ch.maglev is not None:
        cluster.lb_policy = Cluster.MAGLEV
        if ch.maglev.table_size:
            cluster.maglev_lb_config.table_size.CopyFrom(
                wrappers_pb2.UInt64Value(value=ch.maglev.table_size)
            )
    elif ch.ring_hash is not None:
        cluster.lb_policy = Cluster.RING_HASH
        if ch.ring_hash.minimum_ring_size:
            cluster.ring_hash_lb_config.minimum_ring_size.CopyFrom(
                wrappers_pb2.UInt64Value(value=ch.ring_hash.minimum_ring_size)
            )
    else:
        cluster.lb_policy = Cluster.RING_HASH
        cluster.ring_hash_lb_config.minimum_ring_size.CopyFrom(
            wrappers_pb2.UInt64Value(value=ch.minimum_ring_size or 1024)
        )


def apply_traffic_policy(
    cluster: cluster_pb2.Cluster,
    options: hpo.HttpProtocolOptions,
    policy: TrafficPolicy | None,
    port: ServicePort,
    secrets: SecretLookup = lambda _name: None,
) -> None:
    """applyTrafficPolicy for an outbound cluster; `secrets` resolves credentialName."""
    pool = policy.connection_pool if policy is not None else None
    if should_upgrade_h2(port, pool):
        use_http2(options)
    apply_connection_pool(
        cluster, options, pool, policy.retry_budget if policy is not None else None
    )
    od = policy.outlier_detection if policy is not None else None
    apply_outlier_detection(cluster, od)
    apply_outlier_error_codes(options, od)
    apply_load_balancer(cluster, policy)
    apply_tls(cluster, options, policy.tls if policy is not None else None, secrets)


def finish_protocol_options(cluster: cluster_pb2.Cluster, options: hpo.HttpProtocolOptions) -> None:
    """clusterWrapper.build: attach options when any were set; Envoy requires the upstream
    protocol oneof, so default it to explicit HTTP/1.1 as Istio does."""
    if options.ByteSize() == 0:
        return
    if options.WhichOneof("upstream_protocol_options") is None:
        options.explicit_http_config.http_protocol_options.SetInParent()
    cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].CopyFrom(pack(options))

