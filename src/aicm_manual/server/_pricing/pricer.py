"""The Pricer: which rule prices a (config, service), cached per pair."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from ..._configs.model import GenaiPricesRef, Pricing, Rate, UsageConfig

if TYPE_CHECKING:
    pass

from .exact import NANOS_PER_UNIT, UNPRICED, Linear, Price
from .tokens import MAX_MODELS, GenaiModel, extra_usage, token_usage


@dataclass(frozen=True, slots=True)
class _UnitPlan:
    linear: Linear
    currency: str


_Plan = _UnitPlan | GenaiPricesRef | str  # a str is why the service is unpriced
_UNRESOLVED: Any = object()
_NO_QUOTE = (None, None, None)


class Pricer:
    """Prices records of the given configs; build a new one when the configs change.

    Safe to share between threads: its only mutable state is a cache of resolved models,
    and resolving one twice is harmless.
    """

    def __init__(self, configs: Iterable[UsageConfig]) -> None:
        self._plans: dict[tuple[str, str], _Plan] = {}
        for config in configs:
            for service in config.services:
                where = f"service {service.service_id!r} of config {config.config_id!r}"
                key = (config.config_id, service.service_id)
                self._plans[key] = _plan(service.pricing, where)
        self._models: dict[tuple[str, str], GenaiModel | str] = {}
        # What a (config_id, service_id) prices with, resolved once: "vendor::*" services
        # need a model lookup per service id, which would otherwise run per record.
        self._targets: dict[tuple[str, str], _UnitPlan | GenaiModel | None] = {}

    def warm_up(self) -> None:
        """Resolve every model a config names, now rather than on its first record: the
        first import of genai-prices and a model's flat rates would stall one request."""
        for (config_id, service_id), plan in self._plans.items():
            if isinstance(plan, GenaiPricesRef) and plan.model is not None:
                self._target((config_id, service_id))

    def _plan_for(self, config_id: str, service_id: str) -> _Plan | None:
        plan = self._plans.get((config_id, service_id))
        if plan is None:
            vendor, sep, _ = service_id.partition("::")
            if sep:
                plan = self._plans.get((config_id, f"{vendor}::*"))
        return plan

    def price(self, config_id: str, service_id: str, usage: Mapping[str, Any]) -> Price:
        """The cost of one record's usage; ``UNPRICED`` when it cannot be priced."""
        nanos, currency, source = self.quote(config_id, service_id, usage)
        return UNPRICED if nanos is None else Price(nanos, currency, source)

    def quote(
        self, config_id: str, service_id: str, usage: Mapping[str, Any]
    ) -> tuple[int | None, str | None, str | None]:
        """``price`` as a plain (cost_nanos, currency, source): the collector's per-record
        call, without building a frozen Price."""
        key = (config_id, service_id)
        target = self._targets.get(key, _UNRESOLVED)
        if target is _UNRESOLVED:
            target = self._target(key)
        if type(target) is GenaiModel:
            tokens = token_usage(usage)
            if tokens is not None:
                extras = extra_usage(usage)
                if extras is None:
                    return _NO_QUOTE
                nanos = target.calc_price_nanos(tokens, extras) if extras else target.nanos(tokens)
                if nanos is not None:
                    return nanos, "USD", target.source
        elif type(target) is _UnitPlan:
            nanos = target.linear.of_usage(usage)
            if nanos is not None:
                return nanos, target.currency, "unit"
        return _NO_QUOTE

    def _target(self, key: tuple[str, str]) -> _UnitPlan | GenaiModel | None:
        plan = self._plan_for(*key)
        target: _UnitPlan | GenaiModel | None = None
        if isinstance(plan, _UnitPlan):
            target = plan
        elif isinstance(plan, GenaiPricesRef):
            model = self._model(plan.provider, plan.model_for(key[1]))
            target = None if isinstance(model, str) else model
        if len(self._targets) >= MAX_MODELS:
            self._targets.clear()
        self._targets[key] = target
        return target

    def unpriced_reason(self, config_id: str, service_id: str) -> str | None:
        """Why every record of this service is unpriced, or None if it has a usable price.

        A priced service can still leave a record unpriced when its usage is unusable.
        """
        plan = self._plan_for(config_id, service_id)
        if plan is None:
            return f"no config {config_id!r} with a service {service_id!r}"
        if isinstance(plan, GenaiPricesRef):
            model = self._model(plan.provider, plan.model_for(service_id))
            return model if isinstance(model, str) else None
        return plan if isinstance(plan, str) else None

    def _model(self, provider: str, name: str) -> GenaiModel | str:
        model = self._models.get((provider, name))
        if model is None:
            # "vendor::*" services let clients name any model: keep the cache bounded.
            if len(self._models) >= MAX_MODELS:
                self._models.clear()
            model = self._models[(provider, name)] = GenaiModel.resolve(provider, name)
        return model


def _plan(pricing: Pricing | None, where: str) -> _Plan:
    if pricing is None:
        return f"{where} has no pricing"
    if pricing.genai_prices is not None:
        return pricing.genai_prices
    return _UnitPlan(_unit_rates(pricing.unit), pricing.currency)


def _unit_rates(rates: Mapping[str, Rate]) -> Linear:
    return Linear.from_rates(
        {name: Fraction(rate.price) * NANOS_PER_UNIT / rate.per for name, rate in rates.items()}
    )
