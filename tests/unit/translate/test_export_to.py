"""exportTo visibility (Istio's PushContext indexes): which VirtualServices, DestinationRules,
ServiceEntries and Services a sidecar sees, by the sidecar's namespace.

Namespaces: `a` owns the `web` Service, `b` and `c` are client namespaces, `istio-system`
is the root namespace. Creation times are explicit so "oldest" is unambiguous.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from meshpilot.api.resource import Resource
from meshpilot.snapshot import MeshConfig, MeshSnapshot
from meshpilot.xds.translate import translate
from meshpilot.xds.types import ProxyInfo

from .helpers import CLIENT, assert_consistent, resource

WEB = "web.a.svc.cluster.local"
ROOT = "istio-system"
EXTERNAL = "api.example.com"


def proxy(namespace: str) -> ProxyInfo:
    return replace(CLIENT, name=f"client-{namespace}", namespace=namespace)


def service(name: str = "web", namespace: str = "a", export: str | None = None) -> Resource:
    res = resource("Service", name, {"selector": {"app": name}, "ports": [
        {"name": "http", "port": 80}]}, namespace=namespace, created="2026-01-01T00:00:00Z")
    return res.with_(annotations={"networking.istio.io/exportTo": export}) if export else res


def vs(name: str, namespace: str, created: str, export: list[str] | None = None,
       host: str = WEB, subset: str = "v1") -> Resource:
    body: dict[str, Any] = {"hosts": [host], "http": [{"name": name, "route": [
        {"destination": {"host": WEB, "subset": subset}}]}]}
    if export is not None:
        body["exportTo"] = export
    return resource("VirtualService", name, body, namespace=namespace, created=created)


def dr(name: str, namespace: str, created: str, export: list[str] | None = None,
       subsets: tuple[str, ...] = ("v1",), host: str = WEB) -> Resource:
    body: dict[str, Any] = {"host": host, "subsets": [
        {"name": s, "labels": {"version": s}} for s in subsets]}
    if export is not None:
        body["exportTo"] = export
    return resource("DestinationRule", name, body, namespace=namespace, created=created)


def service_entry(namespace: str = "a", export: list[str] | None = None,
                  host: str = EXTERNAL) -> Resource:
    body: dict[str, Any] = {"hosts": [host], "ports": [
        {"number": 80, "name": "http", "protocol": "HTTP"}], "resolution": "STATIC",
        "location": "MESH_EXTERNAL", "endpoints": [{"address": "127.0.0.1"}]}
    if export is not None:
        body["exportTo"] = export
    return resource("ServiceEntry", "external", body, namespace=namespace,
                    created="2026-01-01T00:00:01Z")


def build(*res: Resource, mesh: MeshConfig | None = None) -> MeshSnapshot:
    return MeshSnapshot.build(list(res), 1, mesh)


def vs_name(snap: MeshSnapshot, namespace: str, host: str = WEB) -> str | None:
    found = snap.virtual_service_for(host, namespace)
    return found.name if found is not None else None


def dr_names(snap: MeshSnapshot, namespace: str, host: str = WEB) -> list[str] | None:
    found = snap.destination_rule(host, namespace, "a")
    return [c.name for c in found.sources] if found is not None else None


# --- VirtualService ------------------------------------------------------------------

@pytest.mark.parametrize(("export", "seen_by"), [
    (None, {"a", "b", "c"}),
    (["*"], {"a", "b", "c"}),
    (["."], {"a"}),
    (["a"], {"a"}),
    (["b"], {"b"}),
    ([".", "b"], {"a", "b"}),
])
def test_virtual_service_visibility_matrix(export: list[str] | None, seen_by: set[str]) -> None:
    snap = build(service(), vs("routing", "a", "1", export))
    assert {ns for ns in ("a", "b", "c") if vs_name(snap, ns) == "routing"} == seen_by


def test_mesh_default_virtual_service_export_to_applies_when_none_declared() -> None:
    mesh = MeshConfig(default_virtual_service_export_to=(".",))
    snap = build(service(), vs("routing", "a", "1"), vs("public", "b", "2", ["*"]), mesh=mesh)
    assert vs_name(snap, "a") == "routing"
    assert vs_name(snap, "b") == "public" and vs_name(snap, "c") == "public"


def test_oldest_virtual_service_is_chosen_among_the_visible_ones() -> None:
    # The oldest VS for the host is private to b: a and c never see it, so the next
    # oldest (public) one routes there, and nothing is reported as shadowed for them.
    snap = build(service(), vs("b-private", "b", "1", ["."]), vs("public-1", "c", "2"),
                 vs("public-2", "c", "3"))
    assert vs_name(snap, "b") == "b-private"
    assert vs_name(snap, "a") == "public-1" and vs_name(snap, "c") == "public-1"
    assert any("public-2" in d and "IST0109" in d for d in snap.diagnostics)


def test_private_and_exported_virtual_services_take_precedence_over_public_ones() -> None:
    # Istio's SelectVirtualServices lists private, then exported-to, then public ones,
    # so a namespace's own VS wins for its sidecars even over an older public one.
    snap = build(service(), vs("public", "c", "1"), vs("exported-to-b", "a", "2", ["b"]),
                 vs("b-own", "b", "3", ["."]))
    assert vs_name(snap, "b") == "b-own"
    assert vs_name(snap, "a") == "public" and vs_name(snap, "c") == "public"
    snap = build(service(), vs("public", "c", "1"), vs("exported-to-b", "a", "2", ["b"]))
    assert vs_name(snap, "b") == "exported-to-b"


def test_no_shadowing_diagnostic_for_virtual_services_no_namespace_sees_together() -> None:
    snap = build(service(), vs("for-b", "b", "1", ["."]), vs("for-c", "c", "2", ["."]))
    assert vs_name(snap, "b") == "for-b" and vs_name(snap, "c") == "for-c"
    assert vs_name(snap, "a") is None
    assert not any("IST0109" in d for d in snap.diagnostics)


def test_wildcard_virtual_service_respects_export_to() -> None:
    snap = build(vs("wild-private", "b", "1", ["."], host="*.example.com"),
                 vs("wild-public", "c", "2", host="*.example.com"))
    assert vs_name(snap, "b", EXTERNAL) == "wild-private"
    assert vs_name(snap, "a", EXTERNAL) == "wild-public"


# --- DestinationRule -----------------------------------------------------------------

@pytest.mark.parametrize(("export", "seen_by"), [
    (None, {"a", "b", "c", ROOT}),
    (["*"], {"a", "b", "c", ROOT}),
    (["."], {"a"}),
    (["a"], {"a"}),
    (["b"], {"b"}),            # not even its own namespace: Istio keeps it out of a's index
    ([".", "b"], {"a", "b"}),
])
def test_destination_rule_in_service_namespace_visibility(
    export: list[str] | None, seen_by: set[str]
) -> None:
    snap = build(service(), dr("subsets", "a", "1", export))
    assert {ns for ns in ("a", "b", "c", ROOT) if dr_names(snap, ns) == ["subsets"]} == seen_by


def test_destination_rule_lookup_order_proxy_then_service_then_root() -> None:
    snap = build(service(), dr("root", ROOT, "1"), dr("svc", "a", "2"),
                 dr("client-b", "b", "3", ["."]))
    assert dr_names(snap, "b") == ["client-b"]        # the proxy's own namespace first
    assert dr_names(snap, "c") == ["svc"]             # then the service's namespace
    snap = build(service(), dr("root", ROOT, "1"), dr("svc", "a", "2", ["."]))
    assert dr_names(snap, "c") == ["root"]            # then the root namespace
    assert dr_names(snap, "a") == ["svc"]


def test_proxy_namespace_rule_exported_elsewhere_only_is_not_local() -> None:
    # A rule in b exported to c alone is not in b's own index, and c never looks in b
    # (b is neither the service's namespace nor the root): both use a's rule.
    snap = build(service(), dr("b-for-c", "b", "1", ["c"]), dr("svc", "a", "2"))
    assert dr_names(snap, "b") == ["svc"]
    assert dr_names(snap, "c") == ["svc"]


def test_root_namespace_private_rule_is_for_root_proxies_only() -> None:
    snap = build(service(), dr("root-private", ROOT, "1", ["."]))
    assert dr_names(snap, ROOT) == ["root-private"]
    assert dr_names(snap, "b") is None


def test_most_specific_rule_not_exported_falls_through_to_the_next_namespace() -> None:
    # a's exact-host rule is exported to c only; for b, Istio does not fall back to a's
    # broader wildcard rule but moves on to the root namespace.
    snap = build(service(), dr("exact-for-c", "a", "1", ["c"]),
                 dr("wildcard", "a", "2", host="*.a.svc.cluster.local"),
                 dr("root", ROOT, "3"))
    assert dr_names(snap, "c") == ["exact-for-c"]
    assert dr_names(snap, "b") == ["root"]


def test_mesh_default_destination_rule_export_to_dot_makes_rules_private() -> None:
    mesh = MeshConfig(default_destination_rule_export_to=(".",))
    snap = build(service(), dr("svc", "a", "1"), mesh=mesh)
    assert dr_names(snap, "a") == ["svc"]
    assert dr_names(snap, "b") is None


def test_rules_merge_only_with_the_same_or_wider_export_to() -> None:
    # Istio's enhanced merge: `[., b]` is wider than `[.]`, so in a both merge (v1 + v2);
    # b sees only the exported one (v2).
    snap = build(service(), dr("private", "a", "1", ["."], ("v1",)),
                 dr("shared", "a", "2", [".", "b"], ("v2",)))
    mine = snap.destination_rule(WEB, "a", "a")
    assert mine is not None and mine.subset_names == ("v1", "v2")
    theirs = snap.destination_rule(WEB, "b", "a")
    assert theirs is not None and theirs.subset_names == ("v2",)
    # No exportTo on either: one merged rule everywhere, as before.
    snap = build(service(), dr("one", "a", "1", None, ("v1",)), dr("two", "a", "2", None, ("v2",)))
    for ns in ("a", "b"):
        found = snap.destination_rule(WEB, ns, "a")
        assert found is not None and found.subset_names == ("v1", "v2")


# --- ServiceEntry and Service ----------------------------------------------------------

@pytest.mark.parametrize(("export", "seen_by"), [
    (None, {"a", "b", "c"}),
    (["*"], {"a", "b", "c"}),
    (["."], {"a"}),
    (["b"], {"b"}),
    ([".", "c"], {"a", "c"}),
    (["~"], set()),
])
def test_service_entry_visibility_matrix(export: list[str] | None, seen_by: set[str]) -> None:
    snap = build(service_entry("a", export))
    assert {ns for ns in ("a", "b", "c")
            if snap.visible_service(EXTERNAL, ns) is not None} == seen_by
    assert snap.service(EXTERNAL) is not None  # still in the registry


@pytest.mark.parametrize(("annotation", "seen_by"), [
    (".", {"a"}),
    ("b, c", {"b", "c"}),
    ("*", {"a", "b", "c"}),
    ("~", set()),
])
def test_service_export_to_annotation(annotation: str, seen_by: set[str]) -> None:
    snap = build(service(export=annotation))
    assert {ns for ns in ("a", "b", "c")
            if any(s.hostname == WEB for s in snap.services_for(ns))} == seen_by


def test_mesh_default_service_export_to() -> None:
    mesh = MeshConfig(default_service_export_to=(".",))
    snap = build(service(), service("api", "b", export="*"), mesh=mesh)
    assert [s.name for s in snap.services_for("a")] == ["api", "web"]
    assert [s.name for s in snap.services_for("c")] == ["api"]


# --- translation ---------------------------------------------------------------------

def test_sidecars_in_two_namespaces_get_their_own_routes_clusters_and_services() -> None:
    snap = build(
        service(), service_entry("a", ["."]),
        vs("a-only", "a", "1", ["."], subset="v2"),
        dr("a-subsets", "a", "2", ["."], ("v1", "v2")),
    )
    mine, theirs = translate(snap, proxy("a")), translate(snap, proxy("b"))
    for out in (mine, theirs):
        assert_consistent(out)

    def vhost_routes(out: Any, name: str) -> list[str]:
        (found,) = [v for v in out.routes["15001"].virtual_hosts if v.name == name]
        return [r.route.cluster for r in found.routes]

    assert vhost_routes(mine, f"{WEB}:80") == [f"outbound|80|v2|{WEB}"]
    assert vhost_routes(theirs, f"{WEB}:80") == [f"outbound|80||{WEB}"]
    assert f"outbound|80|v2|{WEB}" in mine.clusters
    assert f"outbound|80|v2|{WEB}" not in theirs.clusters
    assert f"outbound|80||{EXTERNAL}" in mine.clusters
    assert f"outbound|80||{EXTERNAL}" not in theirs.clusters
    names = {v.name for v in theirs.routes["15001"].virtual_hosts}
    assert f"{EXTERNAL}:80" not in names and "allow_any" in names


def test_virtual_service_host_without_a_visible_service_gets_a_port_80_vhost() -> None:
    # web is exported to a only; b still sees a public VS for it, which Istio then
    # treats like a VS for an unknown host (a vhost on port 80, no service cluster).
    snap = build(service(export="."), vs("public", "c", "1"))
    out = translate(snap, proxy("b"))
    assert_consistent(out)
    (found,) = [v for v in out.routes["15001"].virtual_hosts if v.name == f"{WEB}:80"]
    assert [r.route.cluster for r in found.routes] == ["BlackHoleCluster"]
    assert not any(WEB in name for name in out.clusters)
