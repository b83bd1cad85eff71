"""Track LLM responses and streams through any ``track`` callable (``Tracker.track``).

    rid = track_llm_usage(tracker.track, "openai_chat", completion)
    for event in track_llm_stream_usage(tracker.track, "anthropic", stream):
        ...                                     # every event, unchanged

A record's response_id is the LLM response's own id (``chatcmpl-...``, ``msg_...``) and its
timestamp the time the vendor created the response (OpenAI, Gemini) or, for responses that
carry none (Anthropic), the time this process first tracked it. Tracking the same response
twice therefore sends the same record: a duplicate at the collector, never a second bill.

A wrapped stream records its merged usage exactly once: when it ends, when it is closed
(``close()``, ``with``), when the wrapped stream raises (what was seen, then the error goes
on), or when it is garbage-collected unfinished. A stream that ends normally without
any usage raises LlmUsageError, since billing zero silently is the failure this project
exists to prevent; a stream closed or abandoned before any usage logs a warning.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any, Generic, Protocol, TypeVar

import cachetools

from ._llm import LlmUsage, StreamUsage, check_api_id, extract_usage
from .errors import InvalidRecordError, LlmUsageError

log = logging.getLogger("aicm_manual.llm")

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
    track: TrackFn,
    api_id: str,
    response: Any,
    *,
    service_id: str | None = None,
    client_customer_key: str | None = None,
    context: Mapping[str, Any] | None = None,
    config_id: str | None = DEFAULT_CONFIG_ID,
    response_id: str | None = None,
    timestamp: datetime | str | None = None,
) -> str:
    """Track the usage of one complete response; returns the record's response_id."""
    target = LlmTarget(
        track,
        api_id,
        service_id=service_id,
        config_id=config_id,
        client_customer_key=client_customer_key,
        context=context,
        response_id=response_id,
        timestamp=timestamp,
    )
    result: str = target.call(extract_usage(api_id, response))
    return result


async def track_llm_usage_async(
    track_async: AsyncTrackFn | TrackFn,
    api_id: str,
    response: Any,
    *,
    service_id: str | None = None,
    client_customer_key: str | None = None,
    context: Mapping[str, Any] | None = None,
    config_id: str | None = DEFAULT_CONFIG_ID,
    response_id: str | None = None,
    timestamp: datetime | str | None = None,
) -> str:
    """:func:`track_llm_usage` for an awaitable ``track_async`` (a plain one works too)."""
    target = LlmTarget(
        track_async,
        api_id,
        service_id=service_id,
        config_id=config_id,
        client_customer_key=client_customer_key,
        context=context,
        response_id=response_id,
        timestamp=timestamp,
    )
    result = target.call(extract_usage(api_id, response))
    if isinstance(result, Awaitable):
        result = await result
    return str(result)


class Merger(Protocol):
    """What a wrapped stream feeds its events to: :class:`StreamUsage`, or anything that
    keeps what a stream's events say and can tell what to record."""

    @property
    def response_id(self) -> str | None: ...

    @property
    def usage(self) -> dict[str, Any] | None: ...

    def feed(self, event: Any) -> None: ...

    def result(self) -> Any | None: ...


class Recorder:
    """Feeds a stream's events to ``merged`` and records ``merged.result()`` exactly once,
    through ``emit`` (which may return an awaitable).

    It holds no reference to the wrapper, so the wrapper's finalizer can call it after the
    wrapper is gone. A ``lenient`` recorder never raises: problems go to ``on_error`` (or
    the log), for callers that must not fail the user's request over tracking.
    """

    def __init__(
        self,
        label: str,
        merged: Merger,
        emit: Callable[[Any], Any],
        *,
        hint: str = "",
        lenient: bool = False,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.label = label
        self.merged = merged
        self.emit = emit
        self.hint = hint
        self.lenient = lenient
        self.on_error = on_error
        self._lock = threading.Lock()
        self._done = False

    def _take(self) -> bool:
        """True exactly once: the caller records."""
        with self._lock:
            if self._done:
                return False
            self._done = True
            return True

    def _nothing(self, how: str, require_usage: bool, strict: bool) -> None:
        if require_usage:
            error = LlmUsageError(f"{self.label} stream ended without reporting usage{self.hint}")
            if strict:
                raise error
            self.failed(how, error)
            return
        log.warning(
            "%s stream %s %s before reporting usage; nothing tracked",
            self.label,
            self.merged.response_id,
            how,
        )

    def failed(self, how: str, error: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(error)
            return
        log.error(
            "%s stream %s (%s): usage could not be tracked",
            self.label,
            self.merged.response_id,
            how,
            exc_info=error,
        )

    def finish(self, how: str, *, strict: bool, require_usage: bool = False) -> None:
        """Record once. ``strict`` lets tracking errors propagate; otherwise they are logged
        (a finalizer or an exception already on its way must not be masked)."""
        if not self._take():
            return
        strict = strict and not self.lenient
        try:
            result = self.merged.result()
            if result is None:
                self._nothing(how, require_usage, strict)
                return
            sent = self.emit(result)
            if isinstance(sent, Awaitable):
                _run_detached(sent, self)
        except Exception as exc:
            if strict:
                raise
            self.failed(how, exc)

    async def finish_async(self, how: str, *, strict: bool, require_usage: bool = False) -> None:
        if not self._take():
            return
        strict = strict and not self.lenient
        try:
            result = self.merged.result()
            if result is None:
                self._nothing(how, require_usage, strict)
                return
            sent = self.emit(result)
            if isinstance(sent, Awaitable):
                await sent
        except Exception as exc:
            if strict:
                raise
            self.failed(how, exc)


_INCLUDE_USAGE = ': pass stream_options={"include_usage": True} to create()'


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


# Tasks started by finalizers of abandoned async streams; the event loop keeps only weak
# references to tasks, so they are held here until they finish (then dropped).
_detached: set[Any] = set()


def _run_detached(awaitable: Awaitable[Any], recorder: Recorder) -> None:
    """Await an async track() from synchronous code (a finalizer): as a task on this
    thread's running loop, else to completion on a loop of its own."""
    import asyncio  # only abandoned async streams get here; kept off `import aicm_manual`

    async def run() -> None:
        try:
            await awaitable
        except Exception as exc:
            recorder.failed("abandoned", exc)

    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run())
        return
    task = loop.create_task(run())
    _detached.add(task)
    task.add_done_callback(_detached.discard)


class LlmStream(Generic[T]):
    """Yields every event of ``stream`` unchanged and tracks the merged usage once.

    ``response_id`` is known from the first event that carries it, ``usage`` is the
    canonical usage merged so far (None before any). Other attributes are the wrapped
    stream's (e.g. ``.response`` of an OpenAI stream).
    """

    def __init__(self, stream: Iterable[T], recorder: Recorder) -> None:
        self._stream = stream
        self._iterator = iter(stream)
        self._recorder = recorder
        self._finalizer = weakref.finalize(self, recorder.finish, "abandoned", strict=False)

    @property
    def response_id(self) -> str | None:
        return self._recorder.merged.response_id

    @property
    def usage(self) -> dict[str, Any] | None:
        return self._recorder.merged.usage

    def __iter__(self) -> LlmStream[T]:
        return self

    def __next__(self) -> T:
        try:
            event = next(self._iterator)
        except StopIteration:
            pass
        except BaseException:
            self._finish("failed", strict=False)
            raise
        else:
            self._recorder.merged.feed(event)
            return event
        self._finish("ended", strict=True, require_usage=True)
        raise StopIteration

    def _finish(self, how: str, *, strict: bool, require_usage: bool = False) -> None:
        self._finalizer.detach()
        self._recorder.finish(how, strict=strict, require_usage=require_usage)

    def close(self) -> None:
        """Close the wrapped stream and track what it reported so far (once)."""
        self._close(strict=True)

    def _close(self, *, strict: bool) -> None:
        try:
            closer = getattr(self._stream, "close", None)
            if callable(closer):
                closer()
        finally:
            self._finish("closed", strict=strict)

    def __enter__(self) -> LlmStream[T]:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self._close(strict=exc_type is None)

    def __getattr__(self, name: str) -> Any:
        stream = self.__dict__.get("_stream")
        if stream is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(stream, name)

    def __repr__(self) -> str:
        return (
            f"<LlmStream {self._recorder.label} response_id={self.response_id!r} "
            f"of {type(self._stream).__name__}>"
        )


class AsyncLlmStream(Generic[T]):
    """:class:`LlmStream` for async streams: ``async for``, ``async with``, ``await close()``."""

    def __init__(self, stream: AsyncIterable[T], recorder: Recorder) -> None:
        self._stream = stream
        self._iterator: AsyncIterator[T] = stream.__aiter__()
        self._recorder = recorder
        self._finalizer = weakref.finalize(self, recorder.finish, "abandoned", strict=False)

    @property
    def response_id(self) -> str | None:
        return self._recorder.merged.response_id

    @property
    def usage(self) -> dict[str, Any] | None:
        return self._recorder.merged.usage

    def __aiter__(self) -> AsyncLlmStream[T]:
        return self

    async def __anext__(self) -> T:
        try:
            event = await self._iterator.__anext__()
        except StopAsyncIteration:
            pass
        except BaseException:
            await self._finish("failed", strict=False)
            raise
        else:
            self._recorder.merged.feed(event)
            return event
        await self._finish("ended", strict=True, require_usage=True)
        raise StopAsyncIteration

    async def _finish(self, how: str, *, strict: bool, require_usage: bool = False) -> None:
        self._finalizer.detach()
        await self._recorder.finish_async(how, strict=strict, require_usage=require_usage)

    async def close(self) -> None:
        """Close the wrapped stream and track what it reported so far (once)."""
        await self._close(strict=True)

    aclose = close

    async def _close(self, *, strict: bool) -> None:
        try:
            closer = getattr(self._stream, "aclose", None) or getattr(self._stream, "close", None)
            if callable(closer):
                result = closer()
                if isinstance(result, Awaitable):
                    await result
        finally:
            await self._finish("closed", strict=strict)

    async def __aenter__(self) -> AsyncLlmStream[T]:
        return self

    async def __aexit__(self, exc_type: object, *rest: object) -> None:
        await self._close(strict=exc_type is None)

    def __getattr__(self, name: str) -> Any:
        stream = self.__dict__.get("_stream")
        if stream is None or name.startswith("__"):
            raise AttributeError(name)
        return getattr(stream, name)

    def __repr__(self) -> str:
        return (
            f"<AsyncLlmStream {self._recorder.label} response_id={self.response_id!r} "
            f"of {type(self._stream).__name__}>"
        )


def track_llm_stream_usage(
    track: TrackFn,
    api_id: str,
    stream: Iterable[T],
    *,
    service_id: str | None = None,
    client_customer_key: str | None = None,
    context: Mapping[str, Any] | None = None,
    config_id: str | None = DEFAULT_CONFIG_ID,
    response_id: str | None = None,
    timestamp: datetime | str | None = None,
) -> LlmStream[T]:
    """Wrap ``stream`` so that its usage is tracked once; iterate the result instead."""
    target = LlmTarget(
        track,
        api_id,
        service_id=service_id,
        config_id=config_id,
        client_customer_key=client_customer_key,
        context=context,
        response_id=response_id,
        timestamp=timestamp,
    )
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
    *,
    service_id: str | None = None,
    client_customer_key: str | None = None,
    context: Mapping[str, Any] | None = None,
    config_id: str | None = DEFAULT_CONFIG_ID,
    response_id: str | None = None,
    timestamp: datetime | str | None = None,
) -> AsyncLlmStream[T]:
    """Wrap an async stream; ``track`` may be ``track_async`` or a plain ``track``."""
    target = LlmTarget(
        track,
        api_id,
        service_id=service_id,
        config_id=config_id,
        client_customer_key=client_customer_key,
        context=context,
        response_id=response_id,
        timestamp=timestamp,
    )
    if not isinstance(stream, AsyncIterable):
        raise LlmUsageError(f"{api_id} stream {type(stream).__name__} is not an async iterable")
    return AsyncLlmStream(stream, llm_recorder(target))
