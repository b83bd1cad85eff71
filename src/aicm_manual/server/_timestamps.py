"""The collector's fast reading of record times: the client's own form by slicing, anything
else by the general parser (``normalise_timestamp``), whose answers it always equals. Pure.

    parse_timestamp("2026-11-24T10:00:00.123456Z")   # microseconds since the epoch
"""

from __future__ import annotations

import re
from datetime import date

from .._records import normalise_timestamp

_US_PER_DAY = 86_400_000_000
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_HOUR = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:")
# "MM:SS" -> microseconds: one dict lookup checks and converts both fields.
_MINUTE_SECOND = {
    f"{m:02d}:{s:02d}": (m * 60 + s) * 1_000_000 for m in range(60) for s in range(60)
}
_hour_us: dict[str, int] = {}  # "YYYY-MM-DDTHH:" -> microseconds; a batch shares a few hours


def parse_timestamp(value: object) -> int:
    """Microseconds since the epoch, exactly as ``normalise_timestamp`` answers. The
    client's ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` is read with two dict lookups; anything else
    goes to the general parser, which also words the errors."""
    if type(value) is str and (len(value) == 20 or len(value) == 27) and value[-1] == "Z":
        hour = _hour_us.get(value[:14])
        if hour is None:
            hour = _hour_start(value[:14])
        second = _MINUTE_SECOND.get(value[14:19])
        if hour is not None and second is not None:
            if len(value) == 20:
                return hour + second
            micros = value[20:26]
            if value[19] == "." and micros.isascii() and micros.isdigit():
                return hour + second + int(micros)
    return normalise_timestamp(value)


def _hour_start(prefix: str) -> int | None:
    # Years before 1000 take the general parser, which refuses them with a reason.
    if not _HOUR.fullmatch(prefix) or int(prefix[11:13]) > 23 or prefix[0] == "0":
        return None
    try:
        day = date.fromisoformat(prefix[:10]).toordinal() - _EPOCH_ORDINAL
    except ValueError:
        return None
    if len(_hour_us) >= 4096:
        _hour_us.clear()
    start = _hour_us[prefix] = day * _US_PER_DAY + int(prefix[11:13]) * 3_600_000_000
    return start
