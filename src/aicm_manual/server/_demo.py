"""``aicm-manual demo``: an embedded collector on SQLite and a realistic workload through
Tracker, so every report and every dashboard view has something to show.

The workload: chat completions on two OpenAI models and streaming-avatar minutes for four
customers over the last seven days; calls to an internal service no config prices (the
pricing-health view); records sent twice and once with changed usage (duplicates and a
conflict) and a client that skips validation (rejections with reasons) for the
ingest-health view; two budgets, one of them exceeded.
"""

from __future__ import annotations

import argparse
import random
import threading
import time
from pathlib import Path
from typing import Any

import requests
from rich.console import Console
from rich.progress import Progress

from .._records import format_timestamp_us
from .._secret import key_digest
from ._auth import new_key
from ._commands import summary_table
from ._embedded import embedded_collector
from ._storage.protocol import GroupBy, Storage

DEMO_KEY = "aicm_demo_key_0123456789"
CUSTOMERS = ("acme", "globex", "initech", "umbrella")
# Budgets a person reading the dashboard can relate to: acme's month (most of it spent by
# the default workload) and all HeyGen minutes of a day (exceeded on most days).
BUDGETS: dict[str, dict[str, Any]] = {
    "acme-monthly": {
        "scope": {"client_customer_key": "acme"},
        "period": "month",
        "limit": "80",
        "currency": "USD",
        "thresholds": [0.5, 0.8, 1.0],
    },
    "heygen-daily": {
        "scope": {"service_id": "heygen::*"},
        "period": "day",
        "limit": "5",
        "currency": "USD",
        "action": "block",
    },
}


def run_demo(args: argparse.Namespace) -> int:
    from .. import Tracker, UsageValidationError, get_global_delivery_health

    console = Console()
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    for old in data.glob("collector.db*"):  # each demo starts from an empty database
        old.unlink()
    database = f"sqlite:///{data / 'collector.db'}"
    console.rule("aicm-manual demo")
    with embedded_collector(
        database, args.schemas, [f"demo:{DEMO_KEY}"], port=args.port
    ) as collector:
        console.print(f"embedded collector on {collector.url}, SQLite at {data / 'collector.db'}")
        api = _Api(collector.url)
        for budget_id, budget in BUDGETS.items():
            api.put(f"/api/v1/budgets/{budget_id}", budget)
        common = {
            "aicm_api_base": collector.url,
            "aicm_api_key": DEMO_KEY,
            "schemas_dir": args.schemas,
        }
        mini = Tracker("openai-chat", "openai::gpt-4o-mini", **common)
        big = Tracker("openai-chat", "openai::gpt-4o", **common)
        avatar = Tracker("heygen", "heygen::streaming-avatar", **common)
        search = Tracker("internal-api", "internal::search", **common)
        rng = random.Random(7)
        now_us = time.time_ns() // 1000
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("tracking usage", total=args.records)
            for _ in range(args.records):
                customer = rng.choice(CUSTOMERS)
                when = format_timestamp_us(now_us - rng.randrange(7 * 86_400) * 1_000_000)
                kind = rng.random()
                if kind < 0.45:
                    mini.track(
                        _chat(rng, "gpt-4o-mini"), client_customer_key=customer, timestamp=when
                    )
                elif kind < 0.75:
                    big.track(_chat(rng, "gpt-4o"), client_customer_key=customer, timestamp=when)
                elif kind < 0.95:
                    avatar.track(
                        {"duration": round(rng.uniform(5, 600), 1), "avatar_id": "anna"},
                        client_customer_key=customer,
                        timestamp=when,
                    )
                else:
                    search.track(_search(rng), client_customer_key=customer, timestamp=when)
                progress.advance(task)
        console.print("[bold]Invalid payloads are refused before they leave the process:[/]")
        for bad in (
            {"model": "gpt-4o-mini", "input_tokens": "812", "output_tokens": 97},
            {"model": "gpt-4o-mini", "input_tokens": 812, "outptu_tokens": 97},
            {
                "model": "gpt-4o-mini",
                "input_tokens": True,
                "output_tokens": 97,
                "tool_calls": {"search": 1.5},
            },
        ):
            try:
                mini.track(bad, client_customer_key="acme")
            except UsageValidationError as exc:
                console.print(f"  [red]{exc}[/]")
        _resend(console, mini, rng, now_us)
        _unvalidated_client(console, api, now_us)
        left = sum(t.flush(30) for t in (mini, big, avatar, search))
        console.print(f"flushed: {left} record(s) still pending")
        storage = collector.storage
        groupings: tuple[GroupBy, ...] = ("client_customer_key", "service_id")
        for group_by in groupings:
            rows = storage.cost_summary("demo", group_by, None, None)
            console.print(summary_table(rows, group_by, f"Cost by {group_by}"))
        console.print("[bold]Not priced[/] (no config or price rule prices them):")
        for row in api.get("/api/v1/pricing/unpriced")["rows"]:
            console.print(f"  {row['service_id']}: {row['events']} event(s), {row['reason']}")
        console.print("[bold]Budgets[/]:")
        for view in api.get("/api/v1/budgets")["budgets"]:
            console.print(
                f"  {view['budget_id']}: {view['spent']} of {view['limit']} {view['currency']}"
                f" this {view['period']} ({view['state']})"
            )
        health = get_global_delivery_health()
        shown = {
            k: health[k]
            for k in (
                "worker_alive",
                "total_enqueued",
                "total_delivered",
                "total_rejected",
                "total_discarded",
                "total_batches",
                "total_retries",
                "queued",
                "last_error",
            )
        }
        console.print("[bold]Delivery health[/]", shown)
        for t in (mini, big, avatar, search):
            t.close(10)
        if args.serve:
            _serve_demo(console, collector.url, storage)
    return 0 if left == 0 else 1


class _Api:
    """The demo's own calls to its collector's HTTP API (budgets, reports, a raw batch)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {DEMO_KEY}"

    def get(self, path: str) -> Any:
        answer = self.session.get(self.url + path, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def put(self, path: str, body: dict[str, Any]) -> Any:
        answer = self.session.put(self.url + path, json=body, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self.session.post(self.url + path, json=body, timeout=30).json()


def _resend(console: Console, tracker: Any, rng: random.Random, now_us: int) -> None:
    """A client that retries what it already delivered: stored once, counted as duplicates;
    one resend with changed usage is a conflict and keeps the first."""
    when = format_timestamp_us(now_us - 3_600_000_000)
    sent = [(f"demo-resend-{n}", _chat(rng, "gpt-4o-mini")) for n in range(20)]
    for _ in range(2):
        for response_id, usage in sent:
            tracker.track(
                usage, client_customer_key="globex", response_id=response_id, timestamp=when
            )
        tracker.flush(30)
    changed = {**sent[0][1], "output_tokens": sent[0][1]["output_tokens"] + 1}
    tracker.track(changed, client_customer_key="globex", response_id=sent[0][0], timestamp=when)
    tracker.flush(30)
    console.print(
        "20 records sent twice: stored once (duplicates); one resent with changed usage:"
        " a conflict, the first kept (delivery health counts it as rejected)"
    )


def _unvalidated_client(console: Console, api: _Api, now_us: int) -> None:
    """A client that skips validation posts a batch: the collector stores the good record
    and refuses the others, each with its reason."""
    when = format_timestamp_us(now_us - 7_200_000_000)
    good = {"model": "gpt-4o-mini", "input_tokens": 120, "output_tokens": 30}
    records = [
        {"input_tokens": 120, "output_tokens": 30},
        {"model": "gpt-4o-mini", "input_tokens": "many", "output_tokens": 30},
        good,
    ]
    answer = api.post(
        "/api/v1/track",
        {
            "tracked": [
                {
                    "config_id": "openai-chat",
                    "service_id": "openai::gpt-4o-mini",
                    "response_id": f"demo-unvalidated-{n}",
                    "timestamp": when,
                    "usage": usage,
                    "client_customer_key": "initech",
                }
                for n, usage in enumerate(records)
            ]
        },
    )
    console.print("[bold]A client that skips validation:[/] the collector answers")
    for result in answer.get("results", []):
        why = (
            "; ".join(result.get("errors", [])) or f"{result.get('cost')} {result.get('currency')}"
        )
        console.print(f"  {result['response_id']}: {result['status']} ({why})")


def _serve_demo(console: Console, url: str, storage: Storage) -> None:
    """Keep the demo's collector up for a person to look at, with a read key of its own."""
    key = new_key()
    storage.put_key(key_digest(key), "demo", frozenset({"read"}))
    console.print(f"[bold]Dashboard:[/] {url}/dashboard")
    console.print(f"Sign in with this read key (shown once): {key}")
    console.print("Serving until Ctrl-C.")
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        console.print("stopped")


def _chat(rng: random.Random, model: str) -> dict[str, Any]:
    inputs = rng.randrange(50, 8000)
    usage: dict[str, Any] = {
        "model": model,
        "input_tokens": inputs,
        "output_tokens": rng.randrange(10, 2000),
    }
    if rng.random() < 0.3:
        usage["cached_input_tokens"] = rng.randrange(0, inputs)
    return usage


def _search(rng: random.Random) -> dict[str, Any]:
    calls = rng.randrange(1, 40)
    ok = rng.randrange(0, calls + 1)
    return {
        "calls": calls,
        "endpoint": "/v2/search",
        "status_codes": {"200": ok, "429": calls - ok},
        "latency_ms": [round(rng.uniform(20, 400), 1) for _ in range(min(calls, 5))],
        "region": rng.choice(["eu-west-1", "us-east-1", None]),
    }
