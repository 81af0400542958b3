"""Where analyzed resources come from: files, the control plane, and Istio's defaults.

Files are read the way istioctl's file source reads them, so references agree:

- a document's reference line is the first line of its YAML chunk (after `---`,
  comments included), and a field's line is the line of its scalar value;
- a resource without a namespace gets the namespace being analyzed (`default` unless
  `-n` is given);
- a resource defined twice: the later one wins (so `-f base/ -f sections/03.yaml`
  analyzes the section replacing the base rule);
- kinds meshpilot does not manage (Deployment, ConfigMap...) are skipped silently.

Validation is meshpilot's own (api/decode.py, what `apply` runs). Its errors become
IST0106 findings; unknown fields are then dropped (as Istio's lenient decoding drops
them) and the resource is analyzed as Istio would see it. Documents that cannot be
identified (no kind or name, not YAML) are input errors: the command reports them and
exits 1, as istioctl fails on files it cannot parse.
"""

from __future__ import annotations

import copy
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from ..api.decode import DEFAULT_NAMESPACE, Decoded, decode_document
from ..api.errors import InvalidInput, Issue, PathPart
from ..api.kinds import KINDS, by_kind
from ..api.load import SUFFIXES, Document, parse_text
from ..api.resource import Resource
from .message import Origin
from .model import AnalysisInput, Entry, SchemaFinding

STDIN = "-"
INTERNAL_INGRESS = "internal-ingress"


@dataclass(frozen=True)
class Unit:
    """One identified resource as read: its typed entry (None when it failed validation)
    and its validation findings."""

    key: tuple[str, str, str]
    origin: Origin
    entry: Entry[Any] | None
    errors: tuple[Issue, ...] = ()
    warnings: tuple[Issue, ...] = ()


@dataclass
class Loaded:
    """What one or more sources gave, in reading order."""

    units: list[Unit] = field(default_factory=list)
    input_errors: list[Issue] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)  # e.g. skipped files

    def extend(self, other: Loaded) -> Loaded:
        return Loaded(self.units + other.units, self.input_errors + other.input_errors,
                      self.files + other.files, self.notices + other.notices)

    def analysis_input(self) -> AnalysisInput:
        """The last definition of each resource wins, with its findings (istioctl's file
        source updates an object a later file defines again; files overlay the cluster)."""
        last: dict[tuple[str, str, str], Unit] = {}
        for unit in self.units:
            last.pop(unit.key, None)
            last[unit.key] = unit
        data = AnalysisInput([u.entry for u in last.values() if u.entry is not None])
        for unit in last.values():
            data.schema_errors += [SchemaFinding(unit.origin, i) for i in unit.errors]
            data.schema_warnings += [SchemaFinding(unit.origin, i) for i in unit.warnings]
        return data


# --- line numbers as istioctl computes them -------------------------------------------------


def chunk_starts(text: str) -> list[int]:
    """The first line of each `---`-separated chunk, as kubeyaml.YAMLReader finds it: the
    first line that is neither empty nor exactly `---` (a comment counts)."""
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines and lines[-1] == "":
        lines.pop()
    starts: list[int] = []
    start, found, buffered = 1, False, False
    for number, line in enumerate(lines, start=1):
        if not found and line not in ("", "---"):
            start, found = number, True
        if line.startswith("---") and not line[3:].strip():
            if buffered:
                starts.append(start)
                start, found, buffered = number + 1, False, False
            continue
        buffered = True
    if buffered:
        starts.append(start)
    return starts


def _field_map(node: yaml.Node, path: str, out: dict[str, int]) -> None:
    """Istio's BuildFieldPathMap: `{.spec.hosts[0]}` -> line, for scalar leaves only."""
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            here = f"{path}.{key.value}"
            if isinstance(value, yaml.ScalarNode):
                out[f"{{{here}}}"] = value.start_mark.line + 1
            else:
                _field_map(value, here, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            here = f"{path}[{i}]"
            if isinstance(item, yaml.ScalarNode):
                out[f"{{{here}}}"] = item.start_mark.line + 1
            else:
                _field_map(item, here, out)


def field_maps(text: str) -> dict[int, dict[str, int]]:
    """Per document index (numbered as api.load.parse_text numbers them), its field map."""
    maps: dict[int, dict[str, int]] = {}
    loader = yaml.SafeLoader(text)
    try:
        index = 0
        while loader.check_node():
            index += 1
            node = loader.get_node()
            if node is not None:
                lines: dict[str, int] = {}
                _field_map(node, "", lines)
                maps[index] = lines
    except yaml.YAMLError:
        pass  # parse_text reports it
    finally:
        loader.dispose()
    return maps


def _sub_map(lines: dict[str, int], prefix: tuple[PathPart, ...]) -> dict[str, int]:
    if not prefix:
        return lines
    head = "{" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in prefix)
    return {"{" + key[len(head):]: line for key, line in lines.items() if key.startswith(head)}


# --- decoding --------------------------------------------------------------------------------


@dataclass
class _Source:
    """One file (or the control plane's listing) being decoded."""

    name: str | None  # None: live objects from the control plane
    starts: list[int] = field(default_factory=list)
    maps: dict[int, dict[str, int]] = field(default_factory=dict)

    def origin(self, doc: Document, kind: str, namespace: str, name: str,
               annotations: dict[str, str]) -> Origin:
        if self.name is None:
            return Origin(kind, namespace, name, annotations=annotations)
        if doc.prefix:
            line = doc.line_of(())
        else:
            line = max((s for s in self.starts if s <= doc.line), default=doc.line)
        lines = _sub_map(self.maps.get(doc.index, {}), doc.prefix)
        return Origin(kind, namespace, name, self.name, line, lines, annotations)


def _identity(data: Any, namespace: str) -> tuple[str, str, str, dict[str, str]] | None:
    if not isinstance(data, dict) or not isinstance(data.get("kind"), str):
        return None
    meta = data.get("metadata")
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        return None
    ns = meta.get("namespace") if isinstance(meta.get("namespace"), str) else namespace
    annotations = meta.get("annotations")
    annotations = {str(k): str(v) for k, v in annotations.items()} \
        if isinstance(annotations, dict) else {}
    return data["kind"], ns or namespace, meta["name"], annotations


def _with_namespace(data: Any, namespace: str) -> Any:
    """Fill in metadata.namespace, as istioctl's file source does with the analyzed one."""
    if not isinstance(data, dict) or not isinstance(data.get("metadata"), dict):
        return data
    if data["metadata"].get("namespace"):
        return data
    return {**data, "metadata": {**data["metadata"], "namespace": namespace}}


def _prune(data: Any, paths: Iterable[tuple[PathPart, ...]]) -> Any:
    """`data` without the fields at `paths` (unknown fields, dropped as Istio drops them)."""
    out = copy.deepcopy(data)
    for path in paths:
        parent: Any = out
        for part in path[:-1]:
            try:
                parent = parent[part]
            except (KeyError, IndexError, TypeError):
                parent = None
                break
        if isinstance(parent, dict) and path:
            parent.pop(path[-1], None)
    return out


def _entry(res: Resource, origin: Origin, status: Any) -> Entry[Any] | None:
    info = by_kind(res.kind)
    if info is None:
        return None
    spec = info.model().model_validate(res.body, by_alias=True, by_name=False,
                                       context={"namespace": res.namespace})
    return Entry(res, spec, origin, status if isinstance(status, dict) else None)


def _decode_unit(source: _Source, doc: Document, data: Any, namespace: str, out: Loaded) -> None:
    data = _with_namespace(data, namespace)
    decoded = Decoded()
    decode_document(doc, data, None, decoded)
    if decoded.skipped:
        return
    identity = _identity(data, namespace)
    if identity is None:
        out.input_errors += decoded.errors
        return
    kind, ns, name, annotations = identity
    origin = source.origin(doc, kind, ns, name, annotations)
    errors = tuple(decoded.errors)
    if errors:
        unknown = [i.path[len(doc.prefix):] for i in errors
                   if i.message.startswith("unknown field ")]
        decoded = Decoded()
        if unknown:
            decode_document(doc, _prune(data, unknown), None, decoded)
    entry = None
    if decoded.resources and not decoded.errors:
        entry = _entry(decoded.resources[0], origin, data.get("status"))
    out.units.append(Unit((kind, ns, name), origin, entry, errors, tuple(decoded.warnings)))


def _units(doc: Document) -> list[tuple[Document, Any]]:
    data = doc.data
    if isinstance(data, dict) and data.get("kind") == "List" and data.get("apiVersion") == "v1" \
            and isinstance(data.get("items"), list):
        return [(doc.item(i, item), item) for i, item in enumerate(data["items"])]
    return [(doc, data)]


def load_text(text: str, name: str, namespace: str = DEFAULT_NAMESPACE) -> Loaded:
    """Resources of one YAML/JSON text named `name` (a file path, `-` for stdin)."""
    out = Loaded(files=[name])
    try:
        docs = parse_text(text, name)
    except InvalidInput as e:
        out.input_errors += e.issues
        return out
    source = _Source(name, chunk_starts(text), field_maps(text))
    for doc in docs:
        for unit_doc, data in _units(doc):
            _decode_unit(source, unit_doc, data, namespace, out)
    return out


def _walk(path: Path) -> list[Path]:
    """filepath.Walk order: lexical within each directory, depth first."""
    out: list[Path] = []
    for name in sorted(os.listdir(path)):
        child = path / name
        out += _walk(child) if child.is_dir() else [child]
    return out


def load_files(paths: Sequence[str], namespace: str = DEFAULT_NAMESPACE,
               stdin: TextIO | None = None) -> Loaded:
    """Every file named by `paths` (files, directories recursively, `-` for stdin)."""
    out = Loaded()
    for raw in paths:
        if raw == STDIN:
            out = out.extend(load_text((stdin or sys.stdin).read(), STDIN, namespace))
            continue
        path = Path(raw)
        if not path.exists():
            out.input_errors.append(Issue((), "no such file or directory", source=raw))
            continue
        files = _walk(path) if path.is_dir() else [path]
        for file in files:
            shown = raw if file == path else str(file)
            if file.suffix not in SUFFIXES:
                out.notices.append(f"Skipping file {shown}, recognized file extensions are: "
                                   "[.json .yaml .yml]")
                continue
            try:
                text = file.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as e:
                out.input_errors.append(Issue((), f"cannot read: {e}", source=shown))
                continue
            out = out.extend(load_text(text, shown, namespace))
    return out


def load_objects(objects: Iterable[dict[str, Any]]) -> Loaded:
    """Objects as the control plane's REST API returns them (no file reference)."""
    out = Loaded()
    source = _Source(None)
    for i, obj in enumerate(objects, start=1):
        doc = Document("<server>", i, obj, 0)
        _decode_unit(source, doc, obj, DEFAULT_NAMESPACE, out)
    return out


def fetch_objects(client: Any) -> list[dict[str, Any]]:
    """Every object of every kind meshpilot stores, in all namespaces."""
    objects: list[dict[str, Any]] = []
    for info in KINDS:
        listing = client.get(info.collection_path())
        for item in listing.get("items") or []:
            item.setdefault("apiVersion", info.preferred_api_version)
            item.setdefault("kind", info.kind)
            objects.append(item)
    return objects


# Istio's AddDefaultResources for file-only analysis: a stand-in ingress gateway pod and
# its Service, so Gateways selecting `istio: ingressgateway` are not reported as
# selecting nothing. The pod is a WorkloadEntry here (meshpilot's pods).
_DEFAULT_INGRESS = """\
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  labels:
    istio: ingressgateway
  name: {service}-dummypod
  namespace: {namespace}
spec:
  address: 192.0.2.1
  labels:
    istio: ingressgateway
---
apiVersion: v1
kind: Service
metadata:
  name: {service}
  namespace: {namespace}
spec:
  ports:
  - name: http2
    nodePort: 31380
    port: 80
    protocol: TCP
    targetPort: 80
  - name: https
    nodePort: 31390
    port: 443
    protocol: TCP
    targetPort: 443
  - name: tcp
    nodePort: 31400
    port: 31400
    protocol: TCP
    targetPort: 31400
  - name: tls
    nodePort: 31447
    port: 15443
    protocol: TCP
    targetPort: 15443
  selector:
    istio: ingressgateway
  type: LoadBalancer
"""


def default_resources(istio_namespace: str = "istio-system",
                      ingress_service: str = "istio-ingressgateway") -> Loaded:
    text = _DEFAULT_INGRESS.format(namespace=istio_namespace, service=ingress_service)
    loaded = load_text(text, INTERNAL_INGRESS, istio_namespace)
    loaded.files = []
    assert not loaded.input_errors and all(u.entry for u in loaded.units), loaded.units
    return loaded
