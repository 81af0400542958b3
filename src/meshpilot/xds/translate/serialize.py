"""Stable JSON views of translated resources, for golden tests and `proxy-config` dumps."""

from __future__ import annotations

import json
from typing import Any

from google.protobuf import json_format

from ..types import PUSH_ORDER, SHORT_NAMES, ProxyResources


def resources_to_dict(resources: ProxyResources) -> dict[str, dict[str, Any]]:
    """`{"CDS": {name: message-as-dict}, ...}` in push order, names sorted."""
    out: dict[str, dict[str, Any]] = {}
    for type_url in PUSH_ORDER:
        items = resources.get(type_url)
        if not items:
            continue
        out[SHORT_NAMES[type_url]] = {
            name: json_format.MessageToDict(items[name], preserving_proto_field_name=True)
            for name in sorted(items)
        }
    return out


def resources_to_json(resources: ProxyResources) -> str:
    return json.dumps(resources_to_dict(resources), indent=2, sort_keys=True) + "\n"
