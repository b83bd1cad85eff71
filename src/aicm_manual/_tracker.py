"""Tracker: validate a usage payload against its config's schema and hand it to delivery.

    with Tracker("openai-chat", "openai::gpt-4o-mini", schemas_dir="schemas",
                 delivery=CapturingDelivery()) as tracker:
        rid = tracker.track({"input_tokens": 812, "output_tokens": 97, "model": "gpt-4o-mini"},
                            client_customer_key="acme")

The config is loaded and its validator compiled once, in the constructor. ``track()``
validates, copies, stamps and submits: no I/O on the caller's thread.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ._config import UsageConfig
from ._config_sources import ConfigSource, DirectoryConfigSource, shared_http_source
from ._delivery_settings import DeliverySettings, DeliveryType, OnFull
from ._global import get_global_delivery
from ._ids import new_response_id
from ._pending import OnDiscard
from ._records import (
    Delivery,
    Target,
    UsageRecord,
    check_id,
    copy_value,
    normalise_timestamp,
)
from ._secret import Secret
from ._settings import Settings
from ._validator import TypeValidator
from .errors import InvalidRecordError, TrackerClosedError

DEFAULT_CLOSE_TIMEOUT = 10.0


class Tracker:
    """Records usage for one (config, service) pair.

    Settings follow DESIGN section 7: explicit argument > environment > AICM.INI >
    default. Configs come from ``schemas_dir`` (or ``AICM_SCHEMAS_DIR``) when set, else
    from the collector at ``aicm_api_base``. Records go to the process's delivery engine
    in ``delivery_type`` mode (``mem_queue`` by default); ``delivery=`` replaces the
    engine with any object implementing the Delivery protocol (e.g. CapturingDelivery).
    """

    def __init__(
        self,
        config_id: str,
        service_id: str,
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
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.settings = Settings.resolve(
            aicm_api_key=aicm_api_key,
            aicm_api_base=aicm_api_base,
            aicm_ini_path=aicm_ini_path,
            schemas_dir=schemas_dir,
            environ=environ,
        )
        if config_source is None:
            if self.settings.schemas_dir is not None:
                config_source = DirectoryConfigSource(self.settings.schemas_dir)
            else:
                config_source = shared_http_source(
                    self.settings.api_base, self.settings.api_key, self.settings.config_ttl
                )
        self.config: UsageConfig = config_source.get(config_id)
        self.service = self.config.service(service_id)
        self.config_id = config_id
        self.service_id = service_id
        self._validate = self.config.validator.validate
        self._target = Target(self.settings.api_base, self.settings.api_key, on_discard)
        self.delivery_settings = DeliverySettings.resolve(
            {
                **(delivery_options or {}),
                "delivery_type": delivery_type,
                "on_full": delivery_on_full,
                "db_path": db_path,
            },
            environ=environ,
            ini=self.settings.ini,
            ini_path=str(self.settings.ini_path),
        )
        if delivery is None:
            engine = get_global_delivery(self.delivery_settings)
            engine.register(self._target)
            delivery = engine.lane(self.delivery_settings.delivery_type)
        self._delivery: Delivery = delivery
        self._submit = delivery.submit
        self._closed = False
        self._close_lock = threading.Lock()

    @classmethod
    async def create_async(cls, config_id: str, service_id: str, **kwargs: Any) -> Tracker:
        """Build a Tracker without blocking the event loop (the config load runs in a thread)."""
        import asyncio  # kept off `import aicm_manual`: most users never need it

        return await asyncio.to_thread(cls, config_id, service_id, **kwargs)

    @property
    def validator(self) -> TypeValidator:
        return self.config.validator

    @property
    def closed(self) -> bool:
        return self._closed

    def track(
        self,
        usage: Mapping[str, Any],
        *,
        client_customer_key: str | None = None,
        context: Mapping[str, Any] | None = None,
        response_id: str | None = None,
        timestamp: datetime | str | None = None,
    ) -> str:
        """Validate ``usage``, submit it for delivery and return its response_id.

        Raises UsageValidationError (listing every problem) for an invalid payload,
        InvalidRecordError for a bad id, context or timestamp, TrackerClosedError after
        close(). The payload is copied: changing it afterwards changes nothing.
        """
        if self._closed:
            raise TrackerClosedError(f"{self!r} is closed")
        self._validate(usage)
        if response_id is None:
            response_id = new_response_id()
        else:
            check_id("response_id", response_id)
        if client_customer_key is not None:
            check_id("client_customer_key", client_customer_key)
        if context is not None and not isinstance(context, Mapping):
            raise InvalidRecordError(f"context must be a mapping, got {type(context).__name__}")
        record = UsageRecord(
            self.config_id,
            self.service_id,
            response_id,
            normalise_timestamp(timestamp),
            copy_value(usage if type(usage) is dict else dict(usage)),
            client_customer_key,
            None if context is None else copy_value(dict(context)),
        )
        self._submit(record, self._target)
        return response_id

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
        import asyncio

        await asyncio.to_thread(self.close)

    def __repr__(self) -> str:
        key = "None" if self.settings.api_key is None else "[secure]"
        state = " closed" if self._closed else ""
        return (
            f"<Tracker{state} config_id={self.config_id!r} service_id={self.service_id!r} "
            f"api_base={self.settings.api_base!r} api_key={key}>"
        )
