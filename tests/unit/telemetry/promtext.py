"""A small, strict parser of the Prometheus text format for tests: every sample line must
be `name{labels} value`, labels quoted and escaped as the format says, and every sample's
family must be declared by `# TYPE` first. Written independently of the renderer, so the
two cannot share a mistake."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)')
_SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]  # in the order written
    value: float

    @property
    def label_dict(self) -> dict[str, str]:
        return dict(self.labels)


def _unescape(value: str) -> str:
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\":
            nxt = value[i + 1]
            out.append({"n": "\n", "\\": "\\", '"': '"'}[nxt])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse(text: str) -> tuple[dict[str, str], list[Sample]]:
    """(family -> type, samples). Raises ValueError on anything malformed."""
    types: dict[str, str] = {}
    samples: list[Sample] = []
    assert text.endswith("\n"), "exposition must end with a newline"
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            if name in types:
                raise ValueError(f"family {name} declared twice")
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"bad sample line: {line!r}")
        name, _, body, value = m.groups()
        labels: list[tuple[str, str]] = []
        rest = body or ""
        while rest:
            lm = _LABEL.match(rest)
            if lm is None:
                raise ValueError(f"bad labels in {line!r}")
            labels.append((lm.group(1), _unescape(lm.group(2))))
            rest = rest[lm.end():]
        family = name
        if name not in types:
            family = next((name[: -len(s)] for s in _SUFFIXES
                           if name.endswith(s) and name[: -len(s)] in types), "")
        if family not in types:
            raise ValueError(f"sample {name} has no # TYPE")
        samples.append(Sample(name, tuple(labels), float(value)))
    return types, samples
