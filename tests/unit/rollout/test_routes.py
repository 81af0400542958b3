"""routes: a rollout edits only the default route and its own named rules, every output is
a valid VirtualService, and promote/rollback leave one clean VirtualService."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshpilot.api.canary import CanarySpec
from meshpilot.api.decode import decode
from meshpilot.api.load import Document
from meshpilot.api.resource import Resource
from meshpilot.api.virtualservice import VirtualService
from meshpilot.rollout.plan import match_dicts
from meshpilot.rollout.routes import (
    CREATED_BY_ANNOTATION,
    MANAGED_PREFIX,
    RouteError,
    RouteState,
    apply_state,
    find_virtual_service,
    managed_route_names,
    new_virtual_service,
    promoted,
    rolled_back,
    same_host,
)

ROOT = Path(__file__).resolve().parents[3]
NS = "traffic-demo"
NAME = "sample-app"
FQDN = "sample-app.traffic-demo.svc.cluster.local"


def load_spec(path: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / path).read_text())["spec"]


SEED_CANARY = load_spec("tests/data/seed/03-canary.yaml")  # `canary: true` rule + 90/10
SEED_FINALIZE = load_spec("tests/data/seed/08-canary-script-finalize.yaml")  # v2 only
ROUTING = load_spec("examples/traffic-demo/base/30-sample-app-routing.yaml")  # version: v2 + v1
AB_TEST = load_spec("examples/traffic-demo/sections/09-ab-test.yaml")  # beta rules + 50/50
SUBSETLESS: dict[str, Any] = {"hosts": ["sample-app"],
                              "http": [{"route": [{"destination": {"host": "sample-app"}}]}]}
INPUTS = {"seed-canary": SEED_CANARY, "seed-finalize": SEED_FINALIZE, "routing": ROUTING,
          "ab-test": AB_TEST, "subsetless": SUBSETLESS}


def canary(**fields: Any) -> CanarySpec:
    doc = {"host": "sample-app", "stableSubset": "v1", "canarySubset": "v2",
           "stepWeights": [10, 25, 50, 75], **fields}
    return CanarySpec.model_validate(doc, by_alias=True, by_name=False)


SPEC = canary()
BETA = ({"headers": {"x-beta": {"exact": "true"}}},)
COOKIE = ("canary-session", "Zq8pXbWmKa", 86400)


def apply(vs: dict[str, Any], state: RouteState, spec: CanarySpec = SPEC,
          **kw: Any) -> dict[str, Any]:
    return apply_state(vs, spec, NAME, state, namespace=NS, **kw)


def valid(vs: dict[str, Any]) -> dict[str, Any]:
    VirtualService.model_validate(vs, by_alias=True, by_name=False, context={"namespace": NS})
    return vs


def default_route(vs: dict[str, Any]) -> dict[str, Any]:
    return next(r for r in vs["http"] if not r.get("match"))


def weights(vs: dict[str, Any]) -> dict[str, int | None]:
    return {e["destination"].get("subset", ""): e.get("weight")
            for e in default_route(vs)["route"]}


def user_rules(vs: dict[str, Any]) -> list[dict[str, Any]]:
    """Rules with a match that the rollout does not own."""
    return [r for r in vs["http"] if r.get("match")
            and not str(r.get("name", "")).startswith(MANAGED_PREFIX)]


# --- weights on the default route -----------------------------------------------------------


@pytest.mark.parametrize("name", sorted(INPUTS))
@pytest.mark.parametrize("weight", [0, 10, 25, 50, 75, 100])
def test_weights_go_to_the_default_route_only(name: str, weight: int) -> None:
    vs = INPUTS[name]
    before = copy.deepcopy(vs)
    out = valid(apply(vs, RouteState(canary_weight=weight)))
    assert vs == before  # the input is never mutated
    assert weights(out) == {"v1": 100 - weight, "v2": weight}
    assert user_rules(out) == user_rules(vs)
    assert out["hosts"] == vs["hosts"]
    assert managed_route_names(out, NAME) == []


def test_seed_canary_keeps_its_order_and_the_user_header_rule() -> None:
    out = apply(SEED_CANARY, RouteState(canary_weight=25))
    assert out == {
        "hosts": ["sample-app"],
        "http": [
            SEED_CANARY["http"][0],  # `canary: true` -> v2 is the user's: kept as is
            {"route": [
                {"destination": {"host": "sample-app", "subset": "v1"}, "weight": 75},
                {"destination": {"host": "sample-app", "subset": "v2"}, "weight": 25},
            ]},
        ],
    }


def test_reversed_destinations_keep_their_order() -> None:
    vs = {"hosts": ["sample-app"], "http": [{"route": [
        {"destination": {"host": "sample-app", "subset": "v2"}, "weight": 30},
        {"destination": {"host": "sample-app", "subset": "v1"}, "weight": 70}]}]}
    out = apply(vs, RouteState(canary_weight=60))
    assert [(e["destination"]["subset"], e["weight"]) for e in out["http"][0]["route"]] == [
        ("v2", 60), ("v1", 40)]


def test_subsetless_default_route_is_rewritten_into_the_subsets() -> None:
    vs = {"hosts": ["sample-app"], "http": [{"timeout": "5s", "route": [
        {"destination": {"host": "sample-app", "port": {"number": 80}},
         "headers": {"request": {"set": {"x-svc": "sample"}}}}]}]}
    out = valid(apply(vs, RouteState(canary_weight=10)))
    assert out["http"] == [{"timeout": "5s", "route": [
        {"destination": {"host": "sample-app", "port": {"number": 80}, "subset": "v1"},
         "headers": {"request": {"set": {"x-svc": "sample"}}}, "weight": 90},
        {"destination": {"host": "sample-app", "port": {"number": 80}, "subset": "v2"},
         "headers": {"request": {"set": {"x-svc": "sample"}}}, "weight": 10},
    ]}]


def test_missing_stable_destination_is_added_first() -> None:
    out = apply(SEED_FINALIZE, RouteState(canary_weight=40))
    assert default_route(out)["route"] == [
        {"destination": {"host": "sample-app", "subset": "v1"}, "weight": 60},
        {"destination": {"host": "sample-app", "subset": "v2"}, "weight": 40}]


def test_other_fields_of_the_default_route_are_kept() -> None:
    vs = copy.deepcopy(ROUTING)
    vs["http"][1].update({"name": "primary", "timeout": "3s", "retries": {"attempts": 2},
                          "headers": {"response": {"set": {"x-route": "default"}}}})
    vs["http"][1]["route"][0]["headers"] = {"response": {"add": {"x-version": "v1"}}}
    out = valid(apply(vs, RouteState(canary_weight=10)))
    rule = default_route(out)
    assert {k: v for k, v in rule.items() if k != "route"} == {
        k: v for k, v in vs["http"][1].items() if k != "route"}
    stable, new = rule["route"]
    assert stable["headers"] == {"response": {"add": {"x-version": "v1"}}}
    assert "headers" not in new  # a derived destination does not inherit v1's headers


# --- host names -----------------------------------------------------------------------------


def test_short_and_full_host_names_are_the_same_service() -> None:
    vs = {"hosts": [FQDN], "http": [{"route": [{"destination": {"host": FQDN, "subset": "v1"}}]}]}
    out = valid(apply(vs, RouteState(canary_weight=10)))
    assert weights(out) == {"v1": 90, "v2": 10}
    assert default_route(out)["route"][1]["destination"]["host"] == FQDN
    full = canary(host=FQDN)
    assert weights(apply(ROUTING, RouteState(canary_weight=5), full)) == {"v1": 95, "v2": 5}
    # without a namespace a short name matches any <name>.<ns>.svc.<domain>
    assert weights(apply_state(vs, SPEC, NAME, RouteState(canary_weight=5))) == {"v1": 95,
                                                                                 "v2": 5}


@pytest.mark.parametrize(("a", "b", "namespace", "same"), [
    ("sample-app", FQDN, NS, True),
    ("sample-app", FQDN, None, True),
    ("sample-app", "sample-app.other.svc.cluster.local", NS, False),
    ("sample-app", "sample-app.traffic-demo", NS, False),  # Istio does not expand dotted names
    ("sample-app", "sample-app.traffic-demo.svc.example.org", None, False),
    ("sample-app", "other-app", None, False),
    (FQDN, FQDN, None, True),
])
def test_same_host(a: str, b: str, namespace: str | None, same: bool) -> None:
    assert same_host(a, b, namespace) is same
    assert same_host(b, a, namespace) is same


def test_a_destination_in_another_namespace_is_another_service() -> None:
    other = "sample-app.other.svc.cluster.local"
    vs = {"hosts": ["sample-app"], "http": [{"route": [{"destination": {"host": other,
                                                                         "subset": "v1"}}]}]}
    with pytest.raises(RouteError, match="routes to other hosts"):
        apply(vs, RouteState(canary_weight=10))


def test_port_must_agree_when_both_name_one() -> None:
    vs = {"hosts": ["sample-app"], "http": [{"route": [
        {"destination": {"host": "sample-app", "subset": "v1", "port": {"number": 9090}}}]}]}
    with pytest.raises(RouteError, match="routes to other hosts"):
        apply(vs, RouteState(canary_weight=10), canary(port=80))
    out = apply(vs, RouteState(canary_weight=10), canary(port=9090))
    assert default_route(out)["route"][1]["destination"]["port"] == {"number": 9090}


# --- managed rules --------------------------------------------------------------------------


def test_header_ab_and_affinity_rules_sit_just_before_the_default_route() -> None:
    state = RouteState(canary_weight=10, header_routes=(("beta", BETA),),
                       ab_match=({"headers": {"cookie": {"regex": "^(.*?;)?(user=beta)(;.*)?$"}}},),
                       affinity_cookie=COOKIE)
    out = valid(apply(ROUTING, state))
    names = [r.get("name", "") for r in out["http"]]
    assert names == ["", "meshpilot-canary-sample-app-affinity",
                     "meshpilot-canary-sample-app-header-beta", "meshpilot-canary-sample-app-ab",
                     ""]
    assert out["http"][0] == ROUTING["http"][0]  # the user's `version: v2` rule keeps priority
    to_canary = [{"destination": {"host": "sample-app", "subset": "v2"}, "weight": 100}]
    affinity, header, ab = out["http"][1:4]
    cookie_match = {"headers": {"cookie": {"regex": ".*canary-session=Zq8pXbWmKa.*"}}}
    assert affinity == {"name": "meshpilot-canary-sample-app-affinity", "match": [cookie_match],
                        "route": to_canary}
    assert header == {"name": "meshpilot-canary-sample-app-header-beta", "match": list(BETA),
                      "route": to_canary}
    assert ab["match"] == list(state.ab_match) and ab["route"] == to_canary
    assert managed_route_names(out, NAME) == names[1:4]
    # Flagger's affinity: the canary destination of the default route sets the cookie
    assert default_route(out)["route"][1]["headers"] == {"response": {"add": {
        "Set-Cookie": "canary-session=Zq8pXbWmKa; Max-Age=86400; Path=/"}}}
    # and an empty state removes all of it
    clean = apply(out, RouteState(canary_weight=10))
    assert clean == apply(ROUTING, RouteState(canary_weight=10))


def test_managed_rules_copy_the_default_route_policies() -> None:
    vs = copy.deepcopy(ROUTING)
    vs["http"][1].update({"timeout": "2s", "retries": {"attempts": 3, "retryOn": "5xx"}})
    vs["http"][1]["route"].append({"destination": {"host": "sample-app", "subset": "v2"},
                                   "headers": {"response": {"set": {"x-version": "v2"}}}})
    vs["http"][1]["route"][0]["weight"] = 100
    vs["http"][1]["route"][1]["weight"] = 0
    out = valid(apply(vs, RouteState(canary_weight=0, header_routes=(("beta", BETA),))))
    rule = out["http"][1]
    assert rule["timeout"] == "2s" and rule["retries"] == {"attempts": 3, "retryOn": "5xx"}
    assert rule["route"] == [{"destination": {"host": "sample-app", "subset": "v2"},
                              "headers": {"response": {"set": {"x-version": "v2"}}},
                              "weight": 100}]


def test_header_route_with_empty_match_is_removed_and_duplicates_keep_the_last() -> None:
    internal = ({"headers": {"x-internal": {"prefix": "yes"}}},)
    out = apply(ROUTING, RouteState(header_routes=(("beta", BETA), ("internal", internal),
                                                   ("beta", ()))))
    assert managed_route_names(out, NAME) == ["meshpilot-canary-sample-app-header-internal"]


def test_matches_are_stored_as_written_whatever_the_caller_passes() -> None:
    spec = canary(stepWeights=None, iterations=3, match=[{"headers": {"x-ab": {"exact": "b"}}}])
    assert spec.match is not None
    raw = tuple(m.to_json() for m in spec.match)  # with every default spelled out
    out = apply(ROUTING, RouteState(ab_match=raw), spec)
    assert out["http"][1]["match"] == list(match_dicts(spec.match)) == [
        {"headers": {"x-ab": {"exact": "b"}}}]


def test_other_canaries_rules_are_left_alone() -> None:
    mine = apply(ROUTING, RouteState(header_routes=(("beta", BETA),)))
    theirs = copy.deepcopy(mine)
    theirs["http"][1]["name"] = "meshpilot-canary-other-header-beta"
    out = apply(theirs, RouteState())
    assert [r.get("name") for r in out["http"]] == [None, "meshpilot-canary-other-header-beta",
                                                    None]
    assert managed_route_names(out, "other") == ["meshpilot-canary-other-header-beta"]
    assert managed_route_names(out, NAME) == []


def test_invalid_header_route_match_is_reported_not_written() -> None:
    bad = ({"headers": {"x-beta": {"regex": "(?<=a)b"}}},)
    with pytest.raises(RouteError, match=r"VirtualService traffic-demo/sample-app-routing: "
                       r"the edited VirtualService would be invalid: spec.http\[1\].match\[0\]"):
        apply(ROUTING, RouteState(header_routes=(("beta", bad),)), vs_name="sample-app-routing")


# --- mirror ---------------------------------------------------------------------------------


def test_mirror_is_set_on_the_default_route_and_removed() -> None:
    out = valid(apply(ROUTING, RouteState(canary_weight=0, mirror_percentage=50)))
    rule = default_route(out)
    assert rule["mirror"] == {"host": "sample-app", "subset": "v2"}
    assert rule["mirrorPercentage"] == {"value": 50}
    assert apply(out, RouteState(canary_weight=0)) == apply(ROUTING, RouteState(canary_weight=0))


def test_mirror_joins_a_user_mirrors_list() -> None:
    vs = copy.deepcopy(ROUTING)
    shadow = {"destination": {"host": "shadow"}, "percentage": {"value": 5}}
    vs["http"][1]["mirrors"] = [shadow]
    out = valid(apply(vs, RouteState(mirror_percentage=12.5)))
    assert default_route(out)["mirrors"] == [
        shadow, {"destination": {"host": "sample-app", "subset": "v2"},
                 "percentage": {"value": 12.5}}]
    assert default_route(rolled_back(out, SPEC, NAME, namespace=NS))["mirrors"] == [shadow]


def test_a_user_mirror_elsewhere_is_not_overwritten() -> None:
    vs = copy.deepcopy(ROUTING)
    vs["http"][1]["mirror"] = {"host": "shadow"}
    out = apply(vs, RouteState(canary_weight=10))  # no mirror wanted: fine, kept
    assert default_route(out)["mirror"] == {"host": "shadow"}
    with pytest.raises(RouteError, match=r"spec.http\[1\].mirror: the default route already "
                                         r"mirrors to another destination"):
        apply(vs, RouteState(mirror_percentage=10))


# --- promotion and rollback -----------------------------------------------------------------

FULL_STATE = RouteState(canary_weight=50, header_routes=(("beta", BETA),),
                        mirror_percentage=20, affinity_cookie=COOKIE)


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_promote_leaves_one_clean_virtual_service_on_the_canary(name: str) -> None:
    vs = INPUTS[name]
    out = valid(promoted(apply(vs, FULL_STATE), SPEC, NAME, namespace=NS))
    assert managed_route_names(out, NAME) == []
    assert default_route(out)["route"] == [{"destination": {"host": "sample-app",
                                                            "subset": "v2"}}]
    assert "mirror" not in default_route(out)
    assert user_rules(out) == user_rules(vs)
    assert out == promoted(vs, SPEC, NAME, namespace=NS)


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_rollback_sends_everything_to_stable_and_removes_managed_rules(name: str) -> None:
    vs = INPUTS[name]
    out = valid(rolled_back(apply(vs, FULL_STATE), SPEC, NAME, namespace=NS))
    assert managed_route_names(out, NAME) == []
    assert default_route(out)["route"] == [{"destination": {"host": "sample-app",
                                                            "subset": "v1"}}]
    assert "mirror" not in default_route(out) and "mirrorPercentage" not in default_route(out)
    assert user_rules(out) == user_rules(vs)


def test_rollback_of_the_routing_example_restores_it_exactly() -> None:
    assert rolled_back(apply(ROUTING, FULL_STATE), SPEC, NAME, namespace=NS) == ROUTING


def test_promote_then_next_rollout_with_the_old_canary_as_stable() -> None:
    done = promoted(apply(ROUTING, FULL_STATE), SPEC, NAME, namespace=NS)
    nxt = canary(stableSubset="v2", canarySubset="v3")
    out = apply(done, RouteState(canary_weight=10), nxt)
    assert weights(out) == {"v2": 90, "v3": 10}


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("http", "fragment"), [
    ([{"match": [{"uri": {"prefix": "/"}}], "route": [{"destination": {"host": "sample-app"}}]}],
     "spec.http: no default route for sample-app: every http rule has a match (add a last "
     "rule without match: - route: [{destination: {host: sample-app, subset: v1}}])"),
    ([{"redirect": {"uri": "/new"}}, {"route": [{"destination": {"host": "sample-app"}}]}],
     "spec.http[0]: the default route (the first rule without match) redirects, not only to "
     "sample-app"),
    ([{"route": [{"destination": {"host": "other"}}]}],
     "spec.http[0]: the default route (the first rule without match) routes to other hosts"),
    ([{"route": [{"destination": {"host": "sample-app", "subset": "v1"}, "weight": 50},
                 {"destination": {"host": "sample-app", "subset": "v3"}, "weight": 50}]}],
     "spec.http[0].route[1]: the default route sends traffic to subset 'v3', which is neither "
     "stableSubset 'v1' nor canarySubset 'v2'"),
    ([{"route": [{"destination": {"host": "sample-app", "subset": "v1"}, "weight": 50},
                 {"destination": {"host": "sample-app"}, "weight": 50}]}],
     "spec.http[0].route[1]: the default route sends traffic to a destination without subset"),
    ([{"route": [{"destination": {"host": "sample-app", "subset": "v1"}, "weight": 50},
                 {"destination": {"host": "sample-app", "subset": "v1"}, "weight": 50}]}],
     "spec.http[0].route[1]: subset 'v1' is listed twice (also spec.http[0].route[0])"),
])
def test_errors_name_the_virtual_service_and_field(http: list[dict[str, Any]],
                                                   fragment: str) -> None:
    vs = {"hosts": ["sample-app"], "http": http}
    with pytest.raises(RouteError) as err:
        apply(vs, RouteState(canary_weight=10), vs_name="sample-app-routing")
    assert str(err.value).startswith("VirtualService traffic-demo/sample-app-routing: ")
    assert fragment in str(err.value)


def test_affinity_refuses_a_user_set_cookie_on_the_canary() -> None:
    vs = copy.deepcopy(SEED_CANARY)
    vs["http"][1]["route"][1]["headers"] = {"response": {"add": {"set-cookie": "a=b"}}}
    with pytest.raises(RouteError, match=r"spec.http\[1\].route\[1\].headers.response.add"):
        apply(vs, RouteState(canary_weight=10, affinity_cookie=COOKIE))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"canary_weight": 101}, "canary_weight 101 must be in 0..100"),
    ({"mirror_percentage": -1}, "mirror_percentage -1 must be in 0..100"),
    ({"affinity_cookie": ("a b", "v", 10)}, "is not a valid cookie name"),
    ({"affinity_cookie": ("a", "v;x", 10)}, "is not a valid cookie value"),
    ({"affinity_cookie": ("a", "v", 0)}, "must be at least 1 second"),
    ({"header_routes": (("Beta!", BETA),)}, "'Beta!' is not a DNS-1123 label"),
    ({"header_routes": (("beta", ({},)),)}, "header route 'beta' has an empty match"),
    ({"ab_match": ({},)}, "ab_match has an empty match"),
])
def test_route_state_is_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RouteState(**kwargs)


# --- finding and creating the VirtualService ------------------------------------------------


def resource(name: str, spec: dict[str, Any], created: str, namespace: str = NS) -> Resource:
    return Resource(api_version="networking.istio.io/v1", kind="VirtualService", name=name,
                    namespace=namespace, body=spec, creation_timestamp=created)


def test_find_picks_the_oldest_mesh_virtual_service_for_the_host() -> None:
    docs = yaml.safe_load_all((ROOT / "examples/traffic-demo/base/40-ingress-gateway.yaml")
                              .read_text())
    gw_spec = next(d for d in docs if d["kind"] == "VirtualService")["spec"]
    vss = [
        resource("sample-app-gateway-vs", gw_spec, "2024-01-01T00:00:00Z"),  # gateway only
        resource("sample-app-canary", SEED_CANARY, "2024-03-01T00:00:00Z"),
        resource("sample-app-routing", ROUTING, "2024-02-01T00:00:00Z"),
        resource("elsewhere", ROUTING, "2023-01-01T00:00:00Z", namespace="other"),
        resource("fqdn", {"hosts": [FQDN], "http": ROUTING["http"]}, "2024-02-01T00:00:00Z"),
    ]
    found = find_virtual_service(NAME, NS, SPEC, vss)
    assert found is not None and found.name == "fqdn"  # same age: by name, as Istio sorts
    found = find_virtual_service(NAME, NS, SPEC, vss[:4])
    assert found is not None and found.name == "sample-app-routing"
    named = find_virtual_service(NAME, NS, canary(virtualService="sample-app-canary"), vss)
    assert named is not None and named.name == "sample-app-canary"
    assert find_virtual_service(NAME, NS, canary(virtualService="missing"), vss) is None
    assert find_virtual_service(NAME, NS, SPEC, vss[:1]) is None
    mesh_too = {**gw_spec, "hosts": ["sample-app"], "gateways": ["sample-app-gateway", "mesh"]}
    both = resource("both", mesh_too, "2020-01-01T00:00:00Z")
    assert find_virtual_service(NAME, NS, SPEC, [*vss, both]) == both


def test_new_virtual_service_decodes_and_carries_the_rollout() -> None:
    obj = new_virtual_service(NAME, NS, canary(port=8080))
    decoded = decode([Document("controller", 1, obj, 0)])
    assert decoded.errors == []
    res = decoded.resources[0]
    assert (res.name, res.namespace, res.kind) == (NAME, NS, "VirtualService")
    assert res.annotations == {CREATED_BY_ANNOTATION: NAME}
    assert res.body == {"hosts": ["sample-app"], "http": [{"route": [{"destination": {
        "host": "sample-app", "subset": "v1", "port": {"number": 8080}}}]}]}
    out = apply(res.body, RouteState(canary_weight=10), canary(port=8080))
    assert weights(out) == {"v1": 90, "v2": 10}
    assert new_virtual_service(NAME, NS, canary(virtualService="routes"))["metadata"]["name"] \
        == "routes"


# --- properties -----------------------------------------------------------------------------

HOST_FORMS = ("sample-app", FQDN)


@st.composite
def destinations(draw: st.DrawFn, subset: str | None) -> dict[str, Any]:
    dest: dict[str, Any] = {"host": draw(st.sampled_from(HOST_FORMS))}
    if subset:
        dest["subset"] = subset
    return dest


@st.composite
def user_rule(draw: st.DrawFn, i: int) -> dict[str, Any]:
    match = draw(st.sampled_from([
        {"headers": {f"x-user-{i}": {"exact": "yes"}}},
        {"uri": {"prefix": f"/p{i}"}},
        {"headers": {"cookie": {"regex": f".*u{i}=1.*"}}},
    ]))
    host = draw(st.sampled_from(["sample-app", "other-svc"]))
    rule: dict[str, Any] = {"match": [match], "route": [{"destination": {
        "host": host, "subset": draw(st.sampled_from(["v1", "v2"]))}}]}
    if draw(st.booleans()):
        rule["name"] = f"user-{i}"
    if draw(st.booleans()):
        rule["timeout"] = "1s"
    return rule


@st.composite
def default_rules(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    shape = draw(st.sampled_from(["stable", "both", "reversed", "subsetless", "canary"]))
    stable_w = draw(st.integers(0, 100))
    entries: list[dict[str, Any]]
    if shape == "stable":
        entries = [{"destination": draw(destinations("v1"))}]
    elif shape == "subsetless":
        entries = [{"destination": draw(destinations(None))}]
    elif shape == "canary":
        entries = [{"destination": draw(destinations("v2"))}]
    else:
        entries = [{"destination": draw(destinations("v1")), "weight": stable_w},
                   {"destination": draw(destinations("v2")), "weight": 100 - stable_w}]
        if shape == "reversed":
            entries.reverse()
    if draw(st.booleans()):
        entries[0]["headers"] = {"response": {"set": {"x-served-by": "mesh"}}}
    rule: dict[str, Any] = {"route": entries}
    if draw(st.booleans()):
        rule["retries"] = {"attempts": 2}
    if draw(st.booleans()):
        rule["mirrors"] = [{"destination": {"host": "shadow"}, "percentage": {"value": 1}}]
    return shape, rule


@st.composite
def virtual_services(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    before = [draw(user_rule(i)) for i in range(draw(st.integers(0, 3)))]
    after = [draw(user_rule(10 + i)) for i in range(draw(st.integers(0, 1)))]  # unreachable
    shape, default = draw(default_rules())
    return shape, {"hosts": [draw(st.sampled_from(HOST_FORMS))],
                   "http": [*before, default, *after]}


MATCHES = st.sampled_from([BETA, ({"headers": {"cookie": {"regex": ".*beta=1.*"}}},),
                           ({"uri": {"prefix": "/beta"}}, {"queryParams": {"b": {"exact": "1"}}})])


@st.composite
def route_states(draw: st.DrawFn) -> RouteState:
    names = draw(st.lists(st.sampled_from(["beta", "internal", "qa"]), max_size=3))
    return RouteState(
        canary_weight=draw(st.integers(0, 100)),
        header_routes=tuple((n, draw(st.one_of(st.just(()), MATCHES))) for n in names),
        ab_match=draw(st.one_of(st.just(()), MATCHES)),
        mirror_percentage=draw(st.one_of(st.none(), st.floats(0, 100, allow_nan=False))),
        affinity_cookie=draw(st.one_of(st.none(), st.tuples(
            st.sampled_from(["canary", "c.s", "sess_1"]),
            st.text("abcXYZ019-_.", min_size=1, max_size=12), st.integers(1, 10**6)))),
    )


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(virtual_services(), route_states(), route_states())
def test_apply_then_rollback_restores_the_users_rules(case: tuple[str, dict[str, Any]],
                                                      state: RouteState,
                                                      other: RouteState) -> None:
    shape, vs = case
    out = valid(apply(vs, state))
    # idempotent, and absolute: the previous state does not leak into the next one
    assert apply(out, state) == out
    assert apply(apply(vs, other), state) == out
    assert weights(out) == {"v1": 100 - state.canary_weight, "v2": state.canary_weight}
    assert user_rules(out) == user_rules(vs)
    back = valid(rolled_back(out, SPEC, NAME, namespace=NS))
    assert back == rolled_back(vs, SPEC, NAME, namespace=NS)
    assert managed_route_names(back, NAME) == []
    assert [r for r in back["http"] if r.get("match")] == user_rules(vs)
    assert {k: v for k, v in default_route(back).items() if k != "route"} == \
        {k: v for k, v in default_route(vs).items() if k != "route"}
    if shape == "stable":
        assert back == vs  # the common case: the user's VirtualService, exactly
    done = valid(promoted(out, SPEC, NAME, namespace=NS))
    assert done == promoted(vs, SPEC, NAME, namespace=NS)
    assert [e["destination"]["subset"] for e in default_route(done)["route"]] == ["v2"]
