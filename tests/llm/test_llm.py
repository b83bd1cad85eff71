"""LLM responses map to the canonical token vocabulary, from SDK objects and plain dicts.

Each case is one response as the vendor's API returns it (JSON), built into the vendor SDK's
own type. The expected canonical usage is checked by hand and against genai-prices' own
reading of the same JSON, and the cost the collector computes from our usage must equal
the cost genai-prices computes from the raw response.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import anthropic.types
import genai_prices
import openai.types.chat
import openai.types.responses
import pytest
from google.genai import types as genai_types

from aicm_manual import DirectoryConfigSource
from aicm_manual._llm.tracking import track_llm_usage, track_llm_usage_async
from aicm_manual._llm.usage import StreamUsage, extract_usage
from aicm_manual.errors import AicmError, InvalidRecordError, LlmUsageError
from aicm_manual.server._pricing import NANOS_PER_UNIT, Pricer, to_nanos

CHAT = {
    "id": "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
    "object": "chat.completion",
    "created": 1741569952,
    "model": "gpt-4o-2024-08-06",
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Snow falls on the pines."},
        }
    ],
    "usage": {
        "prompt_tokens": 1200,
        "completion_tokens": 300,
        "total_tokens": 1500,
        "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
    },
}

RESPONSES = {
    "id": "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
    "object": "response",
    "created_at": 1741476542,
    "model": "o4-mini-2025-04-16",
    "status": "completed",
    "output": [],
    "parallel_tool_calls": True,
    "tool_choice": "auto",
    "tools": [],
    "usage": {
        "input_tokens": 2000,
        "input_tokens_details": {"cached_tokens": 1536, "cache_write_tokens": 0},
        "output_tokens": 900,
        "output_tokens_details": {"reasoning_tokens": 640},
        "total_tokens": 2900,
    },
}

ANTHROPIC = {
    "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-5-20250929",
    "content": [{"type": "text", "text": "Snow falls on the pines."}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 300,
        "cache_read_input_tokens": 1000,
        "cache_creation_input_tokens": 200,
        "output_tokens": 250,
        "output_tokens_details": {"thinking_tokens": 120},
    },
}

GEMINI = {
    "response_id": "VKHZaPD_L4-7nsEPx4nP2QI",
    "create_time": "2025-09-28T21:16:04.811473123Z",
    "model_version": "gemini-2.5-flash",
    "candidates": [{"content": {"role": "model", "parts": [{"text": "Snow falls."}]}}],
    "usage_metadata": {
        "prompt_token_count": 1000,
        "tool_use_prompt_token_count": 50,
        "cached_content_token_count": 400,
        "candidates_token_count": 200,
        "thoughts_token_count": 300,
        "total_token_count": 1550,
    },
}


@dataclass
class Case:
    api_id: str
    raw: dict[str, Any]
    sdk_type: Any
    expected: dict[str, Any]
    response_id: str
    service_id: str
    genai_provider: str
    genai_flavor: str = "default"

    @property
    def created(self) -> datetime | None:
        """When the vendor says the response was created (Anthropic does not say)."""
        return {
            "openai_chat": datetime(2025, 3, 10, 1, 25, 52, tzinfo=timezone.utc),
            "openai_responses": datetime(2025, 3, 8, 23, 29, 2, tzinfo=timezone.utc),
            "gemini": datetime(2025, 9, 28, 21, 16, 4, 811473, tzinfo=timezone.utc),
        }.get(self.api_id)


CASES = [
    Case(
        "openai_chat",
        CHAT,
        openai.types.chat.ChatCompletion,
        # prompt_tokens already includes the cached tokens: nothing is added.
        {
            "input_tokens": 1200,
            "output_tokens": 300,
            "cache_read_tokens": 1024,
            "reasoning_tokens": 0,
            "model": "gpt-4o-2024-08-06",
        },
        "chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "openai::gpt-4o-2024-08-06",
        "openai",
        "chat",
    ),
    Case(
        "openai_responses",
        RESPONSES,
        openai.types.responses.Response,
        {
            "input_tokens": 2000,
            "output_tokens": 900,
            "cache_read_tokens": 1536,
            "cache_write_tokens": 0,
            "reasoning_tokens": 640,
            "model": "o4-mini-2025-04-16",
        },
        "resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b",
        "openai::o4-mini-2025-04-16",
        "openai",
        "responses",
    ),
    Case(
        "anthropic",
        ANTHROPIC,
        anthropic.types.Message,
        # Anthropic's input_tokens leaves the cache out: 300 + 1000 read + 200 written.
        {
            "input_tokens": 1500,
            "output_tokens": 250,
            "cache_read_tokens": 1000,
            "cache_write_tokens": 200,
            "reasoning_tokens": 120,
            "model": "claude-sonnet-4-5-20250929",
        },
        "msg_01XFDUDYJgAACzvnptvVoYEL",
        "anthropic::claude-sonnet-4-5-20250929",
        "anthropic",
    ),
    Case(
        "gemini",
        GEMINI,
        genai_types.GenerateContentResponse,
        # Tool-use prompt tokens are input; thoughts are output candidates leave out.
        {
            "input_tokens": 1050,
            "output_tokens": 500,
            "cache_read_tokens": 400,
            "reasoning_tokens": 300,
            "model": "gemini-2.5-flash",
        },
        "VKHZaPD_L4-7nsEPx4nP2QI",
        "google::gemini-2.5-flash",
        "google",
    ),
]
IDS = [c.api_id for c in CASES]


def camel(value: Any) -> Any:
    """The REST API's spelling of a google-genai dict (responseId, usageMetadata, ...)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            head, *rest = key.split("_")
            out[head + "".join(p.title() for p in rest)] = camel(item)
        return out
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def shapes(case: Case) -> list[Any]:
    """The same response as the SDK's object, as a dict, and (Gemini) in camelCase."""
    out = [case.sdk_type.model_validate(case.raw), copy.deepcopy(case.raw)]
    if case.api_id == "gemini":
        out.append(camel(case.raw))
    return out


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_sdk_objects_and_dicts_map_to_the_canonical_usage(case: Case) -> None:
    for response in shapes(case):
        llm = extract_usage(case.api_id, response)
        assert llm.usage == case.expected, type(response)
        assert llm.response_id == case.response_id
        assert llm.service_id == case.service_id
        assert llm.vendor == case.service_id.partition("::")[0]
        assert llm.created == case.created


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_counts_agree_with_genai_prices_reading_the_same_json(case: Case) -> None:
    raw = camel(case.raw) if case.api_id == "gemini" else case.raw
    theirs = genai_prices.extract_usage(
        raw, provider_id=case.genai_provider, api_flavor=case.genai_flavor
    ).usage
    ours = extract_usage(case.api_id, case.sdk_type.model_validate(case.raw)).usage
    # genai-prices leaves some unreported counts None and others 0: both mean none.
    assert ours["input_tokens"] == theirs.input_tokens
    assert ours["output_tokens"] == theirs.output_tokens
    assert ours.get("cache_read_tokens", 0) == (theirs.cache_read_tokens or 0)
    assert ours.get("cache_write_tokens", 0) == (theirs.cache_write_tokens or 0)
    assert ours.get("reasoning_tokens", 0) == (theirs.output_reasoning_tokens or 0)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_collector_price_of_our_usage_equals_genai_prices_price_of_the_response(
    case: Case,
) -> None:
    llm_config = DirectoryConfigSource("schemas").get("llm")
    llm = extract_usage(case.api_id, case.sdk_type.model_validate(case.raw))
    llm_config.validator.validate(llm.usage)
    assert llm.service_id is not None
    price = Pricer([llm_config]).price("llm", llm.service_id, llm.usage)
    raw = camel(case.raw) if case.api_id == "gemini" else case.raw
    extracted = genai_prices.extract_usage(
        raw, provider_id=case.genai_provider, api_flavor=case.genai_flavor
    )
    expected = genai_prices.calc_price(
        extracted.usage, extracted.model.id, provider_id=case.genai_provider
    ).total_price
    assert price.cost_nanos == to_nanos(expected)
    assert Decimal(price.cost_nanos or 0) / NANOS_PER_UNIT > 0


def test_the_anthropic_cache_is_added_to_input_only_when_reported() -> None:
    raw = copy.deepcopy(ANTHROPIC)
    raw["usage"] = {"input_tokens": 12, "output_tokens": 3}
    for response in (anthropic.types.Message.model_validate(raw), raw):
        assert extract_usage("anthropic", response).usage == {
            "input_tokens": 12,
            "output_tokens": 3,
            "model": "claude-sonnet-4-5-20250929",
        }


def test_gemini_without_thoughts_or_candidates_counts_what_is_there() -> None:
    raw = {"model_version": "models/gemini-2.0-flash", "usage_metadata": {"prompt_token_count": 7}}
    llm = extract_usage("gemini", genai_types.GenerateContentResponse.model_validate(raw))
    assert llm.usage == {"input_tokens": 7, "output_tokens": 0, "model": "gemini-2.0-flash"}
    assert llm.service_id == "google::gemini-2.0-flash"
    assert llm.response_id is None


def test_openai_chat_cache_writes_are_read() -> None:
    raw = copy.deepcopy(CHAT)
    raw["usage"]["prompt_tokens_details"] = {"cached_tokens": 0, "cache_write_tokens": 1100}
    llm = extract_usage("openai_chat", openai.types.chat.ChatCompletion.model_validate(raw))
    assert llm.usage["cache_write_tokens"] == 1100
    assert llm.usage["input_tokens"] == 1200


def test_unknown_api_id_is_a_clear_error() -> None:
    with pytest.raises(LlmUsageError, match="unknown api_id 'openai'; expected one of openai_chat"):
        extract_usage("openai", CHAT)
    assert issubclass(LlmUsageError, AicmError)
    assert issubclass(LlmUsageError, ValueError)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_a_response_without_usage_is_a_clear_error(case: Case) -> None:
    raw = {k: v for k, v in case.raw.items() if k not in ("usage", "usage_metadata")}
    with pytest.raises(LlmUsageError, match=f"{case.api_id} response dict carries no usage"):
        extract_usage(case.api_id, raw)


def test_a_stream_passed_as_a_response_points_to_the_stream_helper() -> None:
    chunks = iter([openai.types.chat.ChatCompletionChunk.model_validate(chunk(1, {}))])
    with pytest.raises(LlmUsageError, match="a stream goes through track_llm_stream_usage"):
        extract_usage("openai_chat", chunks)


@pytest.mark.parametrize("bad", [True, -1, 2.0, "12", None])
def test_counts_that_are_not_token_counts_are_refused(bad: object) -> None:
    raw = copy.deepcopy(CHAT)
    raw["usage"]["prompt_tokens"] = bad
    message = "no prompt_tokens" if bad is None else "prompt_tokens is .* not a token count"
    with pytest.raises(LlmUsageError, match=message):
        extract_usage("openai_chat", raw)


def chunk(index: int, delta: dict[str, Any], usage: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stream1",
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [] if usage else [{"index": 0, "delta": delta, "finish_reason": None}],
        "usage": usage,
    }


class Recorder:
    """A plain ``track`` callable: keeps every call and returns the response_id."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, Any], dict[str, Any]]] = []

    def __call__(self, usage: dict[str, Any], **kwargs: Any) -> str:
        self.calls.append((usage, kwargs))
        return str(kwargs["response_id"])


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_track_llm_usage_records_the_response_under_its_own_id(case: Case) -> None:
    track = Recorder()
    rid = track_llm_usage(
        track,
        case.api_id,
        case.sdk_type.model_validate(case.raw),
        client_customer_key="acme",
        context={"env": "prod"},
    )
    assert rid == case.response_id
    [(usage, kwargs)] = track.calls
    when = kwargs.pop("timestamp")
    assert (usage, kwargs) == (
        case.expected,
        {
            "service_id": case.service_id,
            "config_id": "llm",
            "client_customer_key": "acme",
            "context": {"env": "prod"},
            "response_id": case.response_id,
        },
    )
    # The vendor's creation time; else (Anthropic) when this process first tracked it.
    if case.created is not None:
        assert when == case.created
    else:
        assert isinstance(when, datetime)
        assert when.tzinfo is not None
        assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 60


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_tracking_a_response_again_sends_the_same_record(case: Case) -> None:
    track = Recorder()
    response = case.sdk_type.model_validate(case.raw)
    track_llm_usage(track, case.api_id, response)
    track_llm_usage(track, case.api_id, copy.deepcopy(case.raw))
    assert track.calls[0] == track.calls[1]


def test_creation_times_in_any_vendor_spelling() -> None:
    def created(value: object) -> datetime | None:
        return extract_usage("openai_chat", {**CHAT, "created": value}).created

    utc = timezone.utc
    assert created(0) is None
    assert created(True) is None
    assert created(float("nan")) is None
    assert created(10**20) is None
    assert created(1.5) == datetime(1970, 1, 1, 0, 0, 1, 500000, tzinfo=utc)
    assert created("2025-01-02T03:04:05Z") == datetime(2025, 1, 2, 3, 4, 5, tzinfo=utc)
    assert created("2025-01-02T03:04:05.123456789+02:00") == datetime(
        2025, 1, 2, 1, 4, 5, 123456, tzinfo=utc
    )
    assert created("yesterday") is None
    assert created(datetime(2025, 1, 2)) == datetime(2025, 1, 2, tzinfo=utc)


def test_explicit_arguments_win_over_the_response() -> None:
    track = Recorder()
    track_llm_usage(
        track,
        "openai_chat",
        CHAT,
        service_id="azure::gpt-4o",
        config_id="openai-llm",
        response_id="my-id",
        timestamp="2024-01-01T00:00:00Z",
    )
    [(_, kwargs)] = track.calls
    assert kwargs["service_id"] == "azure::gpt-4o"
    assert kwargs["config_id"] == "openai-llm"
    assert kwargs["response_id"] == "my-id"
    assert kwargs["timestamp"] == "2024-01-01T00:00:00Z"


def test_a_response_without_a_model_needs_a_service_id() -> None:
    raw = {"usage_metadata": {"prompt_token_count": 3, "candidates_token_count": 1}}
    with pytest.raises(LlmUsageError, match="names no model; pass service_id="):
        track_llm_usage(Recorder(), "gemini", raw)
    track = Recorder()
    track_llm_usage(track, "gemini", raw, service_id="google::gemini-2.0-flash")
    assert track.calls[0][1]["service_id"] == "google::gemini-2.0-flash"


def test_bad_context_is_refused_before_anything_is_tracked() -> None:
    track = Recorder()
    with pytest.raises(InvalidRecordError, match="context must be a mapping"):
        track_llm_usage(track, "openai_chat", CHAT, context=["env"])  # type: ignore[arg-type]
    assert track.calls == []


def test_async_twin_awaits_an_async_track_and_accepts_a_plain_one() -> None:
    import asyncio

    seen: list[str] = []

    async def track_async(usage: dict[str, Any], **kwargs: Any) -> str:
        seen.append(kwargs["service_id"])
        return str(kwargs["response_id"])

    async def main() -> tuple[str, str]:
        one = await track_llm_usage_async(track_async, "anthropic", ANTHROPIC)
        two = await track_llm_usage_async(Recorder(), "anthropic", ANTHROPIC)
        return one, two

    assert asyncio.run(main()) == ("msg_01XFDUDYJgAACzvnptvVoYEL",) * 2
    assert seen == ["anthropic::claude-sonnet-4-5-20250929"]


def test_stream_usage_ignores_events_without_anything_of_use() -> None:
    merged = StreamUsage("openai_responses")
    for event in ({"type": "response.output_text.delta", "delta": "x"}, {}, None, 3):
        merged.feed(event)
    assert merged.result() is None
    assert merged.response_id is None
