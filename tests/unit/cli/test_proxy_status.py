"""proxy-status rendering from the control plane's JSON (a recorded one plus a NACK)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from meshpilot.cli.diagnostics import configdump as cd
from meshpilot.cli.diagnostics.proxy_status import (
    compare,
    problems,
    select,
    status_rows,
    xds_cell,
)
from meshpilot.cli.diagnostics.tabwriter import tabulate

DATA = Path(__file__).parents[2] / "data" / "diagnostics"


def items() -> list[dict[str, Any]]:
    return json.loads((DATA / "proxies.json").read_text())["items"]


def nacked(item: dict[str, Any]) -> dict[str, Any]:
    item = json.loads(json.dumps(item))
    item["types"]["RDS"].update(state="NACKED", nack={
        "version": "abc", "nonce": "n-4", "secondsAgo": 3.2,
        "message": "Error adding/updating route: sum of weights in weighted_cluster "
                   "should be less than 4294967295"})
    return item


def test_cells_use_istioctls_words() -> None:
    assert xds_cell(None) == "NOT SENT"
    assert xds_cell({"state": "SYNCED", "ackedSecondsAgo": 75}) == "SYNCED (75s)"
    assert xds_cell({"state": "SYNCED", "ackedSecondsAgo": 600}) == "SYNCED (10m)"
    assert xds_cell({"state": "STALE", "ackedVersion": "1"}) == "STALE"
    assert xds_cell({"state": "STALE", "ackedVersion": None}) == "STALE (Never Acknowledged)"
    assert xds_cell({"state": "NACKED", "nack": {"secondsAgo": 2}}) == "NACKED (2s)"


def test_table_has_one_column_per_xds_type() -> None:
    rows = status_rows(select(items(), None, None, False), "127.0.0.1:15014", "0.1.0")
    assert rows[0] == ["NAME", "TYPE", "CDS", "LDS", "EDS", "RDS", "SDS", "ISTIOD", "VERSION"]
    by_name = {r[0]: r for r in rows[1:]}
    assert list(by_name) == sorted(by_name)  # sorted by node id, as istioctl
    gw = by_name["ingress.traffic-demo"]
    assert gw[1] == "gateway" and all(c.startswith("SYNCED (") for c in gw[2:7])
    client = by_name["test-client.traffic-demo"]
    assert client[6] == "NOT SENT"  # sidecars never ask for secrets
    assert client[7:] == ["127.0.0.1:15014", "0.1.0"]
    verbose = status_rows(select(items(), None, None, True), "cp", "v", verbose=True)
    assert verbose[0][2] == "XDS" and verbose[0][-1] == "CONNECTED"
    assert tabulate(status_rows([], "cp", "v")).split() == rows[0]


def test_select_like_istioctl() -> None:
    all_items = items()
    assert [i["name"] for i in select(all_items, "test-client.traffic-demo", None, False)] == [
        "test-client.traffic-demo"]
    assert [i["name"] for i in select(all_items, "test-client", "traffic-demo", False)] == [
        "test-client.traffic-demo"]
    assert len(select(all_items, "sample-app", None, False)) == 2  # substring, as istioctl
    assert select(all_items, None, "other", False) == []
    gone = [{**all_items[0], "connected": False}]
    assert select(gone, None, None, False) == []
    assert len(select(gone, None, None, True)) == 1


def test_nack_message_is_printed_with_its_proxy_and_type() -> None:
    item = nacked(items()[0])
    [line] = problems([item])
    assert line == (f"{item['name']} RDS NACKED version abc (3s ago): Error adding/updating "
                    "route: sum of weights in weighted_cluster should be less than 4294967295")
    row = status_rows([item], "cp", "v")[1]
    assert row[5] == "NACKED (3s)"
    assert problems([{"name": "p", "types": {}, "error": {"message": "boom"}}]) == [
        "p: config not generated: boom"]


def test_compare_with_envoys_own_dump() -> None:
    client = next(i for i in items() if i["name"] == "test-client.traffic-demo")
    dump = json.loads((DATA / "client-config_dump.json").read_text())
    client["types"]["CDS"]["resources"] = len(
        cd.section(dump, cd.CLUSTERS)["dynamic_active_clusters"])
    client["types"]["LDS"]["resources"] = 2
    client["types"]["RDS"]["resources"] = 2
    lines = compare(client, dump)
    assert lines[0] == "Clusters Match (6 clusters)"
    assert lines[1] == "Listeners Match (2 listeners)"
    assert lines[2].startswith("Routes Match (RDS last loaded at 2026-")
    assert compare(nacked(client), dump)[2] == \
        "Routes Don't Match: control plane sent 2, Envoy runs 2; RDS is NACKED"
    client["types"]["CDS"]["resources"] = 7
    assert compare(client, dump)[0] == "Clusters Don't Match: control plane sent 7, Envoy runs 6"
