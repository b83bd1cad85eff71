"""The process-wide delivery engine, reached only through these functions.

    get_global_delivery()          # the engine (created on first use)
    get_global_delivery_health()   # a snapshot dict (docs/delivery.md)
    reset_global_delivery()        # close it and start afresh (tests)

An atexit hook drains the engine within ``exit_budget`` seconds; spooled records that
are still undelivered stay on disk for the next process.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import Any

from ..errors import ConfigError
from .engine import DeliveryEngine
from .settings import DeliverySettings, DeliveryType, conflicts

log = logging.getLogger("aicm_manual.delivery")


class _GlobalDelivery:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.engine: DeliveryEngine | None = None
        self.hooked = False

    def get(self, settings: DeliverySettings | None) -> DeliveryEngine:
        with self.lock:
            engine = self.engine
            if engine is None or engine.closed:
                engine = self.engine = DeliveryEngine(settings or DeliverySettings.resolve())
                if not self.hooked:
                    atexit.register(_drain_at_exit)
                    self.hooked = True
                return engine
        if settings is not None and settings != engine.settings:
            _check_compatible(engine.settings, settings)
        return engine

    def peek(self) -> DeliveryEngine | None:
        with self.lock:
            engine = self.engine
        return None if engine is None or engine.closed else engine

    def after_fork(self) -> None:
        self.lock = threading.Lock()


_global = _GlobalDelivery()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_global.after_fork)


def _check_compatible(current: DeliverySettings, wanted: DeliverySettings) -> None:
    spooled = DeliveryType.PERSISTENT_QUEUE
    if wanted.delivery_type is spooled and wanted.db_path.expanduser() != (
        current.db_path.expanduser()
    ):
        raise ConfigError(
            f"this process already spools to {str(current.db_path)!r}; one engine per "
            f"process cannot also spool to {str(wanted.db_path)!r}"
        )
    clashes = conflicts(current, wanted)
    if clashes:
        raise ConfigError(
            "the process's delivery engine is already running with other process-wide "
            "settings: " + "; ".join(clashes) + " (give every tracker the same values, or "
            "leave them out after the first)"
        )


def get_global_delivery(settings: DeliverySettings | None = None) -> DeliveryEngine:
    """The process's delivery engine; ``settings`` apply when this call creates it."""
    return _global.get(settings)


def get_global_delivery_health() -> dict[str, Any]:
    """A snapshot of the delivery engine's state (counts in records). Before any tracker
    has made the engine, the snapshot of an idle one: asking never fixes its settings."""
    engine = _global.peek()
    if engine is None:
        return DeliveryEngine(DeliverySettings()).health()
    return engine.health()


def reset_global_delivery(timeout: float | None = 5.0) -> int:
    """Close the engine (flushing up to ``timeout``) so the next use creates a new one.

    Returns the records left undelivered (counted as discarded, spool rows excepted).
    """
    with _global.lock:
        engine, _global.engine = _global.engine, None
    return 0 if engine is None else engine.close(timeout)


def _drain_at_exit() -> None:
    engine = _global.engine
    if engine is None or engine.closed:
        return
    left = engine.close(engine.settings.exit_budget)
    if left:
        log.warning(
            "aicm: %d record(s) undelivered at exit after %.1f s (spooled ones stay on disk)",
            left,
            engine.settings.exit_budget,
        )
