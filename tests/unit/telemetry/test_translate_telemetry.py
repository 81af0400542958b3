"""The translated config streams every request and connection to the control plane, and
carries the client's identity to the server side."""

from __future__ import annotations

from dataclasses import replace

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.data.accesslog.v3 import accesslog_pb2 as log_data
from envoy.extensions.access_loggers.grpc.v3 import als_pb2
from envoy.extensions.filters.http.header_to_metadata.v3 import header_to_metadata_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from meshpilot.proxy.bootstrap import XDS_CLUSTER as BOOTSTRAP_XDS_CLUSTER
from meshpilot.xds.translate import translate
from meshpilot.xds.translate.telemetry import (
    ALS_INBOUND,
    ALS_OUTBOUND,
    PEER_ID_HEADER,
    XDS_CLUSTER,
)

from ..translate.cases import CASES
from ..translate.helpers import CLIENT, GATEWAY, snapshot

LOG = "/tmp/meshpilot-test/access.log"


def _network_filters(listener: listener_pb2.Listener) -> list:
    out = []
    for chain in listener.filter_chains:
        for f in chain.filters:
            msg = (tcp_proxy_pb2.TcpProxy() if f.name.endswith("tcp_proxy")
                   else hcm_pb2.HttpConnectionManager())
            f.typed_config.Unpack(msg)
            out.append(msg)
    return out


def _als(logs) -> list[tuple[str, als_pb2.CommonGrpcAccessLogConfig]]:
    out = []
    for log in logs:
        if log.name == "envoy.access_loggers.http_grpc":
            cfg = als_pb2.HttpGrpcAccessLogConfig()
            log.typed_config.Unpack(cfg)
            assert list(cfg.additional_request_headers_to_log) == ["content-type"]
            assert list(cfg.additional_response_trailers_to_log) == ["grpc-status"]
            out.append(("http", cfg.common_config))
        elif log.name == "envoy.access_loggers.tcp_grpc":
            cfg = als_pb2.TcpGrpcAccessLogConfig()
            log.typed_config.Unpack(cfg)
            out.append(("tcp", cfg.common_config))
    return out


def test_xds_cluster_name_matches_the_bootstrap() -> None:
    assert XDS_CLUSTER == BOOTSTRAP_XDS_CLUSTER


def test_sidecar_hcms_log_to_the_control_plane_by_direction() -> None:
    res = translate(snapshot(*CASES["no-virtualservice"]), replace(CLIENT, access_log_path=LOG))
    names = {}
    for name, listener in res.listeners.items():
        [hcm] = _network_filters(listener)
        [(kind, common)] = _als(hcm.access_log)
        assert kind == "http"
        assert common.grpc_service.envoy_grpc.cluster_name == XDS_CLUSTER
        assert common.custom_tags[0].value == "%UPSTREAM_CLUSTER_RAW%"
        names[name] = common.log_name
        # The file log is still there, first.
        assert hcm.access_log[0].name == "envoy.access_loggers.file"
        filters = [f.name for f in hcm.http_filters]
        if name == "virtualInbound":
            assert filters[0] == "envoy.filters.http.header_to_metadata"
            cfg = header_to_metadata_pb2.Config()
            hcm.http_filters[0].typed_config.Unpack(cfg)
            [rule] = cfg.request_rules
            assert (rule.header, rule.remove) == (PEER_ID_HEADER, True)
            assert rule.on_header_present.metadata_namespace == "meshpilot.peer"
        else:
            assert "envoy.filters.http.header_to_metadata" not in filters
    assert names == {"virtualOutbound": ALS_OUTBOUND, "virtualInbound": ALS_INBOUND}


def test_outbound_routes_stamp_the_proxy_id() -> None:
    res = translate(snapshot(*CASES["canary-90-10"]), CLIENT)
    for name, rc in res.routes.items():
        assert isinstance(rc, route_pb2.RouteConfiguration)
        stamped = [h for h in rc.request_headers_to_add if h.header.key == PEER_ID_HEADER]
        if name.startswith("inbound|"):
            assert stamped == []
        else:
            [h] = stamped
            assert h.header.value == "sleep.traffic-demo"
            assert h.append_action == h.OVERWRITE_IF_EXISTS_OR_ADD


def test_inbound_tcp_proxy_flushes_on_connect_and_periodically() -> None:
    proxy = replace(CLIENT, access_log_path=LOG, app_protocol="tcp")
    res = translate(snapshot(*CASES["no-virtualservice"]), proxy)
    [tcp] = _network_filters(res.listeners["virtualInbound"])
    assert [(k, c.log_name) for k, c in _als(tcp.access_log)] == [("tcp", ALS_INBOUND)]
    assert tcp.access_log_options.flush_access_log_on_connected
    assert tcp.access_log_options.access_log_flush_interval.seconds == 5
    # The file log keeps one line per connection.
    file_log = tcp.access_log[0]
    assert list(file_log.filter.log_type_filter.types) == [
        log_data.AccessLogType.TcpConnectionEnd]


def test_gateways_report_as_source_and_stamp_their_id() -> None:
    res = translate(snapshot(*CASES["gateways"]), GATEWAY)
    assert res.listeners and res.routes
    for listener in res.listeners.values():
        for f in _network_filters(listener):
            assert [c.log_name for _, c in _als(f.access_log)] == [ALS_OUTBOUND]
    for rc in res.routes.values():
        assert isinstance(rc, route_pb2.RouteConfiguration)
        assert [h.header.value for h in rc.request_headers_to_add
                if h.header.key == PEER_ID_HEADER] == [GATEWAY.id]


def _all_logs(resources) -> list:
    return [log for listener in resources.listeners.values()
            for msg in _network_filters(listener) for log in msg.access_log]


def test_metrics_off_in_mesh_config_removes_every_stream_and_the_peer_header(
    tmp_path,
) -> None:
    """`defaultProviders: {metrics: []}` (Istio's way to turn metrics off): no ALS logger,
    no peer-id header or filter; the file access log stays."""
    from meshpilot.controlplane.meshconfig import load_mesh_config

    path = tmp_path / "mesh.yaml"
    path.write_text("defaultProviders:\n  metrics: []\n")
    mesh = load_mesh_config(path)
    assert not mesh.metrics_enabled
    for case, proxy in (("seed-routing", CLIENT), ("gateways", GATEWAY)):
        on = translate(snapshot(*CASES[case]), replace(proxy, access_log_path=LOG))
        off = translate(snapshot(*CASES[case], mesh=mesh), replace(proxy, access_log_path=LOG))
        assert _als(_all_logs(on)) and not _als(_all_logs(off))
        assert {log.name for log in _all_logs(off)} == {"envoy.access_loggers.file"}
        for rc in off.routes.values():
            assert PEER_ID_HEADER not in [h.header.key for h in rc.request_headers_to_add]
        for listener in off.listeners.values():
            for msg in _network_filters(listener):
                if isinstance(msg, hcm_pb2.HttpConnectionManager):
                    assert "envoy.filters.http.header_to_metadata" not in [
                        f.name for f in msg.http_filters]


def test_metrics_providers_other_than_prometheus_are_rejected(tmp_path) -> None:
    import pytest

    from meshpilot.controlplane.meshconfig import MeshConfigError, load_mesh_config

    path = tmp_path / "mesh.yaml"
    path.write_text("defaultProviders:\n  metrics: [stackdriver]\n")
    with pytest.raises(MeshConfigError, match=r"defaultProviders\.metrics.*stackdriver"):
        load_mesh_config(path)
    path.write_text("defaultProviders:\n  metrics: [prometheus]\n")
    assert load_mesh_config(path).metrics_enabled
