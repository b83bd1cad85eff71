"""Tracker(enforce_limits=True) against a real collector: an exceeded block budget stops
the next track() of its customer, learned from GET /api/v1/budgets, never on track()."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from aicm_manual import Tracker, UsageLimitExceeded
from aicm_manual.server._embedded import embedded_collector

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
KEY = "aicm_limits_key_0123456789"


def test_an_exceeded_block_budget_stops_the_next_track(tmp_path: Path) -> None:
    """Spend past the limit -> the guard's refresh learns it -> track() raises for that
    customer (nothing sent), and still takes another customer's records."""
    database = f"sqlite:///{tmp_path / 'limits.db'}"
    with embedded_collector(database, SCHEMAS, [f"t:{KEY}"]) as c:
        auth = {"Authorization": f"Bearer {KEY}"}
        budget = {
            "scope": {"client_customer_key": "acme"},
            "period": "month",
            "limit": "0.000001",
            "action": "block",
        }
        put = requests.put(f"{c.url}/api/v1/budgets/acme", json=budget, headers=auth, timeout=10)
        assert put.status_code == 201, put.text
        tracker = Tracker(
            "heygen",
            "heygen::streaming-avatar",
            schemas_dir=SCHEMAS,
            aicm_api_base=c.url,
            aicm_api_key=KEY,
            delivery_type="immediate",
            enforce_limits=True,
            environ={"AICM_INI_PATH": "/nonexistent"},
        )
        try:
            tracker.track({"duration": 30.0}, client_customer_key="acme")  # spends past it
            assert tracker.limits is not None
            tracker.limits.refresh()  # what the background thread does every 10 s
            with pytest.raises(UsageLimitExceeded, match="'acme'"):
                tracker.track({"duration": 1.0}, client_customer_key="acme")
            tracker.track({"duration": 1.0}, client_customer_key="globex")
        finally:
            tracker.close()
        events = requests.get(f"{c.url}/api/v1/events", headers=auth, timeout=10).json()
        customers = sorted(e["client_customer_key"] for e in events["events"])
        assert customers == ["acme", "globex"]
