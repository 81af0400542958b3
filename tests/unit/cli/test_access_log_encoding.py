"""`--access-log-encoding JSON` and `--workload` from the command line to the bootstrap's
node metadata, and Istio's JSON access log format in the translator's access_logs()."""

from __future__ import annotations

from envoy.extensions.access_loggers.file.v3 import file_pb2

from meshpilot.cli.main import build_parser
from meshpilot.proxy.bootstrap import build_bootstrap
from meshpilot.proxy.gateway import GatewayOptions, gateway_run
from meshpilot.proxy.sidecar import SidecarOptions, sidecar_run
from meshpilot.xds.translate.accesslog import (
    ISTIO_JSON_FORMAT,
    ISTIO_TEXT_FORMAT,
    access_logs,
    proxy_access_logs,
)
from meshpilot.xds.types import ProxyInfo

# Istio's EnvoyJSONLogFormatIstio keys, in the Go source's order.
ISTIO_GO_KEYS = [
    "start_time", "route_name", "method", "path", "protocol", "response_code",
    "response_flags", "response_code_details", "connection_termination_details",
    "bytes_received", "bytes_sent", "duration", "upstream_service_time", "x_forwarded_for",
    "user_agent", "request_id", "authority", "upstream_host", "upstream_cluster",
    "upstream_local_address", "downstream_local_address", "downstream_remote_address",
    "requested_server_name", "upstream_transport_failure_reason",
]


def _file_log(logs: list) -> file_pb2.FileAccessLog:
    [log] = logs
    cfg = file_pb2.FileAccessLog()
    assert log.typed_config.Unpack(cfg)
    return cfg


def test_flags_reach_the_proxy_info_and_the_bootstrap() -> None:
    parser = build_parser()
    args = parser.parse_args(["sidecar", "--name", "a", "--app-port", "8080",
                              "--access-log-encoding", "json", "--workload", "a-deploy"])
    assert (args.access_log_encoding, args.workload) == ("JSON", "a-deploy")
    run = sidecar_run(SidecarOptions(name="a", namespace="ns", app_port=8080,
                                     access_log_encoding="JSON", workload="a-deploy"))
    assert run.info.access_log_encoding == "JSON" and run.info.workload == "a-deploy"
    assert run.annotations["meshpilot.io/access-log-encoding"] == "JSON"
    assert run.annotations["meshpilot.io/workload"] == "a-deploy"
    meta = build_bootstrap(run.info, xds_host="127.0.0.1", xds_port=1, admin_port=2,
                           access_log_path="/tmp/a.log")["node"]["metadata"]
    assert meta["ACCESS_LOG_ENCODING"] == "JSON" and meta["WORKLOAD_NAME"] == "a-deploy"
    assert ProxyInfo.from_metadata(meta).access_log_encoding == "JSON"
    gw = gateway_run(GatewayOptions(name="gw", namespace="ns"))
    assert gw.info.access_log_encoding == "TEXT" and gw.info.workload == "gw"
    assert parser.parse_args(["gateway", "--name", "g"]).access_log_encoding == "TEXT"


def test_json_format_is_istios() -> None:
    assert [k for k, _ in ISTIO_JSON_FORMAT] == ISTIO_GO_KEYS
    operators = dict(ISTIO_JSON_FORMAT)
    assert operators["upstream_cluster"] == "%UPSTREAM_CLUSTER_RAW%"
    assert operators["path"] == "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"
    # every operator of the text format is in the JSON one, and the other way round
    assert sorted(operators.values()) == sorted(
        "%" + op + "%" for op in ISTIO_TEXT_FORMAT.split("%")[1::2])
    cfg = _file_log(access_logs("/tmp/a.log", "JSON"))
    assert cfg.path == "/tmp/a.log"
    fmt = cfg.log_format
    assert fmt.WhichOneof("format") == "json_format"
    assert {k: v.string_value for k, v in fmt.json_format.fields.items()} == operators
    assert fmt.json_format_options.sort_properties is False


def test_text_stays_the_default() -> None:
    cfg = _file_log(access_logs("/tmp/a.log"))
    assert cfg.log_format.text_format_source.inline_string == ISTIO_TEXT_FORMAT
    assert access_logs(None, "JSON") == []
    proxy = ProxyInfo(name="a", namespace="ns", access_log_path="/x", access_log_encoding="JSON")
    assert _file_log(proxy_access_logs(proxy)).log_format.HasField("json_format")
