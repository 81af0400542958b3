"""Talking to one Envoy's admin API, and finding it from a proxy name.

Diagnostics read what Envoy actually runs (its `/config_dump`, `/clusters`, `/stats`),
never what the control plane believes it sent: the two differ exactly when something is
wrong (a NACK, a warming cluster, a proxy on an old version). A proxy is found through
the WorkloadEntry it registered: its `meshpilot.io/*` annotations say where its admin
port and logs are. `--admin URL` skips the lookup for an Envoy meshpilot did not start.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from ..client import ApiError, Client

ANNOTATION_PREFIX = "meshpilot.io/"
WE_PATH = "/apis/networking.istio.io/v1"
DEFAULT_NAMESPACE = "default"


class DiagnosticsError(Exception):
    """Something the user can act on: the proxy is unknown, or its Envoy is unreachable."""


@dataclass(frozen=True)
class ProxyTarget:
    """Where one proxy's Envoy admin and logs are. `name`/`namespace` are empty when the
    user pointed at an admin URL directly."""

    admin_url: str
    name: str = ""
    namespace: str = ""
    annotations: dict[str, str] = field(default_factory=dict)
    address: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.name}.{self.namespace}" if self.name else self.admin_url

    def annotation(self, key: str) -> str | None:
        return self.annotations.get(ANNOTATION_PREFIX + key)


def split_proxy_name(text: str, namespace: str | None) -> tuple[str, str | None]:
    """istioctl's `<name>[.<namespace>]`: `-n` wins; otherwise the part after the first
    dot is the namespace (node ids are `name.namespace`)."""
    if namespace:
        suffix = f".{namespace}"
        return (text[: -len(suffix)] if text.endswith(suffix) else text), namespace
    name, dot, ns = text.partition(".")
    return (name, ns) if dot and ns else (text, None)


def _entry_target(entry: dict[str, Any]) -> ProxyTarget:
    meta = entry.get("metadata") or {}
    annotations = {str(k): str(v) for k, v in (meta.get("annotations") or {}).items()}
    spec = entry.get("spec") or {}
    name, ns = str(meta.get("name", "")), str(meta.get("namespace", ""))
    port = annotations.get(ANNOTATION_PREFIX + "admin-port")
    if not port:
        raise DiagnosticsError(
            f"WorkloadEntry {ns}/{name} was not registered by a meshpilot proxy (no "
            f"{ANNOTATION_PREFIX}admin-port annotation); pass --admin URL to reach its Envoy")
    # The bootstrap binds the admin API to 127.0.0.1 only, so that is where it is.
    return ProxyTarget(f"http://127.0.0.1:{port}", name, ns, annotations,
                       str(spec.get("address", "")),
                       {str(k): str(v) for k, v in (spec.get("labels") or {}).items()})


def resolve_proxy(client: Client, proxy: str, namespace: str | None) -> ProxyTarget:
    """PROXY (`name`, `name.namespace`, or `name` with -n) -> its Envoy admin, through the
    WorkloadEntry the proxy registered. Without a namespace, a name that exists in exactly
    one namespace is enough (there is no kubeconfig context to default from)."""
    name, ns = split_proxy_name(proxy, namespace)
    try:
        if ns is not None:
            try:
                return _entry_target(client.get(f"{WE_PATH}/namespaces/{ns}/workloadentries/"
                                                f"{name}"))
            except ApiError as e:
                if e.code != 404:
                    raise
                raise DiagnosticsError(f'proxy "{name}" not found in namespace {ns} (no '
                                       f"WorkloadEntry {ns}/{name}; see `meshpilot "
                                       f"proxy-status`)") from None
        items = client.get(f"{WE_PATH}/workloadentries").get("items") or []
    except ApiError as e:
        raise DiagnosticsError(str(e)) from None
    found = [i for i in items if (i.get("metadata") or {}).get("name") == name]
    if len(found) == 1:
        return _entry_target(found[0])
    if not found:
        raise DiagnosticsError(f'proxy "{name}" not found in any namespace (see `meshpilot '
                               f"proxy-status`)")
    spaces = ", ".join(sorted(str(i["metadata"].get("namespace")) for i in found))
    raise DiagnosticsError(f'proxy "{name}" exists in several namespaces ({spaces}); '
                           f"use {name}.NAMESPACE or -n NAMESPACE")


def target_from_args(args: Any) -> ProxyTarget:
    """`--admin URL` or the PROXY argument, as every proxy command accepts them."""
    if getattr(args, "admin", None):
        url = args.admin.rstrip("/")
        return ProxyTarget(url if "://" in url else f"http://{url}")
    if not getattr(args, "proxy", None):
        raise DiagnosticsError("a PROXY name (or --admin URL) is required")
    return resolve_proxy(Client(args.server, timeout=10.0), args.proxy, args.namespace)


def admin_get(target: ProxyTarget, path: str, timeout: float = 10.0) -> str:
    """GET an admin endpoint; a clear error when Envoy is gone (its proxy stopped)."""
    url = target.admin_url + path
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as e:
        body = e.read().decode(errors="replace").strip()
        raise DiagnosticsError(f"Envoy admin {url}: HTTP {e.code}: {body[:300]}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise DiagnosticsError(f"cannot reach the Envoy admin of {target.id} at "
                               f"{target.admin_url}: {reason} (is the proxy running?)") from None


def admin_json(target: ProxyTarget, path: str) -> Any:
    text = admin_get(target, path)
    try:
        return json.loads(text)
    except ValueError as e:
        raise DiagnosticsError(f"Envoy admin {path} did not return JSON: {e}") from None
