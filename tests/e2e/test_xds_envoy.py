"""The xDS server driving a real Envoy (delta and SotW): traffic, pushes, NACKs, restarts.

Each test run starts one Envoy per mode with a minimal ADS bootstrap written here (the
product bootstrap lives in proxy/bootstrap.py), a hand-written generator, and tiny HTTP
upstreams on loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from meshpilot.proxy.envoy import find_envoy
from meshpilot.proxy.ports import free_port
from meshpilot.xds.hooks import NoopHooks
from meshpilot.xds.server import XdsServer
from meshpilot.xds.types import CLUSTER_TYPE, ROUTE_TYPE, ProxyInfo, ProxyResources
from tests.unit.xds.builders import simple

pytestmark = pytest.mark.e2e


class Upstream:
    """An HTTP server on loopback answering its name."""

    def __init__(self, name: str) -> None:
        body = name.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def bootstrap(proxy: ProxyInfo, xds_port: int, admin_port: int) -> dict:
    return {
        "node": {"id": proxy.id, "cluster": "meshpilot", "metadata": proxy.to_metadata()},
        "admin": {"address": {"socket_address": {"address": "127.0.0.1",
                                                 "port_value": admin_port}}},
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if proxy.xds_mode == "delta" else "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [{"envoy_grpc": {
                    "cluster_name": "xds_cluster",
                    "retry_policy": {"retry_back_off": {"base_interval": "0.1s",
                                                        "max_interval": "1s"}}}}],
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"},
        },
        "static_resources": {"clusters": [{
            "name": "xds_cluster", "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": "xds_cluster", "endpoints": [{"lb_endpoints": [
                {"endpoint": {"address": {"socket_address": {
                    "address": "127.0.0.1", "port_value": xds_port}}}}]}]},
            "typed_extension_protocol_options": {
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                    "@type": "type.googleapis.com/"
                             "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    "explicit_http_config": {"http2_protocol_options": {}}}},
        }]},
    }


class Generator:
    """Hand-written config: whatever `make` returns now."""

    def __init__(self, make: Callable[[], ProxyResources]) -> None:
        self.make = make

    def generate(self, proxy: ProxyInfo) -> ProxyResources:
        return self.make()


class Recorder(NoopHooks):
    def __init__(self) -> None:
        self.responses: list[tuple[float, str, str]] = []
        self.acks: list[tuple[float, str, str]] = []
        self.nacks: list[tuple[str, str]] = []

    def on_response(self, proxy, type_url, version, nonce, resource_names) -> None:
        self.responses.append((time.perf_counter(), type_url, version))

    def on_ack(self, proxy, type_url, version) -> None:
        self.acks.append((time.perf_counter(), type_url, version))

    def on_nack(self, proxy, type_url, version, message) -> None:
        self.nacks.append((type_url, message))

    def ack_latency(self, type_url: str, version: str) -> float:
        sent = next(t for t, u, v in reversed(self.responses) if u == type_url and v == version)
        acked = next(t for t, u, v in self.acks if u == type_url and v == version)
        return acked - sent


def get(port: int) -> tuple[int, str, str]:
    """(status, body, x-cfg header); status 0 if the connection failed."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
            return r.status, r.read().decode(), r.headers.get("x-cfg", "")
    except urllib.error.HTTPError as e:
        return e.code, "", ""
    except OSError:
        return 0, "", ""


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if await asyncio.to_thread(check):
            return time.monotonic() - start
        await asyncio.sleep(0.02)
    raise AssertionError(f"not within {timeout}s: {what}")


class Load:
    """Requests in a loop on a thread; every status code is kept."""

    def __init__(self, port: int) -> None:
        self.port, self.codes, self._stop = port, [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.codes.append(get(self.port)[0])

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.parametrize("mode", ["delta", "sotw"])
def test_envoy_follows_the_xds_server(mode: str, tmp_path: Path) -> None:
    asyncio.run(asyncio.wait_for(_scenario(mode, tmp_path), 60))


async def _scenario(mode: str, tmp_path: Path) -> None:
    v1, v2, v3 = Upstream("v1"), Upstream("v2"), Upstream("v3")
    listen, admin = free_port(), free_port()
    proxy = ProxyInfo(name="e2e", namespace="test", xds_mode=mode)  # type: ignore[arg-type]
    config = {"clusters": {"v1": v1.port}, "route_to": "v1", "header": "g1"}

    def make() -> ProxyResources:
        return simple(listen_port=listen, **config)  # type: ignore[arg-type]

    hooks = Recorder()
    server = XdsServer(Generator(make), hooks=hooks)
    xds_port = await server.start(port=0)
    boot = tmp_path / "bootstrap.json"
    boot.write_text(json.dumps(bootstrap(proxy, xds_port, admin)))
    log_path = tmp_path / "envoy.log"
    envoy = subprocess.Popen(
        [str(find_envoy()), "-c", str(boot), "--concurrency", "1", "--disable-hot-restart",
         "--log-level", "warn"],
        stdout=log_path.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    server2: XdsServer | None = None
    try:
        # 1. not ready: the stream is accepted, nothing is sent
        await eventually(lambda: bool(server.status()), 10, "Envoy connects")
        await asyncio.sleep(0.3)
        assert hooks.responses == []
        assert get(listen)[0] == 0
        st = server.status()[0]
        assert st.id == "e2e.test" and st.mode == mode and st.connected
        assert all(t.state == "NOT SENT" for t in st.types.values())

        # 2. ready: traffic flows
        server.set_ready()
        took = await eventually(lambda: get(listen) == (200, "v1", "g1"), 5, "traffic on g1")
        print(f"[{mode}] ready -> first request served: {took * 1000:.0f} ms")
        await eventually(lambda: all(t.state == "SYNCED" for t in server.status()[0].types
                                     .values()), 2, "all types SYNCED")

        # 3. a route change: new upstream and header
        config.update(clusters={"v1": v1.port, "v2": v2.port}, route_to="v2", header="g2")
        server.push("test")
        await eventually(lambda: get(listen) == (200, "v2", "g2"), 5, "traffic on g2")
        rds = server.status()[0].types[ROUTE_TYPE]
        print(f"[{mode}] RDS push -> ACK: "
              f"{hooks.ack_latency(ROUTE_TYPE, rds.acked_version) * 1000:.2f} ms")

        # 4. a changed cluster definition: its EDS is resent, so no 15 s warming
        config.update(timeout_ms=300)
        t0 = time.monotonic()
        server.push("cluster")
        await eventually(lambda: server.status()[0].types[CLUSTER_TYPE].state == "SYNCED",
                         3, "CDS ACKed quickly after a cluster change")
        print(f"[{mode}] cluster change ACKed in {(time.monotonic() - t0) * 1000:.1f} ms")

        # 5. make before break under load: v2 -> v3, v1 and v2 removed
        with Load(listen) as load:
            await asyncio.sleep(0.2)
            config.update(clusters={"v3": v3.port}, route_to="v3", header="g3")
            server.push("switch")
            await eventually(lambda: get(listen) == (200, "v3", "g3"), 5, "traffic on g3")
            await eventually(lambda: all(t.state == "SYNCED" for t in server.status()[0].types
                                         .values()), 3, "SYNCED after the switch")
            await asyncio.sleep(0.3)
        assert load.codes and set(load.codes) == {200}, \
            f"{len([c for c in load.codes if c != 200])} failures of {len(load.codes)}"
        print(f"[{mode}] switch under load: {len(load.codes)} requests, all 200")
        cds = server.status()[0].types[CLUSTER_TYPE]
        assert cds.resources == 1  # the old clusters are gone now

        # 6. an invalid push is NACKed, surfaced, and the old config keeps serving
        config.update(route_to="v3", header="bad", bad_regex=True)
        server.push("bad")
        await eventually(lambda: server.status()[0].types[ROUTE_TYPE].state == "NACKED", 5,
                         "RDS NACKed")
        nack = server.status()[0].types[ROUTE_TYPE].nack
        assert nack is not None and nack.message
        assert hooks.nacks and hooks.nacks[-1][0] == ROUTE_TYPE
        print(f"[{mode}] NACK: {nack.message[:120]}")
        for _ in range(20):
            assert get(listen) == (200, "v3", "g3")
        config.update(bad_regex=False, header="g4")
        server.push("fix")
        await eventually(lambda: get(listen) == (200, "v3", "g4"), 5, "fixed config served")

        # 7. control plane stops: Envoy keeps serving; a new one on the same port resyncs.
        # Meanwhile the route moves to v2; delta also drops v3 (its reconnect says what
        # Envoy holds, so v3 is kept until the new route is ACKed; SotW can't tell).
        with Load(listen) as load:
            await server.stop()
            await asyncio.sleep(0.3)
            assert get(listen) == (200, "v3", "g4")
            config.update(clusters={"v2": v2.port} if mode == "delta"
                          else {"v2": v2.port, "v3": v3.port}, route_to="v2", header="g5")
            server2 = XdsServer(Generator(make))
            assert await server2.start(port=xds_port) == xds_port
            t0 = time.monotonic()
            server2.set_ready()
            await eventually(lambda: get(listen) == (200, "v2", "g5"), 5,
                             "resync after restart")
            print(f"[{mode}] restarted control plane -> new config served in "
                  f"{(time.monotonic() - t0) * 1000:.0f} ms")
            await eventually(lambda: all(t.state == "SYNCED" for t in server2.status()[0]
                                         .types.values()), 3, "SYNCED after restart")
            await asyncio.sleep(0.2)
        assert load.codes and set(load.codes) == {200}, \
            f"{len([c for c in load.codes if c != 200])} failures of {len(load.codes)}"
        assert server2.status()[0].types[CLUSTER_TYPE].resources == (1 if mode == "delta"
                                                                     else 2)
    except BaseException:
        print(log_path.read_text()[-4000:])
        raise
    finally:
        if envoy.poll() is None:
            os.killpg(envoy.pid, signal.SIGKILL)
        envoy.wait(10)
        await server.stop()
        if server2 is not None:
            await server2.stop()
        for up in (v1, v2, v3):
            up.close()
