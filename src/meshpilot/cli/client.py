"""A small HTTP client for the control plane's REST API (stdlib only, so commands start fast)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

DEFAULT_SERVER = "http://127.0.0.1:15014"


def server_url(explicit: str | None) -> str:
    """`--server`, else MESHPILOT_SERVER, else the local default."""
    return (explicit or os.environ.get("MESHPILOT_SERVER") or DEFAULT_SERVER).rstrip("/")


class ApiError(Exception):
    """A failed call: the server's Status body, or why the server could not be reached."""

    def __init__(self, code: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("message", f"HTTP {code}"))
        self.code = code
        self.body = body

    @property
    def reason(self) -> str:
        return str(self.body.get("reason") or "")

    @property
    def causes(self) -> list[dict[str, Any]]:
        details = self.body.get("details") or {}
        return list(details.get("causes") or [])


class Client:
    def __init__(self, server: str | None = None, timeout: float = 30.0) -> None:
        self.server = server_url(server)
        self.timeout = timeout

    def _open(self, method: str, path: str, body: Any = None, timeout: float | None = None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = {"message": raw.decode(errors="replace") or str(e)}
            raise ApiError(e.code, payload) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ApiError(0, {
                "message": f"cannot reach the meshpilot control plane at {self.server}: {reason}"
                " (is `meshpilot up` running? set MESHPILOT_SERVER or --server)",
                "reason": "Unavailable",
            }) from None

    def request(self, method: str, path: str, body: Any = None) -> Any:
        with self._open(method, path, body) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def get(self, path: str) -> Any:
        return self.request("GET", path)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def watch(self, path: str) -> Iterator[dict[str, Any]]:
        """Events of a `?watch=true` stream, one JSON object per line, until the server ends it."""
        sep = "&" if "?" in path else "?"
        with self._open("GET", f"{path}{sep}watch=true", timeout=3600 * 24) as resp:
            for line in resp:
                if line.strip():
                    yield json.loads(line)
