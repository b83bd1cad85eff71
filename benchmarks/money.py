"""Money benchmark: what tenant price rules and budgets cost the collector, and how fast
re-pricing and limit checks are. One run, SQLite, loopback only.

    .venv/bin/python benchmarks/money.py            # about two minutes
    .venv/bin/python benchmarks/money.py --quick    # smaller counts

1. Served ingest (records/s through POST /api/v1/track, 500-record batches, one client
   thread) with no rules or budgets, with 100 tenant price rules, and with 1,000 budgets
   and a webhook; each against the first, in the same run.
2. ``GET /api/v1/limits/check`` p50/p95 with N events stored and 20 budgets.
3. Re-pricing N stored unpriced events after a rule is added (events/s).
Targets are printed with PASS/MISS; nothing is asserted.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

from aicm_manual._configs.model import Pricing, Rate
from aicm_manual.server._embedded import embedded_collector
from aicm_manual.server._pricing import Pricer, PriceRule
from aicm_manual.server._storage.protocol import NewEvent
from aicm_manual.server._storage.repricing import reprice
from aicm_manual.server._storage.sqlite import SqliteStorage

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
KEY = "aicm_money_bench_key_0123"


def chat_batch(n: int, start: int) -> list[dict[str, Any]]:
    return [
        {
            "service_id": "openai::gpt-4o-mini",
            "response_id": uuid.uuid4().hex,
            "timestamp": "2026-12-01T12:00:00Z",
            "usage": {"model": "gpt-4o-mini", "input_tokens": 800 + i % 7, "output_tokens": 90},
            "client_customer_key": f"c{(start + i) % 500}",
        }
        for i in range(n)
    ]


def served_rate(records: int, setup: str) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        database = f"sqlite:///{tmp}/b.db"
        with embedded_collector(database, SCHEMAS, [f"t:{KEY}"]) as c:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {KEY}"
            if setup == "rules":
                for n in range(99):
                    session.put(
                        f"{c.url}/api/v1/prices/internal::svc{n}",
                        json={
                            "effective_from": "2026-01-01T00:00:00Z",
                            "pricing": {"unit": {"calls": {"price": "0.01"}}},
                        },
                        timeout=10,
                    ).raise_for_status()
                session.put(
                    f"{c.url}/api/v1/prices/openai::*",
                    json={
                        "effective_from": "2026-01-01T00:00:00Z",
                        "pricing": {"genai_prices": {"provider": "openai"}},
                    },
                    timeout=10,
                ).raise_for_status()
            if setup == "budgets":
                session.put(
                    f"{c.url}/api/v1/webhooks/ops",
                    json={"url": "http://127.0.0.1:9/", "secret": "whsec_" + "A" * 44},
                    timeout=10,
                ).raise_for_status()
                for n in range(1000):
                    session.put(
                        f"{c.url}/api/v1/budgets/b{n}",
                        json={
                            "scope": {"client_customer_key": f"c{n % 500}"},
                            "period": "month",
                            "limit": "1000000",
                        },
                        timeout=10,
                    ).raise_for_status()
            batches = [chat_batch(500, k * 500) for k in range(records // 500)]
            started = time.perf_counter()
            for batch in batches:
                r = session.post(f"{c.url}/api/v1/track", json={"tracked": batch}, timeout=60)
                assert r.status_code == 200, r.text[:300]
            return records / (time.perf_counter() - started)


def stored_events(storage: SqliteStorage, n: int, service: str, tenant: str = "t") -> None:
    usage = json.dumps({"calls": 3}).encode()
    for start in range(0, n, 2500):
        storage.ingest(
            [
                NewEvent(
                    tenant,
                    None,
                    service,
                    f"r{i}",
                    1_796_000_000_000_000 + i * 1000,
                    f"c{i % 500}",
                    usage,
                    None,
                    hashlib.sha256(str(i).encode()).hexdigest(),
                    1_000 if service != "contoso::search" else None,
                    "USD" if service != "contoso::search" else None,
                    "unit" if service != "contoso::search" else "no config lists the service",
                )
                for i in range(start, min(n, start + 2500))
            ]
        )


def limits_check(events: int, calls: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        database = f"sqlite:///{tmp}/l.db"
        storage = SqliteStorage(f"{tmp}/l.db")
        stored_events(storage, events, "x::y")
        storage.close()
        with embedded_collector(database, SCHEMAS, [f"t:{KEY}"]) as c:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {KEY}"
            for n in range(20):
                session.put(
                    f"{c.url}/api/v1/budgets/b{n}",
                    json={"scope": {"client_customer_key": f"c{n}"}, "period": "month",
                          "limit": "10", "action": "block"},
                    timeout=10,
                ).raise_for_status()  # fmt: skip
            times = []
            for k in range(calls):
                t0 = time.perf_counter()
                session.get(
                    f"{c.url}/api/v1/limits/check",
                    params={"client_customer_key": f"c{k % 20}", "service_id": "x::y"},
                    timeout=10,
                ).raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.95)]


def reprice_rate(events: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        storage = SqliteStorage(f"{tmp}/r.db")
        stored_events(storage, events, "contoso::search")
        pricer = Pricer([])
        half = Pricing("EUR", {"calls": Rate(Decimal("0.5"))})
        pricer.set_rules([PriceRule(1, "t", "contoso::search", 0, half)])

        def quote(c: Any, s: str, u: Any, at: int, tenant: str) -> tuple[Any, Any, str]:
            cost, currency, source = pricer.quote(c, s, u, at, tenant)
            return (cost, currency, source) if cost is not None else (None, None, "none")

        started = time.perf_counter()
        result = reprice(storage.ledger, "t", None, None, None, True, quote)
        seconds = time.perf_counter() - started
        storage.close()
        assert result.repriced == events
        return events / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    args = parser.parse_args()
    records = 10_000 if args.quick else 50_000
    stored = 100_000 if args.quick else 1_000_000
    rates = {setup: served_rate(records, setup) for setup in ("none", "rules", "budgets")}
    p50, p95 = limits_check(stored, 200)
    repriced = reprice_rate(stored)
    print(f"served ingest, {records:,} records in 500-record requests (records/s):")
    for setup, rate in rates.items():
        print(f"  {setup:8} {rate:10,.0f}  {rate / rates['none']:.2f}x of none")
    print(f"limits/check with {stored:,} events stored: p50 {p50:.2f} ms, p95 {p95:.2f} ms")
    print(f"re-pricing {stored:,} unpriced events: {repriced:,.0f} events/s")
    targets = [
        ("100 price rules: ingest within 5% of none", rates["rules"] / rates["none"] >= 0.95),
        ("1,000 budgets: ingest within 10% of none", rates["budgets"] / rates["none"] >= 0.90),
        ("limits/check p95 < 5 ms", p95 < 5.0),
        ("re-pricing >= 100,000 events/s", repriced >= 100_000),
    ]
    for label, ok in targets:
        print(f"  {'PASS' if ok else 'MISS'}  {label}")


if __name__ == "__main__":
    main()
