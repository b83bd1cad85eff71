"""Event times outside years 1000-9999 (UTC) are rejected per record, and
every time the API answers is RFC 3339 with a four-digit year."""

from __future__ import annotations

import re

import pytest

from .live import Api, record, statuses

RFC3339_US = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z")

OUT_OF_RANGE = [
    "0001-01-01T00:00:00Z",  # year 1
    "0999-12-31T23:59:59.999999Z",  # the last microsecond before year 1000
    "0001-01-01T00:30:00+01:00",  # year 1 written, year 0 in UTC
    "9999-12-31T23:30:00-01:00",  # year 9999 written, year 10000 in UTC
]
IN_RANGE = ["1000-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z"]


def test_times_outside_years_1000_to_9999_are_rejected_per_record(api: Api) -> None:
    """Out-of-range times are `rejected` (207) with a reason; the range's ends are kept."""
    records = [record(f"in-{n}", timestamp=t) for n, t in enumerate(IN_RANGE)]
    records += [record(f"out-{n}", timestamp=t) for n, t in enumerate(OUT_OF_RANGE)]
    response = api.track(records)
    assert response.status_code == 207, (response.status_code, response.text[:400])
    assert statuses(response) == ["accepted"] * len(IN_RANGE) + ["rejected"] * len(OUT_OF_RANGE)
    for result in response.json()["results"][len(IN_RANGE) :]:
        assert result["errors"], result


@pytest.mark.parametrize("stamp", IN_RANGE + OUT_OF_RANGE)
def test_every_time_the_api_answers_has_a_four_digit_year(api: Api, stamp: str) -> None:
    """Whatever was stored, /events and /usage answer RFC 3339 times with four-digit years
    (year 1 came back as `1-01-01T...`, year 10000 as `10000-01-01T...`)."""
    api.track([record("the-record", timestamp=stamp)])
    events = api.get("/api/v1/events")
    assert events.status_code == 200, events.text[:300]
    shown = [e[k] for e in events.json()["events"] for k in ("timestamp", "received_at")]
    for bucket in ("hour", "day", "month"):
        usage = api.get("/api/v1/usage", bucket=bucket)
        assert usage.status_code == 200, (bucket, usage.status_code, usage.text[:300])
        shown += [row["start"] for row in usage.json()["rows"]]
    assert [s for s in shown if not RFC3339_US.fullmatch(s)] == []
