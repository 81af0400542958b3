"""Running analyzers: namespace filter, suppressions and the analyzer list."""

from __future__ import annotations

import pytest

from meshpilot.analyze.analyzers import ALL, named
from meshpilot.analyze.framework import Suppression, run_analyzers
from meshpilot.analyze.sources import load_text

DOCS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: a, namespace: shop}
spec:
  hosts: [x]
  http: [{route: [{destination: {host: missing}}]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: b
  namespace: other
  annotations: {galley.istio.io/analyze-suppress: "IST0109"}
spec:
  hosts: [y]
  http: [{route: [{destination: {host: missing}}]}]
"""


def _run(namespace: str | None = None, suppress: tuple[str, ...] = (), docs: str = DOCS):
    data = load_text(docs, "t.yaml").analysis_input()
    return run_analyzers(data, ALL, namespace=namespace,
                         suppressions=[Suppression.parse(s) for s in suppress])


def test_namespace_filter_hides_other_namespaces() -> None:
    result = _run("shop")
    assert [m.origin.full_name for m in result.messages] == ["shop/a"]
    assert [m.origin.full_name for m in result.hidden] == ["other/b"]
    assert len(_run(None).messages) == 2


def test_suppress_by_glob_and_legacy_name_form() -> None:
    assert [m.origin.name for m in _run(None, ("IST0101=VirtualService shop/*",)).messages] == ["b"]
    assert [m.origin.name for m in _run(None, ("IST0101=VirtualService b.other",)).messages] == [
        "a"]
    assert len(_run(None, ("IST0109=*",)).messages) == 2  # another code: no effect
    with pytest.raises(ValueError):
        Suppression.parse("IST0101")


def test_suppress_annotation() -> None:
    docs = DOCS.replace('"IST0109"', '"IST0109,IST0101"')
    assert [m.origin.name for m in _run(None, docs=docs).messages] == ["a"]
    docs = DOCS.replace('"IST0109"', '"*"')
    assert [m.origin.name for m in _run(None, docs=docs).messages] == ["a"]


def test_analyzers_by_name() -> None:
    assert [a.name for a in named(["gateway.SecretAnalyzer"])] == ["gateway.SecretAnalyzer"]
    with pytest.raises(KeyError):
        named(["nope"])
    names = [a.name for a in ALL]
    assert names == sorted(names) and len(names) == len(set(names))
