"""What a proxy asks of the control plane's REST API: where xDS is, and a WorkloadEntry.

The WorkloadEntry is how the rest of the mesh learns about this proxy: Services select
it by labels (so other sidecars route to its inbound port), Gateways select gateway
proxies by labels, and diagnostics read the `meshpilot.io/*` annotations to find the
admin port, the log and the supervising pid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..cli.client import ApiError, Client

CONTROLPLANE_PATH = "/apis/meshpilot.io/v1/controlplane"
WE_API_VERSION = "networking.istio.io/v1"
ANNOTATION_PREFIX = "meshpilot.io/"


@dataclass(frozen=True)
class XdsTarget:
    host: str
    port: int
    token: str | None = None

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


class RegistrationError(RuntimeError):
    """The control plane cannot be used: unreachable, no xDS address, or refused the entry."""


def parse_host_port(text: str) -> tuple[str, int]:
    """`127.0.0.1:15010` or `[::1]:15010`, with a clear error for anything else."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 127.0.0.1:15010)")
    return host, int(port)


def xds_target(client: Client, override: str | None = None) -> XdsTarget:
    """The ADS address: `override` (HOST:PORT) if given, else what the control plane says."""
    try:
        info = client.get(CONTROLPLANE_PATH) or {}
    except ApiError as e:
        raise RegistrationError(str(e)) from None
    token = info.get("token") or None
    if override:
        host, port = parse_host_port(override)
        return XdsTarget(host, port, token)
    xds = info.get("xds")
    if not isinstance(xds, dict) or not xds.get("port"):
        raise RegistrationError(
            f"the control plane at {client.server} does not advertise an xDS server "
            f"({CONTROLPLANE_PATH} has no 'xds' address); pass --xds-address HOST:PORT"
        )
    host = str(xds.get("host") or "127.0.0.1")
    if host in ("0.0.0.0", "::", ""):  # a wildcard listen address: connect over loopback
        host = "127.0.0.1"
    return XdsTarget(host, int(xds["port"]), token)


def workload_entry(name: str, namespace: str, *, address: str, ports: dict[str, int],
                   labels: dict[str, str], annotations: dict[str, str],
                   service_account: str | None = None) -> dict[str, Any]:
    """The WorkloadEntry body. Labels go on both spec (Istio selects on those) and metadata
    (so `meshpilot get we -l app=...` finds it)."""
    spec: dict[str, Any] = {"address": address, "labels": dict(labels)}
    if ports:
        spec["ports"] = dict(ports)
    if service_account:
        spec["serviceAccount"] = service_account
    metadata: dict[str, Any] = {"name": name, "namespace": namespace,
                                "annotations": dict(annotations)}
    if labels:
        metadata["labels"] = dict(labels)
    return {"apiVersion": WE_API_VERSION, "kind": "WorkloadEntry", "metadata": metadata,
            "spec": spec}


def _item_path(namespace: str, name: str = "") -> str:
    base = f"/apis/{WE_API_VERSION}/namespaces/{namespace}/workloadentries"
    return f"{base}/{name}" if name else base


def register(client: Client, entry: dict[str, Any]) -> dict[str, Any]:
    """Create the entry; replace one left behind by a crashed proxy of the same name."""
    meta = entry["metadata"]
    try:
        return client.post(_item_path(meta["namespace"]), entry)
    except ApiError as e:
        if e.code != 409:
            raise RegistrationError(f"cannot register WorkloadEntry {meta['namespace']}/"
                                    f"{meta['name']}: {e}") from None
    try:
        return client.request("PUT", _item_path(meta["namespace"], meta["name"]), entry)
    except ApiError as e:
        raise RegistrationError(f"cannot replace WorkloadEntry {meta['namespace']}/"
                                f"{meta['name']}: {e}") from None


def deregister(client: Client, namespace: str, name: str, owner_pid: int) -> bool:
    """Delete the entry if it is still ours (a newer proxy of the same name may have taken
    it over). Returns whether something was deleted; never raises."""
    path = _item_path(namespace, name)
    try:
        current = client.get(path)
        annotations = current.get("metadata", {}).get("annotations") or {}
        if annotations.get(ANNOTATION_PREFIX + "pid") not in (None, str(owner_pid)):
            return False
        rv = current.get("metadata", {}).get("resourceVersion", "0")
        client.delete(f"{path}?resourceVersion={rv}")
        return True
    except ApiError:
        return False
