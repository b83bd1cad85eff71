"""Schemas given as pydantic models or TypedDicts, the extra-fields policy, and json_schema()."""

# No "from __future__ import annotations": the classes below need real annotations, which is
# what the converter reads (string annotations are refused, never evaluated).
import json
from pathlib import Path
from typing import Annotated, Any, Optional

import jsonschema_rs
import pydantic
import pytest
from typing_extensions import NotRequired, TypedDict

from aicm_manual import SchemaError, TypeValidator
from aicm_manual._batch_input import BatchRecord, plain_usage


class Usage(pydantic.BaseModel):
    tokens: int
    tags: list[str]
    latency: Optional[float] = None  # noqa: UP045  # the spelling users write


class UsageDict(TypedDict):
    tokens: int
    tags: list[str]
    latency: NotRequired[float | None]


def test_pydantic_model_and_typeddict_give_the_same_tree_as_type_strings() -> None:
    """A model class and a TypedDict convert to the schema their type strings would give."""
    strings = TypeValidator({"tokens": "int", "tags": "List[str]", "latency": "Optional[float]"})
    assert TypeValidator(Usage) == strings
    assert TypeValidator(UsageDict) == strings


def test_a_model_class_schema_keeps_our_rules() -> None:
    """Converted schemas check with our rules: bool is not int, extras are errors."""
    validator = TypeValidator(Usage)
    assert validator.is_valid({"tokens": 1, "tags": []})
    assert not validator.is_valid({"tokens": True, "tags": []})
    assert not validator.is_valid({"tokens": 1, "tags": [], "x": 1})


class Deferred(TypedDict):
    tokens: "int"  # a string annotation on purpose


class Defaulted(pydantic.BaseModel):
    tokens: int = 0


class Constrained(pydantic.BaseModel):
    tokens: Annotated[int, pydantic.Field(ge=0)]


class Nested(pydantic.BaseModel):
    inner: Usage


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (Deferred, r"Deferred\.tokens: string annotation 'int' is never evaluated"),
        (Defaulted, r"Defaulted\.tokens may be omitted .* declare it Optional\[int\]"),
        (Constrained, r"Constrained\.tokens: constraints \[Ge\(ge=0\)\] cannot be expressed"),
        (Nested, r"Nested\.inner: unsupported type .*Usage.*declare it Dict\[str, \.\.\.\]"),
        (int, r"a schema class must be a pydantic model or a TypedDict, got int"),
    ],
)
def test_classes_that_cannot_be_converted_exactly_are_refused(schema: Any, message: str) -> None:
    """Nothing in a class is evaluated, dropped or widened silently."""
    with pytest.raises(SchemaError, match=message):
        TypeValidator(schema)


def test_a_model_instance_is_usage_as_its_json_dump() -> None:
    """A pydantic model instance becomes its model_dump(mode="json") and is then checked."""
    usage = Usage(tokens=3, tags=["a"])
    assert plain_usage(usage) == {"tokens": 3, "tags": ["a"], "latency": None}
    assert BatchRecord.parse({"service_key": "s", "usage": usage}).usage == plain_usage(usage)
    assert BatchRecord.parse({"service_id": "s", "usage": usage, "customer_key": "c"}).usage == {
        "tokens": 3,
        "tags": ["a"],
        "latency": None,
    }
    TypeValidator(Usage).validate(plain_usage(usage))
    assert plain_usage({"a": 1}) == {"a": 1}


def test_extra_fields_allow_checks_known_fields_and_lets_others_pass() -> None:
    """With extra_fields="allow" unknown string keys pass; known fields are still typed."""
    validator = TypeValidator({"tokens": "Optional[int]"}, extra_fields="allow")
    assert validator.is_valid({"tokens": 1, "user_email": "a@b.c"})
    assert validator.is_valid({"anything": [1, {"k": None}]})
    assert validator.is_valid({})
    error = validator.find_errors({"tokens": "100", 5: 1})
    assert error is not None
    assert error.errors == {
        "tokens": ["tokens: expected int, got str '100'"],
        "5": ["5: field names must be strings"],
    }
    assert repr(validator) == "TypeValidator({'tokens': 'Optional[int]'}, extra_fields='allow')"
    assert validator != TypeValidator({"tokens": "Optional[int]"})


def test_extra_fields_policy_is_checked() -> None:
    """Only "forbid" and "allow" are policies."""
    with pytest.raises(SchemaError, match="extra_fields must be 'forbid' or 'allow'"):
        TypeValidator({}, extra_fields="sometimes")  # type: ignore[arg-type]


SCHEMA = {
    "n": "int",
    "x": "float",
    "pair": "Tuple[int, str]",
    "maybe": "Optional[bool]",
    "tags": "Dict[str, List[int]]",
}


def test_json_schema_states_our_rules() -> None:
    """bool is not int, a fixed tuple has its exact length, only nullable fields may be omitted."""
    schema = TypeValidator(SCHEMA).json_schema()
    assert schema["required"] == ["n", "x", "pair", "tags"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["pair"]["minItems"] == schema["properties"]["pair"]["maxItems"]
    assert schema["properties"]["maybe"]["x-aicm-type"] == "Optional[bool]"
    check = jsonschema_rs.Draft202012Validator(schema)
    good = {"n": 1, "x": 2, "pair": [1, "a"], "tags": {"a": [1]}}
    assert check.is_valid(good)
    for bad in (
        {**good, "n": True},
        {**good, "x": False},
        {**good, "pair": [1, "a", 2]},
        {**good, "pair": [1]},
        {**good, "maybe": 1},
        {**good, "extra": 1},
        {k: v for k, v in good.items() if k != "n"},
    ):
        assert not check.is_valid(bad), bad
        assert not TypeValidator(SCHEMA).is_valid(bad), bad
    assert check.is_valid({**good, "maybe": None})
    allow = TypeValidator(SCHEMA, extra_fields="allow").json_schema()
    assert allow["additionalProperties"] is True
    json.dumps(schema)  # plain JSON


def test_track_batch_takes_a_model_instance_as_usage() -> None:
    """A pydantic model instance in a track_batch() record is sent as its JSON dump."""
    from aicm_manual import Tracker, UsageConfig
    from aicm_manual.testing import CapturingDelivery

    class Source:
        config = UsageConfig.from_dict(
            {
                "config_id": "cfg",
                "manual_usage_schema": {
                    "tokens": "int",
                    "tags": "List[str]",
                    "latency": "Optional[float]",
                },
                "services": [{"service_id": "svc"}],
            },
            source="memory",
        )

        def get(self, config_id: str) -> UsageConfig:
            return self.config

    delivery = CapturingDelivery()
    with Tracker("cfg", "svc", config_source=Source(), delivery=delivery) as tracker:
        tracker.track_batch([{"usage": Usage(tokens=3, tags=["a"], latency=0.5)}])
    assert [r.usage for r in delivery.records] == [{"tokens": 3, "tags": ["a"], "latency": 0.5}]


def test_track_accepts_a_pydantic_model_instance_as_usage() -> None:
    """track() takes a model instance like its dict, and checks it against the schema."""
    from aicm_manual import Tracker, UsageValidationError
    from aicm_manual.testing import CapturingDelivery

    class Chat(pydantic.BaseModel):
        model: str
        input_tokens: int
        output_tokens: int

    class Wrong(pydantic.BaseModel):
        model: str
        input_tokens: str

    captured = CapturingDelivery()
    schemas = Path(__file__).resolve().parents[2] / "schemas"
    with Tracker("openai-chat", "openai::gpt-4o-mini", schemas_dir=schemas, delivery=captured) as t:
        t.track(Chat(model="gpt-4o-mini", input_tokens=3, output_tokens=4))
        with pytest.raises(UsageValidationError):
            t.track(Wrong(model="gpt-4o-mini", input_tokens="3"))
    assert [r.usage for r in captured.records] == [
        {"model": "gpt-4o-mini", "input_tokens": 3, "output_tokens": 4}
    ]
