"""Anonymisation of named fields, at any depth, before a record leaves the process.

anonymize({"user": {"email": "a@b.c"}}, frozenset({"email"}), default_anonymizer)
-> {"user": {"email": "[anonymized]"}}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

Anonymizer = Callable[[Any], Any]
ANONYMIZED = "[anonymized]"


def default_anonymizer(value: Any) -> Any:
    """Replace the value outright: nothing of it, not even a hash, leaves the process.

    A hash would let reports group by the value, but short or guessable values (emails,
    user ids) are recovered from a hash by trying candidates; pass your own anonymizer,
    e.g. a keyed HMAC, when you need stable pseudonyms.
    """
    return ANONYMIZED


def field_set(fields: Iterable[str] | None) -> frozenset[str]:
    if fields is None:
        return frozenset()
    if isinstance(fields, str):  # a lone name, not its letters
        return frozenset((fields,))
    names = frozenset(fields)
    bad = [f for f in names if not isinstance(f, str)]
    if bad:
        raise TypeError(f"anonymize_fields must be field names (str), got {bad[0]!r}")
    return names


def scrub(value: Any, fields: frozenset[str], anonymizer: Anonymizer) -> Any:
    """Replace, in place, the values under ``fields`` keys at any depth of JSON-like
    ``value`` (the tracker's own copy of a payload); returns ``value``."""
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = anonymizer(item) if key in fields else scrub(item, fields, anonymizer)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            value[index] = scrub(item, fields, anonymizer)
    return value
