"""`meshpilot demo-app`: the seed's sample-app images (nginx v1/v2) as one small aiohttp server.

Every answer names the service, version and instance, in the body and in headers
(`x-version`, `Server`), so traffic-split, header-routing and load-balancing tests can
count who answered. `/status/<code>` and `/delay/<ms>` give fault and timeout tests a
misbehaving upstream on demand; `/echo` shows what the proxy forwarded; `/count` says
how many requests reached this instance (by path), so retry and mirror tests can count
attempts. `--status CODE` makes every other path answer CODE (an unhealthy instance for
outlier-detection tests); `--delay-ms MS` makes every answer that much slower (a slow
version for canary latency checks).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from dataclasses import dataclass

from aiohttp import web

SERVER_HEADERS = {"v1": "nginx/1.21", "v2": "nginx/1.22"}
MAX_DELAY_MS = 120_000
_NO_BODY = {204, 304}


@dataclass(frozen=True)
class DemoConfig:
    port: int = 8081
    version: str = "v1"
    service: str = "sample-app"
    instance: str | None = None
    server_header: str | None = None
    host: str = "127.0.0.1"
    status: int = 200  # what plain paths answer: 5xx makes a failing instance
    delay_ms: int = 0  # added to every answer but /count: a slow instance (latency checks)

    @property
    def instance_name(self) -> str:
        return self.instance or f"{self.service}-{self.version}-1"

    @property
    def server(self) -> str:
        return self.server_header or SERVER_HEADERS.get(self.version, "nginx/1.21")

    @property
    def banner(self) -> str:
        return f"{self.service} {self.version} ({self.instance_name})"


def _int_tail(path: str, prefix: str) -> int | None:
    tail = path[len(prefix):].strip("/")
    return int(tail) if tail.isdigit() else None


def make_handler(cfg: DemoConfig):
    """One handler for every path: cheaper than a router, and every path must answer."""
    headers = {"Server": cfg.server, "x-version": cfg.version, "x-instance": cfg.instance_name}
    text = cfg.banner + "\n"
    counts: dict[str, int] = {}

    async def handle(request: web.BaseRequest) -> web.Response:
        path = request.path
        if path == "/count":
            payload = {"instance": cfg.instance_name, "requests": sum(counts.values()),
                       "paths": counts}
            return web.Response(text=json.dumps(payload) + "\n",
                                content_type="application/json", headers=headers)
        counts[path] = counts.get(path, 0) + 1
        if cfg.delay_ms:
            await asyncio.sleep(cfg.delay_ms / 1000)
        if path == "/echo" or path.startswith("/echo/"):
            body = await request.read()
            payload = {
                "service": cfg.service, "version": cfg.version, "instance": cfg.instance_name,
                "method": request.method, "path": request.path_qs,
                "headers": {k: v for k, v in request.headers.items()},
                "body": body.decode(errors="replace"),
            }
            return web.Response(text=json.dumps(payload, indent=1) + "\n",
                                content_type="application/json", headers=headers)
        if path.startswith("/status/"):
            code = _int_tail(path, "/status/")
            if code is None or not 200 <= code <= 599:
                return web.Response(status=400, text="want /status/<200..599>\n",
                                    headers=headers)
            if code in _NO_BODY:
                return web.Response(status=code, headers=headers)
            return web.Response(status=code, text=f"{code} from {cfg.banner}\n",
                                headers=headers)
        if path.startswith("/delay/"):
            ms = _int_tail(path, "/delay/")
            if ms is None:
                return web.Response(status=400, text="want /delay/<milliseconds>\n",
                                    headers=headers)
            await asyncio.sleep(min(ms, MAX_DELAY_MS) / 1000)
        if cfg.status != 200:
            return web.Response(status=cfg.status, text=f"{cfg.status} from {cfg.banner}\n",
                                headers=headers)
        return web.Response(text=text, headers=headers)

    return handle


async def serve(cfg: DemoConfig, stop: asyncio.Event, announce: bool = True) -> int:
    """Serve until `stop` is set; returns the bound port (useful with port 0)."""
    server = web.Server(make_handler(cfg), access_log=None)
    runner = web.ServerRunner(server, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, cfg.host, cfg.port, reuse_address=True)
    try:
        await site.start()
    except OSError as e:
        await runner.cleanup()
        raise SystemExit(f"error: demo-app cannot listen on {cfg.host}:{cfg.port}: {e}") from e
    sockets = site._server.sockets if site._server else []
    port = sockets[0].getsockname()[1] if sockets else cfg.port
    if announce:
        print(f"demo-app {cfg.banner} listening on http://{cfg.host}:{port} "
              f"(Server: {cfg.server})", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return port


async def _main(cfg: DemoConfig) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(cfg, stop)
    return 0


def run(cfg: DemoConfig) -> int:
    try:
        return asyncio.run(_main(cfg))
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 1


def default_port() -> int:
    """Under a sidecar, the app port comes from MESHPILOT_APP_PORT."""
    value = os.environ.get("MESHPILOT_APP_PORT", "")
    return int(value) if value.isdigit() else 8081
