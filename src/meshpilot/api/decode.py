"""Decode loaded documents into validated Resources, collecting every issue of the batch.

This is the single gate every write passes (CLI `validate`, `apply`, REST API, `up -f`):
envelope (apiVersion, kind, metadata), then the kind's typed model with Istio's rules.
Kinds meshpilot does not manage (Deployment, ConfigMap...) are reported as skipped.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

from .base import is_dns1123_label, is_dns1123_subdomain
from .errors import InvalidInput, Issue, PathPart
from .kinds import KNOWN_UNHANDLED, KindInfo, by_kind, split_api_version
from .labels import label_problem
from .load import Document
from .resource import Resource
from .schema import parse_model, suggest

DEFAULT_NAMESPACE = "default"

# Metadata the server owns: accepted (so `get -o yaml` output can be re-applied) and ignored.
SERVER_METADATA = {
    "uid", "generation", "creationTimestamp", "managedFields", "selfLink", "deletionTimestamp",
    "deletionGracePeriodSeconds", "ownerReferences", "finalizers", "generateName",
}  # fmt: skip
USER_METADATA = {"name", "namespace", "labels", "annotations", "resourceVersion"}


@dataclass
class Decoded:
    """The outcome of decoding a batch: resources in input order, or the reasons it failed."""

    resources: list[Resource] = field(default_factory=list)
    origins: list[Document] = field(default_factory=list)  # parallel to resources
    skipped: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)

    def raise_for_errors(self) -> None:
        if self.errors:
            raise InvalidInput(self.errors + self.warnings)


def _identity(data: dict[str, Any]) -> str | None:
    kind = data.get("kind")
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(kind, str):
        return None
    ns = meta.get("namespace") if isinstance(meta, dict) else None
    if isinstance(name, str):
        return f"{kind} {ns}/{name}" if isinstance(ns, str) else f"{kind} {name}"
    return kind


def _metadata_issues(meta: Any, info: KindInfo) -> list[Issue]:
    if not isinstance(meta, dict):
        return [Issue(("metadata",), "metadata must be a mapping with at least a name")]
    issues: list[Issue] = []
    for key in meta:
        if key not in USER_METADATA and key not in SERVER_METADATA:
            close = suggest(str(key), sorted(USER_METADATA))
            issues.append(Issue(("metadata", key), f"unknown field {key!r}",
                                hint=f"did you mean {close!r}?" if close else None))
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        issues.append(Issue(("metadata", "name"), "required field is missing",
                            hint="every resource needs metadata.name"))
    elif not is_dns1123_subdomain(name):
        issues.append(Issue(("metadata", "name"), f"invalid name {name!r}",
                            hint="use lowercase letters, digits, '-' and '.', starting and "
                                 "ending with a letter or digit"))
    ns = meta.get("namespace")
    if ns is not None and (not isinstance(ns, str) or not is_dns1123_label(ns)):
        issues.append(Issue(("metadata", "namespace"), f"invalid namespace {ns!r}",
                            hint="use a DNS-1123 label: lowercase letters, digits and '-'"))
    for section in ("labels", "annotations"):
        values = meta.get(section)
        if values is None:
            continue
        if not isinstance(values, dict):
            issues.append(Issue(("metadata", section), f"{section} must be a map of strings"))
            continue
        for k, v in values.items():
            if not isinstance(k, str) or not isinstance(v, str):
                issues.append(Issue(("metadata", section, str(k)),
                                    "keys and values must be strings",
                                    hint='quote values such as "true" or "1"'))
            elif section == "labels" and (problem := label_problem(k, v)):
                issues.append(Issue(("metadata", section, k), problem))
    rv = meta.get("resourceVersion")
    if rv is not None and not (isinstance(rv, str) and rv.isdigit()):
        issues.append(Issue(("metadata", "resourceVersion"),
                            "resourceVersion must be the string the server returned, e.g. \"42\""))
    return issues


def _body(data: dict[str, Any], info: KindInfo) -> dict[str, Any]:
    if info.body_key is not None:
        body = data.get(info.body_key)
        return body if isinstance(body, dict) else {}
    return {k: v for k, v in data.items() if k not in ("apiVersion", "kind", "metadata")}


def _secret_storage_body(body: dict[str, Any], model: Any) -> dict[str, Any]:
    """Kubernetes folds write-only `stringData` into base64 `data`; so do we."""
    from .core import secret_data

    out = {k: v for k, v in body.items() if k != "stringData"}
    data = secret_data(model)
    if data:
        out["data"] = {k: base64.b64encode(v).decode() for k, v in sorted(data.items())}
    return out


def _normalise(value: Any) -> Any:
    """Plain JSON types only (YAML may yield dates, sets...), so storage round-trips exactly."""
    return json.loads(json.dumps(value, default=str))


def decode_document(doc: Document, data: Any, namespace: str | None, out: Decoded) -> None:
    """Decode one document into `out` (a List is expanded item by item)."""
    ident = _identity(data) if isinstance(data, dict) else None

    def report(issues: list[Issue], bucket: list[Issue]) -> None:
        bucket.extend(doc.locate(i, ident) for i in issues)

    if not isinstance(data, dict):
        report([Issue((), "a document must be a mapping with apiVersion, kind and metadata")],
               out.errors)
        return
    api_version, kind = data.get("apiVersion"), data.get("kind")
    missing = [
        Issue((key,), "required field is missing")
        for key, value in (("apiVersion", api_version), ("kind", kind))
        if not isinstance(value, str) or not value
    ]
    if missing:
        report(missing, out.errors)
        return
    assert isinstance(api_version, str) and isinstance(kind, str)
    if kind == "List" and api_version == "v1":
        items = data.get("items")
        if not isinstance(items, list):
            report([Issue(("items",), "a List needs an items array")], out.errors)
            return
        for i, item in enumerate(items):
            decode_document(doc.item(i, item), item, namespace, out)
        return
    info = by_kind(kind)
    group, version = split_api_version(api_version)
    if info is None or info.group != group:
        reason = (
            "an Istio kind meshpilot does not act on yet"
            if kind in KNOWN_UNHANDLED
            else "not a kind meshpilot manages"
        )
        report([Issue((), f"skipped {api_version} {kind}: {reason}", severity="warning")],
               out.skipped)
        return
    if version not in info.versions:
        report([Issue(("apiVersion",), f"{kind} has no version {version!r}",
                      hint="use one of " + ", ".join(info.api_versions))], out.errors)
        return

    issues: list[Issue] = []
    allowed_top = {"apiVersion", "kind", "metadata", "status"}
    if info.body_key is not None:
        allowed_top.add(info.body_key)
        for key in data:
            if key not in allowed_top:
                close = suggest(str(key), sorted(allowed_top))
                issues.append(Issue((key,), f"unknown field {key!r}",
                                    hint=f"did you mean {close!r}?" if close else None))
        if not isinstance(data.get(info.body_key), dict):
            issues.append(Issue((info.body_key,), f"{info.body_key} is required and must be a "
                                                  "mapping"))
    meta = data.get("metadata")
    issues += _metadata_issues(meta, info)
    meta = meta if isinstance(meta, dict) else {}
    doc_ns = meta.get("namespace") if isinstance(meta.get("namespace"), str) else None
    if namespace is not None and doc_ns is not None and doc_ns != namespace:
        issues.append(Issue(("metadata", "namespace"),
                            f"the namespace {doc_ns!r} in the document does not match the "
                            f"namespace {namespace!r} given on the command line",
                            hint="drop one of them or make them equal"))
    resolved_ns = doc_ns or namespace or DEFAULT_NAMESPACE

    prefix: tuple[PathPart, ...] = (info.body_key,) if info.body_key else ()
    body = _body(data, info)
    model, body_issues = parse_model(
        info.model(), body, prefix=prefix, context={"namespace": resolved_ns}
    )
    issues += body_issues
    if model is not None and hasattr(model, "warnings"):
        report([w.located(path=prefix + w.path) for w in model.warnings()], out.warnings)
    if issues:
        report(issues, out.errors)
        return
    if kind == "Secret":
        body = _secret_storage_body(body, model)
    rv = meta.get("resourceVersion")
    resource = Resource(
        api_version=api_version,
        kind=kind,
        name=meta["name"],
        namespace=resolved_ns if info.namespaced else "",
        body=_normalise(body),
        labels=dict(meta.get("labels") or {}),
        annotations=dict(meta.get("annotations") or {}),
        resource_version=int(rv) if isinstance(rv, str) and rv.isdigit() else 0,
    )
    out.resources.append(resource)
    out.origins.append(doc)


def decode(documents: list[Document], *, namespace: str | None = None) -> Decoded:
    """Decode a whole batch; duplicates of one object within the batch are errors."""
    out = Decoded()
    for doc in documents:
        decode_document(doc, doc.data, namespace, out)
    seen: dict[tuple[str, str, str], Document] = {}
    for res, doc in zip(out.resources, out.origins, strict=True):
        key = (res.kind, res.namespace, res.name)
        if key in seen:
            first = seen[key]
            out.errors.append(doc.locate(
                Issue(("metadata", "name"), f"{res.key} appears twice in this batch",
                      hint=f"first at {first.source} document {first.index}"), str(res.key)))
        seen[key] = doc
    return out
