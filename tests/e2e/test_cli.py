"""The `meshpilot` CLI against a real control plane: the seed's manifests and kubectl habits."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

SEED = Path(__file__).parents[1] / "data" / "seed"
EXAMPLES = Path(__file__).parents[2] / "examples" / "traffic-demo"
MANAGED = {"VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "Service"}

pytestmark = pytest.mark.e2e


def seed_documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((SEED / name).read_text()) if d]


@pytest.mark.parametrize(
    "name", sorted(p.name for p in SEED.glob("*.yaml") if p.name != "09-ab-test.yaml")
)
def test_seed_manifest_applies_and_reads_back_unchanged(cli, name: str) -> None:
    result = cli("apply", "-f", str(SEED / name))
    assert result.code == 0, result.err
    for doc in seed_documents(name):
        if doc["kind"] not in MANAGED:
            assert f"skipped {doc['apiVersion']} {doc['kind']}" in result.err
            continue
        meta = doc["metadata"]
        got = cli("get", doc["kind"], meta["name"], "-n", meta["namespace"], "-o", "json")
        assert got.code == 0, got.err
        stored = got.json()
        assert stored["spec"] == doc["spec"]
        assert stored["apiVersion"] == doc["apiVersion"]
        assert stored["metadata"]["name"] == meta["name"]
        assert int(stored["metadata"]["resourceVersion"]) > 0
        assert stored["metadata"]["generation"] == 1
        assert stored["metadata"]["uid"]


def test_seed_cookie_match_is_rejected_and_nothing_is_stored(cli) -> None:
    result = cli("apply", "-f", str(SEED / "09-ab-test.yaml"))
    assert result.code == 1
    assert "09-ab-test.yaml: document 1, line 19" in result.err
    assert "spec.http[1].match[0].cookie: unknown field 'cookie'" in result.err
    assert "headers: {cookie: {\"regex\": \".*experiment=beta.*\"}}" in result.err
    assert "nothing was applied" in result.err
    listing = cli("get", "vs", "-n", "traffic-demo", "-o", "json").json()
    assert listing["items"] == []


def test_corrected_examples_apply_cleanly(cli) -> None:
    result = cli("apply", "-f", str(EXAMPLES / "base"))
    assert result.code == 0, result.err
    assert "virtualservice.networking.istio.io/sample-app-routing created" in result.out
    assert "service/sample-app created" in result.out
    again = cli("apply", "-f", str(EXAMPLES / "base"))
    assert all(line.endswith(" unchanged") for line in again.out.splitlines()), again.out
    canary = cli("apply", "-f", str(EXAMPLES / "sections" / "03-canary.yaml"))
    assert canary.out.strip() == "virtualservice.networking.istio.io/sample-app-routing configured"
    assert "Warning" not in canary.err


def test_stacked_virtual_services_warn_but_are_stored(cli) -> None:
    assert cli("apply", "-f", str(SEED / "02-routing.yaml")).code == 0
    result = cli("apply", "-f", str(SEED / "03-canary.yaml"))
    assert result.code == 0
    assert "Warning:" in result.err and "IST0109" in result.err
    assert "traffic-demo/sample-app-routing, which is older" in result.err
    assert "virtualservice.networking.istio.io/sample-app-canary created" in result.out


def test_second_destination_rule_warns_what_istio_drops(cli) -> None:
    assert cli("apply", "-f", str(SEED / "02-routing.yaml")).code == 0
    result = cli("apply", "-f", str(SEED / "04-circuit-breaker.yaml"))
    assert result.code == 0
    assert "its top-level trafficPolicy is ignored" in result.err
    assert "its subsets v1, v2 are ignored" in result.err


def test_batch_with_one_invalid_document_stores_nothing(cli, tmp_path: Path) -> None:
    good = (SEED / "02-routing.yaml").read_text()
    bad = good.replace("subset: v1", "subset: V_1").replace("sample-app-routing", "other")
    (tmp_path / "batch.yaml").write_text(good + "---\n" + bad)
    result = cli("apply", "-f", str(tmp_path / "batch.yaml"))
    assert result.code == 1
    assert "document 3" in result.err and "spec.http[1].route[0].destination.subset" in result.err
    assert cli("get", "vs,dr", "-A", "-o", "json").json()["items"] == []


def test_get_tables_selectors_and_namespaces(cli) -> None:
    assert cli("apply", "-f", str(EXAMPLES / "base")).code == 0
    table = cli("get", "vs", "-n", "traffic-demo")
    lines = table.out.splitlines()
    assert lines[0].split() == ["NAME", "GATEWAYS", "HOSTS", "AGE"]
    assert any(line.startswith("sample-app-gateway-vs") and '["sample-app-gateway"]' in line
               for line in lines)
    wide = cli("get", "svc", "-A", "-o", "wide").out.splitlines()
    assert wide[0].split()[:2] == ["NAMESPACE", "NAME"]
    assert "app=sample-app" in wide[1]
    assert cli("get", "virtualservices.networking.istio.io", "-n", "traffic-demo",
               "-o", "name").out.splitlines() == [
        "virtualservice.networking.istio.io/external-api-vs",
        "virtualservice.networking.istio.io/sample-app-gateway-vs",
        "virtualservice.networking.istio.io/sample-app-routing",
    ]
    empty = cli("get", "dr")
    assert empty.code == 0 and "No resources found in default namespace." in empty.err
    missing = cli("get", "vs", "nope", "-n", "traffic-demo")
    assert missing.code == 1 and "NotFound" in missing.err
    unknown = cli("get", "deployments")
    assert unknown.code == 1 and 'resource type "deployments"' in unknown.err


def test_label_selector(cli, tmp_path: Path) -> None:
    docs = []
    for name, team in (("a", "blue"), ("b", "green"), ("c", "blue")):
        docs.append({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
                     "metadata": {"name": name, "labels": {"team": team}},
                     "spec": {"host": f"{name}.example.com"}})
    (tmp_path / "drs.yaml").write_text(yaml.safe_dump_all(docs))
    assert cli("apply", "-f", str(tmp_path / "drs.yaml")).code == 0
    out = cli("get", "dr", "-l", "team=blue", "-o", "name").out.split()
    assert out == ["destinationrule.networking.istio.io/a", "destinationrule.networking.istio.io/c"]
    out = cli("get", "dr", "-l", "team notin (blue)", "-o", "name").out.split()
    assert out == ["destinationrule.networking.istio.io/b"]
    bad = cli("get", "dr", "-l", "team in blue")
    assert bad.code == 1 and "labelSelector" in bad.err


def test_yaml_output_round_trips_through_apply(cli, tmp_path: Path) -> None:
    assert cli("apply", "-f", str(EXAMPLES / "base")).code == 0
    dumped = cli("get", "vs,dr,gw,se,svc", "-n", "traffic-demo", "-o", "yaml")
    assert dumped.code == 0
    again = cli("apply", "-f", "-", stdin=dumped.out)
    assert again.code == 0, again.err
    assert again.out.count(" unchanged") == 8


def test_delete_by_file_and_by_name(cli) -> None:
    assert cli("apply", "-f", str(EXAMPLES / "base")).code == 0
    gone = cli("delete", "-f", str(EXAMPLES / "base" / "50-egress.yaml"))
    assert gone.code == 0
    assert 'serviceentry.networking.istio.io "external-api" deleted' in gone.out
    assert cli("get", "se", "-n", "traffic-demo", "-o", "json").json()["items"] == []
    one = cli("delete", "vs", "sample-app-routing", "-n", "traffic-demo")
    assert one.out.strip() == 'virtualservice.networking.istio.io "sample-app-routing" deleted'
    again = cli("delete", "vs", "sample-app-routing", "-n", "traffic-demo")
    assert again.code == 1 and "NotFound" in again.err
    quiet = cli("delete", "vs", "sample-app-routing", "-n", "traffic-demo", "--ignore-not-found")
    assert quiet.code == 0


def test_namespace_flag_and_mismatch(cli, tmp_path: Path) -> None:
    doc = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
           "metadata": {"name": "r"}, "spec": {"host": "r"}}
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    assert cli("apply", "-f", str(tmp_path / "r.yaml"), "-n", "team-a").code == 0
    assert cli("get", "dr", "r", "-n", "team-a").code == 0
    assert cli("apply", "-f", str(tmp_path / "r.yaml")).code == 0
    assert cli("get", "dr", "r").code == 0  # no namespace: default
    doc["metadata"]["namespace"] = "team-b"
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(doc))
    mismatch = cli("apply", "-f", str(tmp_path / "r.yaml"), "-n", "team-a")
    assert mismatch.code == 1 and "does not match the namespace 'team-a'" in mismatch.err


def test_validate_works_offline(cli) -> None:
    ok = cli("validate", "-f", str(EXAMPLES / "base"), server=False)
    assert ok.code == 0, ok.err
    assert "virtualservice.networking.istio.io/sample-app-routing valid" in ok.out
    for section in sorted((EXAMPLES / "sections").glob("*.yaml")):
        assert cli("validate", "-f", str(section), server=False).code == 0
    both = cli("validate", "-f", str(EXAMPLES), server=False)
    assert both.code == 1 and "appears twice in this batch" in both.err
    bad = cli("validate", "-f", str(SEED / "09-ab-test.yaml"), server=False)
    assert bad.code == 1 and "cookie" in bad.err


def test_unreachable_server_is_a_clear_error(cli) -> None:
    result = cli("get", "vs", "--server", "http://127.0.0.1:1")
    assert result.code == 1
    assert "cannot reach the meshpilot control plane at http://127.0.0.1:1" in result.err


def test_dry_run_stores_nothing(cli) -> None:
    result = cli("apply", "--dry-run", "-f", str(SEED / "02-routing.yaml"))
    assert result.code == 0
    assert "sample-app-routing created (dry run)" in result.out
    assert cli("get", "vs", "-A", "-o", "json").json()["items"] == []


def test_secret_string_data_is_stored_as_data(cli, tmp_path: Path) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
              "metadata": {"name": "sample-app-tls", "namespace": "traffic-demo"},
              "stringData": {"tls.crt": "CERT", "tls.key": "KEY"}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(secret))
    assert cli("apply", "-f", str(tmp_path / "s.yaml")).code == 0
    got = cli("get", "secret", "sample-app-tls", "-n", "traffic-demo", "-o", "json").json()
    assert got["data"] == {"tls.crt": "Q0VSVA==", "tls.key": "S0VZ"}
    assert "stringData" not in got
    table = cli("get", "secrets", "-n", "traffic-demo").out.splitlines()
    assert table[0].split() == ["NAME", "TYPE", "DATA", "AGE"]
    assert table[1].split()[:3] == ["sample-app-tls", "kubernetes.io/tls", "2"]
