"""TypeValidator: the documented value semantics, field by field and record by record."""

# The schema tests pass the typing aliases (List, Optional, Union, ...) on purpose: they are
# what users write, so the pyupgrade rules that would rewrite them do not apply here.
# ruff: noqa: UP006, UP007, UP045

from __future__ import annotations

import collections
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, Dict, FrozenSet, List, Literal, Optional, Set, Tuple, Union  # noqa: UP035

import pytest

from aicm_manual import (
    AicmError,
    SchemaError,
    TypeStringError,
    TypeValidator,
    UsageValidationError,
)
from aicm_manual._typestring.compiler import compile_record_check, record_source
from aicm_manual._typestring.parser import parse
from aicm_manual._typestring.semantics import accepts
from corpus.values import VALUE_CASES


def _case_id(case: tuple[str, object, bool]) -> str:
    type_string, value, verdict = case
    shown = repr(value)
    shown = shown if len(shown) <= 30 else shown[:27] + "..."
    return f"{type_string}-{shown}-{'accept' if verdict else 'reject'}"


# --- the semantics table, one value at a time ---------------------------------------------


def test_value_corpus_covers_every_row_with_both_verdicts() -> None:
    """The value corpus has at least 150 cases and accepts and rejects for each table row."""
    assert len(VALUE_CASES) >= 150
    rows = {
        "int": "int",
        "float": "float",
        "str": "str",
        "bool": "bool",
        "None": "None",
        "List": "List[",
        "list": "list",
        "Tuple": "Tuple[",
        "tuple": "tuple",
        "Set": "Set[",
        "set": "set",
        "Dict": "Dict[",
        "dict": "dict",
        "Union": "Union[",
        "Optional": "Optional[",
    }
    for row, prefix in rows.items():
        verdicts = {v for t, _, v in VALUE_CASES if t.startswith(prefix)}
        assert verdicts == {True, False}, row
    assert {v for t, _, v in VALUE_CASES if t == "Any"} == {True}


@pytest.mark.parametrize(
    ("type_string", "value", "verdict"), VALUE_CASES, ids=[_case_id(c) for c in VALUE_CASES]
)
def test_reference_interpreter_follows_the_semantics_table(
    type_string: str, value: object, verdict: bool
) -> None:
    """accepts() gives the verdict the documented semantics table gives for this value."""
    assert accepts(parse(type_string), value) is verdict


@pytest.mark.parametrize(
    ("type_string", "value", "verdict"), VALUE_CASES, ids=[_case_id(c) for c in VALUE_CASES]
)
def test_compiled_validator_follows_the_semantics_table(
    type_string: str, value: object, verdict: bool
) -> None:
    """The compiled one-field check, is_valid, validate and find_errors all give the verdict."""
    check = compile_record_check([("f", parse(type_string))])
    assert check({"f": value}) is verdict
    validator = TypeValidator({"f": type_string})
    assert validator.is_valid({"f": value}) is verdict
    assert (validator.find_errors({"f": value}) is None) is verdict
    if verdict:
        assert validator.validate({"f": value}) is None
    else:
        with pytest.raises(UsageValidationError) as info:
            validator.validate({"f": value})
        assert list(info.value.errors) == ["f"]
        assert info.value.errors["f"]
        assert all(m.startswith("f") for m in info.value.errors["f"])
        assert info.value.missing_fields == []
        assert info.value.extra_fields == []


@pytest.mark.parametrize(
    "type_string",
    sorted({t for t, _, _ in VALUE_CASES}),
)
def test_field_may_be_omitted_exactly_when_its_type_accepts_none(type_string: str) -> None:
    """An omitted field is fine when its type is nullable at the top level, else missing."""
    node = parse(type_string)
    nullable = accepts(node, None)
    assert compile_record_check([("f", node)])({}) is nullable
    validator = TypeValidator({"f": type_string})
    assert validator.is_valid({}) is nullable
    if not nullable:
        with pytest.raises(UsageValidationError) as info:
            validator.validate({})
        assert info.value.missing_fields == ["f"]


# --- record rules ---------------------------------------------------------------------------

SCHEMA = {
    "tokens": "int",
    "model": "str",
    "cost": "float",
    "tags": "List[str]",
    "breakdown": "Dict[str, List[int]]",
    "note": "Optional[str]",
    "region": "str | None",
    "meta": "Union[Dict[str, Any], None]",
}
GOOD = {
    "tokens": 12,
    "model": "gpt",
    "cost": 0.5,
    "tags": ["a", "b"],
    "breakdown": {"a": [1, 2]},
    "note": "hi",
    "region": "eu",
    "meta": {"k": object()},
}


@pytest.fixture
def validator() -> TypeValidator:
    return TypeValidator(SCHEMA)


def _errors(validator: TypeValidator, payload: object) -> UsageValidationError:
    with pytest.raises(UsageValidationError) as info:
        validator.validate(payload)
    assert not validator.is_valid(payload)
    found = validator.find_errors(payload)
    assert found is not None
    assert found.errors == info.value.errors
    return info.value


def test_valid_record_passes(validator: TypeValidator) -> None:
    """A record matching the schema validates to None and is_valid is True."""
    assert validator.validate(GOOD) is None
    assert validator.is_valid(GOOD)
    assert validator.find_errors(GOOD) is None


def test_missing_required_fields_are_reported_sorted(validator: TypeValidator) -> None:
    """Every missing required field is listed, sorted, each with a message naming it."""
    payload = {k: v for k, v in GOOD.items() if k not in ("tokens", "model", "cost")}
    err = _errors(validator, payload)
    assert err.missing_fields == ["cost", "model", "tokens"]
    assert err.extra_fields == []
    assert set(err.errors) == {"cost", "model", "tokens"}
    for name in err.missing_fields:
        (message,) = err.errors[name]
        assert message.startswith(name)
        assert "missing" in message


@pytest.mark.parametrize("field", ["note", "region", "meta"])
def test_nullable_field_may_be_omitted(validator: TypeValidator, field: str) -> None:
    """Optional[T], T | None and Union[T, None] fields may be left out of the record."""
    payload = {k: v for k, v in GOOD.items() if k != field}
    assert validator.validate(payload) is None


def test_all_nullable_fields_omitted_at_once(validator: TypeValidator) -> None:
    """A record carrying only the required fields is valid."""
    payload = {k: GOOD[k] for k in ("tokens", "model", "cost", "tags", "breakdown")}
    assert validator.is_valid(payload)


@pytest.mark.parametrize("field", ["note", "region", "meta"])
def test_null_is_accepted_in_nullable_field(validator: TypeValidator, field: str) -> None:
    """A nullable field may be present with the value None."""
    assert validator.validate({**GOOD, field: None}) is None


@pytest.mark.parametrize("schema_type", ["Optional[Any]", "Any", "None", "Union[None, int]"])
def test_types_that_accept_none_make_the_field_omittable(schema_type: str) -> None:
    """Optional[Any] is Any and Optional[None] is None: such fields may be omitted too."""
    assert TypeValidator({"x": schema_type}).is_valid({})


@pytest.mark.parametrize("field", ["tokens", "model", "cost", "tags", "breakdown"])
def test_null_in_required_field_is_a_type_error_not_a_missing_field(
    validator: TypeValidator, field: str
) -> None:
    """None for a non-nullable field is reported against the field, not as missing."""
    err = _errors(validator, {**GOOD, field: None})
    assert err.missing_fields == []
    (message,) = err.errors[field]
    assert message.startswith(f"{field}: expected {validator.schema[field]}, got ")
    assert "None" in message


def test_extra_field_is_an_error_with_a_suggestion(validator: TypeValidator) -> None:
    """A key not in the schema is an extra field; a near-miss name suggests the real one."""
    payload = {k: v for k, v in GOOD.items() if k != "tokens"}
    payload["tokenz"] = 12
    err = _errors(validator, payload)
    assert err.extra_fields == ["tokenz"]
    assert err.missing_fields == ["tokens"]
    (message,) = err.errors["tokenz"]
    assert message.startswith("tokenz")
    assert "'tokens'" in message


def test_extra_field_far_from_every_name_suggests_nothing(validator: TypeValidator) -> None:
    """An unrelated extra key is reported without naming an unrelated schema field."""
    err = _errors(validator, {**GOOD, "zzzz": 1})
    assert err.extra_fields == ["zzzz"]
    (message,) = err.errors["zzzz"]
    assert not any(f"'{name}'" in message for name in SCHEMA)


def test_extra_fields_are_sorted(validator: TypeValidator) -> None:
    """extra_fields lists every unexpected key, sorted."""
    err = _errors(validator, {**GOOD, "zeta": 1, "alpha": 2, "mid": 3})
    assert err.extra_fields == ["alpha", "mid", "zeta"]


def test_non_string_key_is_an_extra_field(validator: TypeValidator) -> None:
    """A key that is not a string can never match a field and is reported as extra."""
    err = _errors(validator, {**GOOD, 1: "x"})
    assert len(err.extra_fields) == 1
    assert "1" in err.extra_fields[0]


@pytest.mark.parametrize(
    "payload",
    [None, [], [("tokens", 1)], "tokens", 3, 2.5, ("tokens",), {"tokens"}, b"{}", object()],
    ids=lambda p: type(p).__name__,
)
def test_non_mapping_payload_is_an_error(validator: TypeValidator, payload: object) -> None:
    """A payload that is not a mapping is reported under '<payload>', naming its type."""
    err = _errors(validator, payload)
    assert list(err.errors) == ["<payload>"]
    (message,) = err.errors["<payload>"]
    assert ("None" if payload is None else type(payload).__name__) in message


class _ReadOnlyMapping(Mapping[str, object]):
    def __init__(self, data: dict[str, object]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> object:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


@pytest.mark.parametrize(
    "wrap",
    [collections.OrderedDict, types.MappingProxyType, _ReadOnlyMapping],
    ids=["OrderedDict", "MappingProxyType", "Mapping"],
)
def test_any_mapping_is_an_acceptable_payload(validator: TypeValidator, wrap: Any) -> None:
    """The payload must be a mapping, not necessarily a dict; invalid ones still fail."""
    assert validator.validate(wrap(dict(GOOD))) is None
    assert validator.is_valid(wrap(dict(GOOD)))
    bad = wrap({**GOOD, "tokens": "x"})
    assert not validator.is_valid(bad)
    assert list(_errors(validator, bad).errors) == ["tokens"]


def test_nested_error_names_the_full_path() -> None:
    """A bad item deep in a dict of lists is reported with its path, as the docs show."""
    v = TypeValidator({"breakdown": "Dict[str, List[int]]"})
    err = _errors(v, {"breakdown": {"a": [1, "x"], "b": [2]}})
    assert err.errors == {"breakdown": ["breakdown[\"a\"][1]: expected int, got str 'x'"]}


@pytest.mark.parametrize(
    ("schema_type", "value", "message"),
    [
        ("List[str]", ["a", "b", 5], "f[2]: expected str, got int 5"),
        ("Tuple[int, str]", (1, 2), "f[1]: expected str, got int 2"),
        ("Tuple[int, ...]", [1, 2, "3"], "f[2]: expected int, got str '3'"),
        (
            "Dict[str, Dict[str, int]]",
            {"x": {"y": "z"}},
            'f["x"]["y"]: expected int, got str \'z\'',
        ),
        ("List[List[bool]]", [[True], [False, 1]], "f[1][1]: expected bool, got int 1"),
        ("Dict[str, List[int]]", {"k": [True]}, 'f["k"][0]: expected int, got bool True'),
        ("int", "x", "f: expected int, got str 'x'"),
        ("List[int]", (1,), "f: expected List[int], got tuple (1,)"),
    ],
)
def test_error_message_names_path_expected_type_and_value(
    schema_type: str, value: object, message: str
) -> None:
    """Each message is `path: expected T, got <type> <repr>` for the offending value."""
    err = _errors(TypeValidator({"f": schema_type}), {"f": value})
    assert err.errors == {"f": [message]}


def test_bad_item_inside_optional_container_reports_the_item_path() -> None:
    """For Optional[List[int]], a bad item is reported at its own path, not the whole field."""
    err = _errors(TypeValidator({"f": "Optional[List[int]]"}), {"f": [1, "x"]})
    (message,) = err.errors["f"]
    assert message.startswith("f[1]: expected int")


def test_bad_dict_key_is_reported_with_the_key() -> None:
    """Keys are checked strictly and a bad key is named in its message."""
    err = _errors(TypeValidator({"f": "Dict[str, int]"}), {"f": {"ok": 1, 7: 2}})
    (message,) = err.errors["f"]
    assert message.startswith("f")
    assert "7" in message
    assert "expected str" in message


def test_every_problem_in_a_record_is_collected() -> None:
    """A record with five problems (type, type, item, missing, extra) reports all five."""
    v = TypeValidator({"a": "int", "b": "str", "c": "List[int]", "d": "float"})
    err = _errors(v, {"a": "x", "b": 1, "c": [1, "y"], "e": 1})
    assert sum(len(m) for m in err.errors.values()) == 5
    assert set(err.errors) == {"a", "b", "c", "d", "e"}
    assert err.missing_fields == ["d"]
    assert err.extra_fields == ["e"]
    assert err.errors["c"] == ["c[1]: expected int, got str 'y'"]


def test_every_bad_item_of_one_field_is_collected() -> None:
    """Several bad items in one list each get their own message, in order."""
    err = _errors(TypeValidator({"f": "List[int]"}), {"f": [1, "a", 2, "b", None]})
    assert [m.split(":")[0] for m in err.errors["f"]] == ["f[1]", "f[3]", "f[4]"]


def test_messages_per_field_are_capped_at_20_with_a_count_of_the_rest() -> None:
    """25 bad items give 20 messages and then '... and 5 more'."""
    err = _errors(TypeValidator({"f": "List[int]"}), {"f": ["x"] * 25})
    messages = err.errors["f"]
    assert len(messages) == 21
    assert messages[:20] == [f"f[{i}]: expected int, got str 'x'" for i in range(20)]
    assert messages[20] == "... and 5 more"


@pytest.mark.parametrize(("bad", "expected_len"), [(19, 19), (20, 20), (21, 21)])
def test_cap_only_adds_the_summary_line_past_20(bad: int, expected_len: int) -> None:
    """Up to 20 problems are listed in full; the 21st becomes '... and 1 more'."""
    err = _errors(TypeValidator({"f": "List[int]"}), {"f": ["x"] * bad})
    messages = err.errors["f"]
    assert len(messages) == expected_len
    assert ("... and 1 more" in messages) is (bad == 21)


def test_cap_applies_per_field() -> None:
    """Each field has its own 20-message budget."""
    v = TypeValidator({"a": "List[int]", "b": "Dict[str, int]"})
    err = _errors(v, {"a": ["x"] * 30, "b": {str(i): "x" for i in range(22)}})
    assert err.errors["a"][-1] == "... and 10 more"
    assert err.errors["b"][-1] == "... and 2 more"
    assert len(err.errors["a"]) == len(err.errors["b"]) == 21


def test_str_of_validation_error_lists_every_message_on_its_own_line() -> None:
    """str(error) is readable: a summary line, then one line per message."""
    v = TypeValidator({"a": "int", "b": "str", "c": "List[int]", "d": "float"})
    err = _errors(v, {"a": "x", "b": 1, "c": [1, "y"], "e": 1})
    text = str(err)
    lines = text.splitlines()
    assert len(lines) == 6
    assert "5" in lines[0]
    for messages in err.errors.values():
        for message in messages:
            assert any(line.endswith(message) for line in lines[1:])


def test_validation_error_is_value_error_and_aicm_error() -> None:
    """UsageValidationError can be caught as ValueError and as AicmError."""
    err = _errors(TypeValidator({"a": "int"}), {"a": "x"})
    assert isinstance(err, ValueError)
    assert isinstance(err, AicmError)


def test_find_errors_returns_the_error_without_raising() -> None:
    """find_errors returns an error without raising it, leaving the payload untouched."""
    payload = {"a": ["x"]}
    v = TypeValidator({"a": "List[int]"})
    err = v.find_errors(payload)
    assert isinstance(err, UsageValidationError)
    assert payload == {"a": ["x"]}


# --- schemas --------------------------------------------------------------------------------


def test_schema_property_shows_canonical_type_strings() -> None:
    """TypeValidator.schema spells every type canonically, in field order."""
    v = TypeValidator(
        {"a": "int|None", "b": "typing.List[typing.Any]", "c": "Union[str, int, str]"}
    )
    assert v.schema == {"a": "Optional[int]", "b": "list", "c": "Union[str, int]"}
    assert list(v.schema) == ["a", "b", "c"]


TYPING_SCHEMA: list[tuple[object, str]] = [
    (int, "int"),
    (float, "float"),
    (str, "str"),
    (bool, "bool"),
    (None, "None"),
    (type(None), "None"),
    (Any, "Any"),
    (list, "list"),
    (List, "list"),
    (dict, "dict"),
    (Dict, "dict"),
    (set, "set"),
    (Set, "set"),
    (tuple, "tuple"),
    (Tuple, "tuple"),
    (List[str], "List[str]"),
    (list[str], "List[str]"),
    (List[Any], "list"),
    (Dict[str, int], "Dict[str, int]"),
    (dict[str, list[int]], "Dict[str, List[int]]"),
    (Dict[Any, Any], "dict"),
    (Set[int], "Set[int]"),
    (set[str], "Set[str]"),
    (Tuple[int, str], "Tuple[int, str]"),
    (tuple[int, ...], "Tuple[int, ...]"),
    (Tuple[Any, ...], "tuple"),
    (Optional[int], "Optional[int]"),
    (Union[int, None], "Optional[int]"),
    (Union[None, int], "Optional[int]"),
    (int | None, "Optional[int]"),
    (Union[int, str], "Union[int, str]"),
    (int | str | None, "Union[int, str, None]"),
    (Optional[Union[int, str]], "Union[int, str, None]"),
    (Union[int, Any], "Any"),
    (Optional[Any], "Any"),
    (Dict[str, Optional[List[int]]], "Dict[str, Optional[List[int]]]"),
    (List[Dict[str, Tuple[int, ...]]], "List[Dict[str, Tuple[int, ...]]]"),
    (typing.List[typing.Optional[float]], "List[Optional[float]]"),
]


@pytest.mark.parametrize(("tp", "expected"), TYPING_SCHEMA, ids=[e for _, e in TYPING_SCHEMA])
def test_typing_object_gives_the_same_tree_as_its_type_string(tp: object, expected: str) -> None:
    """A schema given as a typing object equals the one given as the canonical string."""
    from_typing = TypeValidator({"f": tp})
    from_string = TypeValidator({"f": expected})
    assert from_typing.schema == {"f": expected}
    assert from_typing == from_string


def test_typing_schema_validates_like_the_string_schema() -> None:
    """The documented example {"tokens": int, "tags": List[str]} behaves like its string form."""
    v = TypeValidator({"tokens": int, "tags": List[str]})
    assert v.schema == {"tokens": "int", "tags": "List[str]"}
    assert v.is_valid({"tokens": 3, "tags": ["a"]})
    assert not v.is_valid({"tokens": True, "tags": ["a"]})
    assert not v.is_valid({"tokens": 3, "tags": ("a",)})


@pytest.mark.parametrize("name", [1, None, ("a",), b"tokens"], ids=repr)
def test_non_string_field_name_is_a_schema_error(name: object) -> None:
    """Field names must be strings."""
    with pytest.raises(SchemaError):
        TypeValidator({name: "int"})  # type: ignore[dict-item]


class _UserClass:
    pass


@pytest.mark.parametrize(
    "tp",
    [
        Literal["a"],
        FrozenSet[int],
        frozenset,
        _UserClass,
        Tuple[()],
        typing.Callable[[int], int],
        List[Literal["a"]],
        bytes,
        object,
    ],
    ids=repr,
)
def test_unsupported_typing_object_is_a_schema_error_naming_the_field(tp: object) -> None:
    """Only the types the language can express are accepted; others raise SchemaError."""
    with pytest.raises(SchemaError, match="weird"):
        TypeValidator({"ok": int, "weird": tp})


def test_schema_that_is_not_a_mapping_is_a_schema_error() -> None:
    """A schema must be a mapping of field name to type."""
    with pytest.raises(SchemaError):
        TypeValidator([("tokens", "int")])  # type: ignore[arg-type]


def test_bad_type_string_raises_at_construction_naming_the_field() -> None:
    """A malformed type string fails when the schema is loaded, naming field and position."""
    with pytest.raises(TypeStringError) as info:
        TypeValidator({"tokens": "int", "tags": "List[str"})
    err = info.value
    assert err.field == "tags"
    assert err.position == 8
    assert "'tags'" in str(err)
    assert "at position 8" in str(err)


def test_unknown_type_name_raises_at_construction() -> None:
    """An unknown name in a type string is a TypeStringError from the constructor."""
    with pytest.raises(TypeStringError, match="cost") as info:
        TypeValidator({"cost": "Decimal"})
    assert info.value.position == 0


def test_compiled_source_never_contains_user_text_outside_string_literals() -> None:
    """Field names reach the generated code only as repr() literals, so odd names are safe."""
    name = "x']; import os; os.system('echo pwned'); #"
    source = record_source([(name, parse("int"))])
    assert repr(name) in source
    v = TypeValidator({name: "int"})
    assert v.is_valid({name: 1})
    assert not v.is_valid({name: "1"})


def test_validator_pickles_and_recompiles() -> None:
    """Compiled functions cannot be pickled; the validator rebuilds them from its trees."""
    import pickle

    v = TypeValidator({"a": "List[int]", "b": "Optional[str]"})
    clone = pickle.loads(pickle.dumps(v))
    assert clone == v
    assert clone.is_valid({"a": [1]})
    with pytest.raises(UsageValidationError, match=r"a\[0\]: expected int, got bool True"):
        clone.validate({"a": [True]})
