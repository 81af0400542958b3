"""Golden tests: the full translation of each scenario, compared with checked-in JSON.

Each file under tests/data/golden/ is `translate(snapshot, CLIENT)` rendered by
`resources_to_json` (per xDS type, resources by name, keys sorted). A diff shows exactly
which Envoy field a change moved. After an intended change, regenerate and review:

    MESHPILOT_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/translate/test_golden.py
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest

from meshpilot.xds.translate import resources_to_json, translate
from meshpilot.xds.types import ProxyInfo

from .cases import CASES
from .helpers import CLIENT, GATEWAY, GOLDEN, assert_consistent, snapshot

UPDATE = os.environ.get("MESHPILOT_UPDATE_GOLDEN") == "1"

# Istio's usual `accessLogFile`; also a file `envoy --mode validate` can open anywhere.
ACCESS_LOG = "/dev/stdout"
# Proxy variants whose differences live in the proxy, not the mesh: golden name ->
# (scenario, proxy). The access log cases show exactly where the log lands (both HCMs;
# tcp_proxy for a TCP app) and that its format is Istio's, byte for byte.
PROXY_CASES: dict[str, tuple[str, ProxyInfo]] = {
    "access-log": ("no-virtualservice", replace(CLIENT, access_log_path=ACCESS_LOG)),
    "access-log-tcp-app": ("no-virtualservice", replace(CLIENT, access_log_path=ACCESS_LOG,
                                                        app_protocol="tcp")),
    # The ingress gateway proxy: listeners per server port, RDS per route name, SDS.
    "ingress-gateway": ("gateways", GATEWAY),
}


@pytest.mark.parametrize("case", sorted(CASES) + sorted(PROXY_CASES))
def test_golden(case: str) -> None:
    scenario, proxy = PROXY_CASES.get(case, (case, CLIENT))
    resources = translate(snapshot(*CASES[scenario]), proxy)
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
