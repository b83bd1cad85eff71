"""Exact money: rationals until one half-to-even rounding to whole nano-units.

Pure: no I/O. Prices are Decimals; a float usage value counts as its shortest repr.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

NANOS_PER_UNIT = 10**9
# Token counts in TOKEN_FIELDS order (see tokens).
Tokens = tuple[int, int, int, int, int]


@dataclass(frozen=True, slots=True)
class Price:
    """A record's cost in nano-units of ``currency``, or all None when it is unpriced."""

    cost_nanos: int | None
    currency: str | None
    source: str | None

    @property
    def priced(self) -> bool:
        return self.cost_nanos is not None


UNPRICED = Price(None, None, None)


def round_half_even(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` (denominator > 0) rounded to an integer, ties to even."""
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient & 1):
        quotient += 1
    return quotient


def to_nanos(amount: Decimal) -> int:
    """A finite amount of currency as nano-units, rounded once, half to even."""
    numerator, denominator = amount.as_integer_ratio()
    return round_half_even(numerator * NANOS_PER_UNIT, denominator)


def exact(value: object) -> tuple[int, int] | None:
    """A usage value as an exact (numerator, denominator), or None if it cannot be priced."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return (int(value), 1) if value >= 0 else None
    if isinstance(value, float):
        if not math.isfinite(value) or value < 0:
            return None
        # The shortest repr is what the sender wrote; the binary value of 12.3 is not.
        value = Decimal(repr(value))
    if isinstance(value, Decimal) and value.is_finite() and value >= 0:
        return value.as_integer_ratio()
    return None


@dataclass(frozen=True, slots=True)
class Linear:
    """cost_nanos = round_half_even((constant + sum(value[f] * factor[f])) / denominator).

    Rates are kept as integers over one common denominator, so pricing a record of integer
    usage is a few integer multiplications and one division.
    """

    fields: tuple[str, ...]
    factors: tuple[int, ...]
    constant: int
    denominator: int

    @classmethod
    def from_rates(cls, rates: Mapping[str, Fraction], constant: Fraction = Fraction()) -> Linear:
        """``rates``: nano-units per unit of each field; ``constant``: nano-units per record."""
        denominator = math.lcm(constant.denominator, *(r.denominator for r in rates.values()))
        return cls(
            fields=tuple(rates),
            factors=tuple(int(r * denominator) for r in rates.values()),
            constant=int(constant * denominator),
            denominator=denominator,
        )

    def of_usage(self, usage: Mapping[str, Any]) -> int | None:
        """Price any numeric usage values (missing or None is 0); None if one is unusable."""
        numerator, scale = self.constant, 1
        for name, factor in zip(self.fields, self.factors, strict=True):
            value = usage.get(name)
            if value is None:
                continue
            if type(value) is int and value >= 0:
                numerator += value * factor * scale
                continue
            ratio = exact(value)
            if ratio is None:
                return None
            top, bottom = ratio
            numerator = numerator * bottom + top * factor * scale
            scale *= bottom
        return round_half_even(numerator, scale * self.denominator)

    def of_tokens(self, tokens: Tokens) -> int:
        """Price checked token counts, in TOKEN_FIELDS order."""
        a, b, c, d, e = self.factors  # one per token field, unrolled: this runs per record
        total = self.constant + tokens[0] * a + tokens[1] * b + tokens[2] * c
        return round_half_even(total + tokens[3] * d + tokens[4] * e, self.denominator)
