"""Deprecated fields Istio still accepts (IST0002), as Istio's FieldAnalyzer lists them."""

from __future__ import annotations

from collections.abc import Iterator

from .. import catalogue as msg
from ..framework import Analyzer
from ..message import Message
from ..model import AnalysisInput


def deprecated_fields(data: AnalysisInput) -> Iterator[Message]:
    """`fault.delay.percent` (an integer) was replaced by `percentage` (a fraction)."""
    for entry in data.of("VirtualService"):
        for route in entry.spec.http:
            delay = route.fault.delay if route.fault is not None else None
            if delay is not None and delay.percent > 0:
                yield Message(msg.DEPRECATED, ("HTTPRoute.fault.delay.percent is deprecated; "
                                               "use HTTPRoute.fault.delay.percentage",),
                              entry.origin)


ANALYZERS = (
    Analyzer("deprecation.DeprecationAnalyzer", "Checks for deprecated Istio types and fields",
             ("IST0002",), lambda d: list(deprecated_fields(d))),
)
