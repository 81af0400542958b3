"""Istio's analysis message catalogue: code, name, level and template of every message.

The table is Istio's `pkg/config/analysis/msg/messages.yaml` (master, 1.30) as data, so
`meshpilot analyze` prints the same codes and the same words as `istioctl analyze`, and
users can look a code up at istio.io. Only the traffic-management analyzers emit
messages here; the whole table is kept so `--suppress` can tell a real code from a typo.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Level:
    """A message severity. `order` follows Istio's sortOrder: Error 0 is the worst."""

    order: int
    name: str

    def at_least(self, threshold: Level) -> bool:
        """Istio's IsWorseThanOrEqualTo: Error reaches every threshold, Info only Info."""
        return self.order <= threshold.order

    def __str__(self) -> str:
        return self.name


ERROR = Level(0, "Error")
WARNING = Level(1, "Warning")
INFO = Level(2, "Info")
LEVELS = {level.name.upper(): level for level in (ERROR, WARNING, INFO)}


def parse_level(text: str) -> Level:
    """`info`, `Warning`, `ERROR` -> the Level (Istio accepts any capitalisation)."""
    level = LEVELS.get(text.strip().upper())
    if level is None:
        raise ValueError(f"{text!r} is not a level; use one of Info, Warning, Error")
    return level


@dataclass(frozen=True)
class MessageType:
    """One entry of the catalogue; `template` uses Go's fmt verbs (%s, %v, %q, %d)."""

    code: str
    name: str
    level: Level
    template: str


_TABLE: tuple[tuple[str, str, Level, str], ...] = (
    ('IST0001', 'InternalError', ERROR,
        'Internal error: %v'),
    ('IST0002', 'Deprecated', WARNING,
        'Deprecated: %s'),
    ('IST0101', 'ReferencedResourceNotFound', ERROR,
        'Referenced %s not found: %q'),
    ('IST0102', 'NamespaceNotInjected', INFO,
        "The namespace is not enabled for Istio injection. Run 'kubectl label namespace "
        "%s istio-injection=enabled' to enable it, or 'kubectl label namespace %s "
        "istio-injection=disabled' to explicitly mark it as not needing injection."),
    ('IST0103', 'PodMissingProxy', WARNING,
        'The pod %s is missing the Istio proxy. This can often be resolved by restarting '
        'or redeploying the workload.'),
    ('IST0106', 'SchemaValidationError', ERROR,
        'Schema validation error: %v'),
    ('IST0107', 'MisplacedAnnotation', WARNING,
        'Misplaced annotation: %s can only be applied to %s'),
    ('IST0108', 'UnknownAnnotation', WARNING,
        'Unknown annotation: %s'),
    ('IST0109', 'ConflictingMeshGatewayVirtualServiceHosts', ERROR,
        'The VirtualServices %s associated with mesh gateway define the same host %s '
        'which can lead to undefined behavior. This can be fixed by merging the '
        'conflicting VirtualServices into a single resource.'),
    ('IST0110', 'ConflictingSidecarWorkloadSelectors', ERROR,
        'The Sidecars %v in namespace %q select the same workload pod %q, which can lead '
        'to undefined behavior.'),
    ('IST0111', 'MultipleSidecarsWithoutWorkloadSelectors', ERROR,
        'The Sidecars %v in namespace %q have no workload selector, which can lead to '
        'undefined behavior.'),
    ('IST0112', 'VirtualServiceDestinationPortSelectorRequired', ERROR,
        'This VirtualService routes to a service %q that exposes multiple ports %v. '
        'Specifying a port in the destination is required to disambiguate.'),
    ('IST0116', 'DeploymentAssociatedToMultipleServices', WARNING,
        'This deployment %s is associated with multiple services using port %d but '
        'different protocols: %v'),
    ('IST0118', 'PortNameIsNotUnderNamingConvention', INFO,
        "Port name %s (port: %d, targetPort: %s) doesn't follow the naming convention of "
        'Istio port.'),
    ('IST0123', 'NamespaceMultipleInjectionLabels', WARNING,
        'The namespace has more than one type of injection labels %v, which may lead to '
        'undefined behavior. Make sure only one injection label exists.'),
    ('IST0125', 'InvalidAnnotation', WARNING,
        'Invalid annotation %s: %s'),
    ('IST0126', 'UnknownMeshNetworksServiceRegistry', ERROR,
        'Unknown service registry %s in network %s'),
    ('IST0127', 'NoMatchingWorkloadsFound', WARNING,
        'No matching workloads for this resource with the following labels: %s'),
    ('IST0128', 'NoServerCertificateVerificationDestinationLevel', WARNING,
        'DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates '
        'are set to validate server identity for host: %s'),
    ('IST0129', 'NoServerCertificateVerificationPortLevel', WARNING,
        'DestinationRule %s in namespace %s has TLS mode set to %s but no caCertificates '
        'are set to validate server identity for host: %s at port %s'),
    ('IST0130', 'VirtualServiceUnreachableRule', WARNING,
        'VirtualService rule %v not used (%s).'),
    ('IST0131', 'VirtualServiceIneffectiveMatch', INFO,
        'VirtualService rule %v match %v is not used (duplicate/overlapping match in rule '
        '%v).'),
    ('IST0132', 'VirtualServiceHostNotFoundInGateway', WARNING,
        'one or more host %v defined in VirtualService %s not found in Gateway %s.'),
    ('IST0133', 'SchemaWarning', WARNING,
        'Schema validation warning: %v'),
    ('IST0134', 'ServiceEntryAddressesRequired', WARNING,
        'ServiceEntry addresses are required for this protocol.'),
    ('IST0135', 'DeprecatedAnnotation', INFO,
        'Annotation %q has been deprecated%s and may not work in future Istio versions.'),
    ('IST0136', 'AlphaAnnotation', INFO,
        'Annotation %q is part of an alpha-phase feature and may be incompletely '
        'supported.'),
    ('IST0137', 'DeploymentConflictingPorts', WARNING,
        'This deployment %s is associated with multiple services %v using targetPort %q '
        'but different ports: %v.'),
    ('IST0138', 'GatewayDuplicateCertificate', WARNING,
        'Duplicate certificate in multiple gateways %v may cause 404s if clients re-use '
        'HTTP2 connections.'),
    ('IST0139', 'InvalidWebhook', ERROR,
        '%v'),
    ('IST0140', 'IngressRouteRulesNotAffected', WARNING,
        'Subset in virtual service %s has no effect on ingress gateway %s requests'),
    ('IST0141', 'InsufficientPermissions', ERROR,
        'Missing required permission to create resource %v (%v)'),
    ('IST0142', 'UnsupportedKubernetesVersion', ERROR,
        'The Kubernetes Version %q is lower than the minimum version: %v'),
    ('IST0143', 'LocalhostListener', ERROR,
        'Port %v is exposed in a Service but listens on localhost. It will not be exposed '
        'to other pods.'),
    ('IST0144', 'InvalidApplicationUID', WARNING,
        'User ID (UID) 1337 is reserved for the sidecar proxy.'),
    ('IST0145', 'ConflictingGateways', ERROR,
        'Conflict with gateways %s (workload selector %s, port %s, hosts %v).'),
    ('IST0146', 'ImageAutoWithoutInjectionWarning', WARNING,
        '%s %s contains `image: auto` but does not match any Istio injection webhook '
        'selectors.'),
    ('IST0147', 'ImageAutoWithoutInjectionError', ERROR,
        '%s %s contains `image: auto` but does not match any Istio injection webhook '
        'selectors.'),
    ('IST0148', 'NamespaceInjectionEnabledByDefault', INFO,
        'is enabled for Istio injection, as Istio is installed with '
        'enableNamespacesByDefault as true.'),
    ('IST0149', 'JwtClaimBasedRoutingWithoutRequestAuthN', ERROR,
        'The virtual service uses the JWT claim based routing (key: %s) but found no '
        'request authentication for the gateway (%s) pod (%s). The request authentication '
        'must first be applied for the gateway pods to validate the JWT token and make '
        'the claims available for routing.'),
    ('IST0150', 'ExternalNameServiceTypeInvalidPortName', WARNING,
        'Port name for ExternalName service is invalid. Proxy may prevent tcp named ports '
        'and unmatched traffic for ports serving TCP protocol from being forwarded '
        'correctly'),
    ('IST0151', 'EnvoyFilterUsesRelativeOperation', WARNING,
        'This EnvoyFilter does not have a priority and has a relative patch operation set '
        'which can cause the EnvoyFilter not to be applied. Using the INSERT_FIRST of ADD '
        'option or setting the priority may help in ensuring the EnvoyFilter is applied '
        'correctly.'),
    ('IST0152', 'EnvoyFilterUsesReplaceOperationIncorrectly', ERROR,
        'The REPLACE operation is only valid for HTTP_FILTER and NETWORK_FILTER.'),
    ('IST0153', 'EnvoyFilterUsesAddOperationIncorrectly', ERROR,
        'The ADD operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, or '
        'HTTP_ROUTE.'),
    ('IST0154', 'EnvoyFilterUsesRemoveOperationIncorrectly', ERROR,
        'The REMOVE operation will be ignored when applyTo is set to ROUTE_CONFIGURATION, '
        'or HTTP_ROUTE.'),
    ('IST0155', 'EnvoyFilterUsesRelativeOperationWithProxyVersion', WARNING,
        'This EnvoyFilter does not have a priority and has a relative patch operation '
        '(NSTERT_BEFORE/AFTER, REPLACE, MERGE, DELETE) and proxyVersion set which can '
        'cause the EnvoyFilter not to be applied during an upgrade. Using the '
        'INSERT_FIRST or ADD option or setting the priority may help in ensuring the '
        'EnvoyFilter is applied correctly.'),
    ('IST0156', 'UnsupportedGatewayAPIVersion', ERROR,
        'The Gateway API CRD version %v is lower than the minimum version: %v'),
    ('IST0157', 'InvalidTelemetryProvider', WARNING,
        'The Telemetry %v in namespace %q with empty providers will be ignored.'),
    ('IST0158', 'PodsIstioProxyImageMismatchInNamespace', WARNING,
        'The Istio proxy images of the pods running in the namespace do not match the '
        'image defined in the injection configuration (pod names: %v). This often happens '
        'after upgrading the Istio control-plane and can be fixed by redeploying the '
        'pods.'),
    ('IST0159', 'ConflictingTelemetryWorkloadSelectors', ERROR,
        'The Telemetries %v in namespace %q select the same workload pod %q, which can '
        'lead to undefined behavior.'),
    ('IST0160', 'MultipleTelemetriesWithoutWorkloadSelectors', ERROR,
        'The Telemetries %v in namespace %q have no workload selector, which can lead to '
        'undefined behavior.'),
    ('IST0161', 'InvalidGatewayCredential', ERROR,
        'The credential referenced by the Gateway %s in namespace %s is invalid, which '
        'can cause the traffic not to work as expected.'),
    ('IST0162', 'GatewayPortNotDefinedOnService', WARNING,
        'The gateway is listening on a target port (port %d) that is not defined in the '
        'Service associated with its workload instances (Pod selector %s). If you need to '
        'access the gateway port through the gateway Service, it will not be available.'),
    ('IST0163', 'InvalidExternalControlPlaneConfig', WARNING,
        'The hostname (%s) that was provided for the webhook (%s) to reach the ingress '
        'gateway on the external control plane cluster %s. Traffic may not flow properly.'),
    ('IST0164', 'ExternalControlPlaneAddressIsNotAHostname', INFO,
        'The address (%s) that was provided for the webhook (%s) to reach the ingress '
        'gateway on the external control plane cluster is an IP address. This is not '
        'recommended for a production environment.'),
    ('IST0165', 'ReferencedInternalGateway', WARNING,
        'Gateway reference in VirtualService %s is to an implementation-generated '
        'internal Gateway: %s.'),
    ('IST0166', 'IneffectiveSelector', WARNING,
        'Ineffective selector on Kubernetes Gateway %s. Use the TargetRef field instead.'),
    ('IST0167', 'IneffectivePolicy', WARNING,
        'The policy has no impact: %s.'),
    ('IST0168', 'UnknownUpgradeCompatibility', WARNING,
        'The configuration %q changed in release %s, but compatibility cannot be '
        'automatically detected: %s. Or, install with `--set compatibilityVersion=%s` to '
        'retain the old default.'),
    ('IST0169', 'UpdateIncompatibility', WARNING,
        'The configuration %q changed in release %s: %s. Or, install with `--set '
        'compatibilityVersion=%s` to retain the old default.'),
    ('IST0170', 'MultiClusterInconsistentService', WARNING,
        'The service %v in namespace %q is inconsistent across clusters %q, which can '
        'lead to undefined behaviors. The inconsistent behaviors are: %v.'),
    ('IST0171', 'NegativeConditionStatus', WARNING,
        'A condition with a negative status is present: type=%s, reason=%s, message=%s.'),
    ('IST0172', 'FutureUnsupportedGatewayAPIVersion', WARNING,
        'The Gateway API CRD version %v is lower than the minimum version: %v'),
    ('IST0173', 'DestinationRuleSubsetNotSelectPods', ERROR,
        'The Subset %s defined in the DestinationRule does not select any pods. Which may '
        'lead to 503 UH (NoHealthyUpstream).'),
    ('IST0174', 'UnknownDestinationRuleHost', WARNING,
        'The host %s defined in the DestinationRule does not match any services in the '
        'mesh.'),
    ('IST0175', 'JwksUriFetchUnrestricted', WARNING,
        'BLOCKED_CIDRS_IN_JWKS_URIS is not configured but %d RequestAuthentication '
        'resource(s) exist (%s). Consider configuring it to restrict JWKS URI fetches to '
        'trusted networks.'),
    ('IST0176', 'GatewayAPICRDVersionBelowMinimum', WARNING,
        'Gateway API CRD %q is at version %q but Istio requires at least %q; resources of '
        'this kind will not be processed. Upgrade the Gateway API CRDs to satisfy the '
        'minimum version.'),
    ('IST0177', 'ConflictingServiceEntryProtocol', WARNING,
        'Multiple ServiceEntries (%s) define the same host %q and port %d with '
        'conflicting protocols (%s).'),
)

CATALOGUE: dict[str, MessageType] = {
    code: MessageType(code, name, level, template) for code, name, level, template in _TABLE
}


def message_type(code: str) -> MessageType:
    return CATALOGUE[code]


# The message types the traffic-management analyzers emit.
DEPRECATED = CATALOGUE["IST0002"]
REFERENCED_RESOURCE_NOT_FOUND = CATALOGUE["IST0101"]
SCHEMA_VALIDATION_ERROR = CATALOGUE["IST0106"]
CONFLICTING_MESH_GATEWAY_VS_HOSTS = CATALOGUE["IST0109"]
VS_DESTINATION_PORT_SELECTOR_REQUIRED = CATALOGUE["IST0112"]
PORT_NAME_NOT_UNDER_NAMING_CONVENTION = CATALOGUE["IST0118"]
NO_SERVER_CERT_VERIFICATION_DESTINATION_LEVEL = CATALOGUE["IST0128"]
NO_SERVER_CERT_VERIFICATION_PORT_LEVEL = CATALOGUE["IST0129"]
VS_UNREACHABLE_RULE = CATALOGUE["IST0130"]
VS_INEFFECTIVE_MATCH = CATALOGUE["IST0131"]
VS_HOST_NOT_FOUND_IN_GATEWAY = CATALOGUE["IST0132"]
SCHEMA_WARNING = CATALOGUE["IST0133"]
SERVICE_ENTRY_ADDRESSES_REQUIRED = CATALOGUE["IST0134"]
GATEWAY_DUPLICATE_CERTIFICATE = CATALOGUE["IST0138"]
INGRESS_ROUTE_RULES_NOT_AFFECTED = CATALOGUE["IST0140"]
CONFLICTING_GATEWAYS = CATALOGUE["IST0145"]
EXTERNAL_NAME_INVALID_PORT_NAME = CATALOGUE["IST0150"]
INVALID_GATEWAY_CREDENTIAL = CATALOGUE["IST0161"]
GATEWAY_PORT_NOT_DEFINED_ON_SERVICE = CATALOGUE["IST0162"]
DR_SUBSET_NOT_SELECT_PODS = CATALOGUE["IST0173"]
UNKNOWN_DESTINATION_RULE_HOST = CATALOGUE["IST0174"]
CONFLICTING_SERVICE_ENTRY_PROTOCOL = CATALOGUE["IST0177"]
