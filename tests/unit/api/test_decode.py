"""Loading and decoding: every error names the source, document, line and field path."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from meshpilot.api.decode import decode
from meshpilot.api.errors import InvalidInput
from meshpilot.api.load import parse_text, read_paths

VS = """\
apiVersion: networking.istio.io/v1beta1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
"""


def errors_of(text: str, namespace: str | None = None) -> list[str]:
    decoded = decode(parse_text(text, "in.yaml"), namespace=namespace)
    return [e.format() for e in decoded.errors]


def test_valid_document_decodes_with_defaults() -> None:
    decoded = decode(parse_text(VS.replace("  namespace: shop\n", ""), "in.yaml"))
    assert not decoded.errors
    res = decoded.resources[0]
    assert (res.kind, res.namespace, res.name) == ("VirtualService", "default", "reviews")
    assert res.api_version == "networking.istio.io/v1beta1"
    assert res.body["http"][0]["route"][0]["destination"]["subset"] == "v1"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("subset: v1", "subset: v1\n      weight: -5",
         "error: in.yaml: document 1, line 14 (VirtualService shop/reviews): "
         "spec.http[0].route[0].weight:"),
        ("  - route:", "  - timeout: 5 seconds\n    route:",
         "error: in.yaml: document 1, line 10 (VirtualService shop/reviews): spec.http[0].timeout: "
         "invalid duration '5 seconds'"),
        ("  - route:", "  - match:\n    - uri:\n        regex: '(?<=a)b'\n    route:",
         "spec.http[0].match[0].uri.regex: invalid RE2 regular expression '(?<=a)b'"),
        ("  - route:", "  - fault:\n      abort:\n        httpStatus: 503\n        percentage:\n"
                       "          value: 150\n    route:",
         "spec.http[0].fault.abort.percentage.value: percentage must be in the range"),
        ("  - reviews", "  - 'reviews!'", "spec.hosts[0]"),
        ("subset: v1", "subset: v1\n        port:\n          number: 70000",
         "spec.http[0].route[0].destination.port.number"),
        ("subset: v1", "subset: v1.0", "spec.http[0].route[0].destination.subset"),
        ("        host: reviews\n", "", "spec.http[0].route[0].destination.host: required field"),
        ("  - route:", "  - redirect:\n      uri: /new\n    route:", "spec.http[0]"),
        ("      - reviews", "      - reviews", "spec"),
    ],
)
def test_invalid_fields_are_located(old: str, new: str, expected: str) -> None:
    text = VS.replace(old, new)
    if text == VS:
        text = VS.replace("  http:", "  http: []\n  tcp: []").replace(
            "  - route:\n    - destination:\n        host: reviews\n        subset: v1\n", "")
    errors = errors_of(text)
    assert errors, text
    assert any(expected in e for e in errors), errors


def test_weights_follow_istio_1_15_rules() -> None:
    two = VS.replace("        subset: v1\n", "        subset: v1\n      weight: 0\n"
                     "    - destination:\n        host: reviews\n        subset: v2\n"
                     "      weight: 0\n")
    assert any("weight" in e for e in errors_of(two))
    uneven = two.replace("weight: 0", "weight: 3", 1).replace("weight: 0", "weight: 1")
    assert errors_of(uneven) == []


def test_unknown_field_suggests_the_right_one() -> None:
    errors = errors_of(VS.replace("        subset: v1", "        subst: v1"))
    assert errors == [
        "error: in.yaml: document 1, line 13 (VirtualService shop/reviews): "
        "spec.http[0].route[0].destination.subst: unknown field 'subst' (did you mean 'subset'?)"
    ]
    top = errors_of(VS.replace("spec:", "sepc:"))
    assert any("sepc: unknown field 'sepc' (did you mean 'spec'?)" in e for e in top)


def test_snake_case_fields_are_not_istio_fields() -> None:
    text = VS.replace("  - route:", "  - per_try_timeout: 1s\n    route:")
    assert any("unknown field 'per_try_timeout'" in e for e in errors_of(text))


def test_strict_types_do_not_coerce_strings() -> None:
    text = VS.replace("subset: v1", "subset: v1\n      weight: \"90\"")
    assert any("weight: input should be a valid integer" in e for e in errors_of(text))


def test_metadata_rules() -> None:
    assert any("metadata.name: required field is missing" in e
               for e in errors_of(VS.replace("  name: reviews\n", "")))
    assert any("metadata.name: invalid name 'Reviews'" in e
               for e in errors_of(VS.replace("name: reviews", "name: Reviews")))
    assert any("metadata.namespace: invalid namespace" in e
               for e in errors_of(VS.replace("namespace: shop", "namespace: Shop_1")))
    labels = VS.replace("  namespace: shop\n", "  namespace: shop\n  labels:\n    version: 2\n")
    assert any("metadata.labels.version: keys and values must be strings" in e
               for e in errors_of(labels))
    assert any("does not match the namespace 'other'" in e for e in errors_of(VS, "other"))


def test_api_version_and_kind() -> None:
    errors = errors_of(VS.replace("v1beta1", "v2"))
    assert errors == [
        "error: in.yaml: document 1, line 1 (VirtualService shop/reviews): apiVersion: "
        "VirtualService has no version 'v2' (use one of networking.istio.io/v1, "
        "networking.istio.io/v1beta1, networking.istio.io/v1alpha3)"
    ]
    assert any("kind: required field is missing" in e
               for e in errors_of(VS.replace("kind: VirtualService\n", "")))


def test_unhandled_kinds_are_skipped_not_dropped() -> None:
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n" + VS
    decoded = decode(parse_text(text, "in.yaml"))
    assert not decoded.errors and len(decoded.resources) == 1
    assert [s.format() for s in decoded.skipped] == [
        "warning: in.yaml: document 1, line 1 (Deployment web): skipped apps/v1 Deployment: "
        "not a kind meshpilot manages"
    ]
    sidecar = decode(parse_text("apiVersion: networking.istio.io/v1\nkind: Sidecar\n"
                                "metadata: {name: s}\n", "in.yaml"))
    assert "an Istio kind meshpilot does not act on yet" in sidecar.skipped[0].message


def test_list_items_are_located_inside_the_list() -> None:
    items = "\n".join("  " + line for line in VS.replace("subset: v1", "subset: V!").splitlines())
    text = "apiVersion: v1\nkind: List\nitems:\n-" + items[1:] + "\n"
    errors = errors_of(text)
    assert len(errors) == 1
    assert "document 1, line 16" in errors[0]
    assert "items[0].spec.http[0].route[0].destination.subset" in errors[0]


def test_yaml_syntax_and_duplicate_keys() -> None:
    with pytest.raises(InvalidInput) as bad:
        parse_text(VS + "  - : [\n", "in.yaml")
    assert bad.value.issues[0].source == "in.yaml" and bad.value.issues[0].line
    with pytest.raises(InvalidInput) as dup:
        parse_text(VS.replace("  name: reviews\n", "  name: reviews\n  name: ratings\n"), "d.yaml")
    assert dup.value.issues[0].format() == (
        "error: d.yaml: document 1, line 5: metadata.name: duplicate key 'name' "
        "(keep only one of them)"
    )


def test_duplicate_object_in_one_batch_is_an_error() -> None:
    decoded = decode(parse_text(VS + "---\n" + VS, "in.yaml"))
    assert "appears twice in this batch" in decoded.errors[0].message


def test_read_paths_directory_stdin_and_missing(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.yml").write_text(VS)
    (tmp_path / "a.json").write_text('{"apiVersion": "v1", "kind": "List", "items": []}')
    (tmp_path / "notes.txt").write_text("ignored")
    docs = read_paths([str(tmp_path)])
    assert [Path(d.source).name for d in docs] == ["a.json", "b.yml"]
    assert read_paths(["-"], stdin=io.StringIO(VS + "---\n---\n" + VS))[1].index == 3
    with pytest.raises(InvalidInput) as missing:
        read_paths([str(tmp_path / "nope.yaml")])
    assert missing.value.issues[0].format().endswith("nope.yaml: no such file or directory")


def test_secret_string_data_folds_into_data() -> None:
    text = ("apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\ntype: kubernetes.io/tls\n"
            "stringData:\n  tls.crt: CERT\n  tls.key: KEY\n")
    res = decode(parse_text(text, "s.yaml")).resources[0]
    assert res.body == {"type": "kubernetes.io/tls",
                        "data": {"tls.crt": "Q0VSVA==", "tls.key": "S0VZ"}}
    missing = errors_of(text.replace("  tls.key: KEY\n", ""))
    assert any("tls.key" in e for e in missing)
