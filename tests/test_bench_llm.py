"""The LLM benchmark's cases (benchmarks/_llm_cases.py): the hand-written vendor truth
agrees with genai-prices' reading of the same JSON, and our records carry it.

The benchmark itself (benchmarks/llm.py) runs aicostmanager in a subprocess against a
loopback sink; this checks only our side of its correctness table, in memory.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from aicm_manual import DirectoryConfigSource, Tracker
from aicm_manual.server._pricing import Pricer, to_nanos
from aicm_manual.testing import CapturingDelivery

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from _llm_cases import (  # noqa: E402 - importable only once benchmarks/ is on the path
    CASES,
    EXTRA,
    FIVE,
    Case,
    genai_body,
    genai_extract,
    ours_as_genai,
    price,
    usage_dict,
    vendor_id,
)


def our_record(case: Case) -> dict[str, Any]:
    captured = CapturingDelivery()
    with Tracker(schemas_dir=ROOT / "schemas", delivery=captured) as tracker:
        if case.stream:
            for _ in tracker.track_llm_stream_usage(case.api_id, iter(case.sdk())):
                pass
        else:
            tracker.track_llm_usage(case.api_id, case.sdk())
    [record] = captured.wire()
    return record


def counted(usage: dict[str, int]) -> dict[str, int]:
    """The counts our records carry: the five, and the EXTRA ones when not zero."""
    return {k: v for k, v in usage.items() if k in FIVE or (k in EXTRA and v)}


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_the_truth_agrees_with_genai_prices_reading_the_json(case: Case) -> None:
    body = genai_body(case)
    if body is None:
        pytest.skip("an Anthropic stream has no single body for genai-prices to read")
    extracted = genai_extract(case, body)
    assert usage_dict(extracted.usage) == case.truth


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_our_record_carries_the_vendor_counts(case: Case) -> None:
    record = our_record(case)
    assert ours_as_genai(record["usage"]) == counted(case.truth)
    assert record["service_id"] == f"{case.provider}::{case.model}"
    assert record["response_id"] == vendor_id(case)


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_our_record_costs_what_the_vendor_counts_cost(case: Case) -> None:
    record = our_record(case)
    assert price(ours_as_genai(record["usage"]), case.model, case.provider) == case.truth_cost()
    # And what the collector charges: its Pricer on the record as sent.
    configs = DirectoryConfigSource(ROOT / "schemas").all()
    quote = Pricer(configs).price(record["config_id"], record["service_id"], record["usage"])
    assert quote.cost_nanos == to_nanos(case.truth_cost())
