"""The JSON Schema (draft 2020-12) of a usage schema: our rules, written for other tools.

    record_schema((("tokens", INT),), allow_extra=False)
    # {"type": "object", "properties": {"tokens": {"type": "integer", ...}}, ...}

Pure: no I/O. JSON Schema cannot say everything the validator checks, so each property
also carries its canonical type string (``x-aicm-type``) and a description of the rule
that JSON Schema leaves out (an int written ``3.0``, non-finite floats, non-string keys).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .nodes import (
    ANY,
    BOOL,
    FLOAT,
    INT,
    NONE,
    STR,
    DictOf,
    ListOf,
    SetOf,
    TupleOf,
    TypeNode,
    UnionOf,
    is_nullable,
)

DIALECT = "https://json-schema.org/draft/2020-12/schema"

_SCALARS: dict[TypeNode, dict[str, Any]] = {
    # JSON Schema's "integer" already excludes booleans; it would accept 3.0, which we do not.
    INT: {"type": "integer", "description": "an integer (never a boolean, never 3.0)"},
    FLOAT: {"type": "number", "description": "a finite number (never a boolean, NaN or inf)"},
    STR: {"type": "string"},
    BOOL: {"type": "boolean"},
    NONE: {"type": "null"},
    ANY: {},
}


def node_schema(node: TypeNode) -> dict[str, Any]:
    """The JSON Schema of one type."""
    scalar = _SCALARS.get(node)
    if scalar is not None:
        return dict(scalar)
    if isinstance(node, ListOf):
        return {"type": "array", "items": node_schema(node.item)}
    if isinstance(node, SetOf):
        return {
            "type": "array",
            "items": node_schema(node.item),
            "description": "a set, given as a JSON array",
        }
    if isinstance(node, TupleOf):
        if node.variadic:
            return {"type": "array", "items": node_schema(node.items[0])}
        size = len(node.items)
        return {
            "type": "array",
            "prefixItems": [node_schema(item) for item in node.items],
            "items": False,
            "minItems": size,
            "maxItems": size,
        }
    if isinstance(node, DictOf):
        out: dict[str, Any] = {"type": "object"}
        if node.value != ANY:
            out["additionalProperties"] = node_schema(node.value)
        if not _string_keys(node.key):
            # JSON object keys are strings, so a JSON document can only hold an empty one.
            out["maxProperties"] = 0
            out["description"] = f"keys must be {node.key}, which JSON cannot carry"
        return out
    assert isinstance(node, UnionOf)
    return {"anyOf": [node_schema(member) for member in node.members]}


def _string_keys(key: TypeNode) -> bool:
    if isinstance(key, UnionOf):
        return any(_string_keys(member) for member in key.members)
    return key in (STR, ANY)


def record_schema(
    fields: Sequence[tuple[str, TypeNode]], *, allow_extra: bool = False
) -> dict[str, Any]:
    """The JSON Schema of a usage payload with ``fields``: only nullable fields may be
    omitted; extra keys are allowed only with ``allow_extra``."""
    properties = {}
    for name, node in fields:
        properties[name] = {**node_schema(node), "x-aicm-type": str(node)}
    return {
        "$schema": DIALECT,
        "type": "object",
        "properties": properties,
        "required": [name for name, node in fields if not is_nullable(node)],
        "additionalProperties": allow_extra,
    }
