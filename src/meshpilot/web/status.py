"""Kubernetes-style `Status` error bodies, so kubectl-minded clients read our errors."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..api.errors import Issue

REASONS = {
    400: "BadRequest",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    422: "Invalid",
    500: "InternalError",
}


def status_body(code: int, message: str, causes: list[Issue] | None = None,
                reason: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or REASONS.get(code, "Unknown"),
        "code": code,
    }
    if causes:
        body["details"] = {"causes": [c.to_dict() for c in causes]}
    return body


def error(code: int, message: str, causes: list[Issue] | None = None,
          reason: str | None = None) -> web.Response:
    return web.json_response(status_body(code, message, causes, reason), status=code)
