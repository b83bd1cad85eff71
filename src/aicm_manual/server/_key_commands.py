"""``aicm-manual keys create | list | revoke``: API keys in the collector's database.

Reached through ``_commands`` (which builds the parser); a key is printed once, at
creation, and named everywhere else by its abbreviation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import msgspec
from rich.console import Console
from rich.table import Table

from .._secret import abbreviate, key_digest
from ..errors import ConfigError, StorageError
from ._answers import key_out
from ._auth import TENANT, new_key, parse_scopes
from ._storage import check_url, open_storage, redact
from ._storage.keys import resolve
from ._storage.protocol import Storage


def _where(url: str) -> str:
    """The database a URL names, as a person should read it (a SQLite file's full path)."""
    if url.startswith("sqlite:///"):
        return str(Path(url[len("sqlite:///") :]).expanduser().resolve())
    return redact(url)


def _open_existing(url: str, create: bool = False) -> Storage:
    check_url(url)
    try:
        return open_storage(url, create=create)
    except StorageError:
        if url.startswith("sqlite:///") and not Path(_where(url)).exists():
            raise StorageError(
                f"no collector database at {_where(url)}: give the one the collector uses"
                " with --database, or pass --create to make a new one"
            ) from None
        raise


def keys_create(args: argparse.Namespace) -> int:
    scopes = parse_scopes(args.scopes)
    if not TENANT.fullmatch(args.tenant):
        raise ValueError(f"tenant {args.tenant!r} must be 1-64 letters, digits or ._-")
    storage = _open_existing(args.database, create=args.create)
    try:
        key = new_key()
        storage.put_key(key_digest(key), args.tenant, scopes)
    finally:
        storage.close()
    print(key)  # printed once; only its hash is stored
    Console(stderr=True).print(
        f"key {abbreviate(key_digest(key))} for tenant {args.tenant!r}"
        f" (scopes {', '.join(sorted(scopes))}) stored in {_where(args.database)}",
        highlight=False,
    )
    return 0


def keys_list(args: argparse.Namespace) -> int:
    storage = _open_existing(args.database)
    try:
        found = storage.list_keys(args.tenant)
    finally:
        storage.close()
    if args.json:
        print(json.dumps(msgspec.to_builtins([key_out(k) for k in found]), indent=2))
        return 0
    table = Table(title=f"API keys in {_where(args.database)}")
    for column in ("key", "tenant", "scopes", "created", "last used"):
        table.add_column(column, no_wrap=True)
    for k in found:
        info = msgspec.to_builtins(key_out(k))
        table.add_row(
            info["key"],
            k.tenant,
            ",".join(info["scopes"]),
            info["created_at"][:19] + "Z",
            "never" if info["last_used_at"] is None else info["last_used_at"][:19] + "Z",
        )
    Console().print(table)
    return 0


def keys_revoke(args: argparse.Namespace) -> int:
    storage = _open_existing(args.database)
    try:
        try:
            target = resolve(storage.list_keys(), args.ref)
        except LookupError as exc:
            raise ConfigError(str(exc).strip("'\"")) from None
        storage.revoke_key(target.key_hash)
    finally:
        storage.close()
    Console(stderr=True).print(
        f"revoked key {target.abbreviation} of tenant {target.tenant!r}", highlight=False
    )
    return 0
