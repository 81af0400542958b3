"""DestinationRule analyzers: unverified TLS (IST0128/0129), unknown hosts and empty subsets."""

from __future__ import annotations

from meshpilot.analyze.analyzers import destinationrule

from .helpers import lines, service, workload

ANALYZERS = destinationrule.ANALYZERS
SE = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [payments.example.com]
  ports: [{number: 443, name: https, protocol: HTTPS}]
  resolution: DNS
"""


def dr(policy: str, host: str = "payments.example.com", extra: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: payments, namespace: shop}}
spec:
  host: {host}
  trafficPolicy: {policy}{extra}
"""


def test_simple_tls_without_ca_is_ist0128() -> None:
    assert lines(dr("{tls: {mode: SIMPLE}}"), SE, analyzers=ANALYZERS) == [
        "Warning [IST0128] (DestinationRule shop/payments) DestinationRule shop/payments in "
        "namespace shop has TLS mode set to SIMPLE but no caCertificates are set to validate "
        "server identity for host: payments.example.com"]


def test_ca_certificates_or_istio_mutual_pass() -> None:
    assert lines(dr("{tls: {mode: SIMPLE, caCertificates: /etc/ca.pem}}"), SE,
                 analyzers=ANALYZERS) == []
    assert lines(dr("{tls: {mode: ISTIO_MUTUAL}}"), SE, analyzers=ANALYZERS) == []


def test_credential_name_counts_only_with_a_workload_selector() -> None:
    policy = "{tls: {mode: MUTUAL, credentialName: client-cert}}"
    assert [m[:17] for m in lines(dr(policy), SE, analyzers=ANALYZERS)] == ["Warning [IST0128]"]
    # (meshpilot does not apply workloadSelector rules yet, but analyze judges the config)
    selector = "\n  workloadSelector: {matchLabels: {app: shop}}"
    assert lines(dr(policy, extra=selector), SE, analyzers=ANALYZERS) == []


def test_port_level_tls_without_ca_is_ist0129() -> None:
    policy = "{portLevelSettings: [{port: {number: 443}, tls: {mode: SIMPLE}}]}"
    assert lines(dr(policy), SE, analyzers=ANALYZERS) == [
        "Warning [IST0129] (DestinationRule shop/payments) DestinationRule shop/payments in "
        "namespace shop has TLS mode set to SIMPLE but no caCertificates are set to validate "
        "server identity for host: payments.example.com at port number:443"]


SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sample-app, namespace: shop}
spec:
  host: HOST
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"""


def test_unknown_host_is_ist0174() -> None:
    assert lines(SUBSETS.replace("HOST", "sample-ap"), service("sample-app"),
                 analyzers=ANALYZERS) == [
        "Warning [IST0174] (DestinationRule shop/sample-app) The host sample-ap defined in the "
        "DestinationRule does not match any services in the mesh."]


def test_subset_without_workloads_is_ist0173() -> None:
    docs = [SUBSETS.replace("HOST", "sample-app"), service("sample-app"),
            workload("v1", app="sample-app", version="v1")]
    assert lines(*docs, analyzers=ANALYZERS) == [
        "Error [IST0173] (DestinationRule shop/sample-app) The Subset v2 defined in the "
        "DestinationRule does not select any pods. Which may lead to 503 UH (NoHealthyUpstream)."]
    docs.append(workload("v2", ns="elsewhere", version="v2"))  # Istio looks at every pod
    assert lines(*docs, analyzers=ANALYZERS) == []


def test_service_entry_endpoints_and_workload_selector() -> None:
    """Inline endpoints are the workloads of a ServiceEntry; its workloadSelector labels
    are part of every subset's selector."""
    se = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: legacy, namespace: shop}
spec:
  hosts: [legacy.internal]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 10.0.0.1, labels: {version: v1}}
  - {address: 10.0.0.2, labels: {version: v2}}
"""
    assert lines(SUBSETS.replace("HOST", "legacy.internal"), se, analyzers=ANALYZERS) == []
    selected = se.split("  endpoints:")[0] + "  workloadSelector: {labels: {app: legacy}}\n"
    docs = [SUBSETS.replace("HOST", "legacy.internal"), selected,
            workload("a", version="v1"), workload("b", app="legacy", version="v2")]
    assert [m.split(") ", 1)[1] for m in lines(*docs, analyzers=ANALYZERS)] == [
        "The Subset v1 defined in the DestinationRule does not select any pods. Which may "
        "lead to 503 UH (NoHealthyUpstream)."]
