"""LLM helpers benchmark: our ``track_llm_usage`` / ``track_llm_stream_usage`` against
aicostmanager 0.3.2's, one run.

Both libraries get the same responses and streams (benchmarks/_llm_cases.py: the vendors'
JSON built into the ``openai``, ``anthropic`` and ``google-genai`` SDK types, no network)
and send to one loopback sink process (benchmarks/_sink.py), which keeps the records it
receives. Ours is ``Tracker(schemas_dir=schemas/)`` and is called as
``tracker.track_llm_usage(api_id, response)``; aicostmanager's ``Tracker`` is called the
same way, ``tracker.track_llm_usage(api_id, response)`` (its first argument is a
service_key or an api_id; with an api_id it builds ``vendor::model`` from the response).

1. correctness: per case, the usage each library's record carries at the sink, against
   the vendor's counts (written by hand in the cases) and against genai-prices' own
   ``extract_usage`` of the same JSON; the cost of each via genai-prices ``calc_price``.
   aicostmanager sends the vendor's usage object as it is (``payload``); it is read here
   with genai-prices' extractor for the case's API, the most favourable reading possible.
2. overhead: microseconds per ``track_llm_usage`` call (queued delivery, a no-op
   delivery, the mapping alone), and per stream event added by each stream wrapper.
3. re-tracking the same response twice: records at the sink and distinct response_ids;
   for ours also what our real collector (``embedded_collector``, SQLite) stores and bills.

Each library runs in its own fresh subprocess. Network goes only to 127.0.0.1; every
timed loop is bounded in count and time; a child is killed after ``--peer-timeout`` s;
the sink and the children are stopped by pid. Nothing is asserted.

Run: ``.venv/bin/python benchmarks/llm.py`` (about 40 s) or ``--quick``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from _llm_cases import (
    BY_KEY,
    CASES,
    EVENT_TYPE,
    FIVE,
    Case,
    genai_body,
    genai_extract,
    long_stream,
    ours_as_genai,
    price,
    usage_dict,
    vendor_id,
)
from delivery import (
    API_KEY,
    SCHEMAS,
    AicostManager,
    Ours,
    SinkClient,
    cpu_model,
    fmt,
    install_network_guard,
    pct,
    run_logged,
    section,
    start_sink,
    stop_process,
    table,
    timed_calls,
    version,
)

perf_ns = time.perf_counter_ns

APIS = ("openai_chat", "openai_responses", "anthropic", "gemini")
# The response each API is timed with, the stream whose whole cost is timed, and the
# responses tracked twice.
TIMED = {
    "openai_chat": "chat-cache",
    "openai_responses": "resp-cache",
    "anthropic": "anth-cache",
    "gemini": "gem-cache",
}
SHORT = {
    "openai_chat": "chat-stream",
    "openai_responses": "resp-stream",
    "anthropic": "anth-stream",
    "gemini": "gem-stream",
}
RETRACK = ("chat-cache", "resp-cache", "anth-cache", "gem-cache", "anth-stream")
PREFIX = {"ours": "ours", "theirs": "aicostmanager"}  # the sink answers "aicostmanager*" its way
KEEP = 500  # records the sink keeps per peer
TENANT = "bench"


# ==========================================================================================
# Child side: one library, one process
# ==========================================================================================


class ListDelivery:
    """A no-op delivery for aicostmanager's Tracker(delivery=...): keeps the record."""

    type = None  # no DeliveryType: its Tracker then writes nothing to its INI file

    def __init__(self) -> None:
        self.items: list[Any] = []

    def enqueue(self, payload: dict[str, Any]) -> int:
        self.items.append(payload)
        return len(self.items)

    def stop(self) -> None:
        pass


class OursLlm(Ours):
    def start(self) -> Any:
        from aicm_manual import Tracker

        kwargs: dict[str, Any] = {"delivery_type": self.mode}
        if self.mode == "persistent_queue":
            kwargs["db_path"] = str(self.db)
        tracker = Tracker(
            schemas_dir=SCHEMAS, aicm_api_base=self.base, aicm_api_key=API_KEY, **kwargs
        )
        self.trackers.append(tracker)
        return tracker


class TheirsLlm(AicostManager):
    def start(self) -> Any:
        from aicostmanager import Tracker

        tracker = Tracker(aicm_api_key=API_KEY, delivery_type=self.mode)
        self.trackers.append(tracker)
        return tracker


class Lib:
    """One library under test: its trackers (one sink peer per phase) and its calls."""

    def __init__(self, who: str, port: int, tmp: Path) -> None:
        self.who = who
        self.port = port
        self.tmp = tmp
        self.adapters: list[OursLlm | TheirsLlm] = []
        self.null_sink: Any = None

    def tracker(self, phase: str, mode: str) -> Any:
        peer = f"{PREFIX[self.who]}-{phase}"
        base = f"http://127.0.0.1:{self.port}/p/{peer}"
        cls = OursLlm if self.who == "ours" else TheirsLlm
        adapter = cls(peer, base, self.tmp, mode)  # sets the environment it reads
        self.adapters.append(adapter)
        return adapter.start()

    def null_tracker(self) -> Any:
        """A tracker whose delivery keeps records in a list: no queue, no I/O."""
        if self.who == "ours":
            from aicm_manual import Tracker
            from aicm_manual.testing import CapturingDelivery

            self.null_sink = CapturingDelivery()
            return Tracker(schemas_dir=SCHEMAS, aicm_api_key=API_KEY, delivery=self.null_sink)
        from aicostmanager import Tracker as TheirTracker

        self.null_sink = ListDelivery()
        return TheirTracker(aicm_api_key=API_KEY, delivery=self.null_sink)

    def clear_null(self) -> None:
        if self.who == "ours":
            self.null_sink.clear()
        else:
            self.null_sink.items.clear()

    def track(self, tracker: Any, api_id: str, response: Any, **kw: Any) -> Any:
        return tracker.track_llm_usage(api_id, response, **kw)

    def stream(self, tracker: Any, api_id: str, events: Iterator[Any], **kw: Any) -> Any:
        return tracker.track_llm_stream_usage(api_id, events, **kw)

    def extract(self) -> Callable[[str, Any], Any]:
        if self.who == "ours":
            from aicm_manual import extract_usage

            return extract_usage
        from aicostmanager.usage_utils import get_usage_from_response

        return lambda api_id, response: get_usage_from_response(response, api_id)

    def close(self, timeout: float) -> list[Any]:
        return [a.close(timeout) for a in self.adapters]


def error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


def track_case(lib: Lib, tracker: Any, case: Case, obj: Any, **kw: Any) -> dict[str, Any]:
    """Track one response, or consume one stream through the wrapper; never raises."""
    try:
        if case.stream:
            seen = sum(1 for _ in lib.stream(tracker, case.api_id, iter(obj), **kw))
            return {"events": seen}
        lib.track(tracker, case.api_id, obj, **kw)
        return {}
    except Exception as exc:
        return {"error": error_text(exc)}


def correctness_phase(lib: Lib) -> dict[str, Any]:
    tracker = lib.tracker("correct", "immediate")
    return {
        c.key: track_case(lib, tracker, c, c.sdk(), context={"bench_case": c.key}) for c in CASES
    }


def retrack_phase(lib: Lib) -> dict[str, Any]:
    """Each RETRACK response (or stream's events) tracked twice, the same object both times;
    aicostmanager also with response_id= the vendor's id."""
    runs = [("retrack", False)] + ([("retrack-id", True)] if lib.who == "theirs" else [])
    out: dict[str, Any] = {}
    for phase, with_id in runs:
        tracker = lib.tracker(phase, "immediate")
        for key in RETRACK:
            case = BY_KEY[key]
            obj = case.sdk()
            kw: dict[str, Any] = {"context": {"bench_case": key}}
            if with_id:
                kw["response_id"] = vendor_id(case)
            out[f"{phase}/{key}"] = [track_case(lib, tracker, case, obj, **kw) for _ in range(2)]
    return out


def collector_phase(tmp: Path) -> dict[str, Any]:
    """Ours only: the RETRACK responses tracked twice into our real collector."""
    from aicm_manual import Tracker
    from aicm_manual.server._embedded import embedded_collector

    lib = Lib("ours", 0, tmp)
    out: dict[str, Any] = {}
    url = f"sqlite:///{tmp / 'collector.db'}"
    with embedded_collector(url, SCHEMAS, [f"{TENANT}:{API_KEY}"]) as collector:
        tracker = Tracker(
            schemas_dir=SCHEMAS,
            aicm_api_base=collector.url,
            aicm_api_key=API_KEY,
            delivery_type="immediate",
        )
        try:
            for key in RETRACK:
                case = BY_KEY[key]
                obj = case.sdk()
                calls = [track_case(lib, tracker, case, obj) for _ in range(2)]
                out[key] = {"calls": calls}
        finally:
            tracker.close(5.0)
        events = collector.storage.list_events(TENANT, limit=1000)
    for key in RETRACK:
        mine = [e for e in events if e.response_id == vendor_id(BY_KEY[key])]
        out[key]["stored"] = len(mine)
        out[key]["billed_nanos"] = sum(e.cost_nanos or 0 for e in mine)
        out[key]["service_ids"] = sorted({e.service_id for e in mine})
    out["events_total"] = len(events)
    return out


def time_calls(fn: Callable[[], Any], n: int, max_s: float) -> dict[str, Any]:
    timed_calls(fn, min(200, n), max_s)  # warm-up
    lat, errors, last_error = timed_calls(fn, n, max_s)
    s = sorted(lat)
    return {
        "calls": len(s),
        "median_us": pct(s, 0.5),
        "p99_us": pct(s, 0.99),
        "errors": errors,
        "last_error": last_error,
    }


def wait_drained(lib: Lib, timeout: float) -> dict[str, Any]:
    """Let a queued tracker's worker finish before the next row is timed (bounded)."""
    adapter = lib.adapters[-1]
    if isinstance(adapter, OursLlm):
        return adapter.flush(timeout)
    end = time.monotonic() + timeout
    left = adapter.left_in_spool()
    while left and time.monotonic() < end:
        time.sleep(0.05)
        left = adapter.left_in_spool()
    return {"left_in_spool": left}


def overhead_phase(lib: Lib, args: argparse.Namespace) -> dict[str, Any]:
    """us per track_llm_usage call: the mapping alone, a no-op delivery, then the queued
    deliveries (last, so that no worker is still sending while the others are timed)."""
    n = args.calls if lib.who == "ours" else args.calls_theirs
    out: dict[str, Any] = {api: {} for api in APIS}
    extract = lib.extract()
    null = lib.null_tracker()
    for api in APIS:
        resp = BY_KEY[TIMED[api]].sdk()
        out[api]["extract"] = time_calls(
            lambda api=api, resp=resp: extract(api, resp), args.calls, args.max_s
        )
        out[api]["noop"] = time_calls(
            lambda api=api, resp=resp: lib.track(null, api, resp), n, args.max_s
        )
        lib.clear_null()
    modes = ("mem_queue", "persistent_queue") if lib.who == "ours" else ("persistent_queue",)
    for mode in modes:
        tracker = lib.tracker(f"q-{mode}", mode)
        for api in APIS:
            resp = BY_KEY[TIMED[api]].sdk()
            row = time_calls(
                lambda t=tracker, api=api, resp=resp: lib.track(t, api, resp), n, args.max_s
            )
            row["drain"] = wait_drained(lib, 20.0)
            out[api][mode] = row
    return out


def stream_phase(lib: Lib, args: argparse.Namespace) -> dict[str, Any]:
    """us per stream, bare iteration against iteration through the wrapper (no-op
    delivery), for a long stream and for the short correctness stream of each API."""
    null = lib.null_tracker()
    out: dict[str, Any] = {}
    for api in APIS:
        long_events = [EVENT_TYPE[api](e) for e in long_stream(api, args.stream_events)]
        for label, events, reps in (
            ("long", long_events, args.stream_reps),
            ("short", BY_KEY[SHORT[api]].sdk(), args.stream_reps * 20),
        ):
            bare: list[int] = []
            wrapped: list[int] = []
            deadline = perf_ns() + int(args.max_s * 1e9)
            for _ in range(reps):
                t0 = perf_ns()
                for _event in iter(events):
                    pass
                t1 = perf_ns()
                for _event in lib.stream(null, api, iter(events)):
                    pass
                t2 = perf_ns()
                bare.append(t1 - t0)
                wrapped.append(t2 - t1)
                if t2 > deadline:
                    break
            lib.clear_null()
            out[f"{api}/{label}"] = {
                "events": len(events),
                "reps": len(bare),
                "bare_us": statistics.median(bare) / 1000,
                "wrapped_us": statistics.median(wrapped) / 1000,
            }
    return out


def child_main(args: argparse.Namespace) -> None:
    blocked: list[str] = []
    install_network_guard(blocked)
    tmp = Path(tempfile.mkdtemp(prefix=f"aicm-llm-{args.child}-"))
    lib = Lib(args.child, args.port, tmp)
    res: dict[str, Any] = {"peer": args.child, "blocked": blocked}
    t_start = perf_ns()
    try:
        res["correctness"] = correctness_phase(lib)
        res["retrack"] = retrack_phase(lib)
        if args.child == "ours":
            res["collector"] = collector_phase(tmp)
        res["overhead"] = overhead_phase(lib, args)
        res["streams"] = stream_phase(lib, args)
    except BaseException as exc:
        import traceback

        res["fatal"] = error_text(exc)
        res["traceback"] = traceback.format_exc()[-3000:]
    res["close"] = lib.close(args.flush_timeout)
    res["wall_s"] = (perf_ns() - t_start) / 1e9
    Path(args.result).write_text(json.dumps(res, default=str))
    shutil.rmtree(tmp, ignore_errors=True)


# ==========================================================================================
# Parent side: sink, children, tables
# ==========================================================================================


def run_child(who: str, port: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    result = tmp / f"{who}.json"
    log = tmp / f"{who}.log"
    flags = ["--calls", str(args.calls), "--calls-theirs", str(args.calls_theirs)]
    flags += ["--max-s", str(args.max_s), "--stream-events", str(args.stream_events)]
    flags += ["--stream-reps", str(args.stream_reps), "--flush-timeout", str(args.flush_timeout)]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", who, "--port", str(port)]
    cmd += ["--result", str(result), *flags]
    proc, wall, _ = run_logged(cmd, log, args.peer_timeout)
    if result.exists():
        res: dict[str, Any] = json.loads(result.read_text())
    else:
        res = {"fatal": f"no result (exit {proc.returncode}, {wall:.0f} s)"}
    res["child_wall_s"] = wall
    res["log_tail"] = log.read_text(errors="replace").splitlines()[-5:]
    return res


# -- reading the records ----------------------------------------------------------------------

ABBR = {
    "input_tokens": "in",
    "cache_read_tokens": "cr",
    "cache_write_tokens": "cw",
    "output_tokens": "out",
    "output_reasoning_tokens": "rs",
}


def five(usage: dict[str, Any] | None) -> str:
    """in/cr/cw/out/rs, '-' for a count not reported."""
    if usage is None:
        return "-"
    return "/".join(str(usage[k]) if usage.get(k) is not None else "-" for k in FIVE)


def diff(usage: dict[str, Any] | None, truth: dict[str, int]) -> list[str]:
    """The canonical counts that differ from the vendor's (absent and 0 are the same)."""
    if usage is None:
        return ["no usage"]
    return [ABBR[k] for k in FIVE if (usage.get(k) or 0) != (truth.get(k) or 0)]


def drop_empty(value: Any) -> Any:
    """aicostmanager serialises an unreported count (None) as {}: read it as absent."""
    if isinstance(value, dict):
        return {k: drop_empty(v) for k, v in value.items() if v != {}}
    return value


def flat(value: Any, prefix: str = "") -> str:
    """``a=1 b.c=2``: the leaves of a payload, {} (aicostmanager's None) left out."""
    if isinstance(value, dict):
        parts = [flat(v, f"{prefix}{k}.") for k, v in value.items() if v != {}]
        return " ".join(p for p in parts if p)
    if isinstance(value, list):
        return " ".join(flat(v, f"{prefix}{i}.") for i, v in enumerate(value))
    return f"{prefix[:-1]}={value}"


def read_ours(case: Case, record: dict[str, Any] | None) -> dict[str, Any]:
    if record is None:
        return {"usage": None, "cost": None, "service": "no record"}
    usage = ours_as_genai(record["usage"])
    vendor, _, model = record["service_id"].partition("::")
    cost = price(usage, model, vendor) if model else None
    return {"usage": usage, "cost": cost, "service": record["service_id"]}


def read_theirs(case: Case, record: dict[str, Any] | None) -> dict[str, Any]:
    """Their payload read with genai-prices' extractor for the case's API; the model is
    the one their service_key names (their payload carries none)."""
    if record is None:
        return {"usage": None, "cost": None, "service": "no record"}
    payload = drop_empty(record.get("payload"))
    key = str(record.get("service_key"))
    model = key.partition("::")[2] or None
    if case.api_id == "gemini":
        body: dict[str, Any] = {"usageMetadata": payload}
        if model:
            body["modelVersion"] = model
    else:
        body = {"usage": payload}
        if model:
            body["model"] = model
    out: dict[str, Any] = {"service": key, "payload": record.get("payload")}
    try:
        out["usage"] = usage_dict(genai_extract(case, body).usage)
    except Exception as exc:
        out["usage"] = None
        out["problem"] = f"unreadable: {error_text(exc)}"
    # A key without a model is priced with the case's model, so the counts still show.
    out["model_from_case"] = model is None
    priced = model or case.model
    out["cost"] = price(out["usage"], priced, case.provider) if out["usage"] else None
    return out


def read_genai(case: Case) -> dict[str, Any]:
    body = genai_body(case)
    if body is None:
        return {"usage": None, "cost": None}
    usage = usage_dict(genai_extract(case, body).usage)
    return {"usage": usage, "cost": price(usage, case.model, case.provider)}


def by_case(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        key = (r.get("context") or {}).get("bench_case")
        out.setdefault(str(key), []).append(r)
    return out


def usd(value: Decimal | None, missing: str = "-") -> str:
    return missing if value is None else f"{value:.7f}"


def mark(fields: list[str], cost_ok: bool, extra: str = "") -> str:
    bad = fields + ([] if cost_ok else ["cost"])
    if extra:
        bad.append(extra)
    return "ok" if not bad else "MISMATCH " + ",".join(bad)


# -- report -----------------------------------------------------------------------------------


def report_correctness(results: dict[str, Any], records: dict[str, list[Any]]) -> dict[str, int]:
    section("1. correctness: usage recorded at the sink vs the vendor's counts")
    ours_recs = by_case(records["ours-correct"])
    theirs_recs = by_case(records["aicostmanager-correct"])
    usage_rows, cost_rows, payload_lines, problems = [], [], [], []
    bad = {"ours": 0, "theirs": 0}
    for case in CASES:
        truth_cost = case.truth_cost()
        ours = read_ours(case, (ours_recs.get(case.key) or [None])[0])
        theirs = read_theirs(case, (theirs_recs.get(case.key) or [None])[0])
        genai = read_genai(case)
        o_diff, t_diff = diff(ours["usage"], case.truth), diff(theirs["usage"], case.truth)
        o_mark = mark(o_diff, ours["cost"] == truth_cost)
        t_model = "no model" if theirs.get("model_from_case") else ""
        t_mark = mark(t_diff, theirs["cost"] == truth_cost, t_model)
        bad["ours"] += o_mark != "ok"
        bad["theirs"] += t_mark != "ok"
        label = case.label + (" +" if case.extra else "")
        usage_rows.append(
            [
                label,
                five(case.truth),
                five(ours["usage"]),
                five(theirs["usage"]),
                five(genai["usage"]),
            ]
        )
        cost_rows.append(
            [
                label,
                usd(truth_cost),
                usd(ours["cost"]),
                usd(theirs["cost"]) + ("†" if t_model else ""),
                usd(genai["cost"]),
                o_mark,
                t_mark,
            ]
        )
        payload_lines.append(
            f"  {case.label:34} {theirs['service']:38} {flat(theirs.get('payload'))}"
        )
        for who, res in (("ours", results["ours"]), ("aicostmanager", results["theirs"])):
            err = res.get("correctness", {}).get(case.key, {}).get("error")
            if err:
                problems.append(f"  {case.label}: {who} raised {err}")
        if theirs.get("problem"):
            problems.append(f"  {case.label}: aicostmanager record {theirs['problem']}")
    print("counts as in/cr/cw/out/rs: input (with cache), cache read, cache write, output")
    print("(with reasoning), reasoning; '-' = not reported. '+': the vendor reports more than")
    print("these five counts (see the cost table).\n")
    table(
        ["case", "vendor (truth)", "ours", "aicostmanager*", "genai-prices extract"],
        usage_rows,
    )
    print("\ncost in USD, genai-prices calc_price of each usage (truth: of the vendor's counts):\n")
    table(
        ["case", "truth", "ours", "aicostmanager*", "genai-prices", "ours", "aicostmanager*"],
        cost_rows,
    )
    print(
        "* aicostmanager records the vendor's usage object as it is, with the service_key it"
        " built;\n  read here with genai-prices' extractor for the case's API ({} taken as"
        " absent), priced\n  with the model its service_key names (\u2020: the key names no"
        " model ('no model'); priced with\n  the case's model so the counts still show)."
        " genai-prices extract: of the response JSON, or of\n  a stream's final usage event"
        " ('-' for Anthropic: usage split over message_start and message_delta)."
    )
    print("\naicostmanager records as received (service_key; payload flattened, {} left out):")
    print("\n".join(payload_lines))
    print("\nour records as received (service_id, response_id, timestamp):")
    for case in CASES:
        rec = (ours_recs.get(case.key) or [None])[0]
        if rec is not None:
            sid, rid, ts = rec["service_id"], rec["response_id"], rec["timestamp"]
            print(f"  {case.label:34} {sid:38} {rid:24} {ts}")
    if problems:
        print("\nerrors:")
        print("\n".join(problems))
    return bad


def ratio(theirs: float | None, ours: float | None) -> str:
    if not theirs or not ours or theirs != theirs or ours != ours:
        return "-"
    return f"{theirs / ours:.2f}x"


def report_overhead(results: dict[str, Any]) -> None:
    section("2. overhead: us per track_llm_usage call (median of calls timed one by one)")
    ours_o = results["ours"].get("overhead", {})
    theirs_o = results["theirs"].get("overhead", {})
    variants = [
        ("mapping only", "extract", "extract"),
        ("no-op delivery", "noop", "noop"),
        ("queued: ours mem_queue / theirs persistent", "mem_queue", "persistent_queue"),
        ("queued: both persistent_queue", "persistent_queue", "persistent_queue"),
    ]
    rows = []
    for api in APIS:
        for label, ok, tk in variants:
            o = ours_o.get(api, {}).get(ok, {})
            t = theirs_o.get(api, {}).get(tk, {})
            rows.append(
                [
                    api,
                    label,
                    fmt(o.get("median_us"), ".2f"),
                    fmt(o.get("p99_us"), ".2f"),
                    fmt(t.get("median_us"), ".2f"),
                    fmt(t.get("p99_us"), ".2f"),
                    ratio(t.get("median_us"), o.get("median_us")),
                    f"{o.get('calls', 0):,}/{t.get('calls', 0):,}",
                ]
            )
    table(
        [
            "api",
            "variant",
            "ours med",
            "ours p99",
            "theirs med",
            "theirs p99",
            "theirs/ours",
            "calls o/t",
        ],
        rows,
        left=2,
    )
    print(
        "theirs/ours > 1: ours is faster. 'mapping only': ours extract_usage(), theirs"
        " get_usage_from_response().\n'no-op delivery': each tracker given a delivery that"
        " appends the record to a list (ours\naicm_manual.testing.CapturingDelivery). Queued:"
        " aicostmanager has no in-memory queue; its\npersistent_queue is SQLite, as ours"
        " (one measurement, shown in both queued rows).\nEach queued row re-tracks the same"
        " response object."
    )
    errs = [
        f"  {who} {api} {v}: {row['errors']} errors, last: {row['last_error']}"
        for who, o in (("ours", ours_o), ("theirs", theirs_o))
        for api, per in o.items()
        for v, row in per.items()
        if row.get("errors")
    ]
    if errs:
        print("errors while timing:\n" + "\n".join(errs))

    section("2b. overhead of the stream wrappers (no-op delivery; median per stream)")
    ours_s = results["ours"].get("streams", {})
    theirs_s = results["theirs"].get("streams", {})
    rows = []
    for api in APIS:
        for label in ("long", "short"):
            o = ours_s.get(f"{api}/{label}", {})
            t = theirs_s.get(f"{api}/{label}", {})
            n = o.get("events") or t.get("events") or 0
            o_add = (o["wrapped_us"] - o["bare_us"]) if o else None
            t_add = (t["wrapped_us"] - t["bare_us"]) if t else None
            per = 1 if label == "short" else n
            rows.append(
                [
                    api,
                    f"{n:,}",
                    fmt(o.get("bare_us"), ".1f"),
                    fmt(o.get("wrapped_us"), ".1f"),
                    fmt(t.get("wrapped_us"), ".1f"),
                    fmt(o_add / per if o_add is not None else None, ".3f"),
                    fmt(t_add / per if t_add is not None else None, ".3f"),
                    ratio(t_add, o_add),
                    "per event" if label == "long" else "per stream",
                ]
            )
    table(
        [
            "api",
            "events",
            "bare us",
            "ours us",
            "theirs us",
            "ours added",
            "theirs added",
            "theirs/ours",
            "added is",
        ],
        rows,
        left=1,
    )
    print(
        "bare: iterating the events alone (ours' child; theirs' child measured"
        f" {', '.join(fmt(theirs_s.get(f'{a}/long', {}).get('bare_us'), '.1f') for a in APIS)}"
        " us for the long ones).\n'added': (wrapped - bare) per event for the long stream"
        " (one track() included, spread over\nits events), per whole stream for the short"
        " one. Streams are tracked once at the end by ours,\nat the first event that carries"
        " usage by aicostmanager."
    )


def report_retrack(results: dict[str, Any], records: dict[str, list[Any]]) -> None:
    section("3. the same response tracked twice")
    collector = results["ours"].get("collector", {})
    groups = {
        name: by_case(records[peer])
        for name, peer in (
            ("ours", "ours-retrack"),
            ("theirs", "aicostmanager-retrack"),
            ("theirs_id", "aicostmanager-retrack-id"),
        )
    }

    def at_sink(name: str, key: str, ids: str) -> str:
        recs = groups[name].get(key, [])
        distinct_ids = len({r.get(ids) for r in recs})
        stamps = len({r.get("timestamp") for r in recs})
        return f"{len(recs)} / {distinct_ids} / {stamps}"

    rows = []
    for key in RETRACK:
        c = collector.get(key, {})
        billed = c.get("billed_nanos")
        rows.append(
            [
                BY_KEY[key].label,
                at_sink("ours", key, "response_id"),
                f"{c.get('stored', '-')} / {usd(Decimal(billed) / 10**9 if billed else None)}",
                at_sink("theirs", key, "response_id"),
                at_sink("theirs_id", key, "response_id"),
            ]
        )
    table(
        ["response", "ours at sink", "ours at collector", "theirs at sink", "theirs, id="],
        rows,
    )
    print(
        "at sink: records / distinct response_ids / distinct timestamps. At collector: events"
        " our collector\n(embedded_collector, SQLite) stored for the response id / USD billed"
        f" for them ({collector.get('events_total', '-')} events in all).\n'theirs, id=':"
        " aicostmanager called with response_id= the vendor's id."
    )


def report_environment(args: argparse.Namespace) -> None:
    section("environment")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    now = datetime.datetime.now(datetime.timezone.utc)
    commit = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(Path(__file__).resolve().parent), "status", "--porcelain"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    print(f"date          {now:%Y-%m-%d %H:%M UTC}")
    print(f"python        {platform.python_implementation()} {platform.python_version()}")
    print(f"platform      {platform.platform()} ({platform.machine()})")
    print(f"cpu           {cpu_model()}; os.cpu_count()={os.cpu_count()}, usable={affinity}")
    dists = ["aicm-manual", "aicostmanager", "genai-prices", "openai", "anthropic"]
    dists += ["google-genai", "pydantic"]
    print("packages      " + ", ".join(f"{d} {version(d)}" for d in dists))
    print(f"commit        {commit or '?'}{' (uncommitted changes)' if dirty else ''}")
    print(
        f"workload      {len(CASES)} cases; timed calls: ours up to {args.calls:,}, theirs up"
        f" to {args.calls_theirs:,}, each row capped at {args.max_s:g} s; long streams of"
        f" ~{args.stream_events:,} text events x {args.stream_reps} reps"
    )
    print(
        "timing        perf_counter_ns per call (gc on), 200 warm-up calls per row; timer"
        " overhead (~40 ns) included"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--calls", type=int, default=5000, help="timed calls per row, ours (5000)")
    p.add_argument("--calls-theirs", type=int, default=1000, help="theirs (1000)")
    p.add_argument("--max-s", type=float, default=2.0, help="time cap per timed row (2 s)")
    p.add_argument("--stream-events", type=int, default=1000, help="events of a long stream")
    p.add_argument("--stream-reps", type=int, default=30, help="repeats per long stream")
    p.add_argument("--flush-timeout", type=float, default=20.0, help="close bound per tracker")
    p.add_argument("--peer-timeout", type=float, default=180.0, help="kill a child after this")
    p.add_argument("--quick", action="store_true", help="1000/300 calls, 0.5 s rows, 10 reps")
    p.add_argument("--json", help="also write every figure to this file")
    p.add_argument("--child", choices=("ours", "theirs"), help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.calls, args.calls_theirs, args.max_s, args.stream_reps = 1000, 300, 0.5, 10
    return args


def main() -> None:
    args = parse_args()
    if args.child:
        child_main(args)
        return
    t_all = perf_ns()
    blocked: list[str] = []
    install_network_guard(blocked)
    missing = [
        d
        for d in ("aicostmanager", "openai", "anthropic", "google-genai")
        if version(d) == "not installed"
    ]
    if missing:
        raise SystemExit(
            f"not installed: {', '.join(missing)}; run .venv/bin/pip install -e '.[dev,bench]'"
        )
    print("aicm_manual LLM helpers benchmark: ours against aicostmanager 0.3.2, one loopback sink")
    report_environment(args)
    results: dict[str, Any] = {}
    records: dict[str, list[Any]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="aicm-llm-bench-"))
    sink, port = start_sink()
    try:
        control = SinkClient(port, "")
        control.call("POST", "/reset")
        control.call("POST", f"/keep?n={KEEP}")
        for who in ("ours", "theirs"):
            print(f"running {who} ...", end=" ", flush=True)
            results[who] = run_child(who, port, args, tmp)
            status = "FAILED" if "fatal" in results[who] else "done"
            print(f"{status} in {results[who]['child_wall_s']:.1f} s", flush=True)
        peers = ["ours-correct", "ours-retrack", "aicostmanager-correct"]
        peers += ["aicostmanager-retrack", "aicostmanager-retrack-id"]
        for peer in peers:
            records[peer] = control.call("GET", f"/records?peer={peer}")["records"]
    finally:
        stop_process(sink)
        shutil.rmtree(tmp, ignore_errors=True)
    for who, res in results.items():
        if "fatal" in res:
            print(f"{who} child failed: {res['fatal']}\n{res.get('traceback', '')}")
            print("\n".join(res.get("log_tail", [])))
        if res.get("blocked"):
            print(f"{who}: non-loopback attempts refused: {res['blocked'][:5]}")
    report_correctness(results, records)
    report_overhead(results)
    report_retrack(results, records)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"results": results, "records": records}, default=str)
        )
    print(f"\ntotal benchmark wall time: {(perf_ns() - t_all) / 1e9:.1f} s")


if __name__ == "__main__":
    main()
