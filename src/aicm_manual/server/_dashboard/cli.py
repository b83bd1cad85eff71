"""``aicm-manual export``: a tenant's events as CSV or JSON Lines, from the command line.

    add_export_command(commands)      # in the collector's verbs; runs through server_run

The same stream as the dashboard's downloads. Arguments are checked before the database is
opened; a file named with ``--output`` appears only once the export is complete (it is
written beside it first), so a failed export never leaves a file that looks whole.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any, BinaryIO

from ..._records import normalise_timestamp
from .._storage import check_url, open_storage
from .export import FORMATS, Format, export_events

DEFAULT_DATABASE = "sqlite:///aicm-data/collector.db"


def add_export_command(commands: Any, *, default_database: str = DEFAULT_DATABASE) -> None:
    """Add ``export`` to the ``aicm-manual`` sub-commands (``commands`` from add_subparsers)."""
    export = commands.add_parser(
        "export", help="stream a tenant's events as CSV or JSON Lines (as the dashboard does)"
    )
    export.add_argument("--database", default=default_database)
    export.add_argument("--tenant", default="default")
    export.add_argument("--format", choices=FORMATS, default="csv", dest="fmt")
    export.add_argument("--from", dest="since", help="date or RFC 3339 start (inclusive)")
    export.add_argument("--to", dest="until", help="date or RFC 3339 end (exclusive)")
    export.add_argument("--service-id", help="only this service")
    export.add_argument("--client-customer-key", help="only this customer")
    export.add_argument(
        "--output", default="-", help="file to write (default '-': standard output)"
    )
    export.set_defaults(server_run=run_export)


def run_export(args: argparse.Namespace) -> int:
    since = None if args.since is None else normalise_timestamp(args.since)
    until = None if args.until is None else normalise_timestamp(args.until)
    if since is not None and until is not None and since >= until:
        raise ValueError(f"--from {args.since!r} must be before --to {args.until!r}")
    check_url(args.database)
    fmt: Format = args.fmt
    filters = {"service_id": args.service_id, "client_customer_key": args.client_customer_key}
    storage = open_storage(args.database, create=False)
    try:
        if args.output == "-":
            count = _write(storage, args.tenant, fmt, since, until, filters, sys.stdout.buffer)
        else:
            target = Path(args.output)
            part = target.with_name(target.name + ".part")
            try:
                with part.open("wb") as out:
                    count = _write(storage, args.tenant, fmt, since, until, filters, out)
                os.replace(part, target)
            finally:
                part.unlink(missing_ok=True)
    finally:
        storage.close()
    print(f"exported {count} event(s) of tenant {args.tenant!r}", file=sys.stderr)
    return 0


def _write(
    storage: Any,
    tenant: str,
    fmt: Format,
    since: int | None,
    until: int | None,
    filters: dict[str, str | None],
    out: BinaryIO,
) -> int:
    count = export_events(storage, tenant, fmt, since, until, filters, out)
    out.flush()
    return count
