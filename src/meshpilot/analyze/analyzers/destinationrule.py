"""DestinationRule analyzers: TLS without server verification, unknown hosts, empty subsets.

meshpilot has no pods: a workload is a WorkloadEntry (every sidecar registers one), so
"a subset selects no pods" means no WorkloadEntry, in any namespace, carries the
subset's labels (plus the ServiceEntry's workloadSelector labels), as Istio checks pods.
The labelled inline `endpoints` of ServiceEntries count too: they are the workloads of
such a host (Istio's analyzer ignores them and reports a false IST0173).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from ...api.destinationrule import ClientTLSSettings
from .. import catalogue as msg
from ..framework import Analyzer
from ..hosts import destination_host, selects, service_host_map
from ..message import Message
from ..model import AnalysisInput

TLS_CA = "{.spec.trafficPolicy.tls.caCertificates}"
PORT_TLS_CA = "{{.spec.trafficPolicy.portLevelSettings[{i}].tls.caCertificates}}"


def _unverified(tls: ClientTLSSettings | None, has_selector: bool) -> str | None:
    """The TLS mode when it is SIMPLE/MUTUAL without caCertificates (a credentialName
    counts only on rules with a workloadSelector, where Istio reads the CA from it)."""
    if tls is None or tls.mode not in ("SIMPLE", "MUTUAL"):
        return None
    if tls.ca_certificates or (tls.credential_name and has_selector):
        return None
    return tls.mode


def ca_certificates(data: AnalysisInput) -> Iterator[Message]:
    """IST0128 (top-level) / IST0129 (port level): TLS to the upstream whose server
    certificate nobody verifies."""
    for entry in data.of("DestinationRule"):
        dr = entry.spec
        policy = dr.traffic_policy
        if policy is None:
            continue
        selector = dr.workload_selector is not None
        mode = _unverified(policy.tls, selector)
        if mode:
            yield Message(msg.NO_SERVER_CERT_VERIFICATION_DESTINATION_LEVEL,
                          (entry.full_name, entry.namespace, mode, dr.host), entry.origin,
                          entry.origin.line_of(TLS_CA))
        for i, port_policy in enumerate(policy.port_level_settings or []):
            mode = _unverified(port_policy.tls, selector)
            if not mode:
                continue
            port = port_policy.port
            # Go prints the PortSelector proto in text format.
            shown = f"number:{port.number}" if port is not None and port.number else (
                "" if port is not None else "<nil>")
            yield Message(msg.NO_SERVER_CERT_VERIFICATION_PORT_LEVEL,
                          (entry.full_name, entry.namespace, mode, dr.host, shown),
                          entry.origin, entry.origin.line_of(PORT_TLS_CA.format(i=i)))


def _workload_labels(data: AnalysisInput) -> list[Mapping[str, str]]:
    out: list[Mapping[str, str]] = [dict(w.spec.labels or {}) for w in data.workloads]
    for entry in data.of("ServiceEntry"):
        out += [dict(ep.labels) for ep in entry.spec.endpoints or [] if ep.labels]
    return out


def subset_select_pods(data: AnalysisInput) -> Iterator[Message]:
    """IST0174: the rule's host is no Service or ServiceEntry it can see. IST0173: a
    subset whose labels no workload carries (its cluster has no endpoints: 503 UH)."""
    hosts = service_host_map(data)
    workloads = _workload_labels(data)
    for entry in data.of("DestinationRule"):
        dr = entry.spec
        service = destination_host(entry.namespace, dr.export_to, dr.host, hosts)
        if service is None:
            yield Message(msg.UNKNOWN_DESTINATION_RULE_HOST, (dr.host,), entry.origin)
            continue
        for subset in dr.subsets or []:
            selector: dict[str, Any] = {**service.workload_selector, **(subset.labels or {})}
            if not any(selects(selector, labels) for labels in workloads):
                yield Message(msg.DR_SUBSET_NOT_SELECT_PODS, (subset.name,), entry.origin)


ANALYZERS = (
    Analyzer("destinationrule.CaCertificateAnalyzer",
             "Checks if caCertificates is set when TLS mode is SIMPLE/MUTUAL",
             ("IST0128", "IST0129"), lambda d: list(ca_certificates(d))),
    Analyzer("destinationrule.SubsetSelectPodAnalyzer",
             "Checks if pods are selected by subsets in destination rules.",
             ("IST0173", "IST0174"), lambda d: list(subset_select_pods(d))),
)
