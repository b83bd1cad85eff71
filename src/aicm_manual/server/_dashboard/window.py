"""The time window and filters a dashboard URL carries, and the sums its views show.

    window = parse_window({"from": "2026-11-01", "to": "2026-11-08"}, now_us)
    window.since_us, window.until_us, window.bucket       # until exclusive; "hour" or "day"

Pure: no I/O. ``from`` is inclusive and ``to`` exclusive, as in the API; both take RFC 3339
or a plain date (midnight UTC). Without them a view shows the 30 days that end at the
next UTC midnight, a whole-day window the daily rollups answer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from ..._records import format_timestamp_us, normalise_timestamp
from ...errors import AicmError
from .._ingest import cost_text
from .._storage.protocol import US_PER_DAY, SummaryRow

US_PER_HOUR = 3_600_000_000
DEFAULT_DAYS = 30
HOURLY_UP_TO_US = 3 * US_PER_DAY  # longer windows are drawn in day buckets
MAX_BUCKETS = 24 * 92  # a quarter in hours: beyond, hour buckets are refused


class WindowError(ValueError):
    """A ``from``/``to``/``bucket`` value that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Window:
    since_us: int
    until_us: int
    bucket: str  # "hour" or "day"
    explicit: bool  # the URL named the window (else the default 30 days)

    @property
    def since(self) -> str:
        return short_time(self.since_us)

    @property
    def until(self) -> str:
        return short_time(self.until_us)

    def bucket_starts(self) -> list[int]:
        """Every bucket start in the window, so gaps show as zero rather than vanish."""
        step = US_PER_HOUR if self.bucket == "hour" else US_PER_DAY
        first = self.since_us - self.since_us % step
        return list(range(first, self.until_us, step))

    def query(self, **extra: str | None) -> str:
        """This window (and ``extra`` filters that are set) as a query string."""
        params = {"from": self.since, "to": self.until}
        params.update({k: v for k, v in extra.items() if v})
        return urlencode(params)


def short_time(us: int) -> str:
    """``2026-11-01`` for a UTC midnight, else RFC 3339 to the second (or microsecond)."""
    text = format_timestamp_us(us)
    if us % US_PER_DAY == 0:
        return text[:10]
    return text.replace(".000000Z", "Z")


def parse_time(text: str, name: str) -> int:
    try:
        return normalise_timestamp(text)
    except (AicmError, ValueError, OverflowError):
        raise WindowError(
            f"{name} {text!r} is not a date (2026-11-01) or an RFC 3339 time (2026-11-01T09:30:00Z)"
        ) from None


def parse_window(query: Mapping[str, str], now_us: int) -> Window:
    """The window a view's query string asks for (see the module docstring)."""
    since_text, until_text = query.get("from", "").strip(), query.get("to", "").strip()
    until = parse_time(until_text, "to") if until_text else None
    since = parse_time(since_text, "from") if since_text else None
    if until is None:
        until = now_us - now_us % US_PER_DAY + US_PER_DAY
        if since is not None and since >= until:
            until = since - since % US_PER_DAY + US_PER_DAY
    if since is None:
        since = until - DEFAULT_DAYS * US_PER_DAY
    if since >= until:
        raise WindowError(f"from ({short_time(since)}) must be before to ({short_time(until)})")
    bucket = query.get("bucket", "").strip()
    if not bucket:
        bucket = "hour" if until - since <= HOURLY_UP_TO_US else "day"
    if bucket not in ("hour", "day"):
        raise WindowError(f"bucket {bucket!r} must be hour or day")
    if bucket == "hour" and (until - since) // US_PER_HOUR > MAX_BUCKETS:
        raise WindowError("hour buckets cover at most 92 days: choose day")
    return Window(since, until, bucket, bool(since_text or until_text))


# -- sums ---------------------------------------------------------------------------------


@dataclass
class Line:
    """One customer's or service's events, unpriced events and cost per currency."""

    key: str | None
    events: int = 0
    unpriced: int = 0
    costs: dict[str, int] | None = None

    def add(self, row: SummaryRow) -> None:
        self.events += row.events
        self.unpriced += row.unpriced
        if row.currency is not None:
            costs = self.costs if self.costs is not None else {}
            costs[row.currency] = costs.get(row.currency, 0) + row.cost_nanos
            self.costs = costs

    def cost(self, currency: str) -> int:
        return (self.costs or {}).get(currency, 0)

    @property
    def priced(self) -> int:
        return self.events - self.unpriced


def merge(rows: Iterable[SummaryRow]) -> list[Line]:
    """Summary rows (one per key and currency) merged into one line per key."""
    lines: dict[str | None, Line] = {}
    for row in rows:
        line = lines.get(row.key)
        if line is None:
            line = lines[row.key] = Line(row.key)
        line.add(row)
    return list(lines.values())


def totals(lines: Iterable[Line]) -> dict[str, int]:
    """Cost per currency over all lines, in currency order."""
    out: dict[str, int] = {}
    for line in lines:
        for currency, nanos in (line.costs or {}).items():
            out[currency] = out.get(currency, 0) + nanos
    return dict(sorted(out.items()))


def money(costs: Mapping[str, int]) -> list[dict[str, str]]:
    """Costs as the exact decimal text the API answers (``total_cost``), per currency;
    ``0.000000000 USD`` when nothing was priced, as ``/costs/summary`` says then."""
    if not costs:
        return [{"currency": "USD", "amount": cost_text(0)}]
    return [{"currency": c, "amount": cost_text(n)} for c, n in sorted(costs.items())]


def main_currency(costs: Mapping[str, int]) -> str:
    """The currency with the largest total: the one the charts and bars are drawn in."""
    if not costs:
        return "USD"
    return max(sorted(costs), key=lambda c: costs[c])


def share(part: int, whole: int) -> str:
    """``part`` of ``whole`` as a percentage with one decimal (``-`` of nothing)."""
    return "-" if whole == 0 else f"{100 * part / whole:.1f}%"


def bar_class(value: int, top: int) -> str:
    """A CSS class ``w0``..``w100`` for an inline bar: widths come from the style sheet,
    since the page's Content-Security-Policy allows no inline style."""
    if top <= 0 or value <= 0:
        return "w0"
    return f"w{max(1, round(100 * value / top))}"


def average(nanos: int, count: int) -> str:
    """Exact average cost per event, rounded half-up to the nano-unit."""
    if count == 0:
        return "-"
    return cost_text((2 * nanos + count) // (2 * count))


def units(nanos: int) -> float:
    """A cost as a float of currency units, only for drawing (never shown as a figure)."""
    return nanos / 1_000_000_000


def series(
    starts: list[int], points: Mapping[tuple[int, str], int], keys: Iterable[str]
) -> dict[str, Any]:
    """Chart data: x in seconds and one series per key (raw values, stacked in the page)."""
    index = {s: i for i, s in enumerate(starts)}
    out: dict[str, list[float]] = {key: [0.0] * len(starts) for key in keys}
    for (start, key), nanos in points.items():
        if key in out and start in index:
            out[key][index[start]] += units(nanos)
    return {"x": [s // 1_000_000 for s in starts], "series": out}
