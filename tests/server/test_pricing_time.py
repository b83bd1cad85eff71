"""A record is priced at its own time and tier, by its tenant's rule in force then, else by
its config; every amount checked against genai-prices' own calc_price."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

pytest.importorskip("genai_prices")

from genai_prices import Usage, calc_price

from aicm_manual._configs.model import GenaiPricesRef, Pricing, Rate
from aicm_manual._configs.sources import DirectoryConfigSource, all_configs
from aicm_manual.server._pricing import Pricer, PriceRule, to_nanos

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
TOKENS = {"input_tokens": 1_000_000, "output_tokens": 250_000}


def us(day: str) -> int:
    when = datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    return int(when.timestamp()) * 1_000_000


def reference(model: str, provider: str, day: str | None, tier: str | None = None) -> int:
    when = None if day is None else datetime.fromisoformat(day).replace(tzinfo=timezone.utc)
    context = None if tier is None else {"service_tier": tier}
    usage = Usage(input_tokens=TOKENS["input_tokens"], output_tokens=TOKENS["output_tokens"])
    price = calc_price(
        usage, model, provider_id=provider, genai_request_timestamp=when, price_context=context
    )
    return to_nanos(price.total_price)


@pytest.fixture(scope="module")
def pricer() -> Pricer:
    return Pricer(all_configs(DirectoryConfigSource(SCHEMAS)))


def test_records_on_either_side_of_a_price_change_pay_the_price_of_their_day(
    pricer: Pricer,
) -> None:
    """claude-opus-4-6 changed price on 2026-03-13: each record pays calc_price at its time."""
    before = pricer.quote("llm", "anthropic::claude-opus-4-6", TOKENS, us("2026-03-01"))
    after = pricer.quote("llm", "anthropic::claude-opus-4-6", TOKENS, us("2026-04-01"))
    assert before[0] == reference("claude-opus-4-6", "anthropic", "2026-03-01")
    assert after[0] == reference("claude-opus-4-6", "anthropic", "2026-04-01")
    assert before[0] != after[0]  # the test means something only if the price changed


@pytest.mark.parametrize("tier", ["flex", "priority", None])
def test_the_service_tier_in_the_usage_selects_the_tier_price(
    pricer: Pricer, tier: str | None
) -> None:
    """A usage's service_tier is passed to genai-prices (flex half, priority double)."""
    usage = {**TOKENS, "service_tier": tier}
    got = pricer.quote("llm", "openai::gpt-5", usage, us("2026-06-01"))
    assert got[0] == reference("gpt-5", "openai", "2026-06-01", tier)


def test_a_tenant_rule_prices_from_its_effective_date_and_for_its_tenant_only(
    pricer: Pricer,
) -> None:
    """Records before a rule's date, and other tenants' records, keep the config's price."""
    config_price = pricer.quote("llm", "openai::gpt-4o", TOKENS, us("2026-05-01"), "acme")
    rule = PriceRule(
        7,
        "acme",
        "openai::*",
        us("2026-05-10"),
        Pricing("USD", {"input_tokens": Rate(Decimal("2"), 1_000_000)}),
    )
    pricer.set_rules([rule])
    try:
        early = pricer.quote("llm", "openai::gpt-4o", TOKENS, us("2026-05-09"), "acme")
        late = pricer.quote("llm", "openai::gpt-4o", TOKENS, us("2026-05-11"), "acme")
        other = pricer.quote("llm", "openai::gpt-4o", TOKENS, us("2026-05-11"), "globex")
        assert early == config_price
        assert late == (2_000_000_000, "USD", "rule 7: unit")
        assert other == config_price
    finally:
        pricer.set_rules([])


def test_an_exact_service_rule_wins_over_its_vendor_rule_and_later_rules_win(
    pricer: Pricer,
) -> None:
    """Exact service id before vendor::*; within one, the latest effective date in force."""
    per_m = {"input_tokens": Rate(Decimal("1"), 1_000_000)}
    twice = {"input_tokens": Rate(Decimal("2"), 1_000_000)}
    pricer.set_rules(
        [
            PriceRule(1, "acme", "openai::*", us("2026-01-01"), Pricing("USD", per_m)),
            PriceRule(2, "acme", "openai::gpt-4o", us("2026-02-01"), Pricing("USD", per_m)),
            PriceRule(3, "acme", "openai::gpt-4o", us("2026-03-01"), Pricing("USD", twice)),
        ]
    )
    try:
        assert pricer.quote("llm", "openai::gpt-4o", TOKENS, us("2026-01-15"), "acme")[2] == (
            "rule 1: unit"
        )
        assert pricer.quote("llm", "openai::gpt-4o", TOKENS, us("2026-02-15"), "acme")[2] == (
            "rule 2: unit"
        )
        late = pricer.quote("llm", "openai::gpt-4o", TOKENS, us("2026-03-15"), "acme")
        assert late[:2] == (2_000_000_000, "USD")
        assert pricer.quote("llm", "openai::gpt-4o-mini", TOKENS, us("2026-03-15"), "acme")[2] == (
            "rule 1: unit"
        )
    finally:
        pricer.set_rules([])


def test_replacing_one_tenants_rules_leaves_the_others(pricer: Pricer) -> None:
    """set_rules(tenant=...) swaps that tenant's rules and no one else's."""
    flat = Pricing("USD", {"input_tokens": Rate(Decimal("1"), 1_000_000)})
    pricer.set_rules(
        [
            PriceRule(1, "acme", "openai::*", 0, flat),
            PriceRule(2, "globex", "openai::*", 0, flat),
        ]
    )
    try:
        pricer.set_rules([], tenant="acme")
        assert pricer.quote("llm", "openai::gpt-4o", TOKENS, us("2026-01-01"), "globex")[2] == (
            "rule 2: unit"
        )
        acme = pricer.quote("llm", "openai::gpt-4o", TOKENS, us("2026-01-01"), "acme")
        assert acme[2] is not None
        assert not acme[2].startswith("rule")
    finally:
        pricer.set_rules([])


def test_a_rule_prices_a_service_no_config_lists(pricer: Pricer) -> None:
    """A tenant rule for a service outside every config prices its config-less records."""
    flat = Pricing("EUR", {"calls": Rate(Decimal("0.01"))})
    pricer.set_rules([PriceRule(9, "acme", "internal::search", 0, flat)])
    try:
        got = pricer.quote(None, "internal::search", {"calls": 3}, us("2026-01-01"), "acme")
        assert got == (30_000_000, "EUR", "rule 9: unit")
        assert pricer.quote(None, "internal::search", {"calls": 3}, None, "other") == (
            None,
            None,
            None,
        )
    finally:
        pricer.set_rules([])


def test_a_genai_rule_is_priced_at_the_records_time(pricer: Pricer) -> None:
    """A rule naming a genai-prices model prices at the record's timestamp like a config."""
    rule = PriceRule(
        4,
        "acme",
        "team::opus",
        0,
        Pricing(genai_prices=GenaiPricesRef("anthropic", "claude-opus-4-6")),
    )
    pricer.set_rules([rule])
    try:
        got = pricer.quote(None, "team::opus", TOKENS, us("2026-03-01"), "acme")
        assert got[0] == reference("claude-opus-4-6", "anthropic", "2026-03-01")
    finally:
        pricer.set_rules([])


@pytest.mark.parametrize(
    ("config_id", "service_id", "usage", "reason"),
    [
        ("llm", "openai::no-such-model-xyz", TOKENS, "has no price for openai/no-such-model-xyz"),
        (None, "nobody::lists-this", TOKENS, "no config lists the service"),
        ("llm", "openai::gpt-4o", {"input_tokens": -1}, "token counts are not"),
        ("llm", "openai::gpt-4o", {**TOKENS, "service_tier": 3}, "service_tier is not a string"),
    ],
)
def test_unpriced_records_are_explained(
    pricer: Pricer, config_id: str | None, service_id: str, usage: dict[str, object], reason: str
) -> None:
    """Every unpriced record has a reason a person can act on."""
    assert pricer.quote(config_id, service_id, usage, us("2026-01-01"), "acme")[0] is None
    assert reason in pricer.explain(config_id, service_id, usage, us("2026-01-01"), "acme")


@pytest.mark.parametrize("day", ["2025-01-01", "2025-06-15", "2026-03-01", "2026-06-01"])
def test_a_dated_model_matches_calc_price_on_every_day(pricer: Pricer, day: str) -> None:
    """o3's price changed on a date: the per-period fast path equals calc_price each day."""
    got = pricer.quote("llm", "openai::o3", TOKENS, us(day))
    assert got[0] == reference("o3", "openai", day)
