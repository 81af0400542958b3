"""proxy-config tables from recorded Envoy dumps (tests/data/diagnostics, taken from a real
mesh: the seed's 90/10 canary seen by a client sidecar, and the ingress gateway with its
TLS secret). The column layout is istioctl's, so these pin it down exactly."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from meshpilot.cli.diagnostics import configdump as cd
from meshpilot.cli.diagnostics.clusters_table import (
    ClusterFilter,
    EndpointFilter,
    clusters_table,
    endpoints_table,
    filter_cluster_statuses,
)
from meshpilot.cli.diagnostics.eds_table import eds_table
from meshpilot.cli.diagnostics.listeners_table import ListenerFilter, listeners_table
from meshpilot.cli.diagnostics.proxy_config import bootstrap_summary
from meshpilot.cli.diagnostics.routes_table import routes_table
from meshpilot.cli.diagnostics.secrets_table import secret_items, secrets_table

DATA = Path(__file__).parents[2] / "data" / "diagnostics"
HOST = "sample-app.traffic-demo.svc.cluster.local"
WHILE_VALID = datetime(2026, 11, 28, tzinfo=UTC)


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


@pytest.fixture(scope="module")
def client() -> dict[str, Any]:
    return load("client-config_dump.json")


@pytest.fixture(scope="module")
def gateway() -> dict[str, Any]:
    return load("gateway-config_dump.json")


def test_clusters_table_is_istioctls(client: dict[str, Any]) -> None:
    assert clusters_table(cd.clusters(client), ClusterFilter()) == "\n".join([
        "SERVICE FQDN                                  PORT      SUBSET     DIRECTION     TYPE"
        "                      DESTINATION RULE",
        "                                              23027     -          inbound       STATIC",
        "BlackHoleCluster                              -         -          -             STATIC",
        "PassthroughCluster                            -         -          -             "
        "DYNAMIC_FORWARD_PROXY",
        f"{HOST}     80        -          outbound      EDS                       "
        "sample-app-subsets.traffic-demo",
        f"{HOST}     80        v1         outbound      EDS                       "
        "sample-app-subsets.traffic-demo",
        f"{HOST}     80        v2         outbound      EDS                       "
        "sample-app-subsets.traffic-demo",
        "xds_cluster                                   -         -          -             STATIC",
    ])


@pytest.mark.parametrize(("flt", "expected"), [
    (ClusterFilter(subset="v2"), [f"outbound|80|v2|{HOST}"]),
    (ClusterFilter(port=80, fqdn="sample-app"),
     [f"outbound|80|v1|{HOST}", f"outbound|80|v2|{HOST}", f"outbound|80||{HOST}"]),
    (ClusterFilter(direction="inbound"), ["inbound|23027||"]),
    (ClusterFilter(port=81), []),
])
def test_cluster_filters_are_istioctls_substring_matches(
        client: dict[str, Any], flt: ClusterFilter, expected: list[str]) -> None:
    assert sorted(c["name"] for c in cd.clusters(client) if flt.verify(c["name"])) == expected


def test_cluster_table_with_type_column(client: dict[str, Any]) -> None:
    lines = clusters_table(cd.clusters(client), ClusterFilter(subset="v1"),
                           include_type=True).splitlines()
    assert lines[0].split()[:3] == ["NAME", "SERVICE", "FQDN"]
    assert lines[1].startswith(f"cluster/outbound|80|v1|{HOST}     {HOST}")


def test_listeners_table(client: dict[str, Any], gateway: dict[str, Any]) -> None:
    assert listeners_table(cd.listeners(client), ListenerFilter()) == "\n".join([
        "ADDRESSES PORT  MATCH DESTINATION",
        "127.0.0.1 26978 ALL   Route: 26978",
        "127.0.0.1 28865 ALL   Route: inbound|23027||",
    ])
    assert listeners_table(cd.listeners(gateway), ListenerFilter()) == "\n".join([
        "ADDRESSES PORT  MATCH                             DESTINATION",
        "127.0.0.1 24162 SNI: sample-app.hashfoundry.local "
        "Route: https.443.https.sample-app-gateway.traffic-demo",
        "127.0.0.1 31487 ALL                               Route: http.80",
    ])
    assert listeners_table(cd.listeners(client), ListenerFilter(port=26978, verbose=False)) == \
        "ADDRESSES PORT  TYPE\n127.0.0.1 26978 HTTP"


def test_routes_table_shows_headers_and_weights(client: dict[str, Any]) -> None:
    assert routes_table(cd.route_configs(client)) == "\n".join([
        "NAME                VHOST NAME                                       DOMAINS"
        "                                 MATCH                VIRTUAL SERVICE"
        "                     DESTINATION",
        f"26978               {HOST}:80     sample-app, sample-app.traffic-demo     "
        "/* (canary=true)     sample-app-routing.traffic-demo     v2",
        f"26978               {HOST}:80     sample-app, sample-app.traffic-demo     "
        "/*                   sample-app-routing.traffic-demo     v1:90% v2:10%",
        "inbound|23027||     inbound|http|23027                               *"
        "                                       /*                                "
        "                       inbound|23027||",
    ])
    assert routes_table(cd.route_configs(client), verbose=False) == \
        "NAME                VIRTUAL HOSTS\n26978               2\ninbound|23027||     1"
    assert routes_table(cd.route_configs(client), name="nope").splitlines()[1:] == []


def test_gateway_routes_name_the_cluster_of_another_host(gateway: dict[str, Any]) -> None:
    rows = [line.split() for line in routes_table(cd.route_configs(gateway)).splitlines()[1:]]
    assert [(r[0], r[3], r[5]) for r in rows] == [
        ("http.80", "/v2*", f"outbound|80|v2|{HOST}"),
        ("http.80", "/*", f"outbound|80|v1|{HOST}"),
        ("https.443.https.sample-app-gateway.traffic-demo", "/v2*", f"outbound|80|v2|{HOST}"),
        ("https.443.https.sample-app-gateway.traffic-demo", "/*", f"outbound|80|v1|{HOST}"),
    ]


def test_endpoints_table_from_admin_clusters() -> None:
    data = load("client-clusters.json")
    assert endpoints_table(data, EndpointFilter(cluster=f"outbound|80|v2|{HOST}")) == "\n".join([
        "ENDPOINT            STATUS      OUTLIER CHECK     CLUSTER",
        f"127.0.0.1:30906     HEALTHY     OK                outbound|80|v2|{HOST}",
    ])
    rows = endpoints_table(data, EndpointFilter(status="healthy")).splitlines()
    assert len(rows) == 7  # header + inbound, xds, v1, v2 and both in the default cluster
    assert endpoints_table(data, EndpointFilter(status="UNHEALTHY")).count("\n") == 0
    [status] = filter_cluster_statuses(data, EndpointFilter(port=30906, cluster=f"outbound|80|"
                                                            f"v2|{HOST}"))
    assert status["name"] == f"outbound|80|v2|{HOST}"


def test_ejected_endpoint_shows_failed_outlier_check() -> None:
    data = {"cluster_statuses": [{"name": "c", "host_statuses": [
        {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}},
         "health_status": {"eds_health_status": "HEALTHY", "failed_outlier_check": True}},
        {"address": {"socket_address": {"address": "10.0.0.2", "port_value": 80}},
         "health_status": {}}]}]}
    assert endpoints_table(data, EndpointFilter()).splitlines()[1:] == [
        "10.0.0.1:80     HEALTHY     FAILED            c",
        "10.0.0.2:80     UNKNOWN     OK                c",
    ]


def test_eds_section_of_all(client: dict[str, Any]) -> None:
    lines = eds_table(client, include_type=True).splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "LOCALITY", "CLUSTER"]
    assert f"endpoint/127.0.0.1:27703     HEALTHY                  outbound|80|v1|{HOST}" in lines


def test_secrets_table(gateway: dict[str, Any], client: dict[str, Any]) -> None:
    assert secrets_table(gateway, now=WHILE_VALID) == "\n".join([
        "RESOURCE NAME                   TYPE           STATUS     VALID CERT     SERIAL NUMBER"
        "                                NOT AFTER                NOT BEFORE",
        "kubernetes://sample-app-tls     Cert Chain     ACTIVE     true           "
        "4d139eae343a36610c1670a08c09e488d91d0ea7     2026-11-29T12:26:25Z     "
        "2026-11-27T12:26:25Z",
    ])
    [expired] = secret_items(gateway, now=datetime(2027, 1, 1, tzinfo=UTC))
    assert expired["cert_valid"] is False
    assert secrets_table(client) == "No secret items to show."


def test_bootstrap_summary(client: dict[str, Any]) -> None:
    assert bootstrap_summary(client) == ("Node:          test-client.traffic-demo\n"
                                         "Envoy Version: 1.40.0/Clean/RELEASE/BoringSSL")


def test_sections_and_istio_config_rendering(client: dict[str, Any]) -> None:
    assert cd.section(client, cd.SECRETS) == {"@type": cd.SECRETS}
    assert cd.section({"configs": []}, cd.CLUSTERS) == {}
    assert cd.istio_config({"filter_metadata": {"istio": {
        "config": "/apis/networking.istio.io/v1/namespaces/ns/virtual-service/vs"}}}) == "vs.ns"
    assert cd.istio_config({"filter_metadata": {"istio": {"config": "/x"}}}) == "<unknown>"
    assert cd.istio_config(None) == ""
    assert cd.latest_update(client, cd.ROUTES, "dynamic_route_configs").startswith("2026-")
