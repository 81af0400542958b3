"""Small proto-building helpers shared by the translator modules.

They exist mostly for the proto pitfalls: wrapper fields need wrapper messages, empty
oneof messages (`ads: {}`) must be set explicitly, typed configs must be packed in Any.
"""

from __future__ import annotations

import json
from decimal import Decimal
from functools import lru_cache

from envoy.config.core.v3 import address_pb2, base_pb2, config_source_pb2
from google.protobuf import any_pb2, duration_pb2, struct_pb2, wrappers_pb2
from google.protobuf.message import Message

from ...api.base import parse_duration

MAX_UINT32 = 4_294_967_295
UNIX_PREFIX = "unix://"

# Special Istio names (pilot/pkg/networking/util/util.go, model/listener.go).
BLACKHOLE_CLUSTER = "BlackHoleCluster"
PASSTHROUGH_CLUSTER = "PassthroughCluster"
VIRTUAL_OUTBOUND = "virtualOutbound"
VIRTUAL_INBOUND = "virtualInbound"
DEFAULT_ROUTE = "default"
ALLOW_ANY = "allow_any"
BLOCK_ALL = "block_all"
HCM_FILTER = "envoy.filters.network.http_connection_manager"
TCP_PROXY_FILTER = "envoy.filters.network.tcp_proxy"
ROUTER_FILTER = "envoy.filters.http.router"
DFP_FILTER = "envoy.filters.http.dynamic_forward_proxy"
HTTP_PROTOCOL_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def pack(msg: Message) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(msg)
    return out


def u32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


def duration(text: str | None = None, *, seconds: Decimal | int = 0) -> duration_pb2.Duration:
    """A protobuf Duration from an Istio duration string (`5s`, `100ms`), or seconds."""
    total = parse_duration(text) if text is not None else Decimal(seconds)
    whole = int(total)
    return duration_pb2.Duration(seconds=whole, nanos=int((total - whole) * 1_000_000_000))


def ads_source() -> config_source_pb2.ConfigSource:
    """Resources over the ADS stream; initial_fetch_timeout 0 as Istio (wait, never give up)."""
    src = config_source_pb2.ConfigSource(
        initial_fetch_timeout=duration(seconds=0),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )
    src.ads.SetInParent()
    return src


def socket_address(address: str, port: int) -> address_pb2.Address:
    if address.startswith(UNIX_PREFIX):
        return address_pb2.Address(pipe=address_pb2.Pipe(path=address[len(UNIX_PREFIX):]))
    return address_pb2.Address(
        socket_address=address_pb2.SocketAddress(address=address, port_value=port)
    )


def istio_metadata(**fields: object) -> base_pb2.Metadata:
    """`filter_metadata.istio`: where Istio records which config produced a resource."""
    key = json.dumps({k: v for k, v in fields.items() if v not in (None, "", [])},
                     sort_keys=True)
    return base_pb2.Metadata.FromString(_istio_metadata_bytes(key))


@lru_cache(maxsize=65536)
def _istio_metadata_bytes(fields_json: str) -> bytes:
    """Struct building is slow in Python and the same few values repeat across resources."""
    meta = base_pb2.Metadata()
    struct = struct_pb2.Struct()
    struct.update(json.loads(fields_json))
    meta.filter_metadata["istio"].CopyFrom(struct)
    return meta.SerializeToString(deterministic=True)
