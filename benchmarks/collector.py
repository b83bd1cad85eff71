"""Collector benchmark: the served collector against the raw database in one run.

1. SQLite: ``aicm-manual serve`` as its own process on a free 127.0.0.1 port with a fresh
   SQLite file; a load-generator process (``--threads`` requests.Session keep-alive
   clients) posts priced ``--batch``-record batches (80% gpt-4o-mini priced through
   genai-prices, 20% heygen unit-priced) until ``--records`` or ``--max-s``. Stored rows
   are counted in the database and through ``/api/v1/costs/summary``; the CPU that other
   processes used meanwhile is printed (the machine may be shared). Beside it, in the
   same run: raw ``executemany`` into the same ``events`` table, one transaction per batch,
   with the storage writer's own pragmas, no checkpoint at all and no rollups (the rollup
   trigger dropped): the physical limit,
   and the layers in between (``SqliteStorage.ingest``, ``Ingestor.handle`` without HTTP).
   After the load, one client alone sends 40 batches: a batch's latency without queueing
   behind the others.
2. PostgreSQL: two ``aicm-manual serve`` processes sharing one scratch schema (given in the
   URL as ``?options=-csearch_path%3D<schema>``), the load split across both; then the
   same batches posted to both at once, checking that every record is stored once. Beside
   it: raw ``INSERT ... SELECT FROM unnest(...) ON CONFLICT DO NOTHING`` and
   ``PostgresStorage.ingest`` in-process. Scratch schemas are dropped at the end.
3. Pricing per record: unit, genai-prices fast path, genai-prices ``calc_price`` path.
4. ``GET /api/v1/costs/summary?group_by=client_customer_key`` over ``--summary-events``
   events in SQLite, timed ``--summary-requests`` times per window over HTTP. The events
   are bulk-loaded with ``executemany`` into the collector's tables, the rollups upserted
   from the storage's own ``rollup_deltas``, then checked row by row against the events
   (``--bulk-ingest`` loads through ``SqliteStorage.ingest`` instead, about 2.5x slower).

5. Scale (``--sections scale``, not in the default run): the same served load
   (``--scale-records``) and ``/costs/summary`` p95 for a whole day and an open window,
   with 0 and ``--scale-events`` events already stored (``--scale-10m`` adds 10,000,000),
   on SQLite and PostgreSQL (``--scale-backends``), so the cost of a growing database shows.

Run: ``.venv/bin/python benchmarks/collector.py`` (about 2.7 minutes) or ``--quick``;
``--what-if`` adds raw SQLite rows with one setting changed each (SQLite's default cache
and checkpoints, a checkpoint on the writer, 4 batches per transaction).
Network goes only to 127.0.0.1; every process started here is stopped by pid. Nothing is
asserted: targets are printed next to the measured figures with PASS/MISS.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import os
import platform
import random
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path
from typing import Any

import msgspec

from aicm_manual.server._storage.ledger import TOTALS_FROM_DAILY
from delivery import clean_env, stop_process  # benchmarks/ is this script's path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCHEMAS = ROOT / "schemas"
TENANT = "bench"
API_KEY = "aicm_bench_key_0123456789"
DAY_US = 86_400_000_000
BENCH_DAY_US = 1_795_478_400_000_000  # 2026-11-24T00:00:00Z
MONTH_START_US = BENCH_DAY_US - 23 * DAY_US  # 2026-11-01T00:00:00Z
perf_ns = time.perf_counter_ns
PCT_HEADERS = ["p50 ms", "p95 ms", "p99 ms", "max ms"]
encoder = msgspec.json.Encoder()


# ============================================================================================
# The workload: the same records for the served collector and the raw inserts
# ============================================================================================


def make_records(seed: int, start: int, count: int, customers: int) -> list[dict[str, Any]]:
    """Records ``start .. start + count`` of stream ``seed``: 4 in 5 gpt-4o-mini, 1 heygen."""
    rng = random.Random(seed * 1_000_003 + start)
    out = []
    for n in range(start, start + count):
        rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        seconds = rng.randrange(86_400)
        stamp = f"2026-11-24T{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}Z"
        record: dict[str, Any] = {
            "response_id": rid,
            "timestamp": stamp,
            "client_customer_key": f"customer-{rng.randrange(customers):04d}",
        }
        if n % 5 == 4:
            record["config_id"] = "heygen"
            record["service_id"] = "heygen::streaming-avatar"
            record["usage"] = {"duration": rng.randrange(50, 6000) / 10, "avatar_id": "anna"}
        else:
            record["config_id"] = "openai-chat"
            record["service_id"] = "openai::gpt-4o-mini"
            record["usage"] = {
                "model": "gpt-4o-mini",
                "input_tokens": rng.randrange(50, 8000),
                "output_tokens": rng.randrange(10, 2000),
            }
        out.append(record)
    return out


def make_bodies(seed: int, records: int, batch: int, customers: int) -> list[bytes]:
    return [
        encoder.encode({"tracked": make_records(seed, s, min(batch, records - s), customers)})
        for s in range(0, records, batch)
    ]


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of ``values`` (``q`` in 0..100); NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


# ============================================================================================
# Load generator: its own process, so it never competes with the collector for a GIL
# ============================================================================================


def load_child(spec_file: str) -> None:
    import requests

    spec = json.loads(Path(spec_file).read_text())
    urls: list[str] = spec["urls"]
    bodies = make_bodies(spec["seed"], spec["records"], spec["batch"], spec["customers"])
    mirror = spec["mode"] == "mirror"
    threads = len(urls) if mirror else spec["threads"]
    deadline_ns = 0
    gate = threading.Barrier(threads + 1, timeout=spec["max_s"] + 60)
    lock = threading.Lock()
    next_batch = iter(range(len(bodies)))
    latencies_ms: list[float] = []
    statuses: dict[str, int] = {}
    http_codes: dict[str, int] = {}
    errors: list[str] = []
    accepted_by: list[set[str]] = [set() for _ in urls]
    last_ns = [0]
    sent_records = [0]

    def post(session: Any, url: str, body: bytes) -> dict[str, Any] | None:
        t0 = perf_ns()
        try:
            resp = session.post(url, data=body, timeout=60)
        except requests.RequestException as exc:
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return None
        t1 = perf_ns()
        answer = msgspec.json.decode(resp.content) if resp.content else {}
        with lock:
            latencies_ms.append((t1 - t0) / 1e6)
            http_codes[str(resp.status_code)] = http_codes.get(str(resp.status_code), 0) + 1
            last_ns[0] = max(last_ns[0], t1)
            for status, n in answer.get("summary", {}).items():
                statuses[status] = statuses.get(status, 0) + n
        return answer if isinstance(answer, dict) else None

    def worker(slot: int) -> None:
        session = requests.Session()
        session.headers.update(
            {"Authorization": f"Bearer {spec['key']}", "Content-Type": "application/json"}
        )
        url = urls[slot % len(urls)] + "/api/v1/track"
        gate.wait()
        if mirror:  # every thread posts every batch, all threads at once
            for body in bodies:
                gate.wait()
                answer = post(session, url, body)
                for r in (answer or {}).get("results", []):
                    if r["status"] == "accepted":
                        accepted_by[slot].add(r["response_id"])
                with lock:
                    sent_records[0] += body.count(b'"response_id"')
            return
        while perf_ns() < deadline_ns:
            with lock:
                index = next(next_batch, None)
            if index is None:
                return
            if post(session, url, bodies[index]) is not None:
                with lock:
                    sent_records[0] += bodies[index].count(b'"response_id"')

    pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
    for t in pool:
        t.start()
    start_ns = perf_ns()
    deadline_ns = start_ns + int(spec["max_s"] * 1e9)
    gate.wait()
    if mirror:
        for _ in bodies:
            gate.wait()
    for t in pool:
        t.join(spec["max_s"] + 60)
    result = {
        "threads": threads,
        "requests": len(latencies_ms),
        "records_sent": sent_records[0],
        "elapsed_s": (max(last_ns[0], start_ns + 1) - start_ns) / 1e9,
        "latencies_ms": latencies_ms,
        "statuses": statuses,
        "http_codes": http_codes,
        "errors": errors[:5],
        "error_count": len(errors),
        "hit_time_cap": sent_records[0] < spec["records"] and not mirror,
    }
    if mirror:
        all_ids = {r["response_id"] for b in bodies for r in msgspec.json.decode(b)["tracked"]}
        overlap = set.intersection(*accepted_by) if len(accepted_by) > 1 else set()
        result["mirror"] = {
            "unique_records": len(all_ids),
            "accepted_per_server": [len(s) for s in accepted_by],
            "accepted_by_both": len(overlap),
            "accepted_by_none": len(all_ids - set().union(*accepted_by)),
        }
    Path(spec["result"]).write_text(json.dumps(result))


# ============================================================================================
# Processes: collectors and load generators, stopped by pid
# ============================================================================================


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


SERVED_PIDS: dict[str, int] = {}  # base URL -> pid of the collector serving it


@contextlib.contextmanager
def collectors(databases: Sequence[str], tmp: Path) -> Iterator[list[str]]:
    """``aicm-manual serve`` once per database URL; yields their base URLs once ready."""
    procs: list[subprocess.Popen[bytes]] = []
    urls: list[str] = []
    try:
        for n, database in enumerate(databases):
            port = free_port()
            cmd = [sys.executable, "-m", "aicm_manual", "serve", "--host", "127.0.0.1"]
            cmd += ["--port", str(port), "--database", database, "--schemas", str(SCHEMAS)]
            cmd += ["--api-key", f"{TENANT}:{API_KEY}"]
            with (tmp / f"collector-{len(list(tmp.iterdir()))}-{n}.log").open("wb") as log:
                procs.append(subprocess.Popen(cmd, stdout=log, stderr=log, env=clean_env()))
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url in zip(procs, urls, strict=True):
            wait_ready(proc, url)
            SERVED_PIDS[url] = proc.pid
        yield urls
    finally:
        for proc in procs:
            stop_process(proc, wait=10.0)  # a collector closes its database first


def wait_ready(proc: subprocess.Popen[bytes], url: str, timeout: float = 60.0) -> None:
    import requests

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"collector at {url} exited with {proc.returncode}")
        with contextlib.suppress(requests.RequestException):
            if requests.get(url + "/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.05)
    raise SystemExit(f"collector at {url} not ready after {timeout} s")


def run_load(
    urls: list[str],
    seed: int,
    records: int,
    args: argparse.Namespace,
    tmp: Path,
    mode: str,
    threads: int | None = None,
) -> dict[str, Any]:
    spec_file = tmp / f"load-{seed}-{mode}.json"
    result_file = tmp / f"load-{seed}-{mode}.result.json"
    spec = {
        "urls": urls,
        "key": API_KEY,
        "seed": seed,
        "records": records,
        "batch": args.batch,
        "threads": threads or args.threads,
        "customers": args.customers,
        "max_s": args.max_s,
        "mode": mode,
        "result": str(result_file),
    }
    spec_file.write_text(json.dumps(spec))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--load-child", str(spec_file)]
    proc = subprocess.Popen(cmd, env=clean_env())
    try:
        proc.wait(args.max_s + 120)
    except subprocess.TimeoutExpired:
        stop_process(proc)
    if not result_file.exists():
        return {"fatal": f"load generator exited with {proc.returncode} and no result"}
    result: dict[str, Any] = json.loads(result_file.read_text())
    return result


def cpu_use(pids: Sequence[int]) -> tuple[float, int, int]:
    """(monotonic seconds, CPU ticks of the whole machine, CPU ticks of this process, its
    waited-for children and ``pids``): other users of a shared machine show as the rest."""
    first = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, first[1:9])
    ours = 0
    for pid in ("self", *pids):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ours += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
    return time.monotonic(), user + nice + system + irq + softirq + steal, ours


def others_cores(before: tuple[float, int, int], after: tuple[float, int, int]) -> float:
    """Cores other processes kept busy between two ``cpu_use`` readings."""
    seconds = after[0] - before[0]
    ticks = (after[1] - before[1]) - (after[2] - before[2])
    return max(0.0, ticks / os.sysconf("SC_CLK_TCK") / seconds) if seconds > 0 else 0.0


def summary_events(url: str) -> int:
    import requests

    resp = requests.get(
        url + "/api/v1/costs/summary",
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=60,
    )
    return sum(row["events"] for row in resp.json()["rows"])


# ============================================================================================
# In-process layers: the same rows without HTTP
# ============================================================================================


def server_parts() -> tuple[Any, Any, Any]:
    from aicm_manual._configs.sources import DirectoryConfigSource
    from aicm_manual.server._pricing import Pricer

    configs = DirectoryConfigSource(SCHEMAS).all()
    return configs, {c.config_id: c for c in configs}, Pricer(configs)


def prepared_events(seed: int, records: int, args: argparse.Namespace) -> list[Any]:
    """The NewEvents the collector would store for stream ``seed`` (checked and priced)."""
    from aicm_manual.server._ingest import Ingestor

    _, by_id, pricer = server_parts()
    ingestor = Ingestor(by_id, pricer, storage=None)  # type: ignore[arg-type]
    events = []
    for start in range(0, records, args.batch):
        for raw in make_records(seed, start, min(args.batch, records - start), args.customers):
            event, problems = ingestor._prepare(TENANT, raw)
            assert event is not None, problems
            events.append(event)
    return events


def event_rows(events: Sequence[Any], received_us: int) -> list[tuple[Any, ...]]:
    """The events as the collector's SQLite storage writes them (its own row builder)."""
    from aicm_manual.server._storage import sqlite as _sqlite

    return _sqlite._rows(events, [received_us] * len(events))


def insert_sqlite() -> str:
    """The bare insert of those rows, one row a statement (what executemany runs)."""
    from aicm_manual.server._storage import sqlite as _sqlite

    return f"INSERT INTO events ({_sqlite._INSERT_COLUMNS}) VALUES ({', '.join('?' * 13)})"


def timed_batches(
    batches: Sequence[Any], fn: Callable[[Any], Any], max_s: float, threads: int = 1
) -> tuple[int, float]:
    """Run ``fn`` on every batch (``threads`` callers) until done or ``max_s``; return
    (batches done, seconds)."""
    lock = threading.Lock()
    todo = iter(batches)
    done = [0]
    deadline = perf_ns() + int(max_s * 1e9)

    def caller() -> None:
        while perf_ns() < deadline:
            with lock:
                batch = next(todo, None)
            if batch is None:
                return
            fn(batch)
            with lock:
                done[0] += 1

    t0 = perf_ns()
    with ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(caller) for _ in range(threads)]:
            f.result()
    return done[0], (perf_ns() - t0) / 1e9


def sqlite_layers(events: list[Any], args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    from aicm_manual.server._ingest import Ingestor
    from aicm_manual.server._storage.sqlite import WRITER_PRAGMAS, SqliteStorage

    out = []
    batches = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
    received = time.time_ns() // 1000
    row_batches = [event_rows(b, received) for b in batches]

    def fresh(name: str, *setup: str) -> sqlite3.Connection:
        path = tmp / f"{name}.db"
        SqliteStorage(path).close()  # the collector's own schema, WAL
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        for statement in (*WRITER_PRAGMAS, *setup):  # as SqliteStorage's writer, then changes
            db.execute(statement)
        # The bare insert: without the trigger that keeps the collector's rollups.
        db.execute("DROP TRIGGER events_rollup")
        return db

    def raw(label: str, *setup: str, per_transaction: int = 1) -> None:
        db = fresh(f"raw-{len(out)}", *setup)
        insert = insert_sqlite()

        def write(rows: list[tuple[Any, ...]]) -> None:
            db.execute("BEGIN IMMEDIATE")
            db.executemany(insert, rows)
            db.execute("COMMIT")

        grouped = [
            [row for batch in row_batches[i : i + per_transaction] for row in batch]
            for i in range(0, len(row_batches), per_transaction)
        ]
        n, s = timed_batches(grouped, write, args.raw_max_s)
        db.close()
        out.append(layer(label, n, s, grouped))

    # The limit: the writer's settings and no checkpoint at all, where the collector pays
    # for its checkpoints.
    raw("raw executemany, 1 transaction per batch", "PRAGMA wal_autocheckpoint=0")

    storage = SqliteStorage(tmp / "storage-ingest.db")
    n, s = timed_batches(batches, storage.ingest, args.raw_max_s)
    out.append(layer("SqliteStorage.ingest, 1 caller", n, s, batches))
    storage.close()

    storage = SqliteStorage(tmp / "ingestor.db")
    _, by_id, pricer = server_parts()
    ingestor = Ingestor(by_id, pricer, storage)
    bodies = make_bodies(1, len(events), args.batch, args.customers)
    n, s = timed_batches(bodies, lambda b: ingestor.handle(TENANT, b), args.raw_max_s)
    out.append(layer("Ingestor.handle (no HTTP), 1 caller", n, s, batches))
    storage.close()
    if args.what_if:  # the raw row again, each with one change to the writer's setup
        raw(
            "what if: SQLite's defaults (2 MiB cache, checkpoint per 1000 pages)",
            "PRAGMA cache_size=-2000",
            "PRAGMA wal_autocheckpoint=1000",
        )
        raw("what if: checkpoint on the writer per 10000 pages", "PRAGMA wal_autocheckpoint=10000")
        raw("what if: 4 batches per transaction", "PRAGMA wal_autocheckpoint=0", per_transaction=4)
    return out


def layer(
    label: str, done: int, seconds: float, batches: Sequence[Sequence[Any]]
) -> dict[str, Any]:
    records = sum(len(b) for b in batches[:done])
    capped = done < len(batches)
    return {"label": label, "records": records, "seconds": seconds, "capped": capped}


# ============================================================================================
# Phases
# ============================================================================================


def phase_sqlite(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    path = tmp / "collector.db"
    with collectors([f"sqlite:///{path}"], tmp) as urls:
        before = cpu_use([SERVED_PIDS[urls[0]]])
        load = run_load(urls, 1, args.records, args, tmp, "split")
        load["others_cores"] = others_cores(before, cpu_use([SERVED_PIDS[urls[0]]]))
        via_api = summary_events(urls[0])
        with contextlib.closing(sqlite3.connect(path)) as db:  # WAL: read beside the writer
            (stored,) = db.execute("SELECT count(*) FROM events").fetchone()
        # one client after the load: a batch's own time, without waiting behind others
        single = run_load(urls, 5, args.batch * 40, args, tmp, "split", threads=1)
    events = prepared_events(1, args.records, args)
    layers = sqlite_layers(events, args, tmp)
    return {
        "load": load,
        "stored": stored,
        "via_api": via_api,
        "layers": layers,
        "single": single,
    }


def pg_url(base: str, schema: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


def phase_postgres(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import psycopg
    from psycopg import sql

    tag = f"aicm_bench_{os.getpid()}"
    schemas = {"served": tag, "raw": f"{tag}_raw", "direct": f"{tag}_direct"}
    try:
        admin = psycopg.connect(args.pg_url, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        return {"skipped": f"PostgreSQL not reachable at {args.pg_url}: {exc}".strip()}
    out: dict[str, Any] = {"schemas": list(schemas.values())}
    try:
        out["server_version"] = admin.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schemas["served"])))
        url = pg_url(args.pg_url, schemas["served"])
        events_table = sql.Identifier(schemas["served"], "events")
        with collectors([url, url], tmp) as urls:
            out["load"] = run_load(urls, 2, args.records, args, tmp, "split")
            count = sql.SQL("SELECT count(*), count(DISTINCT (tenant, service_id, response_id))")
            query = count + sql.SQL(" FROM {}").format(events_table)
            out["stored"], out["distinct"] = admin.execute(query).fetchone()  # type: ignore[misc]
            out["mirror"] = run_load(urls, 3, args.mirror_records, args, tmp, "mirror")
            after, distinct = admin.execute(query).fetchone()  # type: ignore[misc]
            out["mirror_stored"] = after - out["stored"]
            out["mirror_distinct_after"] = distinct
            out["mirror_rows_after"] = after
        events = prepared_events(2, args.records, args)
        out["layers"] = postgres_layers(events, args, schemas)
    finally:
        for schema in schemas.values():
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )
        left = admin.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE %s", (f"{tag}%",)
        ).fetchone()
        out["schemas_left"] = left[0] if left else None
        admin.close()
    return out


def postgres_layers(
    events: list[Any], args: argparse.Namespace, schemas: dict[str, str]
) -> list[dict[str, Any]]:
    import psycopg
    from psycopg import sql

    from aicm_manual.server._storage.postgres import PostgresStorage

    batches = [events[i : i + args.batch] for i in range(0, len(events), args.batch)]
    out = []
    PostgresStorage(args.pg_url, schema=schemas["raw"]).close()  # the collector's tables
    received = time.time_ns() // 1000
    insert = sql.SQL(
        "INSERT INTO {} (tenant, config_id, service_id, response_id, timestamp_us, received_us,"
        " client_customer_key, usage, context, payload_hash, cost_nanos, currency, price_source)"
        " SELECT * FROM unnest(%b::text[], %b::text[], %b::text[], %b::text[], %b::bigint[],"
        " %b::bigint[], %b::text[], %b::bytea[], %b::bytea[], %b::text[], %b::bigint[],"
        " %b::text[], %b::text[]) ON CONFLICT (tenant, service_id, response_id) DO NOTHING"
    ).format(sql.Identifier(schemas["raw"], "events"))
    columns = [[list(c) for c in zip(*event_rows(b, received), strict=True)] for b in batches]
    local = threading.local()
    conns: list[Any] = []

    def unnest(cols: list[list[Any]]) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = psycopg.connect(args.pg_url, autocommit=True)
            conns.append(conn)
        conn.execute(insert, cols)

    n, s = timed_batches(columns, unnest, args.raw_max_s, threads=2)
    for conn in conns:
        conn.close()
    out.append(layer("raw INSERT .. unnest ON CONFLICT, 2 connections", n, s, batches))

    storage = PostgresStorage(args.pg_url, schema=schemas["direct"])
    n, s = timed_batches(batches, storage.ingest, args.raw_max_s, threads=2)
    out.append(layer("PostgresStorage.ingest, 2 callers (no HTTP)", n, s, batches))
    storage.close()
    return out


def per_call_ns(fn: Callable[[], Any], repeats: int = 7, target_s: float = 0.05) -> float:
    """Median over ``repeats`` of the mean per call, each repeat ~``target_s`` long."""
    loops, t0 = 1, perf_ns()
    fn()
    while (perf_ns() - t0) < target_s * 1e9 / 20:
        loops *= 2
        t0 = perf_ns()
        for _ in range(loops):
            fn()
    per = (perf_ns() - t0) / loops
    loops = max(1, int(target_s * 1e9 / max(per, 1)))
    samples = []
    for _ in range(repeats):
        t0 = perf_ns()
        for _ in range(loops):
            fn()
        samples.append((perf_ns() - t0) / loops)
    return sorted(samples)[len(samples) // 2]


def phase_pricing() -> dict[str, Any]:
    from aicm_manual.server._ingest import Ingestor
    from aicm_manual.server._pricing import token_usage

    _, by_id, pricer = server_parts()
    chat = {"model": "gpt-4o-mini", "input_tokens": 812, "output_tokens": 97}
    avatar = {"duration": 12.3, "avatar_id": "anna"}
    model = pricer._model("openai", "gpt-4o-mini")
    tokens = token_usage(chat)
    assert tokens is not None
    assert not isinstance(model, str)
    ingestor = Ingestor(by_id, pricer, storage=None)  # type: ignore[arg-type]
    chat_record = make_records(9, 0, 1, 10)[0]
    avatar_record = make_records(9, 4, 1, 10)[0]
    cases: list[tuple[str, Callable[[], Any], str]] = [
        (
            "unit: heygen duration 12.3 (float)",
            lambda: pricer.price("heygen", "heygen::streaming-avatar", avatar),
            "Pricer.price",
        ),
        (
            "unit: heygen duration 45 (int)",
            lambda: pricer.price("heygen", "heygen::streaming-avatar", {"duration": 45}),
            "Pricer.price",
        ),
        (
            "genai fast path: gpt-4o-mini",
            lambda: pricer.price("openai-chat", "openai::gpt-4o-mini", chat),
            "Pricer.price",
        ),
        (
            "genai calc_price: gpt-4o-mini",
            lambda: model.calc_price_nanos(tokens),
            "GenaiModel.calc_price_nanos",
        ),
        (
            "whole record, gpt-4o-mini",
            lambda: ingestor._fast(TENANT, chat_record),
            "Ingestor._fast",
        ),
        (
            "whole record, heygen",
            lambda: ingestor._fast(TENANT, avatar_record),
            "Ingestor._fast",
        ),
        (
            "whole record, gpt-4o-mini, every check worded",
            lambda: ingestor._prepare(TENANT, chat_record),
            "Ingestor._prepare",
        ),
    ]
    fast = pricer.price("openai-chat", "openai::gpt-4o-mini", chat)
    rows = [{"label": label, "call": call, "ns": per_call_ns(fn)} for label, fn, call in cases]
    return {
        "rows": rows,
        "fast_path": model.flat is not None,
        "agree": fast.cost_nanos == model.calc_price_nanos(tokens),
        "chat_cost_nanos": fast.cost_nanos,
        "source": fast.source,
    }


def bulk_events(count: int, args: argparse.Namespace) -> Iterator[list[Any]]:
    """``count`` stored-shape events over 30 days of November 2026, in time order, in
    batches of 1000."""
    from aicm_manual.server._storage.protocol import NewEvent

    _, _, pricer = server_parts()
    services = [
        ("openai-chat", "openai::gpt-4o-mini", 50),
        ("openai-chat", "openai::gpt-4o", 25),
        ("heygen", "heygen::streaming-avatar", 20),
        ("internal-api", "internal::search", 5),  # no pricing: stored unpriced
    ]
    weighted = [s for s in services for _ in range(s[2])]
    rng = random.Random(4)
    span = 30 * DAY_US
    for start in range(0, count, 1000):
        batch = []
        for n in range(start, min(start + 1000, count)):
            config_id, service_id, _w = rng.choice(weighted)
            if config_id == "openai-chat":
                model = service_id.split("::")[1]
                usage: dict[str, Any] = {
                    "input_tokens": rng.randrange(50, 8000),
                    "model": model,
                    "output_tokens": rng.randrange(10, 2000),
                }
            elif config_id == "heygen":
                usage = {"avatar_id": "anna", "duration": rng.randrange(50, 6000) / 10}
            else:
                usage = {"calls": 1, "endpoint": "/search", "region": None, "status_codes": {}}
            price = pricer.price(config_id, service_id, usage)
            body = encoder.encode(usage)
            rid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            batch.append(
                NewEvent(
                    tenant=TENANT,
                    config_id=config_id,
                    service_id=service_id,
                    response_id=rid,
                    # in arrival order, as a collector receives them, give or take a minute
                    timestamp_us=MONTH_START_US + n * span // count + rng.randrange(60_000_000),
                    client_customer_key=f"customer-{rng.randrange(args.summary_customers):04d}",
                    usage=body,
                    context=None,
                    payload_hash=hashlib.sha256(rid.encode() + body).hexdigest(),
                    cost_nanos=price.cost_nanos,
                    currency=price.currency if price.cost_nanos is not None else None,
                    price_source=price.source,
                )
            )
        yield batch


# An upsert of rollup_deltas (the collector's trigger keeps the same sums), and a check
# that the rollups equal the events grouped the way storage.rollup_key groups them.
ROLLUP_UPSERT = (
    "INSERT INTO rollups_daily VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (tenant, day, client_customer_key, service_id, currency)"
    " DO UPDATE SET events = events + excluded.events,"
    " cost_nanos = cost_nanos + excluded.cost_nanos,"
    " unpriced = unpriced + excluded.unpriced"
)
_FROM_EVENTS = (
    f"SELECT tenant, timestamp_us / {DAY_US}, coalesce(client_customer_key, ''), service_id,"
    " CASE WHEN cost_nanos IS NULL THEN '' ELSE coalesce(currency, '') END, count(*),"
    " coalesce(sum(cost_nanos), 0), sum(cost_nanos IS NULL) FROM events GROUP BY 1, 2, 3, 4, 5"
)
ROLLUP_CHECK = (
    f"SELECT count(*) FROM ({_FROM_EVENTS} EXCEPT SELECT * FROM rollups_daily"
    f" UNION ALL SELECT * FROM (SELECT * FROM rollups_daily EXCEPT {_FROM_EVENTS}))"
)


# ---------------------------------------------------------------------------------------
# Fast fill for the scale points: the events generated by the database itself
# ---------------------------------------------------------------------------------------

# Per-row pseudo-random numbers from the row number (one linear congruence each), so that a
# row's service, usage and cost agree however often the expression is evaluated; the ids and
# payload hashes are the database's own random bytes. Shares as in bulk_events: 50% gpt-4o-mini,
# 25% gpt-4o, 20% heygen, 5% unpriced internal::search; prices are genai-prices' and the heygen
# config's per-unit rates (checked against the Pricer in fill_rates).
_R1 = "((i * 1103515245 + 12345) % 2147483647)"
_R2 = "((i * 69069 + 1) % 4294967291)"
_R3 = "((i * 22695477 + 1) % 2147483629)"
_FILL_SELECT = f"""
    SELECT i, {_R1} % 100 AS s, 50 + ({_R1} / 100) % 7950 AS a, 10 + {_R2} % 1990 AS b,
        50 + ({_R2} / 1990) % 5950 AS d, {_R3} % :customers AS c,
        ({_R3} * 29) % 60000000 AS jitter
"""


def fill_rates() -> dict[str, tuple[int, int]]:
    """Nano-USD per input and output token (per 0.1 s of avatar for heygen), from the Pricer."""
    _, _, pricer = server_parts()
    out = {}
    for model in ("gpt-4o-mini", "gpt-4o"):
        per = [
            pricer.price(
                "openai-chat",
                f"openai::{model}",
                {"model": model, "input_tokens": i, "output_tokens": o},
            ).cost_nanos
            // 1_000_000
            for i, o in ((1_000_000, 0), (0, 1_000_000))
        ]
        out[model] = (per[0], per[1])
    avatar = pricer.price("heygen", "heygen::streaming-avatar", {"duration": 1000.0}).cost_nanos
    out["heygen"] = (avatar, 10_000)  # nanos per 1000 s, per 0.1 s units (d is in 0.1 s)
    return out


def fill_sqlite(path: Path, count: int, args: argparse.Namespace) -> float:
    """``count`` events into a fresh collector file, generated by SQLite in time order (as
    bulk_events, random uuid-shaped ids), the rollups summed from them; seconds taken."""
    from aicm_manual.server._storage import sqlite as _sqlite

    _sqlite.SqliteStorage(path).close()
    rates = fill_rates()
    mini, big, (avatar, units) = rates["gpt-4o-mini"], rates["gpt-4o"], rates["heygen"]
    step = 30 * DAY_US // max(count, 1)
    source = "genai-prices " + version("genai-prices")
    insert = f"""
        WITH RECURSIVE n(i) AS (SELECT :start UNION ALL SELECT i + 1 FROM n WHERE i < :stop - 1)
        INSERT INTO events ({_sqlite._INSERT_COLUMNS})
        SELECT 'bench',
            CASE WHEN s < 75 THEN 'openai-chat' WHEN s < 95 THEN 'heygen' ELSE 'internal-api' END,
            CASE WHEN s < 50 THEN 'openai::gpt-4o-mini' WHEN s < 75 THEN 'openai::gpt-4o'
                WHEN s < 95 THEN 'heygen::streaming-avatar' ELSE 'internal::search' END,
            lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-' || hex(randomblob(2))
                || '-' || hex(randomblob(2)) || '-' || hex(randomblob(6))),
            {MONTH_START_US} + i * {step} + jitter, :received,
            printf('customer-%04d', c),
            CAST(CASE WHEN s < 75 THEN json_object('input_tokens', a,
                    'model', CASE WHEN s < 50 THEN 'gpt-4o-mini' ELSE 'gpt-4o' END,
                    'output_tokens', b)
                WHEN s < 95 THEN json_object('avatar_id', 'anna', 'duration', d / 10.0)
                ELSE '{{"calls":1,"endpoint":"/search","region":null,"status_codes":{{}}}}'
                END AS BLOB),
            NULL, lower(hex(randomblob(32))),
            CASE WHEN s < 50 THEN a * {mini[0]} + b * {mini[1]}
                WHEN s < 75 THEN a * {big[0]} + b * {big[1]}
                WHEN s < 95 THEN (d * {avatar} + {units // 2}) / {units} END,
            CASE WHEN s < 95 THEN 'USD' END,
            CASE WHEN s < 50 THEN '{source} openai/gpt-4o-mini'
                WHEN s < 75 THEN '{source} openai/gpt-4o' WHEN s < 95 THEN 'unit' END
        FROM ({_FILL_SELECT} FROM n)
    """
    t0 = perf_ns()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA synchronous=OFF")  # only setup: the measured collector reopens it
        db.execute("PRAGMA cache_size=-4194304")  # 4 GiB: the random-id index stays in memory
        (trigger,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'events_rollup'"
        ).fetchone()
        db.execute("DROP TRIGGER events_rollup")  # summed once at the end instead
        received = time.time_ns() // 1000
        for start in range(0, count, 1_000_000):
            db.execute("BEGIN")
            params = {"start": start, "stop": min(count, start + 1_000_000)}
            db.execute(
                insert, {**params, "received": received, "customers": args.summary_customers}
            )
            db.execute("COMMIT")
        db.execute(f"INSERT INTO rollups_daily {_FROM_EVENTS}")
        db.execute(f"INSERT INTO rollups_total {TOTALS_FROM_DAILY}")
        db.execute(trigger)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return (perf_ns() - t0) / 1e9


def fill_postgres(admin: Any, schema: str, count: int, args: argparse.Namespace) -> float:
    """``count`` events into the collector's tables in ``schema`` (created by
    PostgresStorage), generated by PostgreSQL as fill_sqlite does; the secondary indexes are
    rebuilt after the rows instead of kept row by row, the rollups summed from the events,
    then VACUUM ANALYZE (what autovacuum would have done on a database that grew by ingest).
    Seconds taken."""
    from psycopg import sql

    rates = fill_rates()
    mini, big, (avatar, units) = rates["gpt-4o-mini"], rates["gpt-4o"], rates["heygen"]
    step = 30 * DAY_US // max(count, 1)
    source = "genai-prices " + version("genai-prices")
    events = sql.Identifier(schema, "events")
    select = _FILL_SELECT.replace("%", "%%").replace(":customers", "%(customers)s")
    insert = f"""
        INSERT INTO {{events}} (tenant, config_id, service_id, response_id, timestamp_us,
            received_us, client_customer_key, usage, context, payload_hash, cost_nanos,
            currency, price_source)
        SELECT 'bench',
            CASE WHEN s < 75 THEN 'openai-chat' WHEN s < 95 THEN 'heygen' ELSE 'internal-api' END,
            CASE WHEN s < 50 THEN 'openai::gpt-4o-mini' WHEN s < 75 THEN 'openai::gpt-4o'
                WHEN s < 95 THEN 'heygen::streaming-avatar' ELSE 'internal::search' END,
            gen_random_uuid()::text, {MONTH_START_US} + i * {step} + jitter, %(received)s,
            'customer-' || lpad(c::text, 4, '0'),
            convert_to(CASE WHEN s < 75 THEN json_build_object('input_tokens', a,
                    'model', CASE WHEN s < 50 THEN 'gpt-4o-mini' ELSE 'gpt-4o' END,
                    'output_tokens', b)::text
                WHEN s < 95 THEN json_build_object('avatar_id', 'anna', 'duration', d / 10.0)::text
                ELSE '{{{{"calls":1,"endpoint":"/search","region":null,"status_codes":{{{{}}}}}}}}'
                END, 'UTF8'),
            NULL, md5(random()::text) || md5(random()::text),
            CASE WHEN s < 50 THEN a * {mini[0]} + b * {mini[1]}
                WHEN s < 75 THEN a * {big[0]} + b * {big[1]}
                WHEN s < 95 THEN (d * {avatar} + {units // 2}) / {units} END,
            CASE WHEN s < 95 THEN 'USD' END,
            CASE WHEN s < 50 THEN '{source} openai/gpt-4o-mini'
                WHEN s < 75 THEN '{source} openai/gpt-4o' WHEN s < 95 THEN 'unit' END
        FROM ({select} FROM generate_series(%(start)s::bigint, %(stop)s::bigint - 1) AS i) AS g
    """
    t0 = perf_ns()
    indexes = admin.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename ="
        " 'events' AND indexname <> 'events_pkey'",
        (schema,),
    ).fetchall()
    constraints = admin.execute(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = %s::regclass AND contype = 'u'",
        (f'"{schema}".events',),
    ).fetchall()
    for name, _ in constraints:
        admin.execute(
            sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(events, sql.Identifier(name))
        )
    owned = {name for name, _ in constraints}
    for name, _ in indexes:
        if name not in owned:
            admin.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, name)))
    received = time.time_ns() // 1000
    query = sql.SQL(insert).format(events=events)  # type: ignore[arg-type]
    for start in range(0, count, 1_000_000):
        params = {"start": start, "stop": min(count, start + 1_000_000)}
        admin.execute(query, {**params, "received": received, "customers": args.summary_customers})
    for name, definition in constraints:
        admin.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} " + definition).format(  # type: ignore[arg-type]
                events, sql.Identifier(name)
            )
        )
    for name, definition in indexes:
        if name not in owned:
            admin.execute(definition)  # type: ignore[arg-type]
    admin.execute(
        sql.SQL(
            "INSERT INTO {} SELECT tenant, timestamp_us / %s, coalesce(client_customer_key, ''),"
            " service_id, CASE WHEN cost_nanos IS NULL THEN '' ELSE coalesce(currency, '') END,"
            " count(*), coalesce(sum(cost_nanos), 0), count(*) FILTER (WHERE cost_nanos IS NULL)"
            " FROM {} GROUP BY 1, 2, 3, 4, 5"
        ).format(sql.Identifier(schema, "rollups_daily"), events),
        (DAY_US,),
    )
    totals = TOTALS_FROM_DAILY.replace("%", "%%").replace("rollups_daily", "{}")
    admin.execute(
        sql.SQL("INSERT INTO {} " + totals).format(  # type: ignore[arg-type]
            sql.Identifier(schema, "rollups_total"), sql.Identifier(schema, "rollups_daily")
        )
    )
    admin.execute(sql.SQL("VACUUM ANALYZE {}").format(events))
    admin.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(schema, "rollups_daily")))
    return (perf_ns() - t0) / 1e9


def bulk_ingest(path: Path, args: argparse.Namespace) -> tuple[float, str]:
    """Through SqliteStorage.ingest, 2 callers: the collector's own write path."""
    from aicm_manual.server._storage.sqlite import SqliteStorage

    storage = SqliteStorage(path)
    batches = bulk_events(args.summary_events, args)
    lock = threading.Lock()

    def next_batch(_: Any) -> None:
        with lock:
            batch = next(batches, None)
        if batch is not None:
            storage.ingest(batch)

    count = -(-args.summary_events // 1000)
    _, seconds = timed_batches(range(count), next_batch, args.bulk_max_s, 2)
    storage.close()
    return seconds, "SqliteStorage.ingest, 2 callers"


def bulk_executemany(
    path: Path, args: argparse.Namespace, count: int | None = None
) -> tuple[float, str]:
    """executemany into the collector's tables (created by SqliteStorage), with rollups from
    the storage's own rollup_deltas and upsert; synchronous=OFF, as this is only setup."""
    from aicm_manual.server._storage.protocol import rollup_deltas
    from aicm_manual.server._storage.sqlite import SqliteStorage

    SqliteStorage(path).close()
    received = time.time_ns() // 1000
    deadline = perf_ns() + int(args.bulk_max_s * 1e9)
    t0 = perf_ns()
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("PRAGMA synchronous=OFF")
        db.execute("PRAGMA cache_size=-262144")
        (trigger,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'events_rollup'"
        ).fetchone()
        db.execute("DROP TRIGGER events_rollup")  # the rollups come from rollup_deltas here
        for batch in bulk_events(args.summary_events if count is None else count, args):
            db.execute("BEGIN")
            db.executemany(insert_sqlite(), event_rows(batch, received))
            deltas = rollup_deltas(batch)
            db.executemany(ROLLUP_UPSERT, [(TENANT, *k, n, c, u) for k, n, c, u in deltas])
            db.execute("COMMIT")
            if perf_ns() > deadline:
                break
        db.execute(f"INSERT INTO rollups_total {TOTALS_FROM_DAILY}")
        db.execute(trigger)
    return (perf_ns() - t0) / 1e9, "executemany + rollup_deltas, synchronous=OFF"


def phase_summary(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import requests

    path = tmp / "summary.db"
    load_s, how = (bulk_ingest if args.bulk_ingest else bulk_executemany)(path, args)
    with contextlib.closing(sqlite3.connect(path)) as db:
        (loaded,) = db.execute("SELECT count(*) FROM events").fetchone()
        (rolled,) = db.execute("SELECT coalesce(sum(events), 0) FROM rollups_daily").fetchone()
        (rollup_rows,) = db.execute("SELECT count(*) FROM rollups_daily").fetchone()
        (mismatched,) = db.execute(ROLLUP_CHECK).fetchone()
    out: dict[str, Any] = {
        "loaded": loaded,
        "load_s": load_s,
        "how": how,
        "rollups_mismatched": mismatched,
        "rolled": rolled,
        "rollup_rows": rollup_rows,
        "size_mb": sum(p.stat().st_size for p in tmp.glob("summary.db*")) / 2**20,
    }
    day = "2026-11-24T00:00:00Z", "2026-11-25T00:00:00Z"
    windows = [
        ("whole day (rollups)", {"from": day[0], "to": day[1]}, args.summary_requests, True),
        ("open window (rollups)", {}, args.summary_requests, True),
        (
            "6 h, not whole days (events scan)",
            {"from": "2026-11-24T06:00:00Z", "to": "2026-11-24T12:00:00Z"},
            max(5, args.summary_requests // 10),
            False,
        ),
    ]
    out["windows"] = []
    with collectors([f"sqlite:///{path}"], tmp) as urls, requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        for label, params, count, target in windows:
            query = {"group_by": "client_customer_key", **params}
            target_url = urls[0] + "/api/v1/costs/summary"
            body = session.get(target_url, params=query, timeout=60).json()  # warm-up
            times = []
            for _ in range(count):
                t0 = perf_ns()
                resp = session.get(target_url, params=query, timeout=60)
                resp.content  # noqa: B018 - the body is part of the request's time
                times.append((perf_ns() - t0) / 1e6)
            out["windows"].append(
                {
                    "label": label,
                    "requests": count,
                    "times_ms": times,
                    "rows": len(body["rows"]),
                    "events": sum(r["events"] for r in body["rows"]),
                    "target": target,
                }
            )
    return out


def scale_points(args: argparse.Namespace) -> list[int]:
    return [0, args.scale_events] + ([10_000_000] if args.scale_10m else [])


def scale_measure(url: str, seed: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Served ingest of ``--scale-records`` and /costs/summary latency on one collector."""
    import requests

    out: dict[str, Any] = {}
    with collectors([url], tmp) as urls, requests.Session() as session:
        out["load"] = run_load(urls, seed, args.scale_records, args, tmp, "split")
        session.headers["Authorization"] = f"Bearer {API_KEY}"
        day = {"from": "2026-11-24T00:00:00Z", "to": "2026-11-25T00:00:00Z"}
        for label, params in (("whole day", day), ("open window", {})):
            query = {"group_by": "client_customer_key", **params}
            target = urls[0] + "/api/v1/costs/summary"
            session.get(target, params=query, timeout=60).raise_for_status()  # warm-up
            times = []
            for _ in range(args.scale_requests):
                t0 = perf_ns()
                session.get(target, params=query, timeout=60).content  # noqa: B018
                times.append((perf_ns() - t0) / 1e6)
            out[label] = times
    return out


def phase_scale(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The same served load and summaries with 0, ``--scale-events`` (and 10M with
    ``--scale-10m``) events already stored, on SQLite and on PostgreSQL."""
    from aicm_manual.server._storage.sqlite import SqliteStorage

    out: dict[str, Any] = {"sqlite": [], "postgres": []}
    for n, stored in enumerate(scale_points(args) if "sqlite" in args.scale_backends else []):
        path = tmp / f"scale-{stored}.db"
        load_s = fill_sqlite(path, stored, args) if stored else 0.0
        if not stored:
            SqliteStorage(path).close()
        point = scale_measure(f"sqlite:///{path}", 20 + n, args, tmp)
        out["sqlite"].append({"stored": stored, "load_s": load_s, **point})
        for old in tmp.glob(f"scale-{stored}.db*"):  # keep the disk for the next point
            old.unlink()
    if "postgres" in args.scale_backends:
        out["postgres"] = scale_postgres(args, tmp)
    return out


def pg_bulk_ingest(storage: Any, count: int, args: argparse.Namespace) -> None:
    """``count`` events through PostgresStorage.ingest, 2 callers (the collector's path)."""
    batches = bulk_events(count, args)
    lock = threading.Lock()

    def next_batch(_: Any) -> None:
        with lock:
            batch = next(batches, None)
        if batch is not None:
            storage.ingest(batch)

    timed_batches(range(-(-count // 1000)), next_batch, args.bulk_max_s * 10, 2)


def scale_postgres(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    import psycopg
    from psycopg import sql

    from aicm_manual.server._storage.postgres import PostgresStorage

    try:
        admin = psycopg.connect(args.pg_url, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        return [{"skipped": f"PostgreSQL not reachable at {args.pg_url}: {exc}".strip()}]
    points = []
    try:
        for n, stored in enumerate(scale_points(args)):
            schema = f"aicm_bench_scale_{os.getpid()}_{n}"
            admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            try:
                t0 = perf_ns()
                storage = PostgresStorage(args.pg_url, schema=schema)
                pg_bulk_ingest(storage, stored, args)
                storage.close()
                load_s = (perf_ns() - t0) / 1e9
                point = scale_measure(pg_url(args.pg_url, schema), 30 + n, args, tmp)
                points.append({"stored": stored, "load_s": load_s, **point})
            finally:
                admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    finally:
        admin.close()
    return points


# ============================================================================================
# Report
# ============================================================================================


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def table(headers: list[str], rows: list[list[str]], left: int = 1) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        out = [c.ljust(widths[i]) if i < left else c.rjust(widths[i]) for i, c in enumerate(cells)]
        return "  ".join(out).rstrip()

    print(line(headers))
    print(line(["-" * w for w in widths]))
    for r in rows:
        print(line(r))


def section(title: str) -> None:
    print(f"\n== {title} " + "=" * max(0, 92 - len(title)))


def rate(records: int, seconds: float) -> float:
    return records / seconds if seconds > 0 else float("nan")


def environment(args: argparse.Namespace, tmp: Path) -> None:
    section("environment")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"date          {now:%Y-%m-%d %H:%M UTC}")
    print(f"python        {platform.python_implementation()} {platform.python_version()}")
    print(f"platform      {platform.platform()} ({platform.machine()})")
    print(f"cpu           {cpu_model()}; os.cpu_count()={os.cpu_count()}, usable={affinity}")
    dists = ["aicm-manual", "starlette", "uvicorn", "h11", "uvloop", "httptools", "msgspec"]
    dists += ["psycopg", "psycopg-binary", "psycopg-pool", "genai-prices", "requests"]
    print("packages      " + ", ".join(f"{d} {version(d)}" for d in dists))
    print(f"sqlite        {sqlite3.sqlite_version}; files in {tmp}")
    print(
        f"workload      {args.batch}-record batches, 4/5 openai::gpt-4o-mini (genai-prices),"
        f" 1/5 heygen::streaming-avatar (unit); {args.customers} customers; random uuid4 ids"
    )
    print(
        f"load          {args.records:,} records or {args.max_s:g} s; one load-generator"
        f" process, {args.threads} requests.Session threads; collectors are"
        " `python -m aicm_manual serve` processes"
    )


def report_sqlite(res: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    section("1. SQLite: one served collector vs the raw table (records/s)")
    load = res["load"]
    if "fatal" in load:
        print(load["fatal"])
        return {}
    served = rate(res["stored"], load["elapsed_s"])
    lat = load["latencies_ms"]
    raw = res["layers"][0]
    raw_rate = rate(raw["records"], raw["seconds"])
    rows = [
        [
            f"served: HTTP POST /api/v1/track, {load['threads']} clients",
            f"{res['stored']:,}",
            f"{load['elapsed_s']:.2f}",
            f"{served:,.0f}",
            f"{served / raw_rate:.2f}x",
        ]
    ]
    for la in res["layers"]:
        r = rate(la["records"], la["seconds"])
        rows.append(
            [
                la["label"] + (" *" if la["capped"] else ""),
                f"{la['records']:,}",
                f"{la['seconds']:.2f}",
                f"{r:,.0f}",
                f"{r / raw_rate:.2f}x",
            ]
        )
    table(["path", "records", "s", "records/s", "vs raw"], rows)
    print(
        f"requests {load['requests']:,} of {args.batch}; latency ms p50 {pct(lat, 50):.1f},"
        f" p90 {pct(lat, 90):.1f}, p99 {pct(lat, 99):.1f}, max {max(lat, default=0):.1f};"
        f" HTTP {load['http_codes']}; statuses {load['statuses']};"
        f" client errors {load['error_count']}"
    )
    print(
        f"other processes on the machine kept {load['others_cores']:.2f} of"
        f" {os.cpu_count()} cores busy during the load"
    )
    one = res["single"].get("latencies_ms", [])
    print(
        f"then 1 client, {len(one)} batches of {args.batch} into the same file: latency ms"
        f" p50 {pct(one, 50):.1f}, p99 {pct(one, 99):.1f}"
        f" ({rate(res['single'].get('records_sent', 0), res['single'].get('elapsed_s', 0)):,.0f}"
        " records/s)"
    )
    print(
        f"stored: {res['stored']:,} rows counted in the file, {res['via_api']:,} events in"
        f" /api/v1/costs/summary; records sent {load['records_sent']:,}"
        + ("; hit the --max-s cap" if load["hit_time_cap"] else "")
    )
    if any(la["capped"] for la in res["layers"]):
        print("* hit the --raw-max-s cap before every batch was written")
    return {"served": served, "raw": raw_rate, "p99": pct(lat, 99), "p50": pct(lat, 50)}


def report_postgres(res: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    section("2. PostgreSQL: two served collectors, one schema, vs raw inserts (records/s)")
    if "skipped" in res:
        print(res["skipped"])
        return {}
    load = res["load"]
    if "fatal" in load:
        print(load["fatal"])
        return {}
    served = rate(res["stored"], load["elapsed_s"])
    raw = res["layers"][0]
    raw_rate = rate(raw["records"], raw["seconds"])
    lat = load["latencies_ms"]
    rows = [
        [
            f"served: 2 processes, {load['threads']} clients split across them",
            f"{res['stored']:,}",
            f"{load['elapsed_s']:.2f}",
            f"{served:,.0f}",
            f"{served / raw_rate:.2f}x",
        ]
    ]
    for la in res["layers"]:
        r = rate(la["records"], la["seconds"])
        rows.append(
            [
                la["label"] + (" *" if la["capped"] else ""),
                f"{la['records']:,}",
                f"{la['seconds']:.2f}",
                f"{r:,.0f}",
                f"{r / raw_rate:.2f}x",
            ]
        )
    table(["path", "records", "s", "records/s", "vs raw"], rows)
    print(
        f"PostgreSQL {res['server_version']}; requests {load['requests']:,} of {args.batch};"
        f" latency ms p50 {pct(lat, 50):.1f}, p90 {pct(lat, 90):.1f}, p99 {pct(lat, 99):.1f},"
        f" max {max(lat, default=0):.1f}; HTTP {load['http_codes']};"
        f" statuses {load['statuses']}; client errors {load['error_count']}"
    )
    print(f"stored: {res['stored']:,} rows, {res['distinct']:,} distinct keys")
    mirror = res["mirror"]
    out: dict[str, Any] = {"served": served, "raw": raw_rate, "p99": pct(lat, 99)}
    if "fatal" in mirror:
        print(f"mirror: {mirror['fatal']}")
        return out
    m = mirror["mirror"]
    mlat = mirror["latencies_ms"]
    print(
        f"same batches to both at once: {m['unique_records']:,} records x 2 processes"
        f" ({mirror['requests']} requests, p50 {pct(mlat, 50):.1f} ms, p99 {pct(mlat, 99):.1f}"
        f" ms); accepted per process {m['accepted_per_server']}, by both"
        f" {m['accepted_by_both']}, by neither {m['accepted_by_none']};"
        f" statuses {mirror['statuses']}; HTTP {mirror['http_codes']};"
        f" rows added {res['mirror_stored']:,}; table {res['mirror_rows_after']:,} rows,"
        f" {res['mirror_distinct_after']:,} distinct keys"
    )
    print(f"scratch schemas {', '.join(res['schemas'])} dropped ({res['schemas_left']} left)")
    out["mirror_ok"] = (
        m["accepted_by_both"] == 0
        and m["accepted_by_none"] == 0
        and res["mirror_stored"] == m["unique_records"]
        and res["mirror_rows_after"] == res["mirror_distinct_after"]
        and mirror["error_count"] == 0
    )
    out["mirror_extra"] = res["mirror_stored"] - m["unique_records"] + m["accepted_by_both"]
    return out


def report_pricing(res: dict[str, Any]) -> None:
    section("3. pricing per record (median of 7 repeats, ns per call)")
    rows = [[r["label"], r["call"], f"{r['ns']:,.0f}"] for r in res["rows"]]
    table(["case", "call", "ns/call"], rows, left=2)
    calc = next(r["ns"] for r in res["rows"] if "calc_price" in r["label"])
    fast = next(r["ns"] for r in res["rows"] if "fast path" in r["label"])
    print(
        f"gpt-4o-mini has the flat-rate fast path: {res['fast_path']}; fast path and calc_price"
        f" agree: {res['agree']} ({res['chat_cost_nanos']:,} nano-USD, {res['source']});"
        f" calc_price / fast path = {calc / fast:.0f}x"
    )


def report_summary(res: dict[str, Any], args: argparse.Namespace) -> dict[str, float]:
    section(f"4. GET /api/v1/costs/summary over {res['loaded']:,} events (SQLite)")
    print(
        f"loaded {res['loaded']:,} events in batches of 1000 ({res['how']}) in"
        f" {res['load_s']:.1f} s ({rate(res['loaded'], res['load_s']):,.0f}/s); rollups hold"
        f" {res['rolled']:,} events in {res['rollup_rows']:,} rows, rows differing from the"
        f" events grouped by day: {res['rollups_mismatched']};"
        f" {args.summary_customers} customers, 4 services, 30 days; files {res['size_mb']:.0f} MB"
    )
    rows = []
    out = {}
    for w in res["windows"]:
        t = w["times_ms"]
        rows.append(
            [
                w["label"],
                f"{w['requests']}",
                f"{w['rows']}",
                f"{w['events']:,}",
                f"{pct(t, 50):.1f}",
                f"{pct(t, 95):.1f}",
                f"{pct(t, 99):.1f}",
                f"{max(t):.1f}",
            ]
        )
        if w["target"]:
            out[w["label"]] = pct(t, 95)
    table(
        ["window, group_by=client_customer_key", "requests", "rows", "events", *PCT_HEADERS],
        rows,
    )
    return out


def report_scale(res: dict[str, Any]) -> None:
    section("5. Scale: served ingest and /costs/summary with events already stored")
    rows = []
    for backend in ("sqlite", "postgres"):
        points = res.get(backend) or []
        base = None
        for point in points:
            if "skipped" in point:
                print(f"{backend}: {point['skipped']}")
                continue
            load = point["load"]
            if "fatal" in load:
                rows.append([backend, f"{point['stored']:,}", load["fatal"], "", "", "", ""])
                continue
            served = rate(load["records_sent"], load["elapsed_s"])
            base = base or served
            day, open_ = point["whole day"], point["open window"]
            rows.append(
                [
                    backend,
                    f"{point['stored']:,}",
                    f"{point['load_s']:.0f}",
                    f"{served:,.0f}",
                    f"{served / base:.2f}x",
                    f"{pct(day, 95):.1f}",
                    f"{pct(open_, 95):.1f}",
                ]
            )
    table(
        [
            "backend",
            "events stored",
            "load s",
            "served records/s",
            "vs empty",
            "summary day p95 ms",
            "open p95 ms",
        ],
        rows,
    )


def report_targets(sq: dict[str, float], pg: dict[str, Any], summ: dict[str, float]) -> None:
    section("targets (reported, not asserted)")
    rows = []

    def add(label: str, target: str, shown: str, ok: bool | None) -> None:
        rows.append([label, target, shown, "-" if ok is None else "PASS" if ok else "MISS"])

    if sq:
        add(
            "SQLite served records/s",
            ">= 30,000/s",
            f"{sq['served']:,.0f}/s",
            sq["served"] >= 30_000,
        )
        half = sq["served"] / sq["raw"]
        add("SQLite served / raw executemany", ">= 0.50", f"{half:.2f}", half >= 0.5)
        add("SQLite p99 per 500-record batch", "< 100 ms", f"{sq['p99']:.1f} ms", sq["p99"] < 100)
    if pg:
        add(
            "PostgreSQL 2 processes records/s",
            ">= 30,000/s",
            f"{pg['served']:,.0f}/s",
            pg["served"] >= 30_000,
        )
        if "mirror_ok" in pg:
            add(
                "PostgreSQL same batches to both: extra rows",
                "0",
                f"{pg['mirror_extra']}",
                pg["mirror_ok"],
            )
    for label, p95 in summ.items():
        add(f"costs/summary p95, {label}", "< 50 ms", f"{p95:.1f} ms", p95 < 50)
    table(["target", "target", "measured", "result"], rows)


# ============================================================================================
# Main
# ============================================================================================


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--records", type=int, default=200_000, help="records per served load (200000)")
    p.add_argument("--max-s", type=float, default=30.0, help="time cap on a served load (30)")
    p.add_argument("--batch", type=int, default=500, help="records per request (500)")
    p.add_argument("--threads", type=int, default=4, help="load-generator client threads (4)")
    p.add_argument("--customers", type=int, default=50, help="customer keys in the load (50)")
    p.add_argument(
        "--raw-max-s", type=float, default=15.0, help="time cap on each in-process row (15)"
    )
    p.add_argument(
        "--mirror-records",
        type=int,
        default=20_000,
        help="records sent to both PostgreSQL collectors (20000)",
    )
    p.add_argument(
        "--summary-events", type=int, default=1_000_000, help="events for costs/summary (1000000)"
    )
    p.add_argument(
        "--summary-customers", type=int, default=500, help="customers in those events (500)"
    )
    p.add_argument("--summary-requests", type=int, default=200, help="timed GETs per window (200)")
    p.add_argument(
        "--bulk-max-s", type=float, default=120.0, help="time cap on the bulk load (120)"
    )
    p.add_argument(
        "--bulk-ingest",
        action="store_true",
        help="load the summary events through SqliteStorage.ingest (about 14k/s) instead",
    )
    p.add_argument(
        "--pg-url",
        default="postgresql://postgres@127.0.0.1:5432/test",
        help="a database where scratch schemas may be created and dropped",
    )
    p.add_argument(
        "--sections",
        default="sqlite,postgres,pricing,summary",
        help="comma-separated subset of sqlite,postgres,pricing,summary,scale (scale: only"
        " when named)",
    )
    p.add_argument(
        "--scale-events",
        type=int,
        default=1_000_000,
        help="events stored before the middle point of the scale section (1000000)",
    )
    p.add_argument(
        "--scale-10m", action="store_true", help="add a 10,000,000-event point to the scale section"
    )
    p.add_argument(
        "--scale-records", type=int, default=50_000, help="records served per scale point (50000)"
    )
    p.add_argument(
        "--scale-requests", type=int, default=50, help="timed summaries per window and point (50)"
    )
    p.add_argument(
        "--scale-backends", default="sqlite,postgres", help="backends of the scale section"
    )
    p.add_argument("--quick", action="store_true", help="20,000 records, 100,000 summary events")
    p.add_argument("--json", help="also write every figure to this file")
    p.add_argument(
        "--what-if",
        action="store_true",
        help="also time raw SQLite inserts with SQLite's default cache and checkpoints, with"
        " a checkpoint on the writer every 10000 pages, and 4 batches per transaction",
    )
    p.add_argument("--keep-tmp", action="store_true", help="keep the databases and logs")
    p.add_argument("--load-child", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.records, args.mirror_records, args.max_s, args.raw_max_s = 20_000, 5_000, 10.0, 5.0
        args.summary_events, args.summary_requests = 100_000, 50
        args.scale_events, args.scale_records, args.scale_requests = 100_000, 10_000, 20
    return args


def main() -> None:
    args = parse_args()
    if args.load_child:
        load_child(args.load_child)
        return
    t_all = perf_ns()
    sections = {s.strip() for s in args.sections.split(",") if s.strip()}
    tmp = Path(tempfile.mkdtemp(prefix="aicm-collector-bench-"))
    print("aicm_manual collector benchmark")
    environment(args, tmp)
    results: dict[str, Any] = {}
    try:
        for name, run in (
            ("sqlite", lambda: phase_sqlite(args, tmp)),
            ("postgres", lambda: phase_postgres(args, tmp)),
            ("pricing", phase_pricing),
            ("summary", lambda: phase_summary(args, tmp)),
            ("scale", lambda: phase_scale(args, tmp)),
        ):
            if name in sections:
                t0 = perf_ns()
                print(f"running {name} ...", end=" ", flush=True)
                results[name] = run()
                print(f"done in {(perf_ns() - t0) / 1e9:.1f} s", flush=True)
    finally:
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    sq = report_sqlite(results["sqlite"], args) if "sqlite" in results else {}
    pg = report_postgres(results["postgres"], args) if "postgres" in results else {}
    if "pricing" in results:
        report_pricing(results["pricing"])
    summ = report_summary(results["summary"], args) if "summary" in results else {}
    if "scale" in results:
        report_scale(results["scale"])
    report_targets(sq, pg, summ)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    print(f"\ntotal benchmark wall time: {(perf_ns() - t_all) / 1e9:.1f} s")


if __name__ == "__main__":
    main()
