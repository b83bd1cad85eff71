"""Cost sums that do not fit in 64 bits of nano-units.

One record of 5e9 USD is 5e18 nano-USD (fits in a signed 64-bit integer); two of them on
the same day and customer sum to 1e19, which does not. The collector must either keep the
sums exact or reject the record that would overflow, per record and before storing it;
whatever it stored, every summary equals the exact sum of the stored events.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from .live import Api, collector, statuses

FIVE_BILLION = "5000000000.000000000"


@pytest.fixture
def bulk_schemas(tmp_path: Path) -> Path:
    """A schemas folder with one config: 1e9 USD per unit, so 5 units cost 5e9 USD."""
    folder = tmp_path / "schemas"
    folder.mkdir()
    config = {
        "config_id": "bulk",
        "description": "One unit costs a billion dollars.",
        "version": "1",
        "manual_usage_schema": {"units": "int"},
        "services": [
            {
                "service_id": "bulk::unit",
                "pricing": {"currency": "USD", "unit": {"units": {"price": "1000000000"}}},
            }
        ],
    }
    (folder / "bulk.json").write_text(json.dumps(config))
    return folder


@pytest.fixture
def bulk(database: str, bulk_schemas: Path) -> Iterator[Api]:
    with collector(database, bulk_schemas) as api:
        yield api


def _rec(rid: str, timestamp: str = "2026-11-24T10:00:00Z") -> dict[str, Any]:
    return {
        "config_id": "bulk",
        "service_id": "bulk::unit",
        "response_id": rid,
        "timestamp": timestamp,
        "usage": {"units": 5},
        "client_customer_key": "acme",
    }


def _stored_total(api: Api) -> Decimal:
    response = api.get("/api/v1/events", limit="1000")
    assert response.status_code == 200, response.text[:300]
    return sum((Decimal(e["cost"]) for e in response.json()["events"] if e["cost"]), Decimal(0))


def test_one_record_costs_five_billion(bulk: Api) -> None:
    """Sanity check of the fixture: one record is accepted at exactly 5e9 USD."""
    response = bulk.track([_rec("one")])
    assert response.status_code == 200, response.text[:300]
    assert response.json()["results"][0]["cost"] == FIVE_BILLION


def test_a_second_five_billion_record_is_stored_or_rejected_never_5xx(bulk: Api) -> None:
    """The record whose cost would overflow the day's sum is answered per record (accepted
    or rejected with a reason), also when sent again; never a 5xx."""
    assert bulk.track([_rec("first")]).status_code == 200
    for attempt in (1, 2):
        response = bulk.track([_rec("second")])
        assert response.status_code in (200, 207), (attempt, response.status_code, response.text)
        [result] = response.json()["results"]
        if attempt == 1:
            assert result["status"] in ("accepted", "rejected"), result
            if result["status"] == "rejected":
                assert result["errors"], result
        else:
            assert result["status"] in ("duplicate", "rejected"), result


@pytest.mark.parametrize(
    "window",
    [
        {},
        {"from": "2026-11-24T00:00:00Z", "to": "2026-11-25T00:00:00Z"},  # whole days: rollups
        {"from": "2026-11-24T09:00:00Z", "to": "2026-11-24T23:00:00Z"},  # partial: events
    ],
    ids=["open", "whole-day", "partial-day"],
)
@pytest.mark.parametrize("group_by", ["client_customer_key", "service_id"])
def test_summary_and_usage_equal_the_exact_sum_of_stored_events(
    bulk: Api, window: dict[str, str], group_by: str
) -> None:
    """After two 5e9 USD records, /costs/summary and /usage answer 200 and their totals
    equal the exact sum of the costs of the events stored (as /events shows them)."""
    first = bulk.track([_rec("first")])
    second = bulk.track([_rec("second", "2026-11-24T11:00:00Z")])
    assert first.status_code == 200, first.text[:300]
    assert second.status_code in (200, 207), (second.status_code, second.text[:300])
    assert statuses(second)[0] in ("accepted", "rejected")
    stored = _stored_total(bulk)

    summary = bulk.get("/api/v1/costs/summary", group_by=group_by, **window)
    assert summary.status_code == 200, (summary.status_code, summary.text[:300])
    body = summary.json()
    assert Decimal(body["total_cost"]) == stored
    assert sum(Decimal(r["cost"]) for r in body["rows"]) == stored

    usage = bulk.get("/api/v1/usage", bucket="day", group_by=group_by, **window)
    assert usage.status_code == 200, (usage.status_code, usage.text[:300])
    assert sum(Decimal(r["cost"]) for r in usage.json()["rows"]) == stored
