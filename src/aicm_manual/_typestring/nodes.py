"""The type tree: immutable nodes a type string parses into, with a canonical display form.

Pure: no I/O. Nodes are frozen, hashable and compare structurally, so two spellings of one
type (``Optional[int]``, ``int | None``, ``Union[int, None]``) produce equal trees, and
``str(node)`` is the canonical spelling that parses back to an equal tree.

Canonical form: generics are written ``List[...]``, ``Dict[...]``, ``Set[...]``,
``Tuple[...]``; an unparameterised container (or one whose arguments are all ``Any``) is
written ``list``, ``dict``, ``set`` or ``tuple``; a union is flattened and de-duplicated in
first-seen order with ``None`` last, written ``Optional[T]`` when ``None`` joins one other
member and ``Union[...]`` otherwise; a union containing ``Any`` is ``Any``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, TypeAlias

ScalarName = Literal["int", "float", "str", "bool", "None", "Any"]
SCALAR_NAMES: frozenset[str] = frozenset({"int", "float", "str", "bool", "None", "Any"})


@dataclass(frozen=True, slots=True)
class Scalar:
    name: ScalarName

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class ListOf:
    item: TypeNode

    def __str__(self) -> str:
        return "list" if self.item == ANY else f"List[{self.item}]"


@dataclass(frozen=True, slots=True)
class SetOf:
    item: TypeNode

    def __str__(self) -> str:
        return "set" if self.item == ANY else f"Set[{self.item}]"


@dataclass(frozen=True, slots=True)
class DictOf:
    key: TypeNode
    value: TypeNode

    def __str__(self) -> str:
        if self.key == ANY and self.value == ANY:
            return "dict"
        return f"Dict[{self.key}, {self.value}]"


@dataclass(frozen=True, slots=True)
class TupleOf:
    """``Tuple[A, B]`` (fixed length) or, with ``variadic``, ``Tuple[T, ...]`` (one item)."""

    items: tuple[TypeNode, ...]
    variadic: bool = False

    def __post_init__(self) -> None:
        if not self.items or (self.variadic and len(self.items) != 1):
            raise ValueError("TupleOf needs one item when variadic, at least one otherwise")

    def __str__(self) -> str:
        if self.variadic:
            return "tuple" if self.items[0] == ANY else f"Tuple[{self.items[0]}, ...]"
        return f"Tuple[{', '.join(map(str, self.items))}]"


@dataclass(frozen=True, slots=True)
class UnionOf:
    """Two or more members, flattened, de-duplicated, no ``Any``, ``None`` last. Build with
    :func:`union`, which normalises."""

    members: tuple[TypeNode, ...]

    @property
    def nullable(self) -> bool:
        return self.members[-1] == NONE

    def __str__(self) -> str:
        if self.nullable:
            rest = self.members[:-1]
            if len(rest) == 1:
                return f"Optional[{rest[0]}]"
        return f"Union[{', '.join(map(str, self.members))}]"


TypeNode: TypeAlias = Scalar | ListOf | SetOf | DictOf | TupleOf | UnionOf
NODE_TYPES = (Scalar, ListOf, SetOf, DictOf, TupleOf, UnionOf)

INT = Scalar("int")
FLOAT = Scalar("float")
STR = Scalar("str")
BOOL = Scalar("bool")
NONE = Scalar("None")
ANY = Scalar("Any")


def union(members: Iterable[TypeNode]) -> TypeNode:
    """Normalise a union: flatten nested unions, drop duplicates, move None last; a
    single member stands alone and Any absorbs everything."""
    flat: list[TypeNode] = []
    for member in members:
        for m in member.members if isinstance(member, UnionOf) else (member,):
            if m == ANY:
                return ANY
            if m not in flat:
                flat.append(m)
    if NONE in flat:
        flat.remove(NONE)
        flat.append(NONE)
    if not flat:
        raise ValueError("a union needs at least one member")
    return flat[0] if len(flat) == 1 else UnionOf(tuple(flat))


def is_nullable(node: TypeNode) -> bool:
    """True when None is a valid value at the top level (the field may be omitted)."""
    return node in (NONE, ANY) or (isinstance(node, UnionOf) and node.nullable)


def depth(node: TypeNode) -> int:
    """Bracket nesting depth: ``int`` is 0, ``List[int]`` is 1."""
    if isinstance(node, Scalar):
        return 0
    if isinstance(node, ListOf | SetOf):
        children: tuple[TypeNode, ...] = (node.item,)
    elif isinstance(node, DictOf):
        children = (node.key, node.value)
    elif isinstance(node, TupleOf):
        children = node.items
    else:
        # A union is one level because its canonical form writes brackets, even when the
        # source spelled it ``int | str``; the limit must hold for what we render.
        children = node.members
    return 1 + max(depth(c) for c in children)
