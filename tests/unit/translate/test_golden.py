"""Golden tests: the full translation of each scenario, compared with checked-in JSON.

Each file under tests/data/golden/ is `translate(snapshot, CLIENT)` rendered by
`resources_to_json` (per xDS type, resources by name, keys sorted). A diff shows exactly
which Envoy field a change moved. After an intended change, regenerate and review:

    MESHPILOT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/translate/test_golden.py
"""

from __future__ import annotations

import os

import pytest

from meshpilot.xds.translate import resources_to_json, translate

from .cases import CASES
from .helpers import CLIENT, GOLDEN, assert_consistent, snapshot

UPDATE = os.environ.get("MESHPILOT_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str) -> None:
    resources = translate(snapshot(*CASES[case]), CLIENT)
    assert_consistent(resources)
    text = resources_to_json(resources)
    path = GOLDEN / f"{case}.json"
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}; run with MESHPILOT_UPDATE_GOLDEN=1"
    assert text == path.read_text(), (
        f"translation of {case} changed; review and regenerate with MESHPILOT_UPDATE_GOLDEN=1"
    )
