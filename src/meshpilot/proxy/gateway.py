"""A gateway: Envoy on its own (no app), selected by Gateway resources through its labels.

Gateway servers name privileged ports (80, 443); `port_map` says where Envoy actually
binds them (8080, 8443), as Istio's ingress gateway does, so no root is needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..xds.types import AccessLogEncoding, ProxyInfo, XdsMode
from .ports import free_port
from .registration import ANNOTATION_PREFIX
from .supervisor import ProxyRun, default_state_dir, identity_annotations, run_proxy

DEFAULT_PORT_MAP = "80:8080,443:8443"


def _port(text: str, entry: str) -> int:
    text = text.strip()
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"bad --port-map entry {entry!r}: {text!r} is not a port (1..65535)")
    return int(text)


def parse_port_map(text: str | None) -> dict[int, int]:
    """`80:8080,443:8443` -> {80: 8080, 443: 8443}; a bare `9090` maps to itself."""
    result: dict[int, int] = {}
    bound: dict[int, int] = {}
    for entry in (text or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        parts = entry.split(":")
        if len(parts) > 2:
            raise ValueError(f"bad --port-map entry {entry!r}: want GATEWAY_PORT:BIND_PORT "
                             "(e.g. 80:8080)")
        gateway_port = _port(parts[0], entry)
        bind_port = _port(parts[-1], entry)
        if gateway_port in result:
            raise ValueError(f"bad --port-map: port {gateway_port} is mapped twice")
        if bind_port in bound:
            raise ValueError(f"bad --port-map: ports {bound[bind_port]} and {gateway_port} "
                             f"both bind {bind_port}")
        result[gateway_port] = bind_port
        bound[bind_port] = gateway_port
    return result


@dataclass
class GatewayOptions:
    name: str
    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    port_map: Mapping[int, int] = field(default_factory=lambda: parse_port_map(DEFAULT_PORT_MAP))
    admin_port: int | None = None  # None: a free port
    address: str = "127.0.0.1"
    xds_mode: XdsMode = "delta"
    xds_address: str | None = None
    envoy: str | None = None
    state_dir: Path | None = None
    server: str | None = None
    concurrency: int = 2
    log_level: str = "info"
    ready_timeout: float = 30.0
    access_log_encoding: AccessLogEncoding = "TEXT"  # Istio's meshConfig accessLogEncoding
    workload: str | None = None  # Istio's WORKLOAD_NAME (a Deployment); None: the name


def gateway_run(opts: GatewayOptions) -> ProxyRun:
    admin = opts.admin_port or free_port()
    if admin in opts.port_map.values():
        raise ValueError(f"--admin-port {admin} is also a --port-map bind port")
    info = ProxyInfo(name=opts.name, namespace=opts.namespace, kind="gateway",
                     labels=dict(opts.labels), address=opts.address, outbound_port=None,
                     port_map=dict(opts.port_map), xds_mode=opts.xds_mode,
                     access_log_encoding=opts.access_log_encoding,
                     workload_name=opts.workload or None)
    mapping = ",".join(f"{k}:{v}" for k, v in sorted(opts.port_map.items()))
    return ProxyRun(
        info=info, admin_port=admin, state_dir=opts.state_dir or default_state_dir(),
        server=opts.server, envoy=opts.envoy, concurrency=opts.concurrency,
        log_level=opts.log_level, xds_address=opts.xds_address,
        ready_timeout=opts.ready_timeout,
        we_ports={f"port-{k}": v for k, v in sorted(opts.port_map.items())},
        annotations={ANNOTATION_PREFIX + "port-map": mapping, **identity_annotations(info)},
    )


def run_gateway(opts: GatewayOptions) -> int:
    run = gateway_run(opts)
    info = run.info

    def ready_line() -> str:
        ports = ", ".join(f"{k}->{info.address}:{v}" for k, v in sorted(info.port_map.items()))
        return (f"gateway {info.id} ready: ports {ports or '(none)'}, "
                f"admin http://127.0.0.1:{run.admin_port}")

    return run_proxy(run, ready_line)
