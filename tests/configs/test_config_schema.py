"""The config format's pydantic models: the shipped JSON Schema, and errors that say where."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema_rs
import pytest

from aicm_manual import ConfigError, UsageConfig
from aicm_manual._configs.documents import config_json_schema, config_json_schema_text

ROOT = Path(__file__).resolve().parents[2]
SHIPPED_SCHEMA = ROOT / "schemas" / "jsonschema" / "config.schema.json"
CONFIGS = sorted((ROOT / "schemas").glob("*.json"))
REGENERATE = (
    "python -c 'from aicm_manual._configs.documents import config_json_schema_text as t; "
    'print(t(), end="")\' > schemas/jsonschema/config.schema.json'
)


def validator() -> Any:
    return jsonschema_rs.Draft202012Validator(json.loads(SHIPPED_SCHEMA.read_text()))


def test_shipped_json_schema_is_the_generated_one() -> None:
    """schemas/jsonschema/config.schema.json equals what the pydantic models generate."""
    assert SHIPPED_SCHEMA.read_text(encoding="utf-8") == config_json_schema_text(), REGENERATE


def test_json_schema_is_a_valid_draft_2020_12_schema() -> None:
    """The generated schema is itself valid against the 2020-12 meta-schema."""
    assert jsonschema_rs.meta.is_valid(config_json_schema())
    assert (
        UsageConfig.json_schema() == config_json_schema() == json.loads(SHIPPED_SCHEMA.read_text())
    )


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates_against_the_json_schema(path: Path) -> None:
    """Each schemas/*.json passes the JSON Schema and loads as a UsageConfig."""
    data = json.loads(path.read_text(encoding="utf-8"))
    errors = [e.message for e in validator().iter_errors(data)]
    assert errors == []
    assert UsageConfig.from_dict(data, source=str(path)).config_id == path.stem


BROKEN: dict[str, Any] = {
    "config_id": "x",
    "manual_usage_schema": {"tokens": 5},
    "services": [{"service_id": "a", "pricing": {"currency": "usd", "unit": {}}}],
    "extra_fields": "sometimes",
}


def test_json_schema_rejects_a_broken_config_with_useful_messages() -> None:
    """Editors using the schema see what is wrong and where."""
    errors = {
        "/".join(map(str, e.instance_path)): e.message for e in validator().iter_errors(BROKEN)
    }
    assert set(errors) == {
        "manual_usage_schema/tokens",
        "services/0/pricing/currency",
        "services/0/pricing/unit",
        "extra_fields",
    }
    assert '5 is not of type "string"' in errors["manual_usage_schema/tokens"]
    assert "usd" in errors["services/0/pricing/currency"]


def test_loader_lists_every_problem_with_path_value_and_expectation() -> None:
    """UsageConfig.from_dict reports each problem: its path, the value and what was expected."""
    with pytest.raises(ConfigError) as info:
        UsageConfig.from_dict(BROKEN, source="broken.json")
    assert str(info.value).splitlines() == [
        "broken.json (config 'x'): config is invalid (4 problems):",
        "  - manual_usage_schema['tokens'] 5 must be a type string such as 'int' or "
        "'Optional[List[str]]'",
        "  - extra_fields 'sometimes' must be 'forbid' (usage fields not in "
        "manual_usage_schema are an error) or 'allow' (they are stored unchecked and unpriced)",
        "  - services[0].pricing.currency 'usd' must be a 3-letter ISO 4217 code",
        "  - services[0].pricing.unit {} must be an object mapping numeric usage fields to "
        "{'price', 'per'}",
    ]


def test_a_config_that_is_not_an_object_is_named() -> None:
    """A JSON array where a config belongs is reported as such."""
    with pytest.raises(ConfigError, match=r"^m: a config must be a JSON object, got list$"):
        UsageConfig.from_dict([1], source="m")


def test_dollar_schema_key_for_editors_is_accepted_and_ignored() -> None:
    """A config may point editors at the JSON Schema with "$schema"."""
    data = json.loads((ROOT / "schemas" / "heygen.json").read_text())
    with_ref = {"$schema": "jsonschema/config.schema.json", **data}
    assert UsageConfig.from_dict(with_ref, source="m") == UsageConfig.from_dict(data, source="m")


def test_extra_fields_policy_round_trips_and_reaches_the_validator() -> None:
    """extra_fields "allow" lets unknown usage fields through; known ones are still checked."""
    data = {
        "config_id": "open",
        "manual_usage_schema": {"tokens": "Optional[int]"},
        "extra_fields": "allow",
        "services": [{"service_id": "v::*"}],
    }
    config = UsageConfig.from_dict(data, source="m")
    assert config.extra_fields == "allow"
    assert config.to_dict()["extra_fields"] == "allow"
    assert UsageConfig.from_dict(config.to_dict(), source="m2") == config
    config.validator.validate({"tokens": 3, "user_email": "a@b.c", "nested": {"k": [1]}})
    assert not config.validator.is_valid({"tokens": "3"})
    strict = UsageConfig.from_dict({**data, "extra_fields": "forbid"}, source="m")
    assert "extra_fields" not in strict.to_dict()
    assert not strict.validator.is_valid({"tokens": 3, "user_email": "a@b.c"})


def test_import_of_the_package_does_not_load_pydantic() -> None:
    """pydantic is imported with the first config, not by import aicm_manual."""
    code = "import sys, aicm_manual; print('pydantic' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_extra_fields_allow_is_honoured_by_client_and_collector(tmp_path: Path) -> None:
    """A config with extra_fields "allow": the tracker sends, the collector stores the extras
    with the record, prices the named fields, and a wrong type is still refused."""
    import requests

    from aicm_manual import Tracker, UsageValidationError
    from aicm_manual.server._embedded import embedded_collector

    schemas = tmp_path / "schemas"
    schemas.mkdir()
    config = {
        "config_id": "open",
        "manual_usage_schema": {"seconds": "Optional[float]"},
        "extra_fields": "allow",
        "services": [
            {
                "service_id": "render::hd",
                "pricing": {"currency": "USD", "unit": {"seconds": {"price": "0.5", "per": 1}}},
            }
        ],
    }
    (schemas / "open.json").write_text(json.dumps(config))
    key = "aicm_open_key_1"
    with embedded_collector(f"sqlite:///{tmp_path}/e.db", schemas, [f"t:{key}"]) as collector:
        with Tracker(
            "open",
            "render::hd",
            aicm_api_key=key,
            aicm_api_base=collector.url,
            schemas_dir=schemas,
            delivery_type="immediate",
            environ={"AICM_INI_PATH": str(tmp_path / "AICM.INI")},
        ) as tracker:
            tracker.track({"seconds": 4.0, "job": {"frames": [1, 2]}}, response_id="r1")
            with pytest.raises(UsageValidationError, match="expected float, got str"):
                tracker.track({"seconds": "4"})
        answer = requests.get(
            f"{collector.url}/api/v1/events/r1",
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
    [event] = answer.json()["events"]
    assert event["usage"] == {"seconds": 4.0, "job": {"frames": [1, 2]}}
    assert event["cost"] == "2.000000000"
