"""Gateway proxies: Istio Gateway servers -> listeners, route configurations and SDS secrets.

Follows Istio's pilot/pkg/networking/core/gateway.go and model/gateway.go (MergeGateways),
so that what users know from an ingress gateway holds here:

- A Gateway applies to every gateway proxy whose labels contain its `selector`, in any
  namespace (PILOT_SCOPE_GATEWAY_TO_NAMESPACE defaults to false).
- Servers are merged by port: one listener `0.0.0.0_<port>` per port, bound where the
  proxy's port map says (80 -> 8080, so no root is needed). Plain HTTP servers on a port
  share one route configuration `http.<port>`; each terminating HTTPS server gets its
  own filter chain, selected by SNI (its hosts), with route configuration
  `https.<port>.<portName>.<gateway>.<namespace>`. HTTP and HTTPS cannot share a port
  (Istio drops the later server as conflicting); HTTPS and TLS passthrough can.
- A plain `TCP` server gets one tcp_proxy filter chain from the first `tcp` rule (of the
  VirtualServices bound to its Gateway, hosts intersecting) whose match fits the server's
  port and Gateway (buildGatewayNetworkFiltersFromTCPRoutes); no such rule, no listener.
  TCP shares its port with nothing else (the later server is dropped).
- A VirtualService reaches a server when its `gateways` name the Gateway (`ns/name`, or a
  short name in the VirtualService's namespace) and its hosts intersect the server's
  hosts (`ns/host` server hosts admit only VirtualServices of that namespace). Several
  VirtualServices for one host are concatenated, oldest first; a route config with no
  virtual host answers 404 from `blackhole:<port>`; `tls.httpsRedirect` makes the
  server's virtual hosts `require_tls: ALL` (301 to https).
- TLS certificates are delivered over SDS exactly as istiod names them:
  `credentialName: NAME` -> secret `kubernetes://NAME` (tls.crt/tls.key of the Secret
  NAME in the gateway proxy's namespace) and, for MUTUAL/OPTIONAL_MUTUAL, the CA
  `kubernetes://NAME-cacert` (ca.crt of that Secret, or of the Secret `NAME-cacert`).
  Rotating the Secret changes only the SDS resource, so Envoy swaps certificates
  without draining the listener. A server whose credential cannot be resolved is left
  out (the rest of the gateway keeps working): a listener that named a missing secret
  would never warm, and the xDS cache refuses to ship one anyway.

Telemetry (telemetry.py): every HCM and tcp_proxy streams its entries to the control
plane's access-log service (a gateway reports as `source`, as Istio's gateways do), and
every route configuration stamps the gateway's node id on the requests it forwards, so
the destination sidecar knows its peer.

Everything here is pure and ordered, like the rest of the translator.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.listener.tls_inspector.v3 import tls_inspector_pb2
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, secret_pb2, tls_pb2
from google.protobuf import wrappers_pb2

from ...api.base import HTTP_FAMILY
from ...api.gateway import Gateway, Server, ServerTLSSettings, is_valid_cipher_suite
from ...api.hosts import resolve_short_name
from ...api.virtualservice import RouteDestination, VirtualService, host_subset_of
from ...snapshot import Config, MeshSnapshot
from ..types import ProxyInfo
from .accesslog import proxy_access_logs
from .common import (
    BLACKHOLE_CLUSTER,
    HCM_FILTER,
    TCP_PROXY_FILTER,
    ads_source,
    duration,
    pack,
    socket_address,
)
from .listeners import http_connection_manager
from .routes import RouteContext, is_catch_all, qualified_gateway_names, virtual_service_routes
from .tcproutes import TCP_IDLE_TIMEOUT
from .telemetry import add_tcp_telemetry, log_name_for, stamp_peer_id
from .tls import TLS_TRANSPORT_SOCKET, _san_matchers

TLS_INSPECTOR = "envoy.filters.listener.tls_inspector"
SDS_PREFIX = "kubernetes://"
CACERT_SUFFIX = "-cacert"
TERMINATING = ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL")
_CERT_KEYS = ("tls.crt", "cert")
_KEY_KEYS = ("tls.key", "key")
_CA_KEYS = ("ca.crt", "cacert")
_TLS_VERSIONS = {
    "TLSV1_0": common_pb2.TlsParameters.TLSv1_0,
    "TLSV1_1": common_pb2.TlsParameters.TLSv1_1,
    "TLSV1_2": common_pb2.TlsParameters.TLSv1_2,
    "TLSV1_3": common_pb2.TlsParameters.TLSv1_3,
}


@dataclass(frozen=True)
class GatewayServer:
    """One server of one Gateway, as it applies to one proxy."""

    gateway: Config[Gateway]
    server: Server

    @property
    def gateway_name(self) -> str:
        """`ns/name`, the form VirtualService `gateways` references resolve to."""
        return f"{self.gateway.namespace}/{self.gateway.name}"

    @property
    def port(self) -> int:
        return self.server.port.number

    @property
    def kind(self) -> str:
        """`http`, `tcp`, `https` (terminated here), `tls-tcp` (TLS terminated here, then
        tcp_proxy), `passthrough`, or `unsupported`."""
        proto = self.server.protocol
        if proto in HTTP_FAMILY:
            return "http"
        if proto == "TCP":
            return "tcp"
        tls = self.server.tls
        if proto == "HTTPS" and tls is not None and tls.effective_mode in TERMINATING:
            return "https"
        if proto == "TLS" and tls is not None and tls.effective_mode in TERMINATING:
            return "tls-tcp"
        if proto in ("HTTPS", "TLS") and tls is not None and tls.effective_mode == "PASSTHROUGH":
            return "passthrough"
        return "unsupported"

    def hosts_for(self, namespace: str) -> list[str]:
        """Server hosts a VirtualService of `namespace` may bind to (Istio's
        NamesForNamespace): `ns/h` only for ns, `./h` only for the Gateway's namespace."""
        out: list[str] = []
        for entry in self.server.hosts:
            ns, slash, name = entry.partition("/")
            if not slash:
                out.append(entry.lower())
            elif ns == "*" or ns == namespace or (ns == "." and namespace
                                                   == self.gateway.namespace):
                out.append(name.lower())
        return out

    @property
    def plain_hosts(self) -> list[str]:
        """The server's hosts without their namespace part, lower-case, in order."""
        out: list[str] = []
        for h in self.server.hosts:
            name = (h.partition("/")[2] if "/" in h else h).lower()
            if name not in out:
                out.append(name)
        return out

    @property
    def sni_hosts(self) -> list[str]:
        """SNI names for the filter chain match; empty (any SNI) when a host is `*`."""
        names = sorted(self.plain_hosts)
        return [] if "*" in names else names


@dataclass
class GatewayResources:
    listeners: dict[str, listener_pb2.Listener] = field(default_factory=dict)
    routes: dict[str, route_pb2.RouteConfiguration] = field(default_factory=dict)
    secrets: dict[str, secret_pb2.Secret] = field(default_factory=dict)
    # Why a server was left out, one line each (per proxy; see snapshot checks for the
    # same problems reported per revision).
    problems: list[str] = field(default_factory=list)


def selects(gateway: Gateway, proxy: ProxyInfo) -> bool:
    """The Gateway's selector is a subset of the proxy's labels (no selector: every proxy)."""
    return all(proxy.labels.get(k) == v for k, v in (gateway.selector or {}).items())


def gateway_servers(snap: MeshSnapshot, proxy: ProxyInfo) -> list[GatewayServer]:
    """Every server of every Gateway selecting `proxy`, oldest Gateway first."""
    return [GatewayServer(cfg, server) for cfg in snap.gateways if selects(cfg.spec, proxy)
            for server in cfg.spec.servers or []]


def intersect_hosts(server_hosts: Iterable[str], vs_hosts: Iterable[str]) -> list[str]:
    """Istio's Names.Intersection: for each overlapping pair, the more specific name."""
    out: list[str] = []
    vs_list = list(vs_hosts)
    for a in server_hosts:
        for b in vs_list:
            pick = a if host_subset_of(a, b) else b if host_subset_of(b, a) else None
            if pick is not None and pick not in out:
                out.append(pick)
    return out


def _vs_hosts(snap: MeshSnapshot, cfg: Config[VirtualService]) -> list[str]:
    return [resolve_short_name(h, cfg.namespace, snap.mesh.domain_suffix).lower()
            for h in cfg.spec.hosts]


def _bound_virtual_services(snap: MeshSnapshot, gateway_name: str) -> list[
    Config[VirtualService]
]:
    """VirtualServices naming this Gateway, in Istio's config order (oldest first)."""
    return [cfg for cfg in snap.virtual_services
            if gateway_name in qualified_gateway_names(cfg.spec.gateways, cfg.namespace)]


def sort_vhost_routes(routes: list[rc.Route]) -> list[rc.Route]:
    """Istio's SortVHostRoutes: catch-all routes move to the end, others keep their order,
    so a later VirtualService's specific rules are not hidden by an earlier catch-all."""
    return [r for r in routes if not is_catch_all(r)] + [r for r in routes if is_catch_all(r)]


def gateway_route_config(
    snap: MeshSnapshot, proxy: ProxyInfo, name: str, servers: list[GatewayServer],
    clusters: Collection[str],
) -> route_pb2.RouteConfiguration:
    """buildGatewayHTTPRouteConfig for the servers sharing one route configuration."""
    vhosts: dict[str, rc.VirtualHost] = {}
    cache: dict[tuple[str, str, str, int], list[rc.Route]] = {}
    for gs in servers:
        redirect = bool(gs.server.tls is not None and gs.server.tls.https_redirect)
        for cfg in _bound_virtual_services(snap, gs.gateway_name):
            hosts = intersect_hosts(gs.hosts_for(cfg.namespace), _vs_hosts(snap, cfg))
            if not hosts:
                continue
            key = (gs.gateway_name, cfg.namespace, cfg.name, gs.port)
            if key not in cache:
                ctx = RouteContext(snap, proxy, cfg, gs.port, clusters,
                                   frozenset({gs.gateway_name}))
                cache[key] = virtual_service_routes(ctx)
            for host in hosts:
                vhost = vhosts.get(host)
                if vhost is None:
                    vhost = vhosts[host] = rc.VirtualHost(name=f"{host}:{gs.port}",
                                                          domains=[host])
                vhost.routes.extend(cache[key])
                if redirect:
                    vhost.require_tls = rc.VirtualHost.ALL
        if redirect:
            for host in gs.plain_hosts:
                vhost = vhosts.get(host)
                if vhost is None:
                    vhost = vhosts[host] = rc.VirtualHost(name=f"{host}:{gs.port}",
                                                          domains=[host])
                vhost.require_tls = rc.VirtualHost.ALL
    if not vhosts:
        out_vhosts = [rc.VirtualHost(name=f"blackhole:{servers[0].port}", domains=["*"])]
    else:
        out_vhosts = []
        for host in sorted(vhosts):
            vhost = vhosts[host]
            ordered = sort_vhost_routes(list(vhost.routes))
            del vhost.routes[:]
            vhost.routes.extend(ordered)
            out_vhosts.append(vhost)
    out = route_pb2.RouteConfiguration(
        name=name, virtual_hosts=out_vhosts,
        validate_clusters=wrappers_pb2.BoolValue(value=False),
        ignore_port_in_host_matching=True,
    )
    stamp_peer_id(out, proxy, snap.mesh)
    return out


# --- TLS ------------------------------------------------------------------------------------


def _pick(data: Mapping[str, bytes] | None, keys: tuple[str, ...]) -> bytes | None:
    if data is None:
        return None
    return next((data[k] for k in keys if data.get(k)), None)


def _sds(name: str) -> secret_pb2.SdsSecretConfig:
    return secret_pb2.SdsSecretConfig(name=name, sds_config=ads_source())


def credential_secrets(
    snap: MeshSnapshot, namespace: str, tls: ServerTLSSettings,
) -> tuple[dict[str, secret_pb2.Secret], str | None]:
    """The SDS secrets a terminating server needs from its credential(s) in `namespace`
    (the gateway proxy's, as in Istio), or why they cannot be built."""
    names = list(tls.credential_names or []) or [tls.credential_name or ""]
    out: dict[str, secret_pb2.Secret] = {}
    for cred in names:
        data = snap.secret_data(namespace, cred)
        if data is None:
            return {}, f"Secret {namespace}/{cred} does not exist"
        cert, key = _pick(data, _CERT_KEYS), _pick(data, _KEY_KEYS)
        if cert is None or key is None:
            return {}, f"Secret {namespace}/{cred} has no tls.crt/tls.key"
        sds_name = SDS_PREFIX + cred
        out[sds_name] = secret_pb2.Secret(name=sds_name, tls_certificate=common_pb2.TlsCertificate(
            certificate_chain=base_pb2.DataSource(inline_bytes=cert),
            private_key=base_pb2.DataSource(inline_bytes=key),
        ))
    if tls.effective_mode in ("MUTUAL", "OPTIONAL_MUTUAL"):
        first = names[0]
        ca = _pick(snap.secret_data(namespace, first), _CA_KEYS) or _pick(
            snap.secret_data(namespace, first + CACERT_SUFFIX), _CA_KEYS)
        if ca is None:
            return {}, (f"Secret {namespace}/{first} has no ca.crt and there is no Secret "
                        f"{namespace}/{first}{CACERT_SUFFIX} to verify client certificates")
        sds_name = SDS_PREFIX + first + CACERT_SUFFIX
        out[sds_name] = secret_pb2.Secret(
            name=sds_name, validation_context=common_pb2.CertificateValidationContext(
                trusted_ca=base_pb2.DataSource(inline_bytes=ca)))
    return out, None


def downstream_tls_context(tls: ServerTLSSettings, *, http: bool) -> tls_pb2.DownstreamTlsContext:
    """buildGatewayListenerTLSContext: certificates over SDS (credentialName) or from files,
    TLS 1.2-1.3 unless the server says otherwise, ALPN h2/http1.1 for HTTP servers,
    client certificates required for MUTUAL and verified when presented for
    OPTIONAL_MUTUAL."""
    ctx = tls_pb2.DownstreamTlsContext()
    common = ctx.common_tls_context
    params = common.tls_params
    params.tls_minimum_protocol_version = _TLS_VERSIONS.get(
        tls.min_protocol_version or "", common_pb2.TlsParameters.TLSv1_2)
    params.tls_maximum_protocol_version = _TLS_VERSIONS.get(
        tls.max_protocol_version or "", common_pb2.TlsParameters.TLSv1_3)
    suites: list[str] = []
    for suite in tls.cipher_suites or []:
        if is_valid_cipher_suite(suite) and suite and suite not in suites:
            suites.append(suite)
    params.cipher_suites.extend(suites)
    if http:
        common.alpn_protocols.extend(["h2", "http/1.1"])
    mutual = tls.effective_mode in ("MUTUAL", "OPTIONAL_MUTUAL")
    names = list(tls.credential_names or []) or ([tls.credential_name]
                                                  if tls.credential_name else [])
    validation = common_pb2.CertificateValidationContext()
    validation.match_typed_subject_alt_names.extend(_san_matchers(tls.subject_alt_names or []))
    validation.verify_certificate_spki.extend(tls.verify_certificate_spki or [])
    validation.verify_certificate_hash.extend(tls.verify_certificate_hash or [])
    if names:
        common.tls_certificate_sds_secret_configs.extend(_sds(SDS_PREFIX + n) for n in names)
        if mutual:
            combined = common.combined_validation_context
            combined.default_validation_context.CopyFrom(validation)
            combined.validation_context_sds_secret_config.CopyFrom(
                _sds(SDS_PREFIX + names[0] + CACERT_SUFFIX))
    else:
        pairs = [(c.server_certificate, c.private_key) for c in tls.tls_certificates or []] or [
            (tls.server_certificate, tls.private_key)]
        for cert, key in pairs:
            common.tls_certificates.add(
                certificate_chain=base_pb2.DataSource(filename=cert or ""),
                private_key=base_pb2.DataSource(filename=key or ""))
        if mutual and tls.ca_certificates:
            validation.trusted_ca.filename = tls.ca_certificates
            if tls.ca_crl:
                validation.crl.filename = tls.ca_crl
            common.validation_context.CopyFrom(validation)
    if tls.effective_mode == "MUTUAL":
        ctx.require_client_certificate.value = True
    return ctx


# --- listeners ------------------------------------------------------------------------------


def _hcm_chain(snap: MeshSnapshot, proxy: ProxyInfo, port: int, route_name: str) -> (
    listener_components_pb2.FilterChain
):
    hcm = http_connection_manager(f"outbound_0.0.0.0_{port}", route_name, passthrough=False,
                                  file_logs=proxy_access_logs(proxy),
                                  als_log_name=log_name_for(proxy, snap.mesh, inbound=False))
    # The gateway is the edge: the client's address is the remote peer (Istio sets this
    # for gateways), so X-Forwarded-For is appended rather than trusted.
    hcm.use_remote_address.value = True
    return listener_components_pb2.FilterChain(filters=[listener_components_pb2.Filter(
        name=HCM_FILTER, typed_config=pack(hcm))])


def https_route_name(gs: GatewayServer) -> str:
    """Istio's gatewayRDSRouteName for a terminating HTTPS server."""
    return (f"https.{gs.port}.{gs.server.port.name}.{gs.gateway.name}."
            f"{gs.gateway.namespace}")


def _tcp_proxy_chain(
    snap: MeshSnapshot, proxy: ProxyInfo, cfg: Config[VirtualService], port: int,
    destinations: list[RouteDestination], sni: list[str], clusters: Collection[str],
) -> listener_components_pb2.FilterChain:
    """A passthrough chain: bytes for these SNI names to the route's cluster(s)."""

    def cluster_of(dst: RouteDestination) -> str:
        name = snap.destination_cluster(dst.destination, cfg.namespace, port)
        return name if name is not None and name in clusters else BLACKHOLE_CLUSTER

    live = [d for d in destinations if d.weight or len(destinations) == 1]
    tcp = tcp_proxy_pb2.TcpProxy(idle_timeout=duration(TCP_IDLE_TIMEOUT),
                                 access_log=proxy_access_logs(proxy))
    if len(live) == 1:
        tcp.cluster = cluster_of(live[0])
    else:
        for d in live:
            tcp.weighted_clusters.clusters.add(name=cluster_of(d), weight=d.weight)
    tcp.stat_prefix = tcp.cluster or f"{cfg.name}.{cfg.namespace}"
    add_tcp_telemetry(tcp, log_name_for(proxy, snap.mesh, inbound=False))
    chain = listener_components_pb2.FilterChain(filters=[listener_components_pb2.Filter(
        name=TCP_PROXY_FILTER, typed_config=pack(tcp))])
    chain.filter_chain_match.server_names.extend(sni)
    return chain


def _passthrough_chains(
    snap: MeshSnapshot, proxy: ProxyInfo, gs: GatewayServer, clusters: Collection[str],
    claimed: set[str],
) -> list[listener_components_pb2.FilterChain]:
    """buildGatewayNetworkFiltersFromTLSRoutes: one chain per VirtualService tls rule whose
    sniHosts intersect the server's hosts; first claim of an SNI name wins."""
    out: list[listener_components_pb2.FilterChain] = []
    for cfg in _bound_virtual_services(snap, gs.gateway_name):
        server_hosts = gs.hosts_for(cfg.namespace)
        if not intersect_hosts(server_hosts, _vs_hosts(snap, cfg)):
            continue
        for rule in cfg.spec.tls:
            for match in rule.match:
                if match.port and match.port != gs.port:
                    continue
                names = match.gateways
                if names and gs.gateway_name not in qualified_gateway_names(names,
                                                                            cfg.namespace):
                    continue
                sni = [h for h in intersect_hosts(server_hosts,
                                                  [s.lower() for s in match.sni_hosts])
                       if h not in claimed]
                if not sni or not rule.route:
                    continue
                claimed.update(sni)
                out.append(_tcp_proxy_chain(snap, proxy, cfg, gs.port, rule.route,
                                            sorted(sni), clusters))
    return out


def _tcp_route_chain(
    snap: MeshSnapshot, proxy: ProxyInfo, gs: GatewayServer, clusters: Collection[str],
) -> listener_components_pb2.FilterChain | None:
    """buildGatewayNetworkFiltersFromTCPRoutes: the first VirtualService `tcp` rule (bound
    VirtualServices oldest first, hosts intersecting the server's) whose match fits."""
    for cfg in _bound_virtual_services(snap, gs.gateway_name):
        if not intersect_hosts(gs.hosts_for(cfg.namespace), _vs_hosts(snap, cfg)):
            continue
        for rule in cfg.spec.tcp:
            fits = not rule.match or any(
                (not m.port or m.port == gs.port) and (
                    not m.gateways
                    or gs.gateway_name in qualified_gateway_names(m.gateways, cfg.namespace))
                for m in rule.match)
            if fits and rule.route:
                return _tcp_proxy_chain(snap, proxy, cfg, gs.port, rule.route, [], clusters)
    return None


def _kind_family(kind: str) -> str:
    """Servers of one family can share a port: HTTP, TCP, or TLS (HTTPS and passthrough)."""
    return kind if kind in ("http", "tcp") else "tls"


def _listener(proxy: ProxyInfo, port: int,
              chains: list[listener_components_pb2.FilterChain]) -> listener_pb2.Listener:
    listener = listener_pb2.Listener(
        name=f"0.0.0.0_{port}",
        address=socket_address(proxy.address, proxy.bind_port(port)),
        traffic_direction=base_pb2.TrafficDirection.OUTBOUND,
        filter_chains=chains,
    )
    if any(c.filter_chain_match.server_names for c in chains):
        listener.listener_filters.add(name=TLS_INSPECTOR,
                                      typed_config=pack(tls_inspector_pb2.TlsInspector()))
    return listener


def gateway_resources(
    snap: MeshSnapshot, proxy: ProxyInfo, clusters: Collection[str],
) -> GatewayResources:
    """Listeners, routes and SDS secrets for one gateway proxy (buildGatewayListeners)."""
    out = GatewayResources()
    by_port: dict[int, list[GatewayServer]] = {}
    for gs in gateway_servers(snap, proxy):
        where = f"Gateway {gs.gateway_name} server {gs.server.port.name}"
        if gs.kind == "unsupported" or (gs.server.bind or "").startswith("unix://"):
            out.problems.append(f"{where}: protocol {gs.server.protocol} with TLS mode "
                                f"{gs.server.tls.effective_mode if gs.server.tls else '-'} "
                                "is not supported on gateways yet; server skipped")
            continue
        group = by_port.setdefault(gs.port, [])
        if group and _kind_family(group[0].kind) != _kind_family(gs.kind):
            out.problems.append(f"{where}: port {gs.port} is already {group[0].kind} "
                                f"(Gateway {group[0].gateway_name}); conflicting server skipped")
            continue
        group.append(gs)
    for port in sorted(by_port):
        group = by_port[port]
        if group[0].kind == "http":
            name = f"http.{port}"
            out.routes[name] = gateway_route_config(snap, proxy, name, group, clusters)
            listener = _listener(proxy, port, [_hcm_chain(snap, proxy, port, name)])
            out.listeners[listener.name] = listener
            continue
        if group[0].kind == "tcp":
            for gs in group[1:]:
                out.problems.append(f"Gateway {gs.gateway_name} server {gs.server.port.name}: "
                                    f"port {port} already has a TCP server (Gateway "
                                    f"{group[0].gateway_name}); duplicate server skipped")
            chain = _tcp_route_chain(snap, proxy, group[0], clusters)
            if chain is not None:
                listener = _listener(proxy, port, [chain])
                out.listeners[listener.name] = listener
            continue
        chains: list[listener_components_pb2.FilterChain] = []
        claimed: set[str] = set()
        wildcard_taken = False
        for gs in group:
            where = f"Gateway {gs.gateway_name} server {gs.server.port.name}"
            if gs.kind == "passthrough":
                chains += _passthrough_chains(snap, proxy, gs, clusters, claimed)
                continue
            tls = gs.server.tls
            assert tls is not None
            sni = [h for h in gs.sni_hosts if h not in claimed]
            if (gs.sni_hosts and not sni) or (not gs.sni_hosts and wildcard_taken):
                out.problems.append(f"{where}: its hosts are already served on port {port}; "
                                    "duplicate server skipped")
                continue
            secrets: dict[str, secret_pb2.Secret] = {}
            if tls.credential_name or tls.credential_names:
                secrets, problem = credential_secrets(snap, proxy.namespace, tls)
                if problem is not None:
                    out.problems.append(f"{where}: {problem}; server skipped")
                    continue
            if gs.kind == "tls-tcp":
                # TLS terminated here, then the first fitting VirtualService `tcp` rule.
                tcp_chain = _tcp_route_chain(snap, proxy, gs, clusters)
                if tcp_chain is None:
                    continue
                chain = tcp_chain
            else:
                name = https_route_name(gs)
                out.routes[name] = gateway_route_config(snap, proxy, name, [gs], clusters)
                chain = _hcm_chain(snap, proxy, port, name)
            claimed.update(sni)
            wildcard_taken = wildcard_taken or not sni
            out.secrets.update(secrets)
            chain.filter_chain_match.server_names.extend(sni)
            chain.transport_socket.name = TLS_TRANSPORT_SOCKET
            chain.transport_socket.typed_config.CopyFrom(
                pack(downstream_tls_context(tls, http=gs.kind == "https")))
            chains.append(chain)
        # Chains with SNI names first, the any-SNI chain last: Envoy picks the most
        # specific match regardless, but a stable order keeps the output deterministic.
        chains.sort(key=lambda c: (not c.filter_chain_match.server_names,
                                   list(c.filter_chain_match.server_names)))
        if chains:
            listener = _listener(proxy, port, chains)
            out.listeners[listener.name] = listener
    return out

