"""CostManager: wrap an API client so that every call of its configured methods is tracked.

    with CostManager(OpenAI()) as client:
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

The config (by default the client's class name lower-cased, without ``Async``: ``openai``,
``anthropic``) names the tracked methods in its ``handling_config`` (``_handling``); the
:class:`UniversalExtractor` turns each call into a record and a :class:`Tracker` sends it.
Streams come back wrapped (``_llm_streams``): tracked once at the end, on close, on an error
or when dropped. Memory stays bounded: counters and the last ``keep_payloads`` records.

A call that succeeded is never failed over tracking: a record that cannot be built or sent
is logged (``aicm_manual.cost_manager``), counted in ``errors`` and kept in ``last_error``,
unless ``strict=True`` (for tests), which raises.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from ._batch_input import sdk_tracker_kwargs
from ._call_mapping import UniversalExtractor, pick
from ._configs.handling import MethodSpec, parse_handling_config
from ._llm.streams import AsyncLlmStream, LlmStream, Recorder
from ._llm.tracking import LlmTarget, llm_recorder, track_llm_usage, track_llm_usage_async
from ._tracker import DEFAULT_CLOSE_TIMEOUT, Tracker
from .errors import ConfigError, QueueFull, QueueFullError, UsageValidationError

log = logging.getLogger("aicm_manual.cost_manager")

_OVERRIDES = ("service_id", "client_customer_key", "context", "response_id", "timestamp")


def default_config_id(client: object) -> str:
    """The client's class name lower-cased, without a leading ``async``: AsyncOpenAI -> openai."""
    name = type(client).__name__.lower()
    return name[len("async") :] if name.startswith("async") and len(name) > 5 else name


class _Proxy:
    """Stands in for the client, or an object on the way to a tracked method; everything
    else is the wrapped object's own attribute, unchanged."""

    __slots__ = ("_aicm_manager", "_aicm_path", "_aicm_target")

    def __init__(self, target: Any, path: str, manager: _Manager) -> None:
        self._aicm_target = target
        self._aicm_path = path
        self._aicm_manager = manager

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._aicm_target, name)
        path = f"{self._aicm_path}.{name}" if self._aicm_path else name
        manager = self._aicm_manager
        spec = manager.extractor.method(path)
        if spec is not None and callable(attr):
            return manager._wrap(attr, spec)
        if manager.extractor.leads_to_tracked(path):
            return _Proxy(attr, path, manager)
        return attr

    def __dir__(self) -> list[str]:
        return dir(self._aicm_target)

    def __repr__(self) -> str:
        return f"<tracked {self._aicm_target!r}>"


class _LastEvent:
    """Merger for streams of methods without a usage extractor: the last event is the
    response the mapping reads."""

    response_id = None
    usage = None

    def __init__(self) -> None:
        self._last: Any = None
        self._seen = False

    def feed(self, event: Any) -> None:
        self._last, self._seen = event, True

    def result(self) -> Any:
        return self._last if self._seen else None


class _Manager:
    """What CostManager and AsyncCostManager share: config, extractor, bookkeeping."""

    def __init__(
        self,
        client: Any,
        *,
        tracker: Tracker | None = None,
        config_id: str | None = None,
        strict: bool = False,
        keep_payloads: int = 100,
        **tracker_kwargs: Any,
    ) -> None:
        if tracker is not None and tracker_kwargs:
            raise TypeError(
                f"tracker settings {sorted(tracker_kwargs)} go to your Tracker, not to "
                f"{type(self).__name__} when you pass tracker="
            )
        self._client = client
        self._owns_tracker = tracker is None
        self.tracker: Tracker = (
            tracker if tracker is not None else Tracker(**sdk_tracker_kwargs(tracker_kwargs))
        )
        self.config_id = config_id if config_id is not None else default_config_id(client)
        try:
            config = self.tracker.config_source.get(self.config_id)
            if config.handling_config is None:
                raise ConfigError(
                    f"{config.source}: config {self.config_id!r} has no handling_config; a "
                    "CostManager needs one naming its tracked_methods (see docs/cost-manager.md)"
                )
            handling = parse_handling_config(config.handling_config, config.source)
        except BaseException:
            if self._owns_tracker:
                self.tracker.close(timeout=0)
            raise
        self.extractor = UniversalExtractor(handling, self.config_id)
        self._vendor = config.services[0].service_id.partition("::")[0] if config.services else ""
        self.strict = strict
        self.tracked = 0
        self.errors = 0
        self.last_error: BaseException | None = None
        self._recent: deque[dict[str, Any]] = deque(maxlen=keep_payloads)
        self._lock = threading.Lock()
        self._closed = False
        self.client: Any = _Proxy(client, "", self)

    @property
    def unwrapped(self) -> Any:
        """The client itself: calls through it are not tracked."""
        return self._client

    def __getattr__(self, name: str) -> Any:
        # manager.chat.completions.create(...) works like manager.client.chat...
        if name.startswith("_") or "client" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.client, name)

    def get_tracked_payloads(self) -> list[dict[str, Any]]:
        """The last ``keep_payloads`` records sent (oldest first); older ones are dropped."""
        return list(self._recent)

    def _wrap(self, method: Callable[..., Any], spec: MethodSpec) -> Callable[..., Any]:
        raise NotImplementedError

    # -- bookkeeping ------------------------------------------------------------------

    def _noted(self, rid: str, usage: Mapping[str, Any], fields: Mapping[str, Any]) -> str:
        record = {"config_id": self.config_id, "response_id": rid, "usage": dict(usage)}
        record.update((k, v) for k, v in fields.items() if v is not None and k != "timestamp")
        with self._lock:
            self.tracked += 1
        self._recent.append(record)
        return rid

    def _count_error(self, method: str, error: BaseException) -> None:
        with self._lock:
            self.errors += 1
            self.last_error = error
        log.error(
            "aicm: %s call of %s was not tracked: %s",
            self.config_id,
            method,
            error,
            exc_info=error,
        )

    def _check_limits(self, spec: MethodSpec, kwargs: Mapping[str, Any], when: datetime) -> None:
        guard = self.tracker.limits
        if guard is None:
            return
        try:  # what the request alone says about the record (the response is not there yet)
            fields = self._fields(spec, kwargs, None, when)
        except Exception:
            fields = {}
        customer = fields.get("client_customer_key") or self.tracker.default_customer_key
        service = fields.get("service_id")
        if not service:  # usually read off the response: the config's vendor and the model
            service = f"{self._vendor}::{kwargs.get('model', '')}"
        guard.check(customer, str(service))

    def _failed(self, method: str, error: BaseException) -> None:
        self._count_error(method, error)
        if isinstance(error, QueueFullError) and not isinstance(error, QueueFull):
            # A full queue under delivery_on_full="raise" (or a "block" that timed out)
            # reaches the caller, as queue.Full too: the caller chose to hear about it.
            raise QueueFull(str(error)) from error
        if self.strict or isinstance(error, QueueFull):
            raise error

    # -- building records ----------------------------------------------------------------

    def _fields(
        self, spec: MethodSpec, kwargs: Mapping[str, Any], response: Any, when: datetime
    ) -> dict[str, Any]:
        return self.extractor.record_fields(
            spec, self.extractor.tracking(spec, kwargs, response, when)
        )

    def _usage_of(self, spec: MethodSpec, fields: Mapping[str, Any]) -> Mapping[str, Any]:
        usage = fields.get("usage")
        if not isinstance(usage, Mapping):
            raise UsageValidationError(
                {
                    "usage": [
                        f"usage: the handling_config of {self.config_id!r} produced "
                        f"{type(usage).__name__} for {spec.method}, not a mapping"
                    ]
                }
            )
        return usage

    def _stream_recorder(
        self,
        spec: MethodSpec,
        kwargs: Mapping[str, Any],
        when: datetime,
        send: Callable[..., Any],
    ) -> Recorder:
        fields = self._fields(spec, kwargs, None, when)
        lenient = not self.strict
        on_error = functools.partial(self._count_error, spec.method)
        if spec.usage_extractor is not None:
            target = LlmTarget(
                send,
                spec.usage_extractor,
                config_id=self.config_id,
                **{k: fields.get(k) for k in _OVERRIDES},
            )
            return llm_recorder(target, lenient=lenient, on_error=on_error)

        def emit(last: Any) -> Any:
            tracking = self.extractor.tracking(spec, kwargs, None, when)
            tracking["response_data"] = pick(last, spec.response_fields)
            record = self.extractor.record_fields(spec, tracking)
            rest = {k: record.get(k) for k in _OVERRIDES}
            return send(self._usage_of(spec, record), config_id=self.config_id, **rest)

        return Recorder(spec.method, _LastEvent(), emit, lenient=lenient, on_error=on_error)

    def __repr__(self) -> str:
        state = " closed" if self._closed else ""
        return (
            f"<{type(self).__name__}{state} {type(self._client).__name__} "
            f"config_id={self.config_id!r} tracked={self.tracked} errors={self.errors}>"
        )


def _with_stream_kwargs(kwargs: dict[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """kwargs plus the spec's defaults for streaming calls; the caller's values win, and a
    caller's dict (e.g. stream_options) gains the default keys it lacks."""
    out = dict(kwargs)
    for key, value in defaults.items():
        given = out.get(key)
        if given is None:
            out[key] = dict(value) if isinstance(value, Mapping) else value
        elif isinstance(given, Mapping) and isinstance(value, Mapping):
            out[key] = {**value, **given}
    return out


def _defines(kind: type, name: str) -> bool:
    # Walking the MRO beats hasattr(): pydantic's metaclass makes a failed lookup costly.
    return any(name in vars(base) for base in kind.__mro__)


def _is_stream(response: Any) -> bool:
    kind = type(response)
    return _defines(kind, "__next__") or _defines(kind, "__anext__")


class CostManager(_Manager):
    """Wraps a client; calls of the config's tracked methods are tracked.

    ``CostManager(client, *, tracker=None, config_id=None, strict=False,
    keep_payloads=100, **tracker_kwargs)``: without ``tracker`` one is built from
    ``tracker_kwargs`` (``Tracker(**tracker_kwargs)``) and closed with the manager.
    The AICostManager SDK's ``delivery_batch_interval``, ``delivery_max_batch_size`` and
    ``delivery_timeout`` are aliases of ``delivery_options`` keys, ``delivery_mode``
    (``"sync"``/``"async"``) is accepted, and with ``delivery_on_full="raise"`` a full queue
    raises :class:`~aicm_manual.errors.QueueFull` (also ``queue.Full``) from the call.
    Use the manager like the client (``manager.chat.completions.create(...)``), or
    ``manager.client``; ``manager.unwrapped`` is the client itself.
    """

    def _wrap(self, method: Callable[..., Any], spec: MethodSpec) -> Callable[..., Any]:
        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            if spec.stream_kwargs and kwargs.get("stream") is True:
                kwargs = _with_stream_kwargs(kwargs, spec.stream_kwargs)
            when = datetime.now(timezone.utc)
            self._check_limits(spec, kwargs, when)  # before the call: a blocked one never runs
            response = method(*args, **kwargs)
            if isinstance(response, Awaitable):
                self._failed(
                    spec.method,
                    TypeError(
                        f"{spec.method} of {type(self._client).__name__} returned an awaitable: "
                        "wrap async clients with AsyncCostManager"
                    ),
                )
                return response
            if _is_stream(response):
                return self._wrap_stream(spec, kwargs, response, when)
            try:
                self._track(spec, kwargs, response, when)
            except Exception as exc:
                self._failed(spec.method, exc)
            return response

        return call

    def _send(self, usage: Mapping[str, Any], **fields: Any) -> str:
        rid = self.tracker.track(usage, **fields)
        return self._noted(rid, usage, fields)

    def _track(
        self, spec: MethodSpec, kwargs: Mapping[str, Any], response: Any, when: datetime
    ) -> None:
        fields = self._fields(spec, kwargs, response, when)
        rest = {k: fields.get(k) for k in _OVERRIDES}
        if spec.usage_extractor is not None:
            track_llm_usage(
                self._send, spec.usage_extractor, response, config_id=self.config_id, **rest
            )
        else:
            self._send(self._usage_of(spec, fields), config_id=self.config_id, **rest)

    def _wrap_stream(
        self, spec: MethodSpec, kwargs: Mapping[str, Any], stream: Any, when: datetime
    ) -> Any:
        recorder = self._stream_recorder(spec, kwargs, when, self._send)
        if _defines(type(stream), "__anext__"):
            return AsyncLlmStream(stream, recorder)
        return LlmStream(stream, recorder)

    def flush(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds for sent records; return how many remain."""
        return self.tracker.flush(timeout)

    def close(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> int:
        """Flush; close the tracker if the manager built it. Returns records left."""
        self._closed = True
        if self._owns_tracker:
            return self.tracker.close(timeout)
        return self.tracker.flush(timeout)

    def __enter__(self) -> CostManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncCostManager(_Manager):
    """CostManager for async clients (``AsyncOpenAI``, ``AsyncAnthropic``): tracked methods
    are awaited, records go through ``tracker.track_async`` (nothing blocks the loop) and
    streams come back as async iterators. ``async with`` closes it."""

    def _wrap(self, method: Callable[..., Any], spec: MethodSpec) -> Callable[..., Any]:
        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            if spec.stream_kwargs and kwargs.get("stream") is True:
                kwargs = _with_stream_kwargs(kwargs, spec.stream_kwargs)
            when = datetime.now(timezone.utc)
            self._check_limits(spec, kwargs, when)  # before the call: a blocked one never runs
            response = method(*args, **kwargs)
            if isinstance(response, Awaitable):
                response = await response
            if _is_stream(response):
                recorder = self._stream_recorder(spec, kwargs, when, self._send_async)
                if _defines(type(response), "__anext__"):
                    return AsyncLlmStream(response, recorder)
                return LlmStream(response, recorder)
            try:
                await self._track(spec, kwargs, response, when)
            except Exception as exc:
                self._failed(spec.method, exc)
            return response

        return call

    async def _send_async(self, usage: Mapping[str, Any], **fields: Any) -> str:
        rid = await self.tracker.track_async(usage, **fields)
        return self._noted(rid, usage, fields)

    async def _track(
        self, spec: MethodSpec, kwargs: Mapping[str, Any], response: Any, when: datetime
    ) -> None:
        fields = self._fields(spec, kwargs, response, when)
        rest = {k: fields.get(k) for k in _OVERRIDES}
        if spec.usage_extractor is not None:
            await track_llm_usage_async(
                self._send_async,
                spec.usage_extractor,
                response,
                config_id=self.config_id,
                **rest,
            )
        else:
            usage = self._usage_of(spec, fields)
            await self._send_async(usage, config_id=self.config_id, **rest)

    async def flush(self, timeout: float | None = None) -> int:
        return await self.tracker.aflush(timeout)

    async def close(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> int:
        """Flush; close the tracker if the manager built it. Returns records left."""
        self._closed = True
        if self._owns_tracker:
            return await self.tracker.aclose(timeout)
        return await self.tracker.aflush(timeout)

    aclose = close

    async def __aenter__(self) -> AsyncCostManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


# The AICostManager SDK's name for the async wrapper's companion; here it is the wrapper.
AsyncCostManagerClient = AsyncCostManager
