"""Delivery settings: explicit argument > environment > ``[delivery]`` in AICM.INI > default.

    [delivery]
    delivery_type = persistent_queue
    batch_size = 500
    db_path = ~/.cache/aicm/spool.db

Every option has an environment variable (``AICM_DELIVERY_TYPE``, ``AICM_DB_PATH``,
``AICM_DELIVERY_BATCH_SIZE`` ...; see ``FIELDS``) and an option in ``[delivery]`` named like
the field; a relative path there is relative to the INI file's folder.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from .._protocol import MAX_RECORDS_PER_REQUEST, MAX_REQUEST_BYTES
from .._settings import Sources
from ..errors import ConfigError


class DeliveryType(str, enum.Enum):
    """How records travel: on the caller's thread, through memory, or through a spool."""

    IMMEDIATE = "immediate"
    MEM_QUEUE = "mem_queue"
    PERSISTENT_QUEUE = "persistent_queue"


class OnFull(str, enum.Enum):
    """What ``track()`` does when the queue is full."""

    BLOCK = "block"  # wait up to block_timeout for room, then raise QueueFullError
    RAISE = "raise"  # raise QueueFullError at once
    BACKPRESSURE = "backpressure"  # drop the oldest queued record (counted, on_discard)


@dataclass(frozen=True)
class DeliverySettings:
    delivery_type: DeliveryType = DeliveryType.MEM_QUEUE
    on_full: OnFull = OnFull.BLOCK
    # A 100,000-record burst from one thread fits with room to spare; the byte bound is on
    # serialised JSON, estimated from the sizes of the batches sent so far.
    queue_size: int = 1_000_000
    queue_bytes: int = 512 * 1024 * 1024
    block_timeout: float = 10.0
    batch_size: int = MAX_RECORDS_PER_REQUEST
    batch_bytes: int = 4 * 1024 * 1024  # under the protocol's 5 MiB: room for the envelope
    batch_interval: float = 0.2  # the age at which the oldest record leaves anyway
    timeout: float = 10.0  # per HTTP request
    backoff_initial: float = 0.5
    backoff_max: float = 30.0  # cap on one wait, Retry-After included
    retry_budget: float = 600.0  # a mem_queue record gives up after this long failing
    # immediate: the most track() may take in all, retries included (at most 3 retries)
    immediate_deadline: float = 10.0
    auth_retry_interval: float = 60.0  # how often a refused key is tried again
    exit_budget: float = 5.0  # how long the atexit drain may take
    # 0 (the default) disables gzip: on a LAN it costs more CPU than it saves in time.
    gzip_min_bytes: int = 0
    db_path: Path = Path("~/.cache/aicm/spool.db")
    spool_size: int = 5_000_000  # rows
    lease_seconds: float = 60.0
    # A spooled row whose endpoint stays unreachable this long becomes a dead letter.
    spool_max_age: float = 7 * 24 * 3600.0
    # Which fields a user gave (argument, environment or INI), as opposed to defaults.
    given: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    def lane(self) -> Lane:
        """The settings that travel with one tracker's records."""
        return Lane(
            self.on_full,
            self.block_timeout,
            self.timeout,
            self.retry_budget,
            self.immediate_deadline,
        )

    @classmethod
    def resolve(
        cls,
        explicit: Mapping[str, object] | None = None,
        *,
        arguments: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
        sources: Sources | None = None,
    ) -> DeliverySettings:
        """Resolve every field; ``explicit`` holds arguments by field name. ``sources`` (the
        client settings' environment and INI file) defaults to ``environ`` and no INI.
        ``arguments`` names the keyword a field came in as, for error messages
        (``{"on_full": "delivery_on_full"}``)."""
        if sources is None:
            sources = Sources(os.environ if environ is None else environ, Path("AICM.INI"), {})
        given = {k: v for k, v in (explicit or {}).items() if v is not None}
        unknown = set(given) - {f.name for f in fields(cls)} | ({"given"} & set(given))
        if unknown:
            raise TypeError(f"unknown delivery settings: {sorted(unknown)}")
        values: dict[str, Any] = {}
        for name, (variable, parse) in FIELDS.items():
            argument = (arguments or {}).get(name, name)
            found = sources.pick(given.get(name), argument, variable, "delivery", name)
            if found is None:
                continue
            try:
                values[name] = found.path() if parse is _path else parse(found.value)
            except (ValueError, TypeError) as exc:
                raise found.invalid(str(exc)) from None
        settings = replace(cls(), **values, given=frozenset(values))
        settings.check()
        return settings

    def check(self) -> None:
        if self.batch_size > MAX_RECORDS_PER_REQUEST:
            raise ConfigError(
                f"delivery setting batch_size is {self.batch_size}; the protocol allows"
                f" {MAX_RECORDS_PER_REQUEST} records per request at most"
            )
        if self.batch_bytes > MAX_REQUEST_BYTES:
            raise ConfigError(
                f"delivery setting batch_bytes is {self.batch_bytes}; the protocol allows"
                f" {MAX_REQUEST_BYTES} bytes per request at most"
            )
        if self.queue_size < self.batch_size:
            raise ConfigError(
                f"delivery setting queue_size ({self.queue_size}) must be at least batch_size"
                f" ({self.batch_size})"
            )


@dataclass(frozen=True, slots=True)
class Lane:
    """What travels with each tracker's records, whatever engine carries them."""

    on_full: OnFull = OnFull.BLOCK
    block_timeout: float = 10.0
    timeout: float = 10.0
    retry_budget: float = 600.0
    immediate_deadline: float = 10.0


# Settings of the one engine per process; the others travel with each tracker (Lane),
# with delivery_type and on_discard.
PROCESS_WIDE = (
    "queue_size",
    "queue_bytes",
    "batch_size",
    "batch_bytes",
    "batch_interval",
    "backoff_initial",
    "backoff_max",
    "auth_retry_interval",
    "exit_budget",
    "gzip_min_bytes",
    "db_path",
    "spool_size",
    "lease_seconds",
    "spool_max_age",
)


def conflicts(running: DeliverySettings, wanted: DeliverySettings) -> list[str]:
    """The process-wide settings ``wanted`` gives with values other than the running
    engine's, each as "name: running value, wanted value"."""
    out: list[str] = []
    for name in PROCESS_WIDE:
        if name not in wanted.given:
            continue
        have, want = getattr(running, name), getattr(wanted, name)
        if isinstance(have, Path):
            have, want = have.expanduser(), Path(want).expanduser()
        if have != want:
            out.append(f"{name} is {str(have)!r} in the running engine, {str(want)!r} here")
    return out


def _positive_int(raw: object) -> int:
    if isinstance(raw, bool):
        raise ValueError("Expected a positive integer.")
    try:
        value = int(str(raw))
    except ValueError:
        raise ValueError("Expected a positive integer.") from None
    if value < 1:
        raise ValueError("Expected a positive integer.")
    return value


def _non_negative_int(raw: object) -> int:
    if str(raw).strip() == "0":
        return 0
    return _positive_int(raw)


def _seconds(raw: object) -> float:
    try:
        value = float(str(raw))
    except ValueError:
        raise ValueError("Expected a number of seconds.") from None
    if not value >= 0 or value == float("inf"):
        raise ValueError("Expected a finite number of seconds, zero or more.")
    return value


def _enum(kind: type[enum.Enum]) -> Callable[[object], Any]:
    def parse(raw: object) -> Any:
        try:
            return kind(raw.value if isinstance(raw, enum.Enum) else str(raw).strip().lower())
        except ValueError:
            choices = ", ".join(m.value for m in kind)
            raise ValueError(f"Expected one of: {choices}.") from None

    return parse


def _path(raw: object) -> Path:
    # Resolved by Found.path(), which makes INI paths relative to the INI file.
    return Path(os.fspath(raw)).expanduser()  # type: ignore[call-overload]


FIELDS: dict[str, tuple[str, Callable[[object], Any]]] = {
    "delivery_type": ("AICM_DELIVERY_TYPE", _enum(DeliveryType)),
    "on_full": ("AICM_DELIVERY_ON_FULL", _enum(OnFull)),
    "queue_size": ("AICM_DELIVERY_QUEUE_SIZE", _positive_int),
    "queue_bytes": ("AICM_DELIVERY_QUEUE_BYTES", _positive_int),
    "block_timeout": ("AICM_DELIVERY_BLOCK_TIMEOUT", _seconds),
    "batch_size": ("AICM_DELIVERY_BATCH_SIZE", _positive_int),
    "batch_bytes": ("AICM_DELIVERY_BATCH_BYTES", _positive_int),
    "batch_interval": ("AICM_DELIVERY_BATCH_INTERVAL", _seconds),
    "timeout": ("AICM_DELIVERY_TIMEOUT", _seconds),
    "backoff_initial": ("AICM_DELIVERY_BACKOFF_INITIAL", _seconds),
    "backoff_max": ("AICM_DELIVERY_BACKOFF_MAX", _seconds),
    "retry_budget": ("AICM_DELIVERY_RETRY_BUDGET", _seconds),
    "auth_retry_interval": ("AICM_DELIVERY_AUTH_RETRY_INTERVAL", _seconds),
    "exit_budget": ("AICM_DELIVERY_EXIT_BUDGET", _seconds),
    "gzip_min_bytes": ("AICM_DELIVERY_GZIP_MIN_BYTES", _non_negative_int),
    "db_path": ("AICM_DB_PATH", _path),
    "spool_size": ("AICM_DELIVERY_SPOOL_SIZE", _positive_int),
    "lease_seconds": ("AICM_DELIVERY_LEASE_SECONDS", _seconds),
    "immediate_deadline": ("AICM_DELIVERY_IMMEDIATE_DEADLINE", _seconds),
    "spool_max_age": ("AICM_DELIVERY_SPOOL_MAX_AGE", _seconds),
}
