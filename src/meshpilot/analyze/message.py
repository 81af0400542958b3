"""Analysis messages, printed exactly as istioctl prints them (`diag.Message`).

A line reads `<Level> [<Code>] (<Kind> <ns>/<name>[ <file>:<line>]) <text>`. The text is
the catalogue template filled with Go's fmt rules, so lists print as `[a b]` and `%q`
quotes like Go. The file reference names the YAML document the resource came from; its
line is the line of the field the analyzer blames when the analyzer names one and the
file has it as a scalar, else the first line of the document (Istio's field map records
scalar leaves only, and its path templates sometimes name a field that does not exist,
e.g. `mirrors[i].host`; we look fields up the same way, so lines agree with istioctl).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .catalogue import Level, MessageType

DOCS_BASE = "https://istio.io/latest/docs/reference/config/analysis"
DOC_REF = "istioctl-analyze"


@dataclass(frozen=True)
class Origin:
    """Where a message points: the resource and, for files, the document it came from.

    `field_lines` maps Istio's field-path keys (`{.spec.http[0].route[0].destination.host}`)
    to 1-based lines, for scalar leaves only; `line` is the document's first line.
    """

    kind: str
    namespace: str
    name: str
    source: str | None = None  # a file path, `-` for stdin, None for the control plane
    line: int = 0
    field_lines: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False)
    annotations: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False)

    @property
    def friendly_name(self) -> str:
        """`VirtualService traffic-demo/reviews` (istioctl always shows the namespace)."""
        if self.namespace:
            return f"{self.kind} {self.namespace}/{self.name}"
        return f"{self.kind} {self.name}"

    @property
    def full_name(self) -> str:
        """Istio's resource.FullName.String(): `ns/name`."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @property
    def comparator(self) -> str:
        return f"{self.kind}/{self.name}/{self.namespace}"

    def line_of(self, path: str) -> int:
        """The line of a field by Istio's path key, or 0 when the file has no such scalar."""
        return self.field_lines.get(path, 0)

    def reference(self, line: int = 0) -> str | None:
        """kube.Position.String() with the message's line: `file.yaml:12`. JSON files get
        no line, as in istioctl."""
        if self.source is None:
            return None
        start = self.line
        if start <= 0 or not self.source or self.source.lower().endswith(".json"):
            return self.source
        return f"{self.source}:{line or start}"


def go_value(value: Any) -> str:
    """Go's %v / %s for the values messages carry: lists print as `[a b]`."""
    if isinstance(value, list | tuple):
        return "[" + " ".join(go_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def go_quote(value: Any) -> str:
    """Go's %q for strings (strconv.Quote): double quotes, backslash escapes."""
    return json.dumps(str(value), ensure_ascii=False)


_VERB = re.compile(r"%[svqd%]")


def go_format(template: str, params: Iterable[Any]) -> str:
    """Fill a catalogue template the way fmt.Sprintf does for the verbs it uses."""
    values = list(params)

    def fill(match: re.Match[str]) -> str:
        verb = match.group(0)
        if verb == "%%":
            return "%"
        if not values:
            return f"%!{verb[1]}(MISSING)"
        value = values.pop(0)
        return go_quote(value) if verb == "%q" else go_value(value)

    return _VERB.sub(fill, template)


@dataclass(frozen=True)
class Message:
    """One finding: a message type, its parameters, the resource and the blamed line."""

    type: MessageType
    params: tuple[Any, ...]
    origin: Origin | None
    line: int = 0

    @property
    def code(self) -> str:
        return self.type.code

    @property
    def level(self) -> Level:
        return self.type.level

    @property
    def text(self) -> str:
        return go_format(self.type.template, self.params)

    @property
    def reference(self) -> str | None:
        return self.origin.reference(self.line) if self.origin is not None else None

    def origin_text(self) -> str:
        """` (VirtualService ns/name file.yaml:12)`, or nothing for a message on no resource."""
        if self.origin is None:
            return ""
        ref = self.reference
        return f" ({self.origin.friendly_name}{' ' + ref if ref else ''})"

    def render(self, color: bool = False) -> str:
        level = str(self.type.level)
        if color and level in _COLORS:
            level = f"{_COLORS[level]}{level}\033[0m"
        return f"{level} [{self.code}]{self.origin_text()} {self.text}"

    def __str__(self) -> str:
        return self.render()

    @property
    def documentation_url(self) -> str:
        return f"{DOCS_BASE}/{self.code.lower()}/?ref={DOC_REF}"

    def to_dict(self) -> dict[str, Any]:
        """istioctl's JSON/YAML shape (`Message.Unstructured(true)`)."""
        out: dict[str, Any] = {"code": self.code, "level": str(self.type.level)}
        if self.origin is not None:
            out["origin"] = self.origin.friendly_name
            if self.reference is not None:
                out["reference"] = self.reference
        out["message"] = self.text
        out["documentationUrl"] = self.documentation_url
        return out


_COLORS = {"Warning": "\033[33m", "Error": "\033[1;31m"}


def sort_key(message: Message) -> tuple[int, str, int, str, str]:
    """Istio's Messages.Sort: level, code, messages without a resource first, resource
    (kind/name/namespace), then the printed line."""
    origin = message.origin
    return (message.type.level.order, message.code, 0 if origin is None else 1,
            origin.comparator if origin is not None else "", str(message))


def sorted_deduped(messages: Iterable[Message]) -> list[Message]:
    """Istio's SortedDedupedCopy: two messages are the same when they print the same."""
    out: list[Message] = []
    for message in sorted(messages, key=sort_key):
        if out and str(out[-1]) == str(message):
            continue
        out.append(message)
    return out
