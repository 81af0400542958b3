"""Plain data shared by the translator, the xDS server and the proxy launcher.

`ProxyInfo` is what the control plane knows about one Envoy (from its bootstrap node
metadata); `ProxyResources` is the complete, frozen set of Envoy resources generated
for it. The translator produces ProxyResources; the xDS server only ships them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from google.protobuf import json_format, struct_pb2
from google.protobuf.message import Message

CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
SECRET_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"

# Make-before-break order (xDS protocol, "eventual consistency considerations"): clusters
# and their endpoints before the listeners and routes that use them.
PUSH_ORDER: tuple[str, ...] = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE,
                               SECRET_TYPE)
SHORT_NAMES = {CLUSTER_TYPE: "CDS", ENDPOINT_TYPE: "EDS", LISTENER_TYPE: "LDS",
               ROUTE_TYPE: "RDS", SECRET_TYPE: "SDS"}

ProxyKind = Literal["sidecar", "gateway"]
XdsMode = Literal["delta", "sotw"]
AppProtocol = Literal["http", "tcp"]
AccessLogEncoding = Literal["TEXT", "JSON"]


@dataclass(frozen=True)
class ProxyInfo:
    """One Envoy as the control plane sees it. Sent by the proxy in its node metadata.

    Sidecar: `inbound_port` is where other sidecars reach this workload (Envoy listens
    there and forwards to the app on `app_port`); `outbound_port` is the explicit HTTP
    proxy the app uses to reach mesh services (HTTP, or TCP tunnelled with CONNECT);
    `app_protocol` says what the app speaks on `app_port`: `http` (the inbound listener
    is an HCM) or `tcp` (tcp_proxy, bytes passed through untouched). Gateway: `port_map`
    maps a Gateway server port (80) to the port Envoy actually binds (8080).
    `access_log_path`: where Envoy writes its access log (Istio's default text format), on
    every listener; None means no access log, as Istio without `accessLogFile`.
    `access_log_encoding`: Istio's meshConfig `accessLogEncoding`, TEXT (default) or JSON.
    `workload`: the workload this proxy is one instance of (Istio's WORKLOAD_NAME, a
    Deployment's name); metrics label source/destination_workload with it. Defaults to
    `name`, so a single-instance sidecar needs nothing extra.
    """

    name: str
    namespace: str
    kind: ProxyKind = "sidecar"
    labels: Mapping[str, str] = field(default_factory=dict)
    address: str = "127.0.0.1"
    inbound_port: int | None = None
    app_port: int | None = None
    outbound_port: int | None = 15001
    port_map: Mapping[int, int] = field(default_factory=dict)
    xds_mode: XdsMode = "delta"
    app_protocol: AppProtocol = "http"
    access_log_path: str | None = None
    access_log_encoding: AccessLogEncoding = "TEXT"
    workload_name: str | None = None

    @property
    def workload(self) -> str:
        return self.workload_name or self.name

    @property
    def id(self) -> str:
        """Envoy node id, also the name `proxy-status` shows: `<name>.<namespace>`."""
        return f"{self.name}.{self.namespace}"

    def bind_port(self, port: int) -> int:
        return self.port_map.get(port, port)

    def to_metadata(self) -> dict[str, Any]:
        """Node metadata for the bootstrap (Istio-like upper-case keys)."""
        meta: dict[str, Any] = {
            "NAME": self.name,
            "NAMESPACE": self.namespace,
            "PROXY_TYPE": self.kind,
            "LABELS": dict(self.labels),
            "INSTANCE_IP": self.address,
            "XDS_MODE": self.xds_mode,
        }
        for key, value in (("INBOUND_PORT", self.inbound_port), ("APP_PORT", self.app_port),
                           ("OUTBOUND_PORT", self.outbound_port)):
            if value is not None:
                meta[key] = str(value)
        if self.app_protocol != "http":  # absent means http: older bootstraps stay valid
            meta["APP_PROTOCOL"] = self.app_protocol
        if self.access_log_path:  # absent means no access log: older bootstraps stay valid
            meta["ACCESS_LOG_PATH"] = self.access_log_path
        if self.access_log_encoding != "TEXT":
            meta["ACCESS_LOG_ENCODING"] = self.access_log_encoding
        if self.workload_name:
            meta["WORKLOAD_NAME"] = self.workload_name
        if self.port_map:
            meta["PORT_MAP"] = {str(k): str(v) for k, v in sorted(self.port_map.items())}
        return meta

    @classmethod
    def from_metadata(cls, meta: Mapping[str, Any] | struct_pb2.Struct) -> ProxyInfo:
        if isinstance(meta, struct_pb2.Struct):
            meta = json_format.MessageToDict(meta)

        def port(key: str) -> int | None:
            value = meta.get(key)
            return int(value) if value not in (None, "") else None

        kind = meta.get("PROXY_TYPE", "sidecar")
        mode = meta.get("XDS_MODE", "delta")
        return cls(
            name=str(meta["NAME"]),
            namespace=str(meta.get("NAMESPACE", "default")),
            kind="gateway" if kind == "gateway" else "sidecar",
            labels={str(k): str(v) for k, v in (meta.get("LABELS") or {}).items()},
            address=str(meta.get("INSTANCE_IP", "127.0.0.1")),
            inbound_port=port("INBOUND_PORT"),
            app_port=port("APP_PORT"),
            outbound_port=port("OUTBOUND_PORT"),
            port_map={int(k): int(v) for k, v in (meta.get("PORT_MAP") or {}).items()},
            xds_mode="sotw" if mode == "sotw" else "delta",
            app_protocol="tcp" if meta.get("APP_PROTOCOL") == "tcp" else "http",
            access_log_path=str(meta.get("ACCESS_LOG_PATH") or "") or None,
            access_log_encoding="JSON" if meta.get("ACCESS_LOG_ENCODING") == "JSON" else "TEXT",
            workload_name=str(meta.get("WORKLOAD_NAME") or "") or None,
        )


@dataclass(frozen=True)
class ProxyResources:
    """Every resource one proxy should have, by type URL then resource name."""

    by_type: Mapping[str, Mapping[str, Message]]

    def get(self, type_url: str) -> Mapping[str, Message]:
        return self.by_type.get(type_url, {})

    @property
    def clusters(self) -> Mapping[str, Message]:
        return self.get(CLUSTER_TYPE)

    @property
    def endpoints(self) -> Mapping[str, Message]:
        return self.get(ENDPOINT_TYPE)

    @property
    def listeners(self) -> Mapping[str, Message]:
        return self.get(LISTENER_TYPE)

    @property
    def routes(self) -> Mapping[str, Message]:
        return self.get(ROUTE_TYPE)

    @property
    def secrets(self) -> Mapping[str, Message]:
        return self.get(SECRET_TYPE)
