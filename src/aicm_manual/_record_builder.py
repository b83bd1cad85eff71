"""Building a usage record on the caller's thread: route, copies, anonymisation, checks.

    builder = RecordBuilder(routes, config_id, service_id, anonymize_fields, anonymizer)
    record = builder.build(usage, service_id=None, config_id=None, ...)   # a UsageRecord

The Tracker's ``track()`` and ``track_batch()`` both go through ``build``; the positional
forms (``track("openai::gpt-4o", usage)``, ``track("openai", "gpt-4o", usage)``) are
turned into (usage, service_id) by ``seed_form``. No I/O once a service's route is known.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from ._anonymize import Anonymizer, default_anonymizer, field_set, scrub
from ._batch_input import plain_usage
from ._configs.routing import Route, Routes
from ._ids import new_response_id
from ._records import UsageRecord, check_id, copy_value, normalise_timestamp
from .errors import InvalidRecordError, UsageValidationError


class RecordBuilder:
    """Turns a tracker's call into a record: its defaults, routes and anonymisation."""

    def __init__(
        self,
        routes: Routes,
        config_id: str | None,
        service_id: str | None,
        anonymize_fields: Iterable[str] | None,
        anonymizer: Anonymizer | None,
    ) -> None:
        self._routes = routes
        self.service_id = service_id
        # The route of records that name neither service nor config (found once, up front).
        self._default = None if service_id is None else self._route(config_id, service_id)
        self.anon_fields = field_set(anonymize_fields)
        self.anonymizer = anonymizer or default_anonymizer
        self._customer_key: str | None = None
        self._context: dict[str, Any] | None = None

    @property
    def customer_key(self) -> str | None:
        return self._customer_key

    def set_customer_key(self, client_customer_key: str | None) -> None:
        if client_customer_key is not None:
            check_id("client_customer_key", client_customer_key)
        self._customer_key = client_customer_key

    def set_context(self, context: Mapping[str, Any] | None) -> None:
        if context is not None and not isinstance(context, Mapping):
            raise InvalidRecordError(f"context must be a mapping, got {type(context).__name__}")
        self._context = None if context is None else copy_value(dict(context))

    def anonymisation(
        self, fields: Iterable[str] | None, anonymizer: Anonymizer | None
    ) -> tuple[frozenset[str], Anonymizer] | None:
        """The tracker's anonymisation widened for one batch (None: the tracker's own)."""
        if fields is None and anonymizer is None:
            return None
        return self.anon_fields | field_set(fields), anonymizer or self.anonymizer

    def build(
        self,
        usage: Any,
        service_id: str | None,
        config_id: str | None,
        customer: str | None,
        context: Mapping[str, Any] | None,
        response_id: str | None,
        timestamp: datetime | str | None,
        anon: tuple[frozenset[str], Anonymizer] | None = None,
    ) -> UsageRecord:
        if type(usage) is not dict:
            usage = plain_usage(usage)  # a pydantic model instance is its model_dump
        if service_id is None and config_id is None:
            route = self._default
            if route is None:
                raise InvalidRecordError(
                    "service_id is required: this tracker has no default service "
                    "(pass service_id=..., or track('vendor', 'service', usage))"
                )
        else:
            route = self._route(config_id, service_id)
        fields, anonymizer = anon or (self.anon_fields, self.anonymizer)
        # The record owns copies of usage and context; each is copied once, and the
        # tracker's default context (copied by set_context, replaced, never changed) not
        # at all.
        owned_usage = False
        own_context: dict[str, Any] | None
        if context is None:
            own_context = self._context
        elif not isinstance(context, Mapping):
            raise InvalidRecordError(f"context must be a mapping, got {type(context).__name__}")
        else:
            own_context = _copied(context)
        if fields:
            if isinstance(usage, Mapping):
                usage = scrub(_copied(usage), fields, anonymizer)
                owned_usage = True
            if own_context is not None:
                own_context = scrub(copy_value(own_context), fields, anonymizer)
        if route.validate is not None:
            route.validate(usage)
        elif not isinstance(usage, Mapping):
            raise UsageValidationError(
                {"<payload>": [f"usage must be a mapping, got {type(usage).__name__}"]}
            )
        if response_id is None:
            response_id = new_response_id()
        else:
            check_id("response_id", response_id)
        if customer is None:
            customer = self._customer_key
        else:
            check_id("client_customer_key", customer)
        return UsageRecord(
            route.config_id,
            route.service_id,
            response_id,
            normalise_timestamp(timestamp),
            usage if owned_usage else _copied(usage),
            customer,
            own_context,
            timestamp is None,
        )

    def _route(self, config_id: str | None, service_id: str | None) -> Route:
        if service_id is None:
            service_id = self.service_id
            if service_id is None:
                raise InvalidRecordError(
                    f"service_id is required for records of config {config_id!r}: "
                    "this tracker has no default service"
                )
        return self._routes.get(config_id, service_id)


def _copied(usage: Mapping[str, Any]) -> dict[str, Any]:
    return copy_value(usage if type(usage) is dict else dict(usage))  # type: ignore[no-any-return]


def alias(name: str, value: Any, alias_value: Any) -> Any:
    """``value`` given under its name or its SDK alias; both at once must agree."""
    if value is not None and value != alias_value:
        raise InvalidRecordError(f"{name}={value!r} and its alias disagree ({alias_value!r})"[:300])
    return alias_value


def seed_form(first: Any, second: Any, third: Any, service_id: str | None) -> tuple[Any, str]:
    """(usage, service_id) from ``track("openai::gpt-4o", usage)`` or
    ``track("openai", "gpt-4o", usage)``."""
    if service_id is not None:
        raise InvalidRecordError("service_id= given twice: positionally and as a keyword")
    if third is None:
        if not isinstance(first, str):
            raise InvalidRecordError(
                f"track(service_id, usage): service_id must be a string, got {first!r}"[:200]
            )
        return second, first
    if not isinstance(first, str) or not isinstance(second, str):
        raise InvalidRecordError(
            f"track(vendor, service, usage): vendor and service must be strings, "
            f"got {first!r} and {second!r}"[:200]
        )
    if not first or not second or "::" in first:
        raise InvalidRecordError(
            f"track(vendor, service, usage): got vendor {first!r} and service {second!r}"
        )
    return third, f"{first}::{second}"
