"""The money routes over HTTP on a real collector: tenant price rules, the unpriced report,
re-pricing, budgets with signed webhook alerts, and limit checks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from aicm_manual.server._embedded import embedded_collector

from .ledger_support import SECRET, Receiver, serve_receiver

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
A, B = "aicm_money_key_tenant_a", "aicm_money_key_tenant_b"


class Api:
    def __init__(self, url: str, key: str) -> None:
        self.url, self.headers = url, {"Authorization": f"Bearer {key}"}

    def get(self, path: str, **params: Any) -> requests.Response:
        return requests.get(self.url + path, params=params, headers=self.headers, timeout=30)

    def put(self, path: str, body: Any) -> requests.Response:
        return requests.put(self.url + path, json=body, headers=self.headers, timeout=30)

    def post(self, path: str, body: Any) -> requests.Response:
        return requests.post(self.url + path, json=body, headers=self.headers, timeout=30)

    def track(self, *records: dict[str, Any]) -> list[dict[str, Any]]:
        r = self.post("/api/v1/track", {"tracked": list(records)})
        assert r.status_code in (200, 207), r.text
        results: list[dict[str, Any]] = r.json()["results"]
        return results


@pytest.fixture
def apis(tmp_path: Path) -> Iterator[tuple[Api, Api]]:
    database = f"sqlite:///{tmp_path / 'money.db'}"
    with embedded_collector(database, SCHEMAS, [f"tenant-a:{A}", f"tenant-b:{B}"]) as c:
        yield Api(c.url, A), Api(c.url, B)


def search(rid: str, day: str, calls: int = 4, customer: str = "acme") -> dict[str, Any]:
    return {
        "service_id": "contoso::search",
        "response_id": rid,
        "timestamp": f"{day}T12:00:00Z",
        "usage": {"calls": calls},
        "client_customer_key": customer,
    }


def totals_match_events(api: Api) -> dict[str, Decimal]:
    """The summary's total per currency, checked equal to the sum of the events' costs."""
    events = api.get("/api/v1/events", limit=1000).json()["events"]
    by_event: dict[str, Decimal] = {}
    for e in events:
        if e["priced"]:
            by_event[e["currency"]] = by_event.get(e["currency"], Decimal(0)) + Decimal(e["cost"])
    summary = api.get("/api/v1/costs/summary", group_by="service_id").json()
    assert {summary["currency"]: Decimal(summary["total_cost"])} == by_event, summary
    assert sum(Decimal(r["cost"]) for r in summary["rows"]) == by_event[summary["currency"]]
    return by_event


def test_a_rule_prices_from_its_date_for_its_tenant_and_repricing_catches_up(
    apis: tuple[Api, Api],
) -> None:
    """Unpriced at first (with its reason), priced after a rule and a re-pricing, exactly;
    the other tenant's records stay unpriced; a second re-pricing changes nothing."""
    a, b = apis
    a.track(search("s1", "2026-05-01"), search("s2", "2026-06-01"))
    b.track(search("s1", "2026-06-01"))
    report = a.get("/api/v1/pricing/unpriced").json()["rows"]
    assert [(r["service_id"], r["events"]) for r in report] == [("contoso::search", 2)]
    assert "no config lists the service" in report[0]["reason"]
    rule = {
        "effective_from": "2026-05-15T00:00:00Z",
        "pricing": {"currency": "EUR", "unit": {"calls": {"price": "0.25"}}},
    }
    put = a.put("/api/v1/prices/contoso::search", rule)
    assert put.status_code == 201, put.text
    assert [r["service_id"] for r in a.get("/api/v1/prices").json()["rules"]] == ["contoso::search"]
    assert b.get("/api/v1/prices").json()["rules"] == []
    fresh = a.track(search("s3", "2026-06-02"))
    assert fresh[0]["cost"] == "1.000000000"
    assert fresh[0]["currency"] == "EUR"
    done = a.post("/api/v1/reprice", {"only_unpriced": True}).json()
    assert done["repriced"] == 1  # s2; s1 is before the rule's date and stays unpriced
    assert done["cost_after"] == {"EUR": "1.000000000"}
    assert a.post("/api/v1/reprice", {"only_unpriced": True}).json()["repriced"] == 0
    assert totals_match_events(a) == {"EUR": Decimal("2")}
    left = a.get("/api/v1/pricing/unpriced").json()["rows"]
    assert [(r["service_id"], r["events"]) for r in left] == [("contoso::search", 1)]
    assert [
        (r["service_id"], r["events"]) for r in b.get("/api/v1/pricing/unpriced").json()["rows"]
    ] == [("contoso::search", 1)]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"pricing": {"unit": {"calls": {"price": "1"}}}}, "effective_from"),
        ({"effective_from": "yesterday", "pricing": {"unit": {}}}, "ISO 8601"),
        (
            {"effective_from": "2026-01-01", "pricing": {"unit": {"calls": {"price": "-1"}}}},
            "price",
        ),
        ({"effective_from": "2026-01-01", "pricing": {}, "colour": 1}, ""),
    ],
)
def test_bad_price_rules_are_400_with_the_reason(
    apis: tuple[Api, Api], body: dict[str, Any], problem: str
) -> None:
    """A rule that cannot be used is refused and nothing is stored."""
    a, _ = apis
    r = a.put("/api/v1/prices/contoso::search", body)
    assert r.status_code == 400, r.text
    assert problem in r.json()["detail"]
    assert a.get("/api/v1/prices").json()["rules"] == []


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as running:
        yield running


def test_a_budget_crossing_arrives_signed_and_blocks_the_limit_check(
    apis: tuple[Api, Api], receiver: Receiver
) -> None:
    """50% then 100% reach the webhook once each, in order; /limits/check says not allowed
    for the blocked customer and allowed for another; the deliveries are listed."""
    a, b = apis
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert a.put("/api/v1/webhooks/ops", {"url": receiver.url, "secret": SECRET}).status_code == 200
    a.put(
        "/api/v1/prices/contoso::search",
        {
            "effective_from": "2000-01-01T00:00:00Z",
            "pricing": {"currency": "USD", "unit": {"calls": {"price": "1"}}},
        },
    )
    put = a.put(
        "/api/v1/budgets/acme-daily",
        {
            "scope": {"client_customer_key": "acme"},
            "period": "day",
            "limit": "10",
            "thresholds": [0.5, 1.0],
            "action": "block",
        },
    )
    assert put.status_code == 201, put.text
    assert put.json()["state"] == "ok"
    a.track(search("b1", today, calls=6))
    a.track(search("b2", today, calls=5))
    b.track(search("b1", today, calls=50))  # another tenant's spend counts for nobody here
    deadline = time.monotonic() + 20
    while len(receiver.verified) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    data = [m["data"] for m in receiver.verified]
    assert [(d["threshold"], d["spent"]) for d in data] == [
        (0.5, "6.000000000"),
        (1.0, "11.000000000"),
    ]
    budget = a.get("/api/v1/budgets/acme-daily").json()
    assert (budget["state"], budget["spent"], budget["remaining"]) == (
        "exceeded",
        "11.000000000",
        "0.000000000",
    )
    blocked = a.get("/api/v1/limits/check", client_customer_key="acme", service_id="x::y").json()
    assert blocked["allowed"] is False
    other = a.get("/api/v1/limits/check", client_customer_key="globex").json()
    assert other == {"allowed": True, "budgets": []}
    deliveries = a.get("/api/v1/webhooks/ops/deliveries").json()["deliveries"]
    assert sorted(d["body"]["data"]["threshold"] for d in deliveries) == [0.5, 1.0]
    assert all(d["delivered_at"] for d in deliveries)
    assert b.get("/api/v1/budgets").json()["budgets"] == []


def test_only_admin_keys_change_prices_and_budgets(tmp_path: Path) -> None:
    """A read key may look but not change: 403 for PUT and POST."""
    from aicm_manual._secret import key_digest
    from aicm_manual.server._embedded import build

    database = f"sqlite:///{tmp_path / 'scopes.db'}"
    storage, _ = build(database, SCHEMAS, [])
    storage.put_key(key_digest("aicm_reader_only_key"), "t", frozenset({"read"}))
    storage.close()
    with embedded_collector(database, SCHEMAS, []) as c:
        reader = Api(c.url, "aicm_reader_only_key")
        assert reader.get("/api/v1/budgets").status_code == 200
        assert reader.put("/api/v1/budgets/x", {"period": "day", "limit": "1"}).status_code == 403
        assert reader.post("/api/v1/reprice", {}).status_code == 403


def test_a_configs_usage_schema_is_served_as_json_schema(apis: tuple[Api, Api]) -> None:
    """GET /configs/{id}/schema states the config's rules: required fields, no bool for int."""
    a, _ = apis
    schema = a.get("/api/v1/configs/heygen/schema").json()
    assert schema["type"] == "object"
    assert "duration" in schema["required"]
    assert a.get("/api/v1/configs/nope/schema").status_code == 404


@pytest.fixture
def stopped_database(tmp_path: Path) -> str:
    database = f"sqlite:///{tmp_path / 'counts.db'}"
    with embedded_collector(database, SCHEMAS, [f"tenant-a:{A}", f"tenant-b:{B}"]) as c:
        a, b = Api(c.url, A), Api(c.url, B)
        a.track(search("h1", "2026-11-30"), {**search("h2", "2026-11-30"), "timestamp": "x"})
        a.track(search("h1", "2026-11-30"))
        b.track(search("h3", "2026-11-30"))
    return database


def test_ingest_counts_survive_the_collector_stopping(stopped_database: str) -> None:
    """After the collector stops, the counts and the reason are in the database."""
    from aicm_manual.server._storage import open_storage

    storage = open_storage(stopped_database)
    try:
        counts = storage.ledger.ingest_counts("tenant-a", None, None)
        by_status = {row["status"]: row["count"] for row in counts}
        reasons = storage.ledger.rejection_reasons("tenant-a", None, None)
        theirs = storage.ledger.ingest_counts("tenant-b", None, None)
    finally:
        storage.close()
    assert by_status == {"accepted": 1, "duplicate": 1, "rejected": 1}
    assert len(reasons) == 1
    assert "timestamp" in reasons[0]["reason"]
    assert [(r["status"], r["count"]) for r in theirs] == [("accepted", 1)]


def test_ingest_counts_reach_the_database_while_the_collector_is_idle(tmp_path: Path) -> None:
    """Counts are written within a few seconds of their request even when no request
    follows: a dashboard reading an idle collector sees them."""
    from aicm_manual.server._storage import open_storage

    database = f"sqlite:///{tmp_path / 'idle.db'}"
    with embedded_collector(database, SCHEMAS, [f"tenant-a:{A}"]) as c:
        Api(c.url, A).track(search("i1", "2026-11-30"), {**search("i2", "2026-11-30"), "day": 1})
        reader = open_storage(database)
        try:
            deadline = time.monotonic() + 30
            counts: dict[str, int] = {}
            while time.monotonic() < deadline:
                rows = reader.ledger.ingest_counts("tenant-a", None, None)
                counts = {row["status"]: row["count"] for row in rows}
                if counts:
                    break
                time.sleep(0.25)
        finally:
            reader.close()
        assert counts == {"accepted": 1, "rejected": 1}  # read while the collector still runs


def test_a_repricing_that_would_overflow_a_days_sum_is_refused_whole(
    database: str,
) -> None:
    """Two calls on one day re-priced at 5,000,000,000 USD each: the day's sum would pass
    64 bits (SQLite would turn it into a float). The re-pricing is a 409 naming the day,
    nothing is changed, and the totals still equal the events."""
    with embedded_collector(database, SCHEMAS, [f"tenant-a:{A}"]) as c:
        a = Api(c.url, A)
        a.track(search("o1", "2026-06-01", calls=1), search("o2", "2026-06-01", calls=1))
        rule = {
            "effective_from": "2026-01-01T00:00:00Z",
            "pricing": {"currency": "USD", "unit": {"calls": {"price": "5000000000"}}},
        }
        assert a.put("/api/v1/prices/contoso::search", rule).status_code == 201
        refused = a.post("/api/v1/reprice", {"only_unpriced": True})
        assert refused.status_code == 409, refused.text
        assert "2026-06-01" in refused.json()["detail"]
        assert "64-bit" in refused.json()["detail"]
        events = a.get("/api/v1/events", limit=10).json()["events"]
        assert [e["priced"] for e in events] == [False, False]
        summary = a.get("/api/v1/costs/summary", group_by="service_id").json()
        assert [(r["events"], r["unpriced"]) for r in summary["rows"]] == [(2, 2)]
