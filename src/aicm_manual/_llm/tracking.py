"""Track LLM responses and streams through any ``track`` callable (``Tracker.track``).

    rid = track_llm_usage(tracker.track, "openai_chat", completion)
    for event in track_llm_stream_usage(tracker.track, "anthropic", stream):
        ...                                     # every event, unchanged

A record's response_id is the LLM response's own id (``chatcmpl-...``, ``msg_...``) and its
timestamp the time the vendor created the response (OpenAI, Gemini) or, for responses that
carry none (Anthropic), the time this process first tracked it. Tracking the same response
twice therefore sends the same record: a duplicate at the collector, never a second bill.
Streams are wrapped by ``_llm_streams`` and tracked exactly once (see there when).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterable, Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypedDict, TypeVar

import cachetools

if TYPE_CHECKING:
    from typing_extensions import Unpack

from ..errors import InvalidRecordError, LlmUsageError
from .streams import AsyncLlmStream, LlmStream, Recorder
from .usage import LlmUsage, StreamUsage, check_api_id, extract_usage

T = TypeVar("T")
TrackFn = Callable[..., str]
AsyncTrackFn = Callable[..., Awaitable[str]]
DEFAULT_CONFIG_ID = "llm"


class _FirstSeen:
    """When each recent response without a time of its own was first tracked (bounded)."""

    def __init__(self, size: int = 4096) -> None:
        self._lock = threading.Lock()
        self._times: cachetools.LRUCache[tuple[str, str], datetime] = cachetools.LRUCache(size)

    def time_of(self, service_id: str, response_id: str) -> datetime:
        key = (service_id, response_id)
        with self._lock:
            when = self._times.get(key)
            if when is None:
                when = self._times[key] = datetime.now(timezone.utc)
            return when


_first_seen = _FirstSeen()


class LlmOptions(TypedDict, total=False):
    """What a caller may set on an LLM record; the response supplies the rest."""

    service_id: str | None
    config_id: str | None
    client_customer_key: str | None
    context: Mapping[str, Any] | None
    response_id: str | None
    timestamp: datetime | str | None


class LlmTarget:
    """Where and how a response's usage is recorded: the track callable and its options."""

    def __init__(
        self,
        track: Callable[..., Any],
        api_id: str,
        *,
        service_id: str | None,
        config_id: str | None,
        client_customer_key: str | None,
        context: Mapping[str, Any] | None,
        response_id: str | None,
        timestamp: datetime | str | None,
    ) -> None:
        # Checked now, not when a stream ends: a mistake should surface at the call site.
        if not callable(track):
            raise TypeError(f"track must be callable, got {type(track).__name__}")
        if service_id is not None and not isinstance(service_id, str):
            raise InvalidRecordError(f"service_id must be a string, got {service_id!r}")
        if context is not None and not isinstance(context, Mapping):
            raise InvalidRecordError(f"context must be a mapping, got {type(context).__name__}")
        self.track = track
        self.api_id = check_api_id(api_id)
        self.service_id = service_id
        self.config_id = config_id
        self.client_customer_key = client_customer_key
        self.context = None if context is None else dict(context)
        self.response_id = response_id
        self.timestamp = timestamp

    def call(self, llm: LlmUsage) -> Any:
        """Call ``track`` for ``llm``; returns what it returns (a str, or an awaitable)."""
        service_id = self.service_id or llm.service_id
        if service_id is None:
            raise LlmUsageError(
                f"{self.api_id} response {llm.response_id!r} names no model; "
                "pass service_id='vendor::model'"
            )
        response_id = self.response_id or llm.response_id
        timestamp = self.timestamp
        if timestamp is None:
            timestamp = llm.created
            if timestamp is None and response_id is not None:
                timestamp = _first_seen.time_of(service_id, response_id)
        return self.track(
            llm.usage,
            service_id=service_id,
            config_id=self.config_id,
            client_customer_key=self.client_customer_key,
            context=self.context,
            response_id=response_id,
            timestamp=timestamp,
        )


def track_llm_usage(
    track: TrackFn, api_id: str, response: Any, **options: Unpack[LlmOptions]
) -> str:
    """Track the usage of one complete response; returns the record's response_id."""
    result: str = _target(track, api_id, options).call(extract_usage(api_id, response))
    return result


async def track_llm_usage_async(
    track_async: AsyncTrackFn | TrackFn, api_id: str, response: Any, **options: Unpack[LlmOptions]
) -> str:
    """:func:`track_llm_usage` for an awaitable ``track_async`` (a plain one works too)."""
    result = _target(track_async, api_id, options).call(extract_usage(api_id, response))
    if isinstance(result, Awaitable):
        result = await result
    return str(result)


def llm_recorder(
    target: LlmTarget,
    *,
    lenient: bool = False,
    on_error: Callable[[BaseException], None] | None = None,
) -> Recorder:
    api = target.api_id
    hint = (
        ': pass stream_options={"include_usage": True} to create()' if api == "openai_chat" else ""
    )
    return Recorder(
        api, StreamUsage(api), target.call, hint=hint, lenient=lenient, on_error=on_error
    )


def track_llm_stream_usage(
    track: TrackFn, api_id: str, stream: Iterable[T], **options: Unpack[LlmOptions]
) -> LlmStream[T]:
    """Wrap ``stream`` so that its usage is tracked once; iterate the result instead."""
    target = _target(track, api_id, options)
    if not isinstance(stream, Iterable):
        hint = (
            "; an async stream goes through track_llm_stream_usage_async"
            if isinstance(stream, AsyncIterable)
            else ""
        )
        raise LlmUsageError(f"{api_id} stream {type(stream).__name__} is not iterable{hint}")
    return LlmStream(stream, llm_recorder(target))


def track_llm_stream_usage_async(
    track: AsyncTrackFn | TrackFn,
    api_id: str,
    stream: AsyncIterable[T],
    **options: Unpack[LlmOptions],
) -> AsyncLlmStream[T]:
    """Wrap an async stream; ``track`` may be ``track_async`` or a plain ``track``."""
    target = _target(track, api_id, options)
    if not isinstance(stream, AsyncIterable):
        raise LlmUsageError(f"{api_id} stream {type(stream).__name__} is not an async iterable")
    return AsyncLlmStream(stream, llm_recorder(target))


_OPTIONS = frozenset(LlmOptions.__annotations__)


def _target(track: Callable[..., Any], api_id: str, options: LlmOptions) -> LlmTarget:
    unknown = sorted(set(options) - _OPTIONS)
    if unknown:
        raise TypeError(f"unexpected keyword arguments {unknown}; known: {sorted(_OPTIONS)}")
    return LlmTarget(
        track,
        api_id,
        service_id=options.get("service_id"),
        config_id=options.get("config_id", DEFAULT_CONFIG_ID),
        client_customer_key=options.get("client_customer_key"),
        context=options.get("context"),
        response_id=options.get("response_id"),
        timestamp=options.get("timestamp"),
    )


class LlmHelpers:
    """The LLM methods of a tracker, written once: a class mixing this in provides
    ``_llm_track`` (its ``track`` and ``track_async``, and the config LLM records use)."""

    def _llm_track(self) -> tuple[TrackFn, AsyncTrackFn, str]:
        raise NotImplementedError

    def track_llm_usage(self, api_id: str, response: Any, **options: Unpack[LlmOptions]) -> str:
        """Track one LLM response (SDK object or dict); returns the record's response_id.
        Options: ``service_id``, ``client_customer_key``, ``context``, ``response_id``,
        ``timestamp`` and ``config_id`` (default: the tracker's config, else ``llm``)."""
        track, _, config_id = self._llm_track()
        options.setdefault("config_id", config_id)
        return track_llm_usage(track, api_id, response, **options)

    def track_llm_stream_usage(
        self, api_id: str, stream: Iterable[T], **options: Unpack[LlmOptions]
    ) -> LlmStream[T]:
        """Wrap an LLM stream: every event unchanged, usage tracked once."""
        track, _, config_id = self._llm_track()
        options.setdefault("config_id", config_id)
        return track_llm_stream_usage(track, api_id, stream, **options)

    async def track_llm_usage_async(
        self, api_id: str, response: Any, **options: Unpack[LlmOptions]
    ) -> str:
        """``track_llm_usage()`` for coroutines."""
        _, track_async, config_id = self._llm_track()
        options.setdefault("config_id", config_id)
        return await track_llm_usage_async(track_async, api_id, response, **options)

    def track_llm_stream_usage_async(
        self, api_id: str, stream: AsyncIterable[T], **options: Unpack[LlmOptions]
    ) -> AsyncLlmStream[T]:
        """Wrap an async LLM stream (``async for``); not awaited itself."""
        _, track_async, config_id = self._llm_track()
        options.setdefault("config_id", config_id)
        return track_llm_stream_usage_async(track_async, api_id, stream, **options)
