"""Delivery across process boundaries: kill -9, shared spools, fork, exit, bursts.

Each child is a real Python process talking to the loopback collector; every wait is
bounded and every child is ended by its own pid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from aicm_manual import Tracker, get_global_delivery_health
from aicm_manual.testing import Scripted
from conftest import ConfigServer

CHAT = {"model": "gpt-4o-mini", "input_tokens": 812, "output_tokens": 97}
NO_INI = {"AICM_INI_PATH": "/nonexistent/AICM.INI"}

CHILD = """
import json, os, sys, time
from aicm_manual import Tracker, get_global_delivery_health
p = json.loads(sys.argv[1])
t = Tracker("openai-chat", "openai::gpt-4o-mini", schemas_dir=p["schemas"],
            aicm_api_base=p["url"], aicm_api_key=p["key"], environ={"AICM_INI_PATH": "/none"},
            delivery_type=p["mode"], db_path=p.get("db"), delivery_options=p.get("options"))
payload = {"model": "gpt-4o-mini", "input_tokens": 812, "output_tokens": 97}
ids = [t.track(payload) for _ in range(p["n"])]
if p.get("ids_file"):
    with open(p["ids_file"], "w") as fh:
        json.dump(ids, fh)
print("tracked", flush=True)
if p.get("flush") is not None:
    left = t.flush(p["flush"])
    print(json.dumps({"left": left, "health": get_global_delivery_health()}), flush=True)
if p.get("hang"):
    time.sleep(60)
"""


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def spawn(params: dict[str, Any]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(params)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_line(proc: subprocess.Popen[str], expected: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if line.startswith(expected):
            return line
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(
        f"child never printed {expected!r}; stderr: {proc.stderr and proc.stderr.read()}"
    )


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"child did not finish in {timeout} s: {err}") from None
    return out, err


def test_kill_9_mid_delivery_loses_nothing(
    schemas_dir: Path, config_server: ConfigServer, tmp_path: Path
) -> None:
    """A spooled process killed while sending; the next process delivers everything."""
    db, ids_file = tmp_path / "spool.db", tmp_path / "ids.json"
    config_server.collector.script.extend(Scripted(delay=0.3) for _ in range(3))
    params = {
        "schemas": str(schemas_dir),
        "url": config_server.url,
        "key": "sk-crash",
        "mode": "persistent_queue",
        "db": str(db),
        "n": 3000,
        "ids_file": str(ids_file),
        "hang": True,
    }
    child = spawn(params)
    wait_line(child, "tracked")
    deadline = time.monotonic() + 10  # kill while a (slow) request is in flight
    while not config_server.collector.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(child.pid, signal.SIGKILL)
    finish(child, timeout=10)
    ids = json.loads(ids_file.read_text())
    assert len(set(ids)) == 3000
    before = len(config_server.collector.records())
    assert before < 3000  # the kill really interrupted delivery

    recovery = Tracker(
        "openai-chat",
        "openai::gpt-4o-mini",
        schemas_dir=schemas_dir,
        aicm_api_base=config_server.url,
        aicm_api_key="sk-crash",
        environ=NO_INI,
        delivery_type="persistent_queue",
        db_path=db,
    )
    assert recovery.flush(30) == 0
    stored = {r["response_id"] for r in config_server.collector.records()}
    assert stored == set(ids)
    # At most the batches in flight at the kill come again, and the collector dedups them.
    assert config_server.collector.duplicates <= 2000


def test_two_processes_share_one_spool(
    schemas_dir: Path, config_server: ConfigServer, tmp_path: Path
) -> None:
    db = tmp_path / "shared.db"
    params = {
        "schemas": str(schemas_dir),
        "url": config_server.url,
        "key": "sk-shared",
        "mode": "persistent_queue",
        "db": str(db),
        "n": 3000,
        "flush": 30,
    }
    a, b = (
        spawn({**params, "ids_file": str(tmp_path / "a")}),
        spawn({**params, "ids_file": str(tmp_path / "b")}),
    )
    outs = [finish(a), finish(b)]
    for out, err in outs:
        assert out.strip(), err  # a child that died says why
        assert json.loads(out.splitlines()[-1])["left"] == 0, err
    ids = json.loads((tmp_path / "a").read_text()) + json.loads((tmp_path / "b").read_text())
    assert {r["response_id"] for r in config_server.collector.records()} == set(ids)
    assert len(ids) == 6000
    assert config_server.collector.duplicates == 0  # leases kept the processes apart


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_fresh_engine_and_delivers_its_own(
    schemas_dir: Path, config_server: ConfigServer
) -> None:
    tracker = Tracker(
        "openai-chat",
        "openai::gpt-4o-mini",
        schemas_dir=schemas_dir,
        aicm_api_base=config_server.url,
        aicm_api_key="sk-fork",
        environ=NO_INI,
        delivery_options={"batch_interval": 0.01},
    )
    parent_ids = [tracker.track(CHAT) for _ in range(50)]
    pid = os.fork()
    if pid == 0:  # the child: deliver its own records, then leave without pytest teardown
        code = 1
        try:
            child_ids = [tracker.track(CHAT, response_id=f"child-{i}") for i in range(50)]
            code = 0 if tracker.flush(20) == 0 and len(child_ids) == 50 else 1
        finally:
            os._exit(code)
    assert tracker.flush(20) == 0
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    stored = {r["response_id"] for r in config_server.collector.records()}
    assert set(parent_ids) <= stored
    assert {f"child-{i}" for i in range(50)} <= stored
    assert len(stored) == 100
    assert get_global_delivery_health()["total_delivered"] == 50  # the parent's own


def test_exit_with_collector_down_ends_within_the_budget(schemas_dir: Path) -> None:
    params = {
        "schemas": str(schemas_dir),
        "url": closed_port_url(),
        "key": "sk-exit",
        "mode": "mem_queue",
        "n": 5000,
        "options": {"exit_budget": 1.0},
    }
    child = spawn(params)
    wait_line(child, "tracked")
    started = time.monotonic()
    _, err = finish(child, timeout=30)
    elapsed = time.monotonic() - started
    assert child.returncode == 0
    assert elapsed < 4.0, elapsed
    assert "5000 record(s) undelivered at exit" in err


def test_atexit_drains_queued_records(schemas_dir: Path, config_server: ConfigServer) -> None:
    params = {
        "schemas": str(schemas_dir),
        "url": config_server.url,
        "key": "sk-atexit",
        "mode": "mem_queue",
        "n": 5000,
    }
    child = spawn(params)
    finish(child)
    assert child.returncode == 0
    assert len(config_server.collector.records()) == 5000


def test_burst_of_100000_with_defaults_loses_nothing(
    schemas_dir: Path, config_server: ConfigServer
) -> None:
    params = {
        "schemas": str(schemas_dir),
        "url": config_server.url,
        "key": "sk-burst",
        "mode": "mem_queue",
        "n": 100_000,
        "flush": 120,
    }
    child = spawn(params)
    out, err = finish(child, timeout=180)
    report = json.loads(out.splitlines()[-1])
    assert report["left"] == 0, err
    health = report["health"]
    assert health["total_discarded"] == 0
    assert health["total_delivered"] == 100_000
    assert len(config_server.collector.records()) == 100_000
    sizes = [n for _, n in config_server.collector.requests]
    assert sum(sizes) / len(sizes) >= 100  # batched, not one request per record


def test_spooled_rows_wait_for_their_key(
    schemas_dir: Path, config_server: ConfigServer, tmp_path: Path
) -> None:
    """Rows of a key this process does not know stay put and are reported."""
    db = tmp_path / "spool.db"
    params = {
        "schemas": str(schemas_dir),
        "url": closed_port_url(),
        "key": "sk-other-process",
        "mode": "persistent_queue",
        "db": str(db),
        "n": 7,
        "options": {"exit_budget": 0.2},
    }
    finish(spawn(params))
    mine = Tracker(
        "openai-chat",
        "openai::gpt-4o-mini",
        schemas_dir=schemas_dir,
        aicm_api_base=config_server.url,
        aicm_api_key="sk-mine",
        environ=NO_INI,
        delivery_type="persistent_queue",
        db_path=db,
    )
    mine.track(CHAT)
    assert mine.flush(10) == 0
    health = get_global_delivery_health()
    assert health["spool"]["waiting_for_unknown_key"] == 7
    assert "sk-other-process" not in json.dumps(health)
    assert len(config_server.collector.records()) == 1
