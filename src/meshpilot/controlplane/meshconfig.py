"""Istio's MeshConfig, read from a YAML file (`meshpilot up --mesh-config FILE`).

istiod reads its mesh settings from the `istio` ConfigMap's `mesh` key, written with
MeshConfig's JSON field names. meshpilot accepts the same names for the settings its
translator honours, so a user can copy those lines from an Istio install. A field meshpilot
does not implement is an error naming the file and the field path, never silently ignored:
an ignored `outboundTrafficPolicy` typo would leave the mesh open (ALLOW_ANY) while the
user believes it is locked down.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from ..snapshot.mesh import MeshConfig

OUTBOUND_MODES = ("ALLOW_ANY", "REGISTRY_ONLY")
_DURATION = re.compile(r"^\d+(\.\d+)?(ms|s|m|h)$")


class MeshConfigError(ValueError):
    """A mesh config file that cannot be used; the message names the file and field."""


def _fail(path: Path, field: str, message: str) -> MeshConfigError:
    return MeshConfigError(f"{path}: {field}: {message}" if field else f"{path}: {message}")


def _mode(path: Path, field: str, value: Any) -> str:
    if value not in OUTBOUND_MODES:
        raise _fail(path, field, f"unsupported value {value!r} (want one of "
                                 f"{', '.join(OUTBOUND_MODES)})")
    return str(value)


def _duration(path: Path, field: str, value: Any) -> str:
    if not isinstance(value, str) or not _DURATION.match(value):
        raise _fail(path, field, f"invalid duration {value!r} (e.g. 10s, 500ms, 1m)")
    return value


def _string(path: Path, field: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(path, field, f"expected a non-empty string, got {value!r}")
    return value


def _string_list(path: Path, field: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(path, field, f"expected a list of strings, got {value!r}")
    return tuple(value)


# Istio field name -> (MeshConfig attribute, parser).
Parser = Callable[[Path, str, Any], Any]
_SCALARS: dict[str, tuple[str, Parser]] = {
    "connectTimeout": ("connect_timeout", _duration),
    "dnsRefreshRate": ("dns_refresh_rate", _duration),
    "rootNamespace": ("root_namespace", _string),
    "defaultVirtualServiceExportTo": ("default_virtual_service_export_to", _string_list),
    "defaultDestinationRuleExportTo": ("default_destination_rule_export_to", _string_list),
    "defaultServiceExportTo": ("default_service_export_to", _string_list),
}


# The one metrics provider meshpilot has: Istio's standard metrics on the control plane's
# /metrics (Istio's `prometheus` provider, which is also Istio's default).
METRICS_PROVIDERS = ("prometheus",)


def _metrics_enabled(path: Path, field: str, value: Any) -> bool:
    """`defaultProviders.metrics`: [] turns Istio's standard metrics off, [prometheus] on."""
    names = _string_list(path, field, value) if value != [] else ()
    unknown = [n for n in names if n not in METRICS_PROVIDERS]
    if unknown:
        raise _fail(path, field, f"unsupported metrics provider {unknown[0]!r} (meshpilot "
                                 f"serves {', '.join(METRICS_PROVIDERS)}; [] turns metrics off)")
    return bool(names)


def _unknown(path: Path, field: str, known: list[str]) -> MeshConfigError:
    return _fail(path, field, "unknown or unsupported MeshConfig field (meshpilot supports: "
                              f"{', '.join(sorted(known))})")


def mesh_config_from_mapping(path: Path, data: Mapping[str, Any],
                             base: MeshConfig | None = None) -> MeshConfig:
    """Apply the Istio-named fields of `data` on top of `base` (defaults when None)."""
    changes: dict[str, Any] = {}
    for key, value in data.items():
        if key == "outboundTrafficPolicy":
            if not isinstance(value, Mapping):
                raise _fail(path, key, f"expected a mapping such as {{mode: REGISTRY_ONLY}}, "
                                       f"got {value!r}")
            for sub, sub_value in value.items():
                if sub != "mode":
                    raise _unknown(path, f"{key}.{sub}", [f"{key}.mode"])
                changes["outbound_traffic_policy"] = _mode(path, f"{key}.mode", sub_value)
        elif key == "defaultProviders":
            if not isinstance(value, Mapping):
                raise _fail(path, key, f"expected a mapping such as {{metrics: []}}, "
                                       f"got {value!r}")
            for sub, sub_value in value.items():
                if sub != "metrics":
                    raise _unknown(path, f"{key}.{sub}", [f"{key}.metrics"])
                changes["metrics_enabled"] = _metrics_enabled(path, f"{key}.{sub}", sub_value)
        elif key in _SCALARS:
            attr, parse = _SCALARS[key]
            changes[attr] = parse(path, key, value)
        else:
            raise _unknown(path, str(key), ["outboundTrafficPolicy", "defaultProviders",
                                            *_SCALARS])
    return dataclasses.replace(base or MeshConfig(), **changes)


def load_mesh_config(path: Path, base: MeshConfig | None = None) -> MeshConfig:
    """Read a YAML file of MeshConfig fields (what istiod reads from the `mesh` key of its
    ConfigMap) on top of `base`; every problem names the file."""
    try:
        text = path.read_text()
    except OSError as e:
        raise MeshConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise MeshConfigError(f"{path}: invalid YAML: {e}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise MeshConfigError(f"{path}: expected a mapping of MeshConfig fields, "
                              f"got {type(data).__name__}")
    return mesh_config_from_mapping(path, data, base)
