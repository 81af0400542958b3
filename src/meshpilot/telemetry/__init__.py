"""Istio's standard metrics from Envoy's access-log stream: collector, Prometheus text,
and the windowed request statistics canary analysis asks for."""

from .als import AccessLogServicer, register
from .collector import TelemetryCollector
from .prometheus import CONTENT_TYPE, render
from .window import WindowSummary, histogram_quantile

__all__ = [
    "CONTENT_TYPE",
    "AccessLogServicer",
    "TelemetryCollector",
    "WindowSummary",
    "histogram_quantile",
    "register",
    "render",
]
