"""Convert Python typing objects (``int``, ``List[str]``, ``int | None``) into the type tree.

Pure: no I/O. Only the forms the type-string language can express are accepted; anything
else (``Literal``, ``FrozenSet``, user classes, ``Tuple[()]``) is a SchemaError naming the
object. A string or ``ForwardRef`` inside is parsed by our own parser, never evaluated.
"""

from __future__ import annotations

import typing
from typing import Any, ForwardRef

import typing_inspect

from ..errors import SchemaError
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
    depth,
)
from .nodes import union as make_union
from .parser import MAX_DEPTH, parse

_SCALARS: dict[object, TypeNode] = {
    int: INT,
    float: FLOAT,
    str: STR,
    bool: BOOL,
    None: NONE,
    type(None): NONE,
    Any: ANY,
}
_BARE: dict[object, TypeNode] = {
    list: ListOf(ANY),
    typing.List: ListOf(ANY),  # noqa: UP006  # the typing alias is what users pass
    dict: DictOf(ANY, ANY),
    typing.Dict: DictOf(ANY, ANY),  # noqa: UP006
    set: SetOf(ANY),
    typing.Set: SetOf(ANY),  # noqa: UP006
    tuple: TupleOf((ANY,), variadic=True),
    typing.Tuple: TupleOf((ANY,), variadic=True),  # noqa: UP006
}


def from_typing(tp: object) -> TypeNode:
    """Convert a typing object (or a type string) into the type tree."""
    node = _convert(tp, 0)
    if depth(node) > MAX_DEPTH:
        raise SchemaError(f"type nested deeper than {MAX_DEPTH} levels: {tp!r}")
    return node


def _convert(tp: object, level: int) -> TypeNode:
    if level > MAX_DEPTH:
        raise SchemaError(f"type nested deeper than {MAX_DEPTH} levels")
    if isinstance(tp, str):
        return parse(tp)
    if isinstance(tp, ForwardRef):
        return parse(tp.__forward_arg__)
    try:
        if tp in _SCALARS:
            return _SCALARS[tp]
        if tp in _BARE:
            return _BARE[tp]
    except TypeError:  # unhashable objects are not types we know
        raise SchemaError(f"unsupported type {tp!r}") from None
    if typing_inspect.is_union_type(tp):
        members = typing_inspect.get_args(tp, evaluate=True)
        return make_union(_convert(m, level + 1) for m in members)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list and len(args) == 1:
        return ListOf(_convert(args[0], level + 1))
    if origin is set and len(args) == 1:
        return SetOf(_convert(args[0], level + 1))
    if origin is dict and len(args) == 2:
        return DictOf(_convert(args[0], level + 1), _convert(args[1], level + 1))
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return TupleOf((_convert(args[0], level + 1),), variadic=True)
        if Ellipsis not in args:
            return TupleOf(tuple(_convert(a, level + 1) for a in args))
    raise SchemaError(
        f"unsupported type {tp!r}: use int, float, str, bool, None, Any, List, Dict, Tuple, "
        "Set, Optional or Union"
    )
