"""Istio's standard metric vocabulary: label names and order, workload identities, Envoy's
response-flag codes and gRPC status rules, Envoy's default histogram buckets.

Label names and their order are Istio's (istio/proxy testdata/metric/*.yaml.tmpl, e.g.
client_sidecar_connect_request_total and tcp_server_connection_open_without_mx), so
dashboards and PromQL written for Istio work unchanged. Value rules follow Istio's stats
filter (istio/proxy source/extensions/filters/http/istio_stats/istio_stats.cc):

- an unknown peer is `unknown`, except `*_canonical_revision`, which is `latest`;
- `*_canonical_service` is the label `service.istio.io/canonical-name`, else
  `app.kubernetes.io/name`, else `app`, else the workload name; `*_canonical_revision`
  is `service.istio.io/canonical-revision`, else `app.kubernetes.io/version`, else
  `version`, else `latest` (Istio's pkg/model/labels canonical rules);
- `*_app` / `*_version` are the `app` / `version` labels (or their app.kubernetes.io
  twins), `unknown` when absent;
- `*_principal` is `unknown`: meshpilot proxies speak plaintext, there is no SPIFFE id;
- `*_cluster` is the control plane's cluster id (Istio's default `Kubernetes`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from envoy.data.accesslog.v3 import accesslog_pb2

UNKNOWN = "unknown"
LATEST = "latest"
DEFAULT_CLUSTER_ID = "Kubernetes"  # Istio's default cluster id (CLUSTER_ID)

HTTP_LABELS: tuple[str, ...] = (
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)
# TCP metrics: the same labels without response_code and grpc_response_status.
TCP_LABELS: tuple[str, ...] = tuple(
    name for name in HTTP_LABELS if name not in ("response_code", "grpc_response_status"))

# Envoy's default histogram buckets (source/common/stats/histogram_impl.cc): Istio sets
# none of its own, so these apply to durations (ms) and sizes (bytes) alike.
DEFAULT_BUCKETS: tuple[float, ...] = (
    0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000,
    600000, 1800000, 3600000,
)


@dataclass(frozen=True)
class Workload:
    """The labels one side of a request gets: `source_*` or `destination_*` (minus the
    service labels, which come from the service, not the workload)."""

    workload: str
    namespace: str
    canonical_service: str
    canonical_revision: str
    app: str
    version: str
    cluster: str
    principal: str = UNKNOWN


UNKNOWN_WORKLOAD = Workload(UNKNOWN, UNKNOWN, UNKNOWN, LATEST, UNKNOWN, UNKNOWN, UNKNOWN)


def _first(labels: Mapping[str, str], *keys: str) -> str:
    return next((labels[k] for k in keys if labels.get(k)), "")


def workload_identity(workload: str, namespace: str, labels: Mapping[str, str],
                      cluster: str) -> Workload:
    """Istio's peer metadata for a workload with these labels (see module doc)."""
    app = _first(labels, "app", "app.kubernetes.io/name")
    version = _first(labels, "version", "app.kubernetes.io/version")
    canonical = _first(labels, "service.istio.io/canonical-name", "app.kubernetes.io/name",
                       "app") or workload
    revision = _first(labels, "service.istio.io/canonical-revision",
                      "app.kubernetes.io/version", "version") or LATEST
    return Workload(workload or UNKNOWN, namespace or UNKNOWN, canonical, revision,
                    app or UNKNOWN, version or UNKNOWN, cluster or UNKNOWN)


# --- response flags -----------------------------------------------------------------------

# ALS ResponseFlags field number -> Envoy short code. The proto's field order is Envoy's
# CORE_RESPONSE_FLAGS order (source/common/stream_info/utility.h), which is the order
# %RESPONSE_FLAGS% prints them in; DO (DropOverload) has no ALS field, so it cannot be
# reported from the access-log stream.
_FLAG_CODES_BY_NAME = {
    "failed_local_healthcheck": "LH",
    "no_healthy_upstream": "UH",
    "upstream_request_timeout": "UT",
    "local_reset": "LR",
    "upstream_remote_reset": "UR",
    "upstream_connection_failure": "UF",
    "upstream_connection_termination": "UC",
    "upstream_overflow": "UO",
    "no_route_found": "NR",
    "delay_injected": "DI",
    "fault_injected": "FI",
    "rate_limited": "RL",
    "unauthorized_details": "UAEX",
    "rate_limit_service_error": "RLSE",
    "downstream_connection_termination": "DC",
    "upstream_retry_limit_exceeded": "URX",
    "stream_idle_timeout": "SI",
    "invalid_envoy_request_headers": "IH",
    "downstream_protocol_error": "DPE",
    "upstream_max_stream_duration_reached": "UMSDR",
    "response_from_cache_filter": "RFCF",
    "no_filter_config_found": "NFCF",
    "duration_timeout": "DT",
    "upstream_protocol_error": "UPE",
    "no_cluster_found": "NC",
    "overload_manager": "OM",
    "dns_resolution_failure": "DF",
    "downstream_remote_reset": "DR",
}
FLAG_CODES: dict[int, str] = {
    accesslog_pb2.ResponseFlags.DESCRIPTOR.fields_by_name[name].number: code
    for name, code in _FLAG_CODES_BY_NAME.items()
}
# Envoy's order of the codes (by field number, which the proto keeps in Envoy's order).
FLAG_ORDER: tuple[str, ...] = tuple(FLAG_CODES[n] for n in sorted(FLAG_CODES))
NO_FLAGS = "-"


def response_flags(flags: accesslog_pb2.ResponseFlags) -> str:
    """`%RESPONSE_FLAGS%` from the ALS message: short codes in Envoy's order, `-` if none."""
    codes = [FLAG_CODES[f.number] for f, value in flags.ListFields() if value]
    return ",".join(codes) if codes else NO_FLAGS


# --- gRPC ------------------------------------------------------------------------------------

GRPC_MAX_CODE = 16  # Unauthenticated, the last status gRPC defines


def is_grpc(content_type: str) -> bool:
    """Envoy's Grpc::Common::hasGrpcContentType: `application/grpc` or `application/grpc+*`
    (gRPC-Web is not gRPC here, as in Istio)."""
    return content_type == "application/grpc" or content_type.startswith("application/grpc+")


def _http_to_grpc(code: int) -> int:
    """Envoy's Grpc::Utility::httpToGrpcStatus."""
    return {400: 13, 401: 16, 403: 7, 404: 12, 429: 14, 502: 14, 503: 14, 504: 14}.get(code, 2)


def grpc_status(trailer: str, header: str, http_code: int) -> str:
    """Envoy's Grpc::Common::getGrpcStatus as Istio's stats use it: the trailer, else the
    header, else inferred from the HTTP status; empty when there is no response at all."""
    for text in (trailer, header):
        if text:
            return text if text.isdigit() and int(text) <= GRPC_MAX_CODE else ""
    return str(_http_to_grpc(http_code)) if http_code else ""
