"""API keys: a small type whose repr and str never show the key, the key's digest (what
the collector stores and the spool names a key by) and the one abbreviation logs,
health and the CLI print."""

from __future__ import annotations

import hashlib

MASK = "[secure]"
NO_KEY = "anonymous"  # what stands for "no key" where a digest would


def key_digest(key: str) -> str:
    """The key's SHA-256 in hex. The collector stores only this; the spool files rows by it."""
    return hashlib.sha256(key.encode()).hexdigest()


def abbreviate(digest: str) -> str:
    """How a key is named wherever a person reads it: ``sha256:`` and 8 hex digits of its
    digest (``anonymous`` for none). Safe to print; tells keys apart."""
    return NO_KEY if digest == NO_KEY else f"sha256:{digest[:8]}"


class Secret:
    """An API key. ``repr()``/``str()`` print ``[secure]``; ``reveal()`` is the only way out.

    Equal keys compare and hash equal, so records can be grouped by key without ever
    formatting one; ``abbreviation`` tells two keys apart in logs without exposing either.
    """

    __slots__ = ("_digest", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("an API key must be a non-empty string")
        self._value = value.strip()
        self._digest: str | None = None

    def reveal(self) -> str:
        return self._value

    @property
    def digest(self) -> str:
        """``key_digest`` of the key, computed once."""
        if self._digest is None:
            self._digest = key_digest(self._value)
        return self._digest

    @property
    def abbreviation(self) -> str:
        """``abbreviate`` of the key's digest: ``sha256:1a2b3c4d``."""
        return abbreviate(self.digest)

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __reduce__(self) -> tuple[object, ...]:
        return (Secret, (self._value,))
