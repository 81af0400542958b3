"""Read YAML/JSON documents from files, directories or stdin, remembering where each field is.

The line of every field is recorded so that an error deep in a document can say
`line 42`, not just `document 3`. Duplicate keys, which PyYAML silently collapses,
are reported as errors, as Kubernetes' strict decoding does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import yaml

from .errors import InvalidInput, Issue, PathPart

SUFFIXES = (".yaml", ".yml", ".json")
STDIN = "-"


@dataclass
class Document:
    """One YAML document (or one item of a `kind: List`) and where it came from."""

    source: str
    index: int  # 1-based position among the source's documents
    data: Any
    line: int  # 1-based line where the document starts
    lines: dict[tuple[PathPart, ...], int] = field(default_factory=dict)
    prefix: tuple[PathPart, ...] = ()  # ("items", 2) for an item of a List

    def line_of(self, path: tuple[PathPart, ...]) -> int:
        """Line of the deepest known field on `path` (paths are relative to the item)."""
        full = self.prefix + path
        for cut in range(len(full), -1, -1):
            line = self.lines.get(full[:cut])
            if line is not None:
                return line
        return self.line

    def locate(self, issue: Issue, resource: str | None = None) -> Issue:
        return issue.located(
            source=self.source,
            document=self.index,
            line=self.line_of(issue.path),
            resource=resource,
            path=self.prefix + issue.path if self.prefix else issue.path,
        )

    def item(self, index: int, data: Any) -> Document:
        return Document(
            self.source, self.index, data, self.line, self.lines, (*self.prefix, "items", index)
        )


def _walk(
    node: yaml.Node, path: tuple[PathPart, ...], lines: dict, issues: list[Issue],
    line: int | None = None,
) -> None:
    """Record each field's line: a mapping entry is on its key's line, not its value's."""
    lines[path] = line or node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            if key in seen:
                issues.append(
                    Issue((*path, key), f"duplicate key {key!r}", hint="keep only one of them",
                          line=key_node.start_mark.line + 1)
                )
            seen.add(key)
            _walk(value_node, (*path, key), lines, issues, key_node.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*path, i), lines, issues)


def parse_text(text: str, source: str) -> list[Document]:
    """All non-empty documents of a YAML/JSON text; raises InvalidInput on syntax errors."""
    docs: list[Document] = []
    loader: yaml.SafeLoader | None = None
    index = 0
    try:
        loader = yaml.SafeLoader(text)
        while loader.check_node():
            index += 1
            node = loader.get_node()
            if node is None:
                continue
            data = loader.construct_document(node)
            if data is None:
                continue
            lines: dict[tuple[PathPart, ...], int] = {}
            problems: list[Issue] = []
            _walk(node, (), lines, problems)
            doc = Document(source, index, data, node.start_mark.line + 1, lines)
            if problems:
                raise InvalidInput(
                    [p.located(source=source, document=index) for p in problems]
                )
            docs.append(doc)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e)
        context = getattr(e, "context", None)
        message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
        raise InvalidInput(
            [Issue((), message, source=source, document=max(index, 1),
                   line=mark.line + 1 if mark else None)]
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return docs


def files_under(path: Path) -> list[Path]:
    """A directory's manifest files, recursively, in a stable (sorted) order."""
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def read_paths(paths: Iterable[str], stdin: TextIO | None = None) -> list[Document]:
    """Documents from each path in order: a file, a directory (recursive) or `-` for stdin."""
    docs: list[Document] = []
    issues: list[Issue] = []
    for raw in paths:
        try:
            if raw == STDIN:
                docs += parse_text((stdin or sys.stdin).read(), "<stdin>")
                continue
            path = Path(raw)
            if path.is_dir():
                found = files_under(path)
                if not found:
                    issues.append(Issue((), f"no {'/'.join(SUFFIXES)} files in directory",
                                        source=raw))
                for file in found:
                    docs += parse_text(file.read_text(encoding="utf-8"), str(file))
            elif path.is_file():
                docs += parse_text(path.read_text(encoding="utf-8"), raw)
            else:
                issues.append(Issue((), "no such file or directory", source=raw))
        except InvalidInput as e:
            issues += e.issues
        except (OSError, UnicodeDecodeError) as e:
            issues.append(Issue((), f"cannot read: {e}", source=raw))
    if issues:
        raise InvalidInput(issues)
    return docs
