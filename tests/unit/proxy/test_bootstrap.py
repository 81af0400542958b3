"""The bootstrap must parse as Envoy's v3 Bootstrap proto and carry what the server reads."""

from __future__ import annotations

import json
import re

import envoy.extensions.upstreams.http.v3.http_protocol_options_pb2  # noqa: F401 (Any type)
import pytest
from envoy.config.bootstrap.v3.bootstrap_pb2 import Bootstrap
from google.protobuf import json_format

from meshpilot.proxy.bootstrap import STATS_INCLUSIONS, build_bootstrap, write_bootstrap
from meshpilot.xds.types import ProxyInfo

SIDECAR = ProxyInfo("sample-app-v1", "default", labels={"app": "sample-app", "version": "v1"},
                    inbound_port=15006, app_port=8081, outbound_port=15001)
GATEWAY = ProxyInfo("istio-ingressgateway", "istio-system", kind="gateway",
                    labels={"istio": "ingressgateway"}, outbound_port=None,
                    port_map={80: 8080, 443: 8443}, xds_mode="sotw")


def parse(cfg: dict) -> Bootstrap:
    return json_format.ParseDict(cfg, Bootstrap())


@pytest.mark.parametrize("proxy", [SIDECAR, GATEWAY], ids=["sidecar", "gateway"])
def test_bootstrap_is_a_valid_envoy_bootstrap(proxy: ProxyInfo) -> None:
    cfg = build_bootstrap(proxy, xds_host="127.0.0.1", xds_port=15010, admin_port=15000)
    msg = parse(cfg)
    assert msg.node.id == proxy.id
    assert msg.node.cluster == proxy.id
    assert msg.admin.address.socket_address.address == "127.0.0.1"
    assert msg.admin.address.socket_address.port_value == 15000
    ads = msg.dynamic_resources.ads_config
    assert ads.transport_api_version == 2  # V3
    assert ads.set_node_on_first_message_only
    assert msg.dynamic_resources.cds_config.WhichOneof("config_source_specifier") == "ads"
    assert msg.dynamic_resources.lds_config.WhichOneof("config_source_specifier") == "ads"
    assert msg.dynamic_resources.cds_config.resource_api_version == 2


def test_node_metadata_round_trips_to_proxy_info() -> None:
    msg = parse(build_bootstrap(SIDECAR, xds_host="127.0.0.1", xds_port=1, admin_port=2))
    assert ProxyInfo.from_metadata(msg.node.metadata) == SIDECAR
    gw = parse(build_bootstrap(GATEWAY, xds_host="127.0.0.1", xds_port=1, admin_port=2))
    assert ProxyInfo.from_metadata(gw.node.metadata) == GATEWAY


def test_delta_and_sotw_pick_the_ads_api_type() -> None:
    delta = build_bootstrap(SIDECAR, xds_host="127.0.0.1", xds_port=1, admin_port=2)
    sotw = build_bootstrap(GATEWAY, xds_host="127.0.0.1", xds_port=1, admin_port=2)
    assert delta["dynamic_resources"]["ads_config"]["api_type"] == "DELTA_GRPC"
    assert sotw["dynamic_resources"]["ads_config"]["api_type"] == "GRPC"


def test_xds_cluster_is_static_http2_with_fast_reconnect() -> None:
    msg = parse(build_bootstrap(SIDECAR, xds_host="127.0.0.1", xds_port=15010, admin_port=2))
    (cluster,) = msg.static_resources.clusters
    assert cluster.name == "xds_cluster"
    assert cluster.type == cluster.STATIC
    assert cluster.connect_timeout.seconds == 1
    opts = cluster.typed_extension_protocol_options[
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert "HttpProtocolOptions" in opts.type_url
    addr = cluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address
    assert (addr.socket_address.address, addr.socket_address.port_value) == ("127.0.0.1", 15010)
    grpc = msg.dynamic_resources.ads_config.grpc_services[0]
    assert grpc.envoy_grpc.cluster_name == "xds_cluster"
    backoff = grpc.envoy_grpc.retry_policy.retry_back_off
    assert backoff.base_interval.ToMilliseconds() == 100
    assert backoff.max_interval.ToMilliseconds() == 1000
    assert not grpc.initial_metadata


def test_a_host_name_uses_dns_instead_of_static() -> None:
    cfg = build_bootstrap(SIDECAR, xds_host="localhost", xds_port=15010, admin_port=2)
    assert cfg["static_resources"]["clusters"][0]["type"] == "STRICT_DNS"
    parse(cfg)


def test_token_goes_into_grpc_initial_metadata() -> None:
    msg = parse(build_bootstrap(SIDECAR, xds_host="127.0.0.1", xds_port=1, admin_port=2,
                                token="s3cret"))
    (md,) = msg.dynamic_resources.ads_config.grpc_services[0].initial_metadata
    assert (md.key, md.value) == ("authorization", "Bearer s3cret")


def test_access_log_path_travels_in_node_metadata() -> None:
    msg = parse(build_bootstrap(SIDECAR, xds_host="127.0.0.1", xds_port=1, admin_port=2,
                                access_log_path="/tmp/a.log"))
    assert msg.node.metadata["ACCESS_LOG_PATH"] == "/tmp/a.log"


CLUSTER = "outbound|80||sample-app.default.svc.cluster.local"


@pytest.mark.parametrize(("stat", "kept"), [
    (f"cluster.{CLUSTER}.upstream_rq_total", True),
    (f"cluster.{CLUSTER}.upstream_rq_503", True),
    (f"cluster.{CLUSTER}.upstream_rq_retry", True),
    (f"cluster.{CLUSTER}.upstream_rq_timeout", True),
    (f"cluster.{CLUSTER}.upstream_rq_pending_overflow", True),
    (f"cluster.{CLUSTER}.upstream_cx_overflow", True),
    (f"cluster.{CLUSTER}.circuit_breakers.default.rq_open", True),
    (f"cluster.{CLUSTER}.outlier_detection.ejections_active", True),
    (f"cluster.{CLUSTER}.membership_healthy", True),
    ("cluster.xds_cluster.upstream_cx_rx_bytes_buffered", True),
    ("control_plane.connected_state", True),
    ("http.inbound_0.0.0.0_15006.downstream_rq_2xx", True),
    ("listener.127.0.0.1_15001.downstream_cx_total", True),
    ("server.live", True),
    (f"cluster.{CLUSTER}.upstream_cx_rx_bytes_buffered", False),
    (f"cluster.{CLUSTER}.bind_errors", False),
    (f"cluster.{CLUSTER}.assignment_stale", False),
])
def test_stats_inclusion_list_keeps_what_the_product_reads(stat: str, kept: bool) -> None:
    def matches(pattern: dict) -> bool:
        if "prefix" in pattern:
            return stat.startswith(pattern["prefix"])
        return re.fullmatch(pattern["safe_regex"]["regex"], stat) is not None

    assert any(matches(p) for p in STATS_INCLUSIONS) is kept


def test_write_bootstrap_writes_json_atomically(tmp_path) -> None:
    cfg = build_bootstrap(SIDECAR, xds_host="127.0.0.1", xds_port=1, admin_port=2)
    path = write_bootstrap(tmp_path / "a" / "bootstrap.json", cfg)
    assert json.loads(path.read_text()) == cfg
    assert [p.name for p in path.parent.iterdir()] == ["bootstrap.json"]
