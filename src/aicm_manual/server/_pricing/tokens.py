"""LLM token usage, and the models of genai-prices that price it.

The canonical vocabulary follows genai-prices: input_tokens includes cache reads and
writes, output_tokens includes reasoning. genai-prices is imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from genai_prices.types import PriceCalculation

from .exact import NANOS_PER_UNIT, Linear, Tokens, to_nanos

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
MAX_MODELS = 4096
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_INSTALL_HINT = "genai-prices is not installed: pip install 'aicm-manual[llm]'"


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
    """One genai-prices model, priced at a record's own time (and service tier).

    model = GenaiModel.resolve("openai", "gpt-4o")   # or a str saying why it cannot price
    model.nanos((1000, 200, 0, 50, 0))               # tokens in TOKEN_FIELDS order, now
    model.nanos(tokens, at_us=record_us, tier="flex")

    A model whose price never changes takes flat per-token rates worked out once. One whose
    price changes on a date, by time of day or by service tier gets flat rates per price in
    force (read off genai-prices at the record's time), and calc_price where a price is
    tiered by volume.
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
        self.flat: Linear | None = None  # set when the price never changes
        self.dated = False  # the price depends on the time or the tier
        self._info: Any = None  # genai-prices' ModelInfo
        # (the price in force, tier) -> its flat rates, or None where calc_price must run.
        # Keys hold the price object itself, so its id is never reused while cached.
        self._periods: dict[tuple[int, str | None], tuple[object, Linear | None]] = {}

    @classmethod
    def resolve(cls, provider: str, model: str) -> GenaiModel | str:
        """The model, with its fast path when flat-rate, or why it cannot be priced."""
        try:
            import genai_prices
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
        self._info = probe.model
        # A list of prices changes with the date or the time of day; variants with the tier.
        self.dated = isinstance(probe.model.prices, list) or bool(
            getattr(probe.model, "price_variants", None)
        )
        if not self.dated and _is_flat(probe.model_price):
            self.flat = self._flat_rates(None, None)
        return self

    def nanos(
        self,
        tokens: Tokens,
        extras: Mapping[str, int] | None = None,
        at_us: int | None = None,
        tier: str | None = None,
    ) -> int | None:
        """The cost in USD nano-units at ``at_us`` (microseconds since the epoch; None is
        now) for ``tier``; None if genai-prices fails."""
        if not extras:
            if not self.dated:
                if self.flat is not None:
                    return self.flat.of_tokens(tokens)
            else:
                linear = self.rates_at(at_us, tier)
                if linear is not None:
                    return linear.of_tokens(tokens)
        return self.calc_price_nanos(tokens, extras, at_us, tier)

    def calc_price_nanos(
        self,
        tokens: Tokens,
        extras: Mapping[str, int] | None = None,
        at_us: int | None = None,
        tier: str | None = None,
    ) -> int | None:
        """The reference path: genai_prices.calc_price, rounded like the fast path."""
        try:
            when = None if at_us is None else _datetime(at_us)
            return to_nanos(self._calc_price(tokens, extras, when, tier).total_price)
        except (LookupError, ValueError, TypeError, ArithmeticError, OverflowError):
            return None

    def rates_at(self, at_us: int | None, tier: str | None = None) -> Linear | None:
        """The flat per-token rates in force at ``at_us`` for ``tier`` (the fast path), or
        None where the price is tiered by volume and calc_price must run."""
        if not self.dated:
            return self.flat
        when = _datetime(at_us)
        try:
            in_force = self._info.get_prices(when)
        except (LookupError, ValueError, TypeError, ArithmeticError):
            return None
        key = (id(in_force), tier)
        cached = self._periods.get(key)
        if cached is None:
            context = None if tier is None else {"service_tier": tier}
            try:
                prices = self._info.get_prices(when, context)
            except (LookupError, ValueError, TypeError, ArithmeticError):
                return None
            linear = self._flat_rates(when, tier) if _is_flat(prices) else None
            if len(self._periods) >= MAX_MODELS:
                self._periods.clear()
            cached = self._periods[key] = (in_force, linear)
        return cached[1]

    def _calc_price(
        self,
        tokens: Tokens,
        extras: Mapping[str, int] | None = None,
        when: datetime | None = None,
        tier: str | None = None,
    ) -> PriceCalculation:
        from genai_prices import Usage, calc_price

        # Every key is passed, zeros included, so genai-prices never infers a missing one.
        usage = Usage(**dict(zip(_GENAI_KEYS, tokens, strict=True)), **(extras or {}))
        return calc_price(
            usage,
            self.model,
            provider_id=self.provider,
            genai_request_timestamp=when,
            price_context=None if tier is None else {"service_tier": tier},
        )

    def _flat_rates(self, when: datetime | None, tier: str | None) -> Linear | None:
        """Per-token rates read off calc_price, or None if the price is not affine in tokens.

        A flat-rate price is constant + sum(rate * tokens); its rates are differences of
        probes. For cache and reasoning tokens they are relative to the including field
        (gpt-4o: a cache read costs 1.25 - 2.50 = -1.25 USD/MTok on top of its input token).
        """

        def total(tokens: Tokens) -> Fraction:
            return Fraction(self._calc_price(tokens, None, when, tier).total_price)

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


def _is_flat(model_price: object) -> bool:
    """Whether a genai-prices price has no volume tiers (so it is affine in tokens)."""
    from genai_prices.types import TieredPrices

    try:
        return not any(isinstance(p, TieredPrices) for p in vars(model_price).values())
    except TypeError:  # prices no longer kept in __dict__: stay on calc_price
        return False


def _datetime(at_us: int | None) -> datetime:
    if at_us is None:
        return datetime.now(timezone.utc)
    return _EPOCH + timedelta(microseconds=at_us)
