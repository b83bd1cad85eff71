"""Tokenizer and recursive-descent parser for the type-string language (docs/type-strings.md).

Pure: no I/O, no ``eval``. Every failure is a :class:`TypeStringError` with the position
of the offending token. Input is capped at 1000 characters and 32 levels of nesting, so
recursion depth is bounded and no input can raise RecursionError.

    >>> str(parse("typing.Dict[str, int | None]"))
    'Dict[str, Optional[int]]'
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import TypeStringError
from .nodes import (
    ANY,
    SCALAR_NAMES,
    DictOf,
    ListOf,
    Scalar,
    ScalarName,
    SetOf,
    TupleOf,
    TypeNode,
    depth,
    union,
)

MAX_LENGTH = 1000
MAX_DEPTH = 32

_CONTAINERS = {
    "list": "List",
    "List": "List",
    "dict": "Dict",
    "Dict": "Dict",
    "tuple": "Tuple",
    "Tuple": "Tuple",
    "set": "Set",
    "Set": "Set",
}
_SPECIAL = frozenset({"Optional", "Union"})
_ARITY = {"List": 1, "Set": 1, "Optional": 1, "Dict": 2}
_WHITESPACE = frozenset(" \t\r\n\f\v")
_PUNCT = frozenset("[],|")
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = _NAME_START | frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "name", "[", "]", ",", "|", "...", ".", "end"
    value: str
    pos: int


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "the end"
    return f"{tok.value!r}"


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
        elif c in _PUNCT:
            tokens.append(_Token(c, c, i))
            i += 1
        elif c == ".":
            if text.startswith("...", i):
                tokens.append(_Token("...", "...", i))
                i += 3
            else:
                tokens.append(_Token(".", ".", i))
                i += 1
        elif c in _NAME_START:
            j = i + 1
            while j < n and text[j] in _NAME_CHARS:
                j += 1
            tokens.append(_Token("name", text[i:j], i))
            i = j
        else:
            raise TypeStringError(f"unexpected character {c!r}", text, i)
    tokens.append(_Token("end", "", n))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.open_brackets: list[int] = []

    def error(self, reason: str, pos: int) -> TypeStringError:
        return TypeStringError(reason, self.text, pos)

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def parse(self) -> TypeNode:
        if self.peek().kind == "end":
            raise self.error("empty type string", 0)
        node = self.type_()
        tok = self.peek()
        if tok.kind == "]":
            raise self.error("unmatched ']'", tok.pos)
        if tok.kind != "end":
            raise self.error(f"unexpected {_describe(tok)} after the type", tok.pos)
        return node

    def type_(self) -> TypeNode:
        start = self.peek().pos
        members = [self.primary()]
        while self.peek().kind == "|":
            self.take()
            members.append(self.primary())
        if len(members) == 1:
            return members[0]
        return self.checked(union(members), start)

    def checked(self, node: TypeNode, pos: int) -> TypeNode:
        if depth(node) > MAX_DEPTH:
            raise self.error(f"type nested deeper than {MAX_DEPTH} levels", pos)
        return node

    def primary(self) -> TypeNode:
        tok = self.take()
        if tok.kind != "name":
            raise self.error(f"expected a type name, got {_describe(tok)}", tok.pos)
        if tok.value == "typing":
            dot = self.take()
            if dot.kind != ".":
                raise self.error(f"expected '.' after 'typing', got {_describe(dot)}", dot.pos)
            tok = self.take()
            if tok.kind != "name":
                raise self.error(f"expected a type name, got {_describe(tok)}", tok.pos)
        name = tok.value
        has_args = self.peek().kind == "["
        if name in SCALAR_NAMES:
            if has_args:
                raise self.error(f"{name!r} takes no type arguments", self.peek().pos)
            scalar: ScalarName = name  # type: ignore[assignment]  # checked against SCALAR_NAMES
            return Scalar(scalar)
        if name in _CONTAINERS:
            generic = _CONTAINERS[name]
            if not has_args:
                return _build(generic, [ANY] * _ARITY.get(generic, 1), variadic=generic == "Tuple")
        elif name in _SPECIAL:
            generic = name
            if not has_args:
                raise self.error(f"{name!r} needs type arguments in brackets", self.peek().pos)
        else:
            if self.peek().kind == ".":
                raise self.error(f"unknown module {name!r} (only 'typing.' is allowed)", tok.pos)
            raise self.error(f"unknown type name {name!r}", tok.pos)
        return self.checked(self.arguments(generic, tok.pos), tok.pos)

    def arguments(self, generic: str, name_pos: int) -> TypeNode:
        bracket = self.take()
        if len(self.open_brackets) >= MAX_DEPTH:
            raise self.error(f"type nested deeper than {MAX_DEPTH} levels", bracket.pos)
        self.open_brackets.append(bracket.pos)
        args: list[TypeNode] = []
        arg_pos: list[int] = []
        variadic = False
        while True:
            tok = self.peek()
            if tok.kind == "...":
                if generic != "Tuple" or len(args) != 1:
                    raise self.error(
                        "'...' is only allowed as the second argument of Tuple", tok.pos
                    )
                self.take()
                variadic = True
            elif tok.kind == "end":
                raise self.error(f"unclosed '[' (opened at position {bracket.pos})", len(self.text))
            elif tok.kind in ("]", ","):
                raise self.error(f"expected a type, got {_describe(tok)}", tok.pos)
            else:
                arg_pos.append(tok.pos)
                args.append(self.type_())
            sep = self.take()
            if sep.kind == "]":
                break
            if sep.kind == "end":
                raise self.error(f"unclosed '[' (opened at position {bracket.pos})", len(self.text))
            if sep.kind != ",":
                raise self.error(f"expected ',' or ']', got {_describe(sep)}", sep.pos)
            if variadic:
                raise self.error("'...' must be the last argument of Tuple", sep.pos)
        self.open_brackets.pop()
        expected = _ARITY.get(generic)
        if expected is not None and len(args) != expected:
            plural = "s" if expected != 1 else ""
            pos = arg_pos[expected] if len(args) > expected else sep.pos
            raise self.error(
                f"{generic} takes {expected} type argument{plural}, got {len(args)}", pos
            )
        return _build(generic, args, variadic=variadic)


def _build(generic: str, args: list[TypeNode], *, variadic: bool) -> TypeNode:
    if generic == "List":
        return ListOf(args[0])
    if generic == "Set":
        return SetOf(args[0])
    if generic == "Dict":
        return DictOf(args[0], args[1])
    if generic == "Tuple":
        return TupleOf(tuple(args), variadic=variadic)
    if generic == "Optional":
        return union([args[0], Scalar("None")])
    return union(args)  # Union


def parse(text: str) -> TypeNode:
    """Parse a type string into its tree; raise TypeStringError with a position."""
    if not isinstance(text, str):
        raise TypeError(f"a type string must be str, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise TypeStringError(
            f"type string longer than {MAX_LENGTH} characters ({len(text)})", text, MAX_LENGTH
        )
    return _Parser(text).parse()


def canonical(text: str) -> str:
    """The canonical spelling of a type string."""
    return str(parse(text))
