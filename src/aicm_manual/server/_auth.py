"""API keys of the collector: generated, stored only as SHA-256, bound to a tenant and scopes."""

from __future__ import annotations

import re
import secrets

from ._storage.protocol import SCOPES

TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DEFAULT_TENANT = "default"


def new_key() -> str:
    """A fresh key: ``aicm_`` and 43 URL-safe random characters (256 bits)."""
    return "aicm_" + secrets.token_urlsafe(32)


def parse_key_spec(spec: str) -> tuple[str, str]:
    """``TENANT:KEY`` or ``KEY`` (tenant "default") -> (tenant, key)."""
    tenant, sep, key = spec.partition(":")
    if not sep:
        tenant, key = DEFAULT_TENANT, spec
    if not TENANT.fullmatch(tenant):
        raise ValueError(f"tenant {tenant!r} must be 1-64 letters, digits or ._- ")
    if len(key) < 8:
        raise ValueError("an API key must have at least 8 characters")
    return tenant, key


def parse_scopes(text: str) -> frozenset[str]:
    scopes = frozenset(s.strip() for s in text.split(",") if s.strip())
    unknown = scopes - SCOPES
    if unknown or not scopes:
        raise ValueError(f"scopes must be among {sorted(SCOPES)}, got {sorted(unknown) or 'none'}")
    return scopes
