"""DestinationRule traffic policy -> Envoy, field by field (Istio's cluster_traffic_policy.go,
cluster_tls.go, route.go hashing). The golden case `destinationrule-policies` shows the
whole output; these pin the rules that are easy to get subtly wrong."""

from __future__ import annotations

from typing import Any

from envoy.config.cluster.v3 import cluster_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo

from meshpilot.snapshot import MeshSnapshot
from meshpilot.xds.translate import translate
from meshpilot.xds.translate.common import HTTP_PROTOCOL_OPTIONS
from meshpilot.xds.translate.tls import UNRESOLVED_SAN

from .cases import CASES, WORKLOADS
from .helpers import CLIENT, EXAMPLES, load, resource

HOST = "sample-app.traffic-demo.svc.cluster.local"
Cluster = cluster_pb2.Cluster


def _translate(policy: dict[str, Any] | None = None, subsets: list | None = None,
               vs_http: list | None = None, extra: tuple = ()):
    spec: dict[str, Any] = {"host": "sample-app"}
    if policy is not None:
        spec["trafficPolicy"] = policy
    if subsets is not None:
        spec["subsets"] = subsets
    res = [*load(EXAMPLES / "base" / "10-sample-app-service.yaml", WORKLOADS), *extra,
           resource("DestinationRule", "dr", spec)]
    if vs_http is not None:
        res.append(resource("VirtualService", "vs", {"hosts": ["sample-app"], "http": vs_http}))
    snap = MeshSnapshot.build(res, 1)
    return snap, translate(snap, CLIENT)


def _cluster(out, subset: str = "") -> cluster_pb2.Cluster:
    return out.clusters[f"outbound|80|{subset}|{HOST}"]


def _options(c: cluster_pb2.Cluster) -> hpo.HttpProtocolOptions:
    o = hpo.HttpProtocolOptions()
    c.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS].Unpack(o)
    return o


def _tls(c: cluster_pb2.Cluster) -> tls_pb2.UpstreamTlsContext:
    ctx = tls_pb2.UpstreamTlsContext()
    c.transport_socket.typed_config.Unpack(ctx)
    return ctx


def _routes(out):
    rc = out.routes[str(CLIENT.outbound_port)]
    vh = next(v for v in rc.virtual_hosts if v.name == f"{HOST}:80")
    return list(vh.routes)


V1 = {"name": "v1", "labels": {"version": "v1"}}
V2 = {"name": "v2", "labels": {"version": "v2"}}


def test_seed_circuit_breaker_v2_drops_max_requests_per_connection() -> None:
    snap = MeshSnapshot.build(load(*CASES["circuit-breaker"]), 1)
    out = translate(snap, CLIENT)
    top, v2 = _cluster(out), _cluster(out, "v2")
    assert _options(top).common_http_protocol_options.max_requests_per_connection.value == 2
    assert not _options(v2).common_http_protocol_options.HasField("max_requests_per_connection")
    t = v2.circuit_breakers.thresholds[0]
    assert (t.max_connections.value, t.max_pending_requests.value) == (5, 2)
    assert v2.outlier_detection.consecutive_5xx.value == 3  # inherited block


def test_default_route_hash_keeps_previous_hosts() -> None:
    _, out = _translate({"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user"}}})
    (route,) = _routes(out)
    assert route.route.hash_policy[0].header.header_name == "x-user"
    assert route.route.retry_policy.retry_host_predicate  # Istio: ConvertPolicy(..., false)
    assert _cluster(out).lb_policy == Cluster.RING_HASH
    assert _cluster(out).ring_hash_lb_config.minimum_ring_size.value == 1024


def test_single_destination_hash_drops_previous_hosts_unless_asked() -> None:
    hashed = {"loadBalancer": {"consistentHash": {"useSourceIp": True}}}
    dest = {"destination": {"host": "sample-app", "subset": "v1"}}
    _, out = _translate(hashed, [V1], [{"route": [dest]}])
    (route,) = _routes(out)
    assert route.route.hash_policy[0].connection_properties.source_ip
    assert not route.route.retry_policy.retry_host_predicate
    _, out = _translate(hashed, [V1], [{"route": [dest], "retries": {
        "attempts": 3, "retryIgnorePreviousHosts": True}}])
    assert _routes(out)[0].route.retry_policy.retry_host_predicate


def test_weighted_destinations_each_add_a_hash_and_keep_previous_hosts() -> None:
    subsets = [{**V1, "trafficPolicy": {"loadBalancer": {"consistentHash": {
        "httpQueryParameterName": "u"}}}}, V2]
    _, out = _translate({"loadBalancer": {"consistentHash": {"httpHeaderName": "x"}}}, subsets,
                        [{"route": [{"destination": {"host": "sample-app", "subset": s},
                                     "weight": 50} for s in ("v1", "v2")]}])
    (route,) = _routes(out)
    assert [h.WhichOneof("policy_specifier") for h in route.route.hash_policy] == [
        "query_parameter", "header"]
    assert route.route.retry_policy.retry_host_predicate


def test_port_level_hash_needs_a_destination_port() -> None:
    policy = {"portLevelSettings": [{"port": {"number": 80}, "loadBalancer": {
        "consistentHash": {"httpHeaderName": "x-port"}}}]}
    _, out = _translate(policy, [V1], [{"route": [{"destination": {
        "host": "sample-app", "subset": "v1"}}]}])
    assert not _routes(out)[0].route.hash_policy  # Istio: no port on the destination
    _, out = _translate(policy, [V1], [{"route": [{"destination": {
        "host": "sample-app", "subset": "v1", "port": {"number": 80}}}]}])
    assert _routes(out)[0].route.hash_policy[0].header.header_name == "x-port"


def test_maglev_ring_size_and_cookie_fields() -> None:
    _, out = _translate({"loadBalancer": {"consistentHash": {
        "httpCookie": {"name": "c", "path": "/p", "ttl": "0s",
                       "attributes": [{"name": "SameSite", "value": "Strict"}]},
        "maglev": {"tableSize": 65537}}}})
    c = _cluster(out)
    assert c.lb_policy == Cluster.MAGLEV and c.maglev_lb_config.table_size.value == 65537
    cookie = _routes(out)[0].route.hash_policy[0].cookie
    assert (cookie.name, cookie.path, cookie.HasField("ttl"), cookie.ttl.seconds) == (
        "c", "/p", True, 0)
    assert cookie.attributes[0].name == "SameSite"
    _, out = _translate({"loadBalancer": {"consistentHash": {
        "httpHeaderName": "x", "minimumRingSize": 4096}}})
    assert _cluster(out).ring_hash_lb_config.minimum_ring_size.value == 4096


def test_warmup_slow_start() -> None:
    _, out = _translate({"loadBalancer": {"simple": "ROUND_ROBIN", "warmup": {"duration": "30s"}}})
    ss = _cluster(out).round_robin_lb_config.slow_start_config
    assert (ss.slow_start_window.seconds, ss.aggression.default_value, ss.aggression.runtime_key,
            ss.min_weight_percent.value) == (30, 1.0, "(", 10.0)
    _, out = _translate({"loadBalancer": {"warmupDurationSecs": "5s"}})
    ss = _cluster(out).least_request_lb_config.slow_start_config
    assert ss.slow_start_window.seconds == 5 and not ss.HasField("aggression")
    _, out = _translate({"loadBalancer": {"simple": "RANDOM", "warmup": {"duration": "30s"}}})
    assert _cluster(out).WhichOneof("lb_config") is None  # Istio: RANDOM has no slow start


def test_passthrough_keeps_registry_balancing() -> None:
    snap, out = _translate({"loadBalancer": {"simple": "PASSTHROUGH"}})
    assert _cluster(out).type == Cluster.EDS and _cluster(out).lb_policy == Cluster.LEAST_REQUEST
    assert any("PASSTHROUGH cannot apply" in d for d in snap.diagnostics)


def test_outlier_local_origin_and_min_health() -> None:
    _, out = _translate({"outlierDetection": {
        "consecutive5xxErrors": 0, "splitExternalLocalOriginErrors": True,
        "consecutiveLocalOriginFailures": 4, "minHealthPercent": 40}})
    c = _cluster(out)
    od = c.outlier_detection
    assert od.enforcing_consecutive_5xx.value == 0 and od.split_external_local_origin_errors
    assert od.consecutive_local_origin_failure.value == 4
    assert od.enforcing_consecutive_local_origin_failure.value == 100
    assert c.common_lb_config.healthy_panic_threshold.value == 40.0


def test_tcp_and_http_pool_fields() -> None:
    _, out = _translate({"connectionPool": {
        "tcp": {"maxConnections": 7, "connectTimeout": "150ms", "idleTimeout": "9s",
                "maxConnectionDuration": "1m", "tcpKeepalive": {"time": "30s"}},
        "http": {"h2UpgradePolicy": "UPGRADE", "maxConcurrentStreams": 9,
                 "maxRequestsPerConnection": 3}}})
    c = _cluster(out)
    o = _options(c)
    assert c.connect_timeout.nanos == 150_000_000 and c.circuit_breakers.thresholds[
        0].max_connections.value == 7
    assert o.explicit_http_config.http2_protocol_options.max_concurrent_streams.value == 9
    assert o.common_http_protocol_options.idle_timeout.seconds == 9
    assert o.common_http_protocol_options.max_connection_duration.seconds == 60
    assert o.common_http_protocol_options.max_requests_per_connection.value == 3
    assert c.upstream_connection_options.tcp_keepalive.keepalive_time.value == 30


def test_tls_mutual_files_sni_and_sans() -> None:
    _, out = _translate({"tls": {"mode": "MUTUAL", "clientCertificate": "/c.pem",
                                 "privateKey": "/k.pem", "caCertificates": "/ca.pem",
                                 "sni": "api.example", "subjectAltNames": ["api.example"]}})
    c = _cluster(out)
    ctx = _tls(c)
    common = ctx.common_tls_context
    assert ctx.sni == "api.example"
    assert common.tls_certificates[0].certificate_chain.filename == "/c.pem"
    assert common.tls_certificates[0].private_key.filename == "/k.pem"
    assert common.validation_context.trusted_ca.filename == "/ca.pem"
    assert {m.matcher.exact for m in common.validation_context.match_typed_subject_alt_names} == {
        "api.example"}
    assert not _options(c).upstream_http_protocol_options.auto_sni  # sni given


def test_tls_simple_defaults_system_roots_and_auto_sni() -> None:
    _, out = _translate({"tls": {"mode": "SIMPLE"}})
    c = _cluster(out)
    assert _tls(c).common_tls_context.validation_context.HasField("system_root_certs")
    up = _options(c).upstream_http_protocol_options
    assert up.auto_sni and up.auto_san_validation
    _, out = _translate({"tls": {"mode": "SIMPLE", "insecureSkipVerify": True}})
    c = _cluster(out)
    assert _tls(c).common_tls_context.validation_context.ByteSize() == 0
    assert not _options(c).upstream_http_protocol_options.auto_san_validation


def test_tls_credential_name_inlines_secret_or_fails_closed() -> None:
    secret = resource("Secret", "creds", {"type": "kubernetes.io/tls", "data": {
        "tls.crt": "Y2VydA==", "tls.key": "a2V5", "ca.crt": "Y2E="}})
    secret = secret.with_(api_version="v1")
    _, out = _translate({"tls": {"mode": "MUTUAL", "credentialName": "creds"}}, extra=(secret,))
    common = _tls(_cluster(out)).common_tls_context
    assert common.tls_certificates[0].certificate_chain.inline_bytes == b"cert"
    assert common.tls_certificates[0].private_key.inline_bytes == b"key"
    assert common.validation_context.trusted_ca.inline_bytes == b"ca"
    snap, out = _translate({"tls": {"mode": "SIMPLE", "credentialName": "missing"}})
    vc = _tls(_cluster(out)).common_tls_context.validation_context
    assert vc.match_typed_subject_alt_names[0].matcher.exact == UNRESOLVED_SAN
    assert any("Secret 'missing' does not exist" in d for d in snap.diagnostics)


def test_istio_mutual_and_disable_send_plaintext() -> None:
    for mode in ("ISTIO_MUTUAL", "DISABLE"):
        _, out = _translate({"tls": {"mode": mode}})
        assert not _cluster(out).HasField("transport_socket")
