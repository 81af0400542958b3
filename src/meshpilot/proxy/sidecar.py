"""A sidecar: Envoy in front of one app process, registered in the mesh as a WorkloadEntry.

Without iptables, traffic capture is explicit: other sidecars reach the app through
Envoy's inbound port, and the app reaches mesh services through Envoy's outbound port,
used as an HTTP proxy (`http_proxy` is set for the app).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..xds.types import AccessLogEncoding, AppProtocol, ProxyInfo, XdsMode
from .ports import free_port, port_is_free
from .registration import ANNOTATION_PREFIX
from .supervisor import ProxyRun, default_state_dir, identity_annotations, run_proxy

DEFAULT_OUTBOUND_PORT = 15001


@dataclass
class SidecarOptions:
    name: str
    namespace: str
    app_port: int
    labels: Mapping[str, str] = field(default_factory=dict)
    inbound_port: int | None = None  # None: a free port
    outbound_port: int | None = None  # None: 15001 if free, else a free port
    admin_port: int | None = None  # None: a free port
    address: str = "127.0.0.1"
    service_account: str | None = None
    xds_mode: XdsMode = "delta"
    xds_address: str | None = None
    envoy: str | None = None
    state_dir: Path | None = None
    server: str | None = None
    concurrency: int = 1
    log_level: str = "info"
    ready_timeout: float = 30.0
    command: Sequence[str] = ()
    app_protocol: AppProtocol = "http"  # tcp: inbound tcp_proxy instead of HTTP routing
    access_log_encoding: AccessLogEncoding = "TEXT"  # Istio's meshConfig accessLogEncoding
    workload: str | None = None  # Istio's WORKLOAD_NAME (a Deployment); None: the name


def app_environment(opts: SidecarOptions, outbound_port: int) -> dict[str, str]:
    """What the app sees: its port, its identity, and the outbound proxy for mesh calls
    (its own port stays direct, so health checks to itself do not loop through Envoy)."""
    proxy = f"http://127.0.0.1:{outbound_port}"
    direct = f"127.0.0.1:{opts.app_port},localhost:{opts.app_port}"
    return {
        "MESHPILOT_APP_PORT": str(opts.app_port),
        "MESHPILOT_NAME": opts.name,
        "MESHPILOT_NAMESPACE": opts.namespace,
        "http_proxy": proxy, "HTTP_PROXY": proxy,
        "no_proxy": direct, "NO_PROXY": direct,
    }


def sidecar_run(opts: SidecarOptions) -> ProxyRun:
    """Resolve default ports and build the supervised run (separate for tests)."""
    inbound = opts.inbound_port or free_port()
    admin = opts.admin_port or free_port()
    outbound = opts.outbound_port
    if outbound is None:
        # 15001 like Istio; with several sidecars on one machine only the first can have it.
        outbound = DEFAULT_OUTBOUND_PORT if port_is_free(DEFAULT_OUTBOUND_PORT) else free_port()
    ports = {"inbound": inbound, "outbound": outbound, "admin": admin, "app": opts.app_port}
    taken: dict[int, str] = {}
    for role, port in ports.items():
        if not 1 <= port <= 65535:
            raise ValueError(f"--{role}-port {port} must be in 1..65535")
        if port in taken:
            raise ValueError(f"--{role}-port and --{taken[port]}-port are both {port}")
        taken[port] = role
    info = ProxyInfo(name=opts.name, namespace=opts.namespace, kind="sidecar",
                     labels=dict(opts.labels), address=opts.address, inbound_port=inbound,
                     app_port=opts.app_port, outbound_port=outbound, xds_mode=opts.xds_mode,
                     app_protocol=opts.app_protocol,
                     access_log_encoding=opts.access_log_encoding,
                     workload_name=opts.workload or None)
    return ProxyRun(
        info=info, admin_port=admin, state_dir=opts.state_dir or default_state_dir(),
        server=opts.server, envoy=opts.envoy, concurrency=opts.concurrency,
        log_level=opts.log_level, xds_address=opts.xds_address,
        ready_timeout=opts.ready_timeout, we_ports={opts.app_protocol: inbound},
        annotations={ANNOTATION_PREFIX + "inbound-port": str(inbound),
                     ANNOTATION_PREFIX + "outbound-port": str(outbound),
                     ANNOTATION_PREFIX + "app-port": str(opts.app_port),
                     ANNOTATION_PREFIX + "app-protocol": opts.app_protocol,
                     **identity_annotations(info)},
        service_account=opts.service_account, app_argv=list(opts.command),
        app_env=app_environment(opts, outbound),
    )


def run_sidecar(opts: SidecarOptions) -> int:
    run = sidecar_run(opts)
    info = run.info

    def ready_line() -> str:
        tcp = " (tcp)" if info.app_protocol == "tcp" else ""
        return (f"sidecar {info.id} ready: inbound {info.address}:{info.inbound_port} -> "
                f"app :{info.app_port}{tcp}, "
                f"outbound proxy http://127.0.0.1:{info.outbound_port}, "
                f"admin http://127.0.0.1:{run.admin_port}")

    return run_proxy(run, ready_line)
