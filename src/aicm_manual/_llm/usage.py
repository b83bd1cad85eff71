"""LLM responses to canonical token usage: pure mapping, no SDK imported.

    llm = extract_usage("anthropic", message)   # an anthropic.types.Message, or its dict
    llm.service_id                              # "anthropic::claude-sonnet-4-5"
    llm.usage                                   # {"input_tokens": 1300, "output_tokens": 250,
                                                #  "cache_read_tokens": 1000, ..., "model": ...}

The vocabulary is genai-prices' (the collector prices it with that package): input_tokens
includes cache reads and writes, output_tokens includes reasoning. Vendors count
differently (Anthropic's input_tokens leaves the cache out, Gemini's candidates leave the
thoughts out), so each api_id has its own mapping; docs/llm.md has the table. SDK objects
are read by attribute and plain dicts by key (Gemini's also in the REST API's camelCase),
so `import aicm_manual` never pulls in openai, anthropic or google-genai.

:class:`StreamUsage` merges what a stream reports across its events, for the stream
wrappers in ``_llm_streams``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ..errors import LlmUsageError

API_IDS = ("openai_chat", "openai_responses", "anthropic", "gemini")
VENDORS: Mapping[str, str] = {
    "openai_chat": "openai",
    "openai_responses": "openai",
    "anthropic": "anthropic",
    "gemini": "google",
}

Usage = dict[str, Any]  # canonical counts (int) and "model" (str)


@dataclass(frozen=True)
class LlmUsage:
    """What one LLM response used: ``usage`` in the canonical vocabulary (with ``model``
    when known), the vendor, the model, the response's own id and, when the vendor says,
    when the response was created (OpenAI's ``created``, Gemini's ``create_time``)."""

    vendor: str
    model: str | None
    usage: Usage
    response_id: str | None
    created: datetime | None = None

    @property
    def service_id(self) -> str | None:
        """``vendor::model``, e.g. ``google::gemini-2.0-flash``; None when the model is unknown."""
        return None if self.model is None else f"{self.vendor}::{self.model}"


def check_api_id(api_id: object) -> str:
    if api_id not in VENDORS:
        raise LlmUsageError(f"unknown api_id {api_id!r}; expected one of {', '.join(API_IDS)}")
    return str(api_id)


def field(obj: Any, *names: str) -> Any:
    """The first of ``names`` that ``obj`` has and is not None, by key or by attribute."""
    if obj is None:
        return None
    is_mapping = type(obj) is dict or isinstance(obj, Mapping)
    for name in names:
        value = obj.get(name) if is_mapping else getattr(obj, name, None)
        if value is not None:
            return value
    return None


def _count(api_id: str, obj: Any, *names: str) -> int | None:
    value = field(obj, *names)
    if value is None:
        return None
    if type(value) is bool or not isinstance(value, int) or value < 0:
        raise LlmUsageError(f"{api_id} usage: {names[0]} is {value!r}, not a token count")
    return int(value)


def _required(api_id: str, obj: Any, name: str) -> int:
    value = _count(api_id, obj, name)
    if value is None:
        raise LlmUsageError(f"{api_id} usage has no {name}: {_shown(obj)}")
    return value


def _put(out: Usage, key: str, value: int | None) -> None:
    # A count the vendor did not report stays absent rather than becoming a made-up 0.
    if value is not None:
        out[key] = value


def _openai_chat(usage: Any) -> Usage:
    api = "openai_chat"
    prompt = field(usage, "prompt_tokens_details")
    completion = field(usage, "completion_tokens_details")
    # prompt_tokens already includes cached and cache-written tokens, completion_tokens
    # already includes reasoning: both are genai-prices' semantics as reported.
    out: Usage = {
        "input_tokens": _required(api, usage, "prompt_tokens"),
        "output_tokens": _required(api, usage, "completion_tokens"),
    }
    _put(out, "cache_read_tokens", _count(api, prompt, "cached_tokens"))
    _put(out, "cache_write_tokens", _count(api, prompt, "cache_write_tokens"))
    _put(out, "reasoning_tokens", _count(api, completion, "reasoning_tokens"))
    # Audio is priced apart from text (genai-prices' input/output_audio_tokens).
    _put(out, "input_audio_tokens", _count(api, prompt, "audio_tokens") or None)
    _put(out, "output_audio_tokens", _count(api, completion, "audio_tokens") or None)
    return out


def _openai_responses(usage: Any) -> Usage:
    api = "openai_responses"
    inputs = field(usage, "input_tokens_details")
    outputs = field(usage, "output_tokens_details")
    out: Usage = {
        "input_tokens": _required(api, usage, "input_tokens"),
        "output_tokens": _required(api, usage, "output_tokens"),
    }
    _put(out, "cache_read_tokens", _count(api, inputs, "cached_tokens"))
    _put(out, "cache_write_tokens", _count(api, inputs, "cache_write_tokens"))
    _put(out, "reasoning_tokens", _count(api, outputs, "reasoning_tokens"))
    return out


def _anthropic(usage: Any) -> Usage:
    api = "anthropic"
    # Anthropic's input_tokens counts only the uncached part of the prompt.
    read = _count(api, usage, "cache_read_input_tokens")
    write = _count(api, usage, "cache_creation_input_tokens")
    out: Usage = {
        "input_tokens": _required(api, usage, "input_tokens") + (read or 0) + (write or 0),
        "output_tokens": _required(api, usage, "output_tokens"),
    }
    _put(out, "cache_read_tokens", read)
    _put(out, "cache_write_tokens", write)
    details = field(usage, "output_tokens_details")
    _put(out, "reasoning_tokens", _count(api, details, "thinking_tokens"))
    # 1-hour cache writes cost more than 5-minute ones; server-side web searches are
    # billed per request. Both are counts genai-prices prices apart.
    creation = field(usage, "cache_creation")
    _put(out, "cache_write_1h_tokens", _count(api, creation, "ephemeral_1h_input_tokens") or None)
    tools = field(usage, "server_tool_use")
    _put(out, "web_searches", _count(api, tools, "web_search_requests") or None)
    return out


def _gemini(usage: Any) -> Usage:
    api = "gemini"
    prompt = _count(api, usage, "prompt_token_count", "promptTokenCount")
    tools = _count(api, usage, "tool_use_prompt_token_count", "toolUsePromptTokenCount")
    candidates = _count(api, usage, "candidates_token_count", "candidatesTokenCount")
    thoughts = _count(api, usage, "thoughts_token_count", "thoughtsTokenCount")
    if prompt is None and candidates is None and thoughts is None:
        raise LlmUsageError(f"gemini usage_metadata has no token counts: {_shown(usage)}")
    # Tool-use prompts are input too; thoughts are output that candidates_token_count leaves out.
    out: Usage = {
        "input_tokens": (prompt or 0) + (tools or 0),
        "output_tokens": (candidates or 0) + (thoughts or 0),
    }
    _put(
        out,
        "cache_read_tokens",
        _count(api, usage, "cached_content_token_count", "cachedContentTokenCount"),
    )
    _put(out, "reasoning_tokens", thoughts)
    # Audio is priced apart from text, per modality as Gemini details them.
    _put(
        out, "input_audio_tokens", _modality(usage, "prompt_tokens_details", "promptTokensDetails")
    )
    _put(
        out,
        "cache_audio_read_tokens",
        _modality(usage, "cache_tokens_details", "cacheTokensDetails"),
    )
    _put(
        out,
        "output_audio_tokens",
        _modality(usage, "candidates_tokens_details", "candidatesTokensDetails"),
    )
    return out


def _modality(usage: Any, *names: str, wanted: str = "AUDIO") -> int | None:
    """The token count of one modality in a Gemini details list (None when absent or 0)."""
    details = field(usage, *names)
    if not isinstance(details, list | tuple):
        return None
    total = 0
    for item in details:
        modality = field(item, "modality")
        name = getattr(modality, "value", modality)  # an SDK enum, or the REST string
        if isinstance(name, str) and name.upper() == wanted:
            total += _count("gemini", item, "token_count", "tokenCount") or 0
    return total or None


_MAPPERS: Mapping[str, Callable[[Any], Usage]] = {
    "openai_chat": _openai_chat,
    "openai_responses": _openai_responses,
    "anthropic": _anthropic,
    "gemini": _gemini,
}


def _model(api_id: str, value: Any) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if api_id == "gemini" and value.startswith("models/"):
        return value[len("models/") :]
    return value


def _id(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


_ISO = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|z|[+-]\d\d:\d\d)?")


def _created(value: Any) -> datetime | None:
    """A vendor's creation time (unix seconds, datetime or RFC 3339), None if unusable."""
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value) or value <= 0:
            return None
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str):
        # Python 3.10's fromisoformat takes neither "Z" nor Gemini's nanoseconds.
        match = _ISO.fullmatch(value.strip())
        if match is None:
            return None
        base, fraction, zone = match.groups()
        text = base + (fraction or "")[:7] + ("+00:00" if zone in (None, "Z", "z") else zone)
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            return None
    return None


def _shown(obj: Any) -> str:
    return repr(obj)[:200]


def build(api_id: str, usage: Any, model: Any, response_id: Any, created: Any = None) -> LlmUsage:
    """Map a vendor usage object (or dict) to an :class:`LlmUsage`."""
    canonical = _MAPPERS[api_id](usage)
    name = _model(api_id, model)
    if name is not None:
        canonical["model"] = name
    return LlmUsage(VENDORS[api_id], name, canonical, _id(response_id), _created(created))


def extract_usage(api_id: str, response: Any) -> LlmUsage:
    """The canonical usage of one complete response of the ``api_id`` API.

    ``response`` is the SDK's object (``ChatCompletion``, ``Response``, ``Message``,
    ``GenerateContentResponse``) or the same as a dict. Raises LlmUsageError for an
    unknown api_id, a response without usage, or counts that are not token counts.
    """
    api_id = check_api_id(api_id)
    if api_id == "gemini":
        usage = field(response, "usage_metadata", "usageMetadata")
        model = field(response, "model_version", "modelVersion")
        rid = field(response, "response_id", "responseId")
    else:
        usage = field(response, "usage")
        model = field(response, "model")
        rid = field(response, "id")
    created = field(response, *_CREATED[api_id])
    if usage is None:
        hint = ""
        if hasattr(response, "__iter__") and not isinstance(response, (Mapping, str, bytes)):
            hint = "; a stream goes through track_llm_stream_usage"
        raise LlmUsageError(
            f"{api_id} response {type(response).__name__} carries no usage{hint}: "
            f"{_shown(response)}"
        )
    return build(api_id, usage, model, rid, created)


# Where each API says when a response was created (Anthropic does not).
_CREATED: Mapping[str, tuple[str, ...]] = {
    "openai_chat": ("created",),
    "openai_responses": ("created_at",),
    "anthropic": (),
    "gemini": ("create_time", "createTime"),
}
_ANTHROPIC_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_creation_input_tokens",
    "cache_read_input_tokens",
    "output_tokens_details",
    "cache_creation",  # the 1-hour share of the cache writes
    "server_tool_use",  # web searches, counted in message_delta
)
_RESPONSES_WITH_USAGE = frozenset(
    {"response.completed", "response.incomplete", "response.failed", "response.created"}
)


class StreamUsage:
    """The usage an LLM stream reports, merged across its events as they are fed.

    - openai_chat: the chunk with ``usage`` (the last one, sent when the request has
      ``stream_options={"include_usage": True}``).
    - openai_responses: the ``response`` of ``response.completed`` (or ``.incomplete``,
      ``.failed``: those are billed too).
    - anthropic: ``message_start`` carries the input and a provisional output count;
      each ``message_delta`` carries cumulative counts that replace it.
    - gemini: every chunk may carry ``usage_metadata``; the last one wins.
    """

    def __init__(self, api_id: str) -> None:
        self.api_id = check_api_id(api_id)
        self.response_id: str | None = None
        self.model: str | None = None
        self.created: Any = None
        self._usage: Any = None
        self._anthropic: dict[str, Any] = {}

    def feed(self, event: Any) -> None:
        """Take note of one event; never raises for events that carry nothing of use."""
        api = self.api_id
        # Id, model and time are read until known: most chunks then cost one lookup.
        known = self.response_id is not None and self.model is not None
        if api == "openai_chat":
            if known:
                usage = field(event, "usage")
                if usage is not None:
                    self._usage = usage
                return
            self._note(field(event, "id"), field(event, "model"), field(event, "usage"))
            self._when(field(event, "created"))
        elif api == "gemini":
            if known:
                usage = field(event, "usage_metadata", "usageMetadata")
                if usage is not None:
                    self._usage = usage
                return
            self._note(
                field(event, "response_id", "responseId"),
                field(event, "model_version", "modelVersion"),
                field(event, "usage_metadata", "usageMetadata"),
            )
            self._when(field(event, "create_time", "createTime"))
        elif api == "openai_responses":
            if field(event, "type") in _RESPONSES_WITH_USAGE:
                response = field(event, "response")
                self._note(field(response, "id"), field(response, "model"), None)
                self._when(field(response, "created_at"))
                usage = field(response, "usage")
                if usage is not None:
                    self._usage = usage
        else:
            kind = field(event, "type")
            if kind == "message_start":
                message = field(event, "message")
                self._note(field(message, "id"), field(message, "model"), None)
                self._merge_anthropic(field(message, "usage"))
            elif kind == "message_delta":
                self._merge_anthropic(field(event, "usage"))

    def _note(self, response_id: Any, model: Any, usage: Any) -> None:
        if self.response_id is None:
            self.response_id = _id(response_id)
        if self.model is None:
            self.model = _model(self.api_id, model)
        if usage is not None:
            self._usage = usage

    def _when(self, created: Any) -> None:
        if self.created is None:
            self.created = created

    def _merge_anthropic(self, usage: Any) -> None:
        if usage is None:
            return
        # message_delta counts are cumulative: each replaces the count seen before it.
        for name in _ANTHROPIC_FIELDS:
            value = field(usage, name)
            if value is not None:
                self._anthropic[name] = value
        self._usage = self._anthropic

    @property
    def usage(self) -> Usage | None:
        """The canonical usage merged so far (None before any event reported usage)."""
        llm = self.result()
        return None if llm is None else dict(llm.usage)

    def result(self) -> LlmUsage | None:
        """The merged usage so far, or None when no event has carried any."""
        if self._usage is None:
            return None
        return build(self.api_id, self._usage, self.model, self.response_id, self.created)
