"""Label derivation and counting in the collector, fed with ALS entries shaped like the ones
real Envoys send (see entries.py), without sockets."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from envoy.config.core.v3 import base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2 as al

from meshpilot.telemetry import TelemetryCollector
from meshpilot.telemetry.model import HTTP_LABELS, TCP_LABELS
from meshpilot.xds.translate.telemetry import ALS_INBOUND, ALS_OUTBOUND

from .entries import (
    CLIENT,
    NS,
    SERVICE,
    TCP,
    V1,
    V2,
    http_entry,
    http_message,
    mesh_snapshot,
    tcp_entry,
    tcp_message,
)

V1_CLUSTER = f"outbound|80|v1|{SERVICE}"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def collector(tmp_path: Path) -> TelemetryCollector:
    c = TelemetryCollector(clock=Clock())
    c.update_mesh(mesh_snapshot(tmp_path))
    for proxy in (CLIENT, V1, V2, TCP):
        c.hooks.on_stream_open(proxy)
    return c


def http_rows(c: TelemetryCollector) -> dict[tuple[str, ...], int]:
    return {labels: s.requests for labels, s in c.store.http.items()}


def only_http(c: TelemetryCollector) -> dict[str, str]:
    [labels] = c.store.http
    return dict(zip(HTTP_LABELS, labels, strict=True))


def only_tcp(c: TelemetryCollector) -> tuple[dict[str, str], tuple[int, int, int, int]]:
    [(labels, s)] = c.store.tcp.items()
    return dict(zip(TCP_LABELS, labels, strict=True)), (s.opened, s.closed, s.received_bytes,
                                                          s.sent_bytes)


def test_source_reporter_labels_from_cluster_and_upstream_host(collector) -> None:
    stream = collector.open_stream(CLIENT, ALS_OUTBOUND)
    collector.process(stream, http_message(http_entry(cluster=V1_CLUSTER,
                                                      upstream=V1.inbound_port)))
    assert only_http(collector) == {
        "reporter": "source",
        "source_workload": "sleep", "source_canonical_service": "sleep",
        "source_canonical_revision": "v7", "source_workload_namespace": NS,
        "source_principal": "unknown", "source_app": "sleep", "source_version": "v7",
        "source_cluster": "Kubernetes",
        # WORKLOAD_NAME of the proxy at that address, not the instance name.
        "destination_workload": "sample-app-v1", "destination_workload_namespace": NS,
        "destination_principal": "unknown", "destination_app": "sample-app",
        "destination_version": "v1", "destination_service": SERVICE,
        "destination_canonical_service": "sample-app", "destination_canonical_revision": "v1",
        "destination_service_name": "sample-app", "destination_service_namespace": NS,
        "destination_cluster": "Kubernetes", "request_protocol": "http",
        "response_code": "200", "grpc_response_status": "", "response_flags": "-",
        "connection_security_policy": "unknown",
    }


def test_destination_reporter_takes_the_peer_from_metadata(collector) -> None:
    stream = collector.open_stream(V2, ALS_INBOUND)
    collector.process(stream, http_message(http_entry(
        cluster=f"inbound|{V2.app_port}||", upstream=V2.app_port, peer=CLIENT.id,
        authority="sample-app.traffic-demo:80")))
    got = only_http(collector)
    assert got["reporter"] == "destination"
    assert (got["source_workload"], got["source_app"], got["source_version"]) == (
        "sleep", "sleep", "v7")
    assert (got["destination_workload"], got["destination_version"]) == ("sample-app-v2-1", "v2")
    assert (got["destination_service"], got["destination_service_name"],
            got["destination_service_namespace"]) == (SERVICE, "sample-app", NS)
    assert got["connection_security_policy"] == "none"


def test_destination_reporter_without_peer_is_unknown_source(collector) -> None:
    stream = collector.open_stream(V1, ALS_INBOUND)
    collector.process(stream, http_message(http_entry(authority="127.0.0.1:17001")))
    got = only_http(collector)
    assert [got[k] for k in HTTP_LABELS[1:9]] == [
        "unknown", "unknown", "latest", "unknown", "unknown", "unknown", "unknown", "unknown"]
    # Not one of the service's names, but the workload's only service.
    assert got["destination_service_name"] == "sample-app"
    assert collector.health.unknown_peer_entries == 1


def test_peer_known_only_as_a_workload_entry(tmp_path: Path) -> None:
    c = TelemetryCollector()
    c.update_mesh(mesh_snapshot(tmp_path))  # no proxy connected: WorkloadEntries only
    stream = c.open_stream(V1, ALS_INBOUND)
    c.process(stream, http_message(http_entry(peer=CLIENT.id)))
    assert only_http(c)["source_workload"] == "sleep"


def test_fault_abort_has_service_but_no_destination_workload(collector) -> None:
    stream = collector.open_stream(CLIENT, ALS_OUTBOUND)
    collector.process(stream, http_message(http_entry(
        code=503, cluster=V1_CLUSTER, flags={"fault_injected": True})))
    got = only_http(collector)
    assert (got["destination_workload"], got["destination_version"],
            got["destination_canonical_revision"], got["destination_cluster"]) == (
        "unknown", "unknown", "latest", "unknown")
    assert (got["destination_service"], got["destination_service_name"]) == (
        SERVICE, "sample-app")
    assert (got["response_code"], got["response_flags"]) == ("503", "FI")


@pytest.mark.parametrize(("cluster", "route", "authority", "name", "service"), [
    ("PassthroughCluster", "allow_any", "example.com", "PassthroughCluster", "example.com"),
    ("", "block_all", "example.com:8080", "BlackHoleCluster", "example.com:8080"),
    ("BlackHoleCluster", "default", "sample-app", "BlackHoleCluster", "sample-app"),
    ("", "", "nowhere", "nowhere", "nowhere"),  # no route: Istio's host-header fallback
])
def test_special_clusters_name_the_service_as_istio_does(
        collector, cluster: str, route: str, authority: str, name: str, service: str) -> None:
    stream = collector.open_stream(CLIENT, ALS_OUTBOUND)
    collector.process(stream, http_message(http_entry(cluster=cluster, route=route,
                                                      authority=authority)))
    got = only_http(collector)
    assert (got["destination_service"], got["destination_service_name"],
            got["destination_service_namespace"]) == (service, name, "unknown")


def test_service_entry_host_is_its_own_name(collector) -> None:
    stream = collector.open_stream(CLIENT, ALS_OUTBOUND)
    collector.process(stream, http_message(http_entry(cluster="outbound|80||httpbin.org",
                                                      authority="httpbin.org")))
    got = only_http(collector)
    assert (got["destination_service"], got["destination_service_name"],
            got["destination_service_namespace"]) == ("httpbin.org", "httpbin.org", "egress")


def test_grpc_protocol_and_status(collector) -> None:
    stream = collector.open_stream(CLIENT, ALS_OUTBOUND)
    collector.process(stream, http_message(
        http_entry(cluster=V1_CLUSTER, content_type="application/grpc", grpc_status="5"),
        http_entry(cluster=V1_CLUSTER, content_type="application/grpc+proto",
                   grpc_status="0", grpc_in_headers=True),
        http_entry(cluster=V1_CLUSTER, content_type="application/grpc", code=503),
        http_entry(cluster=V1_CLUSTER, content_type="application/grpc-web", grpc_status="0"),
    ))
    got = sorted((dict(zip(HTTP_LABELS, k, strict=True))["request_protocol"],
                  dict(zip(HTTP_LABELS, k, strict=True))["grpc_response_status"])
                 for k in collector.store.http)
    # trailer, header, inferred from 503 (UNAVAILABLE), and gRPC-Web is not gRPC.
    assert got == [("grpc", "0"), ("grpc", "14"), ("grpc", "5"), ("http", "")]


def test_values_duration_and_sizes(collector) -> None:
    stream = collector.open_stream(CLIENT, ALS_OUTBOUND)
    collector.process(stream, http_message(
        http_entry(cluster=V1_CLUSTER, duration_ms=0.9, rx=120, tx=80),
        http_entry(cluster=V1_CLUSTER, duration_ms=7.99, rx=0, tx=0),
    ))
    [series] = collector.store.http.values()
    assert series.requests == 2
    # Whole milliseconds (Istio divides the duration): 0.9 -> 0 (le 0.5), 7.99 -> 7 (le 10).
    assert series.duration.sum == 7 and series.duration.counts[0] == 1
    assert series.duration.counts[3] == 1
    assert series.request_bytes.count == 2 and series.request_bytes.sum == 120


def test_same_labels_share_a_series_and_counts_add_up(collector) -> None:
    out = collector.open_stream(CLIENT, ALS_OUTBOUND)
    for _ in range(3):
        collector.process(out, http_message(*[http_entry(cluster=V1_CLUSTER,
                                                         upstream=V1.inbound_port)] * 5))
    # A second stream of the same proxy (another worker) lands in the same series.
    other = collector.open_stream(CLIENT, ALS_OUTBOUND)
    collector.process(other, http_message(http_entry(cluster=V1_CLUSTER,
                                                     upstream=V1.inbound_port)))
    assert list(http_rows(collector).values()) == [16]
    assert collector.health.http_entries == 16


def test_removed_endpoint_still_maps_for_a_while(tmp_path: Path) -> None:
    clock = Clock()
    c = TelemetryCollector(clock=clock)
    c.update_mesh(mesh_snapshot(tmp_path))
    c.update_mesh(mesh_snapshot(tmp_path, CLIENT, V2))  # v1 scaled down
    stream = c.open_stream(CLIENT, ALS_OUTBOUND)
    c.process(stream, http_message(http_entry(cluster=V1_CLUSTER, upstream=V1.inbound_port)))
    assert only_http(c)["destination_workload"] == "sample-app-v1-1"
    clock.now += 3600
    c.update_mesh(mesh_snapshot(tmp_path, CLIENT, V2))  # long gone: forgotten
    c.process(stream, http_message(http_entry(cluster=V1_CLUSTER, upstream=V1.inbound_port)))
    assert {dict(zip(HTTP_LABELS, k, strict=True))["destination_workload"]
            for k in c.store.http} == {"sample-app-v1-1", "unknown"}


def test_label_cache_follows_mesh_changes(tmp_path: Path) -> None:
    c = TelemetryCollector()
    c.update_mesh(mesh_snapshot(tmp_path, CLIENT))
    stream = c.open_stream(CLIENT, ALS_OUTBOUND)
    c.process(stream, http_message(http_entry(cluster=V1_CLUSTER, upstream=V1.inbound_port)))
    assert only_http(c)["destination_workload"] == "unknown"  # v1 not registered yet
    c.update_mesh(mesh_snapshot(tmp_path))
    c.process(stream, http_message(http_entry(cluster=V1_CLUSTER, upstream=V1.inbound_port)))
    assert {dict(zip(HTTP_LABELS, k, strict=True))["destination_workload"]
            for k in c.store.http} == {"unknown", "sample-app-v1-1"}


def test_unknown_proxy_entries_are_counted_and_dropped(collector) -> None:
    stream = collector.open_stream(None, ALS_OUTBOUND)
    collector.process(stream, http_message(http_entry(), http_entry()))
    assert collector.store.http == {}
    assert collector.health.unknown_proxy_entries == 2


def test_non_final_http_entries_are_not_requests(collector) -> None:
    stream = collector.open_stream(CLIENT, ALS_OUTBOUND)
    e = http_entry(cluster=V1_CLUSTER)
    e.common_properties.access_log_type = al.AccessLogType.DownstreamPeriodic
    collector.process(stream, http_message(e))
    assert collector.store.http == {}


# --- TCP --------------------------------------------------------------------------------

CONNECTED = al.AccessLogType.TcpUpstreamConnected
PERIODIC = al.AccessLogType.TcpPeriodic
END = al.AccessLogType.TcpConnectionEnd


def test_tcp_connection_opened_on_connect_bytes_as_deltas_closed_at_end(collector) -> None:
    stream = collector.open_stream(TCP, ALS_INBOUND)
    cluster = f"inbound|{TCP.app_port}||"
    steps = [(CONNECTED, 0, 0, (1, 0, 0, 0)), (PERIODIC, 10, 13, (1, 0, 10, 13)),
             (PERIODIC, 10, 13, (1, 0, 10, 13)), (PERIODIC, 25, 40, (1, 0, 25, 40)),
             (END, 30, 52, (1, 1, 30, 52))]
    for kind, rx, tx, expected in steps:
        collector.process(stream, tcp_message(tcp_entry("conn-1", kind, rx=rx, tx=tx,
                                                        cluster=cluster)))
        assert only_tcp(collector)[1] == expected
    labels, _ = only_tcp(collector)
    assert labels["reporter"] == "destination" and labels["request_protocol"] == "tcp"
    assert (labels["destination_workload"], labels["destination_service"]) == (
        "tcp-echo-1", f"tcp-echo.{NS}.svc.cluster.local")
    assert labels["source_workload"] == "unknown"


def test_tcp_end_without_connect_opens_and_closes(collector) -> None:
    stream = collector.open_stream(TCP, ALS_INBOUND)
    collector.process(stream, tcp_message(tcp_entry("c", END, rx=5, tx=0)))
    assert only_tcp(collector)[1] == (1, 1, 5, 0)


def test_tcp_connections_are_told_apart_and_survive_a_new_als_stream(collector) -> None:
    first = collector.open_stream(TCP, ALS_INBOUND)
    collector.process(first, tcp_message(tcp_entry("a", CONNECTED, rx=0, tx=0),
                                         tcp_entry("b", CONNECTED, rx=0, tx=0)))
    collector.close_stream(first)
    second = collector.open_stream(TCP, ALS_INBOUND)  # Envoy reconnected its log stream
    collector.process(second, tcp_message(tcp_entry("a", END, rx=3, tx=4),
                                          tcp_entry("b", END, rx=1, tx=1)))
    assert only_tcp(collector)[1] == (2, 2, 4, 5)


def test_connect_tunnel_is_one_tcp_connection(collector) -> None:
    stream = collector.open_stream(CLIENT, ALS_OUTBOUND)
    collector.process(stream, http_message(http_entry(
        method=base_pb2.RequestMethod.CONNECT, authority="tcp-echo:9000",
        cluster=f"outbound|9000||tcp-echo.{NS}.svc.cluster.local", upstream=TCP.inbound_port,
        flags={"downstream_connection_termination": True}, body_rx=10, body_tx=13)))
    assert collector.store.http == {}
    labels, values = only_tcp(collector)
    assert values == (1, 1, 10, 13)
    assert labels["response_flags"] == "-"  # the client closing is how a tunnel ends
    assert (labels["reporter"], labels["source_workload"], labels["destination_workload"],
            labels["destination_service_name"]) == ("source", "sleep", "tcp-echo-1", "tcp-echo")


def test_refused_tunnel_keeps_its_flags(collector) -> None:
    stream = collector.open_stream(CLIENT, ALS_OUTBOUND)
    collector.process(stream, http_message(http_entry(
        method=base_pb2.RequestMethod.CONNECT, code=503, authority="tcp-echo:9000",
        cluster=f"outbound|9000||tcp-echo.{NS}.svc.cluster.local",
        flags={"no_healthy_upstream": True})))
    assert only_tcp(collector)[0]["response_flags"] == "UH"


def test_throughput_of_steady_state_entries(collector) -> None:
    """Entries/s on one core once the label cache is warm: a measurement, printed (run
    with -s), not a timed assertion."""
    stream = collector.open_stream(CLIENT, ALS_OUTBOUND)
    variants = [http_entry(cluster=V1_CLUSTER, upstream=V1.inbound_port, duration_ms=d)
                for d in (1, 3, 12, 40)] + [
        http_entry(code=503, cluster=V1_CLUSTER, flags={"fault_injected": True})]
    msg = http_message(*(variants * 30))  # 150 entries: one 64 KiB ALS batch
    payload = msg.SerializeToString()
    collector.process(stream, msg)
    n, started = 0, time.perf_counter()
    while time.perf_counter() - started < 0.5:
        decoded = type(msg).FromString(payload)  # the gRPC layer's work is included
        collector.process(stream, decoded)
        n += len(decoded.http_logs.log_entry)
    rate = n / (time.perf_counter() - started)
    print(f"\nALS HTTP entries processed: {rate:,.0f}/s on one core (parse included)")
    assert n > 0 and sum(s.requests for s in collector.store.http.values()) == n + 150
