"""`meshpilot load`: fortio-style load generation (`fortio load -c 20 -qps 50 -t 30s URL`).

fortio's flag names are kept, and since fortio users type Go-style single-dash long flags
(`-qps 50`, `-json -`), both `-qps` and `--qps` spellings are accepted. The engine lives in
`meshpilot.load`; this module only maps flags to a LoadSpec and prints the result.

Live progress (a line every few seconds of a `-t` run longer than 3 s, or of a run until
Ctrl-C) always goes to stderr: stdout may be carrying `--json -`, and a pipe reader
should get the JSON document and nothing else.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

_DESCRIPTION = """\
Send HTTP/1.1 keep-alive load to URL and report throughput, status codes and latency
percentiles, like `fortio load`. Exit code 0 even when some calls fail (they are counted
as codes), 1 on usage errors or when the target cannot be reached at all."""

_EPILOG = """\
examples:
  meshpilot load -c 20 -qps 50 -t 30s http://sample-app/ -x http://127.0.0.1:15001
  meshpilot load -qps 0 -n 100000 -c 16 --procs 2 --json result.json http://127.0.0.1:8080/"""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _duration(text: str) -> float:
    from ..load.spec import UsageError, parse_duration

    try:
        return parse_duration(text)
    except UsageError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _qps(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    return max(value, 0.0)  # fortio: 0 or negative means as fast as possible


def _percentiles(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected e.g. 50,90,99.9") from None
    if not values or any(not 0 <= p <= 100 for p in values):
        raise argparse.ArgumentTypeError(f"{text!r}: percentiles must be within 0..100")
    return values


def add_load_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "load", help="generate HTTP load and report latency percentiles (like fortio load)",
        description=_DESCRIPTION, epilog=_EPILOG, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-c", type=_positive_int, default=8, metavar="N", dest="connections",
                   help="connections (fortio: threads), each with one request in flight "
                        "(default 8)")
    p.add_argument("-qps", "--qps", type=_qps, default=8.0, metavar="QPS",
                   help="total queries per second, spread evenly over connections; "
                        "0 = as fast as possible (default 8)")
    p.add_argument("-t", type=_duration, default=5.0, metavar="DURATION", dest="duration",
                   help="how long to run, e.g. 30s, 1m (default 5s; 0 = until Ctrl-C)")
    p.add_argument("-n", type=_positive_int, default=None, metavar="CALLS", dest="calls",
                   help="exact number of calls, split over connections (overrides -t)")
    p.add_argument("-H", action="append", default=[], metavar="'NAME: VALUE'",
                   dest="headers", help="extra request header; repeatable (Host too)")
    p.add_argument("-X", default="GET", metavar="METHOD", dest="method",
                   help="HTTP method (default GET)")
    p.add_argument("-payload", "--payload", default=None, metavar="TEXT",
                   help="request body (sent with Content-Length)")
    p.add_argument("-x", default=None, metavar="PROXY", dest="proxy",
                   help="explicit HTTP proxy, e.g. http://127.0.0.1:15001 (a sidecar's "
                        "outbound port): absolute-form request target, Host from URL")
    p.add_argument("-procs", "--procs", type=_positive_int, default=1, metavar="N",
                   help="worker processes sharing connections and qps, to use more "
                        "than one core (default 1)")
    p.add_argument("-timeout", "--timeout", type=_duration, default=10.0, metavar="DURATION",
                   help="per-call timeout, counted as an error -1 (default 10s)")
    p.add_argument("-json", "--json", default=None, metavar="FILE",
                   help="write the result as JSON to FILE (- for stdout; the text report "
                        "then goes to stderr)")
    p.add_argument("-p", type=_percentiles, default=None, metavar="LIST",
                   dest="percentiles",
                   help="percentiles to report (default 50,75,90,99,99.9)")
    p.add_argument("-quiet", "--quiet", action="store_true",
                   help="no live progress lines and no start banner; only the final "
                        "report (and JSON)")
    p.add_argument("-r", type=float, default=0.0001, metavar="SECONDS", dest="resolution",
                   help="histogram bucket resolution (default 0.0001 = 0.1 ms)")
    p.add_argument("url", metavar="URL", help="http:// URL to load")
    p.set_defaults(func=load)

    def usage_error(message: str) -> NoReturn:
        """Bad flags exit 1 (fortio's convention and this command's contract), not 2."""
        p.print_usage(sys.stderr)
        print(f"meshpilot load: error: {message}", file=sys.stderr)
        sys.exit(1)

    p.error = usage_error  # type: ignore[method-assign]
    parse_known = p.parse_known_args

    def parse_known_args(args: Any = None, namespace: Any = None) -> Any:
        """Unknown flags are usage errors here too (else the top parser exits 2)."""
        ns, extras = parse_known(args, namespace)
        if extras:
            usage_error(f"unrecognized arguments: {' '.join(extras)}")
        return ns, extras

    p.parse_known_args = parse_known_args  # type: ignore[method-assign]


def load(args: argparse.Namespace) -> int:
    from ..load import LoadSpec, TargetUnreachable, UsageError, run_load
    from ..load.progress import printer, wanted
    from ..load.spec import DEFAULT_PERCENTILES, parse_header

    try:
        spec = LoadSpec(
            url=args.url, connections=args.connections, qps=args.qps,
            duration=args.duration or None, calls=args.calls,
            headers=[parse_header(h) for h in args.headers], method=args.method,
            proxy=args.proxy, procs=args.procs, timeout=args.timeout,
            percentiles=args.percentiles or DEFAULT_PERCENTILES,
            resolution=args.resolution,
            payload=(args.payload or "").encode())
        spec.validate()
    except UsageError as e:
        print(f"meshpilot load: {e}", file=sys.stderr)
        return 1
    text_out = sys.stderr if args.json == "-" else sys.stdout
    qps = "max" if spec.qps == 0 else f"{spec.qps:g}"
    span = (f"{spec.calls} calls" if spec.calls else
            f"{spec.duration:g}s" if spec.duration else "until Ctrl-C")
    if not args.quiet:
        print(f"meshpilot load: {qps} qps, {spec.connections} connection(s), {spec.procs} "
              f"proc(s), {span}: {spec.url}", file=text_out, flush=True)
    show = None if args.quiet or not wanted(spec.duration, spec.calls) else printer(sys.stderr)
    try:
        result = run_load(spec, progress=show)
    except TargetUnreachable as e:
        print(f"meshpilot load: {e}", file=sys.stderr)
        return 1
    print(result.report(), end="", file=text_out, flush=True)
    if args.json == "-":
        sys.stdout.write(result.to_json_text())
    elif args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(result.to_json_text())
        print(f"Successfully wrote {args.json}", file=text_out)
    if result.requests and result.responses == 0:
        print("meshpilot load: no call got an HTTP response", file=sys.stderr)
        return 1
    return 0
