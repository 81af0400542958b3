"""The merged outcome of a run and its two renderings: fortio-like text and JSON.

The JSON shape is what benchmarks consume; keep it stable (add keys, do not rename).
"""

from __future__ import annotations

import json
from array import array
from dataclasses import dataclass, field
from typing import Any

from .spec import LoadSpec
from .stats import histogram, percentile_key, summarize

JSON_VERSION = 1


@dataclass
class LoadResult:
    """Totals of a run. `codes[-1]` counts transport errors (refused, reset, timeout)."""

    spec: LoadSpec
    requests: int
    duration_s: float
    codes: dict[int, int]
    sockets: int
    latencies_ns: array            # every call's latency, sorted ascending
    error_kinds: dict[str, int] = field(default_factory=dict)
    latency_ms: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.latency_ms:
            self.latency_ms = summarize(self.latencies_ns, self.percentiles)

    @property
    def percentiles(self) -> tuple[float, ...]:
        """The spec's percentiles plus the standard set benchmarks rely on."""
        wanted = {50.0, 75.0, 90.0, 99.0, 99.9, *self.spec.percentiles}
        return tuple(sorted(wanted))

    @property
    def errors(self) -> int:
        return self.codes.get(-1, 0)

    @property
    def responses(self) -> int:
        """Calls that got an HTTP response (any status)."""
        return self.requests - self.errors

    @property
    def qps(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        spec = self.spec
        return {
            "version": JSON_VERSION,
            "tool": "meshpilot-load",
            "url": spec.url,
            "proxy": spec.proxy,
            "method": spec.method.upper(),
            "connections": spec.connections,
            "procs": spec.procs,
            "qps_requested": spec.qps,
            "duration_requested_s": spec.duration if spec.calls is None else None,
            "calls_requested": spec.calls,
            "requests": self.requests,
            "responses": self.responses,
            "errors": self.errors,
            "error_kinds": self.error_kinds,
            "duration_s": self.duration_s,
            "qps": self.qps,
            "codes": {str(k): v for k, v in sorted(self.codes.items())},
            "sockets": self.sockets,
            "latency_ms": self.latency_ms,
            "percentiles": [
                {"percentile": p, "value_ms": self.latency_ms.get(percentile_key(p))}
                for p in self.percentiles
            ],
            "histogram": {
                "resolution_ms": spec.resolution * 1e3,
                "buckets": histogram(self.latencies_ns, spec.resolution),
            },
        }

    def to_json_text(self) -> str:
        return json.dumps(self.to_json(), indent=2) + "\n"

    def report(self) -> str:
        """Human-readable summary in fortio's layout (latencies in ms, 3 decimals)."""
        spec = self.spec
        lines: list[str] = []
        asked = "max" if spec.qps == 0 else f"{spec.qps:g}"
        if spec.calls is not None:
            what = f"{spec.calls} calls"
        elif spec.duration:
            what = f"{spec.duration:g}s"
        else:
            what = "until interrupted"
        via = f" via proxy {spec.proxy}" if spec.proxy else ""
        lines.append(f"Target: {spec.method.upper()} {spec.url}{via}")
        lines.append(f"Starting at {asked} qps with {spec.connections} connection(s) "
                     f"[{spec.procs} proc(s)] for {what}")
        lines.append(f"Ended after {self.duration_s:.3f}s : {self.requests} calls. "
                     f"qps={self.qps:.2f}")
        lat = self.latency_ms
        if lat:
            lines.append(f"Latency (ms) : count {self.requests} avg {lat['avg']:.3f} "
                         f"+/- {lat['stddev']:.3f} min {lat['min']:.3f} max {lat['max']:.3f}")
            lines.append("# range (ms), mid point, percentile, count")
            for b in histogram(self.latencies_ns, spec.resolution):
                mid = (b["start_ms"] + b["end_ms"]) / 2
                lines.append(f">= {b['start_ms']:.3f} <= "
                             f"{b['end_ms']:.3f} , {mid:.3f} , {b['percent']:.2f}, "
                             f"{b['count']}")
            for p in self.percentiles:
                lines.append(f"# target {p:g}% {lat[percentile_key(p)]:.3f}")
        if self.error_kinds:
            kinds = ", ".join(f"{k}: {v}" for k, v in sorted(self.error_kinds.items()))
            lines.append(f"Error cases : {self.errors} ({kinds})")
        else:
            lines.append("Error cases : no data")
        lines.append(f"Sockets used: {self.sockets} (for perfect keepalive, would be "
                     f"{spec.connections})")
        for code, count in sorted(self.codes.items()):
            share = 100.0 * count / self.requests if self.requests else 0.0
            lines.append(f"Code {code:3d} : {count} ({share:.1f} %)")
        avg = f"{lat['avg']:.3f} ms avg" if lat else "no latency"
        lines.append(f"All done {self.requests} calls (plus 0 warmup) {avg}, "
                     f"{self.qps:.1f} qps")
        return "\n".join(lines) + "\n"
