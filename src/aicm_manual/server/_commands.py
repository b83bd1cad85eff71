"""The collector's command-line verbs: serve, keys create, report, demo.

Reached through ``aicm-manual`` (``aicm_manual.cli``), which imports this module only for
these verbs, so the queue commands work without the ``server`` extra.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from .._records import format_timestamp_us
from .._secret import key_digest
from ._auth import DEFAULT_TENANT, TENANT, new_key, parse_scopes
from ._embedded import build, embedded_collector
from ._ingest import cost_text
from ._storage import check_url, open_storage
from ._storage.protocol import GroupBy, SummaryRow

DEFAULT_DATABASE = "sqlite:///aicm-data/collector.db"
DEMO_KEY = "aicm_demo_key_0123456789"


def add_commands(commands: Any) -> None:
    """Add serve, keys, report and demo to the ``aicm-manual`` parser."""
    serve = commands.add_parser("serve", help="run the collector")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8700)
    serve.add_argument(
        "--database", default=DEFAULT_DATABASE, help="sqlite:///PATH or postgresql://..."
    )
    serve.add_argument("--schemas", default="schemas", help="the config files to serve")
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="[TENANT:]KEY",
        help="register a key at start (repeatable; tenant 'default' when none is named)",
    )
    serve.set_defaults(server_run=_serve)

    keys = commands.add_parser("keys", help="manage collector API keys")
    key_actions = keys.add_subparsers(dest="key_action", required=True, metavar="ACTION")
    create = key_actions.add_parser("create", help="create a key and print it once")
    create.add_argument("--tenant", default=DEFAULT_TENANT)
    create.add_argument(
        "--scopes", default="ingest,read", help="comma-separated: ingest,read,admin"
    )
    create.add_argument("--database", default=DEFAULT_DATABASE)
    create.set_defaults(server_run=_keys_create)

    report = commands.add_parser("report", help="cost by customer or service over a window")
    report.add_argument("--database", default=DEFAULT_DATABASE)
    report.add_argument("--tenant", default=DEFAULT_TENANT)
    report.add_argument(
        "--group-by", choices=["client_customer_key", "service_id"], default="client_customer_key"
    )
    report.add_argument("--from", dest="since", help="RFC 3339 start (inclusive)")
    report.add_argument("--to", dest="until", help="RFC 3339 end (exclusive)")
    report.set_defaults(server_run=_report)

    demo = commands.add_parser(
        "demo", help="run a realistic workload against an embedded collector"
    )
    demo.add_argument("--data-dir", default="aicm-demo-data")
    demo.add_argument("--schemas", default="schemas")
    demo.add_argument("--records", type=int, default=3000)
    demo.set_defaults(server_run=_demo)


def run(args: argparse.Namespace) -> int:
    result: int = args.server_run(args)
    return result


def _serve(args: argparse.Namespace) -> int:
    import gc
    import signal
    import sys

    import uvicorn

    from ._storage.sqlite import SqliteStorage

    storage, app = build(args.database, args.schemas, args.api_key)
    # Configs, price tables and modules live as long as the process: out of the collector's
    # reach, full collections no longer walk them (they paused requests under load).
    gc.freeze()
    # uvicorn re-raises SIGTERM after its graceful shutdown; turning it into SystemExit lets
    # the finally below close the database instead of the process dying mid-cleanup.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    console = Console(stderr=True)
    console.print(
        f"aicm-manual collector on http://{args.host}:{args.port} "
        f"({args.database.split('://')[0]}, {len(args.api_key)} key(s) registered)"
    )
    try:
        if isinstance(storage, SqliteStorage):
            storage.warm_up()
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        storage.close()
    return 0


def _keys_create(args: argparse.Namespace) -> int:
    scopes = parse_scopes(args.scopes)
    check_url(args.database)
    if not TENANT.fullmatch(args.tenant):
        raise ValueError(f"tenant {args.tenant!r} must be 1-64 letters, digits or ._-")
    storage = open_storage(args.database)
    try:
        key = new_key()
        storage.put_key(key_digest(key), args.tenant, scopes)
    finally:
        storage.close()
    print(key)  # printed once; only its hash is stored
    Console(stderr=True).print(f"tenant {args.tenant!r}, scopes {', '.join(sorted(scopes))}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from .._records import normalise_timestamp

    # Arguments first: a bad time or URL is reported before any database is touched.
    since = None if args.since is None else normalise_timestamp(args.since)
    until = None if args.until is None else normalise_timestamp(args.until)
    check_url(args.database)
    storage = open_storage(args.database, create=False)
    try:
        rows = storage.cost_summary(args.tenant, args.group_by, since, until)
    finally:
        storage.close()
    Console().print(summary_table(rows, args.group_by, f"Cost by {args.group_by}"))
    return 0


def summary_table(rows: list[SummaryRow], group_by: str, title: str) -> Table:
    """One line per key: its events, how many are unpriced, and its cost per currency."""
    table = Table(title=title)
    table.add_column(group_by)
    table.add_column("events", justify="right")
    table.add_column("unpriced", justify="right")
    table.add_column("cost", justify="right")
    merged: dict[str, list[Any]] = {}
    totals: dict[str, int] = {}
    for r in rows:
        line = merged.setdefault(r.key or "(none)", [0, 0, {}])
        line[0] += r.events
        line[1] += r.unpriced
        if r.currency:
            line[2][r.currency] = line[2].get(r.currency, 0) + r.cost_nanos
            totals[r.currency] = totals.get(r.currency, 0) + r.cost_nanos
    for key, (events, unpriced, costs) in sorted(merged.items()):
        table.add_row(key, str(events), str(unpriced), _money(costs))
    events = sum(line[0] for line in merged.values())
    unpriced = sum(line[1] for line in merged.values())
    table.add_row("total", str(events), str(unpriced), _money(totals), style="bold")
    return table


def _money(costs: dict[str, int]) -> str:
    return " + ".join(f"{cost_text(n)} {cur}" for cur, n in sorted(costs.items())) or "-"


def _demo(args: argparse.Namespace) -> int:
    from .. import Tracker, UsageValidationError, get_global_delivery_health

    console = Console()
    data = Path(args.data_dir)
    data.mkdir(parents=True, exist_ok=True)
    for old in data.glob("collector.db*"):  # each demo starts from an empty database
        old.unlink()
    database = f"sqlite:///{data / 'collector.db'}"
    console.rule("aicm-manual demo")
    with embedded_collector(database, args.schemas, [f"demo:{DEMO_KEY}"]) as collector:
        console.print(f"embedded collector on {collector.url}, SQLite at {data / 'collector.db'}")
        common = {
            "aicm_api_base": collector.url,
            "aicm_api_key": DEMO_KEY,
            "schemas_dir": args.schemas,
        }
        mini = Tracker("openai-chat", "openai::gpt-4o-mini", **common)
        big = Tracker("openai-chat", "openai::gpt-4o", **common)
        avatar = Tracker("heygen", "heygen::streaming-avatar", **common)
        rng = random.Random(7)
        customers = ["acme", "globex", "initech", "umbrella"]
        now_us = time.time_ns() // 1000
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("tracking usage", total=args.records)
            for _ in range(args.records):
                customer = rng.choice(customers)
                when = format_timestamp_us(now_us - rng.randrange(7 * 86_400) * 1_000_000)
                kind = rng.random()
                if kind < 0.5:
                    mini.track(
                        _chat(rng, "gpt-4o-mini"), client_customer_key=customer, timestamp=when
                    )
                elif kind < 0.8:
                    big.track(_chat(rng, "gpt-4o"), client_customer_key=customer, timestamp=when)
                else:
                    avatar.track(
                        {"duration": round(rng.uniform(5, 600), 1), "avatar_id": "anna"},
                        client_customer_key=customer,
                        timestamp=when,
                    )
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
        left = mini.flush(30)
        console.print(f"flushed: {left} record(s) still pending")
        storage = collector.storage
        groupings: tuple[GroupBy, ...] = ("client_customer_key", "service_id")
        for group_by in groupings:
            rows = storage.cost_summary("demo", group_by, None, None)
            console.print(summary_table(rows, group_by, f"Cost by {group_by}"))
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
        for t in (mini, big, avatar):
            t.close(10)
    return 0 if left == 0 else 1


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
