"""API keys in the collector's database, the same SQL on both backends.

    put_key(execute, "?", key_hash, "acme", frozenset({"ingest"}), now)

A key is stored only as its SHA-256 (``key_digest``) and is bound to one tenant for good:
naming it for another tenant raises ``KeyTenantError`` (revoke it first); naming it again
for its own tenant replaces its scopes. ``execute`` is a DB-API ``execute`` (sqlite3's or
psycopg's) and ``mark`` its parameter mark ("?" or "%s"). Pure SQL: no driver imported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..._secret import abbreviate
from ...errors import AicmError

Execute = Callable[..., Any]


class KeyTenantError(AicmError, ValueError):
    """A stored key was named for another tenant than the one it is bound to."""


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A stored key as ``keys list`` and ``GET /api/v1/keys`` show it (never the key)."""

    key_hash: str
    tenant: str
    scopes: frozenset[str]
    created_at: float  # seconds since the epoch
    last_used_at: float | None  # None: never used (updated at most once a minute)

    @property
    def abbreviation(self) -> str:
        return abbreviate(self.key_hash)


def put_key(
    execute: Execute, mark: str, key_hash: str, tenant: str, scopes: frozenset[str], now: float
) -> None:
    """Register a key, or replace the scopes of one already bound to ``tenant``."""
    execute(
        f"INSERT INTO api_keys (key_hash, tenant, scopes, created_at)"
        f" VALUES ({mark}, {mark}, {mark}, {mark}) ON CONFLICT (key_hash) DO NOTHING",
        (key_hash, tenant, ",".join(sorted(scopes)), now),
    )
    (bound,) = execute(
        f"SELECT tenant FROM api_keys WHERE key_hash = {mark}", (key_hash,)
    ).fetchone()
    if bound != tenant:
        raise KeyTenantError(
            f"key {abbreviate(key_hash)} belongs to tenant {bound!r}; it cannot be bound to"
            f" tenant {tenant!r} as well (revoke it first: aicm-manual keys revoke"
            f" {abbreviate(key_hash)})"
        )
    execute(
        f"UPDATE api_keys SET scopes = {mark} WHERE key_hash = {mark}",
        (",".join(sorted(scopes)), key_hash),
    )


def list_keys(execute: Execute, mark: str, tenant: str | None) -> list[KeyInfo]:
    """Every key (of ``tenant``, when given), by tenant then creation."""
    where, args = ("", ()) if tenant is None else (f" WHERE tenant = {mark}", (tenant,))
    rows = execute(
        "SELECT key_hash, tenant, scopes, created_at, last_used_at FROM api_keys"
        f"{where} ORDER BY tenant, created_at, key_hash",
        args,
    ).fetchall()
    return [
        KeyInfo(h, t, frozenset(s for s in scopes.split(",") if s), created, used)
        for h, t, scopes, created, used in rows
    ]


def revoke_key(execute: Execute, mark: str, key_hash: str, tenant: str | None) -> bool:
    """Delete a key (only one of ``tenant``, when given); whether one was deleted."""
    where, args = (
        (f"key_hash = {mark}", (key_hash,))
        if tenant is None
        else (f"key_hash = {mark} AND tenant = {mark}", (key_hash, tenant))
    )
    return bool(execute(f"DELETE FROM api_keys WHERE {where}", args).rowcount)


def touch_key(execute: Execute, mark: str, key_hash: str, now: float) -> None:
    execute(f"UPDATE api_keys SET last_used_at = {mark} WHERE key_hash = {mark}", (now, key_hash))


def resolve(keys: list[KeyInfo], ref: str) -> KeyInfo:
    """The one key ``ref`` names: its abbreviation (``sha256:`` and at least 8 hex digits)
    or its whole digest. LookupError when none or several match."""
    text = ref.strip().lower().removeprefix("sha256:")
    if len(text) < 8 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(
            f"{ref!r} is not a key reference: give its abbreviation (sha256: and 8 hex"
            " digits, as `keys list` prints it) or its whole SHA-256"
        )
    found = [k for k in keys if k.key_hash.startswith(text)]
    if not found:
        raise LookupError(f"no key {ref!r}")
    if len(found) > 1:
        raise LookupError(f"{ref!r} matches {len(found)} keys; give more of the digest to pick one")
    return found[0]
