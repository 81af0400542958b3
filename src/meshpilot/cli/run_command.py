"""`meshpilot run NAME`: the seed's Deployment, standalone (see proxy/run.py).

    kubectl apply -f deployment.yaml   # sample-app-v1, replicas: 2, labels app/version
    meshpilot run sample-app-v1 -n traffic-demo --labels app=sample-app,version=v1 --replicas 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1..65535)")
    return int(text)


def _replicas(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: want a whole number of replicas, 1 or more")
    return int(text)


def _env(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"bad --env {text!r}: want NAME=VALUE")
    return key, value


def _options(p: argparse.ArgumentParser, defaults: bool = True) -> None:
    """The options of `run`; `defaults=False` leaves unset options out of the namespace
    (for the second pass over what follows NAME)."""

    def d(value: object) -> object:
        return value if defaults else argparse.SUPPRESS

    p.add_argument("-n", "--namespace", default=d("default"), help="namespace (default: default)")
    p.add_argument("--labels", "-l", default=d(None), metavar="K=V[,K=V]",
                   help="pod labels Services and subsets select, e.g. "
                        "app=sample-app,version=v1 (default: app=NAME)")
    p.add_argument("--replicas", type=_replicas, default=d(1), metavar="N",
                   help="number of instances (default 1)")
    p.add_argument("--app-port", type=_port, metavar="P",
                   help="first replica's app port; replica i gets P+i-1 (default: free ports)")
    p.add_argument("--port-env", action="append", default=d([]), metavar="VAR",
                   help="also pass the app port in $VAR (e.g. PORT); repeatable")
    p.add_argument("-e", "--env", type=_env, action="append", default=d([]), metavar="K=V",
                   help="environment for the app (a container's env:); repeatable")
    p.add_argument("--app-protocol", choices=["http", "tcp"], default=d("http"),
                   help="what the app speaks on its port (default http)")
    p.add_argument("--service-account", metavar="SA")
    p.add_argument("--xds", choices=["delta", "sotw"], default=d("delta"),
                   help="xDS protocol variant (default delta)")
    p.add_argument("--xds-address", metavar="HOST:PORT",
                   help="override the xDS address the control plane advertises")
    p.add_argument("--envoy", metavar="PATH", help="Envoy binary (default: the bundled one)")
    p.add_argument("--concurrency", type=int, default=d(1),
                   help="Envoy worker threads per replica (default 1)")
    p.add_argument("--log-level", default=d("info"),
                   choices=["trace", "debug", "info", "warning", "error", "critical", "off"],
                   help="Envoy log level (default info)")
    p.add_argument("--ready-timeout", type=float, default=d(30.0), metavar="SECONDS",
                   help="warn if a replica is not ready after this long (default 30)")
    p.add_argument("--access-log-encoding", type=str.upper, choices=["TEXT", "JSON"],
                   default=d("TEXT"), help="Envoy access log format (default TEXT)")
    p.add_argument("--state", metavar="DIR",
                   help="state directory for proxy files (default: $MESHPILOT_STATE or "
                        "~/.meshpilot)")
    p.add_argument("--server", metavar="URL",
                   help="control plane API address (default: $MESHPILOT_SERVER or "
                        "http://127.0.0.1:15014)")


def add_run_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run an app's replicas, each behind its own sidecar (a Deployment)",
        usage="meshpilot run NAME [-n NS] --labels K=V[,K=V] [--replicas N] [options] "
              "[-- COMMAND...]",
        description="Start REPLICAS instances NAME-1..NAME-N of COMMAND (default: "
                    "`meshpilot demo-app` answering as the labels' app and version), each "
                    "behind its own Envoy sidecar and registered as a WorkloadEntry of "
                    "workload NAME once ready. A replica whose app or Envoy exits is "
                    "replaced (backoff 1 s doubling to 30 s). Ctrl-C or SIGTERM stops all. "
                    "Each app gets a free port in $MESHPILOT_APP_PORT (and in {port} "
                    "inside COMMAND).")
    _options(p)
    p.add_argument("name", metavar="NAME",
                   help="workload name (a Deployment's); replicas are NAME-1..NAME-N and "
                        "metrics label destination_workload=NAME")
    # Everything after NAME: more options, then `--` and the command. REMAINDER takes it
    # all (argparse cannot mix a positional, options and a `--` command inside a
    # sub-command); `run` parses the options out of it again with the same definitions.
    p.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..api.base import is_dns1123_label
    from ..proxy.run import RunSpec, run_workload
    from ..proxy.supervisor import parse_labels

    rest = list(args.rest)
    split = rest.index("--") if "--" in rest else len(rest)
    command = rest[split + 1:]
    if rest[:split]:
        again = argparse.ArgumentParser(prog="meshpilot run", add_help=False)
        _options(again, defaults=False)
        again.parse_args(rest[:split], namespace=args)  # keeps what came before NAME
    if not is_dns1123_label(args.name) or len(args.name) > 55:
        # Replica names (NAME-10) become WorkloadEntry names and Envoy node ids.
        print(f"error: invalid workload name {args.name!r}: use lowercase letters, digits and "
              "'-', at most 55 characters", file=sys.stderr)
        return 1
    try:
        labels = parse_labels(args.labels) if args.labels is not None else {"app": args.name}
        spec = RunSpec(
            name=args.name, namespace=args.namespace, labels=labels, replicas=args.replicas,
            command=command, app_port=args.app_port, port_env=args.port_env,
            env=dict(args.env), state_dir=Path(args.state) if args.state else None,
            server=args.server, xds_mode=args.xds, xds_address=args.xds_address,
            envoy=args.envoy, concurrency=args.concurrency, log_level=args.log_level,
            ready_timeout=args.ready_timeout, app_protocol=args.app_protocol,
            access_log_encoding=args.access_log_encoding,
            service_account=args.service_account)
        return run_workload(spec)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
