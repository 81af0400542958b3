"""The Envoy bootstrap for one meshpilot proxy: who it is, where the control plane is, and
which stats to keep. Everything else (listeners, routes, clusters) arrives over ADS.

Choices here come from the xDS prototype (shared research, §6):
- `envoy_grpc.retry_policy` 0.1 s / 1 s: without it Envoy's default backoff takes up to
  ~4 s to notice a restarted control plane; with it ~30 ms.
- stats are restricted with an inclusion list: with default stats Envoy spends ~58 KB and
  ~0.6 ms of CPU per cluster on them; we keep only what diagnostics and tests read.
- `set_node_on_first_message_only`: the node (with its metadata) is sent once per stream.
"""

from __future__ import annotations

import ipaddress
import json
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..api.base import ENVOY_MAX_REGEX_PROGRAM_SIZE
from ..xds.types import ProxyInfo

XDS_CLUSTER = "xds_cluster"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

# Stats the product reads (proxy diagnostics, retry/timeout/circuit-breaker/outlier tests,
# push verification). Cluster names contain dots (`outbound|80||a.b.svc.cluster.local`), so
# per-cluster stats are matched on their suffix.
_CLUSTER_STATS = (
    r"upstream_rq.*|upstream_cx_(total|active|connect_fail|connect_timeout|overflow|"
    r"none_healthy|destroy.*|rx_bytes_total|tx_bytes_total|idle_timeout|"
    r"max_duration_reached|max_requests|http1_total|http2_total)|retry_or_shadow_abandoned|"
    r"membership_.*|outlier_detection\..*|circuit_breakers\..*|health_check\..*|"
    r"lb_healthy_panic|update_(attempt|success|rejected|failure|empty)|version|max_host_weight"
)
STATS_INCLUSIONS: tuple[dict[str, Any], ...] = (
    {"prefix": "server."},
    {"prefix": "control_plane."},
    {"prefix": "cluster_manager."},
    {"prefix": "listener_manager."},
    {"prefix": "runtime."},
    {"prefix": f"cluster.{XDS_CLUSTER}."},
    {"prefix": "http."},  # per HTTP connection manager: downstream_rq_*, rds.*, fault.*
    {"prefix": "listener."},  # per listener: downstream_cx_* (one per port, cheap)
    {"prefix": "vhost."},
    {"safe_regex": {"regex": rf"^cluster\..+\.({_CLUSTER_STATS})$"}},
)

# Envoy's default `envoy.cluster_name` tag takes one dot-separated token, which cuts
# `outbound|80||a.ns.svc.cluster.local` at its first dot and leaves the rest in the metric
# name. As Istio's bootstrap does, the default tags are replaced by Istio's list, so
# Prometheus sees `envoy_cluster_upstream_rq_pending_overflow{cluster_name="outbound|80||
# a.ns.svc.cluster.local"}`. cluster_name ends at the `;` of the clusters' alt_stat_name
# (or at the first dot for static clusters such as xds_cluster).
_DIGITS_OR_HEX = r"(?:[_.[:digit:]]*|[_\[\]aAbBcCdDeEfF[:digit:]]*)"
STATS_TAGS: tuple[dict[str, str], ...] = (
    {"tag_name": "cluster_name", "regex": r"^cluster\.((.+?)(;\.|\.(?!.*;\.)))"},
    {"tag_name": "tcp_prefix", "regex": r"^tcp\.((.*?)\.)\w+?$"},
    {"tag_name": "response_code", "regex": r"_rq(_(\d{3}))$"},
    {"tag_name": "response_code_class", "regex": r"_rq(_(\dxx))$"},
    {"tag_name": "http_conn_manager_listener_prefix",
     "regex": rf"^listener(?=\.).*?\.http\.(({_DIGITS_OR_HEX})\.)"},
    {"tag_name": "http_conn_manager_prefix", "regex": rf"^http\.(({_DIGITS_OR_HEX})\.)"},
    {"tag_name": "listener_address", "regex": rf"^listener\.(({_DIGITS_OR_HEX})\.)"},
)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _xds_cluster(host: str, port: int) -> dict[str, Any]:
    """The one static cluster: the ADS server, over HTTP/2 (gRPC)."""
    address = {"socket_address": {"address": host, "port_value": port}}
    return {
        "name": XDS_CLUSTER,
        # STATIC needs an IP literal; a host name (e.g. `localhost`) is resolved by DNS.
        "type": "STATIC" if _is_ip(host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "typed_extension_protocol_options": {
            HTTP_PROTOCOL_OPTIONS: {
                "@type": f"type.googleapis.com/{HTTP_PROTOCOL_OPTIONS}",
                "explicit_http_config": {
                    "http2_protocol_options": {
                        # Notice a silently dead control plane (e.g. SIGKILLed) quickly.
                        "connection_keepalive": {"interval": "15s", "timeout": "5s"},
                    },
                },
            },
        },
        "load_assignment": {
            "cluster_name": XDS_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": address}}]}],
        },
    }


def _grpc_service(token: str | None) -> dict[str, Any]:
    service: dict[str, Any] = {
        "envoy_grpc": {
            "cluster_name": XDS_CLUSTER,
            "retry_policy": {"retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"}},
        },
    }
    if token:
        service["initial_metadata"] = [{"key": "authorization", "value": f"Bearer {token}"}]
    return service


def build_bootstrap(
    proxy: ProxyInfo,
    *,
    xds_host: str,
    xds_port: int,
    admin_port: int,
    token: str | None = None,
    access_log_path: str | None = None,
) -> dict[str, Any]:
    """The bootstrap as a JSON-able dict (Envoy's v3 proto field names).

    `access_log_path` (or `proxy.access_log_path`) travels in node metadata
    (`ACCESS_LOG_PATH`) so the translator can point the proxy's access logs at the
    per-proxy file; the keyword wins, so a launcher can pick the file next to the bootstrap.
    """
    if access_log_path:
        proxy = replace(proxy, access_log_path=access_log_path)
    metadata = proxy.to_metadata()
    ads_source = {"ads": {}, "resource_api_version": "V3"}
    return {
        "node": {"id": proxy.id, "cluster": proxy.id, "metadata": metadata},
        "admin": {
            "address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}},
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "DELTA_GRPC" if proxy.xds_mode == "delta" else "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": True,
                "grpc_services": [_grpc_service(token)],
            },
            "cds_config": dict(ads_source),
            "lds_config": dict(ads_source),
        },
        "static_resources": {"clusters": [_xds_cluster(xds_host, xds_port)]},
        "stats_config": {
            "use_all_default_tags": False,
            "stats_tags": [dict(t) for t in STATS_TAGS],
            "stats_matcher": {"inclusion_list": {"patterns": [dict(p) for p in STATS_INCLUSIONS]}},
        },
        # Traffic stats of a cluster are created on its first request, not when CDS lands.
        "deferred_stat_options": {"enable_deferred_creation_stats": True},
        "layered_runtime": {
            "layers": [
                # Istio's value: header/URI regex matches from VirtualServices are often
                # bigger than RE2's default program-size limit of 100.
                {"name": "static", "static_layer": {
                    "re2.max_program_size.error_level": ENVOY_MAX_REGEX_PROGRAM_SIZE}},
                # Lets tests and operators flip runtime keys through /runtime_modify.
                {"name": "admin", "admin_layer": {}},
            ],
        },
    }


def write_bootstrap(path: str | os.PathLike[str], cfg: dict[str, Any]) -> Path:
    """Write atomically (temp file + rename): Envoy must never read a half-written file."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    tmp.replace(target)
    return target
