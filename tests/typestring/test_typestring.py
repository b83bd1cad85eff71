"""Table-driven tests of the type-string parser against the corpus in corpus/typestrings.py."""

from __future__ import annotations

import pickle

import pytest

from aicm_manual import AicmError, SchemaError, TypeStringError
from aicm_manual._typestring.nodes import (
    ANY,
    INT,
    NONE,
    STR,
    DictOf,
    ListOf,
    TupleOf,
    UnionOf,
    union,
)
from aicm_manual._typestring.parser import canonical, parse
from corpus.typestrings import EQUIVALENT, INVALID, TREES, VALID, nest


def _id(text: str) -> str:
    shown = text if len(text) <= 40 else f"{text[:30]}...({len(text)} chars)"
    return repr(shown)


def test_corpus_is_large_and_free_of_duplicates() -> None:
    """The corpus holds at least 150 type strings and lists each input once."""
    valid = [text for text, _ in VALID]
    invalid = [text for text, _, _ in INVALID]
    assert len(valid) + len(invalid) >= 150
    assert len(set(valid)) == len(valid)
    assert len(set(invalid)) == len(invalid)
    assert not set(valid) & set(invalid)


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[_id(t) for t, _ in VALID])
def test_valid_type_string_has_expected_canonical_form(text: str, expected: str) -> None:
    """A valid type string parses, and canonical() and str(tree) give the expected form."""
    tree = parse(text)
    assert str(tree) == expected
    assert canonical(text) == expected


@pytest.mark.parametrize(("text", "expected"), VALID, ids=[_id(t) for t, _ in VALID])
def test_canonical_form_parses_back_to_the_same_tree(text: str, expected: str) -> None:
    """parse(canonical) equals parse(input), and the canonical form is a fixed point."""
    tree = parse(text)
    again = parse(expected)
    assert again == tree
    assert hash(again) == hash(tree)
    assert canonical(expected) == expected


@pytest.mark.parametrize(("text", "tree"), TREES, ids=[_id(t) for t, _ in TREES])
def test_type_string_parses_to_hand_built_tree(text: str, tree: object) -> None:
    """parse() builds exactly the tree of node classes the grammar describes."""
    assert parse(text) == tree


@pytest.mark.parametrize("spellings", EQUIVALENT, ids=[group[0] for group in EQUIVALENT])
def test_equivalent_spellings_parse_to_one_tree_and_one_canonical_form(
    spellings: list[str],
) -> None:
    """Every spelling of one type (Optional/Union/|, list/List/typing.List) is one tree."""
    trees = {parse(text) for text in spellings}
    assert len(trees) == 1
    assert len({canonical(text) for text in spellings}) == 1


@pytest.mark.parametrize(
    ("text", "position", "fragment"), INVALID, ids=[_id(t) for t, _, _ in INVALID]
)
def test_invalid_type_string_raises_with_expected_position(
    text: str, position: int, fragment: str
) -> None:
    """A malformed type string raises TypeStringError naming the reason and the position."""
    with pytest.raises(TypeStringError) as info:
        parse(text)
    err = info.value
    assert err.position == position, err.reason
    assert fragment.lower() in err.reason.lower()
    assert err.text == text
    assert f"at position {position}" in str(err)


@pytest.mark.parametrize(
    ("text", "position"),
    [(t, p) for t, p, _ in INVALID if not any(c in t for c in "\t\n\r\f\v")],
    ids=[_id(t) for t, _, _ in INVALID if not any(c in t for c in "\t\n\r\f\v")],
)
def test_error_message_puts_a_caret_under_the_position(text: str, position: int) -> None:
    """The last two lines of str(error) show the text and a caret under the bad offset."""
    with pytest.raises(TypeStringError) as info:
        parse(text)
    *_, shown, caret = str(info.value).splitlines()
    column = caret.index("^")
    assert caret.strip() == "^"
    if len(text) <= 120:
        assert shown == "    " + text
        assert column == 4 + position
    elif position < len(text):
        assert shown[column] == text[position]
    else:
        assert column == len(shown)


def test_type_string_error_is_a_schema_error_and_a_value_error() -> None:
    """TypeStringError can be caught as SchemaError, ValueError and AicmError."""
    with pytest.raises(TypeStringError) as info:
        parse("List[int]]")
    assert isinstance(info.value, SchemaError)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, AicmError)
    assert info.value.reason == "unmatched ']'"


def test_type_string_error_survives_pickling() -> None:
    """A TypeStringError pickles with its reason, text and position intact."""
    with pytest.raises(TypeStringError) as info:
        parse("Dict[str, foo]")
    clone = pickle.loads(pickle.dumps(info.value))
    assert (clone.text, clone.position) == ("Dict[str, foo]", 10)
    assert clone.reason == info.value.reason
    assert str(clone) == str(info.value)


def test_exactly_32_levels_accepted_and_33_rejected() -> None:
    """Nesting is capped at 32 levels: 32 parse, 33 raise TypeStringError (not RecursionError)."""
    tree = parse(nest("List[", "int", 32))
    for _ in range(32):
        assert isinstance(tree, ListOf)
        tree = tree.item
    assert tree == INT
    with pytest.raises(TypeStringError):
        parse(nest("List[", "int", 33))


@pytest.mark.parametrize("levels", [100, 160, 1000])
def test_very_deep_nesting_raises_type_string_error_not_recursion_error(levels: int) -> None:
    """Absurd nesting (even past the length limit) is a TypeStringError, never a crash."""
    text = "List[" * levels
    with pytest.raises(TypeStringError):
        parse(text)


def test_length_limit_is_exactly_1000_characters() -> None:
    """A 1000-character string is parsed; a 1001-character one is rejected at offset 1000."""
    assert parse("int" + " " * 997) == INT
    with pytest.raises(TypeStringError) as info:
        parse("int" + " " * 998)
    assert info.value.position == 1000


def test_parse_rejects_non_string_input_with_type_error() -> None:
    """parse() is for strings; bytes or None are a programming error (TypeError)."""
    with pytest.raises(TypeError):
        parse(b"int")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        parse(None)  # type: ignore[arg-type]


def test_union_normaliser_flattens_dedups_moves_none_last_and_absorbs_any() -> None:
    """union() is the one normaliser: flat, first-seen order, None last, Any absorbs."""
    assert union([INT]) == INT
    assert union([NONE, INT, STR, INT]) == UnionOf((INT, STR, NONE))
    assert union([union([INT, NONE]), union([STR, INT])]) == UnionOf((INT, STR, NONE))
    assert union([INT, ANY, NONE]) == ANY
    assert str(union([ListOf(INT), NONE])) == "Optional[List[int]]"
    assert str(union([DictOf(ANY, ANY), TupleOf((ANY,), variadic=True)])) == "Union[dict, tuple]"


def test_unions_keep_member_order() -> None:
    """Union[int, str] and Union[str, int] are different trees with different canonical forms."""
    assert parse("Union[int, str]") != parse("Union[str, int]")
    assert canonical("str | int") == "Union[str, int]"
