"""VirtualService analyzers: each check on a small input, and the near miss that passes."""

from __future__ import annotations

from meshpilot.analyze.analyzers import virtualservice as vs_analyzers

from .helpers import lines, service, workload


def vs(name: str = "route", ns: str = "shop", *, hosts: str = "[sample-app]", body: str = "",
       gateways: str = "", export_to: str = "") -> str:
    extra = f"\n  gateways: {gateways}" if gateways else ""
    extra += f"\n  exportTo: {export_to}" if export_to else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: {hosts}{extra}
{body}"""


def route(host: str, extra: str = "") -> str:
    return f"""  http:
  - route:
    - destination: {{host: {host}{extra}}}"""


def dr(host: str = "sample-app", ns: str = "shop",
       subsets: str = "[{name: v1, labels: {version: v1}}]", name: str = "sample-app") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {host}
  subsets: {subsets}
"""


SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin, namespace: egress}
spec:
  hosts: [httpbin.org]
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
"""

ANALYZERS = vs_analyzers.ANALYZERS


# --- destination hosts ----------------------------------------------------------------------


def test_missing_destination_host_is_ist0101() -> None:
    assert lines(vs(body=route("reviews")), analyzers=ANALYZERS) == [
        'Error [IST0101] (VirtualService shop/route) Referenced host not found: "reviews"']


def test_short_name_fqdn_and_service_entry_hosts_are_found() -> None:
    docs = [service("sample-app"), SE]
    assert lines(vs(body=route("sample-app")), *docs, analyzers=ANALYZERS) == []
    assert lines(vs(body=route("sample-app.shop.svc.cluster.local")), *docs,
                 analyzers=ANALYZERS) == []
    assert lines(vs(body=route("httpbin.org", ", port: {number: 80}")), *docs,
                 analyzers=ANALYZERS) == []


def test_short_name_resolves_in_the_virtual_service_namespace() -> None:
    """`sample-app` from namespace `other` means sample-app.other..., which is missing."""
    found = lines(vs(ns="other", body=route("sample-app")), service("sample-app"),
                  analyzers=ANALYZERS)
    assert found == ['Error [IST0101] (VirtualService other/route) Referenced host not found: '
                     '"sample-app"']


def test_a_name_with_a_dot_is_not_expanded_as_istio_does() -> None:
    """Istio treats `sample-app.shop` as an FQDN, so it names no Service (a known false
    positive of istioctl's analyzer, kept so both tools agree)."""
    assert lines(vs(body=route("sample-app.shop")), service("sample-app"),
                 analyzers=ANALYZERS) == [
        'Error [IST0101] (VirtualService shop/route) Referenced host not found: '
        '"sample-app.shop"']


def test_service_not_exported_to_the_virtual_service_namespace_is_not_found() -> None:
    private = service("sample-app").replace(
        "metadata: {name: sample-app, namespace: shop}",
        "metadata: {name: sample-app, namespace: shop, annotations: "
        "{networking.istio.io/exportTo: .}}")
    target = "sample-app.shop.svc.cluster.local"
    assert lines(vs(ns="shop", body=route(target)), private, analyzers=ANALYZERS) == []
    assert lines(vs(ns="other", body=route(target)), private, analyzers=ANALYZERS) == [
        f'Error [IST0101] (VirtualService other/route) Referenced host not found: "{target}"']


def test_wildcard_service_entry_covers_the_host() -> None:
    wildcard = SE.replace("[httpbin.org]", '["*.example.com"]').replace(
        ", {number: 443, name: https, protocol: HTTPS}", "").replace("DNS", "NONE")
    assert lines(vs(body=route("api.example.com")), wildcard, analyzers=ANALYZERS) == []


def test_multi_port_destination_needs_a_port() -> None:
    assert lines(vs(body=route("httpbin.org")), SE, analyzers=ANALYZERS) == [
        'Error [IST0112] (VirtualService shop/route) This VirtualService routes to a service '
        '"httpbin.org" that exposes multiple ports [80 443]. Specifying a port in the '
        'destination is required to disambiguate.']


def test_unknown_destination_port_is_host_port_not_found() -> None:
    assert lines(vs(body=route("sample-app", ", port: {number: 8080}")), service("sample-app"),
                 analyzers=ANALYZERS) == [
        'Error [IST0101] (VirtualService shop/route) Referenced host:port not found: '
        '"sample-app:8080"']


def test_mirror_host_must_exist() -> None:
    body = route("sample-app") + "\n    mirror: {host: shadow}"
    assert lines(vs(body=body), service("sample-app"), analyzers=ANALYZERS) == [
        'Error [IST0101] (VirtualService shop/route) Referenced mirror host not found: "shadow"']
    body = route("sample-app") + "\n    mirror: {host: sample-app}"
    assert lines(vs(body=body), service("sample-app"), analyzers=ANALYZERS) == []


# --- subsets --------------------------------------------------------------------------------


def test_subset_without_destination_rule_is_ist0101_host_subset() -> None:
    docs = [service("sample-app"), dr(), workload("v1", app="sample-app", version="v1")]
    assert lines(vs(body=route("sample-app", ", subset: v3")), *docs, analyzers=ANALYZERS) == [
        'Error [IST0101] (VirtualService shop/route) Referenced host+subset in destinationrule '
        'not found: "sample-app+v3"']
    assert lines(vs(body=route("sample-app", ", subset: v1")), *docs, analyzers=ANALYZERS) == []


def test_subset_key_is_namespace_and_name_of_the_kubernetes_host() -> None:
    """A DestinationRule for the FQDN in another namespace defines the subset too."""
    docs = [service("sample-app"), dr(host="sample-app.shop.svc.cluster.local", ns="infra")]
    assert lines(vs(body=route("sample-app", ", subset: v1")), *docs, analyzers=ANALYZERS) == []


def test_mirror_subset_must_be_defined() -> None:
    body = route("sample-app") + "\n    mirrors: [{destination: {host: sample-app, subset: v9}}]"
    assert lines(vs(body=body), service("sample-app"), dr(), analyzers=ANALYZERS) == [
        'Error [IST0101] (VirtualService shop/route) Referenced mirror+subset in '
        'destinationrule not found: "sample-app+v9"']


# --- gateways -------------------------------------------------------------------------------

GATEWAY = """
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop-gateway, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [HOSTS]
"""


def test_missing_gateway_is_ist0101_and_ist0132() -> None:
    found = lines(vs(hosts="[shop.example.com]", gateways="[shop-gateway]",
                     body=route("sample-app")), service("sample-app"), analyzers=ANALYZERS)
    assert found == [
        'Error [IST0101] (VirtualService shop/route) Referenced gateway not found: '
        '"shop-gateway"',
        "Warning [IST0132] (VirtualService shop/route) one or more host [shop.example.com] "
        "defined in VirtualService shop/route not found in Gateway shop/shop-gateway.",
    ]


def test_gateway_must_serve_one_of_the_hosts() -> None:
    docs = [service("sample-app"), GATEWAY.replace("HOSTS", "shop.example.com")]
    ok = vs(hosts="[shop.example.com]", gateways="[shop-gateway, mesh]", body=route("sample-app"))
    assert lines(ok, *docs, analyzers=ANALYZERS) == []
    other = vs(hosts="[www.example.com]", gateways="[shop/shop-gateway]",
               body=route("sample-app"))
    assert lines(other, *docs, analyzers=ANALYZERS) == [
        "Warning [IST0132] (VirtualService shop/route) one or more host [www.example.com] "
        "defined in VirtualService shop/route not found in Gateway shop/shop-gateway."]


def test_gateway_wildcard_and_namespaced_hosts() -> None:
    wildcard = GATEWAY.replace("HOSTS", '"*/*.example.com"')
    assert lines(vs(hosts="[www.example.com]", gateways="[shop-gateway]",
                    body=route("sample-app")), service("sample-app"), wildcard,
                 analyzers=ANALYZERS) == []
    other_ns = GATEWAY.replace("HOSTS", "other/www.example.com")
    assert "IST0132" in lines(vs(hosts="[www.example.com]", gateways="[shop-gateway]",
                                 body=route("sample-app")), service("sample-app"), other_ns,
                              analyzers=ANALYZERS)[0]


def test_ingress_route_without_subset_while_mesh_uses_subsets_is_ist0140() -> None:
    docs = [service("sample-app"), dr(), GATEWAY.replace("HOSTS", "shop.example.com"),
            vs("mesh-route", body=route("sample-app", ", subset: v1"))]
    ingress = vs("ingress", hosts="[shop.example.com]", gateways="[shop-gateway]",
                 body=route("sample-app"))
    assert lines(ingress, *docs, analyzers=ANALYZERS) == [
        "Warning [IST0140] (VirtualService shop/ingress) Subset in virtual service "
        "shop/mesh-route has no effect on ingress gateway shop/ingress requests"]
    with_subset = vs("ingress", hosts="[shop.example.com]", gateways="[shop-gateway]",
                     body=route("sample-app", ", subset: v1"))
    assert lines(with_subset, *docs, analyzers=ANALYZERS) == []


# --- conflicting mesh hosts -----------------------------------------------------------------


def _conflict(names: str, host: str, vs_name: str, ns: str = "shop") -> str:
    return (f"Error [IST0109] (VirtualService {ns}/{vs_name}) The VirtualServices {names} "
            f"associated with mesh gateway define the same host {host} which can lead to "
            "undefined behavior. This can be fixed by merging the conflicting VirtualServices "
            "into a single resource.")


def test_two_mesh_virtual_services_for_one_host_conflict() -> None:
    docs = [service("sample-app"), vs("a", body=route("sample-app")),
            vs("b", hosts="[sample-app.shop.svc.cluster.local]", body=route("sample-app"))]
    host = "*/sample-app.shop.svc.cluster.local"
    assert lines(*docs, analyzers=ANALYZERS) == [
        _conflict("shop/a,shop/b", host, "a"), _conflict("shop/a,shop/b", host, "b")]


def test_gateway_only_and_other_host_do_not_conflict() -> None:
    docs = [service("sample-app"), service("other"), vs("a", body=route("sample-app")),
            vs("b", hosts="[other]", body=route("other")),
            vs("c", hosts="[sample-app]", gateways="[shop-gateway]", body=route("sample-app")),
            GATEWAY.replace("HOSTS", '"*"')]
    assert lines(*docs, analyzers=ANALYZERS) == []


def test_export_to_scopes_the_conflict() -> None:
    """Each VirtualService private to its own namespace: no sidecar sees both."""
    docs = [service("sample-app"),
            vs("a", body=route("sample-app.shop.svc.cluster.local"),
               hosts="[sample-app.shop.svc.cluster.local]", export_to='["."]'),
            vs("b", ns="other", body=route("sample-app.shop.svc.cluster.local"),
               hosts="[sample-app.shop.svc.cluster.local]", export_to='["."]')]
    assert lines(*docs, analyzers=ANALYZERS) == []
    public = [*docs[:2], docs[2].replace('exportTo: ["."]', 'exportTo: ["*"]')]
    assert [m.split(")")[0] for m in lines(*public, analyzers=ANALYZERS)] == [
        "Error [IST0109] (VirtualService shop/a", "Error [IST0109] (VirtualService other/b"]
