"""What `meshpilot describe service` says about one service (pure: resources in, text out).

The resources come from the REST API as JSON and are built into a MeshSnapshot, the same
resolved view the translator uses, so "which VirtualService is effective on sidecars",
"which DestinationRule's policy wins" and "which subsets exist" are answered by the code
that decides them, not by a second reading of Istio's rules. Rules and policies are
printed from the resources as the user wrote them (camelCase), so they read back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ...api.kinds import by_kind
from ...api.resource import Resource
from ...api.virtualservice import host_matches
from ...registry import ServiceInstance
from ...snapshot import MeshSnapshot
from ...snapshot.mesh import is_mesh_bound

KINDS = ("Service", "ServiceEntry", "WorkloadEntry", "VirtualService", "DestinationRule",
         "Gateway")
DEFAULT_RETRY = "2 attempts on connect-failure,refused-stream,unavailable,cancelled," \
                "retriable-status-codes (Istio's default)"
INDENT = "   "


def to_resource(obj: dict[str, Any]) -> Resource | None:
    """A REST API object (Kubernetes-shaped JSON) back into a stored Resource."""
    info = by_kind(str(obj.get("kind", "")))
    if info is None:
        return None
    meta = obj.get("metadata") or {}
    if info.body_key is None:
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
    else:
        body = dict(obj.get(info.body_key) or {})
    rv = str(meta.get("resourceVersion", "0"))
    return Resource(
        api_version=str(obj.get("apiVersion", info.preferred_api_version)), kind=info.kind,
        name=str(meta.get("name", "")), namespace=str(meta.get("namespace", "")), body=body,
        labels=dict(meta.get("labels") or {}), annotations=dict(meta.get("annotations") or {}),
        uid=str(meta.get("uid", "")), resource_version=int(rv) if rv.isdigit() else 0,
        creation_timestamp=str(meta.get("creationTimestamp", "")))


@dataclass(frozen=True)
class MeshView:
    """The snapshot plus the objects as written, by (kind, namespace, name)."""

    snap: MeshSnapshot
    raw: dict[tuple[str, str, str], dict[str, Any]]

    @classmethod
    def build(cls, objects: list[dict[str, Any]]) -> MeshView:
        pairs = [(r, o) for r, o in ((to_resource(o), o) for o in objects) if r is not None]
        raw = {(r.kind, r.namespace, r.name): o for r, o in pairs}
        return cls(MeshSnapshot.build([r for r, _ in pairs], revision=0), raw)

    def spec(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        return (self.raw.get((kind, namespace, name)) or {}).get("spec") or {}


def find_services(view: MeshView, name: str, namespace: str) -> list[ServiceInstance]:
    """NAME as a short name in NAMESPACE, a ServiceEntry's name (one per host), or a host."""
    snap = view.snap
    host = snap.resolve_host(name, namespace)
    found = [s for s in snap.services if s.hostname == host]
    if not found:
        found = [s for s in snap.services if s.source_name == name and s.namespace == namespace]
    if not found:
        found = [s for s in snap.services if s.hostname == name]
    return found


def compact(value: Any) -> str:
    """A spec fragment on one line, as written (flow-style JSON without quotes on keys)."""
    return json.dumps(value, separators=(", ", ": "))


def string_match(sm: dict[str, Any]) -> str:
    if "exact" in sm:
        return f"={sm['exact']}"
    if "prefix" in sm:
        return f"={sm['prefix']}*"
    if "regex" in sm:
        return f"~{sm['regex']}"
    return "(present)" if not sm else compact(sm)


def describe_http_match(m: dict[str, Any]) -> str:
    """One HTTPMatchRequest as `uri=/v2* AND header version=v2 ...`."""
    parts = []
    for key in ("uri", "scheme", "method", "authority"):
        if key in m:
            parts.append(f"{key}{string_match(m[key])}")
    for key, label in (("headers", "header"), ("queryParams", "query"),
                       ("withoutHeaders", "without header")):
        for name, sm in (m.get(key) or {}).items():
            parts.append(f"{label} {name}{string_match(sm or {})}")
    if m.get("port"):
        parts.append(f"port={m['port']}")
    if m.get("sourceLabels"):
        parts.append("sourceLabels " + ",".join(f"{k}={v}"
                                                for k, v in m["sourceLabels"].items()))
    if m.get("sourceNamespace"):
        parts.append(f"sourceNamespace={m['sourceNamespace']}")
    if m.get("gateways"):
        parts.append("gateways " + ",".join(m["gateways"]))
    return " AND ".join(parts) or "any request"


def describe_destinations(rule: dict[str, Any], svc: ServiceInstance, namespace: str,
                          snap: MeshSnapshot) -> str:
    routes = rule.get("route") or []
    if not routes:
        if "redirect" in rule:
            return "redirect " + compact(rule["redirect"])
        if "directResponse" in rule:
            return "direct response " + compact(rule["directResponse"])
        if "delegate" in rule:
            return "delegate " + compact(rule["delegate"])
        return "(no destination)"
    total = sum(int(r.get("weight") or 0) for r in routes)
    out = []
    for r in routes:
        dest = r.get("destination") or {}
        host = snap.resolve_host(str(dest.get("host", "")), namespace)
        label = dest.get("subset") or "(all endpoints)"
        if host != svc.hostname:
            label = f"{dest.get('host')}" + (f" subset {dest['subset']}" if dest.get("subset")
                                              else "")
        if (dest.get("port") or {}).get("number"):
            label += f":{dest['port']['number']}"
        weight = int(r.get("weight") or 0)
        pct = 100 if len(routes) == 1 and total == 0 else (weight * 100 / total if total else 0)
        out.append(f"{label} {pct:g}%")
    return ", ".join(out)


def describe_rule_policies(rule: dict[str, Any]) -> list[str]:
    lines = []
    fault = rule.get("fault") or {}
    if "delay" in fault:
        d = fault["delay"]
        pct = (d.get("percentage") or {}).get("value", d.get("percent", 100))
        lines.append(f"fault: delay {d.get('fixedDelay', d.get('exponentialDelay', '?'))} "
                     f"for {pct}% of requests")
    if "abort" in fault:
        a = fault["abort"]
        pct = (a.get("percentage") or {}).get("value", 100)
        status = a.get("httpStatus", a.get("grpcStatus", "?"))
        lines.append(f"fault: abort with {status} for {pct}% of requests")
    retries = rule.get("retries")
    if retries is None:
        lines.append(f"retries: {DEFAULT_RETRY}")
    elif not retries.get("attempts"):
        lines.append("retries: disabled (attempts: 0)")
    else:
        text = f"retries: {retries['attempts']} attempts"
        if retries.get("perTryTimeout"):
            text += f", {retries['perTryTimeout']} per try"
        text += f" on {retries.get('retryOn') or 'Istio default conditions'}"
        lines.append(text)
    lines.append(f"timeout: {rule['timeout']}" if rule.get("timeout")
                 else "timeout: none (Istio's default)")
    for key in ("rewrite", "mirror", "mirrors", "headers", "corsPolicy"):
        if key in rule:
            lines.append(f"{key}: {compact(rule[key])}")
    return lines


def _vs_hosts(view: MeshView, cfg_ns: str, spec: dict[str, Any]) -> list[str]:
    return [view.snap.resolve_host(str(h), cfg_ns) for h in spec.get("hosts") or []]


def _routes_to(view: MeshView, ns: str, spec: dict[str, Any], host: str) -> bool:
    for section in ("http", "tcp", "tls"):
        for rule in spec.get(section) or []:
            for r in rule.get("route") or []:
                dest = (r.get("destination") or {}).get("host", "")
                if view.snap.resolve_host(str(dest), ns) == host:
                    return True
    return False


def virtual_service_lines(view: MeshView, svc: ServiceInstance, viewer_ns: str) -> (
    tuple[list[str], Any]
):
    """Every VirtualService for the host or routing to it; which one sidecars use."""
    snap = view.snap
    effective = snap.virtual_service_for(svc.hostname, viewer_ns)
    lines: list[str] = []
    for cfg in snap.virtual_services:
        spec = view.spec("VirtualService", cfg.namespace, cfg.name)
        claims = any(host_matches(h, svc.hostname) for h in _vs_hosts(view, cfg.namespace, spec))
        if not claims and not _routes_to(view, cfg.namespace, spec, svc.hostname):
            continue
        gateways = list(cfg.spec.gateways or [])
        where = ("gateways " + ", ".join(gateways)) if gateways else "mesh"
        if claims and is_mesh_bound(cfg.spec):
            if effective is not None and effective is cfg:
                note = f"EFFECTIVE on sidecars in {viewer_ns}"
            elif effective is not None:
                note = (f"IGNORED on sidecars: {effective.ref} is older and routes this host "
                        f"(IST0109)")
            else:
                note = f"not visible to sidecars in {viewer_ns} (exportTo)"
        elif claims:
            note = "applies on gateways only"
        else:
            note = f"routes to it (hosts {', '.join(spec.get('hosts') or [])})"
        lines.append(f"{INDENT}{cfg.ref}   [{where}]   {note}")
    return lines, effective


def destination_rule_lines(view: MeshView, svc: ServiceInstance, viewer_ns: str) -> list[str]:
    snap = view.snap
    merged = snap.destination_rule(svc.hostname, viewer_ns, svc.namespace)
    used = {(c.namespace, c.name) for c in merged.sources} if merged else set()
    lines: list[str] = []
    for cfg in snap.destination_rules:
        host = snap.resolve_host(cfg.spec.host, cfg.namespace)
        if not host_matches(host, svc.hostname):
            continue
        subsets = ", ".join(s.name for s in cfg.spec.subsets or []) or "none"
        policy = "yes" if cfg.spec.traffic_policy is not None else "no"
        note = "used" if (cfg.namespace, cfg.name) in used else \
            f"not used by sidecars in {viewer_ns}"
        lines.append(f"{INDENT}{cfg.ref}   subsets: {subsets}; trafficPolicy: {policy}   "
                     f"[{note}]")
    if merged is None:
        return [*lines, f"{INDENT}(none applies to sidecars in {viewer_ns}: Istio's default "
                        "policy, no subsets)"]
    winner = next((c for c in merged.sources if c.spec.traffic_policy is not None), None)
    if len(merged.sources) > 1:
        lines.append(f"{INDENT}merged (oldest first): "
                     + ", ".join(c.ref for c in merged.sources))
    for cfg in merged.sources:
        if cfg.spec.traffic_policy is not None and cfg is not winner:
            older = winner.ref if winner is not None else "?"
            lines.append(f"{INDENT}{cfg.ref}: trafficPolicy IGNORED ({older} is older and "
                         "sets one; Istio keeps the oldest)")
    if winner is not None:
        policy = view.spec("DestinationRule", winner.namespace, winner.name).get(
            "trafficPolicy") or {}
        lines.append(f"{INDENT}Traffic policy (from {winner.ref}):")
        for key, value in policy.items():
            lines.append(f"{INDENT}{INDENT}{key}: {compact(value)}")
    lines.append(f"{INDENT}Subsets:")
    for subset in merged.rule.subsets or []:
        source = next((c for c in merged.sources
                       if any(s.name == subset.name for s in c.spec.subsets or [])), None)
        labels = ",".join(f"{k}={v}" for k, v in subset.labels.items()) or "(all)"
        count = len({e.address + str(e.ports) for p in svc.ports
                     for e in svc.endpoints_for(p.port, subset.labels)})
        text = f"{INDENT}{INDENT}{subset.name}: {labels}   {count} endpoint(s)"
        if source is not None and len(merged.sources) > 1:
            text += f"   (from {source.ref})"
        if count == 0:
            text += "   NO ENDPOINTS: requests routed here get 503 UH (IST0173)"
        lines.append(text)
        raw = next((s for s in view.spec("DestinationRule", source.namespace, source.name)
                    .get("subsets") or [] if s.get("name") == subset.name), {}) if source else {}
        for key, value in (raw.get("trafficPolicy") or {}).items():
            lines.append(f"{INDENT}{INDENT}{INDENT}{key}: {compact(value)}")
    return lines


def gateway_lines(view: MeshView, svc: ServiceInstance) -> list[str]:
    """Gateways whose VirtualServices send traffic to the service."""
    snap = view.snap
    lines = []
    for cfg in snap.virtual_services:
        spec = view.spec("VirtualService", cfg.namespace, cfg.name)
        if not _routes_to(view, cfg.namespace, spec, svc.hostname):
            continue
        for gw_ref in cfg.spec.gateways or []:
            if gw_ref == "mesh":
                continue
            ns, _, name = gw_ref.rpartition("/")
            ns = ns or cfg.namespace
            gw = view.raw.get(("Gateway", ns, name))
            if gw is None:
                lines.append(f"{INDENT}{name}.{ns}: NOT FOUND (referenced by {cfg.ref}; "
                             "IST0101)")
                continue
            gspec = gw.get("spec") or {}
            selector = ",".join(f"{k}={v}" for k, v in (gspec.get("selector") or {}).items())
            servers = ", ".join(
                f"{(s.get('port') or {}).get('number')}/{(s.get('port') or {}).get('protocol')}"
                f" {','.join(s.get('hosts') or [])}" for s in gspec.get("servers") or [])
            lines.append(f"{INDENT}{name}.{ns} (selector {selector or '(none)'}) via "
                         f"{cfg.ref}: {servers}")
    return lines


def route_lines(view: MeshView, svc: ServiceInstance, effective: Any) -> list[str]:
    if effective is None:
        port = svc.ports[0].port if svc.ports else 0
        return [f"{INDENT}no VirtualService: one default route, any request -> "
                f"outbound|{port}||{svc.hostname} (all endpoints)",
                f"{INDENT}{INDENT}retries: {DEFAULT_RETRY}",
                f"{INDENT}{INDENT}timeout: none (Istio's default)"]
    spec = view.spec("VirtualService", effective.namespace, effective.name)
    lines = []
    for i, rule in enumerate(spec.get("http") or [], 1):
        matches = rule.get("match") or []
        when = " OR ".join(f"({describe_http_match(m)})" for m in matches) if matches \
            else "any request"
        name = f" [{rule['name']}]" if rule.get("name") else ""
        lines.append(f"{INDENT}{i}.{name} {when}")
        lines.append(f"{INDENT}{INDENT}-> "
                     f"{describe_destinations(rule, svc, effective.namespace, view.snap)}")
        lines += [f"{INDENT}{INDENT}{text}" for text in describe_rule_policies(rule)]
        if not matches:
            if i < len(spec.get("http") or []):
                lines.append(f"{INDENT}{INDENT}(catch-all: the rules below it never match; "
                             "IST0130)")
            break
    for section in ("tcp", "tls"):
        for i, rule in enumerate(spec.get(section) or [], 1):
            lines.append(f"{INDENT}{section} {i}. {compact(rule.get('match') or 'any')} -> "
                         f"{describe_destinations(rule, svc, effective.namespace, view.snap)}")
    return lines or [f"{INDENT}(the VirtualService has no http rules)"]


def service_header(view: MeshView, svc: ServiceInstance) -> list[str]:
    ports = ", ".join(f"{p.name or '(unnamed)'} {p.port}/{p.protocol}"
                      + (f" -> {p.target_port}" if p.target_port else "") for p in svc.ports)
    lines = [f"Service: {svc.name}.{svc.namespace}",
             f"{INDENT}Host:      {svc.hostname} ({svc.source_kind} {svc.source_name}, "
             f"{svc.location}, resolution {svc.resolution})",
             f"{INDENT}Ports:     {ports or '(none)'}"]
    if svc.selector:
        lines.append(f"{INDENT}Selector:  " + ",".join(f"{k}={v}"
                                                      for k, v in svc.selector.items()))
    workloads = [f"{e.workload or e.address} ({e.address}:"
                 f"{','.join(str(v) for v in e.ports.values())}"
                 + (f" {','.join(f'{k}={v}' for k, v in sorted(e.labels.items()))}"
                    if e.labels else "") + ")"
                 for e in svc.endpoints]
    lines.append(f"{INDENT}Endpoints: " + ("; ".join(workloads) if workloads else
                                           "none (no workload matches the selector)"))
    return lines


def describe_service_text(view: MeshView, svc: ServiceInstance) -> str:
    """The description, without the live endpoints (those need a proxy's admin API)."""
    viewer = svc.namespace
    vs_lines, effective = virtual_service_lines(view, svc, viewer)
    blocks = [
        service_header(view, svc),
        [f"VirtualServices ({svc.hostname}):", *(vs_lines or [f"{INDENT}none"])],
        [f"DestinationRules ({svc.hostname}):", *destination_rule_lines(view, svc, viewer)],
        ["Gateways exposing it:", *(gateway_lines(view, svc) or [f"{INDENT}none"])],
        [f"Routes on sidecars in {viewer}"
         + (f" (from {effective.ref}), in order:" if effective is not None else ":"),
         *route_lines(view, svc, effective)],
    ]
    return "\n\n".join("\n".join(b) for b in blocks)
