"""Envoy file access logs in Istio's default text format.

Users grep these lines with the habits (and scripts) they have from Istio, so the format
is Istio's `EnvoyTextLogFormat` character for character (pilot/pkg/model/
telemetry_logging.go, Istio 1.9 onwards): same operators, same order, same quoting, the
trailing newline included. The same format serves HTTP connection managers and tcp_proxy,
as in Istio: HTTP-only operators print `-` on TCP connections.

The log is attached when the proxy's node metadata names a file (`ACCESS_LOG_PATH`);
without it nothing is logged, as Istio with an empty `meshConfig.accessLogFile`.
"""

from __future__ import annotations

from envoy.config.accesslog.v3 import accesslog_pb2
from envoy.config.core.v3 import base_pb2, substitution_format_string_pb2
from envoy.extensions.access_loggers.file.v3 import file_pb2

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


def file_access_log(path: str) -> accesslog_pb2.AccessLog:
    """One file access log with Istio's text format, as Istio's FileAccessLogFromMeshConfig
    builds it (inline text_format_source, no extra formatters: the format has none)."""
    fmt = substitution_format_string_pb2.SubstitutionFormatString(
        text_format_source=base_pb2.DataSource(inline_string=ISTIO_TEXT_FORMAT))
    cfg = file_pb2.FileAccessLog(path=path, log_format=fmt)
    return accesslog_pb2.AccessLog(name=FILE_ACCESS_LOG, typed_config=pack(cfg))


def access_logs(path: str | None) -> list[accesslog_pb2.AccessLog]:
    """What a listener's filter puts in `access_log`: nothing when no file is configured."""
    return [file_access_log(path)] if path else []
