"""A spool with one damaged page can be salvaged: the readable rows are
copied to a new spool by `aicm-manual queue salvage SRC DST` (run as python -m aicm_manual).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from aicm_manual import reset_global_delivery
from aicm_manual._delivery.spool import Spool
from faults.scripted import child_env, closed_port_url, make_tracker

RECORDS = 2000


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "aicm_manual", "queue", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
        check=False,
    )


def damaged_spool(schemas_dir: Path, tmp_path: Path) -> tuple[Path, set[str]]:
    """A real spool of RECORDS rows with one leaf page of its records table overwritten."""
    db = tmp_path / "spool.db"
    tracker = make_tracker(
        schemas_dir,
        closed_port_url(),
        delivery_type="persistent_queue",
        db_path=db,
        delivery_options={"backoff_initial": 60, "backoff_max": 60},
    )
    ids = {
        r
        for r in tracker.track_batch([{"usage": {"units": 1, "note": "n" * 200}}] * RECORDS)[
            "response_ids"
        ]
    }
    reset_global_delivery(timeout=0)
    spool = Spool(db)  # rows the worker had not taken in yet go to records too
    while spool.take_in(10_000):
        pass
    spool.close()  # last connection closed: the WAL is checkpointed
    with sqlite3.connect(db) as check:
        page_size = check.execute("PRAGMA page_size").fetchone()[0]
        leaves = [
            row[0]
            for row in check.execute(
                "SELECT pageno FROM dbstat WHERE name = 'records' AND pagetype = 'leaf'"
                " ORDER BY pageno"
            )
        ]
    check.close()
    assert len(leaves) > 20, leaves
    victim = leaves[len(leaves) // 2]
    with db.open("r+b") as fh:
        fh.seek((victim - 1) * page_size)
        fh.write(b"\xde\xad\xbe\xef" * (page_size // 4))
    broken = sqlite3.connect(db)
    try:
        integrity = broken.execute("PRAGMA integrity_check").fetchall()
    except sqlite3.DatabaseError as exc:
        integrity = [(str(exc),)]
    finally:
        broken.close()
    assert integrity != [("ok",)], "the fixture failed to damage the spool"
    return db, ids


def test_salvage_copies_the_readable_rows_of_a_damaged_spool(
    schemas_dir: Path, tmp_path: Path
) -> None:
    """`queue salvage SRC DST` exits 0 and DST is a working spool with the readable rows."""
    src, ids = damaged_spool(schemas_dir, tmp_path)
    dst = tmp_path / "salvaged.db"
    proc = cli("salvage", str(src), str(dst))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    stats = cli("stats", "--json", "--db", str(dst))
    assert stats.returncode == 0, stats.stderr
    copied = json.loads(stats.stdout)["records"]
    assert RECORDS - 100 <= copied < RECORDS, f"{copied} of {RECORDS} rows salvaged"
    listing = cli("list", "--json", "--limit", str(RECORDS), "--db", str(dst))
    assert listing.returncode == 0, listing.stderr
    salvaged = {row["response_id"] for row in json.loads(listing.stdout)["rows"]}
    assert len(salvaged) == copied
    assert salvaged <= ids


def test_salvage_copies_records_still_in_the_inbox(tmp_path: Path) -> None:
    """Records written by callers but never taken in by a worker (the process died first)
    are salvaged as queued records."""
    src = tmp_path / "spool.db"
    spool = Spool(src)
    spool.put("k" * 64, "http://127.0.0.1:1", "in-inbox", b'{"response_id":"in-inbox"}')
    spool.close()
    dst = tmp_path / "salvaged.db"
    proc = cli("salvage", str(src), str(dst))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "copied 1 queued record(s)" in proc.stdout
    listing = cli("list", "--json", "--db", str(dst))
    assert [row["response_id"] for row in json.loads(listing.stdout)["rows"]] == ["in-inbox"]
