"""Pricing: exact nano-units, unpriced records, and the genai-prices fast path's parity."""

from __future__ import annotations

import itertools
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from aicm_manual import DirectoryConfigSource, UsageConfig
from aicm_manual.server._pricing import (
    UNPRICED,
    GenaiModel,
    Price,
    Pricer,
    Tokens,
    round_half_even,
    to_nanos,
    token_usage,
)

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def config(schema: dict[str, str], pricing: dict[str, Any] | None) -> UsageConfig:
    service: dict[str, Any] = {"service_id": "svc"}
    if pricing is not None:
        service["pricing"] = pricing
    data = {"config_id": "cfg", "manual_usage_schema": schema, "services": [service]}
    return UsageConfig.from_dict(data, source="<test>")


def unit_pricer(schema: dict[str, str], unit: dict[str, Any], currency: str = "USD") -> Pricer:
    return Pricer([config(schema, {"currency": currency, "unit": unit})])


def genai_pricer(provider: str, model: str) -> Pricer:
    ref = {"provider": provider, "model": model}
    return Pricer([config({"input_tokens": "int"}, {"genai_prices": ref})])


def genai_version() -> str:
    genai_prices = pytest.importorskip("genai_prices")
    return str(genai_prices.__version__)


def calc_price_nanos(provider: str, model: str, tokens: Tokens) -> int:
    """The reference, straight from genai-prices, rounded the documented way."""
    from genai_prices import Usage, calc_price

    keys = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens")
    usage = Usage(**dict(zip(keys, tokens[:4], strict=True)), output_reasoning_tokens=tokens[4])
    return to_nanos(calc_price(usage, model, provider_id=provider).total_price)


# --- unit pricing -----------------------------------------------------------------------


def test_float_duration_is_priced_at_its_decimal_value() -> None:
    """12.3 s at 0.10 per 60 s is exactly 0.0205 USD, though 12.3 is inexact in binary."""
    pricer = unit_pricer({"duration": "float"}, {"duration": {"price": "0.10", "per": 60}})
    price = pricer.price("cfg", "svc", {"duration": 12.3})
    assert price == Price(20_500_000, "USD", "unit")
    assert price.priced


def test_many_small_float_values_sum_without_float_error() -> None:
    """Ten fields of 0.1 at 0.1 each cost exactly 0.1 (float arithmetic gives 0.0999...)."""
    fields = [f"f{i}" for i in range(10)]
    pricer = unit_pricer(
        {f: "float" for f in fields}, {f: {"price": "0.1", "per": 1} for f in fields}
    )
    assert sum(0.1 * 0.1 for _ in fields) != 0.1
    assert pricer.price("cfg", "svc", dict.fromkeys(fields, 0.1)).cost_nanos == 100_000_000


def test_huge_integer_usage_stays_exact() -> None:
    pricer = unit_pricer({"calls": "int"}, {"calls": {"price": "0.000000001"}})
    assert pricer.price("cfg", "svc", {"calls": 10**40 + 1}).cost_nanos == 10**40 + 1


@pytest.mark.parametrize(
    ("calls", "nanos"), [(0, 0), (1, 0), (2, 1), (3, 2), (5, 2), (7, 4), (9, 4)]
)
def test_half_a_nano_rounds_half_to_even(calls: int, nanos: int) -> None:
    pricer = unit_pricer({"calls": "int"}, {"calls": {"price": "0.0000000005"}})
    assert pricer.price("cfg", "svc", {"calls": calls}).cost_nanos == nanos


def test_rounding_happens_once_for_the_whole_record() -> None:
    """Two half-nano terms make one nano; rounding each term first would give 0."""
    pricer = unit_pricer(
        {"a": "int", "b": "int"},
        {"a": {"price": "0.0000000005"}, "b": {"price": "0.0000000005"}},
    )
    assert pricer.price("cfg", "svc", {"a": 1, "b": 1}).cost_nanos == 1


def test_repeating_fraction_rounds_to_nearest_nano() -> None:
    """1 s at 0.10 per 60 s is 0.001666... USD."""
    pricer = unit_pricer({"duration": "float"}, {"duration": {"price": "0.10", "per": 60}})
    assert pricer.price("cfg", "svc", {"duration": 1}).cost_nanos == 1_666_667
    assert pricer.price("cfg", "svc", {"duration": 0.3}).cost_nanos == 500_000


def test_decimal_usage_values_are_accepted() -> None:
    pricer = unit_pricer({"duration": "float"}, {"duration": {"price": "0.10", "per": 60}})
    assert pricer.price("cfg", "svc", {"duration": Decimal("12.3")}).cost_nanos == 20_500_000


@pytest.mark.parametrize("usage", [{}, {"cached": None}, {"other": "ignored", "cached": None}])
def test_missing_or_none_optional_fields_count_as_zero(usage: dict[str, Any]) -> None:
    pricer = unit_pricer(
        {"tokens": "int", "cached": "Optional[int]", "other": "Optional[str]"},
        {"tokens": {"price": "2", "per": 1000}, "cached": {"price": "1", "per": 1000}},
    )
    assert pricer.price("cfg", "svc", {"tokens": 3, **usage}).cost_nanos == 6_000_000


def test_unit_price_uses_the_config_currency() -> None:
    pricer = unit_pricer({"calls": "int"}, {"calls": {"price": "0.002"}}, currency="EUR")
    assert pricer.price("cfg", "svc", {"calls": 3}) == Price(6_000_000, "EUR", "unit")


@pytest.mark.parametrize(
    "value", [-1, -0.5, True, False, "3", float("nan"), float("inf"), Decimal("NaN"), [1], {}]
)
def test_unusable_unit_value_leaves_the_record_unpriced(value: object) -> None:
    pricer = unit_pricer({"n": "float"}, {"n": {"price": "1"}})
    price = pricer.price("cfg", "svc", {"n": value})
    assert price == UNPRICED
    assert not price.priced


def test_unknown_config_or_service_or_no_pricing_is_unpriced() -> None:
    pricer = Pricer([config({"n": "int"}, None)])
    assert pricer.price("nope", "svc", {"n": 1}) == UNPRICED
    assert pricer.price("cfg", "nope", {"n": 1}) == UNPRICED
    assert pricer.price("cfg", "svc", {"n": 1}) == UNPRICED
    assert pricer.unpriced_reason("cfg", "svc") == "service 'svc' of config 'cfg' has no pricing"
    assert pricer.unpriced_reason("nope", "svc") == "no config 'nope' with a service 'svc'"


def test_round_half_even_and_to_nanos() -> None:
    assert [round_half_even(n, 2) for n in (-3, -1, 1, 3, 5)] == [-2, 0, 0, 2, 2]
    assert to_nanos(Decimal("0.0000000025")) == 2
    assert to_nanos(Decimal("0.0000000035")) == 4
    assert to_nanos(Decimal("1.5E-9")) == 2
    assert to_nanos(Decimal("12")) == 12_000_000_000


# --- the token vocabulary ------------------------------------------------------------------


def test_token_usage_maps_cached_input_tokens_to_cache_reads() -> None:
    usage = {"input_tokens": 10, "output_tokens": 4, "cached_input_tokens": 3}
    assert token_usage(usage) == (10, 3, 0, 4, 0)
    assert token_usage({**usage, "cache_read_tokens": 2}) == (10, 2, 0, 4, 0)
    assert token_usage({**usage, "cache_read_tokens": None}) == (10, 3, 0, 4, 0)
    assert token_usage({}) == (0, 0, 0, 0, 0)


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": 5, "cache_read_tokens": 6},
        {"input_tokens": 5, "cache_read_tokens": 3, "cache_write_tokens": 3},
        {"output_tokens": 1, "reasoning_tokens": 2},
        {"input_tokens": -1},
        {"input_tokens": 1.0},
        {"input_tokens": True},
        {"output_tokens": "7"},
    ],
)
def test_inconsistent_or_non_integer_tokens_are_unpriced(usage: dict[str, Any]) -> None:
    assert token_usage(usage) is None
    genai_version()
    assert genai_pricer("openai", "gpt-4o").price("cfg", "svc", usage) == UNPRICED


# --- genai-prices --------------------------------------------------------------------------

FLAT_MODELS = [
    ("openai", "gpt-4o"),
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-sonnet"),  # prices cache writes
    ("perplexity", "sonar-deep-research"),  # prices reasoning tokens apart from output
    ("perplexity", "sonar"),  # a fee per request: cost even with zero tokens
]
SIZES = (0, 1, 999, 10**6, 10**9)


def grid() -> list[Tokens]:
    """Every size of input and output, with and without cache reads/writes and reasoning."""
    out: list[Tokens] = []
    for n_in, n_out in itertools.product(SIZES, SIZES):
        caches = {(0, 0), (n_in, 0), (0, n_in), (n_in // 3, n_in // 2)}
        for (read, write), reasoning in itertools.product(caches, {0, n_out // 2, n_out}):
            out.append((n_in, read, write, n_out, reasoning))
    return out


@pytest.mark.parametrize(("provider", "model"), FLAT_MODELS)
def test_fast_path_matches_calc_price_on_a_grid(provider: str, model: str) -> None:
    genai_version()
    resolved = GenaiModel.resolve(provider, model)
    assert isinstance(resolved, GenaiModel)
    assert resolved.rates_at(None) is not None, "a flat-rate model should get the fast path"
    usages = grid()
    assert len(usages) > 150
    for tokens in usages:
        assert resolved.nanos(tokens) == calc_price_nanos(provider, model, tokens), tokens


@pytest.mark.parametrize(("provider", "model"), [("google", "gemini-2.5-pro")])  # token tiers
def test_tiered_prices_use_calc_price(provider: str, model: str) -> None:
    """A price tiered by volume is not affine in tokens: no fast path, calc_price each time.
    (Prices that change by date get a fast path per price in force: test_pricing_time.)"""
    genai_version()
    resolved = GenaiModel.resolve(provider, model)
    assert isinstance(resolved, GenaiModel)
    assert resolved.rates_at(None) is None
    for tokens in [(0, 0, 0, 0, 0), (300_000, 1000, 0, 50, 10), (1000, 0, 0, 10**6, 0)]:
        assert resolved.nanos(tokens) == calc_price_nanos(provider, model, tokens)


def test_tiered_price_changes_above_the_tier() -> None:
    """gemini-2.5-pro charges more per token for prompts above 200k tokens."""
    genai_version()
    pricer = genai_pricer("google", "gemini-2.5-pro")
    small = pricer.price("cfg", "svc", {"input_tokens": 200_000}).cost_nanos
    large = pricer.price("cfg", "svc", {"input_tokens": 400_000}).cost_nanos
    assert small is not None
    assert large is not None
    assert large > 2 * small


def test_genai_price_is_in_usd_with_a_versioned_source() -> None:
    version = genai_version()
    price = genai_pricer("openai", "gpt-4o").price(
        "cfg", "svc", {"input_tokens": 1000, "output_tokens": 100, "cached_input_tokens": 10}
    )
    # 990 * 2.50 + 10 * 1.25 + 100 * 10.00 USD per million tokens
    assert price == Price(3_487_500, "USD", f"genai-prices {version} openai/gpt-4o")


@pytest.mark.parametrize(("provider", "model"), [("openai", "gpt-9-imaginary"), ("nope", "x")])
def test_model_unknown_to_genai_prices_is_unpriced(provider: str, model: str) -> None:
    version = genai_version()
    pricer = genai_pricer(provider, model)
    assert pricer.price("cfg", "svc", {"input_tokens": 5}) == UNPRICED
    reason = pricer.unpriced_reason("cfg", "svc")
    assert reason is not None
    assert reason.startswith(f"genai-prices {version} has no price for {provider}/{model}")


def test_without_genai_prices_installed_records_are_unpriced(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "genai_prices", None)  # makes the import fail
    pricer = genai_pricer("openai", "gpt-4o")
    assert pricer.price("cfg", "svc", {"input_tokens": 5}) == UNPRICED
    assert pricer.unpriced_reason("cfg", "svc") == (
        "genai-prices is not installed: pip install 'aicm-manual[llm]'"
    )


# --- the shipped configs ---------------------------------------------------------------------


CHAT = {"model": "m", "input_tokens": 1000, "output_tokens": 100, "cached_input_tokens": 10}
SHIPPED = [
    # 990 * 0.15 + 10 * 0.075 + 100 * 0.60 USD per million, from genai-prices: the cached
    # tokens are part of input_tokens and charged once, at the cache-read price.
    ("openai-chat", "openai::gpt-4o-mini", CHAT, 209_250, "USD"),
    # 990 * 2.50 + 10 * 1.25 + 100 * 10.00 USD per million, from genai-prices
    ("openai-chat", "openai::gpt-4o", CHAT, 3_487_500, "USD"),
    ("heygen", "heygen::streaming-avatar", {"duration": 12.3}, 20_500_000, "USD"),
    ("heygen", "heygen::video-generation", {"duration": 60}, 500_000_000, "USD"),
    ("internal-api", "internal::geocoder", {"calls": 3, "endpoint": "/g"}, 6_000_000, "EUR"),
    ("internal-api", "internal::search", {"calls": 3, "endpoint": "/s"}, None, None),
]


@pytest.mark.parametrize(("config_id", "service_id", "usage", "nanos", "currency"), SHIPPED)
def test_shipped_configs_price_as_documented(
    config_id: str, service_id: str, usage: dict[str, Any], nanos: int | None, currency: str | None
) -> None:
    version = genai_version()
    pricer = Pricer(DirectoryConfigSource(SCHEMAS).all())
    price = pricer.price(config_id, service_id, usage)
    assert (price.cost_nanos, price.currency) == (nanos, currency)
    if nanos is None:
        assert price == UNPRICED
        assert pricer.unpriced_reason(config_id, service_id) is not None
    else:
        model = service_id.removeprefix("openai::")
        expected = "unit" if model == service_id else f"genai-prices {version} openai/{model}"
        assert price.source == expected
        assert pricer.unpriced_reason(config_id, service_id) is None


# --- the shipped llm config: "vendor::*" services, the model from the service id -----------

LLM_MODELS = [
    ("openai", "gpt-4o-mini"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("google", "gemini-2.0-flash"),
]
LLM_USAGE = {"input_tokens": 1200, "cache_read_tokens": 200, "output_tokens": 300}


@pytest.mark.parametrize(("provider", "model"), LLM_MODELS)
def test_llm_config_prices_any_model_of_a_vendor_through_genai_prices(
    provider: str, model: str
) -> None:
    version = genai_version()
    pricer = Pricer(DirectoryConfigSource(SCHEMAS).all())
    price = pricer.price("llm", f"{provider}::{model}", LLM_USAGE)
    assert price == Price(
        calc_price_nanos(provider, model, (1200, 200, 0, 300, 0)),
        "USD",
        f"genai-prices {version} {provider}/{model}",
    )
    assert price.cost_nanos


@pytest.mark.parametrize(
    "service_id", ["openai::gpt-9-imaginary", "anthropic::claude-0", "google::"]
)
def test_llm_config_leaves_a_model_genai_prices_does_not_know_unpriced(service_id: str) -> None:
    genai_version()
    pricer = Pricer(DirectoryConfigSource(SCHEMAS).all())
    assert pricer.price("llm", service_id, LLM_USAGE) == UNPRICED
    reason = pricer.unpriced_reason("llm", service_id)
    assert "has no price for" in (reason or "")


def test_llm_config_does_not_price_a_vendor_it_does_not_list() -> None:
    pricer = Pricer(DirectoryConfigSource(SCHEMAS).all())
    assert pricer.price("llm", "mistral::mistral-large", LLM_USAGE) == UNPRICED
    assert pricer.unpriced_reason("llm", "mistral::mistral-large") == (
        "no config 'llm' with a service 'mistral::mistral-large'"
    )


def test_warm_up_resolves_the_models_configs_name_before_any_record() -> None:
    genai_version()
    pricer = Pricer(DirectoryConfigSource(SCHEMAS).all())
    pricer.warm_up()
    resolved = {key for key, model in pricer._models.items() if not isinstance(model, str)}
    assert {("openai", "gpt-4o-mini"), ("openai", "gpt-4o")} <= resolved
    assert all(provider != "anthropic" for provider, _ in pricer._models)  # only a pattern
