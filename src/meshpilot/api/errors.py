"""Issues found in user input, located precisely enough to fix them.

Every problem a user can cause is reported as an `Issue` carrying the field path
(`spec.http[0].match[0].cookie`), and, once the loader knows it, the source file,
the document number and the line. Validation collects all issues of a batch before
anything is stored, so one run shows every mistake.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

Severity = Literal["error", "warning"]
PathPart = str | int


def render_path(parts: tuple[PathPart, ...] | list[PathPart]) -> str:
    """Render ('spec', 'http', 0, 'match') as `spec.http[0].match`.

    Map keys that are not plain identifiers (e.g. label keys with dots or slashes)
    are shown in brackets, as kubectl does: `metadata.labels[app.kubernetes.io/name]`.
    """
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum() and not part[:1].isdigit():
            out += f".{part}" if out else part
        else:
            out += f"[{part}]"
    return out


@dataclass(frozen=True)
class Issue:
    """One problem (or warning) at one field path of one document."""

    path: tuple[PathPart, ...]
    message: str
    hint: str | None = None
    severity: Severity = "error"
    source: str | None = None
    document: int | None = None  # 1-based position of the YAML document in its source
    line: int | None = None  # 1-based
    resource: str | None = None  # e.g. "VirtualService traffic-demo/sample-app"

    @property
    def field_path(self) -> str:
        return render_path(self.path)

    def located(self, **where: object) -> Issue:
        return replace(self, **where)  # type: ignore[arg-type]

    def format(self) -> str:
        """One line a user can act on: where, what, and how to fix it."""
        where: list[str] = []
        if self.source is not None:
            loc = self.source
            if self.document is not None:
                loc += f": document {self.document}"
            if self.line is not None:
                loc += f", line {self.line}"
            where.append(loc)
        if self.resource:
            where.append(f"({self.resource})")
        head = " ".join(where)
        body = f"{self.field_path}: {self.message}" if self.path else self.message
        text = f"{head}: {body}" if head else body
        if self.hint:
            text += f" ({self.hint})"
        prefix = "warning: " if self.severity == "warning" else "error: "
        return prefix + text

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "field": self.field_path,
            "message": self.message,
            "severity": self.severity,
        }
        for key in ("hint", "source", "document", "line", "resource"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        return out


@dataclass
class InvalidInput(Exception):
    """Raised when a batch of documents has at least one error; nothing was stored."""

    issues: list[Issue] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(i.format() for i in self.issues)

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]
