"""A small type for API keys whose repr and str never show the key."""

from __future__ import annotations

import hashlib

MASK = "[secure]"


class Secret:
    """An API key. ``repr()``/``str()`` print ``[secure]``; ``reveal()`` is the only way out.

    Equal keys compare and hash equal, so records can be grouped by key without ever
    formatting one; ``fingerprint`` tells two keys apart in logs without exposing either.
    """

    __slots__ = ("_sha256", "_value")

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not value.strip():
            raise ValueError("an API key must be a non-empty string")
        self._value = value.strip()
        self._sha256: str | None = None

    def reveal(self) -> str:
        return self._value

    @property
    def sha256(self) -> str:
        """The key's SHA-256 in hex: what a spool stores to say which key a row needs."""
        if self._sha256 is None:
            self._sha256 = hashlib.sha256(self._value.encode()).hexdigest()
        return self._sha256

    @property
    def fingerprint(self) -> str:
        """First 8 hex digits of the key's SHA-256: safe to log, stable across runs."""
        return self.sha256[:8]

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
