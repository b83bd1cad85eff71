"""UsageConfig.from_dict: structure, pricing and error messages that name the source."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from aicm_manual import ConfigError, ConfigNotFoundError, TypeStringError, UsageConfig

BASE: dict[str, Any] = {
    "config_id": "cfg",
    "manual_usage_schema": {"tokens": "int", "latency": "Optional[float]", "model": "str"},
    "services": [
        {
            "service_id": "svc",
            "pricing": {"currency": "USD", "unit": {"tokens": {"price": "0.5", "per": 1000}}},
        }
    ],
}


def make(**changes: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(changes)
    return data


def test_valid_config_round_trips_to_dict() -> None:
    config = UsageConfig.from_dict(make(), source="mem")
    assert config.service("svc").pricing is not None
    rate = config.service("svc").pricing.unit["tokens"]  # type: ignore[union-attr]
    assert rate.price == Decimal("0.5")
    assert rate.per == 1000
    again = UsageConfig.from_dict(config.to_dict(), source="mem2")
    assert again == config


def test_schema_is_reported_in_canonical_form() -> None:
    config = UsageConfig.from_dict(
        make(manual_usage_schema={"tokens": "int", "a": "int | None", "b": "typing.List[ str ]"}),
        source="m",
    )
    assert config.manual_usage_schema == {
        "tokens": "int",
        "a": "Optional[int]",
        "b": "List[str]",
    }


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"config_id": "../x"}, "config_id '../x' must be"),
        ({"config_id": 5}, "config_id 5 must be"),
        (
            {"manual_usage_schema": ["int"]},
            r"manual_usage_schema \['int'\] must be an object mapping field names to type strings",
        ),
        (
            {"manual_usage_schema": {"a": 5}},
            r"manual_usage_schema\['a'\] 5 must be a type string",
        ),
        ({"services": []}, r"services \[\] must be a non-empty list"),
        ({"services": [{"service_id": "a"}, {"service_id": "a"}]}, "duplicate service_id"),
        (
            {"services": [{"service_id": "a", "price": 1}]},
            r"services\[0\]: unknown keys \['price'\] \(known: \['description', 'pricing'",
        ),
        ({"handling_config": [1]}, r"handling_config \[1\] must be an object"),
        ({"colour": "red"}, r"unknown keys \['colour'\] \(known: \['\$schema', 'config_id'"),
        (
            {"services": [{"service_id": "a", "pricing": {"unit": {"nope": {"price": "1"}}}}]},
            "price for 'nope', which is not in manual_usage_schema",
        ),
        (
            {"services": [{"service_id": "a", "pricing": {"unit": {"model": {"price": "1"}}}}]},
            "whose type str is not numeric",
        ),
        (
            {"services": [{"service_id": "a", "pricing": {"unit": {"tokens": {"price": 0.1}}}}]},
            r"unit\['tokens'\]\.price 0\.1 must be a finite, non-negative decimal string",
        ),
        (
            {"services": [{"service_id": "a", "pricing": {"unit": {"tokens": {"price": "x"}}}}]},
            r"price 'x' must be a finite, non-negative decimal string like '0\.15'",
        ),
        (
            {"services": [{"service_id": "a", "pricing": {"unit": {"tokens": {"price": "-1"}}}}]},
            r"price '-1' must be a finite, non-negative decimal string",
        ),
        (
            {
                "services": [
                    {"service_id": "a", "pricing": {"unit": {"tokens": {"price": "1", "per": 0}}}}
                ]
            },
            r"unit\['tokens'\]\.per 0 must be a positive integer",
        ),
        (
            {
                "services": [
                    {
                        "service_id": "a",
                        "pricing": {"currency": "usd", "unit": {"tokens": {"price": "1"}}},
                    }
                ]
            },
            r"pricing\.currency 'usd' must be a 3-letter ISO 4217 code",
        ),
    ],
)
def test_invalid_configs_are_rejected_with_a_reason(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        UsageConfig.from_dict(make(**changes), source="file.json")
    assert str(info.value).startswith("file.json")


def test_optional_numeric_field_may_carry_a_rate() -> None:
    services = [{"service_id": "a", "pricing": {"unit": {"latency": {"price": "1"}}}}]
    config = UsageConfig.from_dict(make(services=services), source="m")
    assert config.service("a").pricing.currency == "USD"  # type: ignore[union-attr]


def test_bad_type_string_is_a_type_string_error_naming_config_and_field() -> None:
    with pytest.raises(TypeStringError) as info:
        UsageConfig.from_dict(make(manual_usage_schema={"x": "Lst[int]"}), source="f.json")
    assert info.value.field == "x"
    assert "f.json (config 'cfg')" in str(info.value)
    assert "unknown type name 'Lst'" in str(info.value)


def test_unknown_service_lists_known_services() -> None:
    config = UsageConfig.from_dict(make(), source="m")
    with pytest.raises(ConfigNotFoundError, match=r"service 'other' not found .*'svc'"):
        config.service("other")


def test_genai_prices_reference_round_trips() -> None:
    services = [
        {"service_id": "a", "pricing": {"genai_prices": {"provider": "openai", "model": "gpt-4o"}}}
    ]
    config = UsageConfig.from_dict(make(services=services), source="m")
    ref = config.service("a").pricing.genai_prices  # type: ignore[union-attr]
    assert (ref.provider, ref.model) == ("openai", "gpt-4o")  # type: ignore[union-attr]
    assert UsageConfig.from_dict(config.to_dict(), source="m2") == config


@pytest.mark.parametrize(
    "pricing",
    [
        {"unit": {"tokens": {"price": "1"}}, "genai_prices": {"provider": "o", "model": "m"}},
        {"currency": "USD"},
        {"genai_prices": {"provider": "openai"}},
    ],
)
def test_pricing_needs_exactly_one_valid_kind(pricing: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"pricing|genai_prices"):
        UsageConfig.from_dict(make(services=[{"service_id": "a", "pricing": pricing}]), source="m")


def test_vendor_pattern_service_matches_every_model_of_the_vendor() -> None:
    services = [
        {"service_id": "openai::*", "pricing": {"genai_prices": {"provider": "openai"}}},
        {"service_id": "openai::gpt-4o", "description": "exact entry wins"},
    ]
    config = UsageConfig.from_dict(make(services=services), source="m")
    assert config.service("openai::gpt-4o").description == "exact entry wins"
    wild = config.service("openai::gpt-5-mini")
    assert wild.service_id == "openai::*"
    assert wild.is_pattern
    ref = wild.pricing.genai_prices  # type: ignore[union-attr]
    assert ref is not None
    assert ref.model_for("openai::gpt-5-mini") == "gpt-5-mini"
    assert config.find_service("anthropic::claude-3-5-haiku") is None
    assert config.find_service("openai") is None
    with pytest.raises(ConfigNotFoundError, match="anthropic::x"):
        config.service("anthropic::x")
    assert UsageConfig.from_dict(config.to_dict(), source="m2") == config


@pytest.mark.parametrize("service_id", ["*", "openai::gpt-*", "::*", "openai:*"])
def test_only_whole_vendor_patterns_are_allowed(service_id: str) -> None:
    with pytest.raises(ConfigError, match="pattern"):
        UsageConfig.from_dict(make(services=[{"service_id": service_id}]), source="m")


def test_a_cost_manager_handling_config_is_checked_at_load() -> None:
    broken = {"tracked_methods": [{"method": "chat.completions.create", "usage_extractor": "x"}]}
    with pytest.raises(ConfigError, match="handling_config is invalid"):
        UsageConfig.from_dict(make(handling_config=broken), source="m")
    # Free-form notes without tracked_methods stay allowed.
    notes = UsageConfig.from_dict(make(handling_config={"duration_unit": "seconds"}), source="m")
    assert notes.handling_config == {"duration_unit": "seconds"}
