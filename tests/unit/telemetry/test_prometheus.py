"""The /metrics text: parsed back by an independent parser, every family declared, label
values escaped, histograms cumulative and consistent."""

from __future__ import annotations

from pathlib import Path

from meshpilot.telemetry import TelemetryCollector, render
from meshpilot.telemetry.model import HTTP_LABELS, TCP_LABELS
from meshpilot.telemetry.prometheus import escape
from meshpilot.xds.translate.telemetry import ALS_INBOUND, ALS_OUTBOUND

from .entries import (
    CLIENT,
    SERVICE,
    TCP,
    V1,
    http_entry,
    http_message,
    mesh_snapshot,
    tcp_entry,
    tcp_message,
)
from .promtext import parse

V1_CLUSTER = f"outbound|80|v1|{SERVICE}"


def collector(tmp_path: Path) -> TelemetryCollector:
    c = TelemetryCollector()
    c.update_mesh(mesh_snapshot(tmp_path))
    out = c.open_stream(CLIENT, ALS_OUTBOUND)
    c.process(out, http_message(
        *[http_entry(cluster=V1_CLUSTER, upstream=V1.inbound_port, duration_ms=d)
          for d in (0.2, 1, 3, 3, 70, 4_000_000)],
        http_entry(code=503, cluster=V1_CLUSTER, flags={"fault_injected": True}),
        http_entry(cluster="PassthroughCluster", route="allow_any",
                   authority='we"ird\\host\nname')))
    inbound = c.open_stream(TCP, ALS_INBOUND)
    c.process(inbound, tcp_message(tcp_entry("x", 3, rx=10, tx=13)))
    return c


def test_round_trip(tmp_path: Path) -> None:
    text = render(collector(tmp_path))
    types, samples = parse(text)
    assert types == {
        "istio_requests_total": "counter",
        "istio_request_duration_milliseconds": "histogram",
        "istio_request_bytes": "histogram",
        "istio_response_bytes": "histogram",
        "istio_tcp_sent_bytes_total": "counter",
        "istio_tcp_received_bytes_total": "counter",
        "istio_tcp_connections_opened_total": "counter",
        "istio_tcp_connections_closed_total": "counter",
        "meshpilot_als_streams_total": "counter",
        "meshpilot_als_streams_active": "gauge",
        "meshpilot_als_streams_rejected_total": "counter",
        "meshpilot_als_messages_total": "counter",
        "meshpilot_als_entries_total": "counter",
        "meshpilot_als_entries_unknown_proxy_total": "counter",
        "meshpilot_als_entries_unknown_peer_total": "counter",
    }
    requests = [s for s in samples if s.name == "istio_requests_total"]
    assert sorted(s.value for s in requests) == [1, 1, 6]
    assert all([k for k, _ in s.labels] == list(HTTP_LABELS) for s in requests)
    # Escaped on the way out, the same string on the way back.
    odd = [s for s in requests if s.label_dict["destination_service"].startswith("we")]
    assert odd[0].label_dict["destination_service"] == 'we"ird\\host\nname'
    tcp = {s.name: s for s in samples if s.name.startswith("istio_tcp_")}
    assert [k for k, _ in tcp["istio_tcp_sent_bytes_total"].labels] == list(TCP_LABELS)
    assert (tcp["istio_tcp_sent_bytes_total"].value,
            tcp["istio_tcp_received_bytes_total"].value) == (13, 10)
    entries = {s.label_dict["type"]: s.value for s in samples
               if s.name == "meshpilot_als_entries_total"}
    assert entries == {"http": 8, "tcp": 1}


def test_histogram_buckets(tmp_path: Path) -> None:
    _, samples = parse(render(collector(tmp_path)))
    name = "istio_request_duration_milliseconds"
    ok_rows = [s for s in samples if s.name == f"{name}_bucket"
               and s.label_dict["response_code"] == "200"
               and s.label_dict["destination_service_name"] == "sample-app"]
    by_le = {s.label_dict["le"]: s.value for s in ok_rows}
    assert list(by_le)[:4] == ["0.5", "1", "5", "10"] and list(by_le)[-1] == "+Inf"
    assert "3600000" in by_le  # integers print without a decimal point
    # 0.2 and 1 ms -> 0 and 1 (whole ms); 3, 3; 70; 4,000,000 ms -> +Inf only.
    assert (by_le["0.5"], by_le["1"], by_le["5"], by_le["100"], by_le["3600000"],
            by_le["+Inf"]) == (1, 2, 4, 5, 5, 6)
    values = [s.value for s in ok_rows]
    assert values == sorted(values)
    labels = ok_rows[0].label_dict
    labels.pop("le")
    count = next(s for s in samples if s.name == f"{name}_count" and s.label_dict == labels)
    total = next(s for s in samples if s.name == f"{name}_sum" and s.label_dict == labels)
    assert count.value == 6 and total.value == 0 + 1 + 3 + 3 + 70 + 4_000_000


def test_escape() -> None:
    assert escape('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_empty_collector_renders_declarations_only() -> None:
    types, samples = parse(render(TelemetryCollector()))
    assert "istio_requests_total" in types
    assert {s.name for s in samples} <= {n for n in types if n.startswith("meshpilot_")}
