"""Validation benchmark: aicm_manual.TypeValidator against two peers, side by side.

Peers, all validating the same 6-field usage schema in the same process and run:

1. ours: ``aicm_manual.TypeValidator(schema).validate(payload)``;
2. pydantic v2 strict: ``TypeAdapter(TypedDict).validate_python(payload)`` with
   ``strict=True`` and ``extra="forbid"`` set on the TypedDict;
3. aicostmanager 0.3.2: ``aicostmanager.type_validator.TypeValidator.validate_value`` called
   per field by a loop that mirrors how aicostmanager's manual ``Tracker.track`` validated a
   payload (required fields, extra fields, one message per field). It cannot parse nested
   generics, so ``Dict[str, List[int]]`` is given to it flattened as ``dict``.

Run with ``make bench`` or ``.venv/bin/python benchmarks/validation.py``. Nothing is asserted:
targets are printed next to the measured figures with PASS/MISS.
"""

import collections
import datetime
import gc
import json
import math
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from importlib import metadata
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError, with_config
from typing_extensions import NotRequired, TypedDict

import aicm_manual
from aicm_manual import TypeValidator, UsageValidationError

try:
    from aicostmanager.type_validator import TypeValidator as AicostTypeValidator
except ImportError:  # pragma: no cover - the bench extra pins it
    raise SystemExit(
        "aicostmanager is not installed: run `make bench` or "
        "`.venv/bin/pip install 'aicostmanager==0.3.2'`"
    ) from None

perf_ns = time.perf_counter_ns

# --------------------------------------------------------------------------------------------
# Schema, peers and records
# --------------------------------------------------------------------------------------------

SCHEMA: dict[str, str] = {
    "tokens": "int",
    "model": "str",
    "latency": "Optional[float]",
    "tags": "List[str]",
    "breakdown": "Dict[str, List[int]]",
    "mode": "Union[int, str]",
}
# aicostmanager's validator matches type strings with regexes such as r"Dict\[(\w+),\s*(\w+)\]":
# "Dict[str, List[int]]" matches none of them and is rejected as "Unsupported type string",
# so every valid payload would fail. It gets the flattened type it can check instead.
AICOST_SCHEMA: dict[str, str] = {**SCHEMA, "breakdown": "dict"}

STRICT = ConfigDict(strict=True, extra="forbid")


@with_config(STRICT)
class Usage(TypedDict):
    tokens: int
    model: str
    latency: NotRequired[float | None]
    tags: list[str]
    breakdown: dict[str, list[int]]
    mode: int | str


VALID: dict[str, Any] = {
    "tokens": 1234,
    "model": "gpt-4o-mini",
    "latency": 0.412,
    "tags": ["chat", "prod", "eu-west"],
    "breakdown": {"input": [512, 256, 128], "output": [200, 100, 38, 0], "cached": [64, 32, 16]},
    "mode": "batch",
}
# Exactly 5 problems: a wrong type, a misspelt field (so one unexpected field and one missing
# required field), a bad list item and a bad item nested inside the breakdown dict.
INVALID: dict[str, Any] = {
    "tokens": "1234",
    "modle": "gpt-4o-mini",
    "latency": 0.412,
    "tags": ["chat", 7, "eu-west"],
    "breakdown": {"input": [512, "256", 128], "output": [200, 100, 38, 0]},
    "mode": "batch",
}
INVALID_PROBLEMS = 5
BATCH_SIZE = 10_000

MODELS = ["gpt-4o-mini", "gpt-4o", "claude-3-5-sonnet", "gemini-1.5-pro", "llama-3-70b"]
TAGS = ["chat", "prod", "staging", "eu-west", "us-east", "batch", "stream", "eval", "cache"]
BREAKDOWN_KEYS = ["input", "output", "cached", "reasoning"]


def make_valid(rng: random.Random) -> dict[str, Any]:
    record: dict[str, Any] = {
        "tokens": rng.randrange(1, 200_000),
        "model": rng.choice(MODELS),
        "tags": rng.sample(TAGS, 3),
        "breakdown": {
            key: [rng.randrange(0, 5000) for _ in range(rng.randint(3, 4))]
            for key in rng.sample(BREAKDOWN_KEYS, rng.randint(2, 3))
        },
        "mode": rng.choice(["batch", "stream", 1, 2]),
    }
    roll = rng.random()
    if roll < 0.8:
        record["latency"] = rng.uniform(0.05, 5.0)
    elif roll < 0.9:
        record["latency"] = None
    return record  # else: latency omitted, which all three peers allow


def make_invalid(rng: random.Random) -> dict[str, Any]:
    record = make_valid(rng)
    record["tokens"] = str(record["tokens"])
    record["modle"] = record.pop("model")
    record["tags"][rng.randrange(3)] = rng.randrange(100)
    items = next(iter(record["breakdown"].values()))
    items[rng.randrange(len(items))] = str(rng.randrange(5000))
    return record


class AicostUsageValidationError(ValueError):
    """The error aicostmanager's manual Tracker raised, with the same message formatting."""

    def __init__(self, errors: dict[str, str], missing: list[str], extra: list[str]) -> None:
        messages = []
        if missing:
            messages.append(f"Missing fields: {', '.join(missing)}")
        if errors:
            messages.append("Type errors: " + "; ".join(f"{f}: {m}" for f, m in errors.items()))
        if extra:
            messages.append(f"Unexpected fields: {', '.join(extra)}")
        super().__init__("; ".join(messages))
        self.errors = errors
        self.missing_fields = missing
        self.extra_fields = extra


def make_aicost_check(schema: Mapping[str, str]) -> Callable[[Mapping[str, Any]], None]:
    """The payload loop of aicostmanager's manual ``Tracker.track`` around ``validate_value``.

    aicostmanager 0.3.2 still ships ``type_validator.TypeValidator``, but its ``Tracker`` no
    longer calls it; this mirrors the loop of the earlier manual ``Tracker.track``: a field
    absent from the payload is missing unless its type string contains "Optional", every
    present field is checked (first problem only), and keys not in the schema are extra.
    """
    validator = AicostTypeValidator()
    fields = dict(schema)

    def check(usage: Mapping[str, Any]) -> None:
        errors: dict[str, str] = {}
        missing: list[str] = []
        for field, type_str in fields.items():
            if field not in usage:
                if "Optional" not in type_str:
                    missing.append(field)
                continue
            ok, err = validator.validate_value(usage[field], type_str)
            if not ok:
                errors[field] = err
        extra = [f for f in usage if f not in fields]
        if errors or missing or extra:
            raise AicostUsageValidationError(errors, missing, extra)

    return check


OURS = TypeValidator(SCHEMA)
PYDANTIC = TypeAdapter(Usage)
PYDANTIC_LIST = TypeAdapter(list[Usage])
AICOST = make_aicost_check(AICOST_SCHEMA)
# Ours given the same shallow breakdown check as aicostmanager, for a like-for-like ratio.
# ("Dict[Any, Any]" is canonically "dict"; spelled out because bare "dict" currently fails
# to parse in aicm_manual.)
OURS_FLAT = TypeValidator({**SCHEMA, "breakdown": "Dict[Any, Any]"})

PEERS = ("ours", "pydantic", "aicost")
PEER_LABELS = {
    "ours": "aicm_manual TypeValidator.validate",
    "pydantic": "pydantic strict TypeAdapter",
    "aicost": "aicostmanager 0.3.2 (flattened)*",
}
VALIDATE: dict[str, Callable[[Any], object]] = {
    "ours": OURS.validate,
    "pydantic": PYDANTIC.validate_python,
    "aicost": AICOST,
}
ERRORS: dict[str, type[Exception]] = {
    "ours": UsageValidationError,
    "pydantic": ValidationError,
    "aicost": AicostUsageValidationError,
}


def swallowing(fn: Callable[[Any], object], exc: type[Exception]) -> Callable[[Any], None]:
    """``fn`` with its validation error caught, for timing the invalid path."""

    def call(payload: Any) -> None:
        # Not contextlib.suppress: a context manager would add its own cost to every call.
        try:  # noqa: SIM105
            fn(payload)
        except exc:
            pass

    return call


def problem_count(peer: str, payload: Any) -> int:
    """How many problems ``peer`` reports for ``payload`` (0 when it accepts it)."""
    try:
        VALIDATE[peer](payload)
    except UsageValidationError as e:
        return sum(len(messages) for messages in e.errors.values())
    except ValidationError as e:
        return e.error_count()
    except AicostUsageValidationError as e:
        return len(e.errors) + len(e.missing_fields) + len(e.extra_fields)
    return 0


# --------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------

REPEATS = 7
REPEAT_TARGET_NS = 25_000_000  # each of the REPEATS loops runs about this long
SAMPLE_BUDGET_NS = 150_000_000  # individually timed calls, for p99
BATCH_PASSES = 7


def timer_overhead_ns() -> int:
    """Median cost of one back-to-back perf_counter_ns() pair, subtracted from single calls."""
    samples = []
    for _ in range(20_000):
        t0 = perf_ns()
        t1 = perf_ns()
        samples.append(t1 - t0)
    return int(statistics.median(samples))


TIMER_NS = timer_overhead_ns()


def _loop_ns(fn: Callable[[Any], object], arg: Any, loops: int) -> int:
    t0 = perf_ns()
    for _ in range(loops):
        fn(arg)
    return perf_ns() - t0


class Stats:
    def __init__(self, median_ns: float, p99_ns: float, loops: int, samples: int) -> None:
        self.median_ns = median_ns
        self.p99_ns = p99_ns
        self.loops = loops
        self.samples = samples

    @property
    def median_us(self) -> float:
        return self.median_ns / 1000

    @property
    def p99_us(self) -> float:
        return self.p99_ns / 1000


def bench(fn: Callable[[Any], object], arg: Any) -> Stats:
    """Median over REPEATS of the mean per-call time of a loop, plus p99 of single calls."""
    for _ in range(200):  # warm up
        fn(arg)
    loops = 1
    while True:  # calibrate: grow the loop until one pass takes a few milliseconds
        elapsed = _loop_ns(fn, arg, loops)
        if elapsed >= 5_000_000:
            break
        loops *= 4
    loops = max(1, int(loops * REPEAT_TARGET_NS / elapsed))
    gc.collect()
    gc.disable()
    try:
        means = [_loop_ns(fn, arg, loops) / loops for _ in range(REPEATS)]
        per_call = statistics.median(means)
        count = int(min(20_000, max(2_000, SAMPLE_BUDGET_NS / per_call)))
        samples = []
        for _ in range(count):
            t0 = perf_ns()
            fn(arg)
            t1 = perf_ns()
            samples.append(t1 - t0 - TIMER_NS)
    finally:
        gc.enable()
    p99 = statistics.quantiles(samples, n=100)[98]
    return Stats(per_call, p99, loops, count)


def bench_batches(fns: dict[str, Callable[[Any], object]], batch: list[Any]) -> dict[str, float]:
    """Median wall time (ns) per peer of validating every record of ``batch``.

    The peers take turns, pass by pass, so a burst of load from elsewhere on the machine
    lands on one pass of every peer rather than on all passes of one.
    """
    for fn in fns.values():
        for record in batch[:500]:
            fn(record)
    times: dict[str, list[int]] = {name: [] for name in fns}
    gc.collect()
    gc.disable()
    try:
        for _ in range(BATCH_PASSES):
            for name, fn in fns.items():
                t0 = perf_ns()
                for record in batch:
                    fn(record)
                times[name].append(perf_ns() - t0)
    finally:
        gc.enable()
    return {name: statistics.median(t) for name, t in times.items()}


def bench_once(fn: Callable[[Any], object], arg: Any, repeats: int = BATCH_PASSES) -> float:
    """Median wall time (ns) of one call of ``fn(arg)`` that does a whole batch."""
    fn(arg)
    gc.collect()
    gc.disable()
    try:
        times = []
        for _ in range(repeats):
            t0 = perf_ns()
            fn(arg)
            times.append(perf_ns() - t0)
    finally:
        gc.enable()
    return statistics.median(times)


def individually(make: Callable[[int], Callable[[], object]], count: int) -> list[int]:
    """Time ``count`` calls, each of a fresh zero-argument callable built by ``make(i)``."""
    samples = []
    gc.collect()
    gc.disable()
    try:
        for i in range(count):
            call = make(i)
            t0 = perf_ns()
            call()
            t1 = perf_ns()
            samples.append(t1 - t0 - TIMER_NS)
    finally:
        gc.enable()
    return samples


def p99(samples: list[int]) -> float:
    return statistics.quantiles(samples, n=100)[98]


# --------------------------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------------------------


def rule(title: str) -> None:
    print()
    print(f"== {title} " + "=" * max(0, 92 - len(title)))


def ratio(peer_ns: float, ours_ns: float) -> str:
    return f"{peer_ns / ours_ns:.2f}x"


def table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths)).rstrip()
    print(fmt.format(*header).rstrip())
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(fmt.format(*row).rstrip())


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


def print_environment() -> None:
    rule("environment")
    now = datetime.datetime.now(datetime.timezone.utc)
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    print(f"date          {now:%Y-%m-%d %H:%M UTC}")
    print(f"python        {platform.python_implementation()} {platform.python_version()}")
    print(f"platform      {platform.platform()} ({platform.machine()})")
    print(f"cpu           {cpu_model()}; os.cpu_count()={os.cpu_count()}, usable={affinity}")
    print(
        f"packages      aicm-manual {version('aicm-manual')}, pydantic {version('pydantic')}"
        f" (pydantic-core {version('pydantic-core')}), aicostmanager {version('aicostmanager')}"
    )
    print(
        f"timing        perf_counter_ns; {REPEATS} repeats x N loops (~"
        f"{REPEAT_TARGET_NS // 1_000_000} ms each), median of per-loop means; p99 of"
        f" individually timed calls minus timer overhead ({TIMER_NS} ns); gc off while timing"
    )
    noop = bench(lambda _: None, None)
    print(f"baseline      loop + call of a no-op lambda: {noop.median_ns:.0f} ns/call (included)")
    if version("aicostmanager") != "0.3.2":
        print("WARNING       aicostmanager is not 0.3.2; the comparison is not the pinned one")


def check_correctness() -> dict[str, int]:
    rule("correctness of the benchmark records")
    for peer in PEERS:
        if problem_count(peer, VALID):
            raise SystemExit(f"{PEER_LABELS[peer]} rejects the valid record")
    counts = {peer: problem_count(peer, INVALID) for peer in PEERS}
    print("valid record: accepted by all three peers")
    print(f"invalid record: {INVALID_PROBLEMS} problems planted; problems reported:")
    for peer in PEERS:
        print(f"  {PEER_LABELS[peer]:<36} {counts[peer]}")
    try:
        OURS.validate(INVALID)
    except UsageValidationError as e:
        print("our error message:")
        print("  " + str(e).replace("\n", "\n  "))
        print(f"  missing_fields={e.missing_fields} extra_fields={e.extra_fields}")
    try:
        AICOST(INVALID)
    except AicostUsageValidationError as e:
        print(f"aicostmanager's message: {e}")
    return counts


def single_record() -> dict[str, dict[str, Stats]]:
    rule("one record (median and p99 per call, us; ratio = peer median / ours median)")
    results: dict[str, dict[str, Stats]] = {"valid": {}, "invalid": {}}
    for peer in PEERS:
        results["valid"][peer] = bench(VALIDATE[peer], VALID)
        results["invalid"][peer] = bench(swallowing(VALIDATE[peer], ERRORS[peer]), INVALID)
    extra = {
        "ours, is_valid()": (OURS.is_valid, VALID, OURS.is_valid, INVALID),
        "ours, breakdown: Dict[Any, Any]": (
            OURS_FLAT.validate,
            VALID,
            swallowing(OURS_FLAT.validate, UsageValidationError),
            INVALID,
        ),
        "ours, OrderedDict payload": (
            OURS.validate,
            collections.OrderedDict(VALID),
            swallowing(OURS.validate, UsageValidationError),
            collections.OrderedDict(INVALID),
        ),
    }
    extra_stats = {name: (bench(fv, v), bench(fi, i)) for name, (fv, v, fi, i) in extra.items()}
    # The invalid record without its unexpected key: 4 problems, and no "did you mean" search.
    no_extra = {k: v for k, v in INVALID.items() if k != "modle"}
    no_extra_stats = bench(swallowing(OURS.validate, UsageValidationError), no_extra)
    for kind in ("valid", "invalid"):
        ours = results[kind]["ours"].median_ns
        rows = [
            (
                PEER_LABELS[peer],
                f"{s.median_us:.3f}",
                f"{s.p99_us:.3f}",
                ratio(s.median_ns, ours),
            )
            for peer, s in results[kind].items()
        ]
        for name, pair in extra_stats.items():
            s = pair[0] if kind == "valid" else pair[1]
            rows.append((f"  ({name})", f"{s.median_us:.3f}", f"{s.p99_us:.3f}", ""))
        if kind == "invalid":
            s = no_extra_stats
            name = "ours, minus the unexpected field (4 problems)"
            rows.append((f"  ({name})", f"{s.median_us:.3f}", f"{s.p99_us:.3f}", ""))
        print()
        print(f"{kind} record:")
        table(rows, ("peer", "median us", "p99 us", "vs ours"))
    print()
    ours_v = results["valid"]["ours"].median_ns
    ours_i = results["invalid"]["ours"].median_ns
    print(
        f"valid:   pydantic/ours = {ratio(results['valid']['pydantic'].median_ns, ours_v)},"
        f" aicostmanager/ours = {ratio(results['valid']['aicost'].median_ns, ours_v)}"
    )
    print(
        f"invalid: pydantic/ours = {ratio(results['invalid']['pydantic'].median_ns, ours_i)},"
        f" aicostmanager/ours = {ratio(results['invalid']['aicost'].median_ns, ours_i)}"
    )
    flat = extra_stats["ours, breakdown: Dict[Any, Any]"][0].median_ns
    print(
        "like-for-like (ours also checking breakdown only as a dict):"
        f" aicostmanager/ours = {ratio(results['valid']['aicost'].median_ns, flat)}"
    )
    print(
        "* aicostmanager cannot parse Dict[str, List[int]]; it checks breakdown as a plain"
        " dict, so it does less work and misses the nested problem."
    )
    return results


def batches() -> None:
    rule(f"batches of {BATCH_SIZE:,} distinct records (median of {BATCH_PASSES} passes)")
    rng = random.Random(20240601)
    valid = [make_valid(rng) for _ in range(BATCH_SIZE)]
    invalid = [make_invalid(rng) for _ in range(BATCH_SIZE)]
    for peer in PEERS:
        bad = [r for r in valid if problem_count(peer, r)]
        if bad:
            raise SystemExit(f"{PEER_LABELS[peer]} rejects a generated valid record: {bad[0]}")
    for kind, batch in (("valid", valid), ("invalid", invalid)):
        fns = {
            peer: VALIDATE[peer] if kind == "valid" else swallowing(VALIDATE[peer], ERRORS[peer])
            for peer in PEERS
        }
        totals = bench_batches(fns, batch)
        rows = [
            (
                PEER_LABELS[peer],
                f"{total / 1e6:.2f}",
                f"{total / BATCH_SIZE / 1000:.3f}",
                ratio(total, totals["ours"]),
            )
            for peer, total in totals.items()
        ]
        if kind == "valid":
            whole = bench_once(PYDANTIC_LIST.validate_python, valid)
            rows.append(
                (
                    "  (pydantic list[Usage], one call)",
                    f"{whole / 1e6:.2f}",
                    f"{whole / BATCH_SIZE / 1000:.3f}",
                    ratio(whole, totals["ours"]),
                )
            )
        print()
        print(f"{kind} batch:")
        table(rows, ("peer", "batch ms", "per record us", "vs ours"))


def _clear_our_caches() -> bool:
    """Empty the parse and compile caches (private names; False if they have moved)."""
    module = sys.modules.get("aicm_manual._typestring.validator")
    caches = [getattr(module, name, None) for name in ("_parse_cache", "_check_cache")]
    if not all(hasattr(c, "clear") for c in caches):
        return False
    for cache in caches:
        cache.clear()
    return True


def fresh_schema(i: int) -> dict[str, str]:
    return {f"{name}_{i}": spec for name, spec in SCHEMA.items()}


def compile_times() -> dict[str, float]:
    rule("construction cost (us per constructor call; 300 calls, each timed alone)")
    rows = []
    out: dict[str, float] = {}

    # Fully cold: caches emptied before each call, so every type string is parsed and the
    # record check compiled.
    can_clear = _clear_our_caches()
    if can_clear:

        def cold(i: int) -> Callable[[], object]:
            _clear_our_caches()
            schema = fresh_schema(i)
            return lambda: TypeValidator(schema)

        s = individually(cold, 300)
        out["cold"] = statistics.median(s)
        rows.append(("ours, cold (parse + compile)", out["cold"], p99(s)))
    else:
        print("(cache internals moved: cold figure not measured)")

    # New field names each call: the compile cache misses, the type strings are parse-cached.
    for i in range(-50, 0):
        TypeValidator(fresh_schema(i))
    s = individually(lambda i: (lambda schema: lambda: TypeValidator(schema))(fresh_schema(i)), 300)
    out["fresh_names"] = statistics.median(s)
    rows.append(("ours, new field names (compile only)", out["fresh_names"], p99(s)))

    # Same schema every call: both caches hit.
    cached = bench(TypeValidator, SCHEMA)
    out["cached"] = cached.median_ns
    rows.append(("ours, same schema (cached)", cached.median_ns, cached.p99_ns))

    # pydantic: a new TypedDict class per call (built outside the timed section), so no
    # schema is reused between calls.
    def pyd(i: int) -> Callable[[], object]:
        cls = TypedDict(
            f"Usage{i}",
            {
                f"tokens_{i}": int,
                "model": str,
                "latency": NotRequired[float | None],
                "tags": list[str],
                "breakdown": dict[str, list[int]],
                "mode": int | str,
            },
        )
        cls.__pydantic_config__ = STRICT
        return lambda: TypeAdapter(cls)

    s = individually(pyd, 100)
    out["pydantic"] = statistics.median(s)
    rows.append(("pydantic TypeAdapter(new TypedDict)", out["pydantic"], p99(s)))

    s = individually(lambda i: lambda: make_aicost_check(AICOST_SCHEMA), 300)
    rows.append(("aicostmanager TypeValidator() + loop", statistics.median(s), p99(s)))
    table(
        [(name, f"{m / 1000:.1f}", f"{q / 1000:.1f}") for name, m, q in rows],
        ("constructor", "median us", "p99 us"),
    )
    if "cold" in out:
        print(f"pydantic TypeAdapter / ours cold = {ratio(out['pydantic'], out['cold'])}")
    return out


SERVER_MODULES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "gunicorn",
    "psycopg",
    "psycopg2",
    "psycopg_pool",
    "asyncpg",
    "sqlalchemy",
    "alembic",
)
# Modules that `import aicm_manual` adds to a fresh interpreter (what startup already loaded,
# e.g. site's .pth hooks, is left out): their count, and the non-stdlib top-level packages.
PROBE_IMPORTS = (
    "import json, sys\n"
    "before = set(sys.modules)\n"
    "import aicm_manual\n"
    "new = set(sys.modules) - before\n"
    "top = sorted({m.split('.')[0] for m in new} - set(sys.stdlib_module_names))\n"
    "server = sorted({m.split('.')[0] for m in sys.modules} & set(sys.argv[1:]))\n"
    "print(json.dumps([len(new), top, server]))\n"
)


def _python(code: str, *flags: str, args: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *flags, "-c", code, *args], capture_output=True, text=True, check=True
    )


def _importtime_us(stderr: str) -> int | None:
    for line in stderr.splitlines():
        parts = line.split("|")
        if len(parts) == 3 and parts[2].strip() == "aicm_manual":
            return int(parts[1])
    return None


def import_time() -> dict[str, Any]:
    rule("import aicm_manual in a fresh interpreter (9 runs each, medians)")
    _python("import aicm_manual")  # make sure bytecode caches exist
    bare, full, self_reported = [], [], []
    for _ in range(9):
        t0 = perf_ns()
        _python("pass")
        t1 = perf_ns()
        _python("import aicm_manual")
        t2 = perf_ns()
        bare.append(t1 - t0)
        full.append(t2 - t1)
        us = _importtime_us(_python("import aicm_manual", "-X", "importtime").stderr)
        if us is not None:
            self_reported.append(us)
    delta_ms = (statistics.median(full) - statistics.median(bare)) / 1e6
    print(f"python -c pass                  {statistics.median(bare) / 1e6:7.1f} ms")
    print(f"python -c 'import aicm_manual'  {statistics.median(full) / 1e6:7.1f} ms")
    print(f"difference (import cost)        {delta_ms:7.1f} ms")
    importtime_ms = statistics.median(self_reported) / 1000 if self_reported else math.nan
    print(f"-X importtime cumulative        {importtime_ms:7.1f} ms")
    count, third_party, server = json.loads(_python(PROBE_IMPORTS, args=SERVER_MODULES).stdout)
    print(f"modules added by the import: {count}")
    print(f"non-stdlib top-level packages among them: {', '.join(third_party) or 'none'}")
    print(
        f"server dependency modules imported ({', '.join(SERVER_MODULES)}): "
        f"{', '.join(server) if server else 'none'}"
    )
    return {"delta_ms": delta_ms, "importtime_ms": importtime_ms, "server": server}


PROBES: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("tokens=True (bool for int)", lambda r: {**r, "tokens": True}),
    ("tokens=3.0 (float for int)", lambda r: {**r, "tokens": 3.0}),
    ("tokens='12' (numeric str for int)", lambda r: {**r, "tokens": "12"}),
    ("latency=3 (int for float)", lambda r: {**r, "latency": 3}),
    ("latency=nan", lambda r: {**r, "latency": math.nan}),
    ("latency=inf", lambda r: {**r, "latency": math.inf}),
    ("latency=None", lambda r: {**r, "latency": None}),
    ("latency omitted", lambda r: {k: v for k, v in r.items() if k != "latency"}),
    ("mode=True (bool in Union[int, str])", lambda r: {**r, "mode": True}),
    ("mode=None", lambda r: {**r, "mode": None}),
    ("mode=1.5", lambda r: {**r, "mode": 1.5}),
    ("tags=('a', 'b') (tuple for List)", lambda r: {**r, "tags": ("a", "b")}),
    ("breakdown={'in': [1, '2']}", lambda r: {**r, "breakdown": {"in": [1, "2"]}}),
    ("breakdown={1: [1]} (int key)", lambda r: {**r, "breakdown": {1: [1]}}),
    ("breakdown={'in': [True]}", lambda r: {**r, "breakdown": {"in": [True]}}),
    ("extra field 'user'", lambda r: {**r, "user": "u1"}),
    ("payload is an OrderedDict", collections.OrderedDict),
]


def semantics() -> list[tuple[str, ...]]:
    rule("semantic differences (accept / reject of the valid record with one change)")
    rows = []
    for name, change in PROBES:
        payload = change(VALID)
        verdicts = ["reject" if problem_count(peer, payload) else "accept" for peer in PEERS]
        flag = "" if len(set(verdicts)) == 1 else "  <- differs"
        rows.append((name, *verdicts, flag))
    table(rows, ("payload", "ours", "pydantic", "aicostmgr", ""))
    return rows


def targets(
    single: dict[str, dict[str, Stats]],
    counts: dict[str, int],
    compiled: dict[str, float],
    imported: dict[str, Any],
) -> None:
    rule("targets (reported, not asserted)")
    valid = single["valid"]
    ours_us = valid["ours"].median_us
    pyd_ratio = valid["pydantic"].median_ns / valid["ours"].median_ns
    aicost_ratio = valid["aicost"].median_ns / valid["ours"].median_ns
    compile_ns = compiled.get("cold", compiled["fresh_names"])
    compile_label = "cold" if "cold" in compiled else "new field names"
    invalid_us = single["invalid"]["ours"].median_us

    def verdict(ok: bool) -> str:
        return "PASS" if ok else "MISS"

    rows = [
        ("valid record median (ours)", "<= 1.00 us", f"{ours_us:.3f} us", ours_us <= 1.0),
        ("pydantic strict / ours, valid record", ">= 1.30x", f"{pyd_ratio:.2f}x", pyd_ratio >= 1.3),
        (
            "aicostmanager / ours, valid record",
            ">= 8.00x",
            f"{aicost_ratio:.2f}x",
            aicost_ratio >= 8,
        ),
        (
            f"schema compile, {compile_label} (median)",
            "< 1 ms",
            f"{compile_ns / 1e6:.3f} ms",
            compile_ns < 1e6,
        ),
        (
            "import aicm_manual (subprocess delta)",
            "< 100 ms",
            f"{imported['delta_ms']:.1f} ms",
            imported["delta_ms"] < 100,
        ),
        (
            "no server modules on import",
            "none",
            ", ".join(imported["server"]) or "none",
            not imported["server"],
        ),
        (
            "invalid record: problems reported (ours)",
            f"{INVALID_PROBLEMS} of {INVALID_PROBLEMS}",
            f"{counts['ours']} of {INVALID_PROBLEMS}",
            counts["ours"] == INVALID_PROBLEMS,
        ),
        ("invalid record median (ours)", "< 20 us", f"{invalid_us:.3f} us", invalid_us < 20),
    ]
    table(
        [(name, target, measured, verdict(ok)) for name, target, measured, ok in rows],
        ("target", "target", "measured", "result"),
    )


def main() -> None:
    started = perf_ns()
    print("aicm_manual validation benchmark: schema")
    for name, spec in SCHEMA.items():
        note = f"   (aicostmanager: {AICOST_SCHEMA[name]})" if AICOST_SCHEMA[name] != spec else ""
        print(f"  {name}: {spec}{note}")
    print(f"aicm_manual loaded from {os.path.dirname(aicm_manual.__file__)}")
    print_environment()
    counts = check_correctness()
    single = single_record()
    batches()
    compiled = compile_times()
    imported = import_time()
    semantics()
    targets(single, counts, compiled, imported)
    print()
    print(f"total benchmark wall time: {(perf_ns() - started) / 1e9:.1f} s")


if __name__ == "__main__":
    main()
