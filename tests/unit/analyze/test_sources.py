"""Reading files as istioctl's file source does: lines, namespaces, overrides, bad input."""

from __future__ import annotations

import io
from pathlib import Path

from meshpilot.analyze.sources import chunk_starts, field_maps, load_files, load_text

VS = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {name}
spec:
  hosts:
  - sample-app
  http:
  - route:
    - destination:
        host: {host}
"""


def test_chunk_starts_count_comments_and_skip_separators() -> None:
    text = "# comment\napiVersion: v1\n---\n\n---\n# two\n\nkind: X\n---\nkind: Y\n"
    # (line 4 is a blank chunk: istioctl reads it and skips it, it never names a resource)
    assert chunk_starts(text) == [1, 4, 6, 10]
    assert chunk_starts("---\na: 1\n--- \n\nb: 2") == [2, 5]


def test_field_maps_hold_scalar_values_only() -> None:
    lines = field_maps(VS.format(name="a", host="b"))[1]
    assert lines["{.spec.hosts[0]}"] == 7
    assert lines["{.spec.http[0].route[0].destination.host}"] == 11
    assert "{.spec.http[0]}" not in lines and "{.spec}" not in lines


def test_namespace_defaults_to_the_analyzed_namespace() -> None:
    data = load_text(VS.format(name="a", host="b"), "vs.yaml", "shop").analysis_input()
    [entry] = data.of("VirtualService")
    assert (entry.namespace, entry.origin.source, entry.origin.line) == ("shop", "vs.yaml", 1)


def test_later_definition_wins(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VS.format(name="x", host="first"))
    (tmp_path / "b.yaml").write_text("# override\n" + VS.format(name="x", host="second"))
    data = load_files([str(tmp_path)]).analysis_input()
    [entry] = data.of("VirtualService")
    assert entry.spec.http[0].route[0].destination.host == "second"
    assert entry.origin.source == str(tmp_path / "b.yaml") and entry.origin.line == 1


def test_unmanaged_kinds_are_skipped_and_bad_documents_are_input_errors() -> None:
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n---\nfoo: bar\n"
    loaded = load_text(text, "x.yaml")
    assert loaded.analysis_input().entries == []
    assert [i.format() for i in loaded.input_errors] == [
        "error: x.yaml: document 2, line 5: apiVersion: required field is missing",
        "error: x.yaml: document 2, line 5: kind: required field is missing"]
    broken = load_text("a: [", "y.yaml")
    assert broken.input_errors and broken.input_errors[0].message.startswith("invalid YAML")


def test_list_items_and_stdin() -> None:
    text = """apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: a, namespace: shop}
  spec: {ports: [{name: http, port: 80}]}
"""
    loaded = load_files(["-"], stdin=io.StringIO(text))
    [entry] = loaded.analysis_input().of("Service")
    assert (entry.origin.source, entry.origin.line) == ("-", 4)
    assert entry.origin.line_of("{.spec.ports[0].port}") == 7


def test_files_with_other_extensions_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    loaded = load_files([str(tmp_path)])
    assert loaded.notices == [f"Skipping file {tmp_path / 'notes.txt'}, recognized file "
                              "extensions are: [.json .yaml .yml]"]
