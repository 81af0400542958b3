"""`meshpilot dashboard grafana [-o FILE] [-n NS] [--service NAME] [--configmap]`.

The seed tutorial ships its Grafana dashboard as a ConfigMap for Grafana's sidecar;
without Kubernetes, users import a JSON file instead. One generator serves both: plain
dashboard JSON by default, the seed's ConfigMap form with `--configmap`. It needs no
server: the dashboard only holds PromQL over Istio's metric and label names.

(istioctl's `dashboard grafana` opens a port-forward to a running Grafana; there is no
Grafana to forward to here, so this command produces the dashboard instead.)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _split_service(service: str | None, namespace: str | None) -> tuple[str | None, str | None]:
    """`reviews`, or `reviews.bookinfo[.svc.cluster.local]` (which also gives the namespace):
    Istio's destination_service_name label holds only the short name."""
    if not service or "." not in service:
        return service, namespace
    name, _, rest = service.partition(".")
    return name, namespace or rest.split(".", 1)[0] or None


def grafana_command(args: argparse.Namespace) -> int:
    # Imported here: the telemetry package pulls in the access-log gRPC service, and every
    # `meshpilot` start (sidecars included) builds this parser.
    from ..telemetry import grafana

    service, namespace = _split_service(args.service, args.namespace)
    board = grafana.dashboard(namespace=namespace, service=service)
    if args.configmap:
        text = grafana.to_yaml(grafana.configmap(board, namespace=args.configmap_namespace))
    else:
        text = grafana.to_json(board)
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    try:
        Path(args.output).write_text(text)
    except OSError as e:
        print(f"error: cannot write {args.output}: {e.strerror or e}", file=sys.stderr)
        return 1
    how = ("kubectl apply -f " + args.output if args.configmap
           else "Grafana > Dashboards > New > Import")
    print(f"wrote {args.output} ({len(board['panels'])} panels; {how})", file=sys.stderr)
    return 0


def add_dashboard_command(sub: argparse._SubParsersAction) -> None:
    """Registers `dashboard` with its one generator so far, `grafana`."""
    dashboard = sub.add_parser("dashboard", help="generate monitoring dashboards (Grafana)")
    kinds = dashboard.add_subparsers(dest="dashboard_kind", metavar="KIND", required=True)
    g = kinds.add_parser(
        "grafana", help="write the traffic-management Grafana dashboard (JSON)",
        description="Write a Grafana dashboard over Istio's metrics (istio_requests_total, "
                    "istio_request_duration_milliseconds, ...) and Envoy's cluster stats: "
                    "the seed tutorial's panels plus success rate, latency quantiles, "
                    "errors by code and flag, TCP, retries, timeouts, circuit breakers and "
                    "outlier ejections. Import it in Grafana, or apply it as a ConfigMap "
                    "(--configmap) where Grafana's dashboard sidecar runs.")
    g.add_argument("-o", "--output", metavar="FILE", help="write to FILE (default: stdout)")
    g.add_argument("-n", "--namespace", metavar="NS",
                   help="preselect this destination namespace (the variable stays editable)")
    g.add_argument("--service", metavar="NAME",
                   help="preselect this destination service (short name, or NAME.NAMESPACE)")
    g.add_argument("--configmap", action="store_true",
                   help='wrap in a Kubernetes ConfigMap labelled grafana_dashboard: "1" '
                        "(the seed's form, for Grafana's dashboard sidecar)")
    g.add_argument("--configmap-namespace", default="monitoring", metavar="NS",
                   help="the ConfigMap's namespace (default: monitoring, as in the seed)")
    g.set_defaults(func=grafana_command)
