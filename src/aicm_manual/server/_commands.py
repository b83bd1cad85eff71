"""The collector's command-line verbs: serve, keys (create, list, revoke), report, demo.

Reached through ``aicm-manual`` (``aicm_manual.cli``), which imports this module only for
these verbs, so the queue commands work without the ``server`` extra.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ..errors import ConfigError
from ._auth import DEFAULT_TENANT
from ._connections import ConnectionLimits
from ._dashboard.cli import add_export_command
from ._embedded import build, check_key_specs
from ._ingest import cost_text
from ._key_commands import keys_create, keys_list, keys_revoke
from ._money_commands import add_money_commands
from ._storage import check_url, open_storage
from ._storage.protocol import SummaryRow

DEFAULT_DATABASE = "sqlite:///aicm-data/collector.db"
KEYS_ENV = "AICM_COLLECTOR_API_KEYS"


def add_commands(commands: Any) -> None:
    """Add serve, keys, report, demo, export and the money verbs (prices, unpriced,
    reprice, budgets, webhooks) to the ``aicm-manual`` parser."""
    fmt = _DefaultsFormatter
    database = {"default": DEFAULT_DATABASE, "help": "sqlite:///PATH or postgresql://..."}
    serve = commands.add_parser("serve", help="run the collector", formatter_class=fmt)
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=int, default=8700, help="port to listen on")
    serve.add_argument("--database", **database)
    serve.add_argument("--schemas", default="schemas", help="folder of the config files to serve")
    serve.add_argument(
        "--api-key",
        action="append",
        default=[],
        metavar="[TENANT:]KEY",
        help="register a key at start (repeatable; tenant 'default' when none is named);"
        " visible in the process list: prefer --api-key-file or " + KEYS_ENV,
    )
    serve.add_argument(
        "--api-key-file",
        action="append",
        default=[],
        metavar="PATH",
        help="register the keys of a file, one [TENANT:]KEY a line (# starts a comment;"
        f" repeatable); {KEYS_ENV} may also hold keys, separated by commas or spaces",
    )
    serve.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help="open connections at most; past it the oldest idle one is closed"
        " (default: the open-file limit less a quarter, at least 128, for the database)",
    )
    serve.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        help="seconds a new connection has to send a request's headers",
    )
    serve.add_argument(
        "--idle-timeout", type=int, default=5, help="seconds an idle keep-alive connection stays"
    )
    serve.set_defaults(server_run=_serve)

    keys = commands.add_parser("keys", help="manage collector API keys")
    key_actions = keys.add_subparsers(dest="key_action", required=True, metavar="ACTION")
    create = key_actions.add_parser(
        "create", help="create a key and print it once", formatter_class=fmt
    )
    create.add_argument("--tenant", default=DEFAULT_TENANT, help="the tenant the key belongs to")
    create.add_argument(
        "--scopes", default="ingest,read", help="comma-separated: ingest,read,admin"
    )
    create.add_argument("--database", **database)
    create.add_argument(
        "--create",
        action="store_true",
        help="create the SQLite database if it does not exist (else that is an error)",
    )
    create.set_defaults(server_run=keys_create)
    listing = key_actions.add_parser(
        "list", help="list keys (never the keys themselves)", formatter_class=fmt
    )
    listing.add_argument("--database", **database)
    listing.add_argument("--tenant", default=None, help="only this tenant's keys (default: all)")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(server_run=keys_list)
    revoke = key_actions.add_parser("revoke", help="revoke a key", formatter_class=fmt)
    revoke.add_argument("--database", **database)
    revoke.add_argument(
        "ref", metavar="REF", help="the key's abbreviation (as `keys list` prints it) or digest"
    )
    revoke.set_defaults(server_run=keys_revoke)

    report = commands.add_parser(
        "report", help="cost by customer or service over a window", formatter_class=fmt
    )
    report.add_argument("--database", **database)
    report.add_argument("--tenant", default=DEFAULT_TENANT, help="whose events to sum")
    report.add_argument(
        "--group-by",
        choices=["client_customer_key", "service_id"],
        default="client_customer_key",
        help="one line per customer or per service",
    )
    report.add_argument("--from", dest="since", help="RFC 3339 start (inclusive; default: open)")
    report.add_argument("--to", dest="until", help="RFC 3339 end (exclusive; default: open)")
    report.set_defaults(server_run=_report)

    demo = commands.add_parser(
        "demo", help="run a realistic workload against an embedded collector", formatter_class=fmt
    )
    demo.add_argument(
        "--data-dir", default="aicm-demo-data", help="folder of the demo's database (emptied)"
    )
    demo.add_argument("--schemas", default="schemas", help="folder of the config files")
    demo.add_argument("--records", type=int, default=3000, help="records to track")
    demo.add_argument(
        "--serve",
        action="store_true",
        help="keep serving the collector and its dashboard after the reports, until Ctrl-C",
    )
    demo.add_argument(
        "--port", type=int, default=0, help="port of the demo's collector (0: any free one)"
    )
    demo.set_defaults(server_run=_demo)
    add_export_command(commands, default_database=DEFAULT_DATABASE)
    add_money_commands(commands, database, fmt)


class _DefaultsFormatter(argparse.HelpFormatter):
    """Each option's help ends with its default, unless there is none to show (a flag, an
    empty list, or None, whose meaning the help text says itself)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in text:
            return text
        return text + " (default: %(default)s)"


def run(args: argparse.Namespace) -> int:
    result: int = args.server_run(args)
    return result


def key_specs(args: argparse.Namespace, environ: Mapping[str, str]) -> list[str]:
    """The ``[TENANT:]KEY`` specs of --api-key, --api-key-file and the environment."""
    specs = list(args.api_key)
    for name in args.api_key_file:
        try:
            text = Path(name).read_text()
        except OSError as exc:
            raise ConfigError(f"--api-key-file {name!r}: {exc.strerror}") from None
        for line in text.splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                specs.append(line)
    specs += environ.get(KEYS_ENV, "").replace(",", " ").split()
    return specs


def _serve(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> int:
    import gc
    import signal
    import sys

    import uvicorn

    from ._storage.sqlite import SqliteStorage

    specs = key_specs(args, environ)
    check_key_specs(specs)  # before the port and the database: nothing to undo
    sock = listen(args.host, args.port)
    try:
        storage, app = build(args.database, args.schemas, specs)
    except BaseException:
        sock.close()
        raise
    # Configs, price tables and modules live as long as the process: out of the collector's
    # reach, full collections no longer walk them (they paused requests under load).
    gc.freeze()
    # uvicorn re-raises SIGTERM after its graceful shutdown; turning it into SystemExit lets
    # the finally below close the database instead of the process dying mid-cleanup.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    limits = ConnectionLimits(header_timeout=args.header_timeout)
    if args.max_connections is not None:
        limits.max_connections = args.max_connections
    console = Console(stderr=True)
    if args.api_key:
        console.print(
            "note: keys given with --api-key show in the process list to every user of this"
            f" machine; --api-key-file or {KEYS_ENV} keep them out of it"
        )
    console.print(
        f"aicm-manual collector on http://{args.host}:{sock.getsockname()[1]} "
        f"({args.database.split('://')[0]}, {len(set(specs))} key(s) registered,"
        f" at most {limits.max_connections} connections)"
    )
    try:
        if isinstance(storage, SqliteStorage):
            storage.warm_up()
        config = uvicorn.Config(
            app,
            log_level="warning",
            lifespan="off",
            http=limits.protocol(),
            timeout_keep_alive=args.idle_timeout,
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
        collector = app.state.collector
        collector.money.stop()
        collector.flush_stats(final=True)  # the last seconds' ingest-health counters
        storage.close()
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on (host, port), or ConfigError naming the port."""
    try:
        sock = socket.create_server((host, port), reuse_port=False, backlog=2048)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is in use by another process (choose another with"
                " --port, or stop that process)"
            ) from None
        raise ConfigError(f"cannot listen on {host} port {port}: {exc.strerror}") from None
    return sock


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
    from ._demo import run_demo  # it imports this module's tables

    return run_demo(args)
