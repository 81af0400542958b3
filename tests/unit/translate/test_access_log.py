"""Access logs: Istio's default text format on every listener of a proxy that names a file.

Byte-for-byte equality with Istio's format matters because users bring their greps and
log parsers from Istio; the e2e circuit-breaker test reads real lines (the `UO` flag).
"""

from __future__ import annotations

from dataclasses import replace

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2

from meshpilot.proxy.bootstrap import build_bootstrap
from meshpilot.xds.translate import resources_to_json, translate
from meshpilot.xds.translate.accesslog import ISTIO_TEXT_FORMAT
from meshpilot.xds.types import ProxyInfo

from .cases import CASES
from .helpers import CLIENT, snapshot

LOG = "/tmp/meshpilot-test/access.log"

# Istio's EnvoyTextLogFormat (pilot/pkg/model/telemetry_logging.go), copied from the Go
# source as one line so a typo in either copy shows up here.
ISTIO_GO_FORMAT = (
    '[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" '
    '%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% '
    '"%UPSTREAM_TRANSPORT_FAILURE_REASON%" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
    '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" '
    '"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%" %UPSTREAM_CLUSTER_RAW% '
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)


def _logs(listener: listener_pb2.Listener) -> list[accesslog_pb2.AccessLog]:
    [chain] = listener.filter_chains
    [network_filter] = chain.filters
    if network_filter.name.endswith("tcp_proxy"):
        msg: hcm_pb2.HttpConnectionManager | tcp_proxy_pb2.TcpProxy = tcp_proxy_pb2.TcpProxy()
    else:
        msg = hcm_pb2.HttpConnectionManager()
    network_filter.typed_config.Unpack(msg)
    # The gRPC access-log stream (telemetry) is tested in tests/unit/telemetry.
    return [log for log in msg.access_log if log.name == "envoy.access_loggers.file"]


def _file_log(log: accesslog_pb2.AccessLog) -> file_pb2.FileAccessLog:
    assert log.name == "envoy.access_loggers.file"
    cfg = file_pb2.FileAccessLog()
    assert log.typed_config.Unpack(cfg)
    return cfg


def test_format_is_istios_default() -> None:
    assert ISTIO_GO_FORMAT == ISTIO_TEXT_FORMAT
    assert ISTIO_TEXT_FORMAT.endswith("%ROUTE_NAME%\n")


def test_every_http_listener_logs_in_istio_format() -> None:
    res = translate(snapshot(*CASES["no-virtualservice"]), replace(CLIENT, access_log_path=LOG))
    assert set(res.listeners) == {"virtualInbound", "virtualOutbound"}
    for listener in res.listeners.values():
        assert isinstance(listener, listener_pb2.Listener)
        [log] = _logs(listener)
        cfg = _file_log(log)
        assert cfg.path == LOG
        assert cfg.log_format.text_format_source.inline_string == ISTIO_TEXT_FORMAT


def test_tcp_app_inbound_tcp_proxy_logs_too() -> None:
    proxy = replace(CLIENT, access_log_path=LOG, app_protocol="tcp")
    res = translate(snapshot(*CASES["no-virtualservice"]), proxy)
    inbound = res.listeners["virtualInbound"]
    assert isinstance(inbound, listener_pb2.Listener)
    assert inbound.filter_chains[0].filters[0].name == "envoy.filters.network.tcp_proxy"
    [log] = _logs(inbound)
    assert _file_log(log).log_format.text_format_source.inline_string == ISTIO_TEXT_FORMAT


def test_no_path_no_access_log() -> None:
    res = translate(snapshot(*CASES["no-virtualservice"]), CLIENT)
    for listener in res.listeners.values():
        assert isinstance(listener, listener_pb2.Listener)
        assert _logs(listener) == []


def test_translation_with_access_log_is_deterministic() -> None:
    proxy = replace(CLIENT, access_log_path=LOG)
    snap = snapshot(*CASES["tcp-tls-routes"])
    assert resources_to_json(translate(snap, proxy)) == resources_to_json(translate(snap, proxy))


def test_access_log_path_round_trips_through_node_metadata() -> None:
    proxy = replace(CLIENT, access_log_path=LOG)
    assert proxy.to_metadata()["ACCESS_LOG_PATH"] == LOG
    assert ProxyInfo.from_metadata(proxy.to_metadata()) == proxy
    assert "ACCESS_LOG_PATH" not in CLIENT.to_metadata()  # absent stays absent
    assert ProxyInfo.from_metadata(CLIENT.to_metadata()).access_log_path is None


def test_bootstrap_keyword_and_proxy_field_agree() -> None:
    by_keyword = build_bootstrap(CLIENT, xds_host="127.0.0.1", xds_port=1, admin_port=2,
                                 access_log_path=LOG)
    by_field = build_bootstrap(replace(CLIENT, access_log_path=LOG), xds_host="127.0.0.1",
                               xds_port=1, admin_port=2)
    assert by_keyword == by_field
    assert by_keyword["node"]["metadata"]["ACCESS_LOG_PATH"] == LOG
