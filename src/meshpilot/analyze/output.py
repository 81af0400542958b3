"""istioctl's three output formats for analysis messages (istioctl/pkg/util/formatting).

`log` is one line per message; `json` is Go's json.MarshalIndent with tabs (keys sorted,
`<`, `>` and `&` escaped as Go does); `yaml` is the same objects as YAML.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import yaml

from .message import Message

FORMATS = ("log", "json", "yaml")


def _go_json(messages: Sequence[Message]) -> str:
    text = json.dumps([m.to_dict() for m in messages], indent="\t", sort_keys=True,
                      ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render(messages: Sequence[Message], fmt: str, *, color: bool = False) -> str:
    """The text istioctl prints on stdout (without the final newline)."""
    if fmt == "log":
        return "\n".join(m.render(color) for m in messages)
    if fmt == "json":
        return _go_json(messages)
    if fmt == "yaml":
        data = [dict(sorted(m.to_dict().items())) for m in messages]
        return yaml.safe_dump(data, default_flow_style=False, allow_unicode=True,
                              width=1 << 30).rstrip("\n")
    raise ValueError(f"{fmt} not a valid option for format; use one of {', '.join(FORMATS)}")
