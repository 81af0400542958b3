"""`meshpilot dashboard grafana`: JSON to stdout or a file, the ConfigMap form, and the
service/namespace preselection (a service FQDN gives both)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from meshpilot.cli.main import main


def variables(board: dict) -> dict[str, object]:
    return {v["name"]: v.get("current", {}).get("value") for v in board["templating"]["list"]}


def test_json_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", "grafana"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert board["uid"] == "meshpilot-traffic" and board["panels"]


def test_json_to_a_file_with_preselection(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "dash.json"
    assert main(["dashboard", "grafana", "-o", str(out), "--namespace", "traffic-demo",
                 "--service", "sample-app"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "" and str(out) in captured.err
    current = variables(json.loads(out.read_text()))
    assert current["namespace"] == ["traffic-demo"] and current["service"] == ["sample-app"]


def test_service_fqdn_gives_name_and_namespace(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", "grafana", "--service",
                 "sample-app.traffic-demo.svc.cluster.local"]) == 0
    current = variables(json.loads(capsys.readouterr().out))
    assert current["service"] == ["sample-app"] and current["namespace"] == ["traffic-demo"]


def test_configmap(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", "grafana", "--configmap", "--configmap-namespace", "grafana"]) == 0
    cm = yaml.safe_load(capsys.readouterr().out)
    assert cm["kind"] == "ConfigMap" and cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["labels"] == {"grafana_dashboard": "1"}
    assert json.loads(cm["data"]["traffic-dashboard.json"])["title"]


def test_unwritable_output_is_a_clean_error(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboard", "grafana", "-o", str(tmp_path / "no" / "such" / "x.json")]) == 1
    assert capsys.readouterr().err.startswith("error: cannot write")


def test_kind_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["dashboard"])
    assert exc.value.code == 2
