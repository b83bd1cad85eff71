"""Delivery benchmark: our delivery engine against four peers, one loopback sink, one run.

Peers (each in its own fresh subprocess, all sending to the same sink process):

1. ours, ``aicm_manual.Tracker`` with ``delivery_type`` = ``mem_queue``,
   ``persistent_queue`` and ``immediate``;
2. aicostmanager 0.3.2 ``Tracker`` with ``delivery_type`` = ``immediate`` and
   ``persistent_queue``;
3. segment-analytics-python ``Client.track``;
4. posthog ``Posthog.capture``;
5. opentelemetry-sdk ``BatchSpanProcessor`` with the OTLP/HTTP (protobuf) span exporter:
   one span with the usage as attributes per record.

Every peer runs with its default settings; only the endpoint and a key are given.
Per peer it measures: ``track()`` median and p99 per call while the worker sends, records
lost in a burst (``--burst``, default 100,000) from one thread followed by a bounded
flush and shutdown, records per HTTP request, end-to-end records/s (first call to the
last record received by the sink), and peak RSS. Ours and aicostmanager's persistent
queues also get a spool-drain run: records tracked while the sink answers 503, then
timed from the sink's resume until it has all of them.

The sink (benchmarks/_sink.py) is a separate process on 127.0.0.1 with an ephemeral port;
every child also refuses any socket connection or name lookup that is not loopback.
Everything is bounded in time; the harness stops the sink and any child it started by pid.

Run: ``.venv/bin/python benchmarks/delivery.py`` (about 2.5 minutes) or with
``--quick``. Peers that are not installed are skipped with a hint. Nothing is asserted:
targets are printed next to the measured figures with PASS/MISS.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import errno
import functools
import http.client
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SCHEMAS = ROOT / "schemas"
SINK = HERE / "_sink.py"

CONFIG_ID = "openai-chat"
SERVICE_ID = "openai::gpt-4o-mini"
PAYLOAD: dict[str, Any] = {"model": "gpt-4o-mini", "input_tokens": 812, "output_tokens": 97}
API_KEY = "sk-bench"
PRELOAD = 2000  # untimed records queued just before the timed calls

perf_ns = time.perf_counter_ns
mono_ns = time.monotonic_ns  # CLOCK_MONOTONIC: comparable with the sink's clock on Linux

# name -> (label, kind, distributions it needs)
PEERS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ours-mem_queue": ("ours mem_queue", "queue", ("aicm-manual",)),
    "ours-persistent_queue": ("ours persistent_queue", "queue", ("aicm-manual",)),
    "ours-immediate": ("ours immediate", "immediate", ("aicm-manual",)),
    "aicostmanager-immediate": ("aicostmanager 0.3.2 immediate", "immediate", ("aicostmanager",)),
    "aicostmanager-persistent_queue": (
        "aicostmanager 0.3.2 persistent_queue",
        "queue",
        ("aicostmanager",),
    ),
    "segment": ("segment-analytics-python", "queue", ("segment-analytics-python",)),
    "posthog": ("posthog", "queue", ("posthog",)),
    "otel": (
        "otel BatchSpanProcessor+OTLP/HTTP",
        "queue",
        ("opentelemetry-sdk", "opentelemetry-exporter-otlp-proto-http"),
    ),
}
REFERENCE = "ours-mem_queue"
SPOOL_PEERS = ("ours-persistent_queue", "aicostmanager-persistent_queue")
INSTALL_HINT = (
    ".venv/bin/pip install 'aicostmanager==0.3.2' segment-analytics-python posthog "
    "opentelemetry-sdk opentelemetry-exporter-otlp-proto-http psutil"
)


# ============================================================================================
# Child side: one peer, one process
# ============================================================================================


def install_network_guard(blocked: list[str]) -> None:
    """Refuse every connection and name lookup that is not loopback (records the attempt)."""
    import socket

    loopback = {"127.0.0.1", "localhost", "::1", None}
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def allowed(address: Any) -> bool:
        return not isinstance(address, tuple) or address[0] in loopback

    def connect(self: socket.socket, address: Any) -> None:
        if not allowed(address):
            blocked.append(f"connect {address!r}")
            raise OSError(errno.ENETUNREACH, "benchmark network guard: loopback only")
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        if not allowed(address):
            blocked.append(f"connect {address!r}")
            return errno.ENETUNREACH
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in loopback:
            blocked.append(f"getaddrinfo {name!r}")
            raise socket.gaierror(socket.EAI_NONAME, "benchmark network guard: loopback only")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo


class SinkClient:
    def __init__(self, port: int, peer: str) -> None:
        self.port = port
        self.peer = peer

    def call(self, method: str, path: str) -> dict[str, Any]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path)
            return json.loads(conn.getresponse().read() or b"{}")
        finally:
            conn.close()

    def stats(self, since: int = 0) -> dict[str, Any]:
        """This peer's counts; batch sizes only over its requests after the ``since``th."""
        empty = {"requests": 0, "records": 0, "distinct": 0, "last_ns": 0, "busy_ns": 0}
        return self.call("GET", f"/stats?since={since}")["peers"].get(self.peer, empty)

    def wait(self, target: int, *, quiet_s: float, max_s: float, since: int = 0) -> dict[str, Any]:
        """Poll until ``distinct >= target``, or nothing new for ``quiet_s``, or ``max_s``."""
        end = time.monotonic() + max_s
        last = self.stats(since)
        changed = time.monotonic()
        while last["distinct"] < target and time.monotonic() < end:
            time.sleep(0.05)
            now = self.stats(since)
            if now["distinct"] != last["distinct"]:
                changed = time.monotonic()
            elif time.monotonic() - changed > quiet_s:
                return now
            last = now
        return last


def bounded(fn: Callable[[], Any], timeout: float) -> dict[str, Any]:
    """Run ``fn`` in a daemon thread; give up waiting after ``timeout`` seconds."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:
            box["error"] = f"{type(exc).__name__}: {exc}"

    t0 = perf_ns()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout)
    out = {"done": not thread.is_alive(), "seconds": (perf_ns() - t0) / 1e9}
    if "value" in box and isinstance(box["value"], (int, float, str, bool)):
        out["value"] = box["value"]
    if "error" in box:
        out["error"] = box["error"]
    return out


def rss_mb() -> float:
    try:
        import psutil

        return float(psutil.Process().memory_info().rss) / 2**20
    except ImportError:  # pragma: no cover - psutil is in the install hint
        return float("nan")


class Adapter:
    """One client under test. ``start`` returns a zero-argument call that tracks one record."""

    has_flush = True

    def __init__(self, name: str, base: str, tmp: Path) -> None:
        self.name = name
        self.base = base
        self.tmp = tmp
        self.notes: list[str] = []

    def start(self) -> Callable[[], Any]:
        raise NotImplementedError

    def flush(self, timeout: float) -> dict[str, Any]:
        return {"done": True, "seconds": 0.0, "value": "no flush API"}

    def close(self, timeout: float) -> dict[str, Any]:
        raise NotImplementedError

    def refused_check(self) -> Callable[[Any], bool] | None:
        """A test on track()'s return value: did the API say it dropped the record?
        None when the API does not say."""
        return None

    def left_in_spool(self) -> int | None:
        return None

    def extra(self) -> dict[str, Any]:
        return {}


class Ours(Adapter):
    def __init__(self, name: str, base: str, tmp: Path, mode: str) -> None:
        super().__init__(name, base, tmp)
        self.mode = mode
        self.db = tmp / "ours-spool.db"
        os.environ["AICM_INI_PATH"] = str(tmp / "absent.ini")
        os.environ["AICM_DB_PATH"] = str(self.db)
        self.trackers: list[Any] = []

    def start(self) -> Callable[[], Any]:
        from aicm_manual import Tracker

        kwargs: dict[str, Any] = {
            "schemas_dir": SCHEMAS,
            "aicm_api_base": self.base,
            "aicm_api_key": API_KEY,
            "delivery_type": self.mode,
        }
        if self.mode == "persistent_queue":
            kwargs["db_path"] = str(self.db)
        tracker = Tracker(CONFIG_ID, SERVICE_ID, **kwargs)
        self.trackers.append(tracker)
        return functools.partial(tracker.track, PAYLOAD)

    def flush(self, timeout: float) -> dict[str, Any]:
        out = bounded(lambda: self.trackers[-1].flush(timeout), timeout + 5)
        if "value" in out:
            out["value"] = f"{out['value']} pending"
        return out

    def close(self, timeout: float) -> dict[str, Any]:
        def close_all() -> str:
            return ", ".join(str(t.close(timeout)) for t in self.trackers) + " left"

        return bounded(close_all, timeout + 5)

    def health(self) -> dict[str, Any]:
        from aicm_manual import get_global_delivery_health

        snap = get_global_delivery_health()
        return {k: v for k, v in snap.items() if isinstance(v, (int, float, str, bool, type(None)))}

    def left_in_spool(self) -> int | None:
        h = self.health()
        return int(h.get("queued") or 0) if self.mode == "persistent_queue" else None

    def extra(self) -> dict[str, Any]:
        return {"health": self.health()}


class AicostManager(Adapter):
    has_flush = False

    def __init__(self, name: str, base: str, tmp: Path, mode: str) -> None:
        super().__init__(name, base, tmp)
        self.mode = mode
        self.db = tmp / "aicm-queue.db"
        self.log = tmp / "aicostmanager.log"
        # It reads these from its INI, then the environment; the INI lives in tmp because
        # its Tracker writes AICM_DELIVERY_TYPE back into it.
        os.environ.update(
            {
                "AICM_INI_PATH": str(tmp / "AICM.INI"),
                "AICM_API_BASE": base,
                "AICM_API_KEY": API_KEY,
                "AICM_DB_PATH": str(self.db),
                "AICM_LOG_FILE": str(self.log),
            }
        )
        self.trackers: list[Any] = []

    def start(self) -> Callable[[], Any]:
        from aicostmanager import Tracker

        tracker = Tracker(aicm_api_key=API_KEY, delivery_type=self.mode)
        self.trackers.append(tracker)
        return functools.partial(tracker.track, SERVICE_ID, PAYLOAD)

    def close(self, timeout: float) -> dict[str, Any]:
        # close() joins the worker, which drains the whole spool first: no timeout of its own
        return bounded(lambda: [t.close() for t in self.trackers] and "closed", timeout)

    def refused_check(self) -> Callable[[Any], bool] | None:
        if self.mode != "immediate":
            return None
        return lambda r: isinstance(r, dict) and bool(r.get("error"))

    def left_in_spool(self) -> int | None:
        if self.mode != "persistent_queue" or not self.db.exists():
            return None
        with contextlib.closing(sqlite3.connect(self.db, timeout=5)) as conn:
            return int(conn.execute("SELECT COUNT(*) FROM queue").fetchone()[0])

    def extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.mode == "persistent_queue" and self.db.exists():
            with contextlib.closing(sqlite3.connect(self.db, timeout=5)) as conn:
                rows = conn.execute("SELECT status, COUNT(*) FROM queue GROUP BY status")
                out["spool_by_status"] = dict(rows.fetchall())
        if self.log.exists():
            text = self.log.read_text(errors="replace")
            out["log_errors"] = text.count(" ERROR ")
            out["log_last_error"] = next(
                (ln for ln in reversed(text.splitlines()) if " ERROR " in ln), ""
            )[:300]
        return out


class Segment(Adapter):
    def start(self) -> Callable[[], Any]:
        from segment.analytics import Client

        self.client = Client(write_key="bench-write-key", host=self.base)
        return functools.partial(
            self.client.track, user_id="acme", event="llm_usage", properties=PAYLOAD
        )

    def flush(self, timeout: float) -> dict[str, Any]:
        return bounded(self.client.flush, timeout)  # queue.join(): no timeout of its own

    def close(self, timeout: float) -> dict[str, Any]:
        return bounded(self.client.shutdown, timeout)

    def refused_check(self) -> Callable[[Any], bool] | None:
        return lambda r: r[0] is False  # (False, msg) when its queue is full


class PostHog(Adapter):
    def start(self) -> Callable[[], Any]:
        from posthog import Posthog

        # No personal/secret key: no feature-flag poller, no /flags calls.
        self.client = Posthog("phc_bench", host=self.base)
        return functools.partial(
            self.client.capture, "llm_usage", distinct_id="acme", properties=PAYLOAD
        )

    def flush(self, timeout: float) -> dict[str, Any]:
        return bounded(lambda: self.client.flush(timeout_seconds=timeout), timeout + 5)

    def close(self, timeout: float) -> dict[str, Any]:
        return bounded(self.client.shutdown, timeout)

    def refused_check(self) -> Callable[[Any], bool] | None:
        return lambda r: r is None  # the event's uuid, or None when dropped


class Otel(Adapter):
    def start(self) -> Callable[[], Any]:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.provider = TracerProvider()
        exporter = OTLPSpanExporter(endpoint=self.base + "/v1/traces")
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        tracer = self.provider.get_tracer("aicm-bench")
        start_span = tracer.start_span

        def track() -> None:
            start_span("llm_usage", attributes=PAYLOAD).end()

        return track

    def flush(self, timeout: float) -> dict[str, Any]:
        return bounded(lambda: self.provider.force_flush(int(timeout * 1000)), timeout + 5)

    def close(self, timeout: float) -> dict[str, Any]:
        return bounded(self.provider.shutdown, timeout)


def make_adapter(name: str, base: str, tmp: Path) -> Adapter:
    if name.startswith("ours-"):
        return Ours(name, base, tmp, name.split("-", 1)[1])
    if name.startswith("aicostmanager-"):
        return AicostManager(name, base, tmp, name.split("-", 1)[1])
    return {"segment": Segment, "posthog": PostHog, "otel": Otel}[name](name, base, tmp)


def timed_calls(track: Callable[[], Any], n: int, max_s: float) -> tuple[list[int], int, str]:
    """Time each of up to ``n`` calls; stop early at ``max_s``. Returns ns per call."""
    lat = [0] * n
    errors = 0
    last_error = ""
    deadline = perf_ns() + int(max_s * 1e9)
    pc = perf_ns
    done = 0
    for i in range(n):
        t0 = pc()
        try:
            track()
        except Exception as exc:
            errors += 1
            last_error = f"{type(exc).__name__}: {exc}"[:300]
        t1 = pc()
        lat[i] = t1 - t0
        done = i + 1
        if t1 > deadline:
            break
    return lat[:done], errors, last_error


def _never(ret: Any) -> bool:
    return False


def burst_calls(
    track: Callable[[], Any],
    n: int,
    max_s: float,
    refused_check: Callable[[Any], bool] | None = None,
) -> dict[str, Any]:
    """Call ``track`` up to ``n`` times as fast as possible; stop early at ``max_s``.

    Return values are tested and dropped at once (keeping 100,000 of them would charge the
    harness's memory to the peer's peak RSS)."""
    check = refused_check or _never
    refused = errors = done = 0
    last_error = ""
    deadline = perf_ns() + int(max_s * 1e9)
    for i in range(n):
        try:
            if check(track()):
                refused += 1
        except Exception as exc:
            errors += 1
            last_error = f"{type(exc).__name__}: {exc}"[:300]
        done = i + 1
        if not i & 255 and perf_ns() > deadline:
            break
    return {
        "sent": done,
        "errors": errors,
        "last_error": last_error,
        "refused": refused if refused_check is not None else None,
    }


def pct(sorted_ns: list[int], q: float) -> float:
    if not sorted_ns:
        return float("nan")
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def child_main(args: argparse.Namespace) -> None:
    blocked: list[str] = []
    install_network_guard(blocked)
    tmp = Path(tempfile.mkdtemp(prefix=f"aicm-bench-{args.child}-"))
    base = f"http://127.0.0.1:{args.port}/p/{args.child}"
    sink = SinkClient(args.port, args.child)
    immediate = PEERS[args.child][1] == "immediate"
    res: dict[str, Any] = {"peer": args.child, "tmp": str(tmp), "blocked": blocked}
    t_start = perf_ns()

    def save() -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        sampled = [v for k, v in res.items() if k.startswith("rss_") and v == v]
        res["peak_rss_mb"] = max([ru.ru_maxrss / 1024, *sampled])  # ru_maxrss: KiB on Linux
        res["cpu_s"] = ru.ru_utime + ru.ru_stime
        res["wall_s"] = (perf_ns() - t_start) / 1e9
        Path(args.result).write_text(json.dumps(res, default=str))

    try:
        rss0 = rss_mb()
        adapter = make_adapter(args.child, base, tmp)
        t0 = perf_ns()
        track = adapter.start()
        res["setup_ms"] = (perf_ns() - t0) / 1e6
        res["rss_after_setup_mb"] = rss_mb()
        res["rss_before_setup_mb"] = rss0

        # -- warm-up, then track() timed call by call while the worker sends ----------------
        # The warm-up opens connections and fills caches; then PRELOAD untimed records give
        # the worker a backlog to send, and the timed calls start at once, so the worker is
        # serialising and sending during the window (the sink's request count shows it).
        n_lat = min(args.latency_calls, 2000) if immediate else args.latency_calls
        burst_calls(track, 200 if immediate else 2000, 10.0)
        adapter.flush(10.0)
        before = sink.wait(10**12, quiet_s=0.5, max_s=10.0)
        preload = 0 if immediate else PRELOAD
        burst_calls(track, preload, 10.0)
        t0_mono = mono_ns()
        lat, errors, last_error = timed_calls(track, n_lat, args.latency_max_s)
        t1_mono = mono_ns()
        during = sink.stats()
        lat_sorted = sorted(lat)
        fl = adapter.flush(15.0)
        after = sink.wait(before["distinct"] + preload + len(lat), quiet_s=1.0, max_s=10.0)
        res["latency"] = {
            "preload": preload,
            "calls": len(lat),
            "errors": errors,
            "last_error": last_error,
            "p50_us": pct(lat_sorted, 0.5),
            "p90_us": pct(lat_sorted, 0.9),
            "p99_us": pct(lat_sorted, 0.99),
            "max_us": lat_sorted[-1] / 1000 if lat_sorted else float("nan"),
            "mean_us": statistics.fmean(lat) / 1000 if lat else float("nan"),
            "window_ms": (t1_mono - t0_mono) / 1e6,
            "sink_requests_during": during["requests"] - before["requests"],
            "sink_records_during": during["distinct"] - before["distinct"],
            "delivered_after_flush": after["distinct"] - before["distinct"],
            "lost": preload + len(lat) - (after["distinct"] - before["distinct"]),
            "flush": fl,
        }

        # -- spool drain: track while the sink answers 503, then time the drain -------------
        if args.child in SPOOL_PEERS and args.spool > 0:
            before = sink.stats()
            sink.call("POST", "/pause")
            max_s = 15.0 if args.child.startswith("ours") else 8.0
            t0 = perf_ns()
            out = burst_calls(track, args.spool, max_s)
            enqueue_s = (perf_ns() - t0) / 1e9
            resumed = sink.call("POST", "/resume")["resumed_at_ns"]
            after = sink.wait(
                before["distinct"] + out["sent"], quiet_s=15.0, max_s=40.0, since=before["requests"]
            )
            got = after["distinct"] - before["distinct"]
            requests = after["requests"] - before["requests"]
            drain_s = (after["last_ns"] - resumed) / 1e9 if got else float("nan")
            first_ok = after.get("first_ok_after_resume_ns") or 0
            res["spool"] = {
                "tracked": out["sent"],
                "errors": out["errors"],
                "last_error": out["last_error"],
                "requests": requests,
                "records_per_request": got / requests if requests else 0.0,
                "sink_busy_ms": (after["busy_ns"] - before["busy_ns"]) / 1e6,
                "enqueue_s": enqueue_s,
                "rejected_503": after.get("rejected_paused", 0) - before.get("rejected_paused", 0),
                "delivered": got,
                "drain_s_from_resume": drain_s,
                "drain_rate_from_resume": got / drain_s if got and drain_s > 0 else 0.0,
                "wait_to_first_ok_s": (first_ok - resumed) / 1e9 if first_ok else float("nan"),
                "drain_rate_from_first_ok": (
                    got / ((after["last_ns"] - first_ok) / 1e9)
                    if got and first_ok and after["last_ns"] > first_ok
                    else 0.0
                ),
            }

        # -- burst with defaults, bounded flush and shutdown ----------------------------------
        before = sink.stats()
        res["rss_before_burst_mb"] = rss_mb()
        t0_mono = mono_ns()
        t0 = perf_ns()
        out = burst_calls(track, args.burst, args.burst_max_s, adapter.refused_check())
        enqueue_s = (perf_ns() - t0) / 1e9
        res["rss_after_enqueue_mb"] = rss_mb()
        at_enqueue_end = sink.stats()
        sent = out["sent"]
        fl = adapter.flush(args.flush_timeout) if adapter.has_flush else None
        at_flush = sink.stats()
        cl = adapter.close(args.flush_timeout)
        after = sink.wait(
            before["distinct"] + sent, quiet_s=1.5, max_s=15.0, since=before["requests"]
        )
        delivered = after["distinct"] - before["distinct"]
        records = after["records"] - before["records"]
        requests = after["requests"] - before["requests"]
        e2e_s = (after["last_ns"] - t0_mono) / 1e9 if delivered else float("nan")
        spooled = adapter.left_in_spool()
        res["burst"] = {
            "asked": args.burst,
            "sent": sent,
            "errors": out["errors"],
            "last_error": out["last_error"],
            "refused_by_api": out["refused"],
            "enqueue_s": enqueue_s,
            "calls_per_s": sent / enqueue_s if enqueue_s else 0.0,
            "delivered_at_enqueue_end": at_enqueue_end["distinct"] - before["distinct"],
            "sink_busy_ms": (after["busy_ns"] - before["busy_ns"]) / 1e6,
            "flush": fl,
            "delivered_at_flush_return": at_flush["distinct"] - before["distinct"],
            "close": cl,
            "delivered": delivered,
            "duplicates": records - delivered,
            "undelivered": sent - delivered,
            "left_in_spool": spooled,
            "lost": sent - delivered - (spooled or 0),
            "requests": requests,
            "records_per_request": records / requests if requests else 0.0,
            "batch_median": after.get("batch_median", 0),
            "batch_max": after.get("batch_max", 0),
            "e2e_s": e2e_s,
            "e2e_rate": delivered / e2e_s if delivered and e2e_s > 0 else 0.0,
        }
        res["other_paths"] = after.get("other_paths", {})
        res["extra"] = adapter.extra()
    except BaseException as exc:
        import traceback

        res["fatal"] = f"{type(exc).__name__}: {exc}"
        res["traceback"] = traceback.format_exc()[-3000:]
    save()
    if not args.keep_tmp:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # never wait on a peer's atexit hook or non-daemon thread


# ============================================================================================
# Parent side: sink, children, tables
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


def ours_available() -> tuple[bool, str]:
    try:
        from aicm_manual import DeliveryType, get_global_delivery_health  # noqa: F401
    except ImportError as exc:
        return False, str(exc)
    return True, ""


def start_sink() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(SINK), str(SCHEMAS)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "PORT":
        stop_process(proc)
        raise SystemExit("the sink did not start")
    return proc, int(line[1])


def stop_process(proc: subprocess.Popen[Any], wait: float = 5.0) -> None:
    if proc.poll() is None:
        proc.terminate()  # by pid: the Popen object targets exactly the process we started
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(wait)


def clean_env() -> dict[str, str]:
    """This environment without proxies: every benchmark talks to 127.0.0.1 only."""
    env = dict(os.environ, NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY"):
        env.pop(var, None)
    return env


def run_logged(
    cmd: list[str], log: Path, timeout: float
) -> tuple[subprocess.Popen[bytes], float, bool]:
    """Run a child with its output in ``log``, stopped by pid after ``timeout`` s:
    (process, wall seconds, whether it was stopped)."""
    t0 = perf_ns()
    killed = False
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=clean_env())
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_process(proc)
            killed = True
    return proc, (perf_ns() - t0) / 1e9, killed


def run_child(name: str, port: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    result = tmp / f"{name}.json"
    log = tmp / f"{name}.log"
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        name,
        "--port",
        str(port),
        "--result",
        str(result),
        "--burst",
        str(args.burst),
        "--latency-calls",
        str(args.latency_calls),
        "--spool",
        str(args.spool),
        "--burst-max-s",
        str(args.burst_max_s),
        "--latency-max-s",
        str(args.latency_max_s),
        "--flush-timeout",
        str(args.flush_timeout),
        *(["--keep-tmp"] if args.keep_tmp else []),
    ]
    proc, wall, _ = run_logged(cmd, log, args.peer_timeout)
    text = log.read_text(errors="replace")
    lines = text.splitlines()
    if result.exists():
        res = json.loads(result.read_text())
    else:
        res = {"peer": name, "fatal": f"no result (exit {proc.returncode}, {wall:.0f} s)"}
    res["child_wall_s"] = wall
    res["log_lines"] = len(lines)
    res["log_tail"] = lines[-3:]
    return res


def fmt(value: Any, spec: str = ".1f", missing: str = "-") -> str:
    if value is None or (isinstance(value, float) and value != value):
        return missing
    if isinstance(value, (int, float)):
        return format(value, spec)
    return str(value)


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


def report(results: dict[str, dict[str, Any]], args: argparse.Namespace, ours_ok: bool) -> None:
    ref = results.get(REFERENCE, {})

    def ratio(peer: dict[str, Any], key: tuple[str, str], higher_better: bool) -> str:
        try:
            ours_v = ref[key[0]][key[1]]
            v = peer[key[0]][key[1]]
        except (KeyError, TypeError):
            return "-"
        if not ours_v or not v:
            return "-"
        return f"{(v / ours_v if not higher_better else ours_v / v):.2f}x"

    section(f"burst of {args.burst:,} records from one thread, default settings")
    headers = [
        "peer",
        "track p50 us",
        "p99 us",
        "sent",
        "delivered",
        "lost",
        "spooled",
        "rec/req",
        "e2e rec/s",
        "calls/s",
        "peak RSS MB",
    ]
    rows = []
    for name, r in results.items():
        label = PEERS[name][0]
        if r.get("skipped"):
            rows.append([label, r["skipped"], *[""] * (len(headers) - 2)])
            continue
        if "burst" not in r:
            rows.append([label, "failed: " + str(r.get("fatal", "?"))[:60]])
            rows[-1] += [""] * (len(headers) - 2)
            continue
        lat, b = r["latency"], r["burst"]
        capped = "*" if b["sent"] < b["asked"] else ""
        rows.append(
            [
                label,
                fmt(lat["p50_us"], ".2f"),
                fmt(lat["p99_us"], ".2f"),
                f"{b['sent']:,}{capped}",
                f"{b['delivered']:,}",
                f"{b['lost']:,}",
                fmt(b["left_in_spool"], ","),
                fmt(b["records_per_request"], ".1f"),
                fmt(b["e2e_rate"], ",.0f"),
                fmt(b["calls_per_s"], ",.0f"),
                fmt(r.get("peak_rss_mb"), ".1f"),
            ]
        )
    table(headers, rows)
    print(
        "track p50/p99: per call, timed one by one while the worker sends (immediate modes: no"
        " worker, each call is a blocking POST).\n"
        "lost = sent - delivered - spooled (spooled: still in the peer's durable spool when the"
        " bounded shutdown returned).\n"
        "* the burst hit its time cap (--burst-max-s) before all records were tracked."
    )

    if ours_ok and "latency" in ref:
        section(f"ratios against {PEERS[REFERENCE][0]} (>1.00x: ours is better)")
        headers = ["peer", "track p50", "track p99", "e2e rec/s", "rec/req", "peak RSS"]
        rows = []
        for name, r in results.items():
            if "burst" not in r or name == REFERENCE:
                continue
            rows.append(
                [
                    PEERS[name][0],
                    ratio(r, ("latency", "p50_us"), False),
                    ratio(r, ("latency", "p99_us"), False),
                    ratio(r, ("burst", "e2e_rate"), True),
                    ratio(r, ("burst", "records_per_request"), True),
                    (
                        f"{r['peak_rss_mb'] / ref['peak_rss_mb']:.2f}x"
                        if ref.get("peak_rss_mb")
                        else "-"
                    ),
                ]
            )
        table(headers, rows)

    section("details per peer")
    for name, r in results.items():
        if r.get("skipped"):
            continue
        print(f"\n{PEERS[name][0]}  ({name}, child wall {r.get('child_wall_s', 0):.1f} s)")
        if "fatal" in r:
            print(f"  FAILED: {r['fatal']}")
            for ln in str(r.get("traceback", "")).splitlines()[-6:]:
                print(f"    {ln}")
        if "latency" in r:
            lat = r["latency"]
            print(
                f"  track() timed: {lat['calls']:,} calls in {lat['window_ms']:.0f} ms after"
                f" {lat['preload']:,} untimed;"
                f" p50 {fmt(lat['p50_us'], '.2f')} p90 {fmt(lat['p90_us'], '.2f')}"
                f" p99 {fmt(lat['p99_us'], '.2f')} max {fmt(lat['max_us'], ',.0f')} us;"
                f" sink got {lat['sink_requests_during']} requests"
                f" ({lat['sink_records_during']:,} records) during the window;"
                f" delivered after flush {lat['delivered_after_flush']:,}, lost {lat['lost']:,}"
                + (f"; errors {lat['errors']} ({lat['last_error']})" if lat["errors"] else "")
            )
        if "spool" in r:
            s = r["spool"]
            print(
                f"  spool drain: {s['tracked']:,} tracked in {s['enqueue_s']:.2f} s while the sink"
                f" answered 503 ({s['rejected_503']} rejected requests); after resume:"
                f" {s['delivered']:,} delivered in {s['requests']:,} requests"
                f" ({fmt(s['records_per_request'], '.1f')} per request, sink busy"
                f" {s['sink_busy_ms']:.0f} ms) in {fmt(s['drain_s_from_resume'], '.2f')} s ="
                f" {fmt(s['drain_rate_from_resume'], ',.0f')} rec/s; first 200 after"
                f" {fmt(s['wait_to_first_ok_s'], '.2f')} s, from then"
                f" {fmt(s['drain_rate_from_first_ok'], ',.0f')} rec/s"
                + (f"; errors {s['errors']} ({s['last_error']})" if s["errors"] else "")
            )
        if "burst" in r:
            b = r["burst"]
            fl, cl = b["flush"], b["close"]
            print(
                f"  burst: {b['sent']:,} of {b['asked']:,} tracked in {b['enqueue_s']:.2f} s"
                f" ({fmt(b['calls_per_s'], ',.0f')} calls/s; the sink had"
                f" {b['delivered_at_enqueue_end']:,} by then); refused by the API:"
                f" {fmt(b['refused_by_api'], ',', 'not reported')}; errors raised: {b['errors']}"
                + (f" ({b['last_error']})" if b["errors"] else "")
            )
            if fl is not None:
                print(
                    f"  flush: {'returned' if fl['done'] else 'STILL RUNNING'} after"
                    f" {fl['seconds']:.2f} s {fl.get('value', '')} {fl.get('error', '')};"
                    f" delivered by then {b['delivered_at_flush_return']:,}"
                )
            print(
                f"  close/shutdown: {'returned' if cl['done'] else 'STILL RUNNING'} after"
                f" {cl['seconds']:.2f} s {cl.get('value', '')} {cl.get('error', '')}"
            )
            print(
                f"  sink: {b['delivered']:,} distinct records in {b['requests']:,} requests"
                f" (median batch {b['batch_median']}, max {b['batch_max']}),"
                f" duplicates {b['duplicates']:,}; last record"
                f" {fmt(b['e2e_s'], '.2f')} s after the first call; sink busy"
                f" {b['sink_busy_ms']:.0f} ms"
            )
        mem = [
            ("before setup", r.get("rss_before_setup_mb")),
            ("after setup", r.get("rss_after_setup_mb")),
            ("before burst", r.get("rss_before_burst_mb")),
            ("after enqueue", r.get("rss_after_enqueue_mb")),
            ("peak", r.get("peak_rss_mb")),
        ]
        print(
            "  RSS MB: "
            + ", ".join(f"{k} {fmt(v)}" for k, v in mem)
            + f"; CPU {r.get('cpu_s', 0):.1f} s"
        )
        extra = r.get("extra") or {}
        for key, value in extra.items():
            print(f"  {key}: {value}")
        if r.get("other_paths"):
            print(f"  other paths requested: {r['other_paths']}")
        if r.get("blocked"):
            print(f"  NETWORK GUARD blocked: {r['blocked'][:5]}")
        print(
            f"  child output: {r.get('log_lines', 0):,} lines; last: {r.get('log_tail', [])[-1:]}"
        )

    section("targets for ours (reported, not asserted)")
    mem_q = results.get("ours-mem_queue", {})
    pq = results.get("ours-persistent_queue", {})

    def get(r: dict[str, Any], *path: str) -> Any:
        cur: Any = r
        for p in path:
            if not isinstance(cur, dict) or p not in cur:
                return None
            cur = cur[p]
        return cur

    targets = [
        (
            "mem_queue track() p50 while sending",
            "<= 2.5 us",
            get(mem_q, "latency", "p50_us"),
            2.5,
            "le",
            " us",
        ),
        (
            "mem_queue track() p99 while sending",
            "<= 12 us",
            get(mem_q, "latency", "p99_us"),
            12.0,
            "le",
            " us",
        ),
        (f"mem_queue burst of {args.burst:,}: lost", "0", get(mem_q, "burst", "lost"), 0, "le", ""),
        (
            "mem_queue records per request",
            ">= 500",
            get(mem_q, "burst", "records_per_request"),
            500,
            "ge",
            "",
        ),
        (
            "mem_queue end to end",
            ">= 110,000/s",
            get(mem_q, "burst", "e2e_rate"),
            110_000,
            "ge",
            "/s",
        ),
        (
            "persistent_queue track() p50",
            "<= 20 us",
            get(pq, "latency", "p50_us"),
            20.0,
            "le",
            " us",
        ),
        (
            "persistent_queue track() p99",
            "<= 300 us",
            get(pq, "latency", "p99_us"),
            300.0,
            "le",
            " us",
        ),
        (
            "persistent_queue spool drain",
            ">= 60,000/s",
            get(pq, "spool", "drain_rate_from_resume"),
            60_000,
            "ge",
            "/s",
        ),
    ]
    rows = []
    for label, target, value, limit, op, unit in targets:
        if value is None:
            verdict = "n/a (engine not available yet)" if not ours_ok else "n/a (no figure)"
            rows.append([label, target, "-", verdict])
            continue
        ok = value <= limit if op == "le" else value >= limit
        if "/s" in unit:
            shown = f"{value:,.0f}{unit}"
        elif unit:
            shown = f"{value:.2f}{unit}"
        else:
            shown = f"{value:,.1f}" if isinstance(value, float) else f"{value:,}"
        rows.append([label, target, shown, "PASS" if ok else "MISS"])
    table(["target", "target", "measured", "result"], rows, left=1)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--burst", type=int, default=100_000, help="records per burst (100000)")
    p.add_argument("--latency-calls", type=int, default=20_000, help="timed track() calls")
    p.add_argument("--spool", type=int, default=50_000, help="records for the spool drain")
    p.add_argument("--burst-max-s", type=float, default=20.0, help="time cap on a burst")
    p.add_argument("--latency-max-s", type=float, default=10.0, help="time cap on timed calls")
    p.add_argument("--flush-timeout", type=float, default=20.0, help="flush and close bound")
    p.add_argument("--peer-timeout", type=float, default=150.0, help="kill a child after this")
    p.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset")
    p.add_argument("--quick", action="store_true", help="burst 10,000, 5,000 timed, spool 10,000")
    p.add_argument("--json", help="also write every figure to this file")
    p.add_argument("--keep-tmp", action="store_true", help="keep spools, logs and results")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.burst, args.latency_calls, args.spool = 10_000, 5_000, 10_000
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
    ours_ok, why = ours_available()

    print(f"aicm_manual delivery benchmark: one loopback sink, {len(names)} clients")
    section("environment")
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    now = datetime.datetime.now(datetime.timezone.utc)
    print(f"date          {now:%Y-%m-%d %H:%M UTC}")
    print(f"python        {platform.python_implementation()} {platform.python_version()}")
    print(f"platform      {platform.platform()} ({platform.machine()})")
    print(f"cpu           {cpu_model()}; os.cpu_count()={os.cpu_count()}, usable={affinity}")
    dists = [
        "aicm-manual",
        "aicostmanager",
        "segment-analytics-python",
        "posthog",
        "opentelemetry-sdk",
        "opentelemetry-exporter-otlp-proto-http",
        "protobuf",
        "requests",
        "httpx",
        "psutil",
    ]
    print("packages      " + ", ".join(f"{d} {version(d)}" for d in dists))
    print(f"tmp           {tempfile.gettempdir()} (SQLite spools live here)")
    print(
        f"workload      payload {json.dumps(PAYLOAD)}; config {CONFIG_ID!r}, service"
        f" {SERVICE_ID!r}; burst {args.burst:,}; timed calls {args.latency_calls:,};"
        f" spool {args.spool:,}"
    )
    print(
        "sink          benchmarks/_sink.py: asyncio HTTP/1.1 keep-alive server in its own"
        " process on 127.0.0.1; JSON uploads parsed with json, OTLP with opentelemetry-proto;"
        " records counted by distinct id"
    )
    print(
        "timing        perf_counter_ns per call (gc on: it is part of real latency);"
        " e2e from the first burst call to the sink's last record (CLOCK_MONOTONIC in both)"
    )
    if not ours_ok:
        print(f"ours: engine not available yet ({why}); skipping ours")

    results: dict[str, dict[str, Any]] = {}
    tmp = Path(tempfile.mkdtemp(prefix="aicm-delivery-bench-"))
    sink, port = start_sink()
    try:
        for name in names:
            missing = [d for d in PEERS[name][2] if version(d) == "not installed"]
            if name.startswith("ours") and not ours_ok:
                results[name] = {"skipped": "engine not available yet"}
                continue
            if missing:
                results[name] = {"skipped": f"not installed: {', '.join(missing)}"}
                print(f"skip {name}: {', '.join(missing)} not installed; {INSTALL_HINT}")
                continue
            SinkClient(port, name).call("POST", "/reset")
            print(f"running {name} ...", end=" ", flush=True)
            results[name] = run_child(name, port, args, tmp)
            status = "FAILED" if "fatal" in results[name] else "done"
            print(f"{status} in {results[name]['child_wall_s']:.1f} s", flush=True)
    finally:
        stop_process(sink)
        if not args.keep_tmp:
            shutil.rmtree(tmp, ignore_errors=True)

    report(results, args, ours_ok)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))
    print(f"\ntotal benchmark wall time: {(perf_ns() - t_all) / 1e9:.1f} s")


if __name__ == "__main__":
    main()
