"""Price one usage record: an exact integer of nano-units, or unpriced.

    pricer = Pricer(configs)
    pricer.price("heygen", "heygen::streaming-avatar", {"duration": 12.3})
    # Price(cost_nanos=20500000, currency='USD', source='unit')

Two kinds of pricing (docs/pricing.md):

- ``unit``: cost = sum of usage[field] * price / per over the priced fields, in the
  config's currency. A missing or ``None`` field counts as 0.
- ``genai_prices``: LLM token usage priced in USD with the bundled data of the
  ``genai-prices`` package (the ``llm`` extra), imported on first use, never updated from
  the network. Flat-rate models go through per-token rates worked out once per model; tiered
  and date- or time-dependent prices go through ``genai_prices.calc_price`` every time.

Amounts are exact rationals until one final rounding, half to even, to whole nano-units
(1e-9 of the currency). Prices are Decimals, and a float usage value counts as its shortest
repr (12.3 is 12.3, not 12.3000000000000007...). Pure: no I/O, no threads.

A record that cannot be priced gets ``UNPRICED`` and is stored without a cost, never
rejected: unknown config or service, no pricing, a value that is not a non-negative number
(bool is not a number), inconsistent token counts, a model genai-prices does not know, or
genai-prices not installed. ``Pricer.unpriced_reason`` says why for a service.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

from .._configs.model import GenaiPricesRef, Pricing, Rate, UsageConfig

if TYPE_CHECKING:
    from genai_prices.types import PriceCalculation

NANOS_PER_UNIT = 10**9

# The canonical token vocabulary, genai-prices semantics: input_tokens includes cache reads
# and cache writes, output_tokens includes reasoning.
TOKEN_FIELDS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
)
# Read only when the canonical field is absent or None. OpenAI's cached_input_tokens are
# cache reads and, like cache_read_tokens, are included in input_tokens.
TOKEN_ALIASES: Mapping[str, str] = {"cache_read_tokens": "cached_input_tokens"}
# Counts genai-prices prices apart from the five above (same names as genai-prices'; each
# is part of the count it refines: audio input of input_tokens, 1-hour cache writes of
# cache_write_tokens ...). A record carrying any goes the calc_price way, never the
# flat-rate fast path, which knows only the five.
EXTRA_FIELDS = (
    "cache_write_1h_tokens",
    "input_audio_tokens",
    "cache_audio_read_tokens",
    "output_audio_tokens",
    "web_searches",
)
# Our names for genai-prices' usage keys, in TOKEN_FIELDS order.
_GENAI_KEYS = (
    "input_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "output_tokens",
    "output_reasoning_tokens",
)
_MAX_MODELS = 4096
_INSTALL_HINT = "genai-prices is not installed: pip install 'aicm-manual[llm]'"

Tokens = tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class Price:
    """A record's cost in nano-units of ``currency``, or all None when it is unpriced."""

    cost_nanos: int | None
    currency: str | None
    source: str | None

    @property
    def priced(self) -> bool:
        return self.cost_nanos is not None


UNPRICED = Price(None, None, None)


def round_half_even(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` (denominator > 0) rounded to an integer, ties to even."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient


def to_nanos(amount: Decimal) -> int:
    """A finite amount of currency as nano-units, rounded once, half to even."""
    numerator, denominator = amount.as_integer_ratio()
    return round_half_even(numerator * NANOS_PER_UNIT, denominator)


def exact(value: object) -> tuple[int, int] | None:
    """A usage value as an exact (numerator, denominator), or None if it cannot be priced."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (int(value), 1) if value >= 0 else None
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            return None
        # The shortest repr is what the sender wrote; the binary value of 12.3 is not.
        value = Decimal(repr(value))
    if isinstance(value, Decimal) and value.is_finite() and value >= 0:
        return value.as_integer_ratio()
    return None


@dataclass(frozen=True, slots=True)
class Linear:
    """cost_nanos = round_half_even((constant + sum(value[f] * factor[f])) / denominator).

    Rates are kept as integers over one common denominator, so pricing a record of integer
    usage is a few integer multiplications and one division.
    """

    fields: tuple[str, ...]
    factors: tuple[int, ...]
    constant: int
    denominator: int

    @classmethod
    def from_rates(cls, rates: Mapping[str, Fraction], constant: Fraction = Fraction()) -> Linear:
        """``rates``: nano-units per unit of each field; ``constant``: nano-units per record."""
        denominator = math.lcm(constant.denominator, *(r.denominator for r in rates.values()))
        return cls(
            fields=tuple(rates),
            factors=tuple(int(r * denominator) for r in rates.values()),
            constant=int(constant * denominator),
            denominator=denominator,
        )

    def of_usage(self, usage: Mapping[str, Any]) -> int | None:
        """Price any numeric usage values (missing or None is 0); None if one is unusable."""
        numerator, scale = self.constant, 1
        for name, factor in zip(self.fields, self.factors, strict=True):
            value = usage.get(name)
            if value is None:
                continue
            if type(value) is int and value >= 0:
                numerator += value * factor * scale
                continue
            ratio = exact(value)
            if ratio is None:
                return None
            top, bottom = ratio
            numerator = numerator * bottom + top * factor * scale
            scale *= bottom
        return round_half_even(numerator, scale * self.denominator)

    def of_tokens(self, tokens: Tokens) -> int:
        """Price checked token counts, in TOKEN_FIELDS order."""
        a, b, c, d, e = self.factors  # one per token field, unrolled: this runs per record
        total = self.constant + tokens[0] * a + tokens[1] * b + tokens[2] * c
        return round_half_even(total + tokens[3] * d + tokens[4] * e, self.denominator)


def extra_usage(usage: Mapping[str, Any]) -> dict[str, int] | None:
    """The non-zero EXTRA_FIELDS counts of a record ({} for most records), or None when one
    is not a non-negative int."""
    extras: dict[str, int] = {}
    for name in EXTRA_FIELDS:
        value = usage.get(name)
        if value is None or value == 0:
            continue
        if type(value) is not int or value < 0:
            return None
        extras[name] = value
    return extras


def token_usage(usage: Mapping[str, Any]) -> Tokens | None:
    """The canonical token counts of a record (missing or None is 0), or None when they
    cannot be priced: not a non-negative int, or cache reads + writes above input_tokens,
    or reasoning_tokens above output_tokens."""
    get = usage.get
    read = get("cache_read_tokens")
    if read is None:
        read = get(TOKEN_ALIASES["cache_read_tokens"])
    counts = (
        _count(get("input_tokens")),
        _count(read),
        _count(get("cache_write_tokens")),
        _count(get("output_tokens")),
        _count(get("reasoning_tokens")),
    )
    input_tokens, cache_read, cache_write, output_tokens, reasoning = counts
    if (
        input_tokens < 0
        or cache_read < 0
        or cache_write < 0
        or output_tokens < 0
        or reasoning < 0
        or cache_read + cache_write > input_tokens
        or reasoning > output_tokens
    ):
        return None
    return counts


def _count(value: object) -> int:
    """A token count, or -1 when it is not a non-negative int (None counts as 0)."""
    if type(value) is int:
        return value if value >= 0 else -1
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        return -1
    return int(value) if value >= 0 else -1


class GenaiModel:
    """One genai-prices model: flat per-token rates when its prices allow, else calc_price.

    model = GenaiModel.resolve("openai", "gpt-4o")   # or a str saying why it cannot price
    model.nanos((1000, 200, 0, 50, 0))               # tokens in TOKEN_FIELDS order
    """

    # Probes that pin down an affine price exactly, then usages that must agree with it.
    _ZERO: Tokens = (0, 0, 0, 0, 0)
    _CHECKS: tuple[Tokens, ...] = (
        (1_000_003, 333_331, 4_441, 98_765, 4_321),
        (7, 3, 4, 5, 5),
        (10**9, 0, 10**9, 10**9, 0),
    )

    def __init__(self, provider: str, model: str, version: str) -> None:
        self.provider = provider
        self.model = model
        self.source = f"genai-prices {version} {provider}/{model}"
        self.flat: Linear | None = None

    @classmethod
    def resolve(cls, provider: str, model: str) -> GenaiModel | str:
        """The model, with its fast path when flat-rate, or why it cannot be priced."""
        try:
            import genai_prices
            from genai_prices.types import TieredPrices
        except ImportError:
            return _INSTALL_HINT
        version = genai_prices.__version__
        self = cls(provider, model, version)
        try:
            probe = self._calc_price(cls._ZERO)
        except LookupError as exc:
            return f"genai-prices {version} has no price for {provider}/{model}: {exc}"
        except (ValueError, TypeError, ArithmeticError) as exc:
            return f"genai-prices {version} cannot price {provider}/{model}: {exc}"
        try:
            # A list of prices changes with the date or the time of day.
            flat = not isinstance(probe.model.prices, list) and not any(
                isinstance(p, TieredPrices) for p in vars(probe.model_price).values()
            )
        except TypeError:  # prices no longer kept in __dict__: stay on calc_price
            flat = False
        if flat:
            self.flat = self._flat_rates()
        return self

    def nanos(self, tokens: Tokens) -> int | None:
        """The cost of checked token counts in USD nano-units; None if genai-prices fails."""
        if self.flat is not None:
            return self.flat.of_tokens(tokens)
        return self.calc_price_nanos(tokens)

    def calc_price_nanos(
        self, tokens: Tokens, extras: Mapping[str, int] | None = None
    ) -> int | None:
        """The reference path: genai_prices.calc_price, rounded like the fast path."""
        try:
            return to_nanos(self._calc_price(tokens, extras).total_price)
        except (LookupError, ValueError, TypeError, ArithmeticError):
            return None

    def _calc_price(
        self, tokens: Tokens, extras: Mapping[str, int] | None = None
    ) -> PriceCalculation:
        from genai_prices import Usage, calc_price

        # Every key is passed, zeros included, so genai-prices never infers a missing one.
        usage = Usage(**dict(zip(_GENAI_KEYS, tokens, strict=True)), **(extras or {}))
        return calc_price(usage, self.model, provider_id=self.provider)

    def _flat_rates(self) -> Linear | None:
        """Per-token rates read off calc_price, or None if the price is not affine in tokens.

        A flat-rate price is constant + sum(rate * tokens); its rates are differences of
        probes. For cache and reasoning tokens they are relative to the including field
        (gpt-4o: a cache read costs 1.25 - 2.50 = -1.25 USD/MTok on top of its input token).
        """

        def total(tokens: Tokens) -> Fraction:
            return Fraction(self._calc_price(tokens).total_price)

        try:
            base = total(self._ZERO)
            one_input, one_output = total((1, 0, 0, 0, 0)), total((0, 0, 0, 1, 0))
            rates = {
                "input_tokens": one_input - base,
                "cache_read_tokens": total((1, 1, 0, 0, 0)) - one_input,
                "cache_write_tokens": total((1, 0, 1, 0, 0)) - one_input,
                "output_tokens": one_output - base,
                "reasoning_tokens": total((0, 0, 0, 1, 1)) - one_output,
            }
            scale = NANOS_PER_UNIT
            linear = Linear.from_rates({k: v * scale for k, v in rates.items()}, base * scale)
            for tokens in self._CHECKS:
                expected = total(tokens) * scale * linear.denominator
                got = linear.constant + sum(
                    v * f for v, f in zip(tokens, linear.factors, strict=True)
                )
                if got != expected:
                    return None
        except (LookupError, ValueError, TypeError, ArithmeticError):
            return None
        return linear


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
        if len(self._targets) >= _MAX_MODELS:
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
            if len(self._models) >= _MAX_MODELS:
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
