"""The responses and streams benchmarks/llm.py tracks, with what the vendor really reported.

Each :class:`Case` is one response (or one stream's events) as the vendor's API sends it,
built into the vendor SDK's own type, and ``truth``: the counts it reports, written by hand
in genai-prices' ``Usage`` keywords (input_tokens including cache reads and writes,
output_tokens including reasoning), so ``calc_price(Usage(**truth), ...)`` is what the
response costs. Pure data and pure functions: no tracker, no socket; imported by
benchmarks/llm.py and tests/test_bench_llm.py (which does not need the bench extra).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anthropic.types
import genai_prices
import openai.types.chat
import openai.types.responses
import pydantic
from google.genai import types as genai_types

# The five counts the canonical vocabulary has, as genai-prices names them, and the names
# our records use for them.
FIVE = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "output_reasoning_tokens",
)
# Counts our records carry under genai-prices' own names (the collector prices them apart).
EXTRA = (
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "cache_audio_read_tokens",
    "output_audio_tokens",
    "web_searches",
)
OURS_NAME = {"output_reasoning_tokens": "reasoning_tokens"}
PROVIDER = {
    "openai_chat": "openai",
    "openai_responses": "openai",
    "anthropic": "anthropic",
    "gemini": "google",
}
FLAVOR = {"openai_chat": "chat", "openai_responses": "responses"}

CHAT_MODEL = "gpt-4o-2024-08-06"
MINI_MODEL = "gpt-4o-mini-2024-07-18"
REASONING_MODEL = "o4-mini-2025-04-16"
RESPONSES_MODEL = "gpt-4.1-2025-04-14"
CLAUDE = "claude-sonnet-4-5-20250929"
GEMINI = "gemini-2.5-flash"


@dataclass
class Case:
    key: str
    api_id: str
    label: str
    model: str
    raw: Any  # the response JSON, or the list of a stream's events
    truth: dict[str, int]  # genai-prices Usage keywords
    stream: bool = False
    extra: bool = False  # reports something beyond the five canonical counts
    notes: list[str] = field(default_factory=list)

    @property
    def provider(self) -> str:
        return PROVIDER[self.api_id]

    def sdk(self) -> Any:
        """A fresh SDK object (a response), or a fresh list of SDK events (a stream)."""
        if self.stream:
            return [EVENT_TYPE[self.api_id](e) for e in self.raw]
        return RESPONSE_TYPE[self.api_id](self.raw)

    def truth_cost(self) -> Decimal:
        return price(self.truth, self.model, self.provider)


RESPONSE_TYPE = {
    "openai_chat": openai.types.chat.ChatCompletion.model_validate,
    "openai_responses": openai.types.responses.Response.model_validate,
    "anthropic": anthropic.types.Message.model_validate,
    "gemini": genai_types.GenerateContentResponse.model_validate,
}
EVENT_TYPE = {
    "openai_chat": openai.types.chat.ChatCompletionChunk.model_validate,
    "openai_responses": pydantic.TypeAdapter(
        openai.types.responses.ResponseStreamEvent
    ).validate_python,
    "anthropic": pydantic.TypeAdapter(anthropic.types.RawMessageStreamEvent).validate_python,
    "gemini": genai_types.GenerateContentResponse.model_validate,
}


def price(usage: dict[str, int], model: str, provider: str) -> Decimal:
    """genai-prices' price of ``usage``; every one of the five counts is passed (0 when
    absent) so genai-prices infers none, as our collector's Pricer does."""
    values = {k: 0 for k in FIVE} | {k: v for k, v in usage.items() if v is not None}
    return genai_prices.calc_price(
        genai_prices.Usage(**values), model, provider_id=provider
    ).total_price


def camel(value: Any) -> Any:
    """The REST API's spelling of a google-genai dict (usageMetadata, promptTokenCount)."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            head, *rest = key.split("_")
            out[head + "".join(p.title() for p in rest)] = camel(item)
        return out
    if isinstance(value, list):
        return [camel(v) for v in value]
    return value


def genai_body(case: Case) -> dict[str, Any] | None:
    """The JSON genai-prices' extract_usage reads for this case: the response, or for a
    stream the one event that carries the final usage (None for Anthropic, whose usage is
    split between message_start and message_delta)."""
    if not case.stream:
        return camel(case.raw) if case.api_id == "gemini" else case.raw
    if case.api_id == "openai_chat":
        return case.raw[-1]  # type: ignore[no-any-return]
    if case.api_id == "openai_responses":
        return case.raw[-1]["response"]  # type: ignore[no-any-return]
    if case.api_id == "gemini":
        return camel(case.raw[-1])  # type: ignore[no-any-return]
    return None


def genai_extract(case: Case, body: dict[str, Any]) -> genai_prices.types.ExtractedUsage:
    return genai_prices.extract_usage(
        body, provider_id=case.provider, api_flavor=FLAVOR.get(case.api_id, "default")
    )


def usage_dict(usage: genai_prices.Usage) -> dict[str, int]:
    """The counts a genai-prices Usage was given (not the ones it would infer)."""
    keys = genai_prices.types._reported_usage_keys()
    return {k: v for k in keys if (v := vars(usage).get(k)) is not None}


def ours_as_genai(usage: dict[str, Any]) -> dict[str, int]:
    """One of our records' usage in genai-prices' keywords (the five counts and EXTRA)."""
    out = {}
    for key in FIVE + EXTRA:
        value = usage.get(OURS_NAME.get(key, key))
        if value is not None:
            out[key] = value
    return out


# -- the responses ----------------------------------------------------------------------------


def chat(rid: str, model: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "chat.completion",
        "created": 1741569952,
        "model": model,
        "choices": [
            {
                "index": 0,
                "finish_reason": "stop",
                "message": {"role": "assistant", "content": "Snow falls on the pines."},
            }
        ],
        "usage": usage,
    }


def chat_chunk(rid: str, content: str | None, usage: dict[str, Any] | None) -> dict[str, Any]:
    choices = [] if usage else [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    return {
        "id": rid,
        "object": "chat.completion.chunk",
        "created": 1741569952,
        "model": MINI_MODEL,
        "choices": choices,
        "usage": usage,
    }


def response(rid: str, model: str, status: str, usage: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "id": rid,
        "object": "response",
        "created_at": 1741476542,
        "model": model,
        "status": status,
        "output": [],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
    }


def message(rid: str, usage: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": rid,
        "type": "message",
        "role": "assistant",
        "model": CLAUDE,
        "content": [{"type": "text", "text": "Snow falls on the pines."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage,
    }


def gemini(rid: str, usage: dict[str, Any], text: str = "Snow falls.") -> dict[str, Any]:
    return {
        "response_id": rid,
        "create_time": "2025-09-28T21:16:04.811473Z",
        "model_version": GEMINI,
        "candidates": [{"content": {"role": "model", "parts": [{"text": text}]}}],
        "usage_metadata": usage,
    }


def chat_events(rid: str, n_text: int, usage: dict[str, Any]) -> list[dict[str, Any]]:
    # The usage chunk comes only with stream_options={"include_usage": True}.
    return [chat_chunk(rid, f" w{i}", None) for i in range(n_text)] + [chat_chunk(rid, None, usage)]


def responses_events(rid: str, n_text: int, usage: dict[str, Any]) -> list[dict[str, Any]]:
    deltas = [
        {
            "type": "response.output_text.delta",
            "sequence_number": i + 1,
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": f" w{i}",
            "logprobs": [],
        }
        for i in range(n_text)
    ]
    return [
        {
            "type": "response.created",
            "sequence_number": 0,
            "response": response(rid, RESPONSES_MODEL, "in_progress", None),
        },
        *deltas,
        {
            "type": "response.completed",
            "sequence_number": n_text + 1,
            "response": response(rid, RESPONSES_MODEL, "completed", usage),
        },
    ]


def anthropic_events(
    rid: str, n_text: int, start_usage: dict[str, Any], delta_usage: dict[str, Any]
) -> list[dict[str, Any]]:
    start = {**message(rid, start_usage), "content": [], "stop_reason": None}
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "w"},
            }
            for _ in range(n_text)
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": delta_usage,
        },
        {"type": "message_stop"},
    ]


def gemini_events(rid: str, n_text: int, prompt: int, final_out: int) -> list[dict[str, Any]]:
    """Every chunk carries the cumulative usage so far, as Gemini streams do."""
    out = []
    for i in range(n_text):
        so_far = max(1, final_out * (i + 1) // n_text)
        usage = {"prompt_token_count": prompt, "candidates_token_count": so_far}
        out.append(gemini(rid, usage, f" w{i}"))
    return out


CHAT_CACHE = {
    "prompt_tokens": 1200,
    "completion_tokens": 300,
    "total_tokens": 1500,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
RESPONSES_CACHE = {
    "input_tokens": 2000,
    "input_tokens_details": {"cached_tokens": 1536, "cache_write_tokens": 0},
    "output_tokens": 120,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 2120,
}
ANTHROPIC_CACHE = {
    "input_tokens": 300,
    "cache_read_input_tokens": 1000,
    "cache_creation_input_tokens": 200,
    "output_tokens": 250,
}
GEMINI_CACHE = {
    "prompt_token_count": 1000,
    "cached_content_token_count": 400,
    "candidates_token_count": 200,
    "total_token_count": 1200,
}

# Counts the vendor reported as 0 are part of the truth: OpenAI sends the details it has.
NO_AUDIO_REASONING = {
    "input_audio_tokens": 0,
    "output_audio_tokens": 0,
    "output_reasoning_tokens": 0,
}
NO_WRITE_NO_REASONING = {"cache_write_tokens": 0, "output_reasoning_tokens": 0}

CASES: list[Case] = [
    # -- openai_chat ------------------------------------------------------------------------
    Case(
        "chat-plain",
        "openai_chat",
        "openai_chat plain",
        CHAT_MODEL,
        chat(
            "chatcmpl-bench-plain",
            CHAT_MODEL,
            {"prompt_tokens": 812, "completion_tokens": 97, "total_tokens": 909},
        ),
        {"input_tokens": 812, "output_tokens": 97},
    ),
    Case(
        "chat-cache",
        "openai_chat",
        "openai_chat cache read",
        CHAT_MODEL,
        chat("chatcmpl-bench-cache", CHAT_MODEL, CHAT_CACHE),
        {"input_tokens": 1200, "cache_read_tokens": 1024, "output_tokens": 300}
        | NO_AUDIO_REASONING,
    ),
    Case(
        "chat-reasoning",
        "openai_chat",
        "openai_chat reasoning",
        REASONING_MODEL,
        chat(
            "chatcmpl-bench-reasoning",
            REASONING_MODEL,
            {
                "prompt_tokens": 150,
                "completion_tokens": 1800,
                "total_tokens": 1950,
                "prompt_tokens_details": {"cached_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": 1536},
            },
        ),
        {"input_tokens": 150, "cache_read_tokens": 0, "output_tokens": 1800}
        | {"output_reasoning_tokens": 1536},
    ),
    Case(
        "chat-stream",
        "openai_chat",
        "openai_chat stream",
        MINI_MODEL,
        chat_events("chatcmpl-bench-stream", 3, CHAT_CACHE),
        {"input_tokens": 1200, "cache_read_tokens": 1024, "output_tokens": 300}
        | NO_AUDIO_REASONING,
        stream=True,
    ),
    # -- openai_responses -------------------------------------------------------------------
    Case(
        "resp-plain",
        "openai_responses",
        "openai_responses plain",
        RESPONSES_MODEL,
        response(
            "resp_bench_plain",
            RESPONSES_MODEL,
            "completed",
            {
                "input_tokens": 500,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": 70,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": 570,
            },
        ),
        {"input_tokens": 500, "cache_read_tokens": 0, "output_tokens": 70} | NO_WRITE_NO_REASONING,
    ),
    Case(
        "resp-cache",
        "openai_responses",
        "openai_responses cache read",
        RESPONSES_MODEL,
        response("resp_bench_cache", RESPONSES_MODEL, "completed", RESPONSES_CACHE),
        {"input_tokens": 2000, "cache_read_tokens": 1536, "output_tokens": 120}
        | NO_WRITE_NO_REASONING,
    ),
    Case(
        "resp-reasoning",
        "openai_responses",
        "openai_responses reasoning",
        REASONING_MODEL,
        response(
            "resp_bench_reasoning",
            REASONING_MODEL,
            "completed",
            {
                "input_tokens": 2000,
                "input_tokens_details": {"cached_tokens": 1536, "cache_write_tokens": 0},
                "output_tokens": 900,
                "output_tokens_details": {"reasoning_tokens": 640},
                "total_tokens": 2900,
            },
        ),
        {
            "input_tokens": 2000,
            "cache_read_tokens": 1536,
            "cache_write_tokens": 0,
            "output_tokens": 900,
            "output_reasoning_tokens": 640,
        },
    ),
    Case(
        "resp-stream",
        "openai_responses",
        "openai_responses stream",
        RESPONSES_MODEL,
        responses_events("resp_bench_stream", 3, RESPONSES_CACHE),
        {"input_tokens": 2000, "cache_read_tokens": 1536, "output_tokens": 120}
        | NO_WRITE_NO_REASONING,
        stream=True,
    ),
    # -- anthropic --------------------------------------------------------------------------
    Case(
        "anth-plain",
        "anthropic",
        "anthropic plain",
        CLAUDE,
        message("msg_bench_plain", {"input_tokens": 300, "output_tokens": 250}),
        {"input_tokens": 300, "output_tokens": 250},
    ),
    Case(
        "anth-cache",
        "anthropic",
        "anthropic cache read+write",
        CLAUDE,
        message("msg_bench_cache", ANTHROPIC_CACHE),
        # Anthropic's input_tokens leaves the cache out: 300 + 1000 read + 200 written.
        {"input_tokens": 1500, "cache_read_tokens": 1000, "cache_write_tokens": 200}
        | {"output_tokens": 250},
    ),
    Case(
        "anth-thinking",
        "anthropic",
        "anthropic thinking",
        CLAUDE,
        message(
            "msg_bench_thinking",
            {
                "input_tokens": 300,
                "output_tokens": 2000,
                "output_tokens_details": {"thinking_tokens": 1500},
            },
        ),
        {"input_tokens": 300, "output_tokens": 2000, "output_reasoning_tokens": 1500},
    ),
    Case(
        "anth-stream",
        "anthropic",
        "anthropic stream (delta: 250 out)",
        CLAUDE,
        # message_start's output count is a placeholder; message_delta has the real one.
        anthropic_events(
            "msg_bench_stream",
            3,
            {"input_tokens": 300, "output_tokens": 1},
            {"output_tokens": 250},
        ),
        {"input_tokens": 300, "output_tokens": 250},
        stream=True,
    ),
    Case(
        "anth-stream-cache",
        "anthropic",
        "anthropic stream, cache",
        CLAUDE,
        # message_delta repeats the cumulative input counts, as the API now sends them.
        anthropic_events(
            "msg_bench_stream_cache",
            3,
            {**ANTHROPIC_CACHE, "output_tokens": 1},
            ANTHROPIC_CACHE,
        ),
        {"input_tokens": 1500, "cache_read_tokens": 1000, "cache_write_tokens": 200}
        | {"output_tokens": 250},
        stream=True,
    ),
    # -- gemini -----------------------------------------------------------------------------
    Case(
        "gem-plain",
        "gemini",
        "gemini plain",
        GEMINI,
        gemini(
            "gemini-bench-plain",
            {"prompt_token_count": 1000, "candidates_token_count": 200, "total_token_count": 1200},
        ),
        {"input_tokens": 1000, "output_tokens": 200},
    ),
    Case(
        "gem-cache",
        "gemini",
        "gemini cache read",
        GEMINI,
        gemini("gemini-bench-cache", GEMINI_CACHE),
        {"input_tokens": 1000, "cache_read_tokens": 400, "output_tokens": 200},
    ),
    Case(
        "gem-thinking",
        "gemini",
        "gemini thinking",
        GEMINI,
        gemini(
            "gemini-bench-thinking",
            {
                "prompt_token_count": 1000,
                "candidates_token_count": 200,
                "thoughts_token_count": 300,
                "total_token_count": 1500,
            },
        ),
        # candidates_token_count leaves the thoughts out; they are billed as output.
        {"input_tokens": 1000, "output_tokens": 500, "output_reasoning_tokens": 300},
    ),
    Case(
        "gem-stream",
        "gemini",
        "gemini stream (cumulative)",
        GEMINI,
        gemini_events("gemini-bench-stream", 3, 1000, 200),
        {"input_tokens": 1000, "output_tokens": 200},
        stream=True,
    ),
    # -- beyond the five canonical counts ---------------------------------------------------
    Case(
        "anth-cache-1h",
        "anthropic",
        "anthropic 1h cache write",
        CLAUDE,
        message(
            "msg_bench_cache_1h",
            {
                **ANTHROPIC_CACHE,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": 0,
                    "ephemeral_1h_input_tokens": 200,
                },
            },
        ),
        {"input_tokens": 1500, "cache_read_tokens": 1000, "cache_write_tokens": 200}
        | {"cache_write_5m_tokens": 0, "cache_write_1h_tokens": 200, "output_tokens": 250},
        extra=True,
    ),
    Case(
        "anth-web-search",
        "anthropic",
        "anthropic 2 web searches",
        CLAUDE,
        message(
            "msg_bench_web_search",
            {
                "input_tokens": 300,
                "output_tokens": 250,
                "server_tool_use": {"web_search_requests": 2, "web_fetch_requests": 0},
            },
        ),
        {"input_tokens": 300, "output_tokens": 250, "web_searches": 2},
        extra=True,
    ),
    Case(
        "gem-audio",
        "gemini",
        "gemini audio prompt",
        GEMINI,
        gemini(
            "gemini-bench-audio",
            {
                "prompt_token_count": 1000,
                "candidates_token_count": 200,
                "total_token_count": 1200,
                "prompt_tokens_details": [
                    {"modality": "AUDIO", "token_count": 800},
                    {"modality": "TEXT", "token_count": 200},
                ],
            },
        ),
        {"input_tokens": 1000, "input_audio_tokens": 800, "input_text_tokens": 200}
        | {"output_tokens": 200},
        extra=True,
    ),
]
BY_KEY = {c.key: c for c in CASES}


# -- long streams for the per-event overhead ---------------------------------------------------


def long_stream(api_id: str, n_text: int) -> list[dict[str, Any]]:
    """A stream of about ``n_text`` text events plus the usage events of its API."""
    if api_id == "openai_chat":
        return chat_events("chatcmpl-bench-long", n_text, CHAT_CACHE)
    if api_id == "openai_responses":
        return responses_events("resp_bench_long", n_text, RESPONSES_CACHE)
    if api_id == "anthropic":
        start = {"input_tokens": 300, "output_tokens": 1}
        return anthropic_events("msg_bench_long", n_text, start, {"output_tokens": 250})
    return gemini_events("gemini-bench-long", n_text, 1000, 200)


def vendor_id(case: Case) -> str:
    """The response's own id, as the vendor sent it."""
    first = case.raw[0] if case.stream else case.raw
    if case.api_id == "gemini":
        return str(first["response_id"])
    if case.stream and case.api_id == "anthropic":
        return str(first["message"]["id"])
    if case.stream and case.api_id == "openai_responses":
        return str(first["response"]["id"])
    return str(first["id"])
