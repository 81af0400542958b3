"""Envoy file access logs in Istio's default formats: text, or JSON on request.

Users grep these lines with the habits (and scripts) they have from Istio, so the text
format is Istio's `EnvoyTextLogFormat` character for character (pilot/pkg/model/
telemetry_logging.go, Istio 1.9 onwards): same operators, same order, same quoting, the
trailing newline included. The same format serves HTTP connection managers and tcp_proxy,
as in Istio: HTTP-only operators print `-` on TCP connections.

With `accessLogEncoding: JSON` Istio writes one JSON object per line instead, built from
`EnvoyJSONLogFormatIstio`: the same operators under snake_case keys, as a typed
`json_format` (numbers stay numbers) with `sort_properties: false`, as Istio's
`fileAccessLogWithDefaults` sets it. Log shippers parse these lines without a regex.

The log is attached when the proxy's node metadata names a file (`ACCESS_LOG_PATH`);
without it nothing is logged, as Istio with an empty `meshConfig.accessLogFile`.
"""

from __future__ import annotations

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2
from google.protobuf import struct_pb2

from ..types import AccessLogEncoding, ProxyInfo
from .common import pack

# Istio's well-known name for the file access logger (pkg/wellknown: FileAccessLog).
FILE_ACCESS_LOG = "envoy.access_loggers.file"

ISTIO_TEXT_FORMAT = (
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% "
    "%PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% "
    "%RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% "
    "%DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" "
    "\"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" "
    "%UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% "
    "%DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"
)

# Istio's EnvoyJSONLogFormatIstio: the same keys, operators and order as the Go source.
ISTIO_JSON_FORMAT: tuple[tuple[str, str], ...] = (
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    ("connection_termination_details", "%CONNECTION_TERMINATION_DETAILS%"),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    ("upstream_service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    ("upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"),
)


def _log_format(encoding: AccessLogEncoding) -> (
    substitution_format_string_pb2.SubstitutionFormatString
):
    """Istio's fileAccessLogWithDefaults for the default formats (no custom format, so no
    extra formatters are needed)."""
    if encoding == "JSON":
        fields = struct_pb2.Struct()
        for key, operator in ISTIO_JSON_FORMAT:
            fields.fields[key].string_value = operator
        return substitution_format_string_pb2.SubstitutionFormatString(
            json_format=fields,
            json_format_options=substitution_format_string_pb2.JsonFormatOptions(
                sort_properties=False))
    return substitution_format_string_pb2.SubstitutionFormatString(
        text_format_source=base_pb2.DataSource(inline_string=ISTIO_TEXT_FORMAT))


def file_access_log(path: str, encoding: AccessLogEncoding = "TEXT") -> accesslog_pb2.AccessLog:
    """One file access log in Istio's text (default) or JSON format, as Istio's
    FileAccessLogFromMeshConfig builds it."""
    cfg = file_pb2.FileAccessLog(path=path, log_format=_log_format(encoding))
    return accesslog_pb2.AccessLog(name=FILE_ACCESS_LOG, typed_config=pack(cfg))


def access_logs(path: str | None, encoding: AccessLogEncoding = "TEXT") -> (
    list[accesslog_pb2.AccessLog]
):
    """What a listener's filter puts in `access_log`: nothing when no file is configured.
    Callers that know the proxy pass `proxy.access_log_encoding` (or use proxy_access_logs)."""
    return [file_access_log(path, encoding)] if path else []


def proxy_access_logs(proxy: ProxyInfo) -> list[accesslog_pb2.AccessLog]:
    """The access logs a proxy asked for in its node metadata: file and encoding."""
    return access_logs(proxy.access_log_path, proxy.access_log_encoding)
