"""Every analyzer meshpilot runs, by Istio's analyzer names (`meshpilot analyze -L`)."""

from __future__ import annotations

from ..framework import Analyzer
from . import deprecation, destinationrule, gateway, schema, service, serviceentry, virtualservice

ALL: tuple[Analyzer, ...] = tuple(sorted(
    (*deprecation.ANALYZERS, *destinationrule.ANALYZERS, *gateway.ANALYZERS, *schema.ANALYZERS,
     *service.ANALYZERS, *serviceentry.ANALYZERS, *virtualservice.ANALYZERS),
    key=lambda a: a.name,
))


def named(names: list[str]) -> tuple[Analyzer, ...]:
    """The analyzers called `names` (Istio's `--analyzer NAME`); raises KeyError."""
    by_name = {a.name: a for a in ALL}
    return tuple(by_name[n] for n in names)
