"""Gateway proxies: which Gateways and VirtualServices apply, how servers merge per port,
and how TLS credentials become SDS secrets (Istio's gateway.go semantics)."""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any

from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2

from meshpilot.api.resource import Resource
from meshpilot.cli.create_command import tls_secret
from meshpilot.cli.main import build_parser
from meshpilot.snapshot import MeshSnapshot
from meshpilot.xds.translate import resources_to_json, translate
from meshpilot.xds.translate.gateway import gateway_resources, intersect_hosts
from meshpilot.xds.types import SECRET_TYPE, ProxyResources

from .helpers import CLIENT, EXAMPLES, GATEWAY, assert_consistent, load, resource, stamp

HOST = "sample-app.hashfoundry.local"
PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def secret(name: str, data: dict[str, bytes], namespace: str = "istio-system") -> Resource:
    body = {"type": "Opaque", "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
    return Resource("v1", "Secret", name, namespace, body)


def gateway(name: str, servers: list[dict[str, Any]], selector: dict[str, str] | None = None,
            namespace: str = "traffic-demo") -> Resource:
    return resource("Gateway", name, {
        "selector": {"istio": "ingressgateway"} if selector is None else selector,
        "servers": servers}, namespace)


def server(number: int, name: str, hosts: list[str], protocol: str = "HTTP",
           tls: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"port": {"number": number, "name": name, "protocol": protocol},
                           "hosts": hosts}
    if tls is not None:
        out["tls"] = tls
    return out


def vs(name: str, hosts: list[str], gateways: list[str], http: list[dict[str, Any]] | None = None,
       namespace: str = "traffic-demo") -> Resource:
    rules = http or [{"route": [{"destination": {"host": "sample-app", "subset": "v1"}}]}]
    return resource("VirtualService", name, {"hosts": hosts, "gateways": gateways,
                                             "http": rules}, namespace)


def build(*extra: Resource) -> MeshSnapshot:
    base = load(EXAMPLES / "base" / "10-sample-app-service.yaml",
                EXAMPLES / "base" / "20-sample-app-subsets.yaml")
    return MeshSnapshot.build(stamp([*base, *extra]), 1)


def gw_translate(*extra: Resource) -> ProxyResources:
    out = translate(build(*extra), GATEWAY)
    assert_consistent(out)
    return out


def route_config(res: ProxyResources, name: str) -> route_pb2.RouteConfiguration:
    msg = res.routes[name]
    assert isinstance(msg, route_pb2.RouteConfiguration)
    return msg


def listener(res: ProxyResources, name: str) -> listener_pb2.Listener:
    msg = res.listeners[name]
    assert isinstance(msg, listener_pb2.Listener)
    return msg


def vhosts(res: ProxyResources, name: str) -> dict[str, list[str]]:
    """vhost name -> route path prefixes."""
    return {v.name: [r.match.prefix for r in v.routes]
            for v in route_config(res, name).virtual_hosts}


def tls_of(chain: Any) -> tls_pb2.DownstreamTlsContext:
    ctx = tls_pb2.DownstreamTlsContext()
    chain.transport_socket.typed_config.Unpack(ctx)
    return ctx


TLS_DATA = {"tls.crt": PEM, "tls.key": b"-----BEGIN PRIVATE KEY-----\nk\n"}


def test_http_server_listener_binds_mapped_port_with_one_route_config() -> None:
    res = gw_translate(gateway("gw", [server(80, "http", [HOST])]), vs("v", [HOST], ["gw"]))
    lis = listener(res, "0.0.0.0_80")
    assert lis.address.socket_address.port_value == 8080
    assert list(res.routes) == ["http.80"]
    rcfg = route_config(res, "http.80")
    assert rcfg.ignore_port_in_host_matching  # Host: name:8080 still matches
    assert [(v.name, list(v.domains)) for v in rcfg.virtual_hosts] == [
        (f"{HOST}:80", [HOST])]


def test_selector_must_be_subset_of_proxy_labels_in_any_namespace() -> None:
    res = gw_translate(gateway("mine", [server(80, "http", [HOST])]),
                       gateway("theirs", [server(81, "http", [HOST])], {"istio": "other"}),
                       gateway("everyone", [server(82, "http", [HOST])], {}, "elsewhere"))
    assert sorted(res.listeners) == ["0.0.0.0_80", "0.0.0.0_82"]


def test_sidecars_get_no_gateway_config() -> None:
    snap = build(gateway("gw", [server(443, "https", [HOST], "HTTPS",
                                       {"mode": "SIMPLE", "credentialName": "c"})]),
                 secret("c", TLS_DATA, "traffic-demo"))
    res = translate(snap, CLIENT)
    assert SECRET_TYPE not in res.by_type
    assert not any(name.startswith("0.0.0.0_") for name in res.listeners)


def test_gateway_references_short_and_qualified_names() -> None:
    res = gw_translate(gateway("gw", [server(80, "http", ["*"])]),
                       vs("short", ["a.example.com"], ["gw"]),
                       vs("qualified", ["b.example.com"], ["traffic-demo/gw"], namespace="other"),
                       vs("wrong-ns", ["c.example.com"], ["gw"], namespace="other"),
                       vs("mesh-only", ["d.example.com"], ["mesh"]))
    assert sorted(vhosts(res, "http.80")) == ["a.example.com:80", "b.example.com:80"]


def test_namespaced_server_hosts_admit_only_that_namespace() -> None:
    res = gw_translate(gateway("gw", [server(80, "http", ["traffic-demo/a.example.com",
                                                           "./b.example.com",
                                                           "*/c.example.com"])]),
                       vs("here", ["a.example.com", "b.example.com"], ["traffic-demo/gw"]),
                       vs("there", ["a2.example.com", "c.example.com"], ["traffic-demo/gw"],
                          namespace="other"),
                       vs("there2", ["a.example.com"], ["traffic-demo/gw"], namespace="other2"))
    assert sorted(vhosts(res, "http.80")) == ["a.example.com:80", "b.example.com:80",
                                              "c.example.com:80"]
    # a.example.com only from traffic-demo's VirtualService, not other2's.
    assert len(vhosts(res, "http.80")["a.example.com:80"]) == 1


def test_host_intersection_picks_the_more_specific_name() -> None:
    assert intersect_hosts(["*.example.com"], ["a.example.com"]) == ["a.example.com"]
    assert intersect_hosts(["a.example.com"], ["*.example.com"]) == ["a.example.com"]
    assert intersect_hosts(["*"], ["*.example.com"]) == ["*.example.com"]
    assert intersect_hosts(["a.example.com"], ["b.example.com"]) == []


def test_virtual_services_for_one_host_concatenate_oldest_first_catch_all_last() -> None:
    res = gw_translate(
        gateway("gw", [server(80, "http", [HOST])]),
        vs("first", [HOST], ["gw"], [{"match": [{"uri": {"prefix": "/a"}}],
                                      "route": [{"destination": {"host": "sample-app"}}]},
                                     {"route": [{"destination": {"host": "sample-app"}}]}]),
        vs("second", [HOST], ["gw"], [{"match": [{"uri": {"prefix": "/b"}}],
                                       "route": [{"destination": {"host": "sample-app"}}]}]),
    )
    assert vhosts(res, "http.80") == {f"{HOST}:80": ["/a", "/b", "/"]}


def test_match_port_and_match_gateways_filter_rules() -> None:
    rules = [{"match": [{"uri": {"prefix": "/p443"}, "port": 443}],
              "route": [{"destination": {"host": "sample-app"}}]},
             {"match": [{"uri": {"prefix": "/other-gw"}, "gateways": ["other"]}],
              "route": [{"destination": {"host": "sample-app"}}]},
             {"match": [{"uri": {"prefix": "/p80"}, "port": 80}],
              "route": [{"destination": {"host": "sample-app"}}]}]
    res = gw_translate(gateway("gw", [server(80, "http", [HOST])]),
                       vs("v", [HOST], ["gw", "other"], rules))
    # port is the server port (80), not the bind port (8080)
    assert vhosts(res, "http.80") == {f"{HOST}:80": ["/p80"]}


def test_no_virtual_service_answers_404_from_blackhole_vhost() -> None:
    res = gw_translate(gateway("gw", [server(80, "http", [HOST])]))
    rcfg = route_config(res, "http.80")
    assert [(v.name, list(v.domains), len(v.routes)) for v in rcfg.virtual_hosts] == [
        ("blackhole:80", ["*"], 0)]


def test_https_redirect_requires_tls_even_without_virtual_service() -> None:
    res = gw_translate(
        gateway("gw", [server(80, "http", [HOST], tls={"httpsRedirect": True}),
                       server(80, "http2", ["plain.example.com"])]),
        vs("v", ["plain.example.com"], ["gw"]))
    by_name = {v.name: v for v in route_config(res, "http.80").virtual_hosts}
    assert by_name[f"{HOST}:80"].require_tls == rc.VirtualHost.ALL
    assert by_name["plain.example.com:80"].require_tls == rc.VirtualHost.NONE


def test_simple_tls_uses_sds_secret_from_proxy_namespace() -> None:
    res = gw_translate(
        gateway("gw", [server(443, "https", [HOST], "HTTPS",
                              {"mode": "SIMPLE", "credentialName": "cred",
                               "minProtocolVersion": "TLSV1_3",
                               "cipherSuites": ["ECDHE-RSA-AES128-GCM-SHA256", "bogus",
                                                "ECDHE-RSA-AES128-GCM-SHA256"]})]),
        vs("v", [HOST], ["gw"]), secret("cred", TLS_DATA))
    assert list(res.secrets) == ["kubernetes://cred"]
    assert res.secrets["kubernetes://cred"].tls_certificate.certificate_chain.inline_bytes == PEM
    (chain,) = listener(res, "0.0.0.0_443").filter_chains
    assert list(chain.filter_chain_match.server_names) == [HOST]
    ctx = tls_of(chain)
    common = ctx.common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["kubernetes://cred"]
    assert common.tls_params.tls_minimum_protocol_version == common_pb2.TlsParameters.TLSv1_3
    assert list(common.tls_params.cipher_suites) == ["ECDHE-RSA-AES128-GCM-SHA256"]
    assert not ctx.require_client_certificate.value
    assert "https.443.https.gw.traffic-demo" in res.routes
    assert [lf.name for lf in listener(res, "0.0.0.0_443").listener_filters] == [
        "envoy.filters.listener.tls_inspector"]


def test_mutual_tls_ca_from_ca_crt_or_cacert_secret() -> None:
    def mutual(*secrets: Resource, mode: str = "MUTUAL") -> ProxyResources:
        return gw_translate(
            gateway("gw", [server(443, "https", [HOST], "HTTPS",
                                  {"mode": mode, "credentialName": "cred"})]),
            vs("v", [HOST], ["gw"]), *secrets)

    own = mutual(secret("cred", {**TLS_DATA, "ca.crt": PEM}))
    assert sorted(own.secrets) == ["kubernetes://cred", "kubernetes://cred-cacert"]
    ctx = tls_of(listener(own, "0.0.0.0_443").filter_chains[0])
    assert ctx.require_client_certificate.value
    sds = ctx.common_tls_context.combined_validation_context.validation_context_sds_secret_config
    assert sds.name == "kubernetes://cred-cacert"
    split = mutual(secret("cred", TLS_DATA), secret("cred-cacert", {"cacert": PEM}),
                   mode="OPTIONAL_MUTUAL")
    assert split.secrets["kubernetes://cred-cacert"].validation_context.trusted_ca.inline_bytes \
        == PEM
    assert not tls_of(listener(split, "0.0.0.0_443").filter_chains[0]) \
        .require_client_certificate.value
    no_ca = mutual(secret("cred", TLS_DATA))
    assert "0.0.0.0_443" not in no_ca.listeners and not no_ca.secrets


def test_missing_credential_skips_only_that_server_and_is_diagnosed() -> None:
    we = resource("WorkloadEntry", "istio-ingressgateway",
                  {"address": "127.0.0.1", "labels": {"istio": "ingressgateway"}}, "istio-system")
    we = replace(we, annotations={"meshpilot.io/port-map": "80:8080,443:8443"})
    resources = (gateway("gw", [server(80, "http", [HOST]),
                                server(443, "https", [HOST], "HTTPS",
                                       {"mode": "SIMPLE", "credentialName": "missing"})]),
                 vs("v", [HOST], ["gw"]), we)
    snap = build(*resources)
    res = translate(snap, GATEWAY)
    assert_consistent(res)
    assert list(res.listeners) == ["0.0.0.0_80"] and not res.secrets
    problems = gateway_resources(snap, GATEWAY, res.clusters.keys()).problems
    assert problems == ["Gateway traffic-demo/gw server https: Secret istio-system/missing "
                        "does not exist; server skipped"]
    assert any("server https (port 443) is not served: Secret istio-system/missing does not "
               "exist" in d for d in snap.diagnostics), snap.diagnostics


def test_http_and_https_on_one_port_conflict_first_wins() -> None:
    res = gw_translate(gateway("gw", [server(8000, "http", [HOST]),
                                      server(8000, "https", ["b.example.com"], "HTTPS",
                                             {"mode": "SIMPLE", "credentialName": "c"})]),
                       secret("c", TLS_DATA))
    assert list(res.routes) == ["http.8000"] and not res.secrets


def test_file_certificates_are_read_by_envoy() -> None:
    res = gw_translate(gateway("gw", [server(443, "https", [HOST], "HTTPS", {
        "mode": "MUTUAL", "serverCertificate": "/etc/certs/tls.crt",
        "privateKey": "/etc/certs/tls.key", "caCertificates": "/etc/certs/ca.crt"})]))
    common = tls_of(listener(res, "0.0.0.0_443").filter_chains[0]).common_tls_context
    assert common.tls_certificates[0].certificate_chain.filename == "/etc/certs/tls.crt"
    assert common.validation_context.trusted_ca.filename == "/etc/certs/ca.crt"
    assert not res.secrets


def test_passthrough_routes_by_sni_with_tcp_proxy() -> None:
    res = gw_translate(
        gateway("gw", [server(443, "tls", ["*.example.com"], "TLS", {"mode": "PASSTHROUGH"})]),
        resource("VirtualService", "pt", {
            "hosts": ["a.example.com"], "gateways": ["gw"],
            "tls": [{"match": [{"sniHosts": ["a.example.com"]}],
                     "route": [{"destination": {"host": "sample-app",
                                                "port": {"number": 80}}}]}]}))
    (chain,) = listener(res, "0.0.0.0_443").filter_chains
    assert list(chain.filter_chain_match.server_names) == ["a.example.com"]
    assert chain.filters[0].name == "envoy.filters.network.tcp_proxy"
    assert not res.routes


def test_tcp_server_proxies_to_first_fitting_tcp_route() -> None:
    tcp_vs = resource("VirtualService", "tcp", {
        "hosts": ["*"], "gateways": ["gw"],
        "tcp": [{"match": [{"port": 9999}], "route": [{"destination": {"host": "sample-app",
                                                                        "subset": "v2"}}]},
                {"match": [{"port": 31400, "gateways": ["gw"]}],
                 "route": [{"destination": {"host": "sample-app", "subset": "v1"}}]}]})
    res = gw_translate(gateway("gw", [server(31400, "tcp", ["*"], "TCP")]), tcp_vs)
    lst = listener(res, "0.0.0.0_31400")
    (chain,) = lst.filter_chains
    assert not chain.filter_chain_match.server_names and not lst.listener_filters
    tcp = tcp_proxy_pb2.TcpProxy()
    chain.filters[0].typed_config.Unpack(tcp)
    assert tcp.cluster == "outbound|80|v1|sample-app.traffic-demo.svc.cluster.local"
    assert not res.routes
    # No fitting rule: no listener. HTTP then TCP on one port: the TCP server is dropped.
    res = gw_translate(gateway("gw", [server(31400, "tcp", ["*"], "TCP")]))
    assert "0.0.0.0_31400" not in res.listeners
    snap = build(gateway("gw", [server(8000, "http", [HOST]), server(8000, "tcp", ["*"], "TCP")]),
                 tcp_vs)
    out = gateway_resources(snap, GATEWAY, ())
    assert list(out.routes) == ["http.8000"]
    assert any("conflicting server skipped" in p for p in out.problems), out.problems


def test_tls_terminated_tcp_server_proxies_to_tcp_route_behind_tls() -> None:
    tcp_vs = resource("VirtualService", "tcp", {
        "hosts": ["tls.example.com"], "gateways": ["gw"],
        "tcp": [{"match": [{"port": 9999}], "route": [{"destination": {"host": "sample-app",
                                                                        "subset": "v2"}}]},
                {"route": [{"destination": {"host": "sample-app", "subset": "v1"}}]}]})
    tls_server = server(8443, "tls", ["tls.example.com"], "TLS",
                        {"mode": "SIMPLE", "credentialName": "cred"})
    res = gw_translate(gateway("gw", [tls_server]), tcp_vs, secret("cred", TLS_DATA))
    (chain,) = listener(res, "0.0.0.0_8443").filter_chains
    assert list(chain.filter_chain_match.server_names) == ["tls.example.com"]
    tcp = tcp_proxy_pb2.TcpProxy()
    chain.filters[0].typed_config.Unpack(tcp)
    assert tcp.cluster == "outbound|80|v1|sample-app.traffic-demo.svc.cluster.local"
    common = tls_of(chain).common_tls_context
    assert [s.name for s in common.tls_certificate_sds_secret_configs] == ["kubernetes://cred"]
    assert not common.alpn_protocols
    assert list(res.secrets) == ["kubernetes://cred"] and not res.routes
    # No tcp rule: no listener; no Secret: the server is skipped.
    assert "0.0.0.0_8443" not in gw_translate(gateway("gw", [tls_server]),
                                              secret("cred", TLS_DATA)).listeners
    assert "0.0.0.0_8443" not in gw_translate(gateway("gw", [tls_server]), tcp_vs).listeners


def test_seed_gateway_translation_is_deterministic() -> None:
    args = (load(EXAMPLES / "base"))
    snap_a = MeshSnapshot.build(stamp(args), 1)
    snap_b = MeshSnapshot.build(stamp(args), 1)
    assert resources_to_json(translate(snap_a, GATEWAY)) == \
        resources_to_json(translate(snap_b, GATEWAY))


def test_create_secret_tls_builds_a_kubernetes_tls_secret() -> None:
    doc = tls_secret("sample-app-tls", "istio-system", b"C", b"K", b"A")
    assert doc["type"] == "kubernetes.io/tls"
    assert doc["metadata"] == {"name": "sample-app-tls", "namespace": "istio-system"}
    assert {k: base64.b64decode(v) for k, v in doc["data"].items()} == {
        "tls.crt": b"C", "tls.key": b"K", "ca.crt": b"A"}
    args = build_parser().parse_args(["create", "secret", "tls", "x", "--cert", "c",
                                      "--key", "k", "-n", "ns"])
    assert (args.name, args.cert, args.key, args.ca, args.namespace) == ("x", "c", "k", None,
                                                                         "ns")
