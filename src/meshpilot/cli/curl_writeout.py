"""curl's `-w/--write-out` for `meshpilot curl`: the same variables, printed the same way.

The seed measures with it (`-w "Total time: %{time_total}s\\n"`, `-w "HTTP Code:
%{http_code}\\n"`), and scripts parse its output, so formats follow curl's exactly:
times in seconds with six decimals, `http_code` as three digits (`000` when no response
came), sizes as integers. Escapes are curl's: `\\n`, `\\r`, `\\t`, and `%%` for a percent
sign; an unknown `%{variable}` prints nothing and warns, as curl does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class Transfer:
    """What one request did, as curl's write-out variables see it."""

    url_effective: str = ""
    method: str = "GET"
    scheme: str = "http"
    http_code: int = 0
    http_version: str = ""  # "1.1"; empty until a response arrived
    headers: list[tuple[str, str]] = field(default_factory=list)  # response headers
    content_type: str = ""
    remote_ip: str = ""
    remote_port: int = 0
    local_ip: str = ""
    local_port: int = 0
    time_namelookup: float = 0.0
    time_connect: float = 0.0
    time_appconnect: float = 0.0
    time_pretransfer: float = 0.0
    time_starttransfer: float = 0.0
    time_total: float = 0.0
    size_download: int = 0
    size_header: int = 0
    size_request: int = 0
    size_upload: int = 0
    num_connects: int = 0
    ssl_verify_result: int = 0
    exitcode: int = 0
    errormsg: str = ""

    def header(self, name: str) -> str | None:
        """A response header's value (several values joined with ', ', as curl does)."""
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        return ", ".join(values) if values else None

    @property
    def speed_download(self) -> int:
        return int(self.size_download / self.time_total) if self.time_total > 0 else 0

    @property
    def speed_upload(self) -> int:
        return int(self.size_upload / self.time_total) if self.time_total > 0 else 0


def _time(name: str) -> Callable[[Transfer], str]:
    return lambda t: f"{getattr(t, name):.6f}"


def _int(name: str) -> Callable[[Transfer], str]:
    return lambda t: str(int(getattr(t, name)))


def _text(name: str) -> Callable[[Transfer], str]:
    return lambda t: str(getattr(t, name))


VARIABLES: dict[str, Callable[[Transfer], str]] = {
    "http_code": lambda t: f"{t.http_code:03d}",
    "response_code": lambda t: f"{t.http_code:03d}",
    "http_version": lambda t: t.http_version or "0",
    "method": _text("method"),
    "scheme": _text("scheme"),
    "url_effective": _text("url_effective"),
    "url": _text("url_effective"),
    "content_type": _text("content_type"),
    "remote_ip": _text("remote_ip"),
    "remote_port": lambda t: str(t.remote_port) if t.remote_port else "",
    "local_ip": _text("local_ip"),
    "local_port": lambda t: str(t.local_port) if t.local_port else "",
    "num_connects": _int("num_connects"),
    "num_redirects": lambda t: "0",
    "redirect_url": lambda t: "",
    "ssl_verify_result": _int("ssl_verify_result"),
    "exitcode": _int("exitcode"),
    "errormsg": _text("errormsg"),
    "speed_download": _int("speed_download"),
    "speed_upload": _int("speed_upload"),
    **{name: _time(name) for name in (
        "time_namelookup", "time_connect", "time_appconnect", "time_pretransfer",
        "time_starttransfer", "time_total")},
    "time_redirect": lambda t: f"{0.0:.6f}",
    **{name: _int(name) for name in (
        "size_download", "size_header", "size_request", "size_upload")},
}


def as_json(t: Transfer) -> str:
    """`%{json}`: every variable in one JSON object (numbers as numbers, as curl's)."""
    out: dict[str, object] = {}
    for name, fn in sorted(VARIABLES.items()):
        text = fn(t)
        if name.startswith(("time_", "speed_", "size_", "num_")) or name in (
                "http_code", "response_code", "exitcode", "ssl_verify_result"):
            out[name] = float(text) if name.startswith("time_") else int(text or 0)
        elif name in ("remote_port", "local_port"):
            out[name] = int(text) if text else 0
        else:
            out[name] = text
    return json.dumps(out)


_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def render(fmt: str, t: Transfer, warn: Callable[[str], None] | None = None) -> str:
    """Expand a write-out format as curl does. `warn` gets one message per unknown
    variable (curl: `curl: unknown --write-out variable: 'x'`)."""
    out: list[str] = []
    i, n = 0, len(fmt)
    while i < n:
        c = fmt[i]
        if c == "\\" and i + 1 < n and fmt[i + 1] in _ESCAPES:
            out.append(_ESCAPES[fmt[i + 1]])
            i += 2
        elif c == "%" and fmt.startswith("%%", i):
            out.append("%")
            i += 2
        elif c == "%" and fmt.startswith("%{", i) and (end := fmt.find("}", i + 2)) != -1:
            name = fmt[i + 2:end]
            if name == "json":
                out.append(as_json(t))
            elif name in VARIABLES:
                out.append(VARIABLES[name](t))
            elif warn is not None:
                warn(f"unknown --write-out variable: '{name}'")
            i = end + 1
        elif c == "%" and fmt.startswith("%header{", i) and (end := fmt.find("}", i + 8)) != -1:
            out.append(t.header(fmt[i + 8:end]) or "")
            i = end + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)
