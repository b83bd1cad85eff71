"""Stream wrappers that yield every event unchanged and record what the events said once.

    stream = LlmStream(sdk_stream, Recorder("anthropic", StreamUsage("anthropic"), emit))
    for event in stream:                        # every event, unchanged
        ...

A :class:`Recorder` feeds each event to a merger (``StreamUsage`` for LLM usage) and hands
its result to ``emit`` exactly once: when the stream ends, when it is closed (``close()``,
``with``), when the wrapped stream raises (what was seen, then the error goes on), or when
the wrapper is garbage-collected unfinished (from a finalizer, which never raises). A
stream that ends normally with nothing to record raises LlmUsageError, since billing zero
silently is the failure this project exists to prevent; one closed or dropped before
anything arrived logs a warning. ``_llm_track`` builds these for the LLM helpers, and the
CostManager for tracked client methods.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from ..errors import LlmUsageError

log = logging.getLogger("aicm_manual.llm")

T = TypeVar("T")


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
