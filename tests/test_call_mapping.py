"""handling_config validation and the UniversalExtractor: pure, table-driven."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import openai.types.chat
import pytest

from aicm_manual import DirectoryConfigSource
from aicm_manual._call_mapping import UniversalExtractor, resolve, to_data
from aicm_manual._configs.handling import is_handling_config, parse_handling_config
from aicm_manual.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
WHEN = datetime(2026, 11, 24, 10, 0, tzinfo=timezone.utc)

# The reference SDK's example, in our record vocabulary.
CALC = {
    "tracked_methods": ["add"],
    "request_fields": ["a", "b", {"key": "customer", "path": "options.customer"}],
    "response_fields": [{"key": "value", "path": ""}],
    "payload_mapping": {
        "usage.value": "response_data.value",
        "usage.operands": "request_data",
        "client_customer_key": "request_data.customer",
        "timestamp": "timestamp",
    },
    "static_payload_fields": {"service_id": "calc::add", "context.source": "cost-manager"},
}


def shipped_configs() -> list[Path]:
    """The CostManager configs, whether still staged in schemas/pending or in schemas/."""
    names = ("openai.json", "anthropic.json")
    return [
        p
        for p in [
            *(ROOT / "schemas").glob("*.json"),
            *(ROOT / "schemas" / "pending").glob("*.json"),
        ]
        if p.name in names
    ]


def test_the_reference_example_parses_and_extracts() -> None:
    handling = parse_handling_config(CALC, "calc.json")
    extractor = UniversalExtractor(handling, "calc")
    fields = extractor.process_call(
        "add", {"a": 2, "b": 3, "options": {"customer": "acme"}}, 5, WHEN
    )
    assert fields == {
        "usage": {"value": 5, "operands": {"a": 2, "b": 3, "customer": "acme"}},
        "client_customer_key": "acme",
        "timestamp": "2026-11-24T10:00:00+00:00",
        "service_id": "calc::add",
        "context": {"source": "cost-manager"},
    }
    assert extractor.process_call("sub", {}, 1, WHEN) is None
    assert extractor.method("add") is not None
    assert not extractor.leads_to_tracked("add")


def test_method_entries_override_the_defaults_and_give_the_paths_to_them() -> None:
    handling = parse_handling_config(
        {
            "tracked_methods": [
                {"method": "chat.completions.create", "usage_extractor": "openai_chat"},
                {"method": "jobs.run", "payload_mapping": {"usage": "response_data.cost"}},
            ],
            "response_fields": [{"key": "cost", "path": "billing.0"}],
            "payload_mapping": {"context.job": "request_data.name"},
            "request_fields": ["name"],
        },
        "x.json",
    )
    chat, jobs = handling.methods.values()
    assert chat.payload_mapping == {"context.job": "request_data.name"}
    assert jobs.payload_mapping == {"usage": "response_data.cost"}
    assert handling.prefixes == frozenset({"chat", "chat.completions", "jobs"})
    extractor = UniversalExtractor(handling, "x")
    fields = extractor.process_call("jobs.run", {"name": "n1"}, {"billing": [{"gpu_s": 3}]}, WHEN)
    assert fields == {"usage": {"gpu_s": 3}}


@pytest.mark.parametrize(
    ("raw", "messages"),
    [
        ("tracked", ["handling_config must be an object"]),
        ({}, ["tracked_methods must be a non-empty list"]),
        (
            {"tracked_methods": ["add"], "payload_maping": {}},
            ["unknown keys ['payload_maping']", "nothing produces the usage"],
        ),
        (
            {"tracked_methods": [{"method": "create", "usage_extractor": "openai"}]},
            ["usage_extractor 'openai' is not one of ['openai_chat'"],
        ),
        (
            {"tracked_methods": ["a b", 3, {"path": "x"}]},
            [
                "tracked_methods[0]: method 'a b' must be a dotted attribute path",
                "tracked_methods[1] must be a method path or an object with 'method'",
                "tracked_methods[2]: unknown keys ['path']",
            ],
        ),
        (
            {"tracked_methods": ["x", "x"], "payload_mapping": {"usage": "response_data"}},
            ["'x' is listed twice"],
        ),
        (
            {
                "tracked_methods": ["x"],
                "payload_mapping": {"usage": "response.usage", "cost": "response_data.c"},
            },
            [
                "payload_mapping['usage']: 'response.usage' must be a dotted path starting "
                "with one of ['config_identifier', 'method', 'request_data', 'response_data', "
                "'timestamp']",
                "'cost' is not a record field",
            ],
        ),
        (
            {
                "tracked_methods": ["x"],
                "usage_extractor": "anthropic",
                "static_payload_fields": {"usage.extra": 1},
            },
            ["usage comes from usage_extractor 'anthropic'"],
        ),
        (
            {
                "tracked_methods": ["x"],
                "usage_extractor": "gemini",
                "request_fields": ["ok", {"key": "k"}, 7],
                "response_fields": "id",
                "stream_kwargs": [1],
            },
            [
                "request_fields[1] must be a dotted path or {'key': name, 'path': dotted path}",
                "request_fields[2] must be",
                "response_fields must be a list",
                "stream_kwargs must be an object of keyword arguments",
            ],
        ),
        (
            {"tracked_methods": ["x"], "payload_mapping": {"usage.a.b": "request_data.a"}},
            ["'usage.a.b' is not a record field"],
        ),
    ],
)
def test_every_problem_is_reported_with_its_place(raw: Any, messages: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        parse_handling_config(raw, "configs/x.json")
    text = str(info.value)
    assert text.startswith("configs/x.json: handling_config")
    for message in messages:
        assert message in text


def test_only_configs_with_tracked_methods_are_cost_manager_configs() -> None:
    heygen = DirectoryConfigSource(ROOT / "schemas").get("heygen")
    assert heygen.handling_config == {"duration_unit": "seconds"}
    assert not is_handling_config(heygen.handling_config)
    assert is_handling_config(CALC)


def test_shipped_handling_configs_parse() -> None:
    files = shipped_configs()
    assert sorted(p.name for p in files) == ["anthropic.json", "openai.json"]
    for path in files:
        config = DirectoryConfigSource(path.parent).get(path.stem)
        handling = parse_handling_config(config.handling_config, str(path))
        assert all(m.usage_extractor for m in handling.methods.values())
        llm = DirectoryConfigSource(ROOT / "schemas").get("llm")
        assert config.manual_usage_schema == llm.manual_usage_schema
        assert json.loads(path.read_text())["config_id"] == path.stem


def test_resolve_reads_keys_attributes_and_indexes() -> None:
    completion = openai.types.chat.ChatCompletion.model_validate(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": "m",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "hi"},
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
        }
    )
    assert resolve(completion, "choices.0.message.content") == "hi"
    assert resolve(completion, "choices.1.message") is None
    assert resolve(completion, "usage.prompt_tokens_details.cached_tokens") is None
    assert resolve({"a": [{"b": 2}]}, "a.0.b") == 2
    assert resolve({"a": "text"}, "a.0") is None
    assert resolve(completion, "") is completion
    assert to_data(completion.usage) == {
        "prompt_tokens": 3,
        "completion_tokens": 1,
        "total_tokens": 4,
    }
    assert to_data((1, {"w": WHEN})) == [1, {"w": "2026-11-24T10:00:00+00:00"}]
    assert to_data(object).startswith("<class")


def test_static_fields_win_and_none_values_are_left_out() -> None:
    handling = parse_handling_config(
        {
            "tracked_methods": ["x"],
            "payload_mapping": {
                "usage": "response_data.usage",
                "service_id": "response_data.service",
                "response_id": "response_data.missing",
            },
            "response_fields": ["usage", "service"],
            "static_payload_fields": {"service_id": "fixed::one"},
        },
        "x.json",
    )
    fields = UniversalExtractor(handling, "x").process_call(
        "x", {}, {"usage": {"n": 1}, "service": "from::response"}, WHEN
    )
    assert fields == {"usage": {"n": 1}, "service_id": "fixed::one"}
