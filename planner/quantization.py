"""Observation quantization spec: decimals m, symmetric clamp b, and the bit width per value.

The paper's Eq. 6 counts ``1 + ceil(log2 b) + ceil(m log2 10)`` bits; the exact count of levels
``2*b*10^m + 1`` needs ``ceil(log2(levels))`` bits. They agree at b = 127 (12 bits at m = 1, 15 at
m = 2); Eq. 6 undercounts when b is a power of two and overcounts elsewhere (b = 100, m = 1).

>>> QuantSpec.create(decimals=2, clamp=127).bits
15
>>> QuantSpec.create(decimals=1, clamp=100, rule="exact").bits
11
"""

import math
from dataclasses import dataclass

from planner.errors import PlannerError

MAX_BITS = 32
MAX_DECIMALS = 9
RULES = ("eq6", "exact", "explicit")


def _check(decimals: int, clamp: float) -> None:
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= MAX_DECIMALS:
        raise PlannerError(f"decimals (m) must be a whole number in 0..{MAX_DECIMALS}, got {decimals!r}")
    if not (isinstance(clamp, (int, float)) and math.isfinite(clamp) and clamp > 0):
        raise PlannerError(f"clamp (b) must be a finite number > 0, got {clamp!r}")
    if clamp < 10.0**-decimals:
        raise PlannerError(f"clamp (b) = {clamp:g} is smaller than one quantization step at m={decimals} "
                           f"(10^-{decimals} = {10.0**-decimals:g}): use b >= {10.0**-decimals:g} or fewer decimals")


def levels(decimals: int, clamp: float) -> int:
    """Distinct values of round(clamp(s, -b, b), m): 2 * round(b * 10^m) + 1."""
    _check(decimals, clamp)
    return 2 * round(clamp * 10**decimals) + 1


def exact_bits(decimals: int, clamp: float) -> int:
    """Tight width: ceil(log2(levels))."""
    return max(1, (levels(decimals, clamp) - 1).bit_length())


def eq6_bits(decimals: int, clamp: float) -> int:
    """The paper's Eq. 6: 1 sign bit + ceil(log2 b) integer bits + ceil(m log2 10) decimal bits."""
    _check(decimals, clamp)
    integer_bits = max(0, math.ceil(math.log2(clamp)))
    decimal_bits = (10**decimals - 1).bit_length()  # ceil(m * log2 10), in integers
    return 1 + integer_bits + decimal_bits


@dataclass(frozen=True)
class QuantSpec:
    """round(clamp(s, -clamp, clamp), decimals), stored in ``bits`` bits per value."""

    decimals: int
    clamp: float
    bits: int
    rule: str

    @classmethod
    def create(cls, decimals: int, clamp: float = 127.0, bits: "int | None" = None, rule: str = "eq6") -> "QuantSpec":
        """Resolve the width by ``rule`` ("eq6" or "exact"), or take ``bits`` as given (checked)."""
        need = exact_bits(decimals, clamp)
        if bits is not None:
            if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
                raise PlannerError(f"bits must be a whole number in 1..{MAX_BITS}, got {bits!r}")
            if bits < need:
                raise PlannerError(
                    f"bits={bits} cannot hold the {levels(decimals, clamp):,} levels of m={decimals}, b={clamp:g} "
                    f"(needs >= {need} bits)")
            return cls(decimals, float(clamp), bits, "explicit")
        if rule not in ("eq6", "exact"):
            raise PlannerError(f"unknown width rule {rule!r} (expected eq6 or exact)")
        width = eq6_bits(decimals, clamp) if rule == "eq6" else need
        if width < need:
            raise PlannerError(
                f"Eq. 6 gives {width} bits for m={decimals}, b={clamp:g}, but the {levels(decimals, clamp):,} levels "
                f"need {need}: use the exact width rule (--width-rule exact) or give --bits")
        if width > MAX_BITS:
            raise PlannerError(f"m={decimals}, b={clamp:g} needs {width} bits per value; at most {MAX_BITS} are supported")
        return cls(decimals, float(clamp), width, rule)

    @property
    def step(self) -> float:
        """Quantization step 10^-m."""
        return 10.0**-self.decimals

    def describe(self) -> str:
        return f"m={self.decimals}, b={self.clamp:g}, {self.bits} bits ({self.rule})"
