"""The golden scenarios: the seed's first sections, as users apply them."""

from __future__ import annotations

from pathlib import Path

from .helpers import DATA, EXAMPLES, SEED

SERVICE = EXAMPLES / "base" / "10-sample-app-service.yaml"
SUBSETS = EXAMPLES / "base" / "20-sample-app-subsets.yaml"
WORKLOADS = DATA / "workloads.yaml"

# name -> manifests in apply order (creation times follow that order).
CASES: dict[str, tuple[Path, ...]] = {
    # Section 1: only the Service; every request gets Istio's default route.
    "no-virtualservice": (SEED / "01-deployments-and-service.yaml", WORKLOADS),
    # Section 2 verbatim: header `version: v2` -> v2, the rest -> v1.
    "seed-routing": (SEED / "01-deployments-and-service.yaml", WORKLOADS,
                     SEED / "02-routing.yaml"),
    # Section 3: the 90/10 canary VirtualService (alone, so it is the one that applies).
    "canary-90-10": (SEED / "01-deployments-and-service.yaml", WORKLOADS, SUBSETS,
                     SEED / "03-canary.yaml"),
    # Section 9 with the cookie match corrected to a Cookie header match.
    "ab-test-corrected": (SERVICE, WORKLOADS, SUBSETS, EXAMPLES / "sections" / "09-ab-test.yaml"),
    # Section 4: connection pool + outlier detection, subset override.
    "circuit-breaker": (SERVICE, WORKLOADS, EXAMPLES / "sections" / "04-circuit-breaker.yaml"),
    # Fault, mirrors, CORS, header operations and a delegate, all on one VirtualService.
    "http-features": (SERVICE, WORKLOADS, SUBSETS, DATA / "http-features.yaml"),
    # A ServiceEntry with static endpoints and a subset.
    "serviceentry-static": (DATA / "serviceentry-static.yaml",),
    # Every DestinationRule traffic-policy mapping (hashing, warmup, pools, TLS, Secret).
    "destinationrule-policies": (DATA / "destinationrule-policies.yaml",),
    # TCP and TLS ports: CONNECT vhosts, `tcp` rules per proxy, `tls` rules by SNI host.
    "tcp-tls-routes": (DATA / "tcp-tls-routes.yaml",),
    # The seed's ingress Gateway plus every server kind (HTTP merge, httpsRedirect,
    # SIMPLE/MUTUAL over SDS, passthrough, a missing credential); sidecars ignore it all.
    "gateways": (SERVICE, WORKLOADS, SUBSETS, EXAMPLES / "base" / "40-ingress-gateway.yaml",
                 DATA / "gateway-secrets.yaml", DATA / "gateways.yaml"),
}
