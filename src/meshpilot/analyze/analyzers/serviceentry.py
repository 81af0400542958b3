"""ServiceEntry analyzers: addresses for TCP ports, and conflicting port protocols."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from .. import catalogue as msg
from ..framework import Analyzer
from ..hosts import export_scopes
from ..message import Message
from ..model import AnalysisInput, Entry

SERVICE_ENTRY_PORT = "{{.spec.ports[{i}].name}}"
METADATA_NAME = "{.metadata.name}"


def _allocated(entry: Entry[Any]) -> bool:
    """Addresses the control plane allocated (status.addresses), as Istio's allocator
    writes them; a ServiceEntry read from a file has none."""
    return bool((entry.status or {}).get("addresses"))


def protocol_addresses(data: AnalysisInput) -> Iterator[Message]:
    """IST0134 per TCP (or protocol-less) port of a ServiceEntry without addresses: a
    sidecar cannot tell its traffic from any other traffic on that port without a VIP.
    (Istio skips this when MeshConfig turns on DNS capture with auto-allocation;
    meshpilot has no such mesh setting, so it always checks.)"""
    for entry in data.of("ServiceEntry"):
        se = entry.spec
        if se.addresses or _allocated(entry):
            continue
        for i, port in enumerate(se.ports or []):
            if not port.protocol or port.protocol.upper() == "TCP":
                yield Message(msg.SERVICE_ENTRY_ADDRESSES_REQUIRED, (), entry.origin,
                              entry.origin.line_of(SERVICE_ENTRY_PORT.format(i=i)))


def conflicting_protocols(data: AnalysisInput) -> Iterator[Message]:
    """IST0177: ServiceEntries visible in one scope give one host:port different
    protocols (an unset protocol counts as its own value, as in Istio). Each entry is
    reported once, for the first conflicting host:port in sorted order."""
    index: dict[tuple[str, str, int], list[tuple[str, Entry[Any]]]] = {}
    for entry in data.of("ServiceEntry"):
        se = entry.spec
        for scope in export_scopes(se.export_to, entry.namespace):
            for host in se.hosts:
                for port in se.ports or []:
                    index.setdefault((scope, host, port.number), []).append(
                        (port.protocol or "", entry))
    reported: set[str] = set()
    for key in sorted(index):
        scope, host, number = key
        entries = list(index[key])
        if scope != "*":
            entries += index.get(("*", host, number), [])
        protocols = sorted({protocol.upper() for protocol, _ in entries})
        if len(protocols) < 2:
            continue
        names = ", ".join(sorted({e.full_name for _, e in entries}))
        for _, entry in entries:
            if entry.full_name in reported:
                continue
            reported.add(entry.full_name)
            yield Message(msg.CONFLICTING_SERVICE_ENTRY_PROTOCOL,
                          (names, host, number, ", ".join(protocols)), entry.origin,
                          entry.origin.line_of(METADATA_NAME))


ANALYZERS = (
    Analyzer("serviceentry.Analyzer", "Checks the validity of ServiceEntry", ("IST0134",),
             lambda d: list(protocol_addresses(d))),
    Analyzer("serviceentry.ConflictingServiceEntryProtocolAnalyzer",
             "Checks if multiple ServiceEntries define the same host and port with different "
             "protocols", ("IST0177",), lambda d: list(conflicting_protocols(d))),
)
