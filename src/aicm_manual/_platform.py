"""any-llm's ``PlatformProvider``, built on a Tracker: the provider makes the LLM call, reads
its usage, and batches the usage records per provider instance (docs/llm.md).

    async with PlatformProvider(api_key=AICM_KEY, batch_size=50, flush_interval=5.0) as p:
        p.provider = OpenaiProvider                 # OPENAI_API_KEY / OPENAI_BASE_URL
        completion = await p.acompletion(model="gpt-4o-mini", messages=[...])
    # leaving the block flushed the queue and waited for delivery

Each provider keeps its own queue (``batch_queue``) of records not yet handed to delivery.
It is handed to the provider's tracker (and so to the process's delivery engine, which
retries and never discards) when it holds ``batch_size`` records, ``flush_interval``
seconds after the first record queued since the last hand-over, on
``flush_usage_events()`` and ``shutdown()``, and when its event loop ends (``asyncio.run``
returning cancels the timer, which hands over what is left: the engine's exit drain then
delivers it). A completion that succeeded never fails over tracking: problems are logged
(``aicm_manual.platform``) and counted in ``batch_queue.failed``.

``asyncio`` and ``openai`` are imported when first needed, never by ``import aicm_manual``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from ._llm.streams import AsyncLlmStream
from ._llm.tracking import DEFAULT_CONFIG_ID, LlmTarget, llm_recorder
from ._llm.usage import check_api_id, extract_usage
from ._secret import Secret
from ._tracker import DEFAULT_CLOSE_TIMEOUT, Tracker
from .errors import AicmError, BatchValidationError, ConfigError, TrackerClosedError

if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("aicm_manual.platform")

DEFAULT_BATCH_SIZE = 50
DEFAULT_FLUSH_INTERVAL = 5.0


class LlmProvider(Protocol):
    """What ``PlatformProvider.provider`` needs: a name, the ``api_id`` its responses are
    read with (docs/llm.md), and an awaitable chat completion."""

    PROVIDER_NAME: ClassVar[str]
    API_ID: ClassVar[str]

    async def acompletion(self, model: str, messages: Sequence[Any], **kwargs: Any) -> Any: ...


class OpenaiProvider:
    """Chat completions from OpenAI or any OpenAI-compatible endpoint, through the official
    ``openai`` SDK (``pip install 'aicm-manual[openai]'``). ``api_key`` and ``api_base``
    default to the SDK's own ``OPENAI_API_KEY`` and ``OPENAI_BASE_URL``; other keywords go
    to ``openai.AsyncOpenAI`` (``timeout``, ``max_retries``, ``default_headers`` ...)."""

    PROVIDER_NAME: ClassVar[str] = "openai"
    API_ID: ClassVar[str] = "openai_chat"
    ENV_API_KEY_NAME: ClassVar[str] = "OPENAI_API_KEY"

    def __init__(self, api_key: str | None = None, api_base: str | None = None, **kwargs: Any):
        try:
            import openai
        except ImportError:
            raise ImportError(
                "OpenaiProvider needs the openai package: pip install 'aicm-manual[openai]'"
            ) from None
        self.client = openai.AsyncOpenAI(api_key=api_key, base_url=api_base, **kwargs)

    async def acompletion(self, model: str, messages: Sequence[Any], **kwargs: Any) -> Any:
        """``client.chat.completions.create(model=, messages=, **kwargs)``: a
        ``ChatCompletion``, or an async stream of chunks with ``stream=True``."""
        return await self.client.chat.completions.create(
            model=model, messages=list(messages), **kwargs
        )

    async def aclose(self) -> None:
        await self.client.close()

    def __repr__(self) -> str:
        return f"<OpenaiProvider base_url={str(self.client.base_url)!r}>"


class UsageEventBatchQueue:
    """One provider's usage records not yet handed to delivery (``_queue``, a list).

    ``enqueue`` hands the queue over when it holds ``batch_size`` records and otherwise
    makes sure a timer hands it over ``flush_interval`` seconds later. Handing over is one
    ``track_batch`` on the tracker: the records are validated, then queued in the process's
    engine (or, for an ``immediate`` tracker, sent in as few requests as the protocol
    allows). A refused record is logged and counted in ``failed``; the others still go.
    """

    def __init__(
        self,
        tracker: Tracker,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        if (
            isinstance(flush_interval, bool)
            or not isinstance(flush_interval, (int, float))
            or not 0 < flush_interval < float("inf")
        ):
            raise ConfigError(
                f"flush_interval must be a positive number of seconds, got {flush_interval!r}"
            )
        self.tracker = tracker
        self.batch_size = batch_size
        self.flush_interval = float(flush_interval)
        self._queue: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._closed = False
        self.handed_over = 0  # records handed to the tracker
        self.batches = 0  # hand-overs
        self.failed = 0  # records refused or lost on the way (logged)
        self.last_error: BaseException | None = None

    def __len__(self) -> int:
        with self._lock:
            return len(self._queue)

    @property
    def closed(self) -> bool:
        return self._closed

    def _take(self) -> list[dict[str, Any]]:
        # The list itself stays: the page reads ``len(provider.batch_queue._queue)``.
        with self._lock:
            batch = self._queue[:]
            self._queue.clear()
            return batch

    async def enqueue(self, event: Mapping[str, Any]) -> None:
        """Queue one ``track_batch`` record; hand the queue over once it is full."""
        with self._lock:
            self._queue.append(dict(event))
            full = len(self._queue) >= self.batch_size or self._closed
            batch: list[dict[str, Any]] = []
            if full:
                batch = self._queue[:]
                self._queue.clear()
        if batch:
            await self._send(batch)
        elif self._timer is None or self._timer.done():
            import asyncio  # kept off `import aicm_manual`

            self._timer = asyncio.get_running_loop().create_task(self._tick())

    async def _tick(self) -> None:
        import asyncio

        try:
            while True:
                await asyncio.sleep(self.flush_interval)
                batch = self._take()
                if batch:
                    await self._send(batch)
                with self._lock:
                    if not self._queue:
                        return  # the next enqueue starts a new timer
        finally:
            # Cancelled (shutdown, or asyncio.run ending) or dropped with its loop: what is
            # still queued goes to the tracker now, so the engine's exit drain delivers it.
            self._hand_over_now()

    def _hand_over_now(self) -> None:
        batch = self._take()
        if batch:
            self._deliver(batch)

    def _deliver(self, batch: list[dict[str, Any]]) -> None:
        """Hand ``batch`` over from synchronous code (the timer's last act)."""
        while batch:
            try:
                result = self.tracker.track_batch(batch)
            except BatchValidationError as exc:
                batch = self._refused(batch, exc)
                continue
            except AicmError as exc:
                self._lost(len(batch), exc)
                return
            self._done(batch, result)
            return

    async def _send(self, batch: list[dict[str, Any]]) -> None:
        """Hand ``batch`` over; an ``immediate`` tracker sends it in a worker thread."""
        while batch:
            try:
                result = await self.tracker.track_batch_async(batch)
            except BatchValidationError as exc:
                batch = self._refused(batch, exc)
                continue
            except AicmError as exc:
                self._lost(len(batch), exc)
                return
            self._done(batch, result)
            return

    def _done(self, batch: list[dict[str, Any]], result: Mapping[str, Any]) -> None:
        self.handed_over += len(batch)
        self.batches += 1
        refused = [r for r in result.get("results", ()) if r.get("status") == "rejected"]
        if refused:  # an immediate tracker: the collector's word is already known
            self.failed += len(refused)
            log.error(
                "aicm: the collector refused %d of a batch of %d usage events: %s",
                len(refused),
                len(batch),
                refused[0].get("errors"),
            )
        log.debug("aicm: handed a batch of %d usage events to delivery", len(batch))

    def _refused(
        self, batch: list[dict[str, Any]], exc: BatchValidationError
    ) -> list[dict[str, Any]]:
        """Log and count the records ``track_batch`` refused; return the others."""
        self.failed += len(exc.problems)
        self.last_error = exc
        log.error(
            "aicm: %d of a batch of %d usage events dropped: %s", len(exc.problems), len(batch), exc
        )
        return [e for i, e in enumerate(batch) if i not in exc.problems]

    def _lost(self, count: int, exc: AicmError) -> None:
        self.failed += count
        self.last_error = exc
        log.error("aicm: a batch of %d usage events could not be handed over: %s", count, exc)

    async def flush(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> int:
        """Hand the queue over now and wait up to ``timeout`` seconds for the tracker's
        records to be delivered; returns how many are still on their way."""
        batch = self._take()
        if batch:
            await self._send(batch)
        return await self.tracker.aflush(timeout)

    async def shutdown(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> int:
        """Stop the timer and ``flush``. Idempotent; ``enqueue`` afterwards hands each
        record over at once."""
        self._closed = True
        batch = self._take()
        timer, self._timer = self._timer, None
        if timer is not None and not timer.done():
            import asyncio
            import contextlib

            # A timer of a loop that is gone (closed without cancelling it) cannot run.
            with contextlib.suppress(RuntimeError):
                timer.cancel()
            if timer.get_loop() is asyncio.get_running_loop():
                with contextlib.suppress(asyncio.CancelledError):
                    await timer
        if batch:
            await self._send(batch)
        return await self.tracker.aflush(timeout)

    def __repr__(self) -> str:
        return (
            f"<UsageEventBatchQueue queued={len(self)} batch_size={self.batch_size} "
            f"flush_interval={self.flush_interval} handed_over={self.handed_over} "
            f"failed={self.failed}>"
        )


class PlatformProvider:
    """any-llm's platform provider: makes the LLM call through ``provider`` and records
    its usage, batched per instance (``batch_queue``), through ``tracker``.

    ``api_key`` is the collector's API key (default: ``AICM_API_KEY`` or AICM.INI, as for
    a Tracker); the collector's address is ``aicm_api_base`` or ``AICM_API_BASE``.
    ``api_base`` and other keywords go to the LLM provider, as in any-llm. Pass
    ``tracker=`` to record through a tracker of your own (its customer, context, config,
    delivery mode); the provider then flushes it but never closes it.
    """

    PROVIDER_NAME: ClassVar[str] = "platform"

    def __init__(
        self,
        api_key: str | Secret | None = None,
        api_base: str | None = None,
        client_name: str | None = None,
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        aicm_api_base: str | None = None,
        tracker: Tracker | None = None,
        **kwargs: Any,
    ) -> None:
        if tracker is not None and (api_key is not None or aicm_api_base is not None):
            raise TypeError("pass api_key and aicm_api_base, or tracker, not both")
        self._owns_tracker = tracker is None
        self.tracker = (
            Tracker(aicm_api_key=api_key, aicm_api_base=aicm_api_base)
            if tracker is None
            else tracker
        )
        self.batch_queue = UsageEventBatchQueue(self.tracker, batch_size, flush_interval)
        self.api_base = api_base
        self.client_name = client_name
        self.kwargs = kwargs
        self._provider: LlmProvider | None = None
        self._closed = False

    @property
    def provider(self) -> LlmProvider | None:
        """The LLM provider the calls go to (None until set)."""
        return self._provider

    @provider.setter
    def provider(self, provider: type[LlmProvider] | LlmProvider) -> None:
        """A provider class (built with this provider's ``api_base`` and keywords, its key
        from its own environment variable) or a provider built by you."""
        if isinstance(provider, type):
            provider = provider(api_base=self.api_base, **self.kwargs)  # type: ignore[call-arg]
        for name in ("PROVIDER_NAME", "API_ID", "acompletion"):
            if not hasattr(provider, name):
                raise TypeError(f"{provider!r} is no LLM provider: it has no {name}")
        check_api_id(provider.API_ID)
        self._provider = provider

    @property
    def closed(self) -> bool:
        return self._closed

    def _target(self, provider: LlmProvider) -> LlmTarget:
        return LlmTarget(
            self._enqueue,
            provider.API_ID,
            service_id=None,
            config_id=self.tracker.config_id or DEFAULT_CONFIG_ID,
            client_customer_key=None,
            context=None if self.client_name is None else {"client_name": self.client_name},
            response_id=None,
            timestamp=None,
        )

    async def _enqueue(self, usage: Mapping[str, Any], **fields: Any) -> str:
        record = {"usage": dict(usage), **{k: v for k, v in fields.items() if v is not None}}
        await self.batch_queue.enqueue(record)
        return str(fields.get("response_id") or "")

    def _tracking_failed(self, error: BaseException) -> None:
        self.batch_queue.failed += 1
        self.batch_queue.last_error = error
        log.error("aicm: the usage of a completion could not be recorded: %s", error)

    async def acompletion(self, model: str, messages: Sequence[Any], **kwargs: Any) -> Any:
        """Call the provider; record the response's usage (a stream's once it has been
        read, with ``stream_options={"include_usage": True}`` added for OpenAI). Errors of
        the call itself reach you unchanged, and nothing is recorded for them."""
        if self._closed:
            raise TrackerClosedError(f"{self!r} is shut down")
        provider = self._provider
        if provider is None:
            raise AicmError(
                "PlatformProvider has no LLM provider: set provider.provider = OpenaiProvider"
            )
        stream = kwargs.get("stream") is True
        if stream and provider.API_ID == "openai_chat" and kwargs.get("stream_options") is None:
            kwargs["stream_options"] = {"include_usage": True}
        response = await provider.acompletion(model, messages, **kwargs)
        target = self._target(provider)
        if stream:
            recorder = llm_recorder(target, lenient=True, on_error=self._tracking_failed)
            return AsyncLlmStream(response, recorder)
        try:
            await target.call(extract_usage(provider.API_ID, response))
        except AicmError as exc:
            self._tracking_failed(exc)
        return response

    async def flush_usage_events(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> int:
        """Hand the queued records over and wait up to ``timeout`` seconds for their
        delivery; returns how many are still on their way (0: all delivered)."""
        return await self.batch_queue.flush(timeout)

    async def shutdown(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> int:
        """Flush, stop the timer, close the tracker (if the provider built it) and the
        LLM client. Later ``acompletion`` calls raise TrackerClosedError. Idempotent."""
        first = not self._closed
        self._closed = True
        left = await self.batch_queue.shutdown(timeout)
        if first:
            if self._owns_tracker:
                left = await self.tracker.aclose(timeout)
            closer = getattr(self._provider, "aclose", None)
            if callable(closer):
                await closer()
        return left

    async def __aenter__(self) -> PlatformProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    def __repr__(self) -> str:
        state = " shut down" if self._closed else ""
        name = None if self._provider is None else self._provider.PROVIDER_NAME
        return f"<PlatformProvider{state} provider={name!r} queued={len(self.batch_queue)}>"
