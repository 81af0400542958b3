"""An acknowledged apply() survives SIGKILL, and a killed batch leaves no trace.

A child process applies batches (5 objects sharing a `batch` label plus an update of a
shared counter object) in a loop and prints each batch name only after apply()
returned. The parent kills it at a random moment, several rounds on the same file,
then checks: every acknowledged batch is complete, no batch is partial, the counter
names the newest complete batch, and the revision counter continues after recovery.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import meshpilot
from meshpilot.api.resource import Resource
from meshpilot.store import SqliteStore

BATCH_SIZE = 5
ROUNDS = 5

CHILD = """
import itertools
import sys

from meshpilot.api.resource import Resource
from meshpilot.store import SqliteStore

db, round_no = sys.argv[1], int(sys.argv[2])
store = SqliteStore(db)
print("READY", flush=True)
for i in itertools.count():
    batch = f"r{round_no}-b{i:05d}"
    resources = [
        Resource(
            "networking.istio.io/v1", "VirtualService", f"{batch}-{j}", "crash",
            {"hosts": [f"host-{j}"], "pad": "x" * 1500}, labels={"batch": batch},
        )
        for j in range(%(size)d)
    ]
    resources.append(Resource("v1", "Counter", "counter", "crash", {"last": batch}))
    store.apply(resources)
    print(batch, flush=True)
"""


def _batch_order(name: str) -> tuple[int, int]:
    round_part, index_part = name.split("-")
    return int(round_part[1:]), int(index_part[1:])


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_acknowledged_batches_survive_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "crash" / "store.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD % {"size": BATCH_SIZE})
    src = str(Path(meshpilot.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    rng = random.Random()
    acknowledged: list[str] = []

    for round_no in range(ROUNDS):
        out_path = tmp_path / f"round{round_no}.out"
        err_path = tmp_path / f"round{round_no}.err"
        with out_path.open("w") as out, err_path.open("w") as err:
            proc = subprocess.Popen(
                [sys.executable, str(script), str(db), str(round_no)],
                stdout=out,
                stderr=err,
                env=env,
            )
        try:
            deadline = time.monotonic() + 15
            while not out_path.read_text().startswith("READY"):
                assert proc.poll() is None, f"child failed: {err_path.read_text()}"
                assert time.monotonic() < deadline, "child did not start"
                time.sleep(0.01)
            time.sleep(rng.uniform(0.1, 0.6))
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == -signal.SIGKILL, f"child failed: {err_path.read_text()}"
        text = out_path.read_text()
        lines = text.splitlines()
        if not text.endswith("\n"):
            lines = lines[:-1]  # a line cut off by the kill is not an acknowledgement
        acknowledged.extend(line for line in lines[1:] if line)

    assert acknowledged, "the child never acknowledged a batch; the test proves nothing"

    with SqliteStore(db) as store:
        vss = store.list("VirtualService", "crash")
        per_batch = Counter(r.labels["batch"] for r in vss)
        partial = {b: n for b, n in per_batch.items() if n != BATCH_SIZE}
        assert partial == {}, f"partially stored batches: {partial}"
        missing = [b for b in acknowledged if b not in per_batch]
        assert missing == [], f"acknowledged batches lost: {missing}"
        # at most one unacknowledged batch per round can have been committed
        extra = set(per_batch) - set(acknowledged)
        assert len(extra) <= ROUNDS

        newest = max(per_batch, key=_batch_order)
        counter = store.get("Counter", "crash", "counter")
        assert counter is not None and counter.body == {"last": newest}

        # objects and events were committed together; the revision is consistent
        revision = store.revision
        events = store.events_since(0)
        assert [e.resource_version for e in events] == list(range(1, revision + 1))
        assert all(r.resource_version <= revision for r in vss)
        assert len({r.resource_version for r in vss}) == len(vss)
        added = {e.resource.name for e in events if e.type == "ADDED"}
        assert {r.name for r in vss} <= added

        after = store.create(Resource("v1", "Counter", "after", "crash", {}))
        assert after.resource_version == revision + 1
