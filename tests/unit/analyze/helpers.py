"""Analyze YAML snippets in-process: the messages as istioctl would print them."""

from __future__ import annotations

from collections.abc import Sequence

from meshpilot.analyze.analyzers import ALL
from meshpilot.analyze.framework import Analyzer, run_analyzers
from meshpilot.analyze.message import Message
from meshpilot.analyze.sources import default_resources, load_text

SERVICE = """
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{app: {name}}}
  ports: [{ports}]
"""


def service(name: str, ns: str = "shop", ports: str = "{name: http, port: 80}") -> str:
    return SERVICE.format(name=name, ns=ns, ports=ports)


def workload(name: str, ns: str = "shop", **labels: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: {name}, namespace: {ns}}}
spec:
  address: 127.0.0.1
  labels: {labels!r}
"""


def messages(*docs: str, analyzers: Sequence[Analyzer] = ALL, namespace: str | None = None,
             defaults: bool = True, source: str = "test.yaml") -> list[Message]:
    text = "\n---\n".join(d.strip("\n") for d in docs)
    loaded = load_text(text, source)
    assert not loaded.input_errors, loaded.input_errors
    if defaults:
        loaded = default_resources().extend(loaded)
    return run_analyzers(loaded.analysis_input(), analyzers, namespace=namespace).messages


def lines(*docs: str, **kw: object) -> list[str]:
    """Printed messages without the file reference, e.g.
    `Error [IST0101] (VirtualService shop/x) Referenced host not found: "y"`."""
    out = []
    for m in messages(*docs, **kw):  # type: ignore[arg-type]
        ref = m.reference
        out.append(str(m).replace(f" {ref})", ")") if ref else str(m))
    return out


def codes(*docs: str, **kw: object) -> list[str]:
    return [m.code for m in messages(*docs, **kw)]  # type: ignore[arg-type]
