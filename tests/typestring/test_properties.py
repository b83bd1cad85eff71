"""Hypothesis properties of the type-string parser, the type tree and the compiled validator."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aicm_manual import TypeStringError, TypeValidator, UsageValidationError
from aicm_manual._typestring.compiler import compile_record_check
from aicm_manual._typestring.nodes import (
    ANY,
    BOOL,
    FLOAT,
    INT,
    NONE,
    STR,
    DictOf,
    ListOf,
    Scalar,
    SetOf,
    TupleOf,
    TypeNode,
    UnionOf,
    depth,
    union,
)
from aicm_manual._typestring.parser import parse
from aicm_manual._typestring.semantics import accepts

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOWER = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- (a) no input breaks the parser -------------------------------------------------------

TOKENS = [
    "int", "float", "str", "bool", "None", "Any",
    "list", "List", "dict", "Dict", "set", "Set", "tuple", "Tuple",
    "Optional", "Union", "typing", "typing.", ".", "...", "..",
    "[", "]", "[", "]", ",", ", ", "|", " | ", " ", "\t", "\n",
    "List[", "Dict[str, ", "Optional[", "Union[", "Tuple[", "int, ...", "x", "1", "'", "\u00e9",
]  # fmt: skip

token_soup = st.lists(st.sampled_from(TOKENS), max_size=250).map("".join)
grammar_text = st.text(alphabet=st.sampled_from(list("[],|. \tListDicOpnaybfr")), max_size=300)


def _parse_or_type_string_error(text: str) -> TypeNode | None:
    try:
        return parse(text)
    except TypeStringError as exc:
        error = exc
    assert error.text == text
    assert 0 <= error.position <= len(text)
    assert f"at position {error.position}" in str(error)
    return None


@FAST
@given(st.text(max_size=200))
def test_parse_raises_only_type_string_error_on_arbitrary_text(text: str) -> None:
    """Any unicode text either parses or raises TypeStringError with a position in range."""
    _parse_or_type_string_error(text)


@FAST
@given(st.one_of(token_soup, grammar_text))
def test_parse_raises_only_type_string_error_on_grammar_token_soup(text: str) -> None:
    """Text built from the grammar's own tokens never raises anything but TypeStringError,
    and whatever parses has a canonical form that parses back to the same tree."""
    tree = _parse_or_type_string_error(text)
    if tree is not None:
        assert parse(str(tree)) == tree


OPENERS = ["List[", "list[", "typing.List[", "Set[", "Dict[str, ", "Tuple[", "Optional[", "Union["]


@FAST
@given(
    st.one_of(st.integers(28, 36), st.integers(0, 200)).flatmap(
        lambda n: st.lists(st.sampled_from(OPENERS), min_size=n, max_size=n)
    ),
    st.sampled_from(["int", "Any", "None", "str"]),
    st.integers(min_value=-2, max_value=2),
)
def test_deep_nesting_parses_iff_at_most_32_levels_and_never_recurses_out(
    openers: list[str], inner: str, close_delta: int
) -> None:
    """Balanced nesting of at most 32 levels within 1000 characters parses; anything deeper,
    longer or unbalanced is a TypeStringError, never a RecursionError."""
    closers = max(0, len(openers) + close_delta)
    text = "".join(openers) + inner + "]" * closers
    tree = _parse_or_type_string_error(text)
    should_parse = closers == len(openers) <= 32 and len(text) <= 1000
    assert (tree is not None) is should_parse


# --- (b) trees survive printing and parsing ----------------------------------------------

SCALARS = st.sampled_from([INT, FLOAT, STR, BOOL, NONE, ANY])


KINDS = ["list", "set", "dict", "tuple", "variadic", "union"]


@st.composite
def trees_of(draw: st.DrawFn, max_depth: int) -> TypeNode:
    """A tree of at most ``max_depth`` containers deep; every kind of node equally likely,
    unions built with the normalising union()."""
    if max_depth == 0 or not draw(st.integers(0, 3)):
        return draw(SCALARS)
    kind = draw(st.sampled_from(KINDS))
    child = trees_of(max_depth - 1)
    if kind == "list":
        return ListOf(draw(child))
    if kind == "set":
        return SetOf(draw(child))
    if kind == "dict":
        return DictOf(draw(child), draw(child))
    if kind == "tuple":
        return TupleOf(tuple(draw(st.lists(child, min_size=1, max_size=3))))
    if kind == "variadic":
        return TupleOf((draw(child),), variadic=True)
    return union(draw(st.lists(child, min_size=2, max_size=4)))


WRAPPERS = [
    ListOf,
    SetOf,
    lambda x: DictOf(STR, x),
    lambda x: TupleOf((x,), variadic=True),
    lambda x: TupleOf((INT, x)),
    lambda x: union([x, NONE]),
]


@st.composite
def deep_trees(draw: st.DrawFn) -> TypeNode:
    """A small tree wrapped in up to 32 unary containers: depths right up to the limit."""
    tree = draw(trees_of(3))
    levels = draw(st.integers(0, 32))
    for wrap in draw(st.lists(st.sampled_from(WRAPPERS), min_size=levels, max_size=levels)):
        wrapped = wrap(tree)
        if depth(wrapped) > 32:
            break
        tree = wrapped
    return tree


trees = st.one_of(trees_of(5), deep_trees())


@FAST
@given(trees)
def test_canonical_form_of_any_tree_parses_back_to_the_tree(tree: TypeNode) -> None:
    """For every tree built from the node classes and union(), parse(str(t)) == t."""
    text = str(tree)
    assert parse(text) == tree
    assert str(parse(text)) == text


@st.composite
def spellings(draw: st.DrawFn, node: TypeNode) -> str:
    """One of the many equivalent ways to write ``node``."""
    ws = st.sampled_from(["", "", "", " ", "  ", "\t", "\n"])
    typing_prefix = st.sampled_from(["", "", "typing."])

    def sp(n: TypeNode) -> str:
        return draw(spellings(n))

    def generic(names: list[str], *args: str) -> str:
        name = draw(typing_prefix) + draw(st.sampled_from(names))
        sep = draw(ws) + "," + draw(ws)
        return f"{name}{draw(ws)}[{draw(ws)}{sep.join(args)}{draw(ws)}]"

    if isinstance(node, Scalar):
        return draw(typing_prefix) + node.name
    if isinstance(node, ListOf):
        if node.item == ANY and draw(st.booleans()):
            return draw(typing_prefix) + draw(st.sampled_from(["list", "List"]))
        return generic(["List", "list"], sp(node.item))
    if isinstance(node, SetOf):
        if node.item == ANY and draw(st.booleans()):
            return draw(typing_prefix) + draw(st.sampled_from(["set", "Set"]))
        return generic(["Set", "set"], sp(node.item))
    if isinstance(node, DictOf):
        if node.key == ANY and node.value == ANY and draw(st.booleans()):
            return draw(typing_prefix) + draw(st.sampled_from(["dict", "Dict"]))
        return generic(["Dict", "dict"], sp(node.key), sp(node.value))
    if isinstance(node, TupleOf):
        if node.variadic:
            if node.items[0] == ANY and draw(st.booleans()):
                return draw(typing_prefix) + draw(st.sampled_from(["tuple", "Tuple"]))
            return generic(["Tuple", "tuple"], sp(node.items[0]), "...")
        return generic(["Tuple", "tuple"], *(sp(i) for i in node.items))
    assert isinstance(node, UnionOf)
    members = list(node.members)
    # Repeating a member later, or moving None anywhere, must not change the tree.
    if draw(st.booleans()):
        members.append(draw(st.sampled_from(members)))
    if node.nullable and draw(st.booleans()):
        members.remove(NONE)
        members.insert(draw(st.integers(0, len(members))), NONE)
    style = draw(st.sampled_from(["Union", "pipe", "Optional"]))
    if style == "Optional" and node.nullable:
        return generic(["Optional"], sp(union(m for m in members if m != NONE)))
    if style == "pipe":
        bar = draw(ws) + "|" + draw(ws)
        return bar.join(sp(m) for m in members)
    return generic(["Union"], *(sp(m) for m in members))


@SLOWER
@given(st.data(), trees_of(6))
def test_every_equivalent_spelling_of_a_tree_parses_to_that_tree(
    data: st.DataObject, tree: TypeNode
) -> None:
    """list/List/typing.List, Optional/Union/|, duplicates, None anywhere and whitespace
    all parse to the same tree."""
    text = data.draw(spellings(tree))
    assume(len(text) <= 1000)
    assert parse(text) == tree


# --- (c) the compiled validator agrees with the reference interpreter --------------------

NAN = float("nan")
INF = float("inf")


class IntSub(int):
    pass


NOISE = st.sampled_from(
    [
        None, True, False, 0, 1, -1, 2**70, 3.0, 1.5, -0.0, NAN, INF, -INF, "", "x", b"x",
        (), [], {}, set(), frozenset(), Decimal("1"), (1,), [1], {"a": 1}, {1: "a"}, [True],
        ("a", 1), [1, "a"], [NAN], IntSub(3),
    ]
)  # fmt: skip


def _freeze(value: object) -> object:
    """A hashable stand-in (list -> tuple, set -> frozenset, dict -> items) for set items
    and dict keys; changing the shape is fine, the two checkers just have to agree."""
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(_freeze(v) for v in value)
    if isinstance(value, dict):
        return tuple((_freeze(k), _freeze(v)) for k, v in value.items())
    return value


def values_for(node: TypeNode) -> st.SearchStrategy[Any]:
    """Values shaped like ``node``, often right and often nearly right."""
    right: st.SearchStrategy[Any]
    if isinstance(node, Scalar):
        right = {
            "int": st.integers() | st.integers().map(IntSub),
            "float": st.floats() | st.integers(),
            "str": st.text(max_size=4),
            "bool": st.booleans(),
            "None": st.none(),
            "Any": NOISE,
        }[node.name]
    elif isinstance(node, ListOf):
        items = st.lists(values_for(node.item), max_size=4)
        right = st.one_of(items, items, items.map(tuple))
    elif isinstance(node, SetOf):
        items = st.lists(values_for(node.item).map(_freeze), max_size=4)
        right = st.one_of(items.map(set), items.map(frozenset), items, items.map(tuple))
    elif isinstance(node, DictOf):
        pairs = st.lists(
            st.tuples(values_for(node.key).map(_freeze), values_for(node.value)), max_size=3
        )
        right = st.one_of(pairs.map(dict), pairs.map(dict), pairs)
    elif isinstance(node, TupleOf) and node.variadic:
        items = st.lists(values_for(node.items[0]), max_size=4)
        right = st.one_of(items.map(tuple), items, items.map(_freeze).map(frozenset))
    elif isinstance(node, TupleOf):
        fixed = st.tuples(*(values_for(i) for i in node.items))
        right = st.one_of(
            fixed, fixed.map(list), fixed.map(lambda t: t[:-1]), fixed.map(lambda t: (*t, t[0]))
        )
    else:
        assert isinstance(node, UnionOf)
        right = st.one_of(*(values_for(m) for m in node.members))
    return st.integers(0, 9).flatmap(lambda k: NOISE if k == 0 else right)


@st.composite
def tree_and_value(draw: st.DrawFn) -> tuple[TypeNode, object]:
    tree = draw(trees_of(5))
    return tree, draw(values_for(tree))


def _reference_record_ok(fields: list[tuple[str, TypeNode]], payload: dict[str, object]) -> bool:
    """The record rules over accepts(): present fields valid, absent ones nullable
    (accepting None), and no keys outside the schema."""
    names = {n for n, _ in fields}
    if any(k not in names for k in payload):
        return False
    return all(
        accepts(node, payload[name]) if name in payload else accepts(node, None)
        for name, node in fields
    )


@SLOWER
@given(tree_and_value())
def test_compiled_check_agrees_with_reference_interpreter(case: tuple[TypeNode, object]) -> None:
    """On values that are right or nearly right (bools for ints, NaN, tuples for lists,
    wrong lengths), the compiled check, is_valid, validate and find_errors all agree with
    accepts()."""
    tree, value = case
    expected = accepts(tree, value)
    payload = {"f": value}
    assert compile_record_check([("f", tree)])(payload) is expected
    validator = TypeValidator({"f": tree})
    assert validator.is_valid(payload) is expected
    found = validator.find_errors(payload)
    assert (found is None) is expected
    if expected:
        assert validator.validate(payload) is None
    else:
        with pytest.raises(UsageValidationError) as info:
            validator.validate(payload)
        assert list(info.value.errors) == ["f"]
        assert info.value.errors["f"]


@st.composite
def record_cases(draw: st.DrawFn) -> tuple[list[tuple[str, TypeNode]], dict[str, object]]:
    names = draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=3,
                          unique=True))  # fmt: skip
    fields = [(n, draw(trees_of(4))) for n in names]
    payload: dict[str, object] = {}
    for name, node in fields:
        if draw(st.integers(0, 7)):
            payload[name] = draw(values_for(node))
    if not draw(st.integers(0, 7)):
        payload[draw(st.sampled_from(["e", "aa", "B"]))] = draw(NOISE)
    return fields, payload


@SLOWER
@given(record_cases())
def test_compiled_record_check_follows_the_record_rules(
    case: tuple[list[tuple[str, TypeNode]], dict[str, object]],
) -> None:
    """With several fields, omitted fields and extra keys, the compiled check and
    TypeValidator agree with the record rules applied through accepts()."""
    fields, payload = case
    expected = _reference_record_ok(fields, payload)
    assert compile_record_check(fields)(payload) is expected
    validator = TypeValidator(dict(fields))
    assert validator.is_valid(payload) is expected
    found = validator.find_errors(payload)
    assert (found is None) is expected
    if found is not None:
        names = {n for n, _ in fields}
        assert found.extra_fields == sorted(k for k in payload if k not in names)
        assert found.missing_fields == sorted(
            n for n, node in fields if n not in payload and not accepts(node, None)
        )


@SLOWER
@given(record_cases(), st.booleans())
def test_compiled_record_check_with_extra_fields_allowed_follows_the_rules(
    case: tuple[list[tuple[str, TypeNode]], dict[object, object]], int_key: bool
) -> None:
    """With extra_fields="allow", keys outside the schema pass when they are strings; the
    named fields follow the same rules, and the compiled check agrees with find_errors."""
    fields, payload = case
    payload = dict(payload)
    if int_key:
        payload[1] = "not a field name"
    names = {n for n, _ in fields}
    expected = all(isinstance(k, str) for k in payload) and all(
        accepts(node, payload[name]) if name in payload else accepts(node, None)
        for name, node in fields
    )
    assert compile_record_check(fields, allow_extra=True)(payload) is expected
    validator = TypeValidator(dict(fields), extra_fields="allow")
    assert validator.is_valid(payload) is expected
    found = validator.find_errors(payload)
    assert (found is None) is expected
    if found is not None:
        assert found.extra_fields == (["1"] if int_key else [])
        assert all(k in names or k == "1" for k in found.errors)


@FAST
@given(st.floats() | st.integers() | st.booleans() | st.decimals(allow_nan=True))
def test_float_fields_accept_exactly_finite_floats_and_non_bool_ints(value: object) -> None:
    """A float field takes finite floats and ints (not bool): NaN, inf, bool, Decimal fail."""
    expected = (isinstance(value, float) and math.isfinite(value)) or (
        isinstance(value, int) and not isinstance(value, bool)
    )
    assert accepts(FLOAT, value) is expected
    assert TypeValidator({"f": "float"}).is_valid({"f": value}) is expected
