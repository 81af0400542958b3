"""DestinationRule `tls` -> the cluster's UpstreamTlsContext (Istio's cluster_tls.go).

SIMPLE and MUTUAL build what constructUpstreamTLS builds: TLS 1.2-1.3, `sni` when set,
else `auto_sni` (the request's Host) and, when no subjectAltNames are given either,
`auto_san_validation` (the certificate must match that Host); ALPN `h2` on HTTP/2
clusters. Where Istio hands Envoy certificates over SDS, this control plane (no SDS yet)
puts them in the context itself:

- file paths (clientCertificate, privateKey, caCertificates, caCrl) become `filename`
  data sources, which the sidecar's Envoy reads from its own file system; without
  caCertificates the server is checked against the system roots (Istio's "system");
- `credentialName` names a Secret of the rule's namespace whose `tls.crt`/`tls.key`/
  `ca.crt` (or Istio's Opaque `cert`/`key`/`cacert`) are inlined as bytes. A missing
  Secret or key fails closed (a validation nothing can pass), never falls back to
  plaintext; the snapshot diagnostics name the problem.

Istio sidecars honour credentialName only on rules with a workloadSelector (and then
send plaintext for the others); meshpilot has no workloadSelector rules yet, so it
applies credentialName wherever the rule applies. ISTIO_MUTUAL needs mesh mTLS, which
does not exist yet: it is ignored (plaintext) and reported.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2 as hpo
from envoy.type.matcher.v3 import string_pb2

from ...api.destinationrule import ClientTLSSettings
from .common import pack

TLS_TRANSPORT_SOCKET = "envoy.transport_sockets.tls"
# A SAN no certificate carries: what a cluster whose credential cannot be resolved
# requires, so its traffic fails the handshake instead of leaving unencrypted.
UNRESOLVED_SAN = "meshpilot.credential-not-found.invalid"

# Secret layouts Istio accepts: kubernetes.io/tls, and the Opaque gateway-credential keys.
_CERT_KEYS = ("tls.crt", "cert")
_KEY_KEYS = ("tls.key", "key")
_CA_KEYS = ("ca.crt", "cacert")
_CRL_KEYS = ("ca.crl", "crl")

SecretLookup = Callable[[str], Mapping[str, bytes] | None]


def _pick(data: Mapping[str, bytes], keys: tuple[str, ...]) -> bytes | None:
    return next((data[k] for k in keys if data.get(k)), None)


def credential_problem(tls: ClientTLSSettings, data: Mapping[str, bytes] | None) -> str | None:
    """Why `tls.credentialName` cannot give Envoy what the mode needs (None: it can)."""
    if data is None:
        return f"Secret {tls.credential_name!r} does not exist"
    if tls.mode == "MUTUAL" and (_pick(data, _CERT_KEYS) is None or _pick(data, _KEY_KEYS) is None):
        return f"Secret {tls.credential_name!r} has no tls.crt/tls.key for MUTUAL"
    if not tls.insecure_skip_verify and _pick(data, _CA_KEYS) is None:
        return f"Secret {tls.credential_name!r} has no ca.crt to verify the server with"
    return None


def _san_matchers(names: list[str]) -> list[common_pb2.SubjectAltNameMatcher]:
    """Istio's StringToExactMatch on the untyped field matched any SAN type; the typed
    field needs one matcher per type: DNS, URI and EMAIL always, IP for addresses."""
    SAN = common_pb2.SubjectAltNameMatcher
    out: list[common_pb2.SubjectAltNameMatcher] = []
    for name in names:
        types = [SAN.DNS, SAN.URI, SAN.EMAIL]
        try:
            ipaddress.ip_address(name)
            types.append(SAN.IP_ADDRESS)
        except ValueError:
            pass
        out += [SAN(san_type=t, matcher=string_pb2.StringMatcher(exact=name)) for t in types]
    return out


def _file(path: str) -> base_pb2.DataSource:
    return base_pb2.DataSource(filename=path)


def _bytes(data: bytes) -> base_pb2.DataSource:
    return base_pb2.DataSource(inline_bytes=data)


def upstream_tls_context(
    tls: ClientTLSSettings, secrets: SecretLookup, *, http2: bool
) -> tls_pb2.UpstreamTlsContext | None:
    """constructUpstreamTLS for SIMPLE/MUTUAL; None for DISABLE, ISTIO_MUTUAL or unset."""
    if tls.mode not in ("SIMPLE", "MUTUAL"):
        return None
    ctx = tls_pb2.UpstreamTlsContext(sni=tls.sni or "")
    common = ctx.common_tls_context
    common.tls_params.tls_minimum_protocol_version = common_pb2.TlsParameters.TLSv1_2
    common.tls_params.tls_maximum_protocol_version = common_pb2.TlsParameters.TLSv1_3
    if http2:
        common.alpn_protocols.append("h2")
    sans = list(tls.subject_alt_names or [])
    if tls.credential_name:
        data = secrets(tls.credential_name)
        if credential_problem(tls, data) is not None:
            common.validation_context.match_typed_subject_alt_names.extend(
                _san_matchers([UNRESOLVED_SAN])
            )
            common.validation_context.system_root_certs.SetInParent()
            return ctx
        assert data is not None
        if tls.mode == "MUTUAL":
            common.tls_certificates.add(
                certificate_chain=_bytes(_pick(data, _CERT_KEYS) or b""),
                private_key=_bytes(_pick(data, _KEY_KEYS) or b""),
            )
        if tls.insecure_skip_verify:
            common.validation_context.SetInParent()
            return ctx
        validation = common.validation_context
        validation.trusted_ca.CopyFrom(_bytes(_pick(data, _CA_KEYS) or b""))
        crl = _pick(data, _CRL_KEYS)
        if crl is not None:
            validation.crl.CopyFrom(_bytes(crl))
        validation.match_typed_subject_alt_names.extend(_san_matchers(sans))
        return ctx
    if tls.mode == "MUTUAL":
        common.tls_certificates.add(
            certificate_chain=_file(tls.client_certificate or ""),
            private_key=_file(tls.private_key or ""),
        )
    validation = common.validation_context
    if tls.insecure_skip_verify:
        validation.SetInParent()
        return ctx
    if tls.ca_certificates:
        validation.trusted_ca.CopyFrom(_file(tls.ca_certificates))
    else:
        validation.system_root_certs.SetInParent()
    if tls.ca_crl:
        validation.crl.CopyFrom(_file(tls.ca_crl))
    validation.match_typed_subject_alt_names.extend(_san_matchers(sans))
    return ctx


def apply_auto_sni(options: hpo.HttpProtocolOptions, tls: ClientTLSSettings) -> None:
    """setAutoSniAndAutoSanValidation for a non-DFP cluster: without `sni` the Host header
    is the SNI, and without subjectAltNames too the certificate is checked against it."""
    auto_sni = not tls.sni
    auto_san = auto_sni and not tls.subject_alt_names and not tls.insecure_skip_verify
    if auto_sni:
        options.upstream_http_protocol_options.auto_sni = True
    if auto_san:
        options.upstream_http_protocol_options.auto_san_validation = True


def apply_tls(
    cluster: cluster_pb2.Cluster,
    options: hpo.HttpProtocolOptions,
    tls: ClientTLSSettings | None,
    secrets: SecretLookup,
) -> None:
    """applyUpstreamTLSSettings: a `tls` transport socket when the mode originates TLS."""
    if tls is None:
        return
    http2 = options.explicit_http_config.HasField("http2_protocol_options")
    ctx = upstream_tls_context(tls, secrets, http2=http2)
    if ctx is None:
        return
    apply_auto_sni(options, tls)
    cluster.transport_socket.name = TLS_TRANSPORT_SOCKET
    cluster.transport_socket.typed_config.CopyFrom(pack(ctx))
