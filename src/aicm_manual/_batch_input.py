"""The record dicts ``track_batch()`` accepts, with the names other SDKs use; and the
AICostManager SDK's CostManager arguments in our terms.

    BatchRecord.parse({"service_key": "openai::gpt-4", "usage": {...}, "customer_key": "acme"})
    sdk_tracker_kwargs({"delivery_timeout": 5})   # {"delivery_options": {"timeout": 5}}

Pure: checking the fields' values is the Tracker's job, as for ``track()``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ._protocol import RECORD_KEYS, Outcome, answer, result_of
from .errors import ConfigError, InvalidRecordError

# Our name -> the alias users bring from the AICostManager SDK.
ALIASES = {"service_id": "service_key", "client_customer_key": "customer_key"}
FIELDS = RECORD_KEYS | frozenset(ALIASES.values())


def plain_usage(usage: object) -> object:
    """A pydantic model instance as the dict of its JSON values (``model_dump``); any
    other usage unchanged. The dict then meets the schema's compiled check like any other
    payload. pydantic is not imported: a model is recognised by its class's attributes."""
    if hasattr(type(usage), "__pydantic_fields__") and hasattr(usage, "model_dump"):
        return usage.model_dump(mode="json")
    return usage


@dataclass(frozen=True, slots=True)
class BatchRecord:
    usage: Any
    service_id: str | None = None
    config_id: str | None = None
    response_id: str | None = None
    timestamp: datetime | str | None = None
    client_customer_key: str | None = None
    context: Mapping[str, Any] | None = None

    @classmethod
    def parse(cls, raw: object) -> BatchRecord:
        if not isinstance(raw, Mapping):
            raise InvalidRecordError(
                f"a batch record must be a dict with 'usage', got {type(raw).__name__}"
            )
        if "usage" not in raw or not raw.keys() <= FIELDS:
            return cls._parse_slowly(raw)
        get = raw.get
        service_id, customer = get("service_id"), get("client_customer_key")
        # The AICostManager names, as its users write them; both spellings at once is rare
        # and checked on the slow path.
        if "service_key" in raw:
            if service_id is not None:
                return cls._parse_slowly(raw)
            service_id = raw["service_key"]
        if "customer_key" in raw:
            if customer is not None:
                return cls._parse_slowly(raw)
            customer = raw["customer_key"]
        config_id = get("config_id")
        if (service_id is not None and type(service_id) is not str) or (
            config_id is not None and type(config_id) is not str
        ):
            return cls._parse_slowly(raw)
        return cls(
            plain_usage(raw["usage"]),
            service_id,
            config_id,
            get("response_id"),
            get("timestamp"),
            customer,
            get("context"),
        )

    @classmethod
    def _parse_slowly(cls, raw: Mapping[Any, Any]) -> BatchRecord:
        """Aliases, and every kind of mistake with its message."""
        unknown = sorted(str(k) for k in raw if k not in FIELDS)
        if unknown:
            raise InvalidRecordError(
                f"unknown record keys {unknown} (known: {', '.join(sorted(FIELDS))})"
            )
        if "usage" not in raw:
            raise InvalidRecordError("a batch record needs 'usage'")
        values = dict(raw)
        for name, alias in ALIASES.items():
            if alias in values:
                value = values.pop(alias)
                if name in values and values[name] != value:
                    raise InvalidRecordError(
                        f"{name}={values[name]!r} and its alias {alias}={value!r} disagree"
                    )
                values.setdefault(name, value)
        for name in ("service_id", "config_id"):
            if values.get(name) is not None and not isinstance(values[name], str):
                raise InvalidRecordError(f"{name} must be a string, got {values[name]!r}"[:200])
        values["usage"] = plain_usage(values["usage"])
        return cls(**values)


def batch_answer(response_ids: Sequence[str], outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """What an immediate ``track_batch()`` returns: the collector's word on each record,
    in the collector's shape, plus the ids in input order."""
    results = [
        result_of(index, rid, outcome)
        for index, (rid, outcome) in enumerate(zip(response_ids, outcomes, strict=True))
    ]
    return {**answer(results)[1], "response_ids": list(response_ids)}


# The AICostManager SDK's CostManager arguments -> our delivery settings (delivery_options).
DELIVERY_ALIASES = {
    "delivery_batch_interval": "batch_interval",
    "delivery_max_batch_size": "batch_size",
    "delivery_timeout": "timeout",
}
# Its delivery_mode picked a blocking or an asyncio HTTP client; ours sends on the engine's
# own thread in either case, so both names are accepted and mean the same.
DELIVERY_MODES = frozenset({"sync", "async"})


def sdk_tracker_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the SDK's ``delivery_*`` names turned into ``delivery_options``."""
    out = dict(kwargs)
    mode = out.pop("delivery_mode", None)
    if mode is not None and mode not in DELIVERY_MODES:
        raise ConfigError(f"delivery_mode must be 'sync' or 'async', got {mode!r}")
    given = {native: out.pop(alias) for alias, native in DELIVERY_ALIASES.items() if alias in out}
    if given:
        options = dict(out.get("delivery_options") or {})
        for native, value in given.items():
            if native in options and options[native] != value:
                raise ConfigError(
                    f"delivery_options[{native!r}]={options[native]!r} and its alias "
                    f"delivery_{'max_batch_size' if native == 'batch_size' else native}="
                    f"{value!r} disagree"
                )
            options[native] = value
        out["delivery_options"] = options
    return out
