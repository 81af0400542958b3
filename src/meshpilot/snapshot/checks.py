"""Diagnostics about config that is valid but will not (fully) take effect.

These are per-revision, not per-proxy: a shadowed VirtualService, a destination whose
host or subset does not exist, a field the translator does not implement yet. Each
message names the resource so `analyze`-style output can point the user at it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..api.virtualservice import Destination, HTTPRoute
from .delegate import find_delegate, merged_http_routes

if TYPE_CHECKING:
    from ..api.destinationrule import ClientTLSSettings
    from .config import Config
    from .mesh import MergedDestinationRule, MeshSnapshot

# HTTPRoute fields the translator does not implement yet (every HTTPRoute field is now
# translated; the tuple stays so a future field can be flagged the same way).
UNSUPPORTED_ROUTE_FIELDS: tuple[str, ...] = ()


def check_snapshot(snap: MeshSnapshot) -> list[str]:
    out: list[str] = []
    seen: set[int] = set()
    for cfg in snap.mesh_virtual_services.values():
        if id(cfg) in seen:
            continue
        seen.add(id(cfg))
        out += _check_virtual_service(snap, cfg)
    for (host, _ns), dr in snap.destination_rules_by_host.items():
        if not host.startswith("*") and snap.service(host) is None:
            out.append(f"{dr.first}: host {host} matches no service (IST0174)")
        out += _check_policies(snap, dr)
    out += _check_gateway_credentials(snap)
    for svc in snap.services:
        if svc.resolution in ("NONE", "DYNAMIC_DNS") and not svc.endpoints:
            out.append(
                f"ServiceEntry {svc.namespace}/{svc.source_name}: host {svc.hostname} has "
                f"resolution {svc.resolution} and no endpoints; an explicit-proxy sidecar "
                "cannot pass its traffic through, so it gets 503"
            )
    return out


# Gateway proxies register a WorkloadEntry carrying this annotation (proxy/gateway.py).
_GATEWAY_ANNOTATION = "meshpilot.io/port-map"
_CERT_KEYS, _KEY_KEYS, _CA_KEYS = ("tls.crt", "cert"), ("tls.key", "key"), ("ca.crt", "cacert")


def _check_gateway_credentials(snap: MeshSnapshot) -> list[str]:
    """Terminating Gateway servers whose credential a running gateway proxy cannot get.

    Istio reads `credentialName` in the gateway proxy's namespace, so the check runs per
    registered gateway proxy the Gateway selects. The translator skips such a server (the
    others keep serving); this is where the user learns why its port does not answer."""
    out: list[str] = []
    gateways = [we for we in snap.workload_entries if _GATEWAY_ANNOTATION in we.annotations]
    for cfg in snap.gateways:
        selector = cfg.spec.selector or {}
        namespaces = sorted({we.namespace for we in gateways
                             if all((we.spec.labels or {}).get(k) == v
                                    for k, v in selector.items())})
        if not namespaces:
            wanted = ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "(any)"
            out.append(f"{cfg}: selector {wanted} matches no running gateway proxy; start one "
                       f"with `meshpilot gateway --labels {wanted}` (IST0101)")
        for server in cfg.spec.servers or []:
            tls = server.tls
            if tls is None or tls.effective_mode not in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL"):
                continue
            names = list(tls.credential_names or []) or (
                [tls.credential_name] if tls.credential_name else [])
            for ns in namespaces:
                problem = _credential_problem(snap, ns, names, tls.effective_mode != "SIMPLE")
                if problem:
                    out.append(f"{cfg}: server {server.port.name} (port {server.port.number}) "
                               f"is not served: {problem}")
    return out


def _credential_problem(snap: MeshSnapshot, ns: str, names: list[str], mutual: bool) -> (
    str | None
):
    for name in names:
        data = snap.secret_data(ns, name)
        if data is None:
            return f"Secret {ns}/{name} does not exist"
        if not any(data.get(k) for k in _CERT_KEYS) or not any(data.get(k) for k in _KEY_KEYS):
            return f"Secret {ns}/{name} has no tls.crt/tls.key"
    if mutual and names:
        own = snap.secret_data(ns, names[0]) or {}
        extra = snap.secret_data(ns, names[0] + "-cacert") or {}
        if not any(own.get(k) or extra.get(k) for k in _CA_KEYS):
            return (f"Secret {ns}/{names[0]} has no ca.crt and there is no Secret "
                    f"{ns}/{names[0]}-cacert to verify client certificates")
    return None


def _check_policies(snap: MeshSnapshot, dr: MergedDestinationRule) -> list[str]:
    """DestinationRule settings that are valid but cannot (fully) take effect here."""
    out: list[str] = []
    policies = [("trafficPolicy", dr.rule.traffic_policy)]
    policies += [(f"subset {s.name}", s.traffic_policy) for s in dr.rule.subsets or []]
    for where, policy in policies:
        if policy is None:
            continue
        blocks = [policy, *(policy.port_level_settings or [])]
        for block in blocks:
            lb = block.load_balancer
            if lb is not None and lb.simple == "PASSTHROUGH":
                out.append(
                    f"{dr.first}: {where}: loadBalancer.simple PASSTHROUGH cannot apply to an "
                    "explicit-proxy sidecar (Istio's ORIGINAL_DST cluster would connect back to "
                    "the proxy itself); requests keep being balanced over the registry "
                    "endpoints with LEAST_REQUEST"
                )
            if lb is not None and (
                lb.locality_lb_setting is not None or lb.zone_aware_lb_setting is not None
            ):
                out.append(
                    f"{dr.first}: {where}: loadBalancer.localityLbSetting/zoneAwareLbSetting "
                    "is not applied: sidecars have no locality of their own, and Istio ranks "
                    "endpoints only relative to the client's locality; ignored"
                )
            http = block.connection_pool.http if block.connection_pool else None
            if http is not None and (http.max_concurrent_streams or http.http2_keep_alive) and (
                http.h2_upgrade_policy != "UPGRADE"
            ):
                out.append(
                    f"{dr.first}: {where}: connectionPool.http maxConcurrentStreams/"
                    "http2KeepAlive apply only to HTTP/2 upstreams (http2/grpc ports or "
                    "h2UpgradePolicy UPGRADE), as in Istio"
                )
            out += _check_tls(snap, dr, where, block.tls)
    return sorted(set(out))


def _check_tls(
    snap: MeshSnapshot, dr: MergedDestinationRule, where: str, tls: ClientTLSSettings | None
) -> list[str]:
    # local: the translator imports the snapshot package, so a top-level import would cycle
    from ..xds.translate.tls import credential_problem

    if tls is None:
        return []
    if tls.mode == "ISTIO_MUTUAL":
        return [f"{dr.first}: {where}: tls mode ISTIO_MUTUAL needs mesh mTLS, which meshpilot "
                "does not have yet; traffic stays plaintext"]
    if tls.mode in ("SIMPLE", "MUTUAL") and tls.credential_name:
        problem = credential_problem(tls, snap.secret_data(dr.namespace, tls.credential_name))
        if problem is not None:
            return [f"{dr.first}: {where}: tls.credentialName: {problem} in namespace "
                    f"{dr.namespace}; the TLS handshake is made to fail (never plaintext)"]
    return []


def _check_virtual_service(snap: MeshSnapshot, cfg: Config) -> list[str]:
    out: list[str] = []
    vs = cfg.spec
    out += _check_l4_routes(snap, cfg)
    for i, route in enumerate(vs.http):
        out += _check_route(snap, cfg, i, route)
    out += merged_http_routes(snap, cfg)[1]  # delegates missing or conflicting
    return out


def _check_l4_routes(snap: MeshSnapshot, cfg: Config) -> list[str]:
    """`tcp` and `tls` rules: sidecars route them (CONNECT tunnels, see
    xds/translate/tcproutes.py); report what cannot take effect on an explicit proxy."""
    out: list[str] = []
    vs = cfg.spec
    kinds = [("tcp", i, r) for i, r in enumerate(vs.tcp)]
    kinds += [("tls", i, r) for i, r in enumerate(vs.tls)]
    for kind, i, rule in kinds:
        label = f"{cfg}: {kind}[{i}]"
        for j, match in enumerate(rule.match):
            if match.destination_subnets:
                out.append(
                    f"{label}: match[{j}]: destinationSubnets cannot be matched by an "
                    "explicit-proxy sidecar (it never sees the original destination IP); "
                    "this match block never applies"
                )
            if getattr(match, "source_subnet", ""):
                out.append(f"{label}: match[{j}]: sourceSubnet is not implemented for "
                           "sidecars yet; ignored")
        for dest in (d.destination for d in rule.route):
            out += _check_destination(snap, cfg, label, dest)
    if vs.tcp or vs.tls:
        hosts = [snap.resolve_host(h, cfg.namespace) for h in vs.hosts]
        ports = [p for h in hosts if (svc := snap.service(h)) is not None for p in svc.ports]
        if ports and vs.tcp and not any(not p.is_http and not p.is_tls for p in ports):
            out.append(f"{cfg}: tcp routes apply only to TCP service ports (not HTTP, TLS or "
                       "HTTPS), and its hosts have none; ignored")
        if ports and vs.tls and not any(p.is_tls for p in ports):
            out.append(f"{cfg}: tls routes apply only to TLS/HTTPS service ports, and its "
                       "hosts have none; ignored")
    return out


def _check_route(snap: MeshSnapshot, cfg: Config, i: int, route: HTTPRoute) -> list[str]:
    out: list[str] = []
    label = f"{cfg}: http[{i}]" + (f" ({route.name})" if route.name else "")
    for name in UNSUPPORTED_ROUTE_FIELDS:
        value = getattr(route, name)
        if value:
            out.append(f"{label}: {name} is not implemented yet; ignored")
    dests: list[Destination] = [d.destination for d in route.route]
    mirrors = [route.mirror] if route.mirror is not None else []
    mirrors += [m.destination for m in route.mirrors]
    for dest in dests:
        out += _check_destination(snap, cfg, label, dest)
    for dest in mirrors:
        out += [p.replace("; its traffic gets 503", "") + "; nothing is mirrored there"
                for p in _check_destination(snap, cfg, f"{label}: mirror", dest)]
    if route.delegate is not None:
        # A delegate VS is never checked on its own (it has no hosts): check its rules here,
        # their hosts resolved in the delegate's namespace.
        target = find_delegate(snap, cfg, route.delegate.name, route.delegate.namespace)
        if target is not None:
            for j, leaf in enumerate(target.spec.http):
                sub = f"{label} -> {target}: http[{j}]"
                for dest in [d.destination for d in leaf.route]:
                    out += _check_destination(snap, target, sub, dest)
    return out


def _check_destination(snap: MeshSnapshot, cfg: Config, label: str, dest: Destination) -> list[str]:
    host = snap.resolve_host(dest.host, cfg.namespace)
    svc = snap.service(host)
    if svc is None:
        return [f"{label}: destination host {host} matches no service (IST0101); "
                "its traffic gets 503"]
    out: list[str] = []
    if dest.port is not None and dest.port.number and svc.port(dest.port.number) is None:
        out.append(f"{label}: destination port {dest.port.number} is not a port of {host}")
    if dest.port is None and len(svc.ports) > 1:
        out.append(f"{label}: destination {host} has several ports; set destination.port "
                   "(IST0112)")
    if dest.subset:
        dr = snap.destination_rule(host, cfg.namespace, svc.namespace)
        if dr is None or dr.subset(dest.subset) is None:
            out.append(f"{label}: subset {dest.subset!r} of {host} is defined by no "
                       "DestinationRule (IST0101); its traffic gets 503")
    return out
