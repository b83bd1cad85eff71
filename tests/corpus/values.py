"""Value-semantics corpus: (type string, value, verdict) for every row of the semantics table.

The verdicts come from the semantics table, row by row:

| declared | accepts | rejects |
|---|---|---|
| int | int and subclasses, any size | bool, float (even 3.0), str, Decimal |
| float | finite float, int (not bool) | bool, NaN, +-inf, str, Decimal |
| str | str and subclasses | bytes |
| bool | True, False | 1, 0 |
| None | None | anything else |
| List[T] / list | list, each item T | tuple, set |
| Tuple[T1..Tn] / Tuple[T, ...] / tuple | tuple or list; exact length for the fixed form | |
| Set[T] / set | set, frozenset or list; items T | |
| Dict[K, V] / dict | dict; every key K, every value V (keys checked strictly) | |
| Union / Optional | any member | |
| Any, bare containers | anything / that container, items unchecked | |
"""

from __future__ import annotations

import collections
import enum
import sys
from decimal import Decimal
from fractions import Fraction

NAN = float("nan")
INF = float("inf")


class IntSub(int):
    pass


class FloatSub(float):
    pass


class StrSub(str):
    pass


class ListSub(list):
    pass


class Colour(enum.IntEnum):
    RED = 1


class Opaque:
    """An arbitrary object no declared type but Any (or a bare container's items) admits."""

    def __repr__(self) -> str:
        return "Opaque()"


OPAQUE = Opaque()

ACCEPT = True
REJECT = False

# (type string, value, verdict)
VALUE_CASES: list[tuple[str, object, bool]] = [
    # int: int and subclasses, any size; not bool, float (even 3.0), str, Decimal.
    ("int", 0, ACCEPT),
    ("int", 1, ACCEPT),
    ("int", -1, ACCEPT),
    ("int", 2**63, ACCEPT),
    ("int", 2**64 + 1, ACCEPT),
    ("int", -(2**100), ACCEPT),
    ("int", 10**400, ACCEPT),
    ("int", IntSub(5), ACCEPT),
    ("int", Colour.RED, ACCEPT),
    ("int", True, REJECT),
    ("int", False, REJECT),
    ("int", 3.0, REJECT),
    ("int", 0.0, REJECT),
    ("int", -0.0, REJECT),
    ("int", 3.5, REJECT),
    ("int", "3", REJECT),
    ("int", Decimal("3"), REJECT),
    ("int", Fraction(3, 1), REJECT),
    ("int", None, REJECT),
    ("int", [3], REJECT),
    ("int", 3 + 0j, REJECT),
    ("int", NAN, REJECT),
    # float: finite floats and ints (not bool); not bool, NaN, +-inf, str, Decimal.
    ("float", 0.0, ACCEPT),
    ("float", -0.0, ACCEPT),
    ("float", 1.5, ACCEPT),
    ("float", -2.25, ACCEPT),
    ("float", 1e308, ACCEPT),
    ("float", sys.float_info.max, ACCEPT),
    ("float", -sys.float_info.max, ACCEPT),
    ("float", 5e-324, ACCEPT),
    ("float", FloatSub(2.5), ACCEPT),
    ("float", 3, ACCEPT),
    ("float", 0, ACCEPT),
    ("float", -7, ACCEPT),
    ("float", 2**2000, ACCEPT),
    ("float", IntSub(2), ACCEPT),
    ("float", True, REJECT),
    ("float", False, REJECT),
    ("float", NAN, REJECT),
    ("float", -NAN, REJECT),
    ("float", INF, REJECT),
    ("float", -INF, REJECT),
    ("float", FloatSub(INF), REJECT),
    ("float", FloatSub(NAN), REJECT),
    ("float", "1.5", REJECT),
    ("float", "nan", REJECT),
    ("float", Decimal("1.5"), REJECT),
    ("float", Fraction(1, 2), REJECT),
    ("float", None, REJECT),
    ("float", [1.5], REJECT),
    ("float", 1j, REJECT),
    # str: str and subclasses; not bytes.
    ("str", "", ACCEPT),
    ("str", "abc", ACCEPT),
    ("str", "\u00fcn\u00efc\u00f6de \U0001f600", ACCEPT),
    ("str", "0", ACCEPT),
    ("str", StrSub("a"), ACCEPT),
    ("str", b"abc", REJECT),
    ("str", bytearray(b"abc"), REJECT),
    ("str", 0, REJECT),
    ("str", None, REJECT),
    ("str", ["a"], REJECT),
    # bool: True, False; not 1, 0.
    ("bool", True, ACCEPT),
    ("bool", False, ACCEPT),
    ("bool", 1, REJECT),
    ("bool", 0, REJECT),
    ("bool", 1.0, REJECT),
    ("bool", "True", REJECT),
    ("bool", "false", REJECT),
    ("bool", None, REJECT),
    # None: None and nothing else.
    ("None", None, ACCEPT),
    ("None", 0, REJECT),
    ("None", False, REJECT),
    ("None", "", REJECT),
    ("None", "None", REJECT),
    ("None", [], REJECT),
    ("None", {}, REJECT),
    ("None", NAN, REJECT),
    # List[T] / list: a list with every item T; not tuple, set.
    ("List[int]", [], ACCEPT),
    ("List[int]", [1, 2, 3], ACCEPT),
    ("List[int]", [IntSub(1), 2**70], ACCEPT),
    ("List[int]", ListSub([1]), ACCEPT),
    ("List[int]", (1, 2), REJECT),
    ("List[int]", {1, 2}, REJECT),
    ("List[int]", frozenset({1}), REJECT),
    ("List[int]", [1, "x"], REJECT),
    ("List[int]", [1, True], REJECT),
    ("List[int]", [1.0], REJECT),
    ("List[int]", [None], REJECT),
    ("List[int]", "12", REJECT),
    ("List[int]", {"a": 1}, REJECT),
    ("List[int]", None, REJECT),
    ("List[List[int]]", [[1], []], ACCEPT),
    ("List[List[int]]", [[1], (2,)], REJECT),
    ("List[List[int]]", [1], REJECT),
    ("List[Optional[int]]", [None, 1, None], ACCEPT),
    ("List[Optional[int]]", [None, "1"], REJECT),
    ("list", [], ACCEPT),
    ("list", [1, "a", None, OPAQUE, [NAN]], ACCEPT),
    ("list", (), REJECT),
    ("list", {1}, REJECT),
    ("list", "abc", REJECT),
    ("list", {}, REJECT),
    # Tuple: tuple or list; exact length for the fixed form.
    ("Tuple[int, str]", (1, "a"), ACCEPT),
    ("Tuple[int, str]", [1, "a"], ACCEPT),
    ("Tuple[int, str]", (1,), REJECT),
    ("Tuple[int, str]", (1, "a", 2), REJECT),
    ("Tuple[int, str]", [1, "a", 2], REJECT),
    ("Tuple[int, str]", ("a", 1), REJECT),
    ("Tuple[int, str]", (True, "a"), REJECT),
    ("Tuple[int, str]", {1, "a"}, REJECT),
    ("Tuple[int, str]", "ab", REJECT),
    ("Tuple[int, str]", None, REJECT),
    ("Tuple[int]", (1,), ACCEPT),
    ("Tuple[int]", (), REJECT),
    ("Tuple[int]", [1, 2], REJECT),
    ("Tuple[Any]", [None], ACCEPT),
    ("Tuple[Any]", [], REJECT),
    ("Tuple[Any, Any]", ("x", OPAQUE), ACCEPT),
    ("Tuple[Any, Any]", (1,), REJECT),
    ("Tuple[int, ...]", (), ACCEPT),
    ("Tuple[int, ...]", [], ACCEPT),
    ("Tuple[int, ...]", (1, 2, 3), ACCEPT),
    ("Tuple[int, ...]", list(range(50)), ACCEPT),
    ("Tuple[int, ...]", (1, 2.0), REJECT),
    ("Tuple[int, ...]", (True,), REJECT),
    ("Tuple[int, ...]", {1}, REJECT),
    ("Tuple[int, ...]", {1: 1}, REJECT),
    ("Tuple[int, Tuple[str, ...]]", (1, ("a", "b")), ACCEPT),
    ("Tuple[int, Tuple[str, ...]]", [1, ["a"]], ACCEPT),
    ("Tuple[int, Tuple[str, ...]]", (1, ["a", 2]), REJECT),
    ("tuple", (), ACCEPT),
    ("tuple", (1, "a", OPAQUE), ACCEPT),
    ("tuple", [1, None], ACCEPT),
    ("tuple", {1}, REJECT),
    ("tuple", {}, REJECT),
    ("tuple", "ab", REJECT),
    # Set[T] / set: set, frozenset or list, every item T.
    ("Set[int]", set(), ACCEPT),
    ("Set[int]", {1, 2}, ACCEPT),
    ("Set[int]", frozenset({1}), ACCEPT),
    ("Set[int]", [1, 2], ACCEPT),
    ("Set[int]", [1, 1], ACCEPT),
    ("Set[int]", (1, 2), REJECT),
    ("Set[int]", {1: 2}, REJECT),
    ("Set[int]", {"a"}, REJECT),
    ("Set[int]", {True}, REJECT),
    ("Set[int]", [1, True], REJECT),
    ("Set[int]", "12", REJECT),
    ("Set[str]", frozenset({"a", "b"}), ACCEPT),
    ("Set[float]", {1, 2.5}, ACCEPT),
    ("Set[float]", {INF}, REJECT),
    ("Set[Optional[int]]", {None, 1}, ACCEPT),
    ("Set[Tuple[int, str]]", {(1, "a")}, ACCEPT),
    ("Set[Tuple[int, str]]", [[1, "a"]], ACCEPT),
    ("Set[Tuple[int, str]]", {(1, 2)}, REJECT),
    ("set", {1, "a", None}, ACCEPT),
    ("set", frozenset(), ACCEPT),
    ("set", ["x", OPAQUE], ACCEPT),
    ("set", (), REJECT),
    ("set", {}, REJECT),
    ("set", "abc", REJECT),
    # Dict[K, V] / dict: a dict, every key K (strictly), every value V.
    ("Dict[str, int]", {}, ACCEPT),
    ("Dict[str, int]", {"a": 1, "b": 2}, ACCEPT),
    ("Dict[str, int]", {StrSub("a"): IntSub(1)}, ACCEPT),
    ("Dict[str, int]", collections.OrderedDict(a=1), ACCEPT),
    ("Dict[str, int]", collections.defaultdict(int, a=1), ACCEPT),
    ("Dict[str, int]", {1: 1}, REJECT),
    ("Dict[str, int]", {b"a": 1}, REJECT),
    ("Dict[str, int]", {"a": "1"}, REJECT),
    ("Dict[str, int]", {"a": True}, REJECT),
    ("Dict[str, int]", {"a": 1, "b": None}, REJECT),
    ("Dict[str, int]", [("a", 1)], REJECT),
    ("Dict[str, int]", None, REJECT),
    ("Dict[int, str]", {1: "a", -5: ""}, ACCEPT),
    ("Dict[int, str]", {"1": "a"}, REJECT),
    ("Dict[int, str]", {True: "a"}, REJECT),
    ("Dict[int, str]", {1.0: "a"}, REJECT),
    ("Dict[float, str]", {1.5: "a", 2: "b"}, ACCEPT),
    ("Dict[float, str]", {NAN: "a"}, REJECT),
    ("Dict[bool, int]", {True: 1, False: 0}, ACCEPT),
    ("Dict[bool, int]", {1: 1}, REJECT),
    ("Dict[Optional[str], int]", {None: 1, "a": 2}, ACCEPT),
    ("Dict[Tuple[int, int], str]", {(1, 2): "a"}, ACCEPT),
    ("Dict[Tuple[int, int], str]", {(1, "x"): "a"}, REJECT),
    ("Dict[str, Any]", {"a": OPAQUE, "b": None}, ACCEPT),
    ("Dict[str, Any]", {1: "x"}, REJECT),
    ("Dict[str, Dict[str, List[int]]]", {"a": {"b": [1, 2]}}, ACCEPT),
    ("Dict[str, Dict[str, List[int]]]", {"a": {"b": [1, True]}}, REJECT),
    ("Dict[str, Dict[str, List[int]]]", {"a": {"b": (1, 2)}}, REJECT),
    ("dict", {}, ACCEPT),
    ("dict", {1: OPAQUE, None: [], "a": NAN}, ACCEPT),
    ("dict", [], REJECT),
    ("dict", [("a", 1)], REJECT),
    ("dict", "{}", REJECT),
    # Union / Optional: any member.
    ("Optional[int]", None, ACCEPT),
    ("Optional[int]", 5, ACCEPT),
    ("Optional[int]", "5", REJECT),
    ("Optional[int]", True, REJECT),
    ("Optional[int]", 1.0, REJECT),
    ("Optional[float]", None, ACCEPT),
    ("Optional[float]", 2.5, ACCEPT),
    ("Optional[float]", NAN, REJECT),
    ("Optional[bool]", False, ACCEPT),
    ("Optional[bool]", 0, REJECT),
    ("Union[int, str]", 1, ACCEPT),
    ("Union[int, str]", "a", ACCEPT),
    ("Union[int, str]", None, REJECT),
    ("Union[int, str]", 1.5, REJECT),
    ("Union[int, str]", True, REJECT),
    ("Union[bool, int]", True, ACCEPT),
    ("Union[bool, int]", 1, ACCEPT),
    ("Union[int, float]", 1, ACCEPT),
    ("Union[int, float]", 1.5, ACCEPT),
    ("Union[int, float]", -INF, REJECT),
    ("Union[List[int], Dict[str, int]]", [1], ACCEPT),
    ("Union[List[int], Dict[str, int]]", {"a": 1}, ACCEPT),
    ("Union[List[int], Dict[str, int]]", ["a"], REJECT),
    ("Union[List[int], Dict[str, int]]", {"a": "b"}, REJECT),
    ("Union[List[int], Tuple[int, ...]]", (1, 2), ACCEPT),
    ("Union[List[int], Tuple[int, ...]]", [1, "x"], REJECT),
    ("int | str | None", None, ACCEPT),
    ("int | str | None", b"x", REJECT),
    ("Optional[List[str]]", ["a"], ACCEPT),
    ("Optional[List[str]]", [None], REJECT),
    # Any: anything.
    ("Any", None, ACCEPT),
    ("Any", OPAQUE, ACCEPT),
    ("Any", NAN, ACCEPT),
    ("Any", b"bytes", ACCEPT),
    ("Any", True, ACCEPT),
    ("Any", {"nested": [1, (2, 3)]}, ACCEPT),
    ("List[Any]", [OPAQUE, None], ACCEPT),
    ("List[Any]", (OPAQUE,), REJECT),
]
