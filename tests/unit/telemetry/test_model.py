"""Istio's label vocabulary and Envoy's codes, checked against their sources."""

from __future__ import annotations

import pytest
from envoy.data.accesslog.v3 import accesslog_pb2 as al

from meshpilot.telemetry.model import (
    DEFAULT_BUCKETS,
    FLAG_ORDER,
    HTTP_LABELS,
    TCP_LABELS,
    grpc_status,
    is_grpc,
    response_flags,
    workload_identity,
)

# istio/proxy testdata/metric/client_sidecar_connect_request_total.yaml.tmpl, label order.
ISTIO_HTTP_LABELS = [
    "reporter", "source_workload", "source_canonical_service", "source_canonical_revision",
    "source_workload_namespace", "source_principal", "source_app", "source_version",
    "source_cluster", "destination_workload", "destination_workload_namespace",
    "destination_principal", "destination_app", "destination_version", "destination_service",
    "destination_canonical_service", "destination_canonical_revision",
    "destination_service_name", "destination_service_namespace", "destination_cluster",
    "request_protocol", "response_code", "grpc_response_status", "response_flags",
    "connection_security_policy",
]

# Envoy source/common/stream_info/utility.h CORE_RESPONSE_FLAGS order, without DO (no ALS
# field) -- the order %RESPONSE_FLAGS% prints them in.
ENVOY_ORDER = ["LH", "UH", "UT", "LR", "UR", "UF", "UC", "UO", "NR", "DI", "FI", "RL", "UAEX",
               "RLSE", "DC", "URX", "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE", "NC",
               "OM", "DF", "DR"]


def test_labels_are_istios_in_istios_order() -> None:
    assert list(HTTP_LABELS) == ISTIO_HTTP_LABELS and len(HTTP_LABELS) == 25
    assert list(TCP_LABELS) == [n for n in ISTIO_HTTP_LABELS
                                if n not in ("response_code", "grpc_response_status")]
    assert len(TCP_LABELS) == 23


def test_buckets_are_envoys_defaults() -> None:
    assert DEFAULT_BUCKETS == (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
                               30000, 60000, 300000, 600000, 1800000, 3600000)


def test_flag_order_is_envoys() -> None:
    assert list(FLAG_ORDER) == ENVOY_ORDER
    # Every ALS flag field has a code.
    assert len(FLAG_ORDER) == len(al.ResponseFlags.DESCRIPTOR.fields)


def test_flags_render_like_response_flags_operator() -> None:
    flags = al.ResponseFlags()
    assert response_flags(flags) == "-"
    flags.upstream_retry_limit_exceeded = True
    flags.no_healthy_upstream = True
    flags.unauthorized_details.reason = al.ResponseFlags.Unauthorized.EXTERNAL_SERVICE
    assert response_flags(flags) == "UH,UAEX,URX"
    for field, code in zip(sorted(al.ResponseFlags.DESCRIPTOR.fields, key=lambda f: f.number),
                           ENVOY_ORDER, strict=True):
        one = al.ResponseFlags()
        if field.name == "unauthorized_details":
            one.unauthorized_details.SetInParent()
        else:
            setattr(one, field.name, True)
        assert response_flags(one) == code


@pytest.mark.parametrize(("trailer", "header", "code", "expected"), [
    ("0", "", 200, "0"), ("", "7", 200, "7"), ("3", "7", 200, "3"),
    ("", "", 503, "14"), ("", "", 404, "12"), ("", "", 401, "16"), ("", "", 200, "2"),
    ("", "", 0, ""), ("99", "", 200, ""),
])
def test_grpc_status_rules(trailer: str, header: str, code: int, expected: str) -> None:
    assert grpc_status(trailer, header, code) == expected


def test_grpc_content_types() -> None:
    assert is_grpc("application/grpc") and is_grpc("application/grpc+proto")
    assert not is_grpc("application/grpc-web") and not is_grpc("application/json")


def test_canonical_names_follow_istio() -> None:
    w = workload_identity("reviews-v2", "bookinfo", {"app": "reviews", "version": "v2"}, "K")
    assert (w.canonical_service, w.canonical_revision, w.app, w.version) == (
        "reviews", "v2", "reviews", "v2")
    w = workload_identity("db", "ns", {"service.istio.io/canonical-name": "mysql",
                                       "service.istio.io/canonical-revision": "8",
                                       "app": "x", "version": "1"}, "K")
    assert (w.canonical_service, w.canonical_revision, w.app, w.version) == ("mysql", "8",
                                                                            "x", "1")
    w = workload_identity("lonely", "ns", {}, "K")
    assert (w.canonical_service, w.canonical_revision, w.app, w.version, w.cluster) == (
        "lonely", "latest", "unknown", "unknown", "K")
