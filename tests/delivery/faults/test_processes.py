"""Records tracked in multiprocessing workers are delivered when the
workers exit normally (fork and spawn; Process and Pool with close() + join()).

Each scenario runs in its own Python process (a file, so spawn can import the worker
function); that process bounds every child wait and is itself killed after a deadline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from faults.scripted import CONFIG_ID, SERVICE_ID, Collector, child_env, run_python, wait_for

WORKERS = 4
PER_WORKER = 200

SCRIPT = """
import json, multiprocessing as mp, os, sys, time
from aicm_manual import Tracker

P = json.loads(os.environ["FAULTS_PARAMS"])
TRACKER = None


def make():
    return Tracker(P["config_id"], P["service_id"], schemas_dir=P["schemas"],
                   aicm_api_base=P["url"], aicm_api_key="sk-workers",
                   environ={"AICM_INI_PATH": "/nonexistent/AICM.INI"},
                   delivery_type=P["mode"], db_path=P["db"],
                   delivery_options={"batch_interval": 0.05})


def work(worker):
    global TRACKER
    if TRACKER is None:  # spawn: the worker makes its own tracker
        TRACKER = make()
    for j in range(P["n"]):
        TRACKER.track({"units": 1}, response_id=f"w{worker}-{j}")
    return worker


if __name__ == "__main__":
    ctx = mp.get_context(P["method"])
    TRACKER = make()  # made in the parent (fork children inherit it)
    for j in range(10):
        TRACKER.track({"units": 1}, response_id=f"parent-{j}")
    deadline = time.monotonic() + 40
    codes = []
    if P["kind"] == "pool":
        pool = ctx.Pool(P["workers"])
        try:
            pool.map_async(work, range(P["workers"])).get(timeout=40)
        except Exception as exc:
            print("pool error:", type(exc).__name__, exc, file=sys.stderr, flush=True)
            pool.terminate()
            codes.append("error")
        pool.close()
        pool.join()
    else:
        procs = [ctx.Process(target=work, args=(i,)) for i in range(P["workers"])]
        for p in procs:
            p.start()
        for p in procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.exitcode is None:
                p.kill()
                p.join(5)
        codes = [p.exitcode for p in procs]
    print(json.dumps({"codes": codes}), flush=True)
    TRACKER.close(10)
"""


def run_scenario(
    tmp_path: Path, schemas_dir: Path, collector: Collector, method: str, kind: str, mode: str
) -> tuple[dict[str, Any], str]:
    script = tmp_path / "workers_main.py"
    script.write_text(SCRIPT)
    params = {
        "config_id": CONFIG_ID,
        "service_id": SERVICE_ID,
        "schemas": str(schemas_dir),
        "url": collector.url,
        "mode": mode,
        "db": str(tmp_path / "spool.db"),
        "method": method,
        "kind": kind,
        "n": PER_WORKER,
        "workers": WORKERS,
    }
    proc = run_python(script, timeout=90, env=child_env(FAULTS_PARAMS=json.dumps(params)))
    assert proc.stdout.strip(), f"the scenario printed nothing; stderr:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def check_delivered(collector: Collector, report: dict[str, Any], stderr: str) -> None:
    expected = {f"w{w}-{j}" for w in range(WORKERS) for j in range(PER_WORKER)}
    assert "database is locked" not in stderr, stderr[-4000:]
    assert all(code == 0 for code in report["codes"]), (report, stderr[-4000:])
    # Delivery happens before the workers exit; a short grace for the last answers.
    wait_for(lambda: expected <= collector.ids_for("sk-workers"), timeout=3)
    got = expected & collector.ids_for("sk-workers")
    assert len(got) == len(expected), f"{len(got)} of {len(expected)} worker records delivered"


@pytest.mark.parametrize(
    ("kind", "mode"),
    [
        ("pool", "mem_queue"),
        ("process", "mem_queue"),
        ("pool", "persistent_queue"),
        ("process", "persistent_queue"),
    ],
)
def test_fork_workers_deliver_everything_on_normal_exit(
    tmp_path: Path, schemas_dir: Path, collector: Collector, kind: str, mode: str
) -> None:
    """Fork-started workers using the parent's tracker deliver all their records by exit,
    and never wait on the parent's SQLite connection ("database is locked")."""
    report, stderr = run_scenario(tmp_path, schemas_dir, collector, "fork", kind, mode)
    check_delivered(collector, report, stderr)


@pytest.mark.parametrize("kind", ["pool", "process"])
def test_spawn_workers_deliver_everything_on_normal_exit_guard(
    tmp_path: Path, schemas_dir: Path, collector: Collector, kind: str
) -> None:
    """Spawn-started workers deliver all their records by exit (guard: passes today)."""
    report, stderr = run_scenario(tmp_path, schemas_dir, collector, "spawn", kind, "mem_queue")
    check_delivered(collector, report, stderr)
