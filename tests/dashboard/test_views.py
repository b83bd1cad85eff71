"""The views' reads: rollup-read charts equal the storage's usage, and the pages that need
storage methods a collector may lack say so, then show the data once the methods exist."""

from __future__ import annotations

from typing import Any

from dashboard_support import (
    WEEK,
    Running,
    running_fixture,  # noqa: F401  # the `running` fixture
)

from aicm_manual.server._dashboard.views import budgets, ingest, overview, pricing
from aicm_manual.server._dashboard.web import Dashboard
from aicm_manual.server._dashboard.window import parse_window

NOW = 1_796_000_000_000_000


def test_daily_chart_from_rollups_equals_usage(running: Running) -> None:
    """Day buckets read from the daily rollups equal storage.usage for the same window."""
    window = parse_window(WEEK, NOW)
    fast = overview._usage(running.storage, "tenant-a", window)
    slow = running.storage.usage("tenant-a", "day", "service_id", window.since_us, window.until_us)

    def key(rows: list[Any]) -> list[tuple[Any, ...]]:
        return sorted(
            (r.bucket_start_us, r.key, r.currency or "", r.events, r.cost_nanos, r.unpriced)
            for r in rows
        )

    assert key(fast) == key(slow)
    assert len(fast) > 7


class NewerStorage:
    """The real storage plus the methods a newer collector's storage will have."""

    def __init__(self, storage: Any) -> None:
        self._storage = storage

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def unpriced_report(self, tenant: str, since_us: int, until_us: int) -> list[dict[str, Any]]:
        return [
            {
                "service_id": "contoso::reranker",
                "events": 83,
                "first_seen_us": since_us,
                "last_seen_us": until_us - 1,
                "reason": "no config lists contoso::reranker",
            }
        ]

    def ingest_counts(self, tenant: str, since_us: int, until_us: int) -> list[dict[str, Any]]:
        return [
            {"hour_start_us": since_us + 3_600_000_000, "status": "accepted", "count": 40},
            {"hour_start_us": since_us + 3_600_000_000, "status": "rejected", "count": 2},
        ]

    def rejection_reasons(
        self, tenant: str, since_us: int, until_us: int, limit: int
    ) -> list[dict[str, Any]]:
        return [{"reason": "usage.input_tokens: expected int, got str", "count": 2}]

    def budget_statuses(self, tenant: str, now_us: int) -> list[dict[str, Any]]:
        return [
            {
                "budget_id": "acme-daily",
                "scope": {"client_customer_key": "acme"},
                "period": "day",
                "limit": "25.000000000",
                "currency": "USD",
                "spent": "20.000000000",
                "remaining": "5.000000000",
                "period_end": "2026-11-08T00:00:00.000000Z",
                "state": "warning",
                "action": "alert",
            }
        ]


def render(storage: Any, module: Any) -> str:
    window = parse_window(WEEK, NOW)
    context = module.build(storage, "tenant-a", window, {})
    page = {**context, "window": window, "active": "", "path": "/dashboard"}
    return Dashboard(storage, b"k" * 40)._render(module.TEMPLATE, page, None)


def test_storage_pages_read_the_real_storage(running: Running) -> None:
    """Pricing, budget and ingest pages read the real storage: the unpriced report, the
    budgets, and the collector's counts by status and rejection reason."""
    html = render(running.storage, pricing)
    assert "Not available" not in html
    assert "contoso::reranker" in html
    assert "no config lists the service" in html
    assert "Not available" not in render(running.storage, budgets)
    hour = 1_793_527_200_000_000  # 2026-11-01T10:00:00Z, inside WEEK
    running.storage.ledger.add_ingest_stats(
        {
            ("tenant-a", hour, "accepted", ""): 7,
            ("tenant-a", hour, "rejected", "duration: expected float, got str 'x'"): 2,
            ("tenant-b", hour, "rejected", "tenant b's reason"): 5,
        }
    )
    html = render(running.storage, ingest)
    assert "Not available" not in html
    assert "duration: expected float, got str" in html
    assert "tenant b's reason" not in html


def test_pages_show_the_data_once_the_storage_has_it(running: Running) -> None:
    """With the newer storage methods, the same pages show their tables."""
    newer = NewerStorage(running.storage)
    html = render(newer, pricing)
    assert "no config lists contoso::reranker" in html
    assert "Not available" not in html
    html = render(newer, ingest)
    assert 'id="ingest-accepted">40<' in html
    assert "expected int, got str" in html
    html = render(newer, budgets)
    assert "acme-daily" in html
    assert "80.0%" in html
    assert "1 / 1" not in render(newer, overview)  # one budget, none exceeded
    assert "0 / 1" in render(newer, overview)
