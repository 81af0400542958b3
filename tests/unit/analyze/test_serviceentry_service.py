"""ServiceEntry (IST0134, IST0177), Service (IST0118) and deprecation (IST0002) analyzers."""

from __future__ import annotations

from meshpilot.analyze.analyzers import deprecation, service, serviceentry

from .helpers import lines
from .helpers import service as svc


def se(name: str, protocol: str, extra: str = "", host: str = "db.example.com") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: shop}}
spec:
  hosts: [{host}]
  ports: [{{number: 5432, name: db, {protocol}}}]
  resolution: DNS{extra}
"""


def test_tcp_or_unset_protocol_without_addresses_is_ist0134() -> None:
    expected = ["Warning [IST0134] (ServiceEntry shop/db) ServiceEntry addresses are required "
                "for this protocol."]
    assert lines(se("db", "protocol: TCP"), analyzers=serviceentry.ANALYZERS) == expected
    assert lines(se("db", "targetPort: 5432"), analyzers=serviceentry.ANALYZERS) == expected
    assert lines(se("db", "protocol: TCP", "\n  addresses: [240.0.0.1]"),
                 analyzers=serviceentry.ANALYZERS) == []
    assert lines(se("db", "protocol: HTTP"), analyzers=serviceentry.ANALYZERS) == []


def test_conflicting_protocols_on_one_host_port_is_ist0177() -> None:
    docs = [se("a", "protocol: HTTP"), se("b", "protocol: TLS")]
    assert lines(*docs, analyzers=serviceentry.ANALYZERS[1:]) == [
        f'Warning [IST0177] (ServiceEntry shop/{n}) Multiple ServiceEntries (shop/a, shop/b) '
        'define the same host "db.example.com" and port 5432 with conflicting protocols '
        "(HTTP, TLS)." for n in "ab"]
    same = [se("a", "protocol: HTTP"), se("b", "protocol: http")]
    assert lines(*same, analyzers=serviceentry.ANALYZERS[1:]) == []
    other_host = [se("a", "protocol: HTTP"), se("b", "protocol: TLS", host="x.example.com")]
    assert lines(*other_host, analyzers=serviceentry.ANALYZERS[1:]) == []
    private = [se("a", "protocol: HTTP", '\n  exportTo: ["."]'),
               se("b", "protocol: TLS", '\n  exportTo: ["other"]')]
    assert lines(*private, analyzers=serviceentry.ANALYZERS[1:]) == []


def test_port_name_without_protocol_is_ist0118() -> None:
    unnamed = svc("sample-app", ports="{port: 80, targetPort: 8080}")
    assert lines(unnamed, analyzers=service.ANALYZERS) == [
        "Info [IST0118] (Service shop/sample-app) Port name  (port: 80, targetPort: 8080) "
        "doesn't follow the naming convention of Istio port."]
    web = svc("sample-app", ports="{name: web, port: 80}")
    assert lines(web, analyzers=service.ANALYZERS) == [
        "Info [IST0118] (Service shop/sample-app) Port name web (port: 80, targetPort: 0) "
        "doesn't follow the naming convention of Istio port."]
    for ports in ("{name: http-web, port: 80}", "{name: web, port: 80, appProtocol: http}",
                  "{port: 3306}", "{name: dns, port: 53, protocol: UDP}"):
        assert lines(svc("sample-app", ports=ports), analyzers=service.ANALYZERS) == [], ports


def test_istio_control_plane_services_are_skipped() -> None:
    labelled = svc("istiod", ports="{port: 15010}").replace(
        "namespace: shop}", "namespace: shop, labels: {istio: pilot}}")
    assert lines(labelled, analyzers=service.ANALYZERS) == []


def test_deprecated_delay_percent_is_ist0002() -> None:
    def vs(delay: str) -> str:
        return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: sample-app, namespace: shop}}
spec:
  hosts: [sample-app]
  http:
  - fault: {{delay: {{{delay}, fixedDelay: 5s}}}}
    route: [{{destination: {{host: sample-app}}}}]
"""
    assert lines(vs("percent: 10"), analyzers=deprecation.ANALYZERS) == [
        "Warning [IST0002] (VirtualService shop/sample-app) Deprecated: "
        "HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage"]
    assert lines(vs("percentage: {value: 10}"), analyzers=deprecation.ANALYZERS) == []
