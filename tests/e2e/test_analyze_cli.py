"""`meshpilot analyze` as a user runs it: a subprocess, offline on files and online
against a running control plane (istioctl's output, exit code 79)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .conftest import MESHPILOT

pytestmark = pytest.mark.e2e

DATA = Path(__file__).parents[1] / "data"
FIXTURES = DATA / "analyze"
EXAMPLES = Path(__file__).parents[2] / "examples" / "traffic-demo"


def analyze(*args: str, cwd: Path = FIXTURES) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "MESHPILOT_SERVER"}
    return subprocess.run([*MESHPILOT, "analyze", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=60)


def expected(name: str) -> list[str]:
    return [line.removeprefix("# expect: ") for line in (FIXTURES / name).read_text().splitlines()
            if line.startswith("# expect: ")]


def test_offline_fixtures_exit_79_with_the_expected_lines() -> None:
    names = ["ist0101-host.yaml", "ist0112-port-required.yaml", "ist0134-se-addresses.yaml"]
    result = analyze("-A", *(arg for n in names for arg in ("-f", n)))
    assert result.returncode == 79, result.stderr
    assert result.stdout.splitlines() == [line for n in names for line in expected(n)]
    assert result.stderr.endswith("Error: Analyzers found issues when analyzing all namespaces.\n"
                                  "See https://istio.io/latest/docs/reference/config/analysis for "
                                  "more information about causes and resolutions.\n")


def test_offline_clean_run_prints_the_check_mark() -> None:
    result = analyze("-A", "-f", "base", "-f", "sections/03-canary.yaml", "-f",
                     str(FIXTURES / "runtime"), cwd=EXAMPLES)
    assert (result.returncode, result.stdout) == (0, ""), result.stdout + result.stderr
    assert result.stderr == (
        "\u2714 No validation issues found when analyzing:\n"
        + "".join(f"  - base/{f}\n" for f in sorted(os.listdir(EXAMPLES / "base")))
        + "  - sections/03-canary.yaml\n"
        + f"  - {FIXTURES / 'runtime' / 'traffic-demo-runtime.yaml'}\n")


def test_stdin_and_json_output() -> None:
    text = (FIXTURES / "ist0112-port-required.yaml").read_text()
    result = subprocess.run([*MESHPILOT, "analyze", "-A", "-o", "json", "-f", "-"], input=text,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert '"reference": "-:' in result.stdout and '"code": "IST0112"' in result.stdout


def test_online_analyzes_the_live_config(cli, tmp_path: Path) -> None:
    for name in ("01-deployments-and-service.yaml", "02-routing.yaml", "03-canary.yaml"):
        assert cli("apply", "-f", str(DATA / "seed" / name)).code == 0
    result = cli("analyze", "-n", "traffic-demo")
    assert result.code == 79, result.err
    conflict = (
        "The VirtualServices traffic-demo/sample-app-canary,traffic-demo/sample-app-routing "
        "associated with mesh gateway define the same host "
        "*/sample-app.traffic-demo.svc.cluster.local which can lead to undefined behavior. "
        "This can be fixed by merging the conflicting VirtualServices into a single resource.")
    subsets = ("defined in the DestinationRule does not select any pods. Which may lead to "
               "503 UH (NoHealthyUpstream).")
    assert result.out.splitlines() == [
        f"Error [IST0109] (VirtualService traffic-demo/sample-app-canary) {conflict}",
        f"Error [IST0109] (VirtualService traffic-demo/sample-app-routing) {conflict}",
        f"Error [IST0173] (DestinationRule traffic-demo/sample-app-subsets) The Subset v1 "
        f"{subsets}",
        f"Error [IST0173] (DestinationRule traffic-demo/sample-app-subsets) The Subset v2 "
        f"{subsets}",
        "Info [IST0118] (Service traffic-demo/sample-app) Port name  (port: 80, targetPort: "
        "80) doesn't follow the naming convention of Istio port.",
    ]
    missing = cli("analyze")
    assert (missing.code, missing.err.strip()) == (0, 'namespace "default" not found')

    # The corrected canary section over the live config: it replaces sample-app-routing
    # (files win), but the seed's sample-app-canary is still there.
    overlay = cli("analyze", "--with-server", "-n", "traffic-demo", "--output-threshold",
                  "Error", "-f", str(EXAMPLES / "sections" / "03-canary.yaml"))
    assert overlay.code == 79
    assert overlay.out.splitlines()[1].startswith(
        "Error [IST0109] (VirtualService traffic-demo/sample-app-routing "
        f"{EXAMPLES / 'sections' / '03-canary.yaml'}:7) ")
