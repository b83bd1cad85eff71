"""Reference interpreter for the value semantics in docs/type-strings.md, and error collection.

Pure: no I/O. ``accepts`` is the slow, obviously-correct definition the compiled fast
path is tested against; ``collect_errors`` runs only after the fast path has said no and
reports every problem with its path, e.g. ``breakdown["a"][1]: expected int, got str 'x'``.
Recursion follows the type tree, whose depth the parser caps, never the value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from .nodes import DictOf, ListOf, Scalar, SetOf, TupleOf, TypeNode, UnionOf


def accepts(node: TypeNode, value: object) -> bool:
    """True when ``value`` is valid for ``node``."""
    if isinstance(node, Scalar):
        return _scalar_ok(node.name, value)
    if isinstance(node, UnionOf):
        return any(accepts(m, value) for m in node.members)
    if not shape_ok(node, value):
        return False
    items: Any = value  # shape_ok established the container type
    if isinstance(node, ListOf | SetOf):
        return all(accepts(node.item, item) for item in items)
    if isinstance(node, DictOf):
        return all(accepts(node.key, k) and accepts(node.value, v) for k, v in items.items())
    if node.variadic:
        return all(accepts(node.items[0], item) for item in items)
    return all(accepts(t, item) for t, item in zip(node.items, items, strict=True))


def _scalar_ok(name: str, value: object) -> bool:
    if name == "Any":
        return True
    if name == "None":
        return value is None
    if name == "bool":
        return value is True or value is False
    if name == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "float":
        if isinstance(value, float):
            return math.isfinite(value)
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, str)


def shape_ok(node: ListOf | SetOf | DictOf | TupleOf, value: object) -> bool:
    """The outer check of a container type, ignoring its items."""
    if isinstance(node, ListOf):
        return isinstance(value, list)
    if isinstance(node, SetOf):
        return isinstance(value, set | frozenset | list)
    if isinstance(node, DictOf):
        return isinstance(value, dict)
    if not isinstance(value, tuple | list):
        return False
    return node.variadic or len(value) == len(node.items)


class ErrorSink:
    """Collects messages for one field, formatting at most ``limit`` and counting the rest."""

    __slots__ = ("count", "limit", "messages")

    def __init__(self, limit: int = 20) -> None:
        self.limit = limit
        self.count = 0
        self.messages: list[str] = []

    def add(self, path: str, node: TypeNode, value: object, note: str = "") -> None:
        self.count += 1
        if self.count <= self.limit:
            self.messages.append(f"{path}: expected {node}{note}, got {describe(value)}")

    def add_text(self, message: str) -> None:
        self.count += 1
        if self.count <= self.limit:
            self.messages.append(message)

    def result(self) -> list[str]:
        extra = self.count - len(self.messages)
        return self.messages + ([f"... and {extra} more"] if extra else [])


def describe(value: object) -> str:
    """``str 'x'``, ``int 3``, ``None``: the type and a short repr of a rejected value."""
    if value is None:
        return "None"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def key_path(path: str, key: object) -> str:
    """``path["a"]`` for string keys (JSON quoting), ``path[3]`` otherwise."""
    if isinstance(key, str):
        return f"{path}[{json.dumps(key, ensure_ascii=False)}]"
    return f"{path}[{describe_key(key)}]"


def describe_key(key: object) -> str:
    text = repr(key)
    return text if len(text) <= 60 else text[:57] + "..."


Predicate = Callable[[TypeNode, object], bool]


def collect_errors(
    node: TypeNode, value: object, path: str, sink: ErrorSink, ok: Predicate = accepts
) -> None:
    """Add to ``sink`` every problem of ``value`` against ``node``, each with its path.

    ``ok`` decides validity (the reference ``accepts`` by default; the validator passes its
    compiled checks) so valid items are skipped before any path string is built.
    """
    if isinstance(node, Scalar):
        if not _scalar_ok(node.name, value):
            finite = node.name == "float" and isinstance(value, float)
            sink.add(path, node, value, " (finite)" if finite else "")
        return
    if isinstance(node, UnionOf):
        if any(ok(m, value) for m in node.members):
            return
        # When exactly one member can be meant (the value's container shape, or the one
        # type of an Optional, whose None the value plainly is not), its errors are more
        # useful than "expected Union[...]": descend into it.
        shaped: list[TypeNode] = [
            m for m in node.members if not isinstance(m, Scalar | UnionOf) and shape_ok(m, value)
        ]
        if node.nullable and len(node.members) == 2:
            shaped = [node.members[0]]
        if len(shaped) == 1:
            collect_errors(shaped[0], value, path, sink, ok)
        else:
            sink.add(path, node, value)
        return
    if not shape_ok(node, value):
        if isinstance(node, TupleOf) and isinstance(value, tuple | list):
            sink.add(path, node, value, f" (length {len(node.items)})")
        else:
            sink.add(path, node, value)
        return
    items: Any = value  # shape_ok established the container type
    if isinstance(node, ListOf):
        item_type = node.item
        for i, item in enumerate(items):
            if not ok(item_type, item):
                collect_errors(item_type, item, f"{path}[{i}]", sink, ok)
    elif isinstance(node, SetOf):
        for item in items:
            if not ok(node.item, item):
                collect_errors(node.item, item, f"{path}[*]", sink, ok)
    elif isinstance(node, DictOf):
        for k, v in items.items():
            if not ok(node.key, k):
                sink.add_text(
                    f"{path}: key {describe_key(k)}: expected {node.key}, got {describe(k)}"
                )
            if not ok(node.value, v):
                collect_errors(node.value, v, key_path(path, k), sink, ok)
    else:
        types = node.items * len(items) if node.variadic else node.items
        for i, (t, item) in enumerate(zip(types, items, strict=True)):
            if not ok(t, item):
                collect_errors(t, item, f"{path}[{i}]", sink, ok)
