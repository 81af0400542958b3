"""Option parsing and the sidecar/gateway runs they produce (no processes started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshpilot.proxy.gateway import GatewayOptions, gateway_run, parse_port_map
from meshpilot.proxy.registration import parse_host_port, workload_entry
from meshpilot.proxy.sidecar import SidecarOptions, sidecar_run
from meshpilot.proxy.supervisor import parse_labels


def test_port_map_parses_pairs_and_bare_ports() -> None:
    assert parse_port_map("80:8080, 443:8443") == {80: 8080, 443: 8443}
    assert parse_port_map("9090") == {9090: 9090}
    assert parse_port_map("") == {}
    assert parse_port_map(None) == {}


@pytest.mark.parametrize(("text", "message"), [
    ("80:x", "'x' is not a port"),
    ("80-8080", "'80-8080' is not a port"),
    ("80:8080:1", "want GATEWAY_PORT:BIND_PORT"),
    ("0:8080", "'0' is not a port"),
    ("80:70000", "'70000' is not a port"),
    ("80:8080,80:8081", "port 80 is mapped twice"),
    ("80:8080,81:8080", "ports 80 and 81 both bind 8080"),
    (":8080", "'' is not a port"),
])
def test_port_map_errors_are_clear(text: str, message: str) -> None:
    with pytest.raises(ValueError, match="bad --port-map") as info:
        parse_port_map(text)
    assert message in str(info.value)


def test_labels_parse_and_reject_missing_equals() -> None:
    assert parse_labels("app=sample-app, version=v1") == {"app": "sample-app", "version": "v1"}
    assert parse_labels("") == {}
    with pytest.raises(ValueError, match="bad label 'app'"):
        parse_labels("app,version=v1")
    with pytest.raises(ValueError, match="bad label '=v1'"):
        parse_labels("=v1")


def test_host_port() -> None:
    assert parse_host_port("127.0.0.1:15010") == ("127.0.0.1", 15010)
    assert parse_host_port("[::1]:15010") == ("::1", 15010)
    for bad in ("127.0.0.1", "host:", ":15010", "h:99999"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_host_port(bad)


def test_sidecar_run_fills_ports_env_and_annotations(tmp_path: Path) -> None:
    run = sidecar_run(SidecarOptions(
        name="sample-app-v1", namespace="default", app_port=8081, inbound_port=18001,
        outbound_port=18002, admin_port=18003, labels={"app": "sample-app"},
        state_dir=tmp_path, command=["app", "--flag"]))
    info = run.info
    assert (info.kind, info.inbound_port, info.app_port, info.outbound_port) == (
        "sidecar", 18001, 8081, 18002)
    assert run.admin_port == 18003
    assert run.we_ports == {"http": 18001}
    assert run.directory == tmp_path / "proxies" / "default" / "sample-app-v1"
    assert run.annotations["meshpilot.io/inbound-port"] == "18001"
    assert run.annotations["meshpilot.io/app-port"] == "8081"
    assert run.app_env["MESHPILOT_APP_PORT"] == "8081"
    assert run.app_env["http_proxy"] == run.app_env["HTTP_PROXY"] == "http://127.0.0.1:18002"
    assert "127.0.0.1:8081" in run.app_env["no_proxy"].split(",")
    assert list(run.app_argv) == ["app", "--flag"]


def test_sidecar_defaults_pick_free_distinct_ports(tmp_path: Path) -> None:
    run = sidecar_run(SidecarOptions(name="a", namespace="ns", app_port=8081, state_dir=tmp_path))
    ports = {run.info.inbound_port, run.info.outbound_port, run.admin_port, 8081}
    assert len(ports) == 4
    assert run.concurrency == 1


def test_sidecar_rejects_clashing_ports(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--app-port and --inbound-port are both 8081"):
        sidecar_run(SidecarOptions(name="a", namespace="ns", app_port=8081, inbound_port=8081,
                                   state_dir=tmp_path))


def test_gateway_run(tmp_path: Path) -> None:
    run = gateway_run(GatewayOptions(name="istio-ingressgateway", namespace="istio-system",
                                     labels={"istio": "ingressgateway"}, state_dir=tmp_path))
    info = run.info
    assert (info.kind, info.outbound_port, info.inbound_port) == ("gateway", None, None)
    assert dict(info.port_map) == {80: 8080, 443: 8443}
    assert run.concurrency == 2
    assert run.we_ports == {"port-80": 8080, "port-443": 8443}
    assert run.annotations["meshpilot.io/port-map"] == "80:8080,443:8443"
    assert not run.app_argv


def test_workload_entry_body_is_a_valid_resource() -> None:
    from meshpilot.api.decode import decode
    from meshpilot.controlplane.apply import documents_from_json

    body = workload_entry("sample-app-v1", "default", address="127.0.0.1",
                          ports={"http": 18001}, labels={"app": "sample-app"},
                          annotations={"meshpilot.io/pid": "1"}, service_account="sa")
    decoded = decode(documents_from_json([body]), namespace=None)
    assert not decoded.errors
    (res,) = decoded.resources
    assert res.kind == "WorkloadEntry"
    assert res.body["serviceAccount"] == "sa"
    assert res.annotations == {"meshpilot.io/pid": "1"}
    assert res.labels == {"app": "sample-app"}
