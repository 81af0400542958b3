"""Schema analyzers, one per kind (Istio's schema.ValidationAnalyzer.<Kind>).

IST0106 carries what meshpilot's validator rejected (the same checks `validate` and
`apply` run; e.g. the seed's `match: - cookie:`), IST0133 the warnings it shares with
Istio's validation. Unreachable rules and ineffective matches (IST0130/IST0131) are
computed here from the typed spec with Istio's algorithm, so they carry Istio's words.

Unlike istioctl, which decodes leniently and silently drops unknown fields, meshpilot
reports them (IST0106), then analyzes the resource with those fields dropped, exactly
as Istio would run it; a resource with any other error is left out of the analysis.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ...api.errors import Issue
from ...api.virtualservice import HTTPMatchRequest, HTTPRoute, StringMatch
from .. import catalogue as msg
from ..framework import Analyzer
from ..message import Message
from ..model import AnalysisInput, Entry, SchemaFinding

KINDS = ("DestinationRule", "Gateway", "Secret", "Service", "ServiceEntry", "VirtualService",
         "WorkloadEntry")


def _finding_text(finding: SchemaFinding) -> str:
    issue = finding.issue
    text = f"{issue.field_path}: {issue.message}" if issue.path else issue.message
    return f"{text} ({issue.hint})" if issue.hint else text


# meshpilot's validator warns about more than Istio's. These are the warnings Istio's own
# validation gives (pkg/config/validation), which istioctl reports as IST0133; the others
# (e.g. consecutiveGatewayErrors not lower than consecutive5xxErrors) are meshpilot's
# advice, shown by `meshpilot validate` and `apply` but not by analyze, which reports
# what istioctl reports.
ISTIO_WARNINGS = (
    "httpsredirect should only be used with http servers",
    "workload selector specified without labels",
    "consecutiveerrors is deprecated",
    "minimumringsize is deprecated",
    "tls versions below tlsv1_2",
    "cipher suite",
    "mode does not use certificates",
    "abort configured, but error type not set",
    "address is unset with network",
    "workloadselector should not be set when resolution mode is none",
    "as sni goes against the sni spec",
    "legacy gateway name format",
    "large direct responses may impact control plane performance",
    'deprecated setting "mirrorpercent"',
    "partial wildcard",
    "addresses are required for ports serving tcp",
    "can not have more than one host specified",
)


def is_istio_warning(issue: Issue) -> bool:
    """Whether istioctl's validation gives this warning too (IST0133). Unreachable rules
    and ineffective matches are not in the list: IST0130/IST0131 report them."""
    text = issue.message.lower()
    return any(pattern in text for pattern in ISTIO_WARNINGS)


def schema_findings(data: AnalysisInput, kind: str) -> Iterator[Message]:
    for finding in data.schema_errors:
        if finding.origin.kind == kind:
            yield Message(msg.SCHEMA_VALIDATION_ERROR, (_finding_text(finding),),
                          finding.origin, finding.issue.line or 0)
    for finding in data.schema_warnings:
        if finding.origin.kind == kind and is_istio_warning(finding.issue):
            yield Message(msg.SCHEMA_WARNING, (_finding_text(finding),), finding.origin,
                          finding.issue.line or 0)


# --- unreachable rules (Istio's analyzeUnreachable{HTTP,TCP,TLS}Rules) ----------------------

Report = Callable[..., None]


def _route_name(route: Any, n: int) -> str:
    name = getattr(route, "name", "") if isinstance(route, HTTPRoute) else ""
    return json.dumps(name) if name else f"#{n}"


def _request_name(match: Any, n: int) -> str:
    name = getattr(match, "name", "") if isinstance(match, HTTPMatchRequest) else ""
    return json.dumps(name) if name else f"#{n}"


def _as_json(match: Any) -> str:
    """A match without its name, canonically: two matches are duplicates when equal."""
    data = match.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    data.pop("name", None)
    return json.dumps(data, sort_keys=True)


def _exact_or_prefix(value: StringMatch | None) -> str:
    if value is None:
        return ""
    if value.exact:
        return "exact:" + value.exact
    if value.prefix:
        return "prefix:" + value.prefix
    return ""


@dataclass(frozen=True)
class _PrefixMatch:
    """Istio's OverlappingMatchValidationForHTTPRoute."""

    route: str
    match: str
    prefix: str
    port: int
    method: str
    authority: str
    headers: dict[str, str]
    query_params: dict[str, str]
    without_headers: dict[str, str]


def _prefix_match(route: HTTPRoute, match: HTTPMatchRequest, rulen: int, matchn: int
                  ) -> _PrefixMatch | None:
    if match.uri is None or not match.uri.prefix:
        return None
    return _PrefixMatch(
        route=_route_name(route, rulen), match=_request_name(match, matchn),
        prefix=match.uri.prefix, port=match.port,
        method=_exact_or_prefix(match.method) or "exact:GET",
        authority=_exact_or_prefix(match.authority),
        headers={k: _exact_or_prefix(v) for k, v in match.headers.items()},
        query_params={k: _exact_or_prefix(v) for k, v in match.query_params.items()},
        without_headers={k: _exact_or_prefix(v) for k, v in match.without_headers.items()},
    )


def _covered_map(a: dict[str, str], b: dict[str, str]) -> bool:
    if len(a) != len(b):
        return False
    return all(k in b and (v == b[k] or v.startswith(b[k])) for k, v in a.items())


def _covered(a: _PrefixMatch, b: _PrefixMatch) -> bool:
    """Istio's coveredValidation: does the earlier match `a` take every request of the
    later `b`? (Its string tests are kept as they are, including their direction.)"""
    if not b.prefix.startswith(a.prefix) or a.port != b.port:
        return False
    if a.method != b.method and not a.method.startswith(b.method):
        return False
    if a.authority != b.authority and not a.authority.startswith(b.authority):
        return False
    return (_covered_map(a.headers, b.headers) and _covered_map(a.query_params, b.query_params)
            and _covered_map(a.without_headers, b.without_headers))


def unreachable_rules(routes: Sequence[Any], unused: Report, ineffective: Report,
                      *, http: bool) -> None:
    """Rules after a rule without matches, rules whose every match an earlier rule has,
    and (HTTP) prefix matches an earlier prefix match already covers."""
    seen: dict[str, int] = {}
    catch_all = -1
    prefixes: list[_PrefixMatch] = []
    for rulen, route in enumerate(routes):
        if not route.match:
            if catch_all >= 0:
                unused(_route_name(route, rulen), "only the last rule can have no matches")
            catch_all = rulen
            continue
        duplicates = 0
        for matchn, match in enumerate(route.match):
            if catch_all >= 0:
                unused(_route_name(route, rulen), "route without matches defined before")
                continue
            key = _as_json(match)
            if key in seen:
                dup = seen[key]
                ineffective(_route_name(route, rulen), _request_name(match, matchn),
                            _route_name(routes[dup], dup))
                duplicates += 1
                continue
            seen[key] = rulen
            if http and (found := _prefix_match(route, match, rulen, matchn)) is not None:
                prefixes.append(found)
        if duplicates == len(route.match):
            unused(_route_name(route, rulen), "all matches used by prior rules")
    for i, earlier in enumerate(prefixes):
        for later in prefixes[i + 1:]:
            if later.prefix == earlier.prefix:
                continue
            if _covered(earlier, later):
                ineffective(later.route, f"{later.match} of prefix {later.prefix}",
                            f"{earlier.match} of prefix {earlier.prefix} on {earlier.route}")


def virtual_service_rules(entry: Entry[Any]) -> list[Message]:
    """IST0130/IST0131 for one VirtualService (Istio blames the document, not a line)."""
    out: list[Message] = []

    def unused(rule: str, reason: str) -> None:
        out.append(Message(msg.VS_UNREACHABLE_RULE, (rule, reason), entry.origin))

    def ineffective(rule: str, match: str, dup: str) -> None:
        out.append(Message(msg.VS_INEFFECTIVE_MATCH, (rule, match, dup), entry.origin))

    vs = entry.spec
    unreachable_rules(vs.http, unused, ineffective, http=True)
    unreachable_rules(vs.tcp, unused, ineffective, http=False)
    unreachable_rules(vs.tls, unused, ineffective, http=False)
    return out


def _analyzer(kind: str) -> Analyzer:
    codes = ("IST0106", "IST0133")
    if kind == "VirtualService":
        codes += ("IST0130", "IST0131")

    def run(data: AnalysisInput) -> list[Message]:
        out = list(schema_findings(data, kind))
        if kind == "VirtualService":
            for entry in data.of(kind):
                out += virtual_service_rules(entry)
        return out

    return Analyzer(f"schema.ValidationAnalyzer.{kind}",
                    f"Runs schema validation as an analyzer on '{kind}' resources", codes, run)


ANALYZERS = tuple(_analyzer(kind) for kind in KINDS)
