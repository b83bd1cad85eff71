"""The config format as pydantic models: how a ``schemas/*.json`` file or a ``/configs``
answer is parsed, and the source of the JSON Schema shipped as
``schemas/jsonschema/config.schema.json``.

    document = parse_document(data, source="schemas/heygen.json")   # or ConfigError

Pure. Imported lazily by :meth:`UsageConfig.from_dict`, so ``import aicm_manual`` does not
load pydantic. These models check the shape (keys, types, id and price spellings); what
needs the parsed type strings (a price's field must be numeric and in the schema) is
checked in ``model``. Each field's ``description`` is also the "expected" part of its error
message, so the JSON Schema and the errors say the same thing.
"""

from __future__ import annotations

import json
import typing
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from ..errors import ConfigError

SCHEMA_ID = "https://aicm-manual.dev/schemas/config.schema.json"
_ID = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}$"
_SERVICE = r"^(?:[A-Za-z0-9][A-Za-z0-9._:@/-]{0,127}|[A-Za-z0-9][A-Za-z0-9._@/-]{0,120}::\*)$"
_DECIMAL = r"^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$"

TypeString = Annotated[
    str, Field(description="a type string such as 'int' or 'Optional[List[str]]'")
]
Text = Annotated[str, Field(min_length=1, description="a non-empty string")]


class _Document(BaseModel):
    # strict: a JSON document says what it means; "3" is not a number, 1 is not a string.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class RateDocument(_Document):
    """``price`` in the config's currency per ``per`` units of a usage field."""

    price: str = Field(
        pattern=_DECIMAL,
        description="a finite, non-negative decimal string like '0.15' "
        "(a JSON number such as 0.1 is already inexact)",
    )
    per: int = Field(default=1, ge=1, description="a positive integer")


class GenaiPricesDocument(_Document):
    """Price LLM token usage with the genai-prices data of ``provider``/``model``."""

    provider: Text
    model: Text | None = Field(
        default=None,
        description="the model; only a 'vendor::*' service may omit it (the model is then "
        "the part of the record's service_id after '::')",
    )


class PricingDocument(_Document):
    """Unit prices per usage field, or a genai-prices reference: exactly one of them."""

    model_config = ConfigDict(
        json_schema_extra={"oneOf": [{"required": ["unit"]}, {"required": ["genai_prices"]}]}
    )

    currency: str = Field(
        default="USD", pattern=r"^[A-Z]{3}$", description="a 3-letter ISO 4217 code"
    )
    unit: dict[str, RateDocument] | None = Field(
        default=None,
        min_length=1,
        description="an object mapping numeric usage fields to {'price', 'per'}",
    )
    genai_prices: GenaiPricesDocument | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> PricingDocument:
        if (self.unit is None) == (self.genai_prices is None):
            raise ValueError("needs exactly one of 'unit' and 'genai_prices'")
        return self


class ServiceDocument(_Document):
    service_id: str = Field(
        pattern=_SERVICE,
        description="a service id (1-128 letters, digits or ._:@/- starting with a letter or "
        "digit) or a 'vendor::*' pattern",
    )
    pricing: PricingDocument | None = None
    description: str | None = None


class ConfigDocument(_Document):
    """One usage config: the schema its records follow and the services it prices."""

    model_config = ConfigDict(
        title="aicm-manual usage config", json_schema_extra={"$id": SCHEMA_ID}
    )

    schema_ref: str | None = Field(
        default=None,
        alias="$schema",
        description="the JSON Schema of this file, for editors (ignored otherwise)",
    )
    config_id: str = Field(
        pattern=_ID,
        description="1-128 letters, digits or ._:@/- starting with a letter or digit",
    )
    description: str | None = None
    manual_usage_schema: dict[str, TypeString] = Field(
        description="an object mapping field names to type strings"
    )
    extra_fields: Literal["forbid", "allow"] = Field(
        default="forbid",
        description="'forbid' (usage fields not in manual_usage_schema are an error) or "
        "'allow' (they are stored unchecked and unpriced)",
    )
    services: list[ServiceDocument] = Field(min_length=1, description="a non-empty list")
    handling_config: dict[str, Any] | None = Field(
        default=None,
        description="an object: a CostManager's tracked methods (with 'tracked_methods'), "
        "or free-form handling notes",
    )
    version: str | int | None = Field(default=None, description="a string (or an integer)")
    updated_at: str | None = None


def parse_document(data: object, *, source: str) -> ConfigDocument:
    """Check ``data`` against the format; ConfigError names ``source`` and every problem
    with its path, the value found and what was expected."""
    try:
        return ConfigDocument.model_validate(data)
    except ValidationError as exc:
        where = source
        if isinstance(data, dict):
            config_id = data.get("config_id")
            if isinstance(config_id, str) and config_id:
                where = f"{source} (config {config_id!r})"
        problems = _problems(exc, data)
    if len(problems) == 1:
        raise ConfigError(f"{where}: {problems[0]}")
    lines = "\n".join(f"  - {p}" for p in problems)
    raise ConfigError(f"{where}: config is invalid ({len(problems)} problems):\n{lines}")


class _OmitNotNull(GenerateJsonSchema):
    """Optional keys are written as "omit it" rather than "null": the loader takes null for
    an omitted key, but an editor pointing at ``anyOf [..., null]`` hides the real problem
    inside the object ("not valid under any of the schemas")."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])


def config_json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file (what ``schemas/jsonschema/config.schema.json``
    holds)."""
    schema = ConfigDocument.model_json_schema(by_alias=True, schema_generator=_OmitNotNull)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def config_json_schema_text() -> str:
    return json.dumps(config_json_schema(), indent=2, sort_keys=False) + "\n"


def problems_of(exc: ValidationError, data: object) -> list[str]:
    """Every problem of a failed validation, each with its path, value and expectation."""
    return _problems(exc, data)


def _problems(exc: ValidationError, data: object) -> list[str]:
    if not isinstance(data, dict):
        return [f"a config must be a JSON object, got {type(data).__name__}"]
    unknown: dict[tuple[str | int, ...], list[str]] = {}
    out: list[str] = []
    seen: set[str] = set()
    for error in exc.errors(include_url=False):
        kind = error["type"]
        if kind == "extra_forbidden":
            unknown.setdefault(error["loc"][:-1], []).append(str(error["loc"][-1]))
            continue
        path, expected, _ = _locate(error["loc"])
        if path in seen:
            continue  # one problem per place: a union reports each member's failure
        seen.add(path)
        if kind == "missing":
            out.append(f"{path}: missing" + (f" (expected {expected})" if expected else ""))
        elif kind == "value_error":
            out.append(f"{path or 'config'}: {error['ctx']['error']}")
        elif expected:
            out.append(f"{path} {_short(error.get('input'))} must be {expected}")
        else:
            out.append(f"{path} {_short(error.get('input'))}: {error['msg']}")
    for parent_loc, names in reversed(unknown.items()):
        parent, _, known = _locate(parent_loc)
        label = f"{parent}: unknown keys" if parent else "unknown keys"
        out.insert(0, f"{label} {sorted(names)} (known: {known})")
    return out


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _locate(loc: tuple[str | int, ...]) -> tuple[str, str | None, list[str]]:
    """(readable path, the expected-value description, the known keys there) of a pydantic
    error location."""
    path = ""
    annotation: Any = ConfigDocument
    description: str | None = None
    for part in loc:
        annotation, meta = _unwrap(annotation)
        description = meta or description
        origin = typing.get_origin(annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            info = annotation.model_fields.get(str(part))
            info = info or next(
                (f for f in annotation.model_fields.values() if f.alias == part), None
            )
            if info is None:
                path = f"{path}.{part}" if path else str(part)
                description = None
                continue
            path = f"{path}.{part}" if path else str(part)
            annotation, description = info.annotation, info.description
        elif origin is list and isinstance(part, int):
            path = f"{path}[{part}]"
            annotation, description = typing.get_args(annotation)[0], None
        elif origin is dict:
            path = f"{path}[{part!r}]"
            annotation, description = typing.get_args(annotation)[1], None
        # else: a union member's tag in the location, not a place in the document
    annotation, meta = _unwrap(annotation)
    known: list[str] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        known = sorted(f.alias or n for n, f in annotation.model_fields.items())
    return path, meta or description, known


def _unwrap(annotation: Any) -> tuple[Any, str | None]:
    """The annotation without Optional and Annotated, and an Annotated description."""
    description = None
    if typing.get_origin(annotation) is Annotated:
        base, *meta = typing.get_args(annotation)
        for item in meta:
            if isinstance(item, FieldInfo) and item.description:
                description = item.description
        annotation = base
    args = typing.get_args(annotation)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return _unwrap(rest[0])[0], description
    return annotation, description
