"""Run analyzers and keep the messages a user asked for (istioctl's IstiodAnalyzer).

Each analyzer is a name (Istio's, e.g. `virtualservice.DestinationHostAnalyzer`), the
codes it may emit and a pure function from an `AnalysisInput` to messages. Like
istioctl, every analyzer sees every namespace (a VirtualService in `a` may route to a
Service in `b`); only the messages are filtered: to the selected namespace, then by
`--suppress CODE=RESOURCE` and by the `galley.istio.io/analyze-suppress` annotation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from .message import Message, sorted_deduped
from .model import AnalysisInput

SUPPRESS_ANNOTATION = "galley.istio.io/analyze-suppress"


@dataclass(frozen=True)
class Analyzer:
    name: str
    description: str
    codes: tuple[str, ...]
    run: Callable[[AnalysisInput], Iterable[Message]]


@dataclass(frozen=True)
class Suppression:
    """`IST0101=VirtualService traffic-demo/*`: a code and a glob over the resource's
    friendly name (`Kind ns/name`). Istio's help shows the older `Kind name.ns` form;
    both are accepted."""

    code: str
    resource: str

    @classmethod
    def parse(cls, text: str) -> Suppression:
        code, sep, resource = text.partition("=")
        if not sep or not code or "=" in resource:
            raise ValueError(f"{text} is not a valid suppression value; want CODE=RESOURCE, "
                             "e.g. 'IST0109=VirtualService traffic-demo/*'")
        return cls(code.strip(), resource.strip())

    def matches(self, message: Message) -> bool:
        origin = message.origin
        if origin is None or message.code != self.code:
            return False
        pattern = _glob(self.resource)
        legacy = f"{origin.kind} {origin.name}.{origin.namespace}"
        return bool(pattern.fullmatch(origin.friendly_name) or pattern.fullmatch(legacy))


def _glob(text: str) -> re.Pattern[str]:
    """ryanuber/go-glob: `*` matches any run of characters, nothing else is special."""
    return re.compile(".*".join(re.escape(part) for part in text.split("*")), re.DOTALL)


@dataclass
class Result:
    messages: list[Message]  # in the selected namespace(s), sorted and deduplicated
    hidden: list[Message] = field(default_factory=list)  # other namespaces (not shown)
    executed: list[str] = field(default_factory=list)


def _annotation_suppressed(message: Message) -> bool:
    origin = message.origin
    if origin is None:
        return False
    codes = origin.annotations.get(SUPPRESS_ANNOTATION, "")
    return any(code.strip() in ("*", message.code) for code in codes.split(",") if code)


def run_analyzers(
    data: AnalysisInput,
    analyzers: Sequence[Analyzer],
    *,
    namespace: str | None = None,
    suppressions: Sequence[Suppression] = (),
) -> Result:
    """All messages of `analyzers` over `data`, for `namespace` (None: all namespaces)."""
    found: list[Message] = []
    for analyzer in analyzers:
        found.extend(analyzer.run(data))
    shown: list[Message] = []
    hidden: list[Message] = []
    for message in found:
        if _annotation_suppressed(message) or any(s.matches(message) for s in suppressions):
            continue
        origin = message.origin
        if namespace is not None and origin is not None and origin.namespace \
                and origin.namespace != namespace:
            hidden.append(message)
            continue
        shown.append(message)
    return Result(sorted_deduped(shown), sorted_deduped(hidden), [a.name for a in analyzers])
