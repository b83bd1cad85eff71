"""Compile a record schema into one specialised Python function: the validator's fast path.

Pure: no I/O. The generated source is built only from the whitelisted tree: the node
kinds fix every line of code, field names enter only through ``repr()`` of a ``str``, and
all other names are generated identifiers. No user text is ever executed. The function
answers only "valid or not"; error messages come from ``_check`` after it says no, so the
valid path does no interpretation per value.

    check = compile_record_check([("tokens", INT)])
    check({"tokens": 3})  # True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import CodeType
from typing import Any

from .nodes import (
    ANY,
    NONE,
    DictOf,
    ListOf,
    Scalar,
    SetOf,
    TypeNode,
    UnionOf,
    is_nullable,
    union,
)

RecordCheck = Callable[[object], bool]

# Python allows 20 statically nested blocks; past this many, a container gets a helper
# function of its own instead of an inline loop.
_INLINE_BLOCKS = 8
_MISSING = object()
_GLOBALS: dict[str, object] = {
    "int": int,
    "float": float,
    "str": str,
    "bool": bool,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "frozenset": frozenset,
    "isinstance": isinstance,
    "type": type,
    "len": len,
    "_M": _MISSING,
    "_SETLIKE": (set, frozenset, list),
    "_SEQ": (tuple, list),
}
# Every generated function takes these as parameter defaults: a local load is cheaper than
# a global one.
_LOCALS = ", ".join(f"{name}={name}" for name in _GLOBALS)


class _Generator:
    def __init__(self, fail: str = "return False") -> None:
        self.fail = fail  # the statement that reports an invalid value
        self.helpers: list[str] = []
        self.helper_names: dict[TypeNode, str] = {}
        self.counter = 0

    def var(self) -> str:
        self.counter += 1
        return f"v{self.counter}"

    def expr(self, node: TypeNode, v: str) -> str:
        """A boolean expression that is true when ``v`` is valid for ``node``."""
        if isinstance(node, Scalar):
            return _scalar_expr(node.name, v)
        if isinstance(node, UnionOf):
            return "(" + " or ".join(self.expr(m, v) for m in node.members) + ")"
        return f"{self.helper(node)}({v})"

    def helper(self, node: TypeNode) -> str:
        name = self.helper_names.get(node)
        if name is None:
            name = self.helper_names[node] = f"_h{len(self.helper_names)}"
            outer, self.fail = self.fail, "return False"  # helpers answer with a bool
            body = self.stmts(node, "x", 1, 1)
            self.fail = outer
            self.helpers.append(
                "\n".join([f"def {name}(x, {_LOCALS}):", *body, "    return True", ""])
            )
        return name

    def stmts(self, node: TypeNode, v: str, indent: int, blocks: int) -> list[str]:
        """Statements that run ``self.fail`` when ``v`` is invalid for ``node``."""
        pad = "    " * indent
        fail = self.fail
        if node == ANY:
            return []
        if isinstance(node, Scalar | UnionOf) or blocks >= _INLINE_BLOCKS:
            return [f"{pad}if not {self.expr(node, v)}: {fail}"]
        if isinstance(node, ListOf | SetOf):
            kind = "list" if isinstance(node, ListOf) else "_SETLIKE"
            out = [f"{pad}if not isinstance({v}, {kind}): {fail}"]
            if node.item != ANY:
                x = self.var()
                out.append(f"{pad}for {x} in {v}:")
                out += self.stmts(node.item, x, indent + 1, blocks + 1)
            return out
        if isinstance(node, DictOf):
            out = [f"{pad}if not isinstance({v}, dict): {fail}"]
            k, w = self.var(), self.var()
            if node.key != ANY and node.value != ANY:
                out.append(f"{pad}for {k}, {w} in {v}.items():")
            elif node.key != ANY:
                out.append(f"{pad}for {k} in {v}:")
            elif node.value != ANY:
                out.append(f"{pad}for {w} in {v}.values():")
            out += self.stmts(node.key, k, indent + 1, blocks + 1)
            out += self.stmts(node.value, w, indent + 1, blocks + 1)
            return out
        if node.variadic:
            out = [f"{pad}if not isinstance({v}, _SEQ): {fail}"]
            if node.items[0] != ANY:
                x = self.var()
                out.append(f"{pad}for {x} in {v}:")
                out += self.stmts(node.items[0], x, indent + 1, blocks + 1)
            return out
        out = [f"{pad}if not isinstance({v}, _SEQ) or len({v}) != {len(node.items)}: {fail}"]
        for i, item in enumerate(node.items):
            if item != ANY:
                x = self.var()
                out.append(f"{pad}{x} = {v}[{i}]")
                out += self.stmts(item, x, indent, blocks)
        return out


def _scalar_expr(name: str, v: str) -> str:
    if name == "int":
        return f"(type({v}) is int or (isinstance({v}, int) and type({v}) is not bool))"
    if name == "float":
        # x - x == 0.0 is False exactly for NaN and the infinities.
        return (
            f"((type({v}) is float and {v} - {v} == 0.0) or type({v}) is int"
            f" or (isinstance({v}, float) and float({v}) - float({v}) == 0.0)"
            f" or (isinstance({v}, int) and type({v}) is not bool))"
        )
    if name == "str":
        return f"isinstance({v}, str)"
    if name == "bool":
        return f"({v} is True or {v} is False)"
    if name == "None":
        return f"{v} is None"
    return "True"  # Any


def record_source(fields: Sequence[tuple[str, TypeNode]], allow_extra: bool = False) -> str:
    """The Python source of the record check for ``fields`` (name, type) in order.

    With ``allow_extra`` keys beyond ``fields`` are accepted (their values unchecked, as
    ``Any``) as long as every key is a string.

    It defines ``check(p)``, which returns the global ``_OK`` for a valid record and
    ``_fail(p)`` otherwise; :func:`bind` supplies both, so one compiled code object serves
    as a boolean check (``False``/``True``) and as ``validate`` (raise/``None``).
    """
    gen = _Generator(fail="return _fail(p)")
    fail = gen.fail
    required = [(n, t) for n, t in fields if not is_nullable(t)]
    optional = [(n, t) for n, t in fields if is_nullable(t)]
    body = [
        f"def check(p, _fail=_fail, _OK=_OK, {_LOCALS}):",
        f"    if type(p) is not dict: {fail}",
    ]
    names: dict[str, str] = {}
    if required:
        body.append("    try:")
        for name, _ in required:
            names[name] = gen.var()
            body.append(f"        {names[name]} = p[{name!r}]")
        body += ["    except KeyError:", f"        {fail}"]
        for name, node in required:
            body += gen.stmts(node, names[name], 1, 1)
    count = str(len(required))
    if optional:
        body.append(f"    n = {count}")
        count = "n"
        for name, node in optional:
            v = gen.var()
            body += [f"    {v} = p.get({name!r}, _M)", f"    if {v} is not _M:", "        n += 1"]
            if node == NONE:
                body.append(f"        if {v} is not None: {fail}")
            elif isinstance(node, UnionOf):
                body.append(f"        if {v} is not None:")
                body += gen.stmts(union(node.members[:-1]), v, 3, 2)
    if allow_extra:
        body += [
            f"    if len(p) != {count}:",
            "        for k in p:",
            f"            if type(k) is not str: {fail}",
        ]
    else:
        body.append(f"    if len(p) != {count}: {fail}")
    body.append("    return _OK")
    return "\n".join([*gen.helpers, "\n".join(body), ""])


def compile_record(fields: Sequence[tuple[str, TypeNode]], allow_extra: bool = False) -> CodeType:
    """Compile ``fields`` into a code object for :func:`bind`."""
    for name, _ in fields:
        if type(name) is not str:  # repr() of anything else could be arbitrary code
            raise TypeError(f"field names must be str, got {type(name).__name__}")
    return compile(record_source(fields, allow_extra), "<aicm_manual record check>", "exec")


def bind(code: CodeType, fail: Callable[[object], Any], ok: object) -> Callable[[object], Any]:
    """The record function of ``code``: returns ``ok`` for a valid record, else ``fail(p)``."""
    namespace = dict(_GLOBALS, _fail=fail, _OK=ok)
    exec(code, namespace)
    function: Callable[[object], Any] = namespace["check"]  # type: ignore[assignment]
    return function


def _false(_: object) -> bool:
    return False


def record_check(code: CodeType) -> RecordCheck:
    """The record function of ``code`` as a boolean check."""
    return bind(code, _false, True)


def compile_record_check(
    fields: Sequence[tuple[str, TypeNode]], allow_extra: bool = False
) -> RecordCheck:
    """A function that returns True exactly for valid records."""
    return record_check(compile_record(fields, allow_extra))


def compile_node_check(node: TypeNode) -> RecordCheck:
    """Compile one type into a function that returns True exactly for valid values.

    The error collector uses these to skip valid items cheaply and spend its time only
    on the invalid ones.
    """
    gen = _Generator()
    body = [f"def check(x, {_LOCALS}):", *gen.stmts(node, "x", 1, 1), "    return True", ""]
    code = compile("\n".join([*gen.helpers, *body]), "<aicm_manual type check>", "exec")
    return bind(code, _false, True)
