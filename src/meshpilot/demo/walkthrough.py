"""`meshpilot demo` (`make demo`): the seed's whole tutorial on this machine, then a mesh
to explore.

It starts the control plane, `sample-app` v1 and v2 with `meshpilot run` (two replicas
each, each behind its sidecar) and a `curl-client` sidecar, walks every section of the
seed in its order (sections.py: one function per section, shared with the e2e test), and
leaves everything running until Ctrl-C. A failed step stops the demo with the step, the
reason and the log to read, instead of hanging.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

from . import sections
from .runtime import GW_NS, HOST, NS, URL, DemoError, DemoMesh, say


def walk(m: DemoMesh) -> None:
    """Every section, in the seed's order, on one mesh."""
    m.start()
    sections.basic_routing(m)
    sections.canary_90_10(m)
    sections.circuit_breaker(m)
    sections.fault_injection(m)
    sections.ingress_gateway(m)
    sections.egress_gateway(m)
    sections.progressive_delivery(m)
    sections.ab_test(m)
    sections.monitoring(m)
    sections.diagnostics(m)


def next_steps(m: DemoMesh) -> str:
    ca = m.state / "certs" / "ca.crt"
    return f"""
== The mesh keeps running. In another terminal (from this directory):
  export MESHPILOT_SERVER={m.server} MESHPILOT_STATE={m.cp_state}
  source .venv/bin/activate
  meshpilot curl -n {NS} -H 'user-group: beta' {URL}
  meshpilot curl -H 'Host: {HOST}' http://127.0.0.1/v2
  meshpilot curl https://{HOST}/ --resolve {HOST}:443:127.0.0.1 --cacert {ca}
  meshpilot curl -n {NS} http://httpbin.org/ip        # the local stand-in, via the egress gateway
  meshpilot load -c 4 -qps 50 -t 10s -x http://127.0.0.1:{m.client_port} {URL}
  meshpilot get vs,dr,gw,se,canary -n {NS}
  meshpilot canary get sample-app -n {NS}
  meshpilot apply -f examples/traffic-demo/sections/03-canary.yaml
  meshpilot proxy-status
  meshpilot proxy-config clusters curl-client -n {NS}
  meshpilot stats curl-client -n {NS} --filter circuit_breaker --nonzero
  meshpilot logs istio-ingressgateway -n {GW_NS} -f
  meshpilot query 'sum(rate(istio_requests_total[1m])) by (destination_version)'
  meshpilot describe service sample-app -n {NS}
Logs: {m.logs}. Stop: Ctrl-C here, or `meshpilot down --state {m.cp_state}`."""


def run(state: Path, api_port: int, xds_port: int, client_port: int) -> int:
    m = DemoMesh(state, api_port, xds_port, client_port)

    def _terminate(*_: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _terminate)
    started = time.monotonic()
    try:
        walk(m)
        say(f"\nAll sections done in {time.monotonic() - started:.0f}s.")
        say(next_steps(m))
        while any(p.poll() is None for name, p in m.procs.items() if name == "control-plane"):
            time.sleep(0.5)
        say("the control plane exited (meshpilot down?); stopping the rest")
        return 0
    except DemoError as e:
        say(f"\ndemo failed: {e}")
        return 1
    except (OSError, ValueError, KeyError) as e:  # an API answer or file not as expected
        say(f"\ndemo failed: {e!r}; logs in {m.logs}")
        return 1
    except KeyboardInterrupt:
        say("\nstopping the demo mesh")
        return 0
    finally:
        m.stop()
