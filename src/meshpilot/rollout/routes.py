"""How a rollout edits the user's VirtualService (pure; spec dicts in, spec dicts out).

The user owns the VirtualService, as with Argo Rollouts (Flagger generates its own and
loses the user's rules, fluxcd/flagger#1857). The rollout changes exactly two things:

1. The **default route**: the first `http` rule without `match` (Envoy never reaches a
   later catch-all, so editing one would be a silent no-op, as in argo-rollouts#4741). All
   its destinations must be the Canary's host. Only its destinations' weights are edited
   (stable = 100 - canary, a 0-weight destination stays while the rollout runs), plus the
   canary mirror and the session-affinity `Set-Cookie` on the canary destination. Its
   other fields (timeout, retries, headers...) are kept. If the user's default route has
   a single destination without a subset (`route: [{destination: {host: sample-app}}]`),
   the rollout rewrites it into the stable and canary subsets; `rolled_back()` leaves the
   stable subset there (the subset-less form cannot be told apart afterwards).
2. **Managed rules**, named `meshpilot-canary-<canary>-<suffix>`, each sending its
   matching requests 100 % to the canary: the session-affinity cookie rule (`affinity`),
   header routes (`header-<name>`), the A/B match (`ab`), in that order. They are
   inserted directly before the default route, not at the top: user rules with a match
   (a `/static` rule to another service, a redirect, the seed's `version: v2` rule) keep
   their precedence, and the rollout only redirects traffic that would have taken the
   default route. Each managed rule copies the default route's policies (timeout,
   retries, rewrite, headers, fault, CORS), so a request pinned to the canary is treated
   as it would be on the default route.

Every function is deterministic and idempotent: `apply_state(apply_state(vs, s), s)`
equals `apply_state(vs, s)`, and `apply_state(apply_state(vs, a), b)` equals
`apply_state(vs, b)`, so the controller may re-apply after a restart or after a user
re-applied the VirtualService. Every result is validated with the VirtualService model.

Hosts compare as Istio resolves them: in namespace `traffic-demo`, `sample-app` and
`sample-app.traffic-demo.svc.cluster.local` are the same host. Pass `namespace=` (the
Canary's and its VirtualService's namespace) for an exact comparison; without it a short
name matches any `<name>.<ns>.svc.<domain>`.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ..api.base import is_dns1123_label
from ..api.canary import CanarySpec
from ..api.hosts import DEFAULT_DOMAIN, resolve_short_name
from ..api.resource import Resource
from ..api.schema import parse_model
from ..api.virtualservice import MESH_GATEWAY, HTTPMatchRequest, VirtualService
from .plan import match_dicts

MANAGED_PREFIX = "meshpilot-canary"  # rule names: f"{MANAGED_PREFIX}-{canary}-{suffix}"
CREATED_BY_ANNOTATION = "meshpilot.io/created-by-canary"
VS_API_VERSION = "networking.istio.io/v1"

AFFINITY_SUFFIX = "affinity"
AB_SUFFIX = "ab"
HEADER_SUFFIX = "header-"

_POLICY_SKIP = frozenset({"name", "match", "route", "mirror", "mirrors", "mirrorPercentage",
                          "mirrorPercent"})
_COOKIE_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~A-Za-z0-9]+$")
_COOKIE_VALUE = re.compile(r"^[!#$%&'()*+\-./0-9:<=>?@A-Z\[\]^_`a-z{|}~]*$")
# The Set-Cookie value this module writes; anything else on the destination is the user's.
_OUR_SET_COOKIE = re.compile(r"^[!#$%&'*+\-.^_`|~A-Za-z0-9]+=[^;]*; Max-Age=\d+; Path=/$")
_RE2_SPECIAL = re.compile(r"([\\.+*?()|\[\]{}^$])")


class RouteError(ValueError):
    """The VirtualService cannot carry the rollout; the message names it and the field."""


@dataclass(frozen=True)
class RouteState:
    """Everything a rollout step decides about routing; absolute, not a delta."""

    canary_weight: int = 0  # 0..100 on the default route
    header_routes: tuple[tuple[str, tuple[dict[str, Any], ...]], ...] = ()  # (name, matches)
    ab_match: tuple[dict[str, Any], ...] = ()  # abTest: matching requests -> canary
    mirror_percentage: float | None = None  # mirror to the canary subset from the default route
    affinity_cookie: tuple[str, str, int] | None = None  # (cookie name, value, max-age s)

    def __post_init__(self) -> None:
        if not 0 <= self.canary_weight <= 100:
            raise ValueError(f"canary_weight {self.canary_weight} must be in 0..100")
        if self.mirror_percentage is not None and not 0 <= self.mirror_percentage <= 100:
            raise ValueError(f"mirror_percentage {self.mirror_percentage} must be in 0..100")
        for name, matches in self.header_routes:
            if not is_dns1123_label(name):
                raise ValueError(f"header route name {name!r} is not a DNS-1123 label")
            if any(not m for m in matches):
                raise ValueError(f"header route {name!r} has an empty match, which matches "
                                 "every request")
        if any(not m for m in self.ab_match):
            raise ValueError("ab_match has an empty match, which matches every request")
        if self.affinity_cookie is not None:
            name, value, max_age = self.affinity_cookie
            if not _COOKIE_TOKEN.match(name):
                raise ValueError(f"cookie name {name!r} is not a valid cookie name")
            if not value or not _COOKIE_VALUE.match(value):
                raise ValueError(f"cookie value {value!r} is not a valid cookie value")
            if max_age < 1:
                raise ValueError(f"cookie max-age {max_age} must be at least 1 second")


# --- names -----------------------------------------------------------------------------------


def managed_name(canary_name: str, suffix: str) -> str:
    return f"{MANAGED_PREFIX}-{canary_name}-{suffix}"


def header_route_name(canary_name: str, route: str) -> str:
    return managed_name(canary_name, HEADER_SUFFIX + route)


def _is_managed(rule: dict[str, Any], canary_name: str) -> bool:
    name = rule.get("name")
    prefix = f"{MANAGED_PREFIX}-{canary_name}-"
    if not isinstance(name, str) or not name.startswith(prefix):
        return False
    rest = name[len(prefix):]
    return rest in (AFFINITY_SUFFIX, AB_SUFFIX) or (
        rest.startswith(HEADER_SUFFIX) and len(rest) > len(HEADER_SUFFIX))


def managed_route_names(vs_spec: dict[str, Any], canary_name: str) -> list[str]:
    """Names of this canary's managed rules present in the VirtualService, in order."""
    return [r["name"] for r in vs_spec.get("http") or [] if _is_managed(r, canary_name)]


# --- hosts -----------------------------------------------------------------------------------


def same_host(a: str, b: str, namespace: str | None = None,
              domain: str = DEFAULT_DOMAIN) -> bool:
    """Istio's short-name resolution on both sides (see the module docstring)."""
    if namespace is not None:
        return resolve_short_name(a, namespace, domain) == resolve_short_name(b, namespace, domain)
    if a == b:
        return True
    short, full = (a, b) if "." not in a else (b, a)
    if "." in short:
        return False
    parts = full.split(".")
    return (len(parts) >= 4 and parts[0] == short and parts[2] == "svc"
            and ".".join(parts[3:]) == domain)


def _mesh_bound(vs_spec: dict[str, Any]) -> bool:
    gateways = vs_spec.get("gateways") or []
    return not gateways or MESH_GATEWAY in gateways


def find_virtual_service(canary_name: str, namespace: str, spec: CanarySpec,
                         virtual_services: Sequence[Resource], *,
                         domain: str = DEFAULT_DOMAIN) -> Resource | None:
    """The VirtualService the Canary manages, in the Canary's namespace.

    `spec.virtualService` names it; None if that one does not exist (then
    `new_virtual_service` creates it under that name). Otherwise the oldest mesh-bound
    VirtualService listing the host (Istio's precedence: sidecars use the oldest one for
    a host, so editing a younger one would change nothing). Gateway-only VirtualServices
    are never picked: they route ingress traffic, which the rollout does not split.
    """
    del canary_name  # the name does not select; kept for the shared signature
    vss = [r for r in virtual_services if r.kind == "VirtualService" and r.namespace == namespace]
    if spec.virtual_service is not None:
        return next((r for r in vss if r.name == spec.virtual_service), None)
    target = resolve_short_name(spec.host, namespace, domain)
    candidates = [
        r for r in vss
        if r.body.get("hosts") and _mesh_bound(r.body)
        and any(resolve_short_name(h, r.namespace, domain) == target for h in r.body["hosts"])
    ]
    return min(candidates, key=lambda r: (r.creation_timestamp, r.name, r.namespace),
               default=None)


def new_virtual_service(canary_name: str, namespace: str, spec: CanarySpec) -> dict[str, Any]:
    """A VirtualService for a host that has none: all traffic to the stable subset.

    Named `spec.virtualService` if set, else after the Canary; annotated with the Canary
    that created it so users (and `meshpilot canary get`) can tell where it came from.
    """
    destination: dict[str, Any] = {"host": spec.host, "subset": spec.stable_subset}
    if spec.port is not None:
        destination["port"] = {"number": spec.port}
    return {
        "apiVersion": VS_API_VERSION,
        "kind": "VirtualService",
        "metadata": {
            "name": spec.virtual_service or canary_name,
            "namespace": namespace,
            "annotations": {CREATED_BY_ANNOTATION: canary_name},
        },
        "spec": {"hosts": [spec.host], "http": [{"route": [{"destination": destination}]}]},
    }


# --- the default route -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Ctx:
    spec: CanarySpec
    canary_name: str
    namespace: str | None
    domain: str
    vs_name: str | None

    @property
    def where(self) -> str:
        if self.vs_name and self.namespace:
            return f"VirtualService {self.namespace}/{self.vs_name}"
        if self.vs_name:
            return f"VirtualService {self.vs_name}"
        return "the VirtualService"

    def error(self, path: str, message: str, hint: str | None = None) -> RouteError:
        text = f"{self.where}: {path}: {message}" if path else f"{self.where}: {message}"
        return RouteError(f"{text} ({hint})" if hint else text)

    def ours(self, destination: Any) -> bool:
        """A destination of the Canary's service (host, and port when both name one)."""
        if not isinstance(destination, dict) or not isinstance(destination.get("host"), str):
            return False
        if not same_host(destination["host"], self.spec.host, self.namespace, self.domain):
            return False
        port = (destination.get("port") or {}).get("number")
        return self.spec.port is None or not port or port == self.spec.port


def _subset(entry: dict[str, Any]) -> str:
    return str((entry.get("destination") or {}).get("subset") or "")


def _find_default(http: list[dict[str, Any]], ctx: _Ctx) -> int:
    host = ctx.spec.host
    for i, rule in enumerate(http):
        if rule.get("match"):
            continue
        route = rule.get("route") or []
        if route and all(ctx.ours(entry.get("destination")) for entry in route):
            return i
        what = ("delegates" if rule.get("delegate") else "redirects" if rule.get("redirect")
                else "answers directly" if rule.get("directResponse")
                else "routes to other hosts" if route else "has no route")
        raise ctx.error(
            f"spec.http[{i}]",
            f"the default route (the first rule without match) {what}, not only to {host}; "
            "the rollout can only split a default route whose destinations are the Canary's host",
            hint=f"make the first catch-all rule route to {host} (e.g. route: [{{destination: "
            f"{{host: {host}, subset: {ctx.spec.stable_subset}}}}}]), or point "
            "spec.virtualService at another VirtualService",
        )
    raise ctx.error(
        "spec.http",
        f"no default route for {host}: every http rule has a match",
        hint=f"add a last rule without match: - route: [{{destination: {{host: {host}, subset: "
        f"{ctx.spec.stable_subset}}}}}]",
    )


def _entries(rule: dict[str, Any], index: int,
             ctx: _Ctx) -> tuple[dict[str, Any], dict[str, Any], bool]:
    """(stable entry, canary entry, stable-first) of the default route, deep copies.

    A missing one is derived from the other (same host and port, no per-destination
    headers, which may be version specific); a single subset-less destination becomes
    both (its headers are the service's, so both keep them).
    """
    stable, canary = ctx.spec.stable_subset, ctx.spec.canary_subset
    route = [copy.deepcopy(e) for e in rule["route"]]
    at = f"spec.http[{index}].route"
    if len(route) == 1 and not _subset(route[0]):
        entry = route[0]
        entry.pop("weight", None)
        s, c = copy.deepcopy(entry), copy.deepcopy(entry)
        s["destination"]["subset"], c["destination"]["subset"] = stable, canary
        return s, c, True
    found: dict[str, int] = {}
    for j, entry in enumerate(route):
        subset = _subset(entry)
        if subset not in (stable, canary):
            shown = f"subset {subset!r}" if subset else "a destination without subset"
            raise ctx.error(
                f"{at}[{j}]",
                f"the default route sends traffic to {shown}, which is neither stableSubset "
                f"{stable!r} nor canarySubset {canary!r}",
                hint=f"route the default rule to subset {stable} (the rollout adds {canary})",
            )
        if subset in found:
            raise ctx.error(f"{at}[{j}]", f"subset {subset!r} is listed twice (also "
                            f"{at}[{found[subset]}])", hint="list each subset once")
        found[subset] = j

    def derived(template: dict[str, Any], subset: str) -> dict[str, Any]:
        return {"destination": {**copy.deepcopy(template["destination"]), "subset": subset}}

    if stable in found and canary in found:
        return route[found[stable]], route[found[canary]], found[stable] < found[canary]
    if stable in found:
        return route[found[stable]], derived(route[found[stable]], canary), True
    return derived(route[found[canary]], stable), route[found[canary]], True


def _remove_our_cookie(entry: dict[str, Any]) -> None:
    """Drop the Set-Cookie this module added (and the containers it leaves empty)."""
    headers = entry.get("headers")
    response = headers.get("response") if isinstance(headers, dict) else None
    add = response.get("add") if isinstance(response, dict) else None
    if not isinstance(add, dict):
        return
    value = add.get("Set-Cookie")
    if not isinstance(value, str) or not _OUR_SET_COOKIE.match(value):
        return
    del add["Set-Cookie"]
    if not add:
        del response["add"]
    if not response:
        del headers["response"]
    if not headers:
        del entry["headers"]


def _add_our_cookie(entry: dict[str, Any], cookie: tuple[str, str, int], ctx: _Ctx,
                    at: str) -> None:
    name, value, max_age = cookie
    headers = entry.setdefault("headers", {})
    response = headers.setdefault("response", {})
    add = response.setdefault("add", {})
    if any(k.lower() == "set-cookie" for k in add):
        raise ctx.error(f"{at}.headers.response.add", "the canary destination already adds a "
                        "Set-Cookie header; session affinity needs its own",
                        hint="remove it, or drop spec.sessionAffinity")
    add["Set-Cookie"] = f"{name}={value}; Max-Age={max_age}; Path=/"


def _is_our_mirror(destination: Any, ctx: _Ctx) -> bool:
    return ctx.ours(destination) and destination.get("subset") == ctx.spec.canary_subset


def _remove_our_mirror(rule: dict[str, Any], ctx: _Ctx) -> None:
    if _is_our_mirror(rule.get("mirror"), ctx):
        del rule["mirror"]
        rule.pop("mirrorPercentage", None)
        rule.pop("mirrorPercent", None)
    mirrors = rule.get("mirrors")
    if isinstance(mirrors, list) and mirrors:
        kept = [m for m in mirrors if not _is_our_mirror(m.get("destination"), ctx)]
        if kept:
            rule["mirrors"] = kept
        else:
            del rule["mirrors"]


def _add_our_mirror(rule: dict[str, Any], destination: dict[str, Any], percentage: float,
                    ctx: _Ctx, at: str) -> None:
    value = {"value": percentage}
    if rule.get("mirrors"):
        rule["mirrors"].append({"destination": destination, "percentage": value})
        return
    if rule.get("mirror") is not None:
        raise ctx.error(
            f"{at}.mirror",
            "the default route already mirrors to another destination; the canary mirror "
            "cannot be added beside it",
            hint="list both in mirrors: [...] (Istio's HTTPMirrorPolicy list) instead of mirror",
        )
    rule["mirror"] = destination
    rule["mirrorPercentage"] = value


# --- managed rules ----------------------------------------------------------------------------


def _re2_escape(text: str) -> str:
    return _RE2_SPECIAL.sub(r"\\\1", text)


def _clean_matches(matches: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Matches as a user writes them (defaults left out), however the caller spelled
    them; one that does not validate is kept as given, for `_validated` to report."""
    out = []
    for m in matches:
        try:
            out.extend(match_dicts([HTTPMatchRequest.model_validate(m, by_alias=True,
                                                                    by_name=False)]))
        except ValidationError:
            out.append(copy.deepcopy(m))
    return out


def _managed_rules(default: dict[str, Any], canary_entry: dict[str, Any],
                   state: RouteState, canary_name: str) -> list[dict[str, Any]]:
    """Managed rules in their fixed order; each copies the default route's policies."""
    policies = {k: v for k, v in default.items() if k not in _POLICY_SKIP}
    target = {k: v for k, v in canary_entry.items() if k != "weight"}
    target["weight"] = 100

    def rule(suffix: str, matches: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return copy.deepcopy({"name": managed_name(canary_name, suffix),
                              "match": _clean_matches(matches), "route": [target], **policies})

    out = []
    if state.affinity_cookie is not None:
        name, value, _ = state.affinity_cookie
        regex = f".*{_re2_escape(name)}={_re2_escape(value)}.*"
        out.append(rule(AFFINITY_SUFFIX, [{"headers": {"cookie": {"regex": regex}}}]))
    routes: dict[str, tuple[dict[str, Any], ...]] = {}
    for route_name, matches in state.header_routes:
        routes[route_name] = matches
    for route_name, matches in routes.items():
        if matches:
            out.append(rule(HEADER_SUFFIX + route_name, matches))
    if state.ab_match:
        out.append(rule(AB_SUFFIX, state.ab_match))
    return out


# --- the three operations ---------------------------------------------------------------------


def _validated(vs_spec: dict[str, Any], ctx: _Ctx) -> dict[str, Any]:
    """The controller writes straight to the store: never let an invalid spec through."""
    _, issues = parse_model(VirtualService, vs_spec, prefix=("spec",),
                            context={"namespace": ctx.namespace or "default"})
    if issues:
        raise ctx.error("", "the edited VirtualService would be invalid: "
                        + "; ".join(f"{i.field_path}: {i.message}" for i in issues))
    return vs_spec


def _prepare(vs_spec: dict[str, Any], spec: CanarySpec, canary_name: str,
             namespace: str | None, domain: str, vs_name: str | None,
             ) -> tuple[_Ctx, dict[str, Any], list[dict[str, Any]], int]:
    ctx = _Ctx(spec, canary_name, namespace, domain, vs_name)
    out = copy.deepcopy(vs_spec)
    user = [r for r in out.get("http") or [] if not _is_managed(r, canary_name)]
    return ctx, out, user, _find_default(user, ctx)


def _finish(out: dict[str, Any], user: list[dict[str, Any]], index: int,
            managed: list[dict[str, Any]], ctx: _Ctx) -> dict[str, Any]:
    out["http"] = [*user[:index], *managed, *user[index:]]
    return _validated(out, ctx)


def apply_state(vs_spec: dict[str, Any], spec: CanarySpec, canary_name: str,
                state: RouteState, *, namespace: str | None = None,
                domain: str = DEFAULT_DOMAIN, vs_name: str | None = None) -> dict[str, Any]:
    """The VirtualService spec carrying `state` (see the module docstring).

    `namespace` makes host comparison exact; `vs_name` names the VirtualService in
    errors. Raises RouteError when the VirtualService cannot carry the rollout.
    """
    ctx, out, user, index = _prepare(vs_spec, spec, canary_name, namespace, domain, vs_name)
    default = user[index]
    at = f"spec.http[{index}]"
    stable_entry, canary_entry, stable_first = _entries(default, index, ctx)
    for entry in (stable_entry, canary_entry):
        _remove_our_cookie(entry)
    stable_entry["weight"] = 100 - state.canary_weight
    canary_entry["weight"] = state.canary_weight
    managed = _managed_rules(default, canary_entry, state, canary_name)
    if state.affinity_cookie is not None:
        _add_our_cookie(canary_entry, state.affinity_cookie, ctx,
                        f"{at}.route[{1 if stable_first else 0}]")
    default["route"] = [stable_entry, canary_entry] if stable_first \
        else [canary_entry, stable_entry]
    _remove_our_mirror(default, ctx)
    if state.mirror_percentage is not None:
        mirror = copy.deepcopy(canary_entry["destination"])
        _add_our_mirror(default, mirror, state.mirror_percentage, ctx, at)
    return _finish(out, user, index, managed, ctx)


def _single(vs_spec: dict[str, Any], spec: CanarySpec, canary_name: str, *, to_canary: bool,
            namespace: str | None, domain: str, vs_name: str | None) -> dict[str, Any]:
    ctx, out, user, index = _prepare(vs_spec, spec, canary_name, namespace, domain, vs_name)
    default = user[index]
    stable_entry, canary_entry, _ = _entries(default, index, ctx)
    entry = canary_entry if to_canary else stable_entry
    _remove_our_cookie(entry)
    entry.pop("weight", None)  # a single destination takes all traffic (Istio)
    default["route"] = [entry]
    _remove_our_mirror(default, ctx)
    return _finish(out, user, index, [], ctx)


def promoted(vs_spec: dict[str, Any], spec: CanarySpec, canary_name: str, *,
             namespace: str | None = None, domain: str = DEFAULT_DOMAIN,
             vs_name: str | None = None) -> dict[str, Any]:
    """The canary subset as the default route's only destination (100 %), the canary
    mirror, affinity cookie and managed rules gone: one clean VirtualService."""
    return _single(vs_spec, spec, canary_name, to_canary=True, namespace=namespace,
                   domain=domain, vs_name=vs_name)


def rolled_back(vs_spec: dict[str, Any], spec: CanarySpec, canary_name: str, *,
                namespace: str | None = None, domain: str = DEFAULT_DOMAIN,
                vs_name: str | None = None) -> dict[str, Any]:
    """Stable as the default route's only destination (100 %), the canary destination,
    mirror, affinity cookie and managed rules gone; the user's other rules untouched."""
    return _single(vs_spec, spec, canary_name, to_canary=False, namespace=namespace,
                   domain=domain, vs_name=vs_name)
