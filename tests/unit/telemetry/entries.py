"""Build ALS entries and a small mesh for collector tests, as real Envoys send them (field
for field what the e2e test sees on the wire)."""

from __future__ import annotations

from pathlib import Path

import yaml
from envoy.config.core.v3 import base_pb2
from envoy.data.accesslog.v3 import accesslog_pb2 as al
from envoy.service.accesslog.v3 import als_pb2

from meshpilot.snapshot import MeshSnapshot
from meshpilot.xds.types import ProxyInfo

from ..translate.helpers import snapshot

NS = "traffic-demo"
SERVICE = f"sample-app.{NS}.svc.cluster.local"
CLIENT = ProxyInfo(name="sleep", namespace=NS, labels={"app": "sleep", "version": "v7"},
                   inbound_port=16000, app_port=8080, outbound_port=15001)
V1 = ProxyInfo(name="sample-app-v1-1", namespace=NS,
               labels={"app": "sample-app", "version": "v1"}, inbound_port=17001,
               app_port=18001, workload_name="sample-app-v1")
V2 = ProxyInfo(name="sample-app-v2-1", namespace=NS,
               labels={"app": "sample-app", "version": "v2"}, inbound_port=17002,
               app_port=18002)
TCP = ProxyInfo(name="tcp-echo-1", namespace=NS, labels={"app": "tcp-echo", "version": "v1"},
                inbound_port=17100, app_port=18100, app_protocol="tcp")


def _we(proxy: ProxyInfo) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
            "metadata": {"name": proxy.name, "namespace": proxy.namespace},
            "spec": {"address": "127.0.0.1", "labels": dict(proxy.labels),
                     "ports": {proxy.app_protocol: proxy.inbound_port}}}


def mesh_snapshot(tmp: Path, *proxies: ProxyInfo) -> MeshSnapshot:
    docs = [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "sample-app", "namespace": NS},
         "spec": {"selector": {"app": "sample-app"}, "ports": [{"name": "http", "port": 80}]}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "tcp-echo", "namespace": NS},
         "spec": {"selector": {"app": "tcp-echo"}, "ports": [{"name": "tcp", "port": 9000}]}},
        {"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
         "metadata": {"name": "httpbin", "namespace": "egress"},
         "spec": {"hosts": ["httpbin.org"], "location": "MESH_EXTERNAL", "resolution": "DNS",
                  "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}]}},
        *(_we(p) for p in (proxies or (CLIENT, V1, V2, TCP))),
    ]
    path = tmp / f"mesh-{len(list(tmp.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump_all(docs))
    return snapshot(path)


def http_entry(*, code: int = 200, cluster: str = "", upstream: int | None = None,
               authority: str = "sample-app", peer: str | None = None,
               flags: dict | None = None, duration_ms: float = 3.0, route: str = "",
               content_type: str = "", grpc_status: str | None = None,
               grpc_in_headers: bool = False, rx: int = 100, tx: int = 200,
               method: int = base_pb2.RequestMethod.GET, body_rx: int = 0,
               body_tx: int = 0) -> al.HTTPAccessLogEntry:
    e = al.HTTPAccessLogEntry()
    cp = e.common_properties
    cp.access_log_type = al.AccessLogType.DownstreamEnd
    ns = int(duration_ms * 1_000_000)
    cp.duration.seconds, cp.duration.nanos = divmod(ns, 1_000_000_000)
    cp.downstream_wire_bytes_received = rx
    cp.downstream_wire_bytes_sent = tx
    if cluster:
        cp.custom_tags["cluster"] = cluster
    if upstream is not None:
        cp.upstream_remote_address.socket_address.address = "127.0.0.1"
        cp.upstream_remote_address.socket_address.port_value = upstream
        cp.upstream_cluster = cluster
    if route:
        cp.route_name = route
    if peer is not None:
        cp.metadata.filter_metadata["meshpilot.peer"].fields["id"].string_value = peer
    for name, value in (flags or {}).items():
        if name == "unauthorized_details":
            cp.response_flags.unauthorized_details.reason = 1
        else:
            setattr(cp.response_flags, name, value)
    e.request.authority = authority
    e.request.request_method = method
    e.request.request_body_bytes = body_rx
    if content_type:
        e.request.request_headers["content-type"] = content_type
    if code:
        e.response.response_code.value = code
    e.response.response_body_bytes = body_tx
    if grpc_status is not None:
        target = e.response.response_headers if grpc_in_headers else e.response.response_trailers
        target["grpc-status"] = grpc_status
    return e


def tcp_entry(stream_id: str, kind: int, *, rx: int, tx: int, cluster: str = "",
              upstream: int | None = None) -> al.TCPAccessLogEntry:
    e = al.TCPAccessLogEntry()
    cp = e.common_properties
    cp.access_log_type = kind
    cp.stream_id = stream_id
    if cluster:
        cp.custom_tags["cluster"] = cluster
    if upstream is not None:
        cp.upstream_remote_address.socket_address.address = "127.0.0.1"
        cp.upstream_remote_address.socket_address.port_value = upstream
    e.connection_properties.received_bytes = rx
    e.connection_properties.sent_bytes = tx
    return e


def http_message(*entries: al.HTTPAccessLogEntry) -> als_pb2.StreamAccessLogsMessage:
    msg = als_pb2.StreamAccessLogsMessage()
    msg.http_logs.log_entry.extend(entries)
    return msg


def tcp_message(*entries: al.TCPAccessLogEntry) -> als_pb2.StreamAccessLogsMessage:
    msg = als_pb2.StreamAccessLogsMessage()
    msg.tcp_logs.log_entry.extend(entries)
    return msg
