"""Every error aicm-manual raises, under one root.

    AicmError
    ├── SchemaError (ValueError)             a schema that cannot be used
    │   └── TypeStringError                  a malformed or unknown type string
    ├── UsageValidationError (ValueError)    a payload that does not match its schema
    │   └── BatchValidationError             track_batch(): records that cannot be sent
    ├── ConfigError (ValueError)             a config file or response that cannot be used
    ├── ConfigNotFoundError (LookupError)    no config (or service) with that id
    ├── InvalidRecordError (ValueError)      a track() argument other than the payload
    ├── LlmUsageError (ValueError)           an LLM response or stream without readable usage
    ├── TransportError (ConnectionError)     the collector could not be reached or refused
    │   └── ConfigFetchError                 ... while asking for a config
    ├── DeliveryError (RuntimeError)         an immediate-mode record was not delivered
    ├── QueueFullError (RuntimeError)        no room in the queue (raise, or block timed out)
    │   └── QueueFull (queue.Full)           ... as a CostManager raises it, for SDK callers
    ├── SpoolError (OSError)                 the client's spool file cannot be opened or used
    ├── StorageError (OSError)               the collector's database cannot be opened
    ├── TrackerClosedError (RuntimeError)    track() after close()
    └── UsageLimitExceeded (RuntimeError)    a block budget is exceeded for the record

Each error also derives from the builtin a caller would naturally catch, so
``except ValueError`` keeps working for validation problems.
"""

from __future__ import annotations

import queue
from collections.abc import Mapping, Sequence

__all__ = [
    "AicmError",
    "BatchValidationError",
    "ConfigError",
    "ConfigFetchError",
    "ConfigNotFoundError",
    "DeliveryError",
    "InvalidRecordError",
    "LlmUsageError",
    "QueueFull",
    "QueueFullError",
    "SchemaError",
    "SpoolError",
    "StorageError",
    "TrackerClosedError",
    "TransportError",
    "TypeStringError",
    "UsageLimitExceeded",
    "UsageValidationError",
]


class AicmError(Exception):
    """Root of every error raised by aicm-manual."""


class SchemaError(AicmError, ValueError):
    """A usage schema that cannot be used (bad field names, unsupported types)."""


class TypeStringError(SchemaError):
    """A type string that does not follow the grammar in docs/type-strings.md.

    ``text`` is the type string, ``position`` the 0-based offset of the problem and
    ``reason`` the bare explanation; ``field`` and ``source`` name where the string came
    from when it was read from a schema or a config file.
    """

    def __init__(
        self,
        reason: str,
        text: str,
        position: int,
        *,
        field: str | None = None,
        source: str | None = None,
    ) -> None:
        self.reason = reason
        self.text = text
        self.position = position
        self.field = field
        self.source = source
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.source is not None and self.field is not None:
            where = f"{self.source}: field {self.field!r}: "
        elif self.field is not None:
            where = f"field {self.field!r}: "
        elif self.source is not None:
            where = f"{self.source}: "
        # Long strings are shown as a window around the position so the caret stays true.
        start = max(0, min(self.position - 60, len(self.text) - 120))
        prefix = "..." if start else ""
        shown = prefix + self.text[start : start + 120]
        caret = " " * (len(prefix) + self.position - start) + "^"
        return f"{where}{self.reason} at position {self.position}\n    {shown}\n    {caret}"

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_type_string_error,
            (self.reason, self.text, self.position, self.field, self.source),
        )

    def located(self, *, field: str | None = None, source: str | None = None) -> TypeStringError:
        """Return a copy that also names the schema field and the file or config."""
        return TypeStringError(
            self.reason,
            self.text,
            self.position,
            field=field if field is not None else self.field,
            source=source if source is not None else self.source,
        )


def _rebuild_type_string_error(
    reason: str, text: str, position: int, field: str | None, source: str | None
) -> TypeStringError:
    return TypeStringError(reason, text, position, field=field, source=source)


class UsageValidationError(AicmError, ValueError):
    """A usage payload that does not match its schema.

    ``errors`` maps each field name to every message about it (each message starts with
    its path, e.g. ``breakdown["a"][1]: expected int, got str 'x'``); ``missing_fields``
    and ``extra_fields`` are sorted lists of field names. A payload that is not a
    mapping at all is reported under the key ``"<payload>"``.
    """

    def __init__(
        self,
        errors: Mapping[str, Sequence[str]],
        missing_fields: Sequence[str] = (),
        extra_fields: Sequence[str] = (),
    ) -> None:
        self.errors: dict[str, list[str]] = {k: list(v) for k, v in errors.items()}
        self.missing_fields: list[str] = sorted(missing_fields)
        self.extra_fields: list[str] = sorted(extra_fields)
        super().__init__(self._render())

    def _render(self) -> str:
        count = sum(len(v) for v in self.errors.values())
        lines = [f"usage payload is invalid ({count} problem{'s' if count != 1 else ''}):"]
        for messages in self.errors.values():
            lines.extend(f"  - {m}" for m in messages)
        return "\n".join(lines)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.errors, self.missing_fields, self.extra_fields))


_SHOWN_RECORDS = 20


class BatchValidationError(UsageValidationError):
    """``track_batch()`` found records it cannot send, so it sent none.

    ``problems`` maps each bad record's index to its error (a UsageValidationError, an
    InvalidRecordError, a ConfigNotFoundError ...). ``errors``, ``missing_fields`` and
    ``extra_fields`` hold the payload problems with field names prefixed by the index:
    ``"[3].input_tokens"``.
    """

    def __init__(self, problems: Mapping[int, AicmError], total: int) -> None:
        self.problems: dict[int, AicmError] = dict(sorted(problems.items()))
        self.total = total
        errors: dict[str, list[str]] = {}
        missing: list[str] = []
        extra: list[str] = []
        for index, problem in self.problems.items():
            if isinstance(problem, UsageValidationError):
                for name, messages in problem.errors.items():
                    errors[f"[{index}].{name}"] = list(messages)
                missing += [f"[{index}].{name}" for name in problem.missing_fields]
                extra += [f"[{index}].{name}" for name in problem.extra_fields]
            else:
                errors[f"[{index}]"] = [str(problem)]
        super().__init__(errors, missing, extra)

    def _render(self) -> str:
        bad = len(self.problems)
        lines = [f"{bad} of {self.total} records cannot be sent, so none was (fix or drop them):"]
        for index, problem in list(self.problems.items())[:_SHOWN_RECORDS]:
            text = str(problem).replace("\n", "\n    ")
            lines.append(f"  - record {index}: {text}")
        if bad > _SHOWN_RECORDS:
            lines.append(f"  ... and {bad - _SHOWN_RECORDS} more (see .problems)")
        return "\n".join(lines)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.problems, self.total))


class ConfigError(AicmError, ValueError):
    """A config (file or collector answer) that cannot be used."""


class ConfigNotFoundError(AicmError, LookupError):
    """No config with the requested ``config_id`` (or no such service in a config)."""

    def __init__(self, config_id: str, where: str, kind: str = "config") -> None:
        self.config_id = config_id
        self.where = where
        self.kind = kind
        super().__init__(f"{kind} {config_id!r} not found in {where}")

    def __str__(self) -> str:
        # LookupError subclasses such as KeyError quote their argument; we never want that.
        return str(self.args[0])

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.config_id, self.where, self.kind))


class InvalidRecordError(AicmError, ValueError):
    """A ``track()`` argument other than the usage payload (timestamp, ids, context)."""


class LlmUsageError(AicmError, ValueError):
    """An LLM response or stream whose usage cannot be read: an unknown api_id, no usage
    (e.g. an OpenAI stream without ``stream_options={"include_usage": True}``), a count
    that is not a token count, or no model to name the service by."""


class TransportError(AicmError, ConnectionError):
    """The collector could not be reached, or answered a request with an error.

    ``status`` is the HTTP status when there was an answer, else None.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.status))


class ConfigFetchError(TransportError):
    """The collector could not be asked for a config, or refused to answer."""


class DeliveryError(AicmError, RuntimeError):
    """A record sent in ``immediate`` mode was not delivered.

    ``record`` is the wire record (a dict), so the caller holds it and nothing is lost
    silently; ``reason`` says why and ``status`` is the last HTTP status (None when the
    collector could not be reached). ``permanent`` is True when retrying cannot help
    (the collector rejected the record).
    """

    def __init__(
        self,
        message: str,
        *,
        record: dict[str, object] | None = None,
        status: int | None = None,
        permanent: bool = False,
    ) -> None:
        self.record = record
        self.status = status
        self.permanent = permanent
        self.reason = message
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_delivery_error, (self.reason, self.record, self.status, self.permanent))


def _rebuild_delivery_error(
    message: str, record: dict[str, object] | None, status: int | None, permanent: bool
) -> DeliveryError:
    return DeliveryError(message, record=record, status=status, permanent=permanent)


class QueueFullError(AicmError, RuntimeError):
    """The delivery queue had no room (``delivery_on_full="raise"``, or ``"block"`` timed out)."""


class QueueFull(QueueFullError, queue.Full):
    """A full delivery queue as the AICostManager SDK reports it: also ``queue.Full``, so
    ``except queue.Full`` written for ``delivery_on_full="raise"`` keeps working."""


class SpoolError(AicmError, OSError):
    """The client's spool file (``persistent_queue``) cannot be opened or used."""


class StorageError(AicmError, OSError):
    """The collector's database cannot be opened or used."""


class TrackerClosedError(AicmError, RuntimeError):
    """A tracker was used after ``close()``."""


class UsageLimitExceeded(AicmError, RuntimeError):
    """A record (or a wrapped call) falls under a ``block`` budget that is exceeded for the
    current period; nothing was sent. ``budget_id`` and ``period_end`` say which and until
    when."""

    def __init__(self, message: str, budget_id: str = "", period_end: str = "") -> None:
        self.budget_id = budget_id
        self.period_end = period_end
        super().__init__(message)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.budget_id, self.period_end))
