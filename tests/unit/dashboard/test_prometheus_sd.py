"""Prometheus HTTP SD from WorkloadEntries: one target group per proxy, Istio-style labels,
nothing for entries that name no Envoy admin port."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from meshpilot.api.resource import Resource
from meshpilot.store import SqliteStore
from meshpilot.web.app import STORE
from meshpilot.web.prometheus_sd import prometheus_targets, sd_targets, target_group

API = "networking.istio.io/v1"
PATH = "/apis/meshpilot.io/v1/prometheus/targets"


def entry(name: str, namespace: str = "traffic-demo", *, labels: dict[str, str] | None = None,
          admin: str | None = "15000", proxy_type: str | None = "sidecar") -> Resource:
    annotations = {"meshpilot.io/pid": "42"}
    if admin is not None:
        annotations["meshpilot.io/admin-port"] = admin
    if proxy_type is not None:
        annotations["meshpilot.io/proxy-type"] = proxy_type
    labels = {"app": "sample-app", "version": "v1"} if labels is None else labels
    return Resource(API, "WorkloadEntry", name, namespace,
                    body={"address": "127.0.0.1", "labels": dict(labels)},
                    labels=dict(labels), annotations=annotations)


def test_one_group_per_proxy_with_istio_style_labels() -> None:
    assert target_group(entry("sample-app-v1-1")) == {
        "targets": ["127.0.0.1:15000"],
        "labels": {"namespace": "traffic-demo", "pod": "sample-app-v1-1", "app": "sample-app",
                   "version": "v1", "proxy_type": "sidecar",
                   "__metrics_path__": "/stats/prometheus"},
    }


def test_rest_api_json_gives_the_same_group_as_the_stored_resource() -> None:
    res = entry("sample-app-v2-1", labels={"app": "sample-app", "version": "v2"}, admin="21359")
    assert target_group(res.to_dict()) == target_group(res)


def test_entries_without_a_usable_admin_port_are_skipped() -> None:
    """A hand-written WorkloadEntry (a VM, an external endpoint) has no Envoy of ours."""
    assert target_group(entry("vm", admin=None)) is None
    assert target_group(entry("vm", admin="not-a-port")) is None
    assert target_group(entry("vm", admin="70000")) is None


def test_missing_app_or_version_labels_are_left_out_not_empty() -> None:
    gw = entry("istio-ingressgateway", "istio-system", labels={"istio": "ingressgateway"},
               proxy_type="gateway")
    labels = target_group(gw)["labels"]  # type: ignore[index]
    assert "app" not in labels and "version" not in labels
    assert labels["proxy_type"] == "gateway"


def test_kubernetes_recommended_labels_stand_in_for_app_and_version() -> None:
    res = entry("x", labels={"app.kubernetes.io/name": "reviews",
                             "app.kubernetes.io/version": "v3"})
    labels = target_group(res)["labels"]  # type: ignore[index]
    assert (labels["app"], labels["version"]) == ("reviews", "v3")


def test_metadata_labels_are_used_when_the_spec_has_none() -> None:
    obj: dict[str, Any] = entry("x").to_dict()
    obj["spec"].pop("labels")
    assert target_group(obj)["labels"]["app"] == "sample-app"  # type: ignore[index]


def test_sorted_by_namespace_then_pod_for_a_stable_answer() -> None:
    groups = sd_targets([entry("b", "ns2"), entry("vm", admin=None), entry("z", "ns1"),
                         entry("a", "ns2")])
    assert [(g["labels"]["namespace"], g["labels"]["pod"]) for g in groups] == [
        ("ns1", "z"), ("ns2", "a"), ("ns2", "b")]


def test_handler_serves_the_stored_entries(tmp_path: Path) -> None:
    with SqliteStore(tmp_path / "store.db") as store:
        store.create(entry("sample-app-v1-1", admin="15001"))
        store.create(entry("other", "default", admin="15002"))
        app = web.Application()
        app[STORE] = store
        app.router.add_get(PATH, prometheus_targets)

        async def fetch() -> tuple[list, list, str]:
            async with TestClient(TestServer(app, host="127.0.0.1")) as client:
                every = await client.get(PATH)
                one_ns = await client.get(PATH, params={"namespace": "traffic-demo"})
                return await every.json(), await one_ns.json(), every.content_type

        every, one_ns, content_type = asyncio.run(fetch())
    assert content_type == "application/json"
    assert [g["targets"] for g in every] == [["127.0.0.1:15002"], ["127.0.0.1:15001"]]
    assert [g["labels"]["pod"] for g in one_ns] == ["sample-app-v1-1"]
