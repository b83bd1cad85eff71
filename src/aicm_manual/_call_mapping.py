"""UniversalExtractor: one tracked client call -> the fields of a usage record.

Pure: driven by a :class:`HandlingConfig` (see ``_handling``), it reads the call's
keyword arguments and its response by dotted paths, by key or attribute, so it works on
SDK objects and dicts alike and imports no SDK.

    extractor = UniversalExtractor(handling, "my-api")
    spec = extractor.method("jobs.run")
    fields = extractor.record_fields(spec, extractor.tracking(spec, kwargs, response, now))
    # {"usage": {...}, "service_id": ..., "client_customer_key": ..., ...}

For a method with a ``usage_extractor`` the LLM helpers supply usage, service, response id
and time; the mapping then only adds or overrides the other fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from ._configs.handling import FieldSpec, HandlingConfig, MethodSpec

_SCALARS = (str, int, float, bool, type(None))


def resolve(obj: Any, path: str) -> Any:
    """The value at a dotted ``path`` in ``obj`` ("" is ``obj``): mapping keys, sequence
    indexes (``choices.0.message``) or attributes; None where the path leads nowhere."""
    if not path:
        return obj
    current = obj
    for part in path.split("."):
        if current is None:
            return None
        if isinstance(current, Mapping):
            current = current.get(part)
        elif part.isdigit() and isinstance(current, Sequence) and not isinstance(current, str):
            index = int(part)
            current = current[index] if index < len(current) else None
        else:
            current = getattr(current, part, None)
    return current


def to_data(value: Any) -> Any:
    """JSON-like data for a value taken from an SDK object: pydantic models are dumped
    (None fields left out), containers copied, datetimes as ISO strings."""
    if isinstance(value, _SCALARS):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_data(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_data(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return to_data(dump(mode="json", exclude_none=True))
    return str(value)


class UniversalExtractor:
    """Builds record fields from tracked calls, as a handling config says."""

    def __init__(self, handling: HandlingConfig, config_id: str) -> None:
        self.handling = handling
        self.config_id = config_id
        self.prefixes = handling.prefixes

    def method(self, path: str) -> MethodSpec | None:
        """The spec of a tracked method path (``chat.completions.create``), else None."""
        return self.handling.methods.get(path)

    def leads_to_tracked(self, path: str) -> bool:
        """True for an attribute path on the way to a tracked method (``chat.completions``)."""
        return path in self.prefixes

    def tracking(
        self, spec: MethodSpec, kwargs: Mapping[str, Any], response: Any, when: datetime
    ) -> dict[str, Any]:
        """What the mapping's paths read: request_data, response_data, method, timestamp,
        config_identifier."""
        return {
            "method": spec.method,
            "timestamp": when.isoformat(),
            "config_identifier": self.config_id,
            "request_data": pick(kwargs, spec.request_fields),
            "response_data": pick(response, spec.response_fields),
        }

    def record_fields(self, spec: MethodSpec, tracking: Mapping[str, Any]) -> dict[str, Any]:
        """Apply payload_mapping (values that resolve to None are left out), then
        static_payload_fields (which win)."""
        record: dict[str, Any] = {}
        ordered = sorted(spec.payload_mapping.items(), key=lambda item: "." in item[0])
        for target, path in ordered:
            value = resolve(tracking, path)
            if value is not None:
                _put(record, target, to_data(value))
        for target, value in spec.static_payload_fields.items():
            _put(record, target, to_data(value))
        return record

    def process_call(
        self,
        method: str,
        kwargs: Mapping[str, Any],
        response: Any,
        when: datetime,
    ) -> dict[str, Any] | None:
        """Record fields for one call of ``method``, or None if it is not tracked."""
        spec = self.method(method)
        if spec is None:
            return None
        return self.record_fields(spec, self.tracking(spec, kwargs, response, when))


def pick(source: Any, fields: tuple[FieldSpec, ...]) -> dict[str, Any]:
    out = {}
    for spec in fields:
        value = resolve(source, spec.path)
        if value is not None:
            out[spec.key] = value
    return out


def _put(record: dict[str, Any], target: str, value: Any) -> None:
    head, dot, name = target.partition(".")
    if not dot:
        record[head] = value
        return
    inner = record.get(head)
    if not isinstance(inner, dict):
        inner = record[head] = {}
    inner[name] = value
