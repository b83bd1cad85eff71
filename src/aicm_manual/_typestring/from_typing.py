"""Convert Python typing objects (``int``, ``List[str]``, ``int | None``) into the type tree.

Pure: no I/O. Only the forms the type-string language can express are accepted; anything
else (``Literal``, ``FrozenSet``, user classes, ``Tuple[()]``) is a SchemaError naming the
object. A string or ``ForwardRef`` inside a typing object is parsed by our own parser,
never evaluated.

A whole schema may be a class (:func:`schema_of_class`): a pydantic model, read through
``model_fields`` (annotations pydantic itself resolved when the class was built), or a
``TypedDict``, read through ``__annotations__``. Annotations still held as strings there
are refused, never evaluated (``typing.get_type_hints`` would run them as code). pydantic
is never imported here: a model class is recognised by its attributes.

``typing.get_origin``/``get_args`` handle the generics. typing-inspect is kept for what
they do not answer in one call: whether an object is a union in either spelling
(``Union[A, B]`` and ``A | B`` have different origins) and whether it is a ``NewType``
(whose base type it stands for).
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
    is_nullable,
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


def _convert(tp: object, level: int, strings: bool = True) -> TypeNode:
    if level > MAX_DEPTH:
        raise SchemaError(f"type nested deeper than {MAX_DEPTH} levels")
    if isinstance(tp, str | ForwardRef):
        text = tp if isinstance(tp, str) else tp.__forward_arg__
        if not strings:
            raise SchemaError(
                f"string annotation {text!r} is never evaluated: define the class without "
                "'from __future__ import annotations' (or with real types), or pass a dict "
                "of type strings"
            )
        return parse(text)
    if typing_inspect.is_new_type(tp):
        return _convert(tp.__supertype__, level, strings)  # type: ignore[attr-defined]
    try:
        if tp in _SCALARS:
            return _SCALARS[tp]
        if tp in _BARE:
            return _BARE[tp]
    except TypeError:  # unhashable objects are not types we know
        raise SchemaError(f"unsupported type {tp!r}") from None
    if typing_inspect.is_union_type(tp):
        members = typing_inspect.get_args(tp, evaluate=True)
        return make_union(_convert(m, level + 1, strings) for m in members)
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list and len(args) == 1:
        return ListOf(_convert(args[0], level + 1, strings))
    if origin is set and len(args) == 1:
        return SetOf(_convert(args[0], level + 1, strings))
    if origin is dict and len(args) == 2:
        return DictOf(_convert(args[0], level + 1, strings), _convert(args[1], level + 1, strings))
    if origin is tuple and args:
        if len(args) == 2 and args[1] is Ellipsis:
            return TupleOf((_convert(args[0], level + 1, strings),), variadic=True)
        if Ellipsis not in args:
            return TupleOf(tuple(_convert(a, level + 1, strings) for a in args))
    if origin is typing.Annotated:
        raise SchemaError(
            f"unsupported type {tp!r}: constraints in Annotated[...] cannot be expressed by a "
            "usage schema, so they would be silently skipped"
        )
    if _is_schema_class(tp):
        raise SchemaError(
            f"unsupported type {tp!r}: a nested model or TypedDict; usage fields hold JSON "
            "values, so declare it Dict[str, ...]"
        )
    raise SchemaError(
        f"unsupported type {tp!r}: use int, float, str, bool, None, Any, List, Dict, Tuple, "
        "Set, Optional or Union"
    )


def _is_pydantic_model(cls: object) -> bool:
    return (
        isinstance(cls, type)
        and hasattr(cls, "__pydantic_fields__")
        and hasattr(cls, "model_fields")
    )


def _is_typeddict(cls: object) -> bool:
    # typing and typing_extensions each build their own TypedDict classes: both are dict
    # subclasses carrying the key sets.
    return isinstance(cls, type) and issubclass(cls, dict) and hasattr(cls, "__required_keys__")


def _is_schema_class(cls: object) -> bool:
    return _is_pydantic_model(cls) or _is_typeddict(cls)


def schema_of_class(cls: type) -> dict[str, TypeNode]:
    """The schema (field -> tree) of a pydantic model class or a ``TypedDict``.

    Every field is required unless its type is nullable, as for a schema of type strings;
    a field that may be omitted (a default, ``NotRequired``, ``total=False``) must therefore
    be nullable, else a SchemaError says so rather than change its meaning.
    """
    if _is_pydantic_model(cls):
        if getattr(cls, "__pydantic_complete__", True) is False:
            raise SchemaError(
                f"pydantic model {cls.__name__} is not fully defined (unresolved forward "
                "references); call its model_rebuild() first"
            )
        fields = cls.model_fields  # type: ignore[attr-defined]
        found = [
            (name, info.annotation, info.metadata, not info.is_required())
            for name, info in fields.items()
        ]
    elif _is_typeddict(cls):
        required = cls.__required_keys__  # type: ignore[attr-defined]
        found = []
        for name, annotation in cls.__annotations__.items():
            # Required/NotRequired by name: typing has them from 3.11 and
            # typing_extensions has its own.
            marker = getattr(typing.get_origin(annotation), "_name", None)
            omittable = name not in required
            if marker in ("Required", "NotRequired"):
                omittable = marker == "NotRequired"
                (annotation,) = typing.get_args(annotation)
            found.append((name, annotation, [], omittable))
    else:
        raise SchemaError(
            f"a schema class must be a pydantic model or a TypedDict, got {cls.__name__}"
        )
    out: dict[str, TypeNode] = {}
    for name, annotation, metadata, omittable in found:
        here = f"{cls.__name__}.{name}"
        if metadata:
            raise SchemaError(
                f"{here}: constraints {list(metadata)!r} cannot be expressed by a usage "
                "schema, so they would be silently skipped"
            )
        try:
            node = _convert(annotation, 0, strings=False)
        except SchemaError as exc:
            raise SchemaError(f"{here}: {exc}") from None
        if depth(node) > MAX_DEPTH:
            raise SchemaError(f"{here}: type nested deeper than {MAX_DEPTH} levels")
        if omittable and not is_nullable(node):
            raise SchemaError(
                f"{here} may be omitted (a default or NotRequired) but its type {node} is "
                f"not nullable; a usage schema lets only nullable fields be omitted: "
                f"declare it Optional[{node}] or make it required"
            )
        out[name] = node
    return out
