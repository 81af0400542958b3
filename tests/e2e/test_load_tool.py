"""`meshpilot load` against real sockets on 127.0.0.1: exact counts, pacing accuracy,
status mixes, explicit-proxy framing, multi-process merging, failure handling.

The server is meshpilot.load.server.TrivialServer in a thread of the test process; the
CLI runs as a real subprocess so flags, output and exit codes are tested as users see
them.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshpilot.load import LoadSpec, TargetUnreachable, run_load
from meshpilot.load.progress import Progress
from meshpilot.load.server import TrivialServer

pytestmark = pytest.mark.e2e

MESHPILOT = [sys.executable, "-m", "meshpilot"]


@pytest.fixture
def server() -> Iterator[TrivialServer]:
    with TrivialServer() as srv:
        yield srv


def load(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*MESHPILOT, "load", *args], capture_output=True, text=True,
                          timeout=timeout, check=False)


def load_json(*args: str) -> dict:
    proc = load("--json", "-", *args)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_n_sends_exactly_n_requests(server: TrivialServer) -> None:
    proc = load("-n", "200", "-c", "8", "-qps", "0", server.url + "/")
    assert proc.returncode == 0, proc.stderr
    assert server.requests == 200
    assert "Code 200 : 200 (100.0 %)" in proc.stdout
    assert "All done 200 calls" in proc.stdout
    assert "Sockets used: 8" in proc.stdout
    assert "# target 99.9% " in proc.stdout


def test_paced_qps_is_accurate(server: TrivialServer) -> None:
    result = load_json("-qps", "100", "-t", "2s", "-c", "4", server.url + "/")
    assert 90 <= result["qps"] <= 110, result["qps"]
    assert 1.9 <= result["duration_s"] <= 2.2
    assert result["requests"] == server.requests
    assert 180 <= server.requests <= 220


def test_status_mix_is_reported_exactly(server: TrivialServer) -> None:
    result = load_json("-n", "200", "-c", "4", "-qps", "0", server.url + "/mix")
    assert result["codes"] == {"200": 150, "503": 50}
    assert result["requests"] == 200 and result["errors"] == 0
    fail = load("-n", "10", "-c", "2", "-qps", "0", server.url + "/fail")
    assert fail.returncode == 0, fail.stderr      # failed calls are results, not failures
    assert "Code 503 : 10 (100.0 %)" in fail.stdout


def test_explicit_proxy_sends_absolute_form(server: TrivialServer) -> None:
    result = load_json("-n", "20", "-c", "2", "-qps", "0", "-x", server.url,
                       "-H", "X-Test: 1", "http://sample-app:9080/path?q=1")
    assert result["codes"] == {"200": 20}
    assert set(server.request_lines) == {"GET http://sample-app:9080/path?q=1 HTTP/1.1"}
    assert server.hosts == {"sample-app:9080": 20}


def test_procs_2_totals_and_json_shape(server: TrivialServer) -> None:
    result = load_json("-n", "1000", "-c", "4", "--procs", "2", "-qps", "0",
                       "-p", "50,99,99.99", server.url + "/")
    assert server.requests == 1000
    assert result["requests"] == 1000 and result["codes"] == {"200": 1000}
    assert result["sockets"] == 4 and result["procs"] == 2
    lat = result["latency_ms"]
    assert lat["min"] <= lat["p50"] <= lat["p75"] <= lat["p90"] <= lat["p99"] <= \
        lat["p99.9"] <= lat["p99.99"] <= lat["max"]
    assert sum(b["count"] for b in result["histogram"]["buckets"]) == 1000
    assert result["histogram"]["buckets"][-1]["percent"] == 100.0


def test_procs_2_paced(server: TrivialServer) -> None:
    result = load_json("-qps", "200", "-t", "1s", "-c", "4", "--procs", "2",
                       server.url + "/")
    assert 180 <= result["qps"] <= 220, result["qps"]
    assert result["requests"] == server.requests


def test_connection_close_and_chunked(server: TrivialServer) -> None:
    spec = LoadSpec(server.url + "/close", connections=2, qps=0, calls=30, duration=None)
    result = run_load(spec)
    assert result.codes == {200: 30} and result.sockets == 30
    result = run_load(LoadSpec(server.url + "/chunked", connections=2, qps=0, calls=30))
    assert result.codes == {200: 30} and result.sockets == 2
    # HEAD: Content-Length but no body; the connection stays in sync
    result = run_load(LoadSpec(server.url + "/", connections=2, qps=0, calls=30,
                               method="HEAD"))
    assert result.codes == {200: 30} and result.sockets == 2


def test_unreachable_target_exits_1() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]        # bound but not listening: connection refused
        proc = load("-n", "5", f"http://127.0.0.1:{port}/")
        assert proc.returncode == 1
        assert "cannot connect" in proc.stderr
        with pytest.raises(TargetUnreachable):
            run_load(LoadSpec(f"http://127.0.0.1:{port}/", calls=1))


def test_usage_error_exits_1() -> None:
    proc = load("-c", "1", "--procs", "2", "http://127.0.0.1:1/")
    assert proc.returncode == 1 and "--procs" in proc.stderr
    bad = load("-t", "five", "http://x/")
    assert bad.returncode == 1 and "invalid duration" in bad.stderr
    assert load("--bogus", "http://x/").returncode == 1


def test_json_file_and_no_response_at_all(server: TrivialServer, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    proc = load("-n", "7", "-c", "1", "-qps", "0", "-json", str(out), server.url + "/")
    assert proc.returncode == 0 and "Code 200 : 7" in proc.stdout
    assert json.loads(out.read_text())["codes"] == {"200": 7}

    # accepts, then closes without answering: reachable, but no call gets a response
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def slam() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=slam, daemon=True).start()
    try:
        proc = load("-n", "6", "-c", "2", "-qps", "0", f"http://127.0.0.1:{port}/")
    finally:
        listener.close()
    assert proc.returncode == 1, proc.stdout
    assert "Code  -1 : 6 (100.0 %)" in proc.stdout


def test_timeouts_and_resets_count_as_minus_one() -> None:
    # listening but never accepting/answering: every call times out
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        url = f"http://127.0.0.1:{s.getsockname()[1]}/"
        result = run_load(LoadSpec(url, connections=2, qps=0, calls=4, timeout=0.2))
    assert result.codes == {-1: 4}
    assert result.error_kinds == {"Timeout": 4}
    assert result.latency_ms["min"] >= 200


@pytest.mark.parametrize("procs", [1, 2])
def test_run_load_reports_while_running_and_not_after(procs: int) -> None:
    seen: list[Progress] = []
    with TrivialServer() as srv:
        result = run_load(LoadSpec(srv.url + "/", connections=2, qps=400, duration=1.2,
                                   procs=procs), progress=seen.append, progress_every=0.5)
        time.sleep(0.6)
    assert len(seen) == 2
    assert all(p.errors == 0 and p.non_2xx == 0 for p in seen)
    assert 0 < seen[0].calls < seen[1].calls <= result.requests
    assert 300 <= seen[1].qps_now <= 500, seen[1]


def test_cli_progress_goes_to_stderr_and_quiet_turns_it_off(server: TrivialServer) -> None:
    proc = load("--json", "-", "-qps", "500", "-c", "2", "--procs", "2", "-t", "4.5s",
                server.url + "/")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["requests"] > 0      # stdout is the JSON and only it
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("[")]
    assert len(lines) == 2, proc.stderr                 # at 2 s and 4 s of 4.5 s
    assert "/4.5s] " in lines[0] and " qps now " in lines[0] and " 0 errors" in lines[0]
    quiet = load("--quiet", "-qps", "500", "-c", "2", "-t", "3.5s", server.url + "/")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "" and "[" not in quiet.stdout.split("Target:")[0]
    short = load("-qps", "100", "-c", "1", "-t", "1s", server.url + "/")
    assert not any(ln.startswith("[") for ln in short.stderr.splitlines())
