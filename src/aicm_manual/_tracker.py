"""Tracker: validate a usage payload against its config's schema and hand it to delivery.

    with Tracker("openai-chat", "openai::gpt-4o-mini", schemas_dir="schemas",
                 delivery=CapturingDelivery()) as tracker:
        rid = tracker.track({"input_tokens": 812, "output_tokens": 97, "model": "gpt-4o-mini"},
                            client_customer_key="acme")

The tracker's own config is loaded and its validator compiled once, in the constructor;
records naming another service or config find theirs once and keep it (a route).
``track()`` validates, copies, stamps and submits: no I/O on the caller's thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar, overload

from ._anonymize import Anonymizer
from ._batch_input import BatchRecord, batch_answer
from ._configs.model import ServiceConfig, UsageConfig
from ._configs.routing import Routes
from ._configs.sources import ConfigSource, DirectoryConfigSource, shared_http_source
from ._delivery.modes import EngineDelivery, Mode
from ._delivery.process import get_global_delivery
from ._delivery.queued import OnDiscard
from ._delivery.settings import DeliverySettings, DeliveryType, OnFull
from ._limits import LimitGuard
from ._llm import tracking as _llm_track
from ._logging import configure_logging, log, redacted_body
from ._record_builder import RecordBuilder, alias, seed_form
from ._records import Delivery, Target, UsageRecord
from ._secret import Secret
from ._settings import Settings
from ._typestring.validator import TypeValidator
from .errors import (
    AicmError,
    BatchValidationError,
    InvalidRecordError,
    TrackerClosedError,
)

DEFAULT_CLOSE_TIMEOUT = 10.0
_T = TypeVar("_T")


class Tracker(_llm_track.LlmHelpers):
    """Records usage for one (config, service) pair by default, or for any service.

    ``Tracker(config_id, service_id)`` checks every record against that config's schema.
    ``Tracker()`` (no config) takes the service per record (``track("openai", "gpt-4o",
    usage)``, ``service_id=`` or a batch record's ``service_id``) and checks it against the
    config that lists the service, when there is one; otherwise the record is sent
    unchecked and the collector files it. Settings follow the usual precedence: explicit
    argument > environment > AICM.INI > default. Configs come from ``schemas_dir`` (or
    ``AICM_SCHEMAS_DIR``) when set, else from the collector at ``aicm_api_base``.
    Records go to the process's delivery engine in ``delivery_type`` mode (``mem_queue``
    by default); ``delivery=`` replaces the engine with any object implementing the
    Delivery protocol (e.g. CapturingDelivery).
    """

    def __init__(
        self,
        config_id: str | None = None,
        service_id: str | None = None,
        *,
        aicm_api_key: str | Secret | None = None,
        aicm_api_base: str | None = None,
        schemas_dir: str | os.PathLike[str] | None = None,
        aicm_ini_path: str | os.PathLike[str] | None = None,
        delivery_type: DeliveryType | str | None = None,
        delivery_on_full: OnFull | str | None = None,
        on_discard: OnDiscard | None = None,
        db_path: str | os.PathLike[str] | None = None,
        delivery_options: Mapping[str, object] | None = None,
        delivery: Delivery | None = None,
        config_source: ConfigSource | None = None,
        client_customer_key: str | None = None,
        context: Mapping[str, Any] | None = None,
        anonymize_fields: Iterable[str] | None = None,
        anonymizer: Anonymizer | None = None,
        log_file: str | os.PathLike[str] | None = None,
        log_level: str | int | None = None,
        log_bodies: bool | None = None,
        environ: Mapping[str, str] | None = None,
        enforce_limits: bool = False,
    ) -> None:
        self.settings = Settings.resolve(
            aicm_api_key=aicm_api_key,
            aicm_api_base=aicm_api_base,
            aicm_ini_path=aicm_ini_path,
            schemas_dir=schemas_dir,
            log_file=log_file,
            log_level=log_level,
            log_bodies=log_bodies,
            environ=environ,
        )
        configure_logging(self.settings.log_file, self.settings.log_level)
        if config_source is None:
            if self.settings.schemas_dir is not None:
                config_source = DirectoryConfigSource(self.settings.schemas_dir)
            else:
                config_source = shared_http_source(
                    self.settings.api_base, self.settings.api_key, self.settings.config_ttl
                )
        self.config_source: ConfigSource = config_source
        self.config: UsageConfig | None = None
        if config_id is not None:
            self.config = config_source.get(config_id)
            services = self.config.services
            if service_id is None and len(services) == 1 and not services[0].is_pattern:
                service_id = services[0].service_id  # the only service needs no argument
        self.config_id = config_id
        self.service_id = service_id
        self.service: ServiceConfig | None = None
        self._builder = RecordBuilder(
            Routes(config_source, self.config), config_id, service_id, anonymize_fields, anonymizer
        )
        self._builder.set_customer_key(client_customer_key)
        self._builder.set_context(context)
        if service_id is not None and self.config is not None:
            self.service = self.config.service(service_id)
        self._target = Target(self.settings.api_base, self.settings.api_key, on_discard)
        self.delivery_settings = DeliverySettings.resolve(
            {
                **(delivery_options or {}),
                "delivery_type": delivery_type,
                "on_full": delivery_on_full,
                "db_path": db_path,
            },
            arguments={"on_full": "delivery_on_full"},
            sources=self.settings.sources,
        )
        self._mode: EngineDelivery | None = None
        if delivery is None:
            engine = get_global_delivery(self.delivery_settings)
            route = engine.route(self._target, self.delivery_settings.lane())
            delivery = self._mode = Mode(engine, self.delivery_settings.delivery_type, route)
        self._delivery: Delivery = delivery
        self._submit = delivery.submit
        # Exceeded block budgets, learned in the background (docs/budgets.md): track()
        # refuses their records without any I/O of its own.
        self.limits: LimitGuard | None = None
        if enforce_limits:
            self.limits = LimitGuard.shared(self.settings.api_base, self.settings.api_key)
        self._closed = False
        self._close_lock = threading.Lock()

    @classmethod
    async def create_async(
        cls, config_id: str | None = None, service_id: str | None = None, **kwargs: Any
    ) -> Tracker:
        """Build a Tracker without blocking the event loop (the config load runs in a thread)."""
        import asyncio  # kept off `import aicm_manual`: most users never need it

        return await asyncio.to_thread(cls, config_id, service_id, **kwargs)

    @property
    def validator(self) -> TypeValidator | None:
        """The validator of the tracker's own config (None for ``Tracker()``)."""
        return None if self.config is None else self.config.validator

    @property
    def delivery(self) -> Delivery:
        """Where this tracker's records go; with the process's engine it also answers
        ``stats()`` (the SDK's name for the delivery health, with ``total_failed``)."""
        return self._delivery

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def default_customer_key(self) -> str | None:
        """The customer of records that name none."""
        return self._builder.customer_key

    def set_customer_key(self, client_customer_key: str | None) -> None:
        """The customer for records that name none (None: no default)."""
        self._builder.set_customer_key(client_customer_key)

    def set_context(self, context: Mapping[str, Any] | None) -> None:
        """The context for records that carry none (copied; None: no default)."""
        self._builder.set_context(context)

    # -- one record -------------------------------------------------------------------

    @overload
    def track(
        self,
        usage: Mapping[str, Any],
        /,
        *,
        service_id: str | None = None,
        config_id: str | None = None,
        client_customer_key: str | None = None,
        customer_key: str | None = None,
        context: Mapping[str, Any] | None = None,
        response_id: str | None = None,
        timestamp: datetime | str | None = None,
    ) -> str: ...

    @overload
    def track(
        self,
        service_id: str,
        usage: Mapping[str, Any],
        /,
        *,
        config_id: str | None = None,
        client_customer_key: str | None = None,
        customer_key: str | None = None,
        context: Mapping[str, Any] | None = None,
        response_id: str | None = None,
        timestamp: datetime | str | None = None,
    ) -> str: ...

    @overload
    def track(
        self,
        vendor: str,
        service: str,
        usage: Mapping[str, Any],
        /,
        *,
        config_id: str | None = None,
        client_customer_key: str | None = None,
        customer_key: str | None = None,
        context: Mapping[str, Any] | None = None,
        response_id: str | None = None,
        timestamp: datetime | str | None = None,
    ) -> str: ...

    def track(
        self,
        usage: Any,
        service: Any = None,
        payload: Any = None,
        /,
        *,
        service_id: str | None = None,
        config_id: str | None = None,
        client_customer_key: str | None = None,
        customer_key: str | None = None,
        context: Mapping[str, Any] | None = None,
        response_id: str | None = None,
        timestamp: datetime | str | None = None,
    ) -> str:
        """Validate ``usage``, submit it for delivery and return its response_id.

        Forms: ``track(usage)`` for the tracker's service, ``track("openai::gpt-4o",
        usage)`` and ``track("openai", "gpt-4o", usage)`` for any service.
        Raises UsageValidationError (listing every problem) for an invalid payload,
        InvalidRecordError for a bad id, context or timestamp, TrackerClosedError after
        close(). The payload is copied: changing it afterwards changes nothing.
        ``customer_key`` is the AICostManager SDK's name for ``client_customer_key``.
        """
        if self._closed:
            raise TrackerClosedError(f"{self!r} is closed")
        if service is not None:
            usage, service_id = seed_form(usage, service, payload, service_id)
        if customer_key is not None:
            client_customer_key = alias("client_customer_key", client_customer_key, customer_key)
        record = self._builder.build(
            usage, service_id, config_id, client_customer_key, context, response_id, timestamp
        )
        if self.limits is not None:
            self.limits.check(record.client_customer_key, record.service_id)
        self._submit(record, self._target)
        if self.settings.log_bodies:
            self._log_body(record)
        elif log.isEnabledFor(logging.DEBUG):  # a cached lookup when DEBUG is off
            log.debug("aicm: queued %s (%s)", record.response_id, record.service_id)
        return record.response_id

    def _log_body(self, record: UsageRecord) -> None:
        log.debug("aicm: tracked %s", redacted_body(record.to_wire(), self._builder.anon_fields))

    # -- many records -----------------------------------------------------------------

    def track_batch(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        anonymize_fields: Iterable[str] | None = None,
        anonymizer: Anonymizer | None = None,
    ) -> dict[str, Any]:
        """Validate every record, then send them all, or none if any is invalid.

        A record is a dict with ``usage`` and optionally ``service_id`` (alias
        ``service_key``), ``config_id``, ``response_id``, ``timestamp``,
        ``client_customer_key`` (alias ``customer_key``) and ``context``; missing fields
        take the tracker's defaults. Raises BatchValidationError naming each bad
        record's index and fields. In ``immediate`` mode the records go in as few
        requests as the protocol allows (1000 records, 5 MiB each) and the answer is
        ``{"results": [...], "response_ids": [...], "summary": {status: count}}`` with
        the collector's outcome (and cost) per record; queued modes answer
        ``{"queued": n, "response_ids": [...]}``.
        """
        if self._closed:
            raise TrackerClosedError(f"{self!r} is closed")
        anon = self._builder.anonymisation(anonymize_fields, anonymizer)
        built: list[UsageRecord] = []
        problems: dict[int, AicmError] = {}
        first_index: dict[str, int] = {}
        total = 0
        for index, raw in enumerate(records):
            total += 1
            try:
                item = BatchRecord.parse(raw)
                record = self._builder.build(
                    item.usage,
                    item.service_id,
                    item.config_id,
                    item.client_customer_key,
                    item.context,
                    item.response_id,
                    item.timestamp,
                    anon,
                )
            except AicmError as exc:
                problems[index] = exc
                continue
            earlier = first_index.setdefault(record.response_id, index)
            if earlier != index:
                problems[index] = InvalidRecordError(
                    f"response_id {record.response_id!r} repeats record {earlier}'s"
                )
            built.append(record)
        if problems:
            raise BatchValidationError(problems, total)
        if self.limits is not None:  # none is sent when any is under an exceeded block budget
            for record in built:
                self.limits.check(record.client_customer_key, record.service_id)
        ids = [r.response_id for r in built]
        if not built:
            return {"queued": 0, "response_ids": []}
        if self._mode is not None:
            outcomes = self._mode.submit_many(built, self._target)
            if outcomes is not None:
                return batch_answer(ids, outcomes)
        else:
            for record in built:
                self._submit(record, self._target)
        if self.settings.log_bodies:
            for record in built:
                self._log_body(record)
        return {"queued": len(built), "response_ids": ids}

    # -- LLM responses (docs/llm.md): the methods come from LlmHelpers ----------------------

    def _llm_track(self) -> tuple[_llm_track.TrackFn, _llm_track.AsyncTrackFn, str]:
        # The shipped llm config takes the canonical vocabulary; a tracker built for a
        # config of its own checks LLM records against that one.
        config_id = self.config_id if self.config_id is not None else _llm_track.DEFAULT_CONFIG_ID
        return self.track, self.track_async, config_id

    # -- async twins ------------------------------------------------------------------

    async def track_async(self, *args: Any, **kwargs: Any) -> str:
        """``track()`` for coroutines: the same forms and arguments.

        Queued modes enqueue right here (no thread hop, nothing that waits); immediate
        mode and the ``block`` on-full policy run in a worker thread.
        """
        if self._may_block(1):
            import asyncio

            return await asyncio.to_thread(self.track, *args, **kwargs)
        return self.track(*args, **kwargs)

    async def track_batch_async(
        self,
        records: Iterable[Mapping[str, Any]],
        *,
        anonymize_fields: Iterable[str] | None = None,
        anonymizer: Anonymizer | None = None,
    ) -> dict[str, Any]:
        """``track_batch()`` for coroutines (a worker thread when it may wait)."""
        records = list(records)
        if self._may_block(len(records)):
            import asyncio

            return await asyncio.to_thread(
                self.track_batch,
                list(records),
                anonymize_fields=anonymize_fields,
                anonymizer=anonymizer,
            )
        return self.track_batch(records, anonymize_fields=anonymize_fields, anonymizer=anonymizer)

    def _may_block(self, records: int) -> bool:
        """Whether tracking ``records`` now could wait: a request (immediate), or room in a
        full queue under the ``block`` policy. Such calls leave the event loop."""
        mode = self._mode
        if mode is None:
            return False
        if self.delivery_settings.delivery_type is DeliveryType.IMMEDIATE:
            return True
        return self.delivery_settings.on_full is OnFull.BLOCK and not mode.has_room(records)

    async def aflush(self, timeout: float | None = None) -> int:
        import asyncio

        return await asyncio.to_thread(self.flush, timeout)

    async def aclose(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> int:
        import asyncio

        return await asyncio.to_thread(self.close, timeout)

    # -- lifecycle --------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> int:
        """Wait up to ``timeout`` seconds for submitted records; return how many remain."""
        return self._delivery.flush(timeout)

    def close(self, timeout: float | None = DEFAULT_CLOSE_TIMEOUT) -> int:
        """Flush (bounded by ``timeout``) and refuse further records; return records left.

        Closing one tracker leaves delivery running for every other tracker. Idempotent.
        """
        with self._close_lock:
            if self._closed:
                return 0
            self._closed = True
        return self._delivery.flush(timeout)

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Tracker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        key = "None" if self.settings.api_key is None else "[secure]"
        state = " closed" if self._closed else ""
        return (
            f"<Tracker{state} config_id={self.config_id!r} service_id={self.service_id!r} "
            f"api_base={self.settings.api_base!r} api_key={key}>"
        )
