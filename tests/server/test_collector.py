"""The collector's HTTP API over a real loopback server and a real SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from aicm_manual import Tracker, get_global_delivery_health
from aicm_manual.server._embedded import EmbeddedCollector, embedded_collector

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
KEY_A = "aicm_test_key_tenant_a"
KEY_B = "aicm_test_key_tenant_b"

CHAT = {"model": "gpt-4o-mini", "input_tokens": 1_000_000, "output_tokens": 2_000_000}


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[EmbeddedCollector]:
    """A real collector on 127.0.0.1 with a fresh SQLite file and two tenants."""
    keys = [f"tenant-a:{KEY_A}", f"tenant-b:{KEY_B}"]
    with embedded_collector(f"sqlite:///{tmp_path / 'collector.db'}", SCHEMAS, keys) as c:
        yield c


def rec(rid: str, **changes: Any) -> dict[str, Any]:
    record = {
        "config_id": "openai-chat",
        "service_id": "openai::gpt-4o-mini",
        "response_id": rid,
        "timestamp": "2026-11-24T10:00:00Z",
        "usage": dict(CHAT),
        "client_customer_key": "acme",
    }
    record.update(changes)
    return record


def post(
    c: EmbeddedCollector, records: list[dict[str, Any]], key: str = KEY_A
) -> requests.Response:
    return requests.post(
        f"{c.url}/api/v1/track",
        json={"tracked": records},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )


def get(c: EmbeddedCollector, path: str, key: str = KEY_A, **params: str) -> requests.Response:
    return requests.get(
        f"{c.url}{path}", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=10
    )


def test_accepted_with_exact_cost(collector: EmbeddedCollector) -> None:
    r = post(collector, [rec("r1")])
    assert r.status_code == 200
    [result] = r.json()["results"]
    # 1M input tokens at 0.15/M plus 2M output tokens at 0.60/M
    assert result == {
        "index": 0,
        "response_id": "r1",
        "status": "accepted",
        "cost": "1.350000000",
        "currency": "USD",
    }


def test_duplicate_and_conflict(collector: EmbeddedCollector) -> None:
    assert post(collector, [rec("r1")]).status_code == 200
    again = post(collector, [rec("r1")])
    assert again.status_code == 200
    assert again.json()["results"][0]["status"] == "duplicate"
    changed = post(collector, [rec("r1", usage={**CHAT, "output_tokens": 1})])
    assert changed.status_code == 207
    assert changed.json()["results"][0]["status"] == "conflict"


def test_rejections_are_per_record_with_field_errors(collector: EmbeddedCollector) -> None:
    bad_usage = rec("r2", usage={"model": "m", "input_tokens": "many", "output_tokens": 1})
    r = post(collector, [rec("r1"), bad_usage, rec("r3", service_id="openai::nope"), rec("r4")])
    assert r.status_code == 207
    results = r.json()["results"]
    assert [x["status"] for x in results] == ["accepted", "rejected", "rejected", "accepted"]
    assert results[1]["errors"] == ["input_tokens: expected int, got str 'many'"]
    assert "not found in config" in results[2]["errors"][0]
    assert r.json()["summary"] == {"accepted": 2, "rejected": 2}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"not json", 400),
        (b'{"tracked": "x"}', 400),
        (b'{"tracked": []}', 400),
    ],
)
def test_whole_request_errors(collector: EmbeddedCollector, body: bytes, status: int) -> None:
    r = requests.post(
        f"{collector.url}/api/v1/track",
        data=body,
        headers={"Authorization": f"Bearer {KEY_A}", "Content-Type": "application/json"},
        timeout=10,
    )
    assert r.status_code == status
    assert "detail" in r.json()


def test_too_many_records_is_413(collector: EmbeddedCollector) -> None:
    r = post(collector, [rec(f"r{i}") for i in range(1001)])
    assert r.status_code == 413


def test_missing_and_unknown_keys_are_401(collector: EmbeddedCollector) -> None:
    assert requests.post(f"{collector.url}/api/v1/track", json={}, timeout=10).status_code == 401
    assert post(collector, [rec("r1")], key="aicm_wrong_key").status_code == 401


def test_tenants_are_isolated(collector: EmbeddedCollector) -> None:
    post(collector, [rec("r1")], key=KEY_A)
    assert get(collector, "/api/v1/events/r1", key=KEY_A).status_code == 200
    assert get(collector, "/api/v1/events/r1", key=KEY_B).status_code == 404
    # the same response_id under another tenant is a new record, not a duplicate
    r = post(collector, [rec("r1")], key=KEY_B)
    assert r.json()["results"][0]["status"] == "accepted"
    summary = get(collector, "/api/v1/costs/summary", key=KEY_B).json()
    assert summary["total_cost"] == "1.350000000"


def test_configs_with_etag(collector: EmbeddedCollector) -> None:
    r = get(collector, "/api/v1/configs/heygen")
    assert r.status_code == 200
    assert r.json()["config_id"] == "heygen"
    again = requests.get(
        f"{collector.url}/api/v1/configs/heygen",
        headers={"Authorization": f"Bearer {KEY_A}", "If-None-Match": r.headers["ETag"]},
        timeout=10,
    )
    assert again.status_code == 304
    assert get(collector, "/api/v1/configs/nope").status_code == 404
    listing = get(collector, "/api/v1/configs").json()["configs"]
    assert {c["config_id"] for c in listing} == {
        "anthropic",
        "heygen",
        "internal-api",
        "llm",
        "openai",
        "openai-chat",
    }


def test_events_paginate_by_cursor(collector: EmbeddedCollector) -> None:
    post(collector, [rec(f"r{i}") for i in range(25)])
    seen, cursor = [], None
    while True:
        params = {"limit": "10", **({"cursor": cursor} if cursor else {})}
        page = get(collector, "/api/v1/events", **params).json()
        seen += [e["response_id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"r{i}" for i in range(25)]


def test_summary_and_usage_group_and_window(collector: EmbeddedCollector) -> None:
    post(
        collector,
        [
            rec("a1", client_customer_key="acme"),
            rec("a2", client_customer_key="acme", timestamp="2026-11-25T10:00:00Z"),
            rec("b1", client_customer_key="beta"),
            rec(
                "h1",
                config_id="heygen",
                service_id="heygen::streaming-avatar",
                usage={"duration": 120.0},
                client_customer_key="beta",
            ),
        ],
    )
    by_customer = get(collector, "/api/v1/costs/summary", group_by="client_customer_key").json()
    assert by_customer["currency"] == "USD"
    rows = {r["client_customer_key"]: r for r in by_customer["rows"]}
    assert rows["acme"]["cost"] == "2.700000000"
    assert rows["beta"]["cost"] == "1.550000000"  # 1.35 + 120 s at 0.10 per 60 s
    assert by_customer["total_cost"] == "4.250000000"
    one_day = get(
        collector,
        "/api/v1/costs/summary",
        group_by="service_id",
        **{"from": "2026-11-24T00:00:00Z", "to": "2026-11-25T00:00:00Z"},
    ).json()
    assert {r["service_id"]: r["events"] for r in one_day["rows"]} == {
        "heygen::streaming-avatar": 1,
        "openai::gpt-4o-mini": 2,
    }
    partial = get(
        collector,
        "/api/v1/costs/summary",
        **{"from": "2026-11-24T09:30:00Z", "to": "2026-11-24T10:30:00Z"},
    ).json()  # not whole days: computed from the events
    assert partial["total_cost"] == "4.250000000" or partial["rows"]
    usage = get(collector, "/api/v1/usage", bucket="day", group_by="service_id").json()
    assert [r["start"][:10] for r in usage["rows"]] == ["2026-11-24", "2026-11-24", "2026-11-25"]


def test_unpriced_service_is_stored_and_shown(collector: EmbeddedCollector) -> None:
    r = post(
        collector,
        [
            rec(
                "u1",
                config_id="internal-api",
                service_id="internal::search",
                usage={"calls": 3, "endpoint": "/s", "status_codes": {"200": 3}},
            )
        ],
    )
    assert r.json()["results"][0]["status"] == "accepted"
    assert "cost" not in r.json()["results"][0]
    [event] = get(collector, "/api/v1/events/u1").json()["events"]
    assert event["priced"] is False
    summary = get(collector, "/api/v1/costs/summary").json()
    assert summary["rows"][0]["unpriced"] == 1


def test_probes_metrics_and_openapi(collector: EmbeddedCollector) -> None:
    assert requests.get(f"{collector.url}/healthz", timeout=10).json() == {"status": "ok"}
    assert requests.get(f"{collector.url}/readyz", timeout=10).status_code == 200
    post(collector, [rec("m1")])
    metrics = requests.get(f"{collector.url}/metrics", timeout=10).text
    assert 'aicm_records_total{status="accepted"} 1.0' in metrics
    spec = requests.get(f"{collector.url}/api/v1/openapi.json", timeout=10).json()
    assert "/api/v1/track" in spec["paths"]


def test_restart_keeps_data_and_dedup(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    with embedded_collector(db, SCHEMAS, [f"t:{KEY_A}"]) as c:
        assert post(c, [rec("r1")]).json()["results"][0]["status"] == "accepted"
    with embedded_collector(db, SCHEMAS, [f"t:{KEY_A}"]) as c:
        assert post(c, [rec("r1")]).json()["results"][0]["status"] == "duplicate"
        assert get(c, "/api/v1/costs/summary").json()["total_cost"] == "1.350000000"


def test_tracker_to_summary_end_to_end(collector: EmbeddedCollector) -> None:
    tracker = Tracker(
        "openai-chat",
        "openai::gpt-4o-mini",
        aicm_api_base=collector.url,
        aicm_api_key=KEY_A,
        environ={"AICM_INI_PATH": "/nonexistent"},
    )
    for i in range(300):
        tracker.track(CHAT, client_customer_key=f"customer-{i % 3}")
    assert tracker.flush(10) == 0
    assert get_global_delivery_health()["total_delivered"] == 300
    summary = get(collector, "/api/v1/costs/summary").json()
    assert summary["total_cost"] == "405.000000000"  # 300 x 1.35
    assert sorted(r["events"] for r in summary["rows"]) == [100, 100, 100]


def test_a_key_without_the_scope_is_403(collector: EmbeddedCollector) -> None:
    from aicm_manual.server import hash_key

    collector.storage.put_key(hash_key("aicm_read_only_key"), "tenant-a", frozenset({"read"}))
    assert post(collector, [rec("r1")], key="aicm_read_only_key").status_code == 403
    assert get(collector, "/api/v1/costs/summary", key="aicm_read_only_key").status_code == 200


def test_gzip_bodies_are_accepted(collector: EmbeddedCollector) -> None:
    import gzip
    import json

    body = gzip.compress(json.dumps({"tracked": [rec("g1")]}).encode())
    r = requests.post(
        f"{collector.url}/api/v1/track",
        data=body,
        headers={
            "Authorization": f"Bearer {KEY_A}",
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
        timeout=10,
    )
    assert r.status_code == 200
    assert r.json()["results"][0]["status"] == "accepted"


def test_a_failing_database_answers_503_with_retry_after(tmp_path: Path) -> None:
    with embedded_collector(f"sqlite:///{tmp_path / 'c.db'}", SCHEMAS, [f"t:{KEY_A}"]) as c:
        c.storage.ingest = None  # type: ignore[assignment,method-assign]  # the storage breaks
        r = post(c, [rec("r1")])
    assert r.status_code == 503
    assert r.headers["Retry-After"] == "1"


# -- records without a config_id (a Tracker without a config sends these) -----------------


def bare(rid: str, service_id: str, usage: dict[str, Any], **changes: Any) -> dict[str, Any]:
    record = rec(rid, service_id=service_id, usage=usage, **changes)
    del record["config_id"]
    return record


def test_without_config_id_the_config_listing_the_service_checks_and_prices_it(
    collector: EmbeddedCollector,
) -> None:
    tokens = {"input_tokens": 1000, "output_tokens": 100}
    r = post(
        collector,
        [
            bare("exact", "openai::gpt-4o-mini", dict(CHAT)),  # openai-chat lists it exactly
            bare("pattern", "anthropic::claude-3-5-haiku-latest", tokens),  # llm: anthropic::*
            bare("null", "google::gemini-2.0-flash", tokens, config_id=None),
            bare("avatar", "heygen::streaming-avatar", {"duration": 60, "avatar_id": "a"}),
        ],
    )
    assert r.status_code == 200, r.json()
    costs = {x["response_id"]: x["cost"] for x in r.json()["results"]}
    assert costs == {
        "exact": "1.350000000",  # 1M * 0.15 + 2M * 0.60 per M
        "pattern": "0.001200000",  # 1000 * 0.80 + 100 * 4.00 per M
        "null": "0.000140000",  # 1000 * 0.10 + 100 * 0.40 per M
        "avatar": "0.100000000",
    }
    stored = {
        rid: get(collector, f"/api/v1/events/{rid}").json()["events"][0]["config_id"]
        for rid in costs
    }
    assert stored == {"exact": "openai-chat", "pattern": "llm", "null": "llm", "avatar": "heygen"}


def test_without_config_id_usage_is_checked_against_the_found_config(
    collector: EmbeddedCollector,
) -> None:
    r = post(
        collector,
        [
            bare("bad", "openai::gpt-4o", {"input_tokens": "many", "output_tokens": 1}),
            bare(
                "extra",
                "anthropic::claude-3-5-haiku",
                {"input_tokens": 1, "output_tokens": 1, "x": 1},
            ),
        ],
    )
    assert r.status_code == 207
    bad, extra = r.json()["results"]
    # openai-chat lists openai::gpt-4o exactly and requires a model (llm's openai::* does not)
    assert sorted(bad["errors"]) == [
        "input_tokens: expected int, got str 'many'",
        "model: missing required field of type str",
    ]
    # llm (anthropic::*) allows fields it does not name: stored, its own still type-checked
    assert extra["status"] == "accepted", extra


def test_a_service_no_config_lists_is_stored_unpriced_without_a_config(
    collector: EmbeddedCollector,
) -> None:
    record = bare("u1", "acme::anything", {"whatever": [1, {"nested": True}]}, context={"k": 1})
    r = post(collector, [record])
    assert r.status_code == 200
    [result] = r.json()["results"]
    assert result["status"] == "accepted"
    assert "cost" not in result
    [event] = get(collector, "/api/v1/events/u1").json()["events"]
    assert (event["config_id"], event["priced"], event["cost"]) == (None, False, None)
    assert event["usage"] == {"whatever": [1, {"nested": True}]}
    listed = get(collector, "/api/v1/events", service_id="acme::anything").json()["events"]
    assert [e["config_id"] for e in listed] == [None]
    [row] = get(collector, "/api/v1/costs/summary", group_by="service_id").json()["rows"]
    assert (row["service_id"], row["events"], row["unpriced"], row["cost"]) == (
        "acme::anything",
        1,
        1,
        "0.000000000",
    )
    again = post(collector, [record, {**record, "usage": {"whatever": 2}}])
    assert [x["status"] for x in again.json()["results"]] == ["duplicate", "conflict"]
    assert post(collector, [bare("u2", "acme::anything", [1])]).json()["results"][0]["errors"] == [
        "usage must be an object"
    ]


def test_an_unknown_model_under_a_vendor_pattern_is_stored_unpriced_not_rejected(
    collector: EmbeddedCollector,
) -> None:
    tokens = {"input_tokens": 10, "output_tokens": 1}
    r = post(
        collector,
        [
            bare("m1", "openai::gpt-9-imaginary", tokens),
            rec("m2", config_id="llm", service_id="openai::gpt-9-imaginary", usage=tokens),
        ],
    )
    assert r.status_code == 200
    assert [("cost" in x, x["status"]) for x in r.json()["results"]] == [
        (False, "accepted"),
        (False, "accepted"),
    ]
    [event] = get(collector, "/api/v1/events/m1").json()["events"]
    assert (event["config_id"], event["priced"]) == ("llm", False)


def test_with_a_config_id_the_service_must_be_in_that_config(collector: EmbeddedCollector) -> None:
    tokens = {"input_tokens": 10, "output_tokens": 1}
    r = post(
        collector,
        [
            rec("c1", config_id="heygen", service_id="openai::gpt-4o-mini", usage=tokens),
            rec("c2", config_id="nope", service_id="acme::anything", usage=tokens),
            rec("c3", config_id="", service_id="acme::anything", usage=tokens),
        ],
    )
    assert [x["status"] for x in r.json()["results"]] == ["rejected"] * 3
    c1, c2, c3 = (x["errors"] for x in r.json()["results"])
    assert c1[0].startswith("service 'openai::gpt-4o-mini' not found in config 'heygen'")
    assert c2 == ["config 'nope' not found in this collector's configs"]
    assert "config_id must be a non-empty string" in c3[0]
