"""The Pricer: what prices a record, at the record's own time.

In order: the tenant's price rule for the service in force at the record's timestamp (an
exact service id before its ``vendor::*``), else the pricing of the record's config, else
nothing (the record is stored unpriced, with the reason ``explain`` gives).

    pricer = Pricer(configs)
    pricer.set_rules([PriceRule(7, "tenant-a", "openai::*", effective_from_us, pricing)])
    pricer.quote("llm", "openai::gpt-4o", usage, timestamp_us, "tenant-a")
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

from ..._configs.model import GenaiPricesRef, Pricing, Rate, UsageConfig
from .exact import NANOS_PER_UNIT, UNPRICED, Linear, Price
from .tokens import MAX_MODELS, GenaiModel, extra_usage, token_usage


class PricerLike(Protocol):
    def quote(
        self,
        config_id: str | None,
        service_id: str,
        usage: Mapping[str, Any],
        timestamp_us: int | None = None,
        tenant: str | None = None,
    ) -> tuple[int | None, str | None, str | None]:
        """(cost_nanos, currency, source) of one record at its time, for its tenant; all
        None when it is unpriced."""
        ...

    def explain(
        self,
        config_id: str | None,
        service_id: str,
        usage: Mapping[str, Any],
        timestamp_us: int | None = None,
        tenant: str | None = None,
    ) -> str:
        """Why ``quote`` leaves the record unpriced."""
        ...


@dataclass(frozen=True, slots=True)
class _UnitPlan:
    linear: Linear
    currency: str


@dataclass(frozen=True, slots=True)
class PriceRule:
    """A tenant's price for a service (exact, or ``vendor::*``) from a moment on."""

    rule_id: int
    tenant: str
    service_id: str
    effective_from_us: int
    pricing: Pricing


_Plan = _UnitPlan | GenaiPricesRef | str  # a str is why the service is unpriced
_Target = _UnitPlan | GenaiModel | None
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
        self._targets: dict[tuple[str, str], _Target] = {}
        # tenant -> service id -> [(effective_from_us, rule_id, plan)] sorted by time.
        self._rules: dict[str, dict[str, list[tuple[int, int, _Plan]]]] = {}
        self._rules_lock = threading.Lock()
        # (tenant, service id) -> the rule in force from each effective date, resolved.
        self._timelines: dict[
            tuple[str, str], tuple[list[int], list[tuple[int, _Target] | None]]
        ] = {}

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
        self,
        config_id: str | None,
        service_id: str,
        usage: Mapping[str, Any],
        timestamp_us: int | None = None,
        tenant: str | None = None,
    ) -> tuple[int | None, str | None, str | None]:
        """``price`` as a plain (cost_nanos, currency, source): the collector's per-record
        call, without building a frozen Price. ``timestamp_us`` is the record's time (None:
        now); ``tenant`` selects its price rules."""
        if tenant is not None and tenant in self._rules:
            found = self._rule_at(tenant, service_id, timestamp_us)
            if found is not None:
                rule_id, target = found
                nanos, currency, source = self._apply(target, usage, timestamp_us)
                if nanos is None:
                    return _NO_QUOTE
                return nanos, currency, f"rule {rule_id}: {source}"
        if config_id is None:
            return _NO_QUOTE
        key = (config_id, service_id)
        target = self._targets.get(key, _UNRESOLVED)
        if target is _UNRESOLVED:
            target = self._target(key)
        return self._apply(target, usage, timestamp_us)

    def _apply(
        self, target: _Target, usage: Mapping[str, Any], timestamp_us: int | None
    ) -> tuple[int | None, str | None, str | None]:
        if type(target) is GenaiModel:
            tokens = token_usage(usage)
            if tokens is not None:
                extras = extra_usage(usage)
                if extras is None:
                    return _NO_QUOTE
                tier = usage.get("service_tier")
                if tier is not None and type(tier) is not str:
                    return _NO_QUOTE
                nanos = target.nanos(tokens, extras, timestamp_us, tier)
                if nanos is not None:
                    return nanos, "USD", target.source
        elif type(target) is _UnitPlan:
            nanos = target.linear.of_usage(usage)
            if nanos is not None:
                return nanos, target.currency, "unit"
        return _NO_QUOTE

    # -- tenant price rules ----------------------------------------------------------------

    def set_rules(self, rules: Iterable[PriceRule], tenant: str | None = None) -> None:
        """Replace the price rules (of ``tenant`` only, when given): what is resolved from
        them is dropped for that tenant alone."""
        timelines: dict[str, dict[str, list[tuple[int, int, _Plan]]]] = {}
        for rule in rules:
            if tenant is not None and rule.tenant != tenant:
                raise ValueError(f"rule {rule.rule_id} is for tenant {rule.tenant!r}")
            where = f"price rule {rule.rule_id} for {rule.service_id!r}"
            line = timelines.setdefault(rule.tenant, {}).setdefault(rule.service_id, [])
            line.append((rule.effective_from_us, rule.rule_id, _plan(rule.pricing, where)))
        for services in timelines.values():
            for line in services.values():
                line.sort(key=lambda entry: (entry[0], entry[1]))
        with self._rules_lock:
            rules_now = dict(self._rules) if tenant is not None else {}
            if tenant is not None:
                rules_now.pop(tenant, None)
            rules_now.update(timelines)
            self._rules = rules_now  # replaced whole: readers never see half an update
            # Only what the change affects is resolved again: that tenant's, or everyone's.
            self._timelines = (
                {k: v for k, v in self._timelines.items() if k[0] != tenant}
                if tenant is not None
                else {}
            )

    def _rule_at(
        self, tenant: str, service_id: str, timestamp_us: int | None
    ) -> tuple[int, _Target] | None:
        """The rule in force for the service at the time: an exact service id first, then
        its ``vendor::*``; None when neither has a rule in force then."""
        at = _now_us() if timestamp_us is None else timestamp_us
        timelines = self._timelines
        line = timelines.get((tenant, service_id))
        if line is None:
            line = self._timeline(tenant, service_id)
            if len(timelines) >= MAX_MODELS:
                timelines.clear()
            timelines[(tenant, service_id)] = line
        starts, rules = line
        index = bisect.bisect_right(starts, at) - 1
        return None if index < 0 else rules[index]

    def _timeline(
        self, tenant: str, service_id: str
    ) -> tuple[list[int], list[tuple[int, _Target] | None]]:
        """From each moment a rule of the service takes effect: the rule in force then
        (exact before ``vendor::*``), its target resolved once."""
        services = self._rules.get(tenant, {})
        exact = services.get(service_id, [])
        vendor, sep, _ = service_id.partition("::")
        pattern = services.get(f"{vendor}::*", []) if sep else []
        starts = sorted({entry[0] for entry in exact} | {entry[0] for entry in pattern})
        rules: list[tuple[int, _Target] | None] = []
        for start in starts:
            chosen = None
            for line in (exact, pattern):
                in_force = [entry for entry in line if entry[0] <= start]
                if in_force:
                    _, rule_id, plan = in_force[-1]
                    chosen = (rule_id, self._resolve(plan, service_id))
                    break
            rules.append(chosen)
        return starts, rules

    def _target(self, key: tuple[str, str]) -> _Target:
        target = self._resolve(self._plan_for(*key), key[1])
        if len(self._targets) >= MAX_MODELS:
            self._targets.clear()
        self._targets[key] = target
        return target

    def _resolve(self, plan: _Plan | None, service_id: str) -> _Target:
        if isinstance(plan, _UnitPlan):
            return plan
        if isinstance(plan, GenaiPricesRef):
            model = self._model(plan.provider, plan.model_for(service_id))
            return None if isinstance(model, str) else model
        return None

    def explain(
        self,
        config_id: str | None,
        service_id: str,
        usage: Mapping[str, Any],
        timestamp_us: int | None = None,
        tenant: str | None = None,
    ) -> str:
        """Why ``quote`` leaves this record unpriced, in words for the unpriced report."""
        target: _Target
        found = None
        if tenant is not None and tenant in self._rules:
            found = self._rule_at(tenant, service_id, timestamp_us)
        if found is not None:
            target = found[1]
            if target is None:
                return f"price rule {found[0]} names a model genai-prices cannot price"
        elif config_id is None:
            return "no config lists the service and no price rule applies"
        else:
            reason = self.unpriced_reason(config_id, service_id)
            if reason is not None:
                return reason
            target = self._target((config_id, service_id))
        if type(target) is GenaiModel:
            if token_usage(usage) is None:
                return "token counts are not non-negative integers, or do not add up"
            if extra_usage(usage) is None:
                return "an audio, cache or web-search count is not a non-negative integer"
            if usage.get("service_tier") is not None and type(usage["service_tier"]) is not str:
                return "service_tier is not a string"
            return f"{target.source} could not price this usage"
        return "a priced usage field is negative or not a number"

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


def _now_us() -> int:
    return time.time_ns() // 1000
