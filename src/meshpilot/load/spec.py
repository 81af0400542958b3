"""What a load run should do (`LoadSpec`) and the target it resolves to.

The spec mirrors `meshpilot load`'s flags so benchmarks can drive the same engine from
Python; `Target` is the pre-computed form the hot loop needs (address to connect to and
the exact request bytes), built once so no per-request formatting happens.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from .http1 import build_request

DEFAULT_PERCENTILES: tuple[float, ...] = (50.0, 75.0, 90.0, 99.0, 99.9)

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class UsageError(ValueError):
    """Bad flags or spec: the CLI maps it to exit code 1 before any traffic is sent."""


def parse_duration(text: str) -> float:
    """Parse a Go-style duration ("5s", "1m30s", "250ms") or bare seconds into seconds.

    fortio users type Go durations, so we accept them verbatim; a bare number is taken as
    seconds because that is the obvious reading.
    """
    s = text.strip()
    try:
        value = float(s)
    except ValueError:
        pass
    else:
        if value < 0:
            raise UsageError(f"negative duration {text!r}")
        return value
    pos, total = 0, 0.0
    for m in _DURATION_PART.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s:
        raise UsageError(f"invalid duration {text!r} (examples: 5s, 500ms, 1m30s)")
    return total


def parse_header(text: str) -> tuple[str, str]:
    """Split a `-H 'Name: value'` flag; a header without a colon is a usage error."""
    name, sep, value = text.partition(":")
    name = name.strip()
    if not sep or not name or any(c in name for c in " \t\r\n") or "\n" in value:
        raise UsageError(f"invalid header {text!r} (expected 'Name: value')")
    return name, value.strip()


@dataclass
class LoadSpec:
    """A load run, field for field the `meshpilot load` flags.

    `qps=0` means as fast as possible; `calls` (fortio's `-n`) wins over `duration`;
    `duration=None` with `calls=None` runs until SIGINT (fortio's `-t 0`).
    """

    url: str
    connections: int = 8
    qps: float = 8.0
    duration: float | None = 5.0
    calls: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    method: str = "GET"
    proxy: str | None = None
    procs: int = 1
    timeout: float = 10.0
    percentiles: tuple[float, ...] = DEFAULT_PERCENTILES
    resolution: float = 0.0001
    payload: bytes = b""

    def validate(self) -> None:
        """Reject impossible combinations early, with a message a CLI user can act on."""
        if self.connections < 1:
            raise UsageError("-c must be at least 1")
        if self.qps < 0:
            raise UsageError("-qps must be >= 0 (0 means as fast as possible)")
        if self.calls is not None and self.calls < 1:
            raise UsageError("-n must be at least 1")
        if self.duration is not None and self.duration < 0:
            raise UsageError("-t must be >= 0")
        if self.procs < 1:
            raise UsageError("--procs must be at least 1")
        if self.procs > self.connections:
            raise UsageError(f"--procs {self.procs} needs at least as many connections "
                             f"(-c {self.connections})")
        if self.timeout <= 0:
            raise UsageError("--timeout must be > 0")
        if self.resolution <= 0:
            raise UsageError("-r must be > 0")
        for p in self.percentiles:
            if not 0 <= p <= 100:
                raise UsageError(f"percentile {p:g} is outside 0..100")
        if not re.fullmatch(r"[A-Za-z]+", self.method):
            raise UsageError(f"invalid method {self.method!r}")
        Target.from_spec(self)


def _host_port(text: str, what: str) -> tuple[str, int, str]:
    """Split an http:// URL (scheme optional, like fortio) into host, port and target path."""
    if "://" not in text:
        text = "http://" + text
    parts = urlsplit(text)
    if parts.scheme.lower() != "http":
        raise UsageError(f"{what} {text!r}: only http:// is supported")
    if not parts.hostname:
        raise UsageError(f"{what} {text!r} has no host")
    try:
        port = parts.port or 80
    except ValueError as e:
        raise UsageError(f"{what} {text!r}: {e}") from None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, port, path


@dataclass(frozen=True)
class Target:
    """Where sockets connect (the proxy in -x mode) and the request bytes to send."""

    url: str
    connect_host: str
    connect_port: int
    request: bytes
    head: bool

    @classmethod
    def from_spec(cls, spec: LoadSpec) -> Target:
        host, port, path = _host_port(spec.url, "URL")
        url = spec.url if "://" in spec.url else "http://" + spec.url
        bracketed = f"[{host}]" if ":" in host else host
        authority = bracketed if port == 80 else f"{bracketed}:{port}"
        if spec.proxy:
            # Explicit HTTP proxy: absolute-form request-target (RFC 9112 §3.2.2), Host
            # from the URL; the socket goes to the proxy.
            chost, cport, _ = _host_port(spec.proxy, "proxy")
            request_target = f"http://{authority}{path}"
        else:
            chost, cport, request_target = host, port, path
        request = build_request(spec.method.upper(), request_target, authority,
                                spec.headers, spec.payload)
        return cls(url, chost, cport, request, spec.method.upper() == "HEAD")
