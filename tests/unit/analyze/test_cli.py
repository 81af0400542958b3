"""`meshpilot analyze` flags in-process: thresholds, formats, exit codes, suppressions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from meshpilot.cli.main import main

FIXTURES = Path(__file__).parents[2] / "data" / "analyze"
HOST = str(FIXTURES / "ist0101-host.yaml")  # one Error
WARNING = str(FIXTURES / "ist0134-se-addresses.yaml")  # one Warning
INFO = str(FIXTURES / "ist0118-port-name.yaml")  # one Info


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["analyze", "--no-color", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_error_exits_79_with_istioctl_trailer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "-n", "shop", HOST)
    assert code == 79
    assert out.startswith("Error [IST0101] (VirtualService shop/ratings-route ")
    assert err.endswith("Error: Analyzers found issues when analyzing namespace: shop.\nSee "
                        "https://istio.io/latest/docs/reference/config/analysis for more "
                        "information about causes and resolutions.\n")


def test_thresholds(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "-A", WARNING)[0] == 0
    assert run(capsys, "-A", WARNING, "--failure-threshold", "warning")[0] == 79
    code, out, err = run(capsys, "-A", INFO, "--output-threshold", "Warning")
    assert (code, out) == (0, "")
    assert "\u2714 No validation issues found when analyzing " in err
    code, out, _ = run(capsys, "-A", INFO, WARNING, "--output-threshold", "info")
    assert [line.split(" (")[0] for line in out.splitlines()] == [
        "Warning [IST0134]", "Info [IST0118]"]
    with pytest.raises(SystemExit):
        run(capsys, "--output-threshold", "loud")


def test_json_and_yaml_exit_0_as_istioctl(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-A", "-o", "json", HOST)
    assert code == 0
    [item] = json.loads(out)
    assert (item["code"], item["level"], item["origin"]) == (
        "IST0101", "Error", "VirtualService shop/ratings-route")
    assert item["reference"].endswith("ist0101-host.yaml:15")
    code, out, _ = run(capsys, "-A", "-o", "yaml", HOST)
    assert code == 0 and out.startswith("- code: IST0101\n  documentationUrl: ")


def test_clean_lines(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    clean = tmp_path / "clean.yaml"
    clean.write_text("apiVersion: v1\nkind: Service\nmetadata: {name: a}\n"
                     "spec: {ports: [{name: http, port: 80}]}\n")
    code, out, err = run(capsys, str(clean))
    assert (code, out, err) == (0, "", f"\u2714 No validation issues found when analyzing "
                                       f"{clean}.\n")
    code, out, err = run(capsys, str(clean), str(clean))
    assert err == (f"\u2714 No validation issues found when analyzing:\n  - {clean}\n"
                   f"  - {clean}\n")


def test_hint_when_the_namespace_filter_hides_messages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, HOST)
    assert (code, out) == (0, "")
    assert err.splitlines()[-1] == (
        "Info: 1 message(s) in namespace(s) shop not shown (analyzing namespace: default); "
        "use -n shop or -A to see them.")


def test_suppress_and_analyzer_selection(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-A", HOST, "-S", "IST0101=VirtualService shop/*")
    assert (code, out) == (0, "")
    code, _, err = run(capsys, "-A", HOST, "-S", "IST9999=VirtualService *")
    assert code == 79
    assert "Warning: Supplied message code 'IST9999' is an unknown message code" in err
    code, out, _ = run(capsys, "-A", HOST, "--analyzer", "gateway.SecretAnalyzer")
    assert (code, out) == (0, "")
    assert run(capsys, "-A", HOST, "--analyzer", "nope")[0] == 1
    assert run(capsys, "-A", HOST, "-S", "nonsense")[0] == 1


def test_list_analyzers(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "-L")
    assert code == 0
    assert "* virtualservice.DestinationHostAnalyzer:\n    Checks the destination hosts" in out


def test_unusable_input_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: [\n")
    code, out, err = run(capsys, "-A", str(bad))
    assert (code, out) == (1, "")
    assert "invalid YAML" in err and "(but 1 file could not be parsed)" in err
    assert run(capsys, "-A", str(tmp_path / "missing.yaml"))[0] == 1
    # an analyzer finding still wins, as in istioctl
    assert run(capsys, "-A", str(bad), HOST)[0] == 79


def test_unreachable_control_plane_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--server", "http://127.0.0.1:9")
    assert code == 1 and "cannot reach the meshpilot control plane" in err
