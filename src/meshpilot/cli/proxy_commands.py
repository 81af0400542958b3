"""`meshpilot sidecar`, `gateway` and `demo-app`: the data-plane side of the CLI.

Parsers and handlers live here (not in commands.py) so the proxy side does not import
the control plane's modules, and `main.py` only needs one `add_proxy_commands` call.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def _err(text: str) -> None:
    print(text, file=sys.stderr)


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1..65535)")
    return int(text)


def _common(p: argparse.ArgumentParser, concurrency: int) -> None:
    p.add_argument("--name", required=True, help="proxy name; node id is NAME.NAMESPACE")
    p.add_argument("-n", "--namespace", default="default", help="namespace (default: default)")
    p.add_argument("--labels", "-l", default="", metavar="K=V[,K=V]",
                   help="workload labels, e.g. app=sample-app,version=v1")
    p.add_argument("--admin-port", type=_port, metavar="P", help="Envoy admin (default: free)")
    p.add_argument("--address", default="127.0.0.1",
                   help="address other proxies use to reach this one (default 127.0.0.1)")
    p.add_argument("--xds", choices=["delta", "sotw"], default="delta",
                   help="xDS protocol variant (default delta)")
    p.add_argument("--xds-address", metavar="HOST:PORT",
                   help="override the xDS address the control plane advertises")
    p.add_argument("--envoy", metavar="PATH", help="Envoy binary (default: the bundled one)")
    p.add_argument("--concurrency", type=int, default=concurrency,
                   help=f"Envoy worker threads (default {concurrency})")
    p.add_argument("--log-level", default="info",
                   choices=["trace", "debug", "info", "warning", "error", "critical", "off"],
                   help="Envoy log level (default info)")
    p.add_argument("--ready-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="warn if Envoy is not ready after this long (default 30)")
    p.add_argument("--state", metavar="DIR",
                   help="state directory (default: $MESHPILOT_STATE or ~/.meshpilot)")
    p.add_argument("--server", metavar="URL",
                   help="control plane API address (default: $MESHPILOT_SERVER or "
                        "http://127.0.0.1:15014)")
    p.add_argument("--workload", metavar="NAME",
                   help="workload this proxy is one instance of (Istio's WORKLOAD_NAME, a "
                        "Deployment's name; metrics label source/destination_workload with "
                        "it; default: --name)")
    p.add_argument("--access-log-encoding", type=str.upper, choices=["TEXT", "JSON"],
                   default="TEXT",
                   help="access log lines in Istio's text format (default) or as JSON "
                        "objects with Istio's keys (meshConfig accessLogEncoding)")


def add_proxy_commands(sub: argparse._SubParsersAction) -> None:
    sc = sub.add_parser(
        "sidecar", help="run Envoy as a sidecar for an app (and optionally the app)",
        description="Start Envoy for one workload, register it as a WorkloadEntry and "
                    "supervise it (and COMMAND, if given) until Ctrl-C.",
        usage="meshpilot sidecar --name NAME [-n NS] --app-port P [options] [-- COMMAND...]")
    _common(sc, concurrency=1)
    sc.add_argument("--app-port", type=_port, required=True, metavar="P",
                    help="port the app listens on (Envoy's inbound listener forwards here)")
    sc.add_argument("--inbound-port", type=_port, metavar="P",
                    help="port other sidecars connect to (default: free)")
    sc.add_argument("--outbound-port", type=_port, metavar="P",
                    help="HTTP proxy port for the app's outbound calls "
                         "(default 15001, or a free port if 15001 is taken)")
    sc.add_argument("--app-protocol", choices=["http", "tcp"], default="http",
                    help="what the app speaks on --app-port: http (default) or tcp "
                         "(inbound bytes are passed through untouched, e.g. a database)")
    sc.add_argument("--service-account", metavar="SA")
    sc.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                    help="app to run and supervise")
    sc.set_defaults(func=sidecar)

    gw = sub.add_parser("gateway", help="run Envoy as an ingress gateway")
    _common(gw, concurrency=2)
    gw.add_argument("--port-map", default=None, metavar="GW:BIND[,GW:BIND]",
                    help="where Gateway server ports are bound (default 80:8080,443:8443)")
    gw.set_defaults(func=gateway)

    demo = sub.add_parser("demo-app", help="run the sample HTTP app (nginx-like v1/v2)")
    demo.add_argument("--port", type=int, default=None,
                      help="listen port (default: $MESHPILOT_APP_PORT or 8081; 0: any)")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--version", dest="app_version", default="v1", metavar="VERSION",
                      help="version label in answers (default v1)")
    demo.add_argument("--service", default="sample-app", help="service name (default sample-app)")
    demo.add_argument("--name", help="instance name (default: $MESHPILOT_NAME or "
                                     "SERVICE-VERSION-1)")
    demo.add_argument("--server-header", metavar="TEXT",
                      help="Server header (default nginx/1.21 for v1, nginx/1.22 for v2)")
    demo.add_argument("--status", type=int, default=200, metavar="CODE",
                      help="answer plain paths with CODE, e.g. 503 for a failing instance")
    demo.add_argument("--delay-ms", type=int, default=0, metavar="MS",
                      help="answer every request MS milliseconds late (a slow version)")
    demo.set_defaults(func=demo_app)


def _state(args: argparse.Namespace) -> Path | None:
    return Path(args.state) if args.state else None


def sidecar(args: argparse.Namespace) -> int:
    from ..proxy.sidecar import SidecarOptions, run_sidecar
    from ..proxy.supervisor import parse_labels

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    try:
        opts = SidecarOptions(
            name=args.name, namespace=args.namespace, app_port=args.app_port,
            labels=parse_labels(args.labels), inbound_port=args.inbound_port,
            outbound_port=args.outbound_port, admin_port=args.admin_port,
            address=args.address, service_account=args.service_account, xds_mode=args.xds,
            xds_address=args.xds_address, envoy=args.envoy, state_dir=_state(args),
            server=args.server, concurrency=args.concurrency, log_level=args.log_level,
            ready_timeout=args.ready_timeout, command=command,
            app_protocol=args.app_protocol, access_log_encoding=args.access_log_encoding,
            workload=args.workload)
        return run_sidecar(opts)
    except ValueError as e:
        _err(f"error: {e}")
        return 1


def gateway(args: argparse.Namespace) -> int:
    from ..proxy.gateway import DEFAULT_PORT_MAP, GatewayOptions, parse_port_map, run_gateway
    from ..proxy.supervisor import parse_labels

    try:
        opts = GatewayOptions(
            name=args.name, namespace=args.namespace, labels=parse_labels(args.labels),
            port_map=parse_port_map(args.port_map if args.port_map is not None
                                    else DEFAULT_PORT_MAP),
            admin_port=args.admin_port, address=args.address, xds_mode=args.xds,
            xds_address=args.xds_address, envoy=args.envoy, state_dir=_state(args),
            server=args.server, concurrency=args.concurrency, log_level=args.log_level,
            ready_timeout=args.ready_timeout, access_log_encoding=args.access_log_encoding,
            workload=args.workload)
        return run_gateway(opts)
    except ValueError as e:
        _err(f"error: {e}")
        return 1


def demo_app(args: argparse.Namespace) -> int:
    from ..demo.app import DemoConfig, default_port, run

    cfg = DemoConfig(
        port=default_port() if args.port is None else args.port, version=args.app_version,
        service=args.service, instance=args.name or os.environ.get("MESHPILOT_NAME") or None,
        server_header=args.server_header, host=args.host, status=args.status,
        delay_ms=max(0, min(args.delay_ms, 120_000)))
    return run(cfg)
