"""Two collectors on one PostgreSQL database: a price rule stored through one prices the
other's records within the reload bound, and a budget crossing seen by both is announced
once per threshold."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote
from uuid import uuid4

import pytest
import requests

from aicm_manual.server import _money_api
from aicm_manual.server._embedded import embedded_collector
from aicm_manual.server._storage import open_storage

from .ledger_support import POSTGRES_URL, SECRET, Receiver, serve_receiver
from .test_money_api import SCHEMAS

KEY = "aicm_two_collectors_key_01"


@pytest.fixture
def database() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    schema = f"aicm_test_{uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options={quote(f'-c search_path={schema}')}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with serve_receiver() as running:
        yield running


def post(url: str, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r = requests.post(
        f"{url}/api/v1/track",
        json={"tracked": records},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert r.status_code in (200, 207), r.text
    results: list[dict[str, Any]] = r.json()["results"]
    return results


def search(rid: str, calls: int) -> dict[str, Any]:
    today = time.strftime("%Y-%m-%d", time.gmtime())
    return {
        "service_id": "contoso::search",
        "response_id": rid,
        "timestamp": f"{today}T00:00:01Z",
        "usage": {"calls": calls},
        "client_customer_key": "acme",
    }


def test_a_rule_stored_by_one_collector_prices_the_others_records(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After the reload bound, collector B prices with the rule collector A stored."""
    monkeypatch.setattr(_money_api, "RULES_RELOAD_S", 0.2)
    with (
        embedded_collector(database, SCHEMAS, [f"t:{KEY}"]) as a,
        embedded_collector(database, SCHEMAS, [f"t:{KEY}"]) as b,
    ):
        assert post(b.url, [search("before", 2)])[0].get("cost") is None
        rule = {
            "effective_from": "2000-01-01T00:00:00Z",
            "pricing": {"currency": "EUR", "unit": {"calls": {"price": "0.5"}}},
        }
        put = requests.put(
            f"{a.url}/api/v1/prices/contoso::search",
            json=rule,
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )
        assert put.status_code == 201, put.text
        time.sleep(0.3)  # past the (shortened) reload bound
        post(b.url, [search("trigger", 2)])  # B notices the new rule mark on this request
        assert post(b.url, [search("after", 2)])[0]["cost"] == "1.000000000"


def test_a_crossing_seen_by_two_collectors_is_announced_once(
    database: str, receiver: Receiver
) -> None:
    """Both collectors see the 50% threshold reached; the receiver gets it once, and 100%
    once, each signed."""
    storage = open_storage(database)
    try:
        storage.ledger.put_webhook("t", "ops", receiver.url, SECRET, ["budget.threshold"])
        storage.ledger.put_budget(
            "t",
            "acme",
            {"scope": {"client_customer_key": "acme"}, "period": "day", "limit": "10",
             "thresholds": [0.5, 1.0]},
        )  # fmt: skip
        storage.ledger.add_price_rule(
            "t", "contoso::search", 0, {"currency": "USD", "unit": {"calls": {"price": "1"}}}
        )
    finally:
        storage.close()
    with (
        embedded_collector(database, SCHEMAS, [f"t:{KEY}"]) as a,
        embedded_collector(database, SCHEMAS, [f"t:{KEY}"]) as b,
    ):
        post(a.url, [search("a1", 6)])
        post(b.url, [search("b1", 1)])  # B's watcher also finds 50% reached
        post(b.url, [search("b2", 5)])
        post(a.url, [search("a2", 1)])  # and A finds 100%
        deadline = time.monotonic() + 20
        while len(receiver.verified) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.5)  # room for a duplicate to arrive, if there were one
    thresholds = sorted(m["data"]["threshold"] for m in receiver.verified)
    assert thresholds == [0.5, 1.0]
    assert len(receiver.seen) == 2
