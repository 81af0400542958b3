"""Canary webhooks against a real HTTP server on 127.0.0.1: Flagger's payload, its
200..202 rule, timeouts, concurrency and the order of results."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from meshpilot.api.canary import CanaryWebhook
from meshpilot.proxy.ports import free_port
from meshpilot.rollout.webhooks import HookResult, call_hooks


def hook(name: str, url: str, type_: str = "rollout", **more: Any) -> CanaryWebhook:
    return CanaryWebhook.model_validate({"name": name, "type": type_, "url": url, **more})


@dataclass
class Received:
    path: str
    content_type: str
    body: Any
    at: float


@dataclass
class Hooks:
    """The server's view: what arrived, and a barrier for the concurrency test."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    expected: int = 0


RECEIVER = web.AppKey("hooks", Hooks)


async def _handler(request: web.Request) -> web.StreamResponse:
    hooks = request.app[RECEIVER]
    hooks.received.append(Received(request.path, request.content_type,
                                   json.loads(await request.read()), time.monotonic()))
    what = request.match_info["what"]
    if what == "slow":
        await asyncio.sleep(5)
    if what.startswith("together"):
        # Answer only once every expected hook has arrived: passes only if they are
        # called concurrently (sequential calls would each time out here).
        if len(hooks.received) >= hooks.expected:
            hooks.arrived.set()
        await asyncio.wait_for(hooks.arrived.wait(), 2)
        # ...and answer in reverse order of the names, to check the result order.
        await asyncio.sleep(0.3 - 0.1 * int(what.removeprefix("together")))
        return web.Response(text=f"done {what}")
    if what == "redirect":
        raise web.HTTPFound("/elsewhere")
    if what == "big":
        return web.Response(text="x" * 100_000)
    status = int(what) if what.isdigit() else 200
    text = {500: "boom: disk full", 203: "non-authoritative", 202: "accepted"}.get(status, "")
    return web.Response(status=status, text=text)


@asynccontextmanager
async def server() -> AsyncIterator[Hooks]:
    app = web.Application()
    hooks = Hooks()
    app[RECEIVER] = hooks
    app.router.add_post("/{what}", _handler)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    hooks.url = str(srv.make_url("")).rstrip("/")
    try:
        yield hooks
    finally:
        await srv.close()


def call(hooks: list[CanaryWebhook], hook_type: str = "rollout",
         **kw: Any) -> list[HookResult]:
    args = {"name": "sample-app", "namespace": "traffic-demo", "phase": "Progressing",
            "checksum": "abc123", **kw}
    return asyncio.run(call_hooks(hooks, hook_type, **args))


def test_payload_is_flaggers() -> None:
    async def main() -> tuple[list[HookResult], list[Received], str]:
        async with server() as s:
            results = await call_hooks(
                [hook("load", f"{s.url}/200", metadata={"cmd": "hey -z 1m", "type": "cmd"})],
                "rollout", name="sample-app", namespace="traffic-demo", phase="Progressing",
                checksum="abc123", metadata_extra={"type": "override", "eventMessage": "hi"})
            return results, s.received, s.url

    [result], [received], url = asyncio.run(main())
    assert received.path == "/200" and received.content_type == "application/json"
    assert received.body == {
        "name": "sample-app", "namespace": "traffic-demo", "phase": "Progressing",
        "checksum": "abc123",
        # the hook's own metadata, with the caller's extra merged over it
        "metadata": {"cmd": "hey -z 1m", "type": "override", "eventMessage": "hi"},
    }
    assert (result.name, result.type, result.ok, result.status) == ("load", "rollout", True, 200)
    assert result.message == f"POST {url}/200: 200"


def test_status_rule_and_failure_messages() -> None:
    async def main() -> tuple[list[HookResult], float]:
        async with server() as s:
            u = s.url
            started = time.monotonic()
            results = await call_hooks([
                hook("ok", f"{u}/200"),
                hook("accepted", f"{u}/202"),
                hook("non-authoritative", f"{u}/203"),
                hook("no-content", f"{u}/204"),
                hook("boom", f"{u}/500"),
                hook("halt", f"{u}/403"),
                hook("slow", f"{u}/slow", timeout="300ms"),
                hook("redirect", f"{u}/redirect"),
                hook("big", f"{u}/big"),
                hook("refused", f"http://127.0.0.1:{free_port()}/"),
            ], "rollout", name="n", namespace="ns", phase="Progressing", checksum="c")
            return results, time.monotonic() - started

    results, elapsed = asyncio.run(main())
    by = {r.name: r for r in results}
    assert [(r.name, r.ok, r.status) for r in results] == [
        ("ok", True, 200), ("accepted", True, 202), ("non-authoritative", False, 203),
        ("no-content", False, 204), ("boom", False, 500), ("halt", False, 403),
        ("slow", False, None), ("redirect", False, 302), ("big", True, 200),
        ("refused", False, None)]
    assert by["accepted"].message.endswith("/202: 202: accepted")
    assert by["boom"].message.endswith("/500: 500: boom: disk full")
    assert by["halt"].message.endswith("/403: 403 (empty body)")
    assert by["slow"].message.endswith("/slow: timed out after 0.3s")
    assert "redirect to /elsewhere not followed" in by["redirect"].message
    assert by["big"].message.endswith("x" * 200 + "...")  # an excerpt, not 100 kB
    assert "ClientConnectorError" in by["refused"].message
    assert all(r.type == "rollout" for r in results)
    assert elapsed < 2  # the slow one is cut at its timeout; the others do not wait for it


def test_only_hooks_of_the_type_are_called() -> None:
    async def main() -> tuple[list[HookResult], list[HookResult], list[Received]]:
        async with server() as s:
            hooks = [hook("gate", f"{s.url}/200", "confirm-promotion"),
                     # type omitted: a rollout hook, as in Flagger
                     CanaryWebhook.model_validate({"name": "load", "url": f"{s.url}/202"}),
                     hook("notify", f"{s.url}/201", "event")]
            rollout = await call_hooks(hooks, "rollout", name="n", namespace="ns",
                                       phase="Progressing", checksum="c")
            none = await call_hooks(hooks, "rollback", name="n", namespace="ns",
                                    phase="Progressing", checksum="c")
            return rollout, none, s.received

    rollout, none, received = asyncio.run(main())
    assert [(r.name, r.type, r.ok) for r in rollout] == [("load", "rollout", True)]
    assert none == []  # no hook of that type: nothing called, nothing to report
    assert [r.path for r in received] == ["/202"]


def test_hooks_run_concurrently_and_results_keep_declaration_order() -> None:
    async def main() -> tuple[list[HookResult], list[Received]]:
        async with server() as s:
            s.expected = 3
            hooks = [hook(f"h{i}", f"{s.url}/together{i}", timeout="3s") for i in range(3)]
            return await call_hooks(hooks, "rollout", name="n", namespace="ns",
                                    phase="Progressing", checksum="c"), s.received

    results, received = asyncio.run(main())
    assert [(r.name, r.ok) for r in results] == [("h0", True), ("h1", True), ("h2", True)]
    assert [r.message.rsplit(": ", 1)[-1] for r in results] == [
        "done together0", "done together1", "done together2"]
    # All three were in flight at once (the server's barrier needed all of them).
    assert max(r.at for r in received) - min(r.at for r in received) < 1


def test_no_hooks() -> None:
    assert call([]) == []
