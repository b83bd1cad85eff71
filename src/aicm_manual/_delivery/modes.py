"""The modes: the engine seen through a Tracker's delivery protocol, one tracker each.

    mode = Mode(engine, DeliveryType.MEM_QUEUE, engine.route(target, settings.lane()))
    mode.submit(record, target)        # queue, spool, or send now
    mode.submit_many(records, target)  # one spool transaction / as few requests as allowed
    mode.flush(5)                      # -> this tracker's (endpoint, key) records left
    mode.has_room(10)                  # whether 10 more fit without the on-full policy

The route carries the tracker's own settings (on-full policy, ``on_discard``, retry
budget, timeouts), so trackers sharing the process's engine never share those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from .._protocol import Outcome
from .._records import Target, UsageRecord
from ..errors import DeliveryError
from .queued import Route
from .settings import DeliveryType

if TYPE_CHECKING:
    from .engine import DeliveryEngine


class EngineDelivery(Protocol):
    """What a Tracker needs from delivery beyond ``submit`` and ``flush``."""

    def submit(self, record: UsageRecord, target: Target) -> None: ...

    def submit_many(
        self, records: Sequence[UsageRecord], target: Target
    ) -> list[Outcome] | None: ...

    def flush(self, timeout: float | None = None) -> int: ...

    def has_room(self, records: int = 1) -> bool: ...


class Mode:
    __slots__ = ("_engine", "_route", "delivery_type", "submit")

    def __init__(self, engine: DeliveryEngine, delivery_type: DeliveryType, route: Route) -> None:
        self._engine = engine
        self._route = route
        self.delivery_type = delivery_type
        self.submit: Callable[[UsageRecord, Target], None] = self._submit
        if delivery_type is DeliveryType.PERSISTENT_QUEUE:
            # Rows left by an earlier process start moving as soon as their key is known.
            engine.start_spool()
        elif delivery_type is DeliveryType.MEM_QUEUE:
            # track()'s hot path: one call into the engine, the route already chosen.
            self.submit = engine.submitter(route)

    def _route_of(self, target: Target) -> Route:
        route = self._route
        return route if target is route.target else self._engine.route(target, route.lane)

    def _submit(self, record: UsageRecord, target: Target) -> None:
        kind = self.delivery_type
        if kind is DeliveryType.MEM_QUEUE:
            self._engine.submit_route(record, self._route_of(target))
        elif kind is DeliveryType.PERSISTENT_QUEUE:
            self._engine.submit_durable(record, self._route_of(target))
        else:
            [outcome] = self._engine.send_now([record], self._route_of(target))
            if not outcome.delivered:
                reason = f"{outcome.status}: {'; '.join(outcome.errors) or 'no reason given'}"
                raise DeliveryError(reason, record=record.to_wire(), status=207, permanent=True)

    def submit_many(self, records: Sequence[UsageRecord], target: Target) -> list[Outcome] | None:
        """Outcomes per record for ``immediate``; None for the queued modes."""
        kind = self.delivery_type
        route = self._route_of(target)
        if kind is DeliveryType.IMMEDIATE:
            return self._engine.send_now(records, route)
        if kind is DeliveryType.PERSISTENT_QUEUE:
            self._engine.submit_durable_many(records, route)
            return None
        for record in records:
            self._engine.submit_route(record, route)
        return None

    def flush(self, timeout: float | None = None) -> int:
        return self._engine.flush(timeout, self._route)

    def has_room(self, records: int = 1) -> bool:
        return self._engine.has_room(self.delivery_type, records)

    def stats(self) -> dict[str, Any]:
        """The delivery health (``get_global_delivery_health()``), plus ``total_failed``:
        records rejected by the collector or discarded, the AICostManager SDK's name."""
        health = self._engine.health()
        health["total_failed"] = health["total_rejected"] + health["total_discarded"]
        return health
