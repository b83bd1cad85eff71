"""Retry policy and the engine's timing, with an injected clock and jitter (no sleeping)."""

from __future__ import annotations

import email.utils
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from aicm_manual import ConfigError, DeliveryEngine, DeliverySettings, DeliveryType, OnFull
from aicm_manual._delivery.retry import Backoff, is_retryable, parse_retry_after
from aicm_manual._records import Target, UsageRecord, normalise_timestamp
from aicm_manual._settings import Sources
from aicm_manual.testing import CollectorStub, Scripted, StubTransport


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(rid: str) -> UsageRecord:
    usage = {"model": "m", "input_tokens": 1, "output_tokens": 2}
    stamp = normalise_timestamp(datetime(2026, 11, 24, tzinfo=timezone.utc))
    return UsageRecord("openai-chat", "openai::gpt-4o-mini", rid, stamp, usage)


def manual_engine(stub: CollectorStub, clock: Clock, **settings: Any) -> DeliveryEngine:
    """An engine whose worker never starts: the test runs its cycles by hand."""
    engine = DeliveryEngine(
        DeliverySettings(**settings),
        transport=StubTransport(stub),
        clock=clock,
        wall_clock=clock,
        jitter=lambda: 1.0,
    )
    engine._thread = threading.Thread(target=lambda: None)  # "started", but never runs
    return engine


TARGET = Target("http://collector.invalid", None)


@pytest.mark.parametrize(
    ("status", "retry"),
    [
        *[(None, True), (408, True), (425, True), (429, True), (500, True), (503, True)],
        *[(400, False), (401, False), (403, False), (404, False), (413, False), (200, False)],
    ],
)
def test_which_statuses_are_retried(status: int | None, retry: bool) -> None:
    assert is_retryable(status) is retry


def test_retry_after_seconds_and_http_dates() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("7", now) == 7.0
    assert parse_retry_after(" 2.5 ", now) == 2.5
    assert parse_retry_after("-3", now) == 0.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now) == pytest.approx(30.0, abs=1.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None
    assert parse_retry_after("nan", now) is None
    assert parse_retry_after(None, now) is None


def test_backoff_doubles_with_equal_jitter_and_a_cap() -> None:
    fixed = Backoff(0.5, 30.0, jitter=lambda: 1.0)
    assert [fixed.delay(n) for n in range(1, 9)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    low = Backoff(0.5, 30.0, jitter=lambda: 0.0)
    assert [low.delay(n) for n in range(1, 4)] == [0.25, 0.5, 1.0]  # never below half
    assert fixed.delay(1, retry_after=12.0) == 12.0
    assert fixed.delay(1, retry_after=300.0) == 30.0  # Retry-After is capped too
    assert fixed.delay(10_000) == 30.0  # no overflow


def test_engine_waits_exactly_the_retry_after() -> None:
    stub, clock = CollectorStub(), Clock()
    stub.script.append(Scripted(status=503, headers={"Retry-After": "7"}))
    engine = manual_engine(stub, clock, batch_interval=0.0)
    engine.submit(record("a"), TARGET)
    engine.run_once()
    assert len(stub.requests) == 0  # the scripted 503 is not a stored request
    assert engine.health()["per_key"]["anonymous@http://collector.invalid"][
        "backoff_remaining_s"
    ] == pytest.approx(7.0)
    clock.now += 6.9
    engine.run_once()
    assert stub.records() == []
    clock.now += 0.1
    engine.run_once()
    assert [r["response_id"] for r in stub.records()] == ["a"]
    assert engine.total_retries == 1


def test_engine_backs_off_exponentially_per_key() -> None:
    stub, clock = CollectorStub(), Clock()
    stub.script.extend(Scripted(status=500) for _ in range(3))
    engine = manual_engine(stub, clock, batch_interval=0.0, backoff_initial=1.0)
    engine.submit(record("a"), TARGET)
    waits = []
    for _ in range(3):
        engine.run_once()
        state = engine.key_state(TARGET)
        waits.append(state.next_attempt - clock.now)
        clock.now = state.next_attempt
    engine.run_once()
    assert waits == [1.0, 2.0, 4.0]
    assert [r["response_id"] for r in stub.records()] == ["a"]
    assert engine.key_state(TARGET).attempts == 0  # reset by the success


def test_a_throttled_key_does_not_stall_another() -> None:
    stub, clock = CollectorStub(), Clock()
    stub.script.append(Scripted(status=429, headers={"Retry-After": "60"}))
    engine = manual_engine(stub, clock, batch_interval=0.0)
    from aicm_manual import Secret

    slow = Target("http://collector.invalid", Secret("key-slow"))
    fast = Target("http://collector.invalid", Secret("key-fast"))
    engine.submit(record("s"), slow)
    engine.run_once()  # the slow key gets the 429
    engine.submit(record("f"), fast)
    engine.run_once()
    assert [r["response_id"] for r in stub.records()] == ["f"]


def test_retry_budget_gives_up_on_memory_records_only_after_the_budget() -> None:
    stub, clock = CollectorStub(), Clock()
    stub.script.extend(Scripted(status=503) for _ in range(100))
    seen: list[str] = []
    target = Target("http://collector.invalid", None, lambda records, why: seen.append(why))
    engine = manual_engine(stub, clock, batch_interval=0.0, retry_budget=10.0, backoff_max=4.0)
    engine.submit(record("a"), target)
    while not seen and clock.now < 200:
        engine.run_once()
        clock.now = max(clock.now, engine.key_state(target).next_attempt)
    assert seen == ["retry_budget_exhausted"]
    assert 110.0 <= clock.now <= 116.0  # gave up once 10 s of failing had passed


def test_delivery_settings_precedence(tmp_path: Path) -> None:
    ini = {"delivery": {"batch_size": "250", "delivery_type": "persistent_queue"}}
    s = DeliverySettings.resolve(sources=Sources({}, tmp_path / "AICM.INI", ini))
    assert s.batch_size == 250
    assert s.delivery_type is DeliveryType.PERSISTENT_QUEUE
    env = {"AICM_DELIVERY_BATCH_SIZE": "500", "AICM_DELIVERY_ON_FULL": "Backpressure"}
    s = DeliverySettings.resolve(sources=Sources(env, tmp_path / "AICM.INI", ini))
    assert s.batch_size == 500
    assert s.on_full is OnFull.BACKPRESSURE
    s = DeliverySettings.resolve(
        {"batch_size": 10, "queue_size": 10}, sources=Sources(env, tmp_path / "AICM.INI", ini)
    )
    assert s.batch_size == 10
    s = DeliverySettings.resolve({"db_path": tmp_path / "x.db"}, environ={"AICM_DB_PATH": "/a"})
    assert s.db_path == tmp_path / "x.db"
    assert DeliverySettings.resolve(environ={"AICM_DB_PATH": "/a/b.db"}).db_path == Path("/a/b.db")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AICM_DELIVERY_TYPE": "carrier_pigeon"}, "Expected one of: immediate, mem_queue"),
        ({"AICM_DELIVERY_BATCH_SIZE": "0"}, "AICM_DELIVERY_BATCH_SIZE has value '0'"),
        ({"AICM_DELIVERY_BATCH_SIZE": "5000"}, "allows 1000 records per request at most"),
        ({"AICM_DELIVERY_BATCH_INTERVAL": "-1"}, "zero or more"),
        ({"AICM_DELIVERY_QUEUE_SIZE": "10"}, "must be at least batch_size"),
    ],
)
def test_invalid_delivery_settings_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        DeliverySettings.resolve(environ=env)


def test_unknown_delivery_option_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="unknown delivery settings"):
        DeliverySettings.resolve({"batch_sise": 3}, environ={})


def test_retry_after_is_floored_at_half_the_initial_backoff() -> None:
    """Retry-After: 0 (or any tiny value) waits at least backoff_initial / 2."""
    fixed = Backoff(0.5, 30.0, jitter=lambda: 1.0)
    assert fixed.delay(1, retry_after=0.0) == 0.25
    assert fixed.delay(5, retry_after=0.1) == 0.25
    assert fixed.delay(1, retry_after=0.3) == 0.3
