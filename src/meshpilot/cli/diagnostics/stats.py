"""`meshpilot stats PROXY [--filter NAME|REGEX] [-o text|json|prometheus]`: the Envoy stats
users look for when retries, timeouts, circuit breakers or outlier detection misbehave.

Like istioctl's `envoy-stats`, every matching stat is shown, zeros included (a zero
retry counter answers "did it retry?" as well as a non-zero one); `--nonzero` hides them.
Named filters map to Envoy's stat names (the regex is applied by Envoy's `?filter=`):

  retry            upstream_rq_retry, _retry_success, _retry_overflow, _retry_limit_exceeded,
                   _retry_backoff_*, retry_or_shadow_abandoned
  timeout          upstream_rq_timeout, upstream_rq_per_try_timeout, _per_try_idle_timeout,
                   upstream_cx_connect_timeout, _idle_timeout, _max_duration_reached,
                   downstream_rq_timeout
  circuit_breaker  circuit_breakers.<priority>.{cx,rq,rq_pending,rq_retry}_open and
                   remaining_*, upstream_rq_pending_overflow, upstream_cx_overflow,
                   upstream_rq_retry_overflow, upstream_cx_pool_overflow
  outlier          outlier_detection.ejections_active, _enforced_total, _detected_* ...

Which stats exist at all is limited by the bootstrap's stats inclusion list
(proxy/bootstrap.py): per cluster upstream_rq_*, upstream_cx_* (totals, overflow,
timeouts), circuit_breakers.*, outlier_detection.*, membership_*, health_check.*; per
HTTP connection manager http.*; per listener listener.*; vhost.*; server.*,
cluster_manager.*, listener_manager.*, control_plane.*. Traffic stats of a cluster appear
on its first request (deferred creation), so a cluster nobody called has none yet.
"""

from __future__ import annotations

import argparse
import re
import sys
import urllib.parse

from .admin import DiagnosticsError, admin_get, target_from_args
from .common import add_proxy_target, guarded

FILTERS: dict[str, str] = {
    "retry": r"upstream_rq_retry|retry_or_shadow_abandoned",
    "timeout": r"upstream_rq_timeout|upstream_rq_per_try_timeout|"
               r"upstream_rq_per_try_idle_timeout|upstream_cx_connect_timeout|"
               r"upstream_cx_idle_timeout|upstream_cx_max_duration_reached|"
               r"upstream_rq_max_duration_reached|downstream_rq_timeout",
    "circuit_breaker": r"circuit_breakers\.|upstream_rq_pending_overflow|"
                       r"upstream_cx_overflow|upstream_rq_retry_overflow|"
                       r"upstream_cx_pool_overflow",
    "outlier": r"outlier_detection\.",
}
ALIASES = {"retries": "retry", "timeouts": "timeout", "circuit-breaker": "circuit_breaker",
           "circuit_breakers": "circuit_breaker", "cb": "circuit_breaker",
           "outlier_detection": "outlier", "outlier-detection": "outlier"}


def add_stats_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "stats", help="Envoy stats of a proxy (retries, timeouts, circuit breakers, outliers)",
        description="Print a proxy's Envoy stats. --filter takes retry, timeout, "
                    "circuit_breaker, outlier or a regular expression over stat names.")
    add_proxy_target(p, required=False)
    p.add_argument("--filter", metavar="NAME|REGEX",
                   help="retry, timeout, circuit_breaker, outlier, or a regex on stat names")
    p.add_argument("--cluster", metavar="NAME",
                   help="only stats of clusters whose name contains NAME (e.g. |v2|)")
    p.add_argument("-o", "--output", choices=["text", "json", "prometheus"], default="text",
                   help="Envoy's text (default), JSON or Prometheus exposition format")
    p.add_argument("--nonzero", action="store_true",
                   help="hide counters and gauges that are zero (text output)")
    p.set_defaults(func=guarded(stats))


def stat_regex(name: str | None, cluster: str | None = None) -> str | None:
    """The regex for Envoy's `?filter=`: a named filter, or the user's own regex, and/or
    the cluster's stat prefix (cluster names contain regex metacharacters such as `|`)."""
    parts = []
    if cluster:
        parts.append(rf"cluster\.[^ ]*{re.escape(cluster)}")
    if name:
        pattern = FILTERS.get(ALIASES.get(name, name), name)
        try:
            re.compile(pattern)
        except re.error as e:
            raise DiagnosticsError(f"--filter {name!r} is not a filter name ("
                                   f"{', '.join(FILTERS)}) nor a valid regex: {e}") from None
        parts.append(f"(?:{pattern})")
    if not parts:
        return None
    return ".*".join(parts) if len(parts) > 1 else parts[0]


def drop_zero(text: str) -> str:
    """Text stats without `name: 0` lines (histograms and non-numeric lines stay)."""
    kept = [line for line in text.splitlines() if not re.fullmatch(r"[^:]+: 0", line.strip())]
    return "".join(line + "\n" for line in kept)


def stats_path(output: str, regex: str | None) -> str:
    base = {"text": "/stats", "json": "/stats?format=json",
            "prometheus": "/stats/prometheus"}[output]
    if regex is None:
        return base
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}filter={urllib.parse.quote(regex, safe='')}"


def stats(args: argparse.Namespace) -> int:
    target = target_from_args(args)
    regex = stat_regex(args.filter, args.cluster)
    text = admin_get(target, stats_path(args.output, regex))
    if args.nonzero and args.output == "text":
        text = drop_zero(text)
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    return 0
