"""The ingest step without HTTP: its fast path answers exactly as its general checks do.

Pure logic, so no socket: a storage that accepts everything stands in for the database
(the wire and both databases are tested in test_collector.py and the contract suite).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aicm_manual._configs.model import UsageConfig
from aicm_manual._configs.sources import DirectoryConfigSource
from aicm_manual._records import format_timestamp_us, normalise_timestamp
from aicm_manual.errors import AicmError
from aicm_manual.server._ingest import Ingestor, configs_by_id, cost_text
from aicm_manual.server._pricing import Pricer
from aicm_manual.server._storage.protocol import IngestStatus, NewEvent
from aicm_manual.server._timestamps import parse_timestamp

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
CONFIGS = DirectoryConfigSource(SCHEMAS).all()


class Accepting:
    """Stores nothing and answers ``accepted``: enough for the checks under test."""

    def __init__(self) -> None:
        self.batches: list[list[NewEvent]] = []

    def ingest(self, events: Sequence[NewEvent]) -> list[IngestStatus]:
        self.batches.append(list(events))
        return ["accepted"] * len(events)


def ingestor() -> Ingestor:
    return Ingestor(configs_by_id(CONFIGS), Pricer(CONFIGS), Accepting())  # type: ignore[arg-type]


def chat(rid: str = "r1", **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "config_id": "openai-chat",
        "service_id": "openai::gpt-4o-mini",
        "response_id": rid,
        "timestamp": "2026-11-24T10:00:00.123456Z",
        "usage": {"model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 100},
        "client_customer_key": "acme",
    }
    record.update(changes)
    return record


# -- timestamps -----------------------------------------------------------------------------

moments = st.datetimes(
    min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59, 59, 999999)
)


@given(moments)
def test_client_timestamps_parse_as_the_general_parser_does(moment: datetime) -> None:
    exact = (moment.replace(tzinfo=timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)) // (
        timedelta(microseconds=1)
    )
    for text in (format_timestamp_us(exact), moment.strftime("%Y-%m-%dT%H:%M:%SZ")):
        assert outcome(parse_timestamp, text) == outcome(normalise_timestamp, text)
    if moment.year >= 1000:
        assert parse_timestamp(format_timestamp_us(exact)) == exact


@given(st.text(alphabet="0123456789-T:.Zz+ \u0663\u00b2", min_size=18, max_size=28))
def test_near_misses_answer_or_fail_as_the_general_parser_does(text: str) -> None:
    assert outcome(parse_timestamp, text) == outcome(normalise_timestamp, text)


def outcome(parse: Callable[[str], int], text: str) -> int | str:
    """The microseconds, or the error's message."""
    try:
        return parse(text)
    except AicmError as exc:
        return str(exc)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-24T24:00:00Z",
        "2026-02-30T10:00:00Z",
        "2026-11-24T10:60:00Z",
        "2026-11-24T10:00:60Z",
        "2026-11-24T10:00:00.12345xZ",
        "2026-11-24T10:00:00.\u0663\u0663\u0663\u0663\u0663\u0663Z",
    ],
)
def test_impossible_client_timestamps_are_refused_as_before(text: str) -> None:
    with pytest.raises(AicmError) as general:
        normalise_timestamp(text)
    with pytest.raises(AicmError) as fast:
        parse_timestamp(text)
    assert str(fast.value) == str(general.value)


# -- costs and hashes -----------------------------------------------------------------------


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_cost_text_is_the_exact_decimal(nanos: int) -> None:
    assert cost_text(nanos) == f"{Decimal(nanos).scaleb(-9):f}"


# NUL is refused in any string of a record (no backend keeps it in text).
_NO_NUL = st.characters(exclude_characters="\x00", exclude_categories=("Cs",))
_no_nul = st.text(_NO_NUL)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _no_nul,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_no_nul, inner, max_size=3),
    max_leaves=8,
)


@given(
    usage=st.dictionaries(st.text(_NO_NUL, min_size=1), json_values, max_size=4),
    context=st.none() | st.dictionaries(_no_nul, json_values, max_size=3),
    customer=st.none()
    | st.text(
        st.characters(exclude_categories=("Cc", "Cf", "Cs", "Zl", "Zp")), min_size=1, max_size=20
    ),
)
def test_payload_hash_is_the_one_earlier_versions_stored(
    usage: dict[str, Any], context: dict[str, Any] | None, customer: str | None
) -> None:
    """A retry of a record stored before this version must still be a duplicate."""
    record = chat(
        usage=usage,
        context=context,
        client_customer_key=customer,
        config_id="internal-api",
        service_id="internal::search",
    )
    event, _ = ingestor()._event(
        "t",
        ingestor()._route("internal-api", "internal::search"),  # type: ignore[arg-type]
        "internal-api",
        "internal::search",
        "r1",
        123,
        usage,
        customer,
        context,
    )
    assert event is not None
    # The formula every earlier version used: the whole list encoded at once.
    earlier = msgspec.json.Encoder(order="sorted").encode(
        [
            record["config_id"],
            record["service_id"],
            "r1",
            123,
            usage,
            customer,
            context,
        ]
    )
    assert event.earlier_hash == hashlib.sha256(earlier).hexdigest()
    assert event.same_as(hashlib.sha256(earlier).hexdigest())


# -- the fast path and the general checks -----------------------------------------------------

VALID = [
    chat(),
    chat(timestamp="2026-11-24T10:00:00Z"),
    chat(timestamp="2026-11-24T10:00:00+01:00"),  # not the client's form: general parser
    chat(client_customer_key=None, context={"b": 1, "a": [1, 2]}),
    chat(
        config_id="heygen",
        service_id="heygen::streaming-avatar",
        usage={"duration": 12.3, "avatar_id": "anna"},
    ),
    chat(
        config_id="internal-api",
        service_id="internal::search",
        usage={"calls": 3, "endpoint": "/s", "region": None, "status_codes": {}},
    ),
    chat(
        config_id="llm",
        service_id="openai::gpt-4o-mini",
        usage={"input_tokens": 5, "output_tokens": 1},
    ),
]


@pytest.mark.parametrize("record", VALID)
def test_fast_path_builds_the_event_the_general_checks_build(record: dict[str, Any]) -> None:
    ingest = ingestor()
    general, errors = ingest._prepare("t", record)
    assert errors == []
    fast = ingest._fast("t", record)
    if record["timestamp"].endswith("Z"):
        assert fast is not None
    assert fast is None or fast == general
    absent = {k: v for k, v in record.items() if v is not None or k != "config_id"}
    assert ingest._prepare("t", absent) == (general, [])  # a null config_id is no config_id


@pytest.mark.parametrize(
    ("service_id", "config_id", "priced"),
    [
        ("openai::gpt-4o-mini", "openai-chat", True),  # listed exactly: wins over llm's openai::*
        ("openai::gpt-4.1-nano", "llm", True),  # only openai::* lists it
        ("heygen::video-generation", "heygen", True),
        ("internal::search", "internal-api", False),  # listed without pricing
        ("acme::anything", None, False),  # listed nowhere
        ("no-vendor-part", None, False),
    ],
)
def test_a_record_without_config_id_goes_to_the_config_listing_its_service(
    service_id: str, config_id: str | None, priced: bool
) -> None:
    usage = {"input_tokens": 5, "output_tokens": 1, "model": "m", "duration": 1, "calls": 1}
    ingest = Ingestor(
        configs_by_id(CONFIGS),
        Pricer(CONFIGS),
        Accepting(),  # type: ignore[arg-type]
    )
    route = ingest._route(None, service_id)
    assert not isinstance(route, str)
    assert (route.config.config_id if route.config else None) == config_id
    event, _ = ingest._event("t", route, None, service_id, "r", 0, usage, None, None)
    assert event is not None
    assert event.config_id == config_id
    assert (event.cost_nanos is not None) == priced


@pytest.mark.parametrize(
    ("record", "error"),
    [
        (chat(usage={"input_tokens": "many", "output_tokens": 1}), "input_tokens: expected int"),
        (chat(service_id="openai::nope"), "service 'openai::nope' not found in config"),
        (chat(config_id="nope"), "config 'nope' not found in this collector's configs"),
        (chat(config_id=["x"]), "config_id must be a non-empty string"),
        (chat(response_id=""), "response_id must be a non-empty string"),
        (chat(response_id="x" * 256), "response_id must be a non-empty string"),
        (chat(client_customer_key=7), "client_customer_key must be a non-empty string"),
        (chat(timestamp="yesterday"), "is not an ISO 8601 date-time"),
        (chat(timestamp="2026-11-24T25:00:00Z"), "is not an ISO 8601 date-time"),
        (chat(context=[1]), "context must be an object"),
        (chat(extra=1), "unknown record keys ['extra']"),
        ({**chat(), "usage": None}, "expected a mapping"),
    ],
)
def test_bad_records_leave_the_fast_path_and_are_rejected_with_reasons(
    record: dict[str, Any], error: str
) -> None:
    ingest = ingestor()
    assert ingest._fast("t", record) is None
    status, answer = ingest.handle("t", msgspec.json.encode({"tracked": [chat("ok"), record]}))
    assert status == 207
    ok, bad = answer["results"]
    assert (ok["status"], bad["status"]) == ("accepted", "rejected")
    assert any(error in message for message in bad["errors"]), bad["errors"]
    assert answer["summary"] == {"accepted": 1, "rejected": 1}


def test_results_stay_in_request_order_around_rejections() -> None:
    ingest = ingestor()
    records = [chat("a"), chat("b", usage=None), chat("c"), 5, chat("e")]
    status, answer = ingest.handle("t", msgspec.json.encode({"tracked": records}))
    assert status == 207
    assert [(r["index"], r["status"]) for r in answer["results"]] == [
        (0, "accepted"),
        (1, "rejected"),
        (2, "accepted"),
        (3, "rejected"),
        (4, "accepted"),
    ]
    assert answer["results"][0]["cost"] == "0.000210000"  # 1000 * 0.15 + 100 * 0.60 per M
    assert ingest.counts == {"accepted": 3, "rejected": 2}


def test_two_configs_listing_one_service_send_config_less_records_to_the_first_by_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def cfg(config_id: str) -> UsageConfig:
        return UsageConfig.from_dict(
            {
                "config_id": config_id,
                "manual_usage_schema": {"n": "int"},
                "services": [{"service_id": "acme::x"}],
            },
            source="<test>",
        )

    b, a = cfg("b-config"), cfg("a-config")
    with caplog.at_level("WARNING", logger="aicm_manual.server"):
        ingest = Ingestor(configs_by_id([b, a]), Pricer([b, a]), Accepting())  # type: ignore[arg-type]
    route = ingest._route(None, "acme::x")
    assert not isinstance(route, str)
    assert route.config is a
    assert "configs 'a-config' and 'b-config' both list 'acme::x'" in caplog.text


def _vendor_config(config_id: str, handling: bool) -> UsageConfig:
    data: dict[str, Any] = {
        "config_id": config_id,
        "manual_usage_schema": {"n": "int"},
        "services": [{"service_id": "acme::*"}],
    }
    if handling:
        data["handling_config"] = {
            "tracked_methods": [{"method": "messages.create", "usage_extractor": "anthropic"}]
        }
    return UsageConfig.from_dict(data, source="<test>")


@pytest.mark.parametrize(
    ("kinds", "warned"),
    [
        ((False, True), False),  # a plain config and a CostManager's: the plain one, by design
        ((True, False, True), False),
        ((False, False), True),  # two plain configs: a real ambiguity
        ((True, True), True),  # two CostManager configs and no plain one
    ],
)
def test_only_a_real_vendor_pattern_ambiguity_is_warned_about(
    caplog: pytest.LogCaptureFixture, kinds: tuple[bool, ...], warned: bool
) -> None:
    """`vendor::*` in one plain config and in CostManager configs is the intended overlap
    (the plain config takes manual records) and is not warned about; two configs of the
    same kind listing it are."""
    configs = [_vendor_config(f"c{n}", handling) for n, handling in enumerate(kinds)]
    with caplog.at_level("WARNING", logger="aicm_manual.server"):
        Ingestor(configs_by_id(configs), Pricer(configs), Accepting())  # type: ignore[arg-type]
    assert ("list 'acme::*'" in caplog.text) is warned
