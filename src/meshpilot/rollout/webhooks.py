"""Canary webhooks: Flagger's gates, tests and notifications, with Flagger's payload.

A hook is an HTTP POST of `{"name", "namespace", "phase", "checksum", "metadata"}` to the
hook's URL, so Flagger's loadtester, its `/gate/approve` / `/gate/halt` endpoints and any
hook written for Flagger work unchanged. As in Flagger a status of 200..202 passes and
anything else (203 included), a connection error or the timeout fails. What a failure
means (hold a gate, count a failed check, roll back now) is the controller's business;
this module only calls and reports, with the status and an excerpt of the response body
in the message so `meshpilot canary get` can show why a gate stayed closed.

Hooks of one type are called concurrently (a slow load-test starter does not delay a
notification) and each once: no retries, since the controller calls the hooks again on
its next tick anyway. Redirects are not followed: a POST that a redirect would turn into
a GET elsewhere is not what the user configured, so a 3xx fails and says where it points.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from .analysis import duration_seconds, excerpt, format_number, read_limited

if TYPE_CHECKING:
    from meshpilot.api.canary import CanaryWebhook

HOOK_TYPES = (
    "pre-rollout", "rollout", "confirm-rollout", "confirm-traffic-increase",
    "confirm-promotion", "post-rollout", "rollback", "event",
)
DEFAULT_TYPE = "rollout"  # Flagger: a hook without a type is a rollout hook
DEFAULT_TIMEOUT = 10.0  # seconds, for a hook without a timeout
READ_LIMIT = 4096  # bytes of a response body read for the message


@dataclass(frozen=True)
class HookResult:
    """The outcome of one call: `ok` is Flagger's "status <= 202" (and >= 200)."""

    name: str
    type: str
    ok: bool
    status: int | None  # None when no response arrived (timeout, connection refused)
    message: str


def type_of(hook: CanaryWebhook) -> str:
    """The hook's type, Flagger's default (`rollout`) when unset."""
    return getattr(hook, "type", None) or DEFAULT_TYPE


def payload(hook: CanaryWebhook, *, name: str, namespace: str, phase: str, checksum: str,
            metadata_extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Flagger's CanaryWebhookPayload. `metadata_extra` (e.g. an event's message) is
    merged over the hook's own metadata, as Flagger's event hooks do."""
    metadata = dict(getattr(hook, "metadata", None) or {})
    metadata.update(metadata_extra or {})
    return {"name": name, "namespace": namespace, "phase": phase, "checksum": checksum,
            "metadata": metadata}


async def _call(session: aiohttp.ClientSession, hook: CanaryWebhook,
                body: dict[str, Any]) -> HookResult:
    kind, url = type_of(hook), str(hook.url)
    timeout = duration_seconds(getattr(hook, "timeout", None), DEFAULT_TIMEOUT)

    def result(ok: bool, status: int | None, message: str) -> HookResult:
        return HookResult(hook.name, kind, ok, status, message)

    try:
        async with session.post(url, json=body, allow_redirects=False,
                                timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
            raw = (await read_limited(resp, READ_LIMIT))[:READ_LIMIT]
            text = excerpt(raw.decode("utf-8", errors="replace"))
            status = resp.status
            where = resp.headers.get("Location") if 300 <= status <= 399 else None
    except TimeoutError:
        return result(False, None, f"POST {url}: timed out after {format_number(timeout)}s")
    except aiohttp.ClientError as e:
        return result(False, None, f"POST {url}: {type(e).__name__}: {e}")
    ok = 200 <= status <= 202
    message = f"POST {url}: {status}"
    if where:
        message += f", redirect to {where} not followed"
    if text:
        message += f": {text}"
    elif not ok:
        message += " (empty body)"
    return result(ok, status, message)


async def call_hooks(hooks: Sequence[CanaryWebhook], hook_type: str, *, name: str,
                     namespace: str, phase: str, checksum: str,
                     metadata_extra: dict | None = None) -> list[HookResult]:
    """Call every hook of `hook_type` once, concurrently; results in declaration order.

    `name`/`namespace` are the Canary's, `phase` its current phase, `checksum` the caller's
    fingerprint of the rollout (Flagger's: the spec being rolled out), so a hook can tell
    two rollouts apart. No hooks of that type: an empty list (a gate with no hook is open).
    """
    chosen = [h for h in hooks if type_of(h) == hook_type]
    if not chosen:
        return []
    # trust_env=False (the default): hooks go where the Canary says, not via a proxy.
    async with aiohttp.ClientSession() as session:
        return list(await asyncio.gather(*(
            _call(session, h, payload(h, name=name, namespace=namespace, phase=phase,
                                      checksum=checksum, metadata_extra=metadata_extra))
            for h in chosen)))
