"""Load tool: `meshpilot load` against wrk, on the same targets, at max rate.

The data path benchmark measures Envoy with `meshpilot load`; that is only meaningful if
the load tool drives more than Envoy can take. This benchmark checks it against wrk (C,
epoll, the usual reference) on two targets:
  trivial   `python -m meshpilot.load.server`: the canned-response server, own process
  envoy     an Envoy (`--concurrency 1`, as a sidecar) whose only route is a
            `direct_response` 200: Envoy's HTTP path with no upstream at all
Each tool gets the same connections and duration, max rate, and the same number of
OS-level workers (`--procs N` load processes, `wrk -t N` threads). Runs alternate between
the tools and the best of `--repeat` is kept, because this machine is shared and noisy.
The key figure is meshpilot-load / wrk in req/s on the envoy target: near 1.0 means the
load tool is not what limits an Envoy measurement.

wrk is Debian's `wrk` package; when it is missing the benchmark installs it with apt-get
if it runs as root, otherwise it says how to install it and measures meshpilot load only.

    .venv/bin/python -m benchmarks.load_tool [--seconds 10] [--connections 16] [--procs 1,2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from meshpilot.load.runner import run_load
from meshpilot.load.spec import LoadSpec
from meshpilot.proxy.process import EnvoyProcess

from .common import free_port, static_envoy

# wrk calls `done` once at the end with its own histogram (microseconds). Defining only
# `done` (no request/response hooks) keeps wrk on its fast, script-free request path.
WRK_SCRIPT = """\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'MPJSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, '
    .. '"socket_errors": %d, "non_2xx": %d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def ensure_wrk() -> str | None:
    """wrk's path; installs Debian's package when running as root, else explains how."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        print("wrk not found: install it with `sudo apt-get install -y wrk` (Debian/Ubuntu) "
              "and run again; measuring meshpilot load alone", file=sys.stderr)
        return None
    print("wrk not found: apt-get install -y wrk", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    out = None
    for attempt in (1, 2):
        if attempt == 2:  # the package lists may be missing or stale
            subprocess.run(["apt-get", "update"], env=env, check=False, capture_output=True)
        out = subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, check=False,
                             capture_output=True, text=True)
        found = shutil.which("wrk")
        if found:
            return found
    tail = out.stderr[-1000:] if out is not None else ""
    print(f"could not install wrk; measuring meshpilot load alone\n{tail}", file=sys.stderr)
    return None


def direct_response_envoy(root: Path) -> tuple[EnvoyProcess, int]:
    """The smallest Envoy that answers every request itself: 200 `ok` from the route."""
    return static_envoy(root, "direct", {"direct_response": {
        "status": 200, "body": {"inline_string": "ok\n"}}}, ["*"])


def meshpilot_run(url: str, connections: int, procs: int, seconds: float) -> dict:
    result = run_load(LoadSpec(url=url, connections=connections, qps=0, duration=seconds,
                               procs=procs))
    return {"qps": result.qps, "p50": result.latency_ms.get("p50"),
            "p99": result.latency_ms.get("p99"),
            "errors": result.errors + sum(n for c, n in result.codes.items()
                                          if c != -1 and not 200 <= c < 300)}


def wrk_run(wrk: str, script: Path, url: str, connections: int, threads: int,
            seconds: float) -> dict:
    out = subprocess.run(
        [wrk, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, round(seconds))}s",
         "-s", str(script), url], capture_output=True, text=True, timeout=seconds + 60,
        check=False)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("MPJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout}{out.stderr}")
    r = json.loads(line.removeprefix("MPJSON "))
    return {"qps": r["requests"] / (r["duration_us"] / 1e6), "p50": r["p50_us"] / 1e3,
            "p99": r["p99_us"] / 1e3, "errors": r["socket_errors"] + r["non_2xx"]}


def best(runs: list[dict]) -> dict:
    """The run with the highest req/s (its own p50/p99 with it)."""
    return max(runs, key=lambda r: r["qps"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--procs", default="1",
                        help="comma list: load processes = wrk threads (default 1)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per tool, best kept")
    args = parser.parse_args()
    procs_list = [int(p) for p in args.procs.split(",") if p.strip()]
    wrk = ensure_wrk()
    results: dict[tuple[str, int, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="mp-loadtool-") as tmp:
        root = Path(tmp)
        script = root / "report.lua"
        script.write_text(WRK_SCRIPT)
        upstream = free_port()
        server = subprocess.Popen([sys.executable, "-m", "meshpilot.load.server",
                                   "--port", str(upstream)])
        envoy = None
        try:
            time.sleep(1)
            envoy, envoy_port = direct_response_envoy(root)
            targets = {"trivial": f"http://127.0.0.1:{upstream}/",
                       "envoy": f"http://127.0.0.1:{envoy_port}/"}
            for target, url in targets.items():
                run_load(LoadSpec(url=url, connections=args.connections, qps=0, duration=1))
                for procs in procs_list:
                    runs: dict[str, list[dict]] = {"meshpilot": [], "wrk": []}
                    for _ in range(args.repeat):
                        runs["meshpilot"].append(meshpilot_run(
                            url, args.connections, procs, args.seconds))
                        if wrk is not None:
                            runs["wrk"].append(wrk_run(wrk, script, url, args.connections,
                                                       procs, args.seconds))
                    for tool, tool_runs in runs.items():
                        if tool_runs:
                            results[(target, procs, tool)] = best(tool_runs)
        finally:
            if envoy is not None:
                envoy.stop(2)
            server.terminate()
            server.wait(5)
    print(f"load tool vs wrk: {args.connections} connections, {args.seconds:.0f} s per run, "
          f"max rate, best of {args.repeat}; Envoy --concurrency 1 direct_response; "
          f"{os.cpu_count()} CPUs")
    print(f"{'target':>8} {'workers':>7} {'tool':>10} {'req/s':>9} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'errors':>6} | {'req/s ratio':>11} {'p50 ratio':>9} "
          f"{'p99 ratio':>9}")
    for (target, procs, tool), r in results.items():
        ratio = ""
        ref = results.get((target, procs, "wrk"))
        if tool == "meshpilot" and ref is not None:
            ratio = (f"{r['qps'] / ref['qps']:11.2f} {r['p50'] / ref['p50']:9.2f} "
                     f"{r['p99'] / ref['p99']:9.2f}")
        print(f"{target:>8} {procs:>7} {tool:>10} {r['qps']:9.0f} {r['p50']:7.3f} "
              f"{r['p99']:7.3f} {r['errors']:6d} | {ratio}".rstrip(" |"))
    if wrk is not None:
        print("ratio = meshpilot-load / wrk (req/s: 1.0 = as fast as wrk; latency: lower "
              "is better for the tool that adds less)")


if __name__ == "__main__":
    main()
