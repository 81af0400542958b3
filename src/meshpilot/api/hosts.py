"""Istio's host-name rules: short names expand within the config's namespace."""

from __future__ import annotations

from .base import is_ip

DEFAULT_DOMAIN = "cluster.local"


def resolve_short_name(host: str, namespace: str, domain: str = DEFAULT_DOMAIN) -> str:
    """`sample-app` in `traffic-demo` -> `sample-app.traffic-demo.svc.cluster.local`.

    As Istio's ResolveShortnameToFQDN: `*` and IPs are kept, and any name containing a
    dot is taken as already qualified (so `sample-app.traffic-demo` is NOT expanded).
    """
    if host == "*" or is_ip(host) or "." in host:
        return host
    return f"{host}.{namespace}.svc.{domain}"
