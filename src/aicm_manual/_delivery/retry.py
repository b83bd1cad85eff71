"""Retry policy: which answers are retried, how long to wait, and Retry-After parsing.

Pure: the clock and the jitter come in as arguments, so tests are exact.
"""

from __future__ import annotations

import email.utils
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

# Whole-request statuses worth another try; 5xx is added by is_retryable.
RETRYABLE_STATUSES = frozenset({408, 425, 429})
AUTH_STATUSES = frozenset({401, 403})


def is_retryable(status: int | None) -> bool:
    """None means no answer at all (connection refused, timeout): always retried."""
    return status is None or status in RETRYABLE_STATUSES or 500 <= status <= 599


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date).

    ``now`` is the wall-clock time (``time.time()``); None for an absent or unusable value.
    """
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        seconds = when.timestamp() - now
    if math.isnan(seconds):
        return None
    return max(0.0, seconds)


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with "equal jitter": half fixed, half random, capped."""

    initial: float = 0.5
    maximum: float = 30.0
    jitter: Callable[[], float] | None = None  # returns [0, 1); None means random.random

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """The wait before try number ``attempt + 1`` (``attempt`` >= 1 failures so far).

        A ``Retry-After`` is honoured but floored at ``initial / 2``, the shortest wait the
        backoff itself ever makes: "0" must not turn a throttled key into a busy loop."""
        if retry_after is not None:
            return min(max(retry_after, self.initial / 2), self.maximum)
        base = min(self.maximum, self.initial * 2.0 ** min(attempt - 1, 62))
        r: float = random.random() if self.jitter is None else self.jitter()
        return base / 2 + base / 2 * r
