"""Batch benchmark: our ``Tracker.track_batch`` against aicostmanager 0.3.2's, one run.

Both peers get the same records, in the AICostManager form (``service_key``, ``usage``,
``customer_key``, ``response_id``, ``context``, ``timestamp``): half
``openai::gpt-4o-mini`` (config ``openai-chat``), half ``heygen::streaming-avatar``
(config ``heygen``). Ours is ``Tracker(schemas_dir=schemas/)``, so each record is checked
against the schema of the config that lists its service.

Each peer runs in its own fresh subprocess; all send to one loopback sink process
(benchmarks/_sink.py, the delivery benchmark's), which answers like our collector: 200
with one result per record. Phases:

1. immediate: ``track_batch`` of 100, 1,000 and 10,000 records, timed until it returns
   (after the sink answered); requests per batch and per-record results from the sink.
2. queued (ours mem_queue and persistent_queue; aicostmanager persistent_queue, its only
   queued mode): the time for ``track_batch(10,000)`` to return, then until the sink has
   every record; records lost.
3. validation probes (immediate children): one valid and one faulty record per batch;
   does the call refuse the batch, and how many records reach the sink?
4. ours only: where a 10,000-record ``track_batch`` spends its time.

aicostmanager refuses more than 1,000 records per call (``BatchSizeLimitExceeded``); its
10,000 rows are then also measured as ten calls of 1,000, marked ``*``.

Run: ``.venv/bin/python benchmarks/batch.py`` (about a minute) or ``--quick``. Network goes
only to 127.0.0.1; every call is bounded in time, a child is killed after
``--peer-timeout`` s, and every process started here is stopped by pid. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from delivery import (
    API_KEY,
    SCHEMAS,
    AicostManager,
    Ours,
    SinkClient,
    cpu_model,
    fmt,
    install_network_guard,
    run_logged,
    section,
    start_sink,
    stop_process,
    table,
    version,
)

perf_ns = time.perf_counter_ns
mono_ns = time.monotonic_ns  # CLOCK_MONOTONIC: comparable with the sink's clock on Linux

# name -> (label, kind)
PEERS: dict[str, tuple[str, str]] = {
    "ours-immediate": ("ours immediate", "immediate"),
    "aicostmanager-immediate": ("aicostmanager 0.3.2 immediate", "immediate"),
    "ours-mem_queue": ("ours mem_queue", "queued"),
    "ours-persistent_queue": ("ours persistent_queue", "queued"),
    "aicostmanager-persistent_queue": ("aicostmanager 0.3.2 persistent_queue", "queued"),
}
SIZES = (100, 1000, 10_000)
CHUNK = 1000  # aicostmanager's per-call maximum
BASE_TS = datetime.datetime(2026, 11, 24, 10, 0, tzinfo=datetime.timezone.utc)


def make_records(n: int, prefix: str) -> list[dict[str, Any]]:
    """``n`` distinct records, deterministic, half openai-chat and half heygen."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        ts = (BASE_TS + datetime.timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        if i % 2:
            usage: dict[str, Any] = {"duration": 1.5 + (i % 600) / 10, "avatar_id": "anna"}
            service = "heygen::streaming-avatar"
        else:
            usage = {"model": "gpt-4o-mini", "input_tokens": 100 + i % 4000, "output_tokens": 97}
            if i % 4 == 0:
                usage["cached_input_tokens"] = 64
            service = "openai::gpt-4o-mini"
        out.append(
            {
                "service_key": service,
                "usage": usage,
                "customer_key": f"customer_{i % 50}",
                "response_id": f"{prefix}-{i}",
                "context": {"env": "prod", "session": f"s{i % 200}"},
                "timestamp": ts,
            }
        )
    return out


# -- validation probes: one valid record and one with a single fault ----------------------


def _probe(fault: str) -> Callable[[list[dict[str, Any]]], None]:
    def apply(recs: list[dict[str, Any]]) -> None:
        bad = recs[1]  # a heygen record; the openai faults make it an openai one
        openai = {"model": "gpt-4o-mini", "input_tokens": 812, "output_tokens": 97}
        if fault in ("str_for_int", "missing", "typo"):
            bad["service_key"] = "openai::gpt-4o-mini"
        if fault == "str_for_int":
            bad["usage"] = {**openai, "input_tokens": "812"}
        elif fault == "missing":
            bad["usage"] = {"model": "gpt-4o-mini", "input_tokens": 812}
        elif fault == "typo":
            bad["usage"] = {"model": "gpt-4o-mini", "input_tokens": 812, "ouput_tokens": 97}
        elif fault == "str_for_float":
            bad["usage"] = {"duration": "12.5"}
        elif fault == "nan":
            bad["usage"] = {"duration": float("nan")}
        elif fault == "usage_list":
            bad["usage"] = [812, 97]
        elif fault == "no_usage":
            del bad["usage"]
        elif fault == "no_service":
            del bad["service_key"]
        elif fault == "bad_timestamp":
            bad["timestamp"] = "yesterday"
        elif fault == "repeated_id":
            bad["response_id"] = recs[0]["response_id"]
        elif fault == "unlisted_service":
            bad["service_key"] = "acme::widget"
            bad["usage"] = {"widgets": 3}
        else:  # pragma: no cover - a typo in PROBES
            raise ValueError(fault)

    return apply


PROBES: list[tuple[str, str]] = [
    ("str_for_int", "input_tokens '812' (str for int)"),
    ("missing", "output_tokens missing"),
    ("typo", "'ouput_tokens' instead of output_tokens"),
    ("str_for_float", "heygen duration '12.5' (str)"),
    ("nan", "heygen duration NaN"),
    ("usage_list", "usage is a list"),
    ("no_usage", "no 'usage' key"),
    ("no_service", "no service_key"),
    ("bad_timestamp", "timestamp 'yesterday'"),
    ("repeated_id", "response_id repeats record 0's"),
    ("unlisted_service", "service no config lists"),
]


# ==========================================================================================
# Child side: one peer, one process
# ==========================================================================================


def run_bounded(fn: Callable[[], Any], timeout: float) -> dict[str, Any]:
    """Call ``fn`` in a daemon thread, timed inside it; stop waiting after ``timeout`` s.

    Unlike delivery.bounded, keeps the return value and the exception's type name."""
    box: dict[str, Any] = {}

    def run() -> None:
        t0 = perf_ns()
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = f"{type(exc).__name__}: {exc}"[:300]
            box["error_type"] = type(exc).__name__
        box["seconds"] = (perf_ns() - t0) / 1e9

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    box["done"] = not thread.is_alive()
    if not box["done"]:
        box["seconds"] = timeout
    return box


class Hung(Exception):
    """A call did not return within its bound: the child stops measuring."""


class OursBatch(Ours):
    def start(self) -> Callable[..., Any]:
        from aicm_manual import Tracker

        kwargs: dict[str, Any] = {
            "schemas_dir": SCHEMAS,
            "aicm_api_base": self.base,
            "aicm_api_key": API_KEY,
            "delivery_type": self.mode,
        }
        if self.mode == "persistent_queue":
            kwargs["db_path"] = str(self.db)
        self.tracker = Tracker(**kwargs)
        self.trackers.append(self.tracker)
        return self.tracker.track_batch  # type: ignore[no-any-return]


class TheirsBatch(AicostManager):
    def start(self) -> Callable[..., Any]:
        from aicostmanager import Tracker

        tracker = Tracker(aicm_api_key=API_KEY, delivery_type=self.mode)
        self.trackers.append(tracker)
        return tracker.track_batch  # type: ignore[no-any-return]


def make_adapter(name: str, base: str, tmp: Path) -> OursBatch | TheirsBatch:
    owner, mode = name.split("-", 1)
    return (OursBatch if owner == "ours" else TheirsBatch)(name, base, tmp, mode)


EMPTY = {"requests": 0, "records": 0, "distinct": 0, "bytes_in": 0, "last_ns": 0}


def stats(sink: SinkClient) -> dict[str, Any]:
    """The peer's counts at the sink, zeros before its first request."""
    return {**EMPTY, **sink.stats()}


def results_count(value: Any) -> int | None:
    """Per-record results in a return value: len(value["results"]) when it is a list."""
    if isinstance(value, dict) and isinstance(value.get("results"), list):
        return len(value["results"])
    return None


def one_call(
    track_batch: Callable[..., Any],
    sink: SinkClient,
    n: int,
    prefix: str,
    args: argparse.Namespace,
    chunk: int | None = None,
) -> dict[str, Any]:
    """One timed track_batch of ``n`` fresh records (``chunk``: as n/chunk calls)."""
    recs = make_records(n, prefix)
    parts = [recs] if chunk is None else [recs[i : i + chunk] for i in range(0, n, chunk)]
    before = stats(sink)
    m0 = mono_ns()
    out = run_bounded(lambda: [track_batch(p) for p in parts], args.call_timeout)
    if not out["done"]:
        raise Hung(f"track_batch({n}) still running after {args.call_timeout:.0f} s")
    after = stats(sink)
    values = out.get("value") or []
    counts = [results_count(v) for v in values]
    return {
        "n": n,
        "calls": len(parts),
        "seconds": out["seconds"],
        "m0": m0,
        "error": out.get("error"),
        "error_type": out.get("error_type"),
        "requests": after["requests"] - before["requests"],
        "records_at_return": after["records"] - before["records"],
        "distinct_at_return": after["distinct"] - before["distinct"],
        "bytes": after["bytes_in"] - before["bytes_in"],
        "results": None if not counts or None in counts else sum(c or 0 for c in counts),
        "returned": {k: v for k, v in values[-1].items() if k != "response_ids"}
        if values and isinstance(values[-1], dict) and results_count(values[-1]) is None
        else None,
        "response_ids": sum(
            len(v.get("response_ids") or []) for v in values if isinstance(v, dict)
        ),
        "before": before,
    }


def summarise(runs: list[dict[str, Any]], n: int, extra: dict[str, Any]) -> dict[str, Any]:
    secs = sorted(r["seconds"] for r in runs)
    med = statistics.median(secs)
    return {
        "n": n,
        "runs": len(runs),
        "median_s": med,
        "min_s": secs[0],
        "max_s": secs[-1],
        "rate": n / med if med else 0.0,
        **extra,
    }


def immediate_phase(
    track_batch: Callable[..., Any], sink: SinkClient, args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    one_call(track_batch, sink, 10, f"{args.child}-warm", args)  # connection, configs
    for n in args.sizes:
        reps = args.repeat if n < 10_000 else args.repeat_large
        for chunk in (None, CHUNK):
            if chunk is not None and not (n > CHUNK and out.get(str(n), {}).get("refused")):
                continue
            runs: list[dict[str, Any]] = []
            for rep in range(reps):
                r = one_call(track_batch, sink, n, f"{args.child}-i{n}-{chunk}-{rep}", args, chunk)
                if r["error"]:
                    key = f"{n}x{chunk}" if chunk else str(n)
                    out[key] = {"n": n, "refused": r["error"], "error_type": r["error_type"]}
                    break
                runs.append(r)
                if sum(x["seconds"] for x in runs) > args.row_budget:
                    break
            if not runs:
                continue
            last = runs[-1]
            out[f"{n}x{chunk}" if chunk else str(n)] = summarise(
                runs,
                n,
                {
                    "calls": last["calls"],
                    "requests": last["requests"],
                    "delivered": min(r["distinct_at_return"] for r in runs),
                    "results": last["results"],
                    "bytes_per_record": last["bytes"] / n,
                },
            )
    return out


def problem_text(error: str) -> str:
    """The lines that name the problem (ours puts a summary line first)."""
    lines = error.splitlines()
    return " ".join(ln.strip() for ln in (lines[1:4] if len(lines) > 1 else lines))


def probe_phase(
    track_batch: Callable[..., Any], sink: SinkClient, args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, _ in PROBES:
        recs = make_records(2, f"{args.child}-probe-{key}")
        _probe(key)(recs)
        before = stats(sink)
        r = run_bounded(lambda recs=recs: track_batch(recs), args.call_timeout)
        if not r["done"]:
            raise Hung(f"probe {key} still running after {args.call_timeout:.0f} s")
        after = stats(sink)
        out[key] = {
            "raised": r.get("error_type"),
            "message": problem_text(r.get("error") or ""),
            "sent": after["records"] - before["records"],
            "seconds": r["seconds"],
        }
    return out


def left_in_spool(adapter: OursBatch | TheirsBatch) -> int | None:
    if isinstance(adapter, OursBatch):
        if adapter.mode != "persistent_queue":
            return None
        return int(adapter.health().get("queued") or 0)
    return adapter.left_in_spool()


def queued_phase(
    track_batch: Callable[..., Any],
    adapter: OursBatch | TheirsBatch,
    sink: SinkClient,
    args: argparse.Namespace,
) -> dict[str, Any]:
    n = args.queued_n
    warm = one_call(track_batch, sink, 10, f"{args.child}-warm", args)
    adapter.flush(10.0)
    sink.wait(warm["before"]["distinct"] + 10, quiet_s=2.0, max_s=10.0)
    out: dict[str, Any] = {}
    for chunk in (None, CHUNK):
        if chunk is not None and not out.get("single", {}).get("refused"):
            continue
        key = "chunked" if chunk else "single"
        runs: list[dict[str, Any]] = []
        for rep in range(args.repeat_large):
            r = one_call(track_batch, sink, n, f"{args.child}-q-{chunk}-{rep}", args, chunk)
            if r["error"]:
                out[key] = {"n": n, "refused": r["error"], "error_type": r["error_type"]}
                break
            fl = adapter.flush(args.flush_timeout) if adapter.has_flush else None
            flush_end = mono_ns()
            target = r["before"]["distinct"] + n
            after = sink.wait(target, quiet_s=3.0, max_s=args.sink_wait)
            delivered = after["distinct"] - r["before"]["distinct"]
            spooled = left_in_spool(adapter)
            r.update(
                {
                    "flush": fl,
                    "flush_s": (flush_end - r["m0"]) / 1e9 if fl is not None else None,
                    "all_s": (after["last_ns"] - r["m0"]) / 1e9 if delivered >= n else None,
                    "delivered": delivered,
                    "requests_total": after["requests"] - r["before"]["requests"],
                    "spooled": spooled,
                    # a row acked just after the sink counted it is both: never below 0
                    "lost": max(0, n - delivered - (spooled or 0)),
                }
            )
            runs.append(r)
            if sum(x["all_s"] or x["seconds"] for x in runs) > args.row_budget:
                break
        if not runs:
            continue
        alls = [r["all_s"] for r in runs if r["all_s"] is not None]
        flushes = [r["flush_s"] for r in runs if r["flush_s"] is not None]
        out[key] = summarise(
            runs,
            n,
            {
                "calls": runs[-1]["calls"],
                "all_median_s": statistics.median(alls) if alls else None,
                "all_range": [min(alls), max(alls)] if alls else None,
                "flush_median_s": statistics.median(flushes) if flushes else None,
                "delivered_at_return": [r["distinct_at_return"] for r in runs],
                "requests": [r["requests_total"] for r in runs],
                "lost": [r["lost"] for r in runs],
                "spooled": [r["spooled"] for r in runs],
                "returned": runs[-1]["returned"],
                "response_ids": runs[-1]["response_ids"],
                "flush_value": [(r["flush"] or {}).get("value") for r in runs],
            },
        )
    return out


def breakdown_phase(
    adapter: OursBatch, sink: SinkClient, args: argparse.Namespace
) -> dict[str, Any]:
    """Ours, mem_queue, in-process: what one track_batch(10,000) is made of."""
    from aicm_manual import BatchValidationError, Tracker

    n = args.queued_n
    tracker = adapter.tracker
    empty = Path(adapter.tmp) / "no-schemas"
    empty.mkdir(exist_ok=True)
    unchecked = Tracker(
        schemas_dir=empty,
        aicm_api_base=adapter.base,
        aicm_api_key=API_KEY,
        delivery_type="mem_queue",
    )
    validators = {
        "openai::gpt-4o-mini": tracker.config_source.get("openai-chat").validator.validate,
        "heygen::streaming-avatar": tracker.config_source.get("heygen").validator.validate,
    }
    try:
        from aicm_manual._batch_input import BatchRecord  # private: skip the row if it moves

        parse: Callable[[Any], Any] | None = BatchRecord.parse
    except ImportError:
        parse = None

    def per_record_track(recs: list[dict[str, Any]]) -> None:
        track = tracker.track
        for r in recs:
            track(
                r["service_key"],
                r["usage"],
                client_customer_key=r["customer_key"],
                context=r["context"],
                response_id=r["response_id"],
                timestamp=r["timestamp"],
            )

    def invalid_last(recs: list[dict[str, Any]]) -> None:
        recs[-1]["usage"] = {"duration": "12.5"}
        try:
            tracker.track_batch(recs)
        except BatchValidationError:
            return
        raise AssertionError("the invalid batch was accepted")  # would be a bug in ours

    cases: list[tuple[str, Callable[[list[dict[str, Any]]], Any]]] = [
        ("track_batch, mem_queue (checked)", tracker.track_batch),
        ("track_batch, no config found (unchecked)", unchecked.track_batch),
        ("track_batch, last record invalid (raises)", invalid_last),
        ("track() per record, mem_queue", per_record_track),
        (
            "validator.validate(usage) only",
            lambda rs: [validators[r["service_key"]](r["usage"]) for r in rs],
        ),
    ]
    if parse is not None:
        cases.append(("BatchRecord.parse only", lambda rs: [parse(r) for r in rs]))
    times: dict[str, list[float]] = {label: [] for label, _ in cases}
    for rep in range(args.repeat_large):
        for i, (label, fn) in enumerate(cases):  # interleaved, so outside load hits all rows
            recs = make_records(n, f"{args.child}-b{rep}-{i}")
            r = run_bounded(lambda fn=fn, recs=recs: fn(recs), args.call_timeout)
            if not r["done"]:
                raise Hung(f"{label} still running after {args.call_timeout:.0f} s")
            if r.get("error"):
                times[label].append(float("nan"))
                continue
            times[label].append(r["seconds"])
            tracker.flush(args.flush_timeout)  # an empty queue for the next case
    unchecked.close(5)
    return {
        label: {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v)}
        for label, v in times.items()
        if v
    }


def send_breakdown(adapter: OursBatch, args: argparse.Namespace) -> dict[str, Any]:
    """Ours, immediate, 1,000 records: the steps of track_batch, each timed alone.

    Uses private names (the tracker's record builder, the engine's sender,
    aicm_manual._protocol); a step whose name moved is skipped."""
    n, reps = CHUNK, args.repeat
    tracker = adapter.tracker
    try:
        from aicm_manual._batch_input import BatchRecord
        from aicm_manual._protocol import encode_batch, encode_record, encode_records

        target, record = tracker._target, tracker._builder.build
        sender = tracker._mode._engine._sender  # type: ignore[union-attr]
        timeout = tracker.delivery_settings.timeout

        def post(target: Any, body: bytes, ids: list[str], *, detailed: bool) -> Any:
            return sender.post(target, body, ids, timeout, detailed=detailed)
    except (ImportError, AttributeError) as exc:
        return {"skipped": str(exc)}
    sets = [make_records(n, f"{args.child}-s{rep}") for rep in range(reps)]
    items = [[BatchRecord.parse(r) for r in recs] for recs in sets]

    def build(rep: int) -> list[Any]:
        return [
            record(i.usage, i.service_id, i.config_id, i.client_customer_key, i.context,
                   i.response_id, i.timestamp)
            for i in items[rep]
        ]  # fmt: skip

    built = [build(rep) for rep in range(reps)]
    bodies = [encode_batch([encode_record(r) for r in b]) for b in built]
    ids = [[r.response_id for r in b] for b in built]
    steps: list[tuple[str, Callable[[int], Any]]] = [
        ("BatchRecord.parse per record", lambda k: [BatchRecord.parse(r) for r in sets[k]]),
        ("record builder per record (checks, copies, stamps)", build),
        ("encode_record per record + encode_batch (as sent)",
         lambda k: encode_batch([encode_record(r) for r in built[k]])),
        ("what if: encode_records, one call", lambda k: encode_records(built[k])),
        ("Sender.post(detailed=True): HTTP, sink, per-record results",
         lambda k: post(target, bodies[k], ids[k], detailed=True)),
        ("what if: Sender.post(detailed=False) (200: no per-record parse)",
         lambda k: post(target, bodies[k], ids[k], detailed=False)),
    ]  # fmt: skip
    out: dict[str, Any] = {}
    for label, fn in steps:
        times = []
        for rep in range(reps):
            r = run_bounded(lambda fn=fn, rep=rep: fn(rep), args.call_timeout)
            if not r["done"]:
                raise Hung(f"{label} still running after {args.call_timeout:.0f} s")
            times.append(r["seconds"] if not r.get("error") else float("nan"))
        out[label] = {"median_s": statistics.median(times), "min_s": min(times)}
        out[label]["max_s"] = max(times)
    return out


def spool_phase(adapter: OursBatch, sink: SinkClient, args: argparse.Namespace) -> dict[str, Any]:
    """Ours, persistent_queue: what one commit per record costs (one run of each)."""
    n = args.queued_n
    out: dict[str, Any] = {}
    recs = make_records(n, f"{args.child}-paused")
    before = stats(sink)
    sink.call("POST", "/pause")  # the worker's sends fail and it backs off: no claims
    r = run_bounded(lambda: adapter.tracker.track_batch(recs), args.call_timeout)
    sink.call("POST", "/resume")
    if not r["done"]:
        raise Hung(f"track_batch({n}) with the sink paused still running")
    out["track_batch while the sink answers 503 (worker backing off)"] = r["seconds"]
    adapter.flush(args.flush_timeout)
    after = sink.wait(before["distinct"] + n, quiet_s=3.0, max_s=args.sink_wait)
    out["delivered_after_resume"] = after["distinct"] - before["distinct"]
    try:
        from aicm_manual._delivery.spool import Spool  # private: skip these rows if it moves
    except ImportError:
        return out
    bodies = [json.dumps(rec, separators=(",", ":")).encode() for rec in recs]
    out["body_bytes"] = sum(map(len, bodies)) / n
    insert = (
        "INSERT INTO records (key_ref, api_base, response_id, body, enqueued_at)"
        " VALUES (?, ?, ?, ?, ?)"
    )
    rows = [("k" * 64, adapter.base, f"s{i}", b, time.time()) for i, b in enumerate(bodies)]

    def puts() -> None:
        spool = Spool(adapter.tmp / "scratch-1.db")
        for row in rows:
            spool.put(*row[:4])
        spool.close()

    def one_transaction() -> None:
        Spool(adapter.tmp / "scratch-2.db").close()  # the same schema, created by ours
        db = sqlite3.connect(adapter.tmp / "scratch-2.db", isolation_level=None)
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("BEGIN IMMEDIATE")
        db.executemany(insert, rows)
        db.execute("COMMIT")
        db.close()

    for label, fn in (
        ("Spool.put per record (one commit each), scratch file, no worker", puts),
        ("what if: the same rows in one transaction (executemany)", one_transaction),
    ):
        r = run_bounded(fn, args.call_timeout)
        if not r["done"]:
            raise Hung(f"{label} still running")
        out[label] = r["seconds"] if not r.get("error") else r["error"]
    return out


def child_main(args: argparse.Namespace) -> None:
    blocked: list[str] = []
    install_network_guard(blocked)
    tmp = Path(tempfile.mkdtemp(prefix=f"aicm-batch-{args.child}-"))
    base = f"http://127.0.0.1:{args.port}/p/{args.child}"
    sink = SinkClient(args.port, args.child)
    res: dict[str, Any] = {"peer": args.child, "blocked": blocked}
    t_start = perf_ns()
    adapter: OursBatch | TheirsBatch | None = None
    try:
        adapter = make_adapter(args.child, base, tmp)
        t0 = perf_ns()
        track_batch = adapter.start()
        res["setup_ms"] = (perf_ns() - t0) / 1e6
        if PEERS[args.child][1] == "immediate":
            res["immediate"] = immediate_phase(track_batch, sink, args)
            res["probes"] = probe_phase(track_batch, sink, args)
            if isinstance(adapter, OursBatch):
                res["send_breakdown"] = send_breakdown(adapter, args)
        else:
            res["queued"] = queued_phase(track_batch, adapter, sink, args)
            if isinstance(adapter, OursBatch) and adapter.mode == "mem_queue":
                res["breakdown"] = breakdown_phase(adapter, sink, args)
            if isinstance(adapter, OursBatch) and adapter.mode == "persistent_queue":
                res["spool"] = spool_phase(adapter, sink, args)
    except Hung as exc:
        res["hung"] = str(exc)
    except BaseException as exc:
        import traceback

        res["fatal"] = f"{type(exc).__name__}: {exc}"
        res["traceback"] = traceback.format_exc()[-3000:]
    if adapter is not None and "hung" not in res:
        res["close"] = adapter.close(args.flush_timeout)
        res["extra"] = adapter.extra()
    res["other_paths"] = stats(sink).get("other_paths", {})
    ru = resource.getrusage(resource.RUSAGE_SELF)
    res["peak_rss_mb"] = ru.ru_maxrss / 1024  # KiB on Linux
    res["cpu_s"] = ru.ru_utime + ru.ru_stime
    res["wall_s"] = (perf_ns() - t_start) / 1e9
    Path(args.result).write_text(json.dumps(res, default=str))
    if not args.keep_tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # never wait on a peer's atexit hook or a hung call's thread


# ==========================================================================================
# Parent side
# ==========================================================================================


def run_child(name: str, port: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    result = tmp / f"{name}.json"
    log = tmp / f"{name}.log"
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--port", str(port)]
    cmd += ["--result", str(result), *args.child_args]
    proc, wall, killed = run_logged(cmd, log, args.peer_timeout)
    lines = log.read_text(errors="replace").splitlines()
    if result.exists():
        res: dict[str, Any] = json.loads(result.read_text())
    else:
        why = f"killed after --peer-timeout {args.peer_timeout:.0f} s" if killed else "no result"
        res = {"peer": name, "fatal": f"{why} (exit {proc.returncode}, {wall:.0f} s)"}
    res["child_wall_s"] = wall
    res["log_lines"] = len(lines)
    res["log_tail"] = lines[-3:]
    return res


def ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}x" if ours and theirs else "-"


def ms(s: float | None) -> str:
    return fmt(None if s is None else s * 1000, ",.1f")


def failure(r: dict[str, Any] | None) -> str:
    """Why a peer has no figures: not run, hung or failed."""
    if r is None:
        return "not run (--peers)"
    if "hung" in r:
        return "HUNG: " + r["hung"]
    return "FAILED: " + str(r.get("fatal", "no figures"))


def report_immediate(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    section("1. immediate: track_batch(N) until it returns (the sink has answered)")
    headers = ["peer", "N", "calls", "runs", "ms (median)", "min-max ms", "records/s", "requests"]
    headers += ["at sink", "per-record results", "bytes/record"]
    rows = []
    notes: list[str] = []
    for name in ("ours-immediate", "aicostmanager-immediate"):
        imm = results.get(name, {}).get("immediate", {})
        if not imm:
            rows.append([PEERS[name][0], "-", "-"] + [""] * (len(headers) - 3))
            notes.append(f"{PEERS[name][0]}: {failure(results.get(name))}")
            continue
        for n in args.sizes:
            for key in (str(n), f"{n}x{CHUNK}"):
                s = imm.get(key)
                if s is None:
                    continue
                label = PEERS[name][0] + (f" ({n // CHUNK} x {CHUNK:,})*" if "x" in key else "")
                if "refused" in s:
                    rows.append([label, f"{n:,}", "1", "refused"] + [""] * (len(headers) - 4))
                    notes.append(f"{label}, {n:,}: refused with {s['refused']}")
                    continue
                rows.append(
                    [
                        label,
                        f"{n:,}",
                        str(s["calls"]),
                        str(s["runs"]),
                        ms(s["median_s"]),
                        f"{s['min_s'] * 1000:,.1f}-{s['max_s'] * 1000:,.1f}",
                        f"{s['rate']:,.0f}",
                        str(s["requests"]),
                        f"{s['delivered']:,}",
                        "-" if s["results"] is None else f"{s['results']:,}",
                        f"{s['bytes_per_record']:.0f}",
                    ]
                )
    table(headers, rows)
    for note in notes:
        print(note)
    print(
        f"median of up to {args.repeat} runs ({args.repeat_large} for 10,000; none started after"
        f" {args.row_budget:.0f} s on a row), fresh records each;"
        " requests and 'at sink' (distinct records) counted by the sink for the last call.\n"
        "* aicostmanager refuses more than 1,000 records per call: the same records as"
        f" {CHUNK:,}-record calls, back to back."
    )
    ours = results.get("ours-immediate", {}).get("immediate", {})
    theirs = results.get("aicostmanager-immediate", {}).get("immediate", {})
    rows = []
    for n in args.sizes:
        o = ours.get(str(n), {})
        t = theirs.get(str(n), {})
        star = ""
        if "refused" in t and f"{n}x{CHUNK}" in theirs:
            t, star = theirs[f"{n}x{CHUNK}"], "*"
        rows.append(
            [
                f"{n:,}",
                fmt(o.get("rate"), ",.0f"),
                fmt(t.get("rate"), ",.0f") + star,
                ratio(o.get("rate"), t.get("rate")) + star,
                ratio(o.get("median_s"), t.get("median_s")) + star,
            ]
        )
    print()
    table(["N", "ours rec/s", "theirs rec/s", "rec/s ours/theirs", "time ours/theirs"], rows)
    print("rec/s ours/theirs > 1 and time ours/theirs < 1: ours is faster.")


def report_queued(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    n = args.queued_n
    section(f"2. queued: track_batch({n:,}) returns, then the sink has every record")
    headers = [
        "peer",
        "calls",
        "runs",
        "return ms",
        "min-max ms",
        "records/s",
        "flush ms",
        "all at sink ms",
    ]
    headers += ["at return", "requests", "lost", "spooled"]
    rows = []
    notes: list[str] = []
    for name, (label, kind) in PEERS.items():
        if kind != "queued":
            continue
        q = results.get(name, {}).get("queued", {})
        if not q:
            rows.append([label, "-"] + [""] * (len(headers) - 2))
            notes.append(f"{label}: {failure(results.get(name))}")
            continue
        for key in ("single", "chunked"):
            s = q.get(key)
            if s is None:
                continue
            lab = label + (f" ({n // CHUNK} x {CHUNK:,})*" if key == "chunked" else "")
            if "refused" in s:
                rows.append([lab, "1", "refused"] + [""] * (len(headers) - 3))
                notes.append(f"{lab}: refused with {s['refused']}")
                continue
            rows.append(
                [
                    lab,
                    str(s["calls"]),
                    str(s["runs"]),
                    ms(s["median_s"]),
                    f"{s['min_s'] * 1000:,.0f}-{s['max_s'] * 1000:,.0f}",
                    f"{s['rate']:,.0f}",
                    ms(s["flush_median_s"]) if s["flush_median_s"] else "no flush()",
                    ms(s["all_median_s"]),
                    "/".join(f"{x:,}" for x in s["delivered_at_return"]),
                    "/".join(str(x) for x in s["requests"]),
                    "/".join(f"{x:,}" for x in s["lost"]),
                    "/".join(fmt(x, ",") for x in s["spooled"]),
                ]
            )
    rows.append(["aicostmanager 0.3.2 mem_queue", "-"] + [""] * (len(headers) - 2))
    notes.append(
        "aicostmanager 0.3.2 mem_queue: not offered (its DeliveryType has immediate and"
        " persistent_queue only)"
    )
    table(headers, rows)
    for note in notes:
        print(note)
    print(
        f"median of up to {args.repeat_large} runs of {n:,} fresh records (none started after"
        f" {args.row_budget:.0f} s on a row). 'flush ms' and 'all at"
        " sink ms' are from the start of the call: flush() returning, the sink's last record."
        "\n'at return', 'requests' (all requests until the sink had every record), 'lost' ="
        " tracked - delivered - spooled (not below 0; spooled: rows still in the spool file),"
        " are per run."
    )
    q = {name: results.get(name, {}).get("queued", {}) for name in PEERS}
    theirs = q.get("aicostmanager-persistent_queue", {})
    t = theirs.get("single", {})
    star = ""
    if "refused" in t and "chunked" in theirs:
        t, star = theirs["chunked"], "*"
    rows = []
    for name in ("ours-mem_queue", "ours-persistent_queue"):
        o = q.get(name, {}).get("single", {})
        rows.append(
            [
                PEERS[name][0] + " / theirs persistent_queue",
                ratio(o.get("median_s"), t.get("median_s")) + star,
                ratio(o.get("all_median_s"), t.get("all_median_s")) + star,
            ]
        )
    print()
    table(["ratio (ours / theirs; < 1: ours is faster)", "return time", "all at sink"], rows)


def report_probes(results: dict[str, dict[str, Any]]) -> None:
    section("3. validation: a batch of one valid record and one with the fault shown")
    ours = results.get("ours-immediate", {}).get("probes", {})
    theirs = results.get("aicostmanager-immediate", {}).get("probes", {})

    def cell(p: dict[str, Any] | None) -> str:
        if not p:
            return "-"
        head = f"raises {p['raised']}" if p["raised"] else "returns"
        return f"{head}, {p['sent']} sent"

    rows = [[label, cell(ours.get(key)), cell(theirs.get(key))] for key, label in PROBES]
    table(["fault in record 1", "ours", "aicostmanager 0.3.2"], rows)
    print("sent: records the sink received for that batch (2 = the faulty record went out).")
    for key, label in PROBES:
        for who, probes in (("ours", ours), ("aicostmanager", theirs)):
            p = probes.get(key)
            if p and p["message"]:
                print(f"  {label:<40} {who}: {p['message'][:150]}")
    print(
        "aicostmanager 0.3.2's track_batch checks: at most 1,000 records, each has"
        " 'service_key' and 'usage' (KeyError otherwise), a timestamp string"
        " datetime.fromisoformat accepts; nothing inside usage (its Tracker no longer calls"
        " its TypeValidator)."
    )


def report_breakdown(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> None:
    n = args.queued_n
    section("4. ours: where track_batch spends its time (in-process)")
    b = results.get("ours-mem_queue", {}).get("breakdown")
    if b:
        print(f"ours mem_queue, {n:,} records (median of runs, the cases interleaved):")
        rows = []
        ref = b.get("track_batch, mem_queue (checked)", {}).get("median_s")
        for label, s in b.items():
            rows.append(
                [
                    label,
                    ms(s["median_s"]),
                    f"{s['min_s'] * 1000:,.1f}-{s['max_s'] * 1000:,.1f}",
                    f"{s['median_s'] / n * 1e6:.2f}",
                    f"{s['median_s'] / ref:.2f}" if ref else "-",
                ]
            )
        table(["case", "ms", "min-max ms", "us/record", "of track_batch"], rows)
    send = results.get("ours-immediate", {}).get("send_breakdown") or {}
    if "skipped" in send:
        print(f"\nours immediate steps: skipped ({send['skipped']})")
    elif send:
        whole = results["ours-immediate"].get("immediate", {}).get(str(CHUNK), {})
        print(
            f"\nours immediate, {CHUNK:,} records: the steps of track_batch, each timed alone"
            f" (median of {args.repeat})"
        )
        rows = [["track_batch (section 1, median)", ms(whole.get("median_s")), "", ""]]
        for label, s in send.items():
            rows.append(
                [
                    label,
                    ms(s["median_s"]),
                    f"{s['min_s'] * 1000:,.1f}-{s['max_s'] * 1000:,.1f}",
                    f"{s['median_s'] / CHUNK * 1e6:.2f}",
                ]
            )
        table(["step", "ms", "min-max ms", "us/record"], rows)
    sp = results.get("ours-persistent_queue", {})
    spool = sp.get("spool")
    if not spool:
        return
    print(
        f"\nours persistent_queue, {n:,} records (one run each; bodies of about"
        f" {fmt(spool.get('body_bytes'), '.0f')} bytes in the scratch rows):"
    )
    single = sp.get("queued", {}).get("single", {})
    rows = [
        [
            "track_batch while the sink answers (section 2, median)",
            ms(single.get("median_s")),
            fmt(single.get("median_s") and single["median_s"] / n * 1e6, ".1f"),
        ]
    ]
    for label, v in spool.items():
        if isinstance(v, float) and label != "body_bytes":
            rows.append([label, ms(v), f"{v / n * 1e6:.1f}"])
        elif isinstance(v, str):
            rows.append([label, v[:60], ""])
    table(["case", "ms", "us/record"], rows)
    print(f"delivered after the sink resumed: {spool.get('delivered_after_resume', 0):,} of {n:,}")


def report_details(results: dict[str, dict[str, Any]]) -> None:
    section("details per peer")
    for name, r in results.items():
        print(
            f"\n{PEERS[name][0]} ({name}): child wall {r.get('child_wall_s', 0):.1f} s, setup"
            f" {fmt(r.get('setup_ms'), '.0f')} ms, CPU {fmt(r.get('cpu_s'), '.1f')} s, peak"
            f" RSS {fmt(r.get('peak_rss_mb'), '.0f')} MB"
        )
        if "hung" in r:
            print(f"  HUNG: {r['hung']} (the child stopped measuring and exited)")
        if "fatal" in r:
            print(f"  FAILED: {r['fatal']}")
            for ln in str(r.get("traceback", "")).splitlines()[-6:]:
                print(f"    {ln}")
        for key, s in (r.get("queued") or {}).items():
            if "refused" not in s:
                print(
                    f"  queued ({key}): returned {s['returned']}, {s['response_ids']:,}"
                    f" response_ids; flush() returned {s['flush_value']}"
                )
        cl = r.get("close")
        if cl:
            state = "returned" if cl["done"] else "STILL RUNNING"
            print(f"  close: {state} after {cl['seconds']:.2f} s {cl.get('value', '')}")
        for key, value in (r.get("extra") or {}).items():
            print(f"  {key}: {value}")
        if r.get("other_paths"):
            print(f"  other paths requested: {r['other_paths']}")
        if r.get("blocked"):
            print(f"  NETWORK GUARD blocked: {r['blocked'][:5]}")
        print(
            f"  child output: {r.get('log_lines', 0):,} lines; last: {r.get('log_tail', [])[-1:]}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeat", type=int, default=5, help="calls per size below 10,000 (5)")
    p.add_argument("--repeat-large", type=int, default=3, help="calls of 10,000 records (3)")
    p.add_argument("--queued-n", type=int, default=10_000, help="records per queued call")
    p.add_argument("--call-timeout", type=float, default=60.0, help="bound on one call (s)")
    p.add_argument("--flush-timeout", type=float, default=30.0, help="flush and close bound")
    p.add_argument("--sink-wait", type=float, default=30.0, help="wait for the sink (s)")
    p.add_argument(
        "--row-budget", type=float, default=15.0, help="stop repeating a row after this many s (15)"
    )
    p.add_argument("--peer-timeout", type=float, default=180.0, help="kill a child after this")
    p.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    p.add_argument("--quick", action="store_true", help="1 run per size")
    p.add_argument("--json", help="also write every figure to this file")
    p.add_argument("--keep-tmp", action="store_true", help="keep spools, logs and results")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.repeat, args.repeat_large = 1, 1
    args.sizes = SIZES
    args.child_args = [
        *("--repeat", str(args.repeat), "--repeat-large", str(args.repeat_large)),
        *("--queued-n", str(args.queued_n), "--call-timeout", str(args.call_timeout)),
        *("--flush-timeout", str(args.flush_timeout), "--sink-wait", str(args.sink_wait)),
        *("--row-budget", str(args.row_budget)),
        *(["--keep-tmp"] if args.keep_tmp else []),
    ]
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args)
        return
    t_all = perf_ns()
    names = [n.strip() for n in args.peers.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise SystemExit(f"unknown peers {unknown}; choose from {list(PEERS)}")
    missing = [d for d in ("aicm-manual", "aicostmanager") if version(d) == "not installed"]
    if missing:
        raise SystemExit(f"not installed: {missing}; run: .venv/bin/pip install -e '.[bench]'")

    print("aicm_manual batch benchmark: track_batch, ours vs aicostmanager 0.3.2, one sink")
    section("environment")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"date          {now:%Y-%m-%d %H:%M UTC}")
    print(f"python        {platform.python_implementation()} {platform.python_version()}")
    print(f"platform      {platform.platform()} ({platform.machine()})")
    print(f"cpu           {cpu_model()}; os.cpu_count()={os.cpu_count()}, usable={affinity}")
    dists = ["aicm-manual", "aicostmanager", "httpx", "requests", "tenacity"]
    print("packages      " + ", ".join(f"{d} {version(d)}" for d in dists))
    print(f"tmp           {tempfile.gettempdir()} (SQLite spools live here)")
    print(
        "workload      records in the AICostManager form; even i: openai::gpt-4o-mini"
        " {model, input_tokens, output_tokens[, cached_input_tokens]}, odd i:"
        " heygen::streaming-avatar {duration, avatar_id}; customer_key, response_id,"
        " context, ISO timestamp on every record"
    )
    print(
        "sink          benchmarks/_sink.py in its own process on 127.0.0.1: 200 with one"
        " result per record; records counted by distinct response_id"
    )

    results: dict[str, dict[str, Any]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="aicm-batch-bench-"))
    sink, port = start_sink()
    try:
        for name in names:
            SinkClient(port, name).call("POST", "/reset")
            print(f"running {name} ...", end=" ", flush=True)
            results[name] = run_child(name, port, args, tmp)
            r = results[name]
            status = "HUNG" if "hung" in r else "FAILED" if "fatal" in r else "done"
            print(f"{status} in {r['child_wall_s']:.1f} s", flush=True)
    finally:
        stop_process(sink)
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    report_immediate(results, args)
    report_queued(results, args)
    report_probes(results)
    report_breakdown(results, args)
    report_details(results)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    print(f"\ntotal benchmark wall time: {(perf_ns() - t_all) / 1e9:.1f} s")


if __name__ == "__main__":
    main()
