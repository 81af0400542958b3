"""Prometheus text exposition (format 0.0.4) of the collector's series.

What a Prometheus scraping the control plane's `/metrics` gets: Istio's standard metrics
under their Istio names (`istio_requests_total`, ...), so Istio dashboards and alerts
apply, and the access-log pipeline's own health under `meshpilot_als_*` (streams,
entries, entries from proxies the control plane could not identify). Histograms are
rendered cumulatively (`_bucket{le=...}`, `+Inf`, `_sum`, `_count`), as Envoy exports
Istio's histograms. Series are sorted, so two scrapes of the same state are identical.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from .collector import PipelineHealth, TelemetryCollector
from .metrics import BUCKETS, Histogram
from .model import HTTP_LABELS, TCP_LABELS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_HELP = {
    "istio_requests_total": "Total number of requests handled by the proxies (Istio).",
    "istio_request_duration_milliseconds": "Request duration in milliseconds (Istio).",
    "istio_request_bytes": "Request size in bytes, as received from the client (Istio).",
    "istio_response_bytes": "Response size in bytes, as sent to the client (Istio).",
    "istio_tcp_sent_bytes_total": "Bytes sent to the client on TCP connections (Istio).",
    "istio_tcp_received_bytes_total": "Bytes received from the client on TCP connections "
                                      "(Istio).",
    "istio_tcp_connections_opened_total": "TCP connections opened (Istio).",
    "istio_tcp_connections_closed_total": "TCP connections closed (Istio).",
}


def escape(value: str) -> str:
    """Label value escaping of the text format: backslash, double quote, newline."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(names: Sequence[str], values: Sequence[str]) -> str:
    return ",".join(f'{n}="{escape(v)}"' for n, v in zip(names, values, strict=True))


def _number(value: float) -> str:
    """Integers without a decimal point (`1000`, not `1000.0`), other values as repr."""
    if value == int(value):
        return str(int(value))
    return repr(value)


_LE = [_number(b) for b in BUCKETS] + ["+Inf"]


def _header(name: str, kind: str, help_text: str) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]


def _histogram(out: list[str], name: str, rows: Iterable[tuple[str, Histogram]]) -> None:
    out += _header(name, "histogram", _HELP[name])
    for labels, hist in rows:
        for le, count in zip(_LE, hist.cumulative(), strict=True):
            out.append(f'{name}_bucket{{{labels},le="{le}"}} {count}')
        out.append(f"{name}_sum{{{labels}}} {_number(hist.sum)}")
        out.append(f"{name}_count{{{labels}}} {hist.count}")


def _health(out: list[str], health: PipelineHealth) -> None:
    rows: list[tuple[str, str, str, str, int]] = [
        ("meshpilot_als_streams_total", "counter",
         "Access-log streams opened by proxies.", "", health.streams_total),
        ("meshpilot_als_streams_active", "gauge",
         "Access-log streams open now.", "", health.streams_active),
        ("meshpilot_als_streams_rejected_total", "counter",
         "Access-log streams refused (authentication).", "", health.streams_rejected),
        ("meshpilot_als_messages_total", "counter",
         "Access-log messages received.", "", health.messages),
    ]
    for name, kind, text, labels, value in rows:
        out += _header(name, kind, text)
        out.append(f"{name}{labels} {value}")
    name = "meshpilot_als_entries_total"
    out += _header(name, "counter", "Access-log entries received, by kind.")
    out.append(f'{name}{{type="http"}} {health.http_entries}')
    out.append(f'{name}{{type="tcp"}} {health.tcp_entries}')
    name = "meshpilot_als_entries_unknown_proxy_total"
    out += _header(name, "counter", "Access-log entries from proxies without meshpilot node "
                                    "metadata (dropped).")
    out.append(f"{name} {health.unknown_proxy_entries}")
    name = "meshpilot_als_entries_unknown_peer_total"
    out += _header(name, "counter", "Inbound HTTP entries without a client proxy id "
                                    "(source labels unknown).")
    out.append(f"{name} {health.unknown_peer_entries}")


def render(collector: TelemetryCollector,
           extra: Iterable[Callable[[], list[str]]] = ()) -> str:
    """The whole exposition, ending with a newline. `extra` are other components' series
    (e.g. the canary controller's `meshpilot_canary_*`), each a callable returning
    finished exposition lines, so they share one `/metrics` without this module knowing
    them."""
    store = collector.store
    http = sorted(store.http.items())
    tcp = sorted(store.tcp.items())
    out: list[str] = []
    http_labels = [(_labels(HTTP_LABELS, key), series) for key, series in http]
    name = "istio_requests_total"
    out += _header(name, "counter", _HELP[name])
    out += [f"{name}{{{labels}}} {s.requests}" for labels, s in http_labels]
    _histogram(out, "istio_request_duration_milliseconds",
               ((labels, s.duration) for labels, s in http_labels))
    _histogram(out, "istio_request_bytes",
               ((labels, s.request_bytes) for labels, s in http_labels))
    _histogram(out, "istio_response_bytes",
               ((labels, s.response_bytes) for labels, s in http_labels))
    tcp_labels = [(_labels(TCP_LABELS, key), series) for key, series in tcp]
    for name, attr in (("istio_tcp_sent_bytes_total", "sent_bytes"),
                       ("istio_tcp_received_bytes_total", "received_bytes"),
                       ("istio_tcp_connections_opened_total", "opened"),
                       ("istio_tcp_connections_closed_total", "closed")):
        out += _header(name, "counter", _HELP[name])
        out += [f"{name}{{{labels}}} {getattr(s, attr)}" for labels, s in tcp_labels]
    _health(out, collector.health)
    for lines in extra:
        out += lines()
    return "\n".join(out) + "\n"
