"""The `meshpilot` command: kubectl habits for Istio resources, plus the control plane itself.

Exit codes: 0 success, 1 invalid input or a server error (message on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import __version__
from . import commands
from .analyze_command import add_analyze_command
from .canary_command import add_canary_command
from .create_command import add_create_command
from .curl_command import add_curl_command
from .dashboard_command import add_dashboard_command
from .diagnostics import add_diagnostics_commands
from .down_command import add_down_command, add_namespace_delete_options
from .load_command import add_load_command
from .proxy_commands import add_proxy_commands
from .query_command import add_query_command
from .run_command import add_run_command


def _server(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server", metavar="URL",
                   help="control plane API address (default: $MESHPILOT_SERVER or "
                        "http://127.0.0.1:15014)")


def _namespace(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--namespace", help="namespace for resources that name none")


def _files(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("-f", "--filename", action="append", default=[], required=required,
                   metavar="PATH", help="file, directory (recursive) or - for stdin; repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshpilot",
        description="Istio traffic management (VirtualService, DestinationRule, Gateway, "
                    "ServiceEntry) on real Envoy, without Kubernetes.",
    )
    parser.add_argument("--version", action="version", version=f"meshpilot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    up = sub.add_parser("up", help="run the control plane in the foreground")
    up.add_argument("--state", metavar="DIR",
                    help="state directory (default: $MESHPILOT_STATE or ~/.meshpilot)")
    up.add_argument("--api-port", type=int, default=15014, help="REST API port (default 15014)")
    up.add_argument("--api-host", default="127.0.0.1",
                    help="REST API listen address (default 127.0.0.1)")
    up.add_argument("--xds-port", type=int, default=15010,
                    help="xDS (ADS gRPC) port Envoy proxies connect to (default 15010)")
    up.add_argument("--xds-host", default="127.0.0.1",
                    help="xDS listen address (default 127.0.0.1; remote proxies need the "
                         "token in STATE/xds-token)")
    up.add_argument("--debounce-after", type=float, default=0.1, metavar="SECONDS",
                    help="quiet period before a push (default 0.1, as Istio)")
    up.add_argument("--debounce-max", type=float, default=10.0, metavar="SECONDS",
                    help="longest a push waits while changes keep coming (default 10)")
    up.add_argument("--outbound-traffic-policy", choices=["ALLOW_ANY", "REGISTRY_ONLY"],
                    help="requests to hosts the mesh does not know: pass through (ALLOW_ANY, "
                         "the default) or 502 (REGISTRY_ONLY); overrides --mesh-config")
    up.add_argument("--mesh-config", metavar="FILE",
                    help="YAML with Istio MeshConfig fields, e.g. "
                         "'outboundTrafficPolicy: {mode: REGISTRY_ONLY}'")
    _files(up, required=False)
    _namespace(up)
    up.set_defaults(func=commands.up)

    apply = sub.add_parser("apply", help="create or update resources from files (atomic)")
    _files(apply, required=True)
    _namespace(apply)
    apply.add_argument("--dry-run", action="store_true",
                       help="validate on the server and show what would change; store nothing")
    _server(apply)
    apply.set_defaults(func=commands.apply)

    get = sub.add_parser("get", help="list or show resources")
    get.add_argument("kind", metavar="KIND[,KIND]",
                     help="vs, dr, gw, se, we, svc, secret (plural, singular and full names too)")
    get.add_argument("names", nargs="*", metavar="NAME")
    _namespace(get)
    get.add_argument("-A", "--all-namespaces", action="store_true")
    get.add_argument("-o", "--output", choices=["yaml", "json", "wide", "name"])
    get.add_argument("-l", "--selector", metavar="SELECTOR",
                     help="label selector, e.g. app=sample-app,version in (v1,v2)")
    get.add_argument("-w", "--watch", action="store_true",
                     help="after listing, print changes as they happen")
    _server(get)
    get.set_defaults(func=commands.get)

    delete = sub.add_parser("delete", help="delete resources by file or by kind and name")
    delete.add_argument("kind", nargs="?", metavar="KIND")
    delete.add_argument("names", nargs="*", metavar="NAME")
    _files(delete, required=False)
    _namespace(delete)
    delete.add_argument("--ignore-not-found", action="store_true")
    _server(delete)
    add_namespace_delete_options(delete)  # delete namespace NS [--wait] [--timeout S]
    delete.set_defaults(func=commands.delete)

    validate = sub.add_parser("validate", help="check manifests offline (no server needed)")
    _files(validate, required=True)
    _namespace(validate)
    validate.set_defaults(func=commands.validate)

    demo = sub.add_parser("demo", help="run the whole seed walkthrough, section by section, "
                                       "and keep the mesh running until Ctrl-C")
    demo.add_argument("--state", default=".demo-state", metavar="DIR")
    demo.add_argument("--api-port", type=int, default=15014)
    demo.add_argument("--xds-port", type=int, default=15010)
    demo.add_argument("--client-port", type=int, default=15001,
                      help="the client sidecar's explicit HTTP proxy port (default 15001)")
    demo.set_defaults(func=commands.demo)

    version = sub.add_parser("version", help="print client and server versions")
    _server(version)
    version.set_defaults(func=commands.version)

    add_proxy_commands(sub)  # sidecar, gateway, demo-app
    add_load_command(sub)  # load (fortio-style)
    add_create_command(sub)  # create secret tls
    add_analyze_command(sub)  # analyze (istioctl analyze)
    add_diagnostics_commands(sub)  # proxy-status, proxy-config, logs, stats, describe
    add_dashboard_command(sub)  # dashboard grafana
    add_query_command(sub)  # query PROMQL (Prometheus's instant query, no Prometheus)
    add_run_command(sub)  # run NAME --replicas N (a Deployment, standalone)
    add_curl_command(sub)  # curl URL (kubectl run ... curlimages/curl)
    add_down_command(sub)  # down: stop everything `up` started on this machine
    add_canary_command(sub)  # canary get/promote/abort/... (progressive delivery)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
