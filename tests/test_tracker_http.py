"""Tracker breadth over real loopback HTTP: immediate batches with per-record results and
costs from the real collector, queued batches, the async twins on several event loops,
and trackers in forked and spawned processes."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from aicm_manual import BatchValidationError, Tracker, get_global_delivery_health
from aicm_manual.server._embedded import EmbeddedCollector, embedded_collector
from aicm_manual.testing import Scripted
from conftest import ConfigServer

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"
KEY = "aicm_tracker_http_key"
NO_INI = {"AICM_INI_PATH": "/nonexistent/AICM.INI"}
CHAT = {"model": "gpt-4o-mini", "input_tokens": 1_000_000, "output_tokens": 2_000_000}


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[EmbeddedCollector]:
    with embedded_collector(f"sqlite:///{tmp_path / 'c.db'}", SCHEMAS, [f"t:{KEY}"]) as c:
        yield c


def tracker_for(c: EmbeddedCollector, *args: str, **kwargs: Any) -> Tracker:
    return Tracker(*args, aicm_api_base=c.url, aicm_api_key=KEY, environ=NO_INI, **kwargs)


def stored(c: EmbeddedCollector) -> dict[str, Any]:
    answer = requests.get(
        f"{c.url}/api/v1/costs/summary",
        params={"group_by": "service_id"},
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    answer.raise_for_status()
    body: dict[str, Any] = answer.json()
    return body


def test_immediate_batch_answers_per_record_with_costs(collector: EmbeddedCollector) -> None:
    tracker = tracker_for(collector, delivery_type="immediate")
    records = [
        {"service_key": "openai::gpt-4o-mini", "usage": CHAT, "customer_key": f"c{i % 5}"}
        for i in range(2_500)  # three requests: the protocol takes 1000 records at most
    ]
    records.append({"service_key": "heygen::streaming-avatar", "usage": {"duration": 120.0}})
    before = get_global_delivery_health()
    result = tracker.track_batch(records)
    assert result["summary"] == {"accepted": 2_501}
    assert [r["index"] for r in result["results"]] == list(range(2_501))
    assert {r["cost"] for r in result["results"][:2_500]} == {"1.350000000"}
    assert result["results"][2_500]["cost"] == "0.200000000"  # 0.10 USD per 60 s
    assert result["response_ids"] == [r["response_id"] for r in result["results"]]
    health = get_global_delivery_health()
    assert health["total_delivered"] - before["total_delivered"] == 2_501
    summary = stored(collector)
    assert summary["total_cost"] == "3375.200000000"

    again = tracker.track_batch(
        [
            {"service_key": "openai::gpt-4o-mini", "usage": CHAT, "response_id": rid}
            for rid in result["response_ids"][:2]
        ]
        + [
            {
                "service_key": "openai::gpt-4o-mini",
                "usage": {**CHAT, "output_tokens": 1},
                "response_id": result["response_ids"][2],
            }
        ]
    )
    # Same response_ids, other payloads (a new timestamp, no customer, fewer tokens): the
    # collector keeps the first and answers conflict, never a second charge.
    assert [r["status"] for r in again["results"]] == ["conflict"] * 3
    assert again["summary"] == {"conflict": 3}
    assert "different payload" in again["results"][2]["errors"][0]


def test_immediate_batch_resent_as_is_is_all_duplicates(collector: EmbeddedCollector) -> None:
    tracker = tracker_for(collector, delivery_type="immediate")
    records = [
        {
            "service_key": "openai::gpt-4o-mini",
            "usage": CHAT,
            "response_id": f"req-{i}",
            "timestamp": "2026-11-24T10:00:00Z",
        }
        for i in range(3)
    ]
    assert tracker.track_batch(records)["summary"] == {"accepted": 3}
    assert tracker.track_batch(records)["summary"] == {"duplicate": 3}
    assert stored(collector)["total_cost"] == "4.050000000"


def test_queued_batch_is_delivered_by_the_worker(collector: EmbeddedCollector) -> None:
    tracker = tracker_for(collector, "heygen", "heygen::streaming-avatar")
    result = tracker.track_batch([{"usage": {"duration": 60.0}} for _ in range(1_200)])
    assert result["queued"] == 1_200
    assert tracker.flush(20) == 0
    assert stored(collector)["total_cost"] == "120.000000000"


def test_async_twins_work_across_event_loops(collector: EmbeddedCollector) -> None:
    tracker = tracker_for(collector, "heygen", "heygen::streaming-avatar")

    async def one_request(n: int) -> list[str]:
        ids = [await tracker.track_async({"duration": 60.0}) for _ in range(n)]
        batch = await tracker.track_batch_async([{"usage": {"duration": 60.0}}] * n)
        return ids + batch["response_ids"]

    # asyncio.run per request, as in scripts and some web frameworks: nothing loop-bound
    # is kept between runs.
    ids = asyncio.run(one_request(5)) + asyncio.run(one_request(5))
    threads_ids: list[list[str]] = []
    workers = [
        threading.Thread(target=lambda: threads_ids.append(asyncio.run(one_request(10))))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(30)
    all_ids = ids + [i for chunk in threads_ids for i in chunk]
    assert len(set(all_ids)) == 20 + 80

    async def finish() -> int:
        return await tracker.aflush(20)

    assert asyncio.run(finish()) == 0
    assert stored(collector)["total_cost"] == "10.000000000"  # 100 minutes at 0.10


def test_async_context_manager_and_create_async(collector: EmbeddedCollector) -> None:
    async def main() -> tuple[bool, int]:
        async with await Tracker.create_async(
            "openai-chat",
            "openai::gpt-4o-mini",
            aicm_api_base=collector.url,
            aicm_api_key=KEY,
            environ=NO_INI,
        ) as tracker:
            await tracker.track_async(CHAT)
            await tracker.track_async("openai", "gpt-4o", CHAT)
        left = await tracker.aclose()
        return tracker.closed, left

    assert asyncio.run(main()) == (True, 0)
    rows = {r["service_id"]: r["cost"] for r in stored(collector)["rows"]}
    assert rows == {"openai::gpt-4o-mini": "1.350000000", "openai::gpt-4o": "22.500000000"}


def test_immediate_async_leaves_the_event_loop_free(config_server: ConfigServer) -> None:
    config_server.collector.script.append(Scripted(delay=0.5))  # a slow collector
    tracker = Tracker(
        "heygen",
        "heygen::streaming-avatar",
        aicm_api_base=config_server.url,
        delivery_type="immediate",
        environ=NO_INI,
    )

    async def main() -> int:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        await tracker.track_async({"duration": 1.0})
        task.cancel()
        return ticks

    started = time.monotonic()
    ticks = asyncio.run(main())
    assert time.monotonic() - started >= 0.5  # the request really waited
    assert ticks >= 10  # and the loop kept running meanwhile
    assert len(config_server.collector.records()) == 1


def _child(api_base: str, start: str, n: int) -> None:
    from aicm_manual import Tracker

    # Created in the worker, as docs/tracker.md advises for pools and Celery.
    tracker = Tracker(
        "heygen",
        "heygen::streaming-avatar",
        aicm_api_base=api_base,
        environ={"AICM_INI_PATH": "/nonexistent/AICM.INI"},
    )
    for i in range(n):
        tracker.track({"duration": 1.0}, response_id=f"{start}-{i}")
    tracker.close(20)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_trackers_in_worker_processes(config_server: ConfigServer, method: str) -> None:
    parent = Tracker(
        "heygen", "heygen::streaming-avatar", aicm_api_base=config_server.url, environ=NO_INI
    )
    parent.track({"duration": 1.0}, response_id="parent-0")  # the parent's engine is running
    ctx = multiprocessing.get_context(method)
    procs = [
        ctx.Process(target=_child, args=(config_server.url, f"{method}{p}", 200)) for p in range(3)
    ]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    assert [proc.exitcode for proc in procs] == [0, 0, 0]
    assert parent.close(10) == 0
    ids = {r["response_id"] for r in config_server.collector.records()}
    assert len(ids) == 601
    assert {f"{method}{p}-{i}" for p in range(3) for i in range(200)} <= ids
    assert config_server.collector.duplicates == 0


def test_spooled_records_without_a_config_keep_their_shape(
    config_server: ConfigServer, tmp_path: Path
) -> None:
    tracker = Tracker(
        aicm_api_base=config_server.url,
        delivery_type="persistent_queue",
        db_path=tmp_path / "spool.db",
        environ=NO_INI,
    )
    tracker.track("acme", "geocoder-v9", {"lookups": 3}, response_id="r-1")
    tracker.track(
        "openai", "gpt-5-mini", {"input_tokens": 5, "output_tokens": 1}, response_id="r-2"
    )
    assert tracker.close(10) == 0
    got = {r["response_id"]: r for r in config_server.collector.records()}
    assert "config_id" not in got["r-1"]
    assert got["r-1"]["usage"] == {"lookups": 3}
    assert got["r-2"]["config_id"] == "llm"


def test_persistent_batch_is_spooled_then_delivered(
    config_server: ConfigServer, tmp_path: Path
) -> None:
    from aicm_manual._delivery.spool import Spool

    config_server.collector.script.append(Scripted(status=503))  # first send fails
    tracker = Tracker(
        "heygen",
        "heygen::streaming-avatar",
        aicm_api_base=config_server.url,
        delivery_type="persistent_queue",
        db_path=tmp_path / "spool.db",
        environ=NO_INI,
    )
    result = tracker.track_batch([{"usage": {"duration": float(i)}} for i in range(1_500)])
    assert result["queued"] == 1_500
    assert tracker.flush(20) == 0
    assert len(config_server.collector.records()) == 1_500
    tracker.close(5)
    assert Spool(tmp_path / "spool.db", create=False).count() == 0


def test_immediate_batch_over_the_byte_limit_is_split(config_server: ConfigServer) -> None:
    tracker = Tracker(
        "internal-api",
        "internal::search",
        aicm_api_base=config_server.url,
        delivery_type="immediate",
        environ=NO_INI,
    )
    big = "/v1/search?q=" + "x" * 20_000
    usage = {"calls": 1, "endpoint": big, "status_codes": {"200": 1}}
    result = tracker.track_batch([{"usage": usage}] * 600)  # about 12 MB of JSON
    assert result["summary"] == {"accepted": 600}
    sizes = [n for _, n in config_server.collector.requests]
    assert sum(sizes) == 600
    assert len(sizes) >= 3  # 5 MiB per request at most


def test_immediate_batch_with_one_bad_record_sends_nothing(
    config_server: ConfigServer,
) -> None:
    tracker = Tracker(
        "internal-api",
        "internal::search",
        aicm_api_base=config_server.url,
        delivery_type="immediate",
        environ=NO_INI,
    )
    good = {"calls": 1, "endpoint": "/a", "status_codes": {"200": 1}}
    bad = {**good, "latency_ms": [float("nan")]}  # JSON has no NaN: the check refuses it
    records = [{"usage": good}] * 1_500 + [{"usage": bad}]
    with pytest.raises(BatchValidationError, match=r"latency_ms\[0\]: expected float \(finite\)"):
        tracker.track_batch(records)
    assert config_server.collector.requests == []


def test_queued_track_async_stays_on_the_loop_while_there_is_room(
    config_server: ConfigServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    hops: list[str] = []
    real = asyncio.to_thread

    async def counting(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        hops.append(getattr(func, "__name__", "?"))
        return await real(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counting)
    queued = Tracker(
        "heygen", "heygen::streaming-avatar", aicm_api_base=config_server.url, environ=NO_INI
    )
    assert queued.delivery_settings.on_full.value == "block"  # the default policy
    immediate = Tracker(
        "heygen",
        "heygen::streaming-avatar",
        aicm_api_base=config_server.url,
        delivery_type="immediate",
        environ=NO_INI,
    )

    async def main() -> None:
        await queued.track_async({"duration": 1.0})
        await queued.track_batch_async([{"usage": {"duration": 1.0}}] * 3)
        assert hops == []  # enqueued right on the loop: room in the queue, nothing waits
        await immediate.track_async({"duration": 1.0})
        await immediate.track_batch_async([{"usage": {"duration": 1.0}}])
        assert hops == ["track", "track_batch"]

    asyncio.run(main())
    assert queued.close(10) == 0
    assert len(config_server.collector.records()) == 6
