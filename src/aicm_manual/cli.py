"""``aicm-manual queue``: look into the persistent delivery spool and replay dead letters.

    aicm-manual queue stats                      # counts per key reference, oldest age
    aicm-manual queue list --dead --limit 20     # rejected records and why
    aicm-manual queue requeue --id 4 --id 7      # send those dead letters again
    aicm-manual queue purge --dead --all --yes   # forget every dead letter
    aicm-manual queue salvage SRC DST            # copy a damaged spool's readable rows

The spool is ``--db PATH``, else ``AICM_DB_PATH``, else ``db_path`` in the ``[delivery]``
section of the INI file (``--ini PATH``, else ``AICM_INI_PATH``, else the default), resolved
by the same settings code the library uses. Exit codes: 0 done, 1 an error (no spool,
unreadable spool or settings), 2 a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ._delivery.salvage import salvage
from ._delivery.settings import DeliverySettings
from ._delivery.spool import Spool
from ._delivery.spool_schema import SpoolRow
from ._secret import abbreviate
from ._settings import DEFAULT_INI_PATH, Settings
from .errors import AicmError

PROG = "aicm-manual"
# Enough to tell keys apart; the full SHA-256 of a short or guessable key could be matched.

_Handler = Callable[[Spool, argparse.Namespace, float], None]


class _Refused(Exception):
    """A command line argparse accepts but the command will not carry out (exit 2)."""


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], float] = time.time,
) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``) and return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help or a usage error: return the code so callers can test it
        return exc.code if isinstance(exc.code, int) else 0
    env = os.environ if environ is None else environ
    if args.command != "queue":
        return _server_command(args)
    try:
        return _queue_command(args, env, clock)
    except BrokenPipeError:
        # The reader went away (``| head``): what it wanted was printed. Point stdout at
        # devnull so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0


def _queue_command(
    args: argparse.Namespace, env: Mapping[str, str], clock: Callable[[], float]
) -> int:
    if args.action == "salvage":
        return _salvage(args)
    try:
        spool = _open_existing(args, env, clock)
        try:
            run: _Handler = args.run
            run(spool, args, clock())
        finally:
            spool.close()
    except _Refused as exc:
        print(f"{PROG} {args.command} {args.action}: error: {exc}", file=sys.stderr)
        return 2
    except AicmError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    return 0


def _server_command(args: argparse.Namespace) -> int:
    if args.server_run is None:
        print(
            f"{PROG} {args.command}: needs the collector: pip install 'aicm-manual[server]'",
            file=sys.stderr,
        )
        return 1
    from .server._commands import run

    try:
        return run(args)
    except (AicmError, ValueError) as exc:
        print(f"{PROG} {args.command}: error: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="aicm-manual administration.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    queue = commands.add_parser(
        "queue",
        help="inspect the persistent delivery spool and replay dead letters",
        description="Inspect the persistent delivery spool and replay dead letters.",
    )
    actions = queue.add_subparsers(dest="action", required=True, metavar="ACTION")
    try:
        from .server._commands import add_commands
    except ImportError:  # without the server extra: say how to get the verbs
        verbs = ("serve", "keys", "report", "demo", "export", "prices", "unpriced", "reprice")
        for verb in (*verbs, "budgets", "webhooks"):
            commands.add_parser(verb, help="needs the server extra").set_defaults(server_run=None)
    else:
        add_commands(commands)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--db",
        metavar="PATH",
        help=f"spool file (default: AICM_DB_PATH, else db_path in the INI's [delivery], else"
        f" {DeliverySettings().db_path})",
    )
    common.add_argument(
        "--ini",
        metavar="PATH",
        help=f"settings file (default: AICM_INI_PATH, else {DEFAULT_INI_PATH})",
    )

    stats = actions.add_parser("stats", parents=[common], help="counts per key reference")
    stats.add_argument("--json", action="store_true", help="print JSON instead of a table")
    stats.set_defaults(run=_stats)

    listing = actions.add_parser("list", parents=[common], help="queued records or dead letters")
    listing.add_argument("--dead", action="store_true", help="list dead letters")
    listing.add_argument(
        "--limit", metavar="N", type=_positive, default=50, help="rows to show (default 50)"
    )
    listing.add_argument("--show-usage", action="store_true", help="also print each usage payload")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.set_defaults(run=_list)

    requeue = actions.add_parser("requeue", parents=[common], help="dead letters back to the queue")
    _add_selection(requeue, "dead letter")
    requeue.set_defaults(run=_requeue)

    purge = actions.add_parser(
        "purge", parents=[common], help="delete queued records or dead letters"
    )
    purge.add_argument(
        "--dead", action="store_true", help="delete dead letters, not queued records"
    )
    _add_selection(purge, "row")
    purge.add_argument("--yes", action="store_true", help="confirm --all")
    purge.set_defaults(run=_purge)

    rescue = actions.add_parser(
        "salvage", help="copy the readable rows of a damaged spool into a new spool file"
    )
    rescue.add_argument("src", metavar="SRC", help="the damaged spool file")
    rescue.add_argument("dst", metavar="DST", help="the new spool file (must not exist)")
    return parser


def _add_selection(parser: argparse.ArgumentParser, noun: str) -> None:
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--all", action="store_true", help=f"every {noun}")
    group.add_argument(
        "--id",
        dest="ids",
        metavar="N",
        type=_positive,
        action="extend",
        nargs="+",
        help=f"the {noun} with this id (repeatable)",
    )


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _open_existing(
    args: argparse.Namespace, env: Mapping[str, str], clock: Callable[[], float]
) -> Spool:
    if args.db is not None:
        # An explicit path needs no settings, so a broken INI or variable cannot get in the way.
        path, origin = Path(args.db).expanduser(), "from --db"
    else:
        settings = Settings.resolve(aicm_ini_path=args.ini, environ=env)
        delivery = DeliverySettings.resolve(sources=settings.sources)
        # The default db_path is stored with its "~" unexpanded (Spool expands it itself).
        path = delivery.db_path.expanduser()
        origin = (
            f"from AICM_DB_PATH, db_path in [delivery] of {str(settings.ini_path)!r},"
            " or the default; --db names another"
        )
    # Spool() creates a missing file (and its folders): looking must not leave one behind.
    if not path.exists():
        raise AicmError(f"no spool at {str(path)!r} ({origin})")
    if path.is_dir():
        raise AicmError(f"{str(path)!r} is a folder; expected the spool file ({origin})")
    return Spool(path, clock=clock, create=False)


# -- commands -------------------------------------------------------------------------------


def _salvage(args: argparse.Namespace) -> int:
    try:
        counts = salvage(args.src, args.dst)
    except AicmError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"copied {counts['records']} queued record(s) and {counts['dead_letters']} dead"
        f" letter(s) to {args.dst}; {counts['unreadable']} row(s) could not be read"
    )
    return 0


def _stats(spool: Spool, args: argparse.Namespace, now: float) -> None:
    stats = spool.stats()
    by_key: dict[str, Any] = stats["by_key"]
    dead_by_key: dict[str, int] = stats["dead_by_key"]
    keys = [
        {
            "key_ref": _short(ref),
            "records": by_key.get(ref, {}).get("records", 0),
            "leased": by_key.get(ref, {}).get("leased", 0),
            "oldest_enqueued_at": by_key.get(ref, {}).get("oldest_enqueued_at"),
            "oldest_age_seconds": _age(by_key.get(ref, {}).get("oldest_enqueued_at"), now),
            "dead_letters": dead_by_key.get(ref, 0),
        }
        # A list, not a dict by short ref: two keys sharing 12 characters must not merge.
        for ref in sorted(set(by_key) | set(dead_by_key))
    ]
    leased = sum(k["leased"] for k in keys)
    if args.json:
        _print_json(
            {
                "path": stats["path"],
                "records": stats["records"],
                "leased": leased,
                "dead_letters": stats["dead_letters"],
                "oldest_enqueued_at": stats["oldest_enqueued_at"],
                "oldest_age_seconds": _age(stats["oldest_enqueued_at"], now),
                "keys": keys,
            }
        )
        return
    oldest = stats["oldest_enqueued_at"]
    print(f"spool: {stats['path']}")
    print(
        f"queued records: {stats['records']} ({leased} leased)"
        + (f", oldest {_duration(now - oldest)} old" if oldest is not None else "")
    )
    print(f"dead letters: {stats['dead_letters']}")
    if keys:
        print()
        header = ["KEY REF", "QUEUED", "LEASED", "OLDEST", "DEAD"]
        print(
            _table(
                header,
                [
                    [
                        k["key_ref"],
                        str(k["records"]),
                        str(k["leased"]),
                        _duration(k["oldest_age_seconds"]),
                        str(k["dead_letters"]),
                    ]
                    for k in keys
                ],
            )
        )


def _list(spool: Spool, args: argparse.Namespace, now: float) -> None:
    table = "dead_letters" if args.dead else "records"
    _take_in(spool)
    rows = spool.rows(table, limit=args.limit)
    total = int(spool.stats()[table])
    items = [_describe(row, dead=args.dead, now=now, usage=args.show_usage) for row in rows]
    if args.json:
        _print_json({"path": str(spool.path), "table": table, "total": total, "rows": items})
        return
    if not items:
        print("no dead letters" if args.dead else "no queued records")
        return
    last = ["FAILED AT", "REASON"] if args.dead else ["AGE", "ATTEMPTS"]
    header = ["ID", "RESPONSE ID", "KEY REF", "API BASE", "CONFIG ID", "SERVICE ID", *last]
    cells = []
    for item in items:
        tail = (
            [_timestamp(item["failed_at"]), item["reason"]]
            if args.dead
            else [_duration(item["age_seconds"]), str(item["attempts"])]
        )
        cells.append(
            [str(item["id"])]
            + [item[k] or "-" for k in ("response_id", "key_ref", "api_base")]
            + [item[k] or "-" for k in ("config_id", "service_id")]
            + tail
        )
    lines = _table(header, [[_printable(c) for c in row] for row in cells]).splitlines()
    print(lines[0])
    for line, item in zip(lines[1:], items, strict=True):
        print(line)
        if args.show_usage:
            print(f"    usage: {json.dumps(item['usage'], ensure_ascii=False)}")
    if total > len(items):
        print(f"({len(items)} of {total} shown; use --limit to see more)")


def _requeue(spool: Spool, args: argparse.Namespace, now: float) -> None:
    ids = None if args.all else sorted(set(args.ids))
    _take_in(spool)
    count = spool.requeue(ids)
    print(f"{count} requeued" + _unmatched(ids, count, "dead letter"))


def _purge(spool: Spool, args: argparse.Namespace, now: float) -> None:
    table = "dead_letters" if args.dead else "records"
    noun = "dead letter" if args.dead else "queued record"
    if args.all and not args.yes:
        n = int(spool.stats()[table])
        raise _Refused(f"--all would delete {n} {noun}(s) from {str(spool.path)!r}; add --yes")
    ids = None if args.all else sorted(set(args.ids))
    _take_in(spool)
    count = spool.purge(table, ids)
    print(f"{count} purged" + _unmatched(ids, count, noun))


def _take_in(spool: Spool) -> None:
    """Give records still in the inbox (written, not yet taken in by a worker) their queue
    ids, as a worker would, so that every id listed can be purged; a spool that cannot be
    written (read-only file) is listed as it is (its inbox rows are counted, not shown)."""
    with contextlib.suppress(AicmError):
        while spool.take_in(10_000):
            pass


# -- helpers --------------------------------------------------------------------------------


def _describe(row: SpoolRow, *, dead: bool, now: float, usage: bool) -> dict[str, Any]:
    """A row as printable facts; the body's context and customer key stay out."""
    body = _body(row)
    item: dict[str, Any] = {
        "id": row.id,
        "response_id": row.response_id,
        "key_ref": _short(row.key_ref),
        "api_base": row.api_base,
        "config_id": _text(body.get("config_id")),
        "service_id": _text(body.get("service_id")),
    }
    if dead:
        item.update(failed_at=row.enqueued_at, reason=row.reason)
    else:
        item.update(
            enqueued_at=row.enqueued_at,
            age_seconds=_age(row.enqueued_at, now),
            attempts=row.attempts,
        )
    if usage:
        item["usage"] = body.get("usage")
    return item


def _body(row: SpoolRow) -> dict[str, Any]:
    try:
        data = json.loads(row.body)
    except ValueError:  # a damaged body still lists, with its ids shown as "-"
        return {}
    return data if isinstance(data, dict) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _short(key_ref: str) -> str:
    return abbreviate(key_ref)


def _unmatched(ids: Sequence[int] | None, count: int, noun: str) -> str:
    missing = 0 if ids is None else len(ids) - count
    return f" ({missing} id(s) matched no {noun})" if missing > 0 else ""


def _age(then: float | None, now: float) -> float | None:
    return None if then is None else max(0.0, now - then)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _timestamp(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _printable(text: str) -> str:
    # Reasons come from the collector: a newline or escape code must not break the table.
    return "".join(ch if ch.isprintable() else " " for ch in text)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(r, widths, strict=True)).rstrip()
        for r in [header, *rows]
    )


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))
