"""Observation quantization: decimals m, symmetric clamp b, and the bit width per value.

The paper's Eq. 6 counts ``1 + ceil(log2 b) + ceil(m log2 10)`` bits; the exact count of levels
``2*b*10^m + 1`` needs ``ceil(log2(levels))`` bits (the width the packed buffers use). They agree
at b = 127 (12 bits at m = 1, 15 at m = 2); Eq. 6 undercounts when b is a power of two and
overcounts elsewhere (b = 100, m = 1).

>>> Quantization.create(decimals=2).bits
15
>>> Quantization.create(decimals=1, clamp=100).bits, Quantization.create(decimals=1, clamp=100, rule="eq6").bits
(11, 12)
"""

import math
from dataclasses import dataclass
from numbers import Integral, Real

from cython_core.layout import MAX_BITS, bits_for_levels
from planner.defaults import CLAMP, WIDTH_RULE
from planner.errors import PlannerError, quote

WIDTH_RULES = ("eq6", "exact")
MAX_DECIMALS = 15  # 10^15 is the largest power of ten a float64 holds exactly


def check_quantization(decimals: int, clamp: float) -> "tuple[int, float]":
    """``(decimals, clamp)`` as int and float; an m or a b that no packed row holds is refused, naming ``decimals`` or
    ``clamp``: the one check of both, made by the planner and the quantized buffers alike."""
    if isinstance(decimals, bool) or not isinstance(decimals, Integral) or not 0 <= decimals <= MAX_DECIMALS:
        raise PlannerError(f"decimals must be a whole number in 0..{MAX_DECIMALS}, got {quote(decimals)}", "decimals")
    if isinstance(clamp, bool) or not (isinstance(clamp, Real) and math.isfinite(clamp) and clamp > 0):
        raise PlannerError(f"clamp must be a finite number > 0, got {quote(clamp)}", "clamp")
    if clamp < 10.0**-decimals:
        raise PlannerError(f"clamp = {clamp:g} is smaller than one quantization step at m={decimals} "
                           f"(10^-{decimals} = {10.0**-decimals:g}): use a larger clamp or fewer decimals", "clamp")
    if clamp * 10.0**decimals > 2.0 ** (MAX_BITS - 1) - 1:  # 2 * b * 10^m + 1 levels need > MAX_BITS bits
        raise PlannerError(f"clamp = {clamp:g} at m={decimals} needs more than {MAX_BITS} bits per value: "
                           "use a smaller clamp or fewer decimals", "clamp")
    return int(decimals), float(clamp)


def levels(decimals: int, clamp: float) -> int:
    """Distinct values of round(clamp(s, -b, b), m): 2 * round(b * 10^m) + 1."""
    decimals, clamp = check_quantization(decimals, clamp)
    return 2 * round(clamp * 10**decimals) + 1


def exact_bits(decimals: int, clamp: float) -> int:
    """Tight width: ceil(log2(levels))."""
    return bits_for_levels(levels(decimals, clamp))


def eq6_bits(decimals: int, clamp: float) -> int:
    """The paper's Eq. 6: 1 sign bit + ceil(log2 b) integer bits + ceil(m log2 10) decimal bits."""
    decimals, clamp = check_quantization(decimals, clamp)
    integer_bits = max(0, math.ceil(math.log2(clamp)))
    decimal_bits = (10**decimals - 1).bit_length()  # ceil(m * log2 10), in integers
    return 1 + integer_bits + decimal_bits


@dataclass(frozen=True)
class Quantization:
    """round(clamp(s, -clamp, clamp), decimals), stored in ``bits`` bits per value."""

    decimals: int
    clamp: float
    bits: int
    rule: str

    @classmethod
    def create(cls, decimals: int, clamp: float = CLAMP, bits: "int | None" = None,
               rule: str = WIDTH_RULE) -> "Quantization":
        """Resolve the width by ``rule`` ("exact" or the paper's "eq6"), or take ``bits`` as given (checked)."""
        decimals, clamp = check_quantization(decimals, clamp)
        need = exact_bits(decimals, clamp)
        if bits is not None:
            if isinstance(bits, bool) or not isinstance(bits, Integral) or not 1 <= bits <= MAX_BITS:
                raise PlannerError(f"bits must be a whole number in 1..{MAX_BITS}, got {quote(bits)}", "bits")
            if bits < need:
                raise PlannerError(f"bits = {bits} cannot hold the {levels(decimals, clamp):,} levels of m={decimals}, "
                                   f"b={clamp:g} (needs >= {need} bits)", "bits")
            return cls(decimals, clamp, int(bits), "explicit")
        if rule not in WIDTH_RULES:
            raise PlannerError(f"width_rule must be one of {', '.join(WIDTH_RULES)}, got {quote(rule)}", "width_rule")
        width = eq6_bits(decimals, clamp) if rule == "eq6" else need
        if width < need:
            raise PlannerError(f"width_rule eq6 gives {width} bits for m={decimals}, b={clamp:g}, but the "
                               f"{levels(decimals, clamp):,} levels need {need}: use the exact rule or give bits",
                               "width_rule")
        if width > MAX_BITS:
            raise PlannerError(f"width_rule eq6 gives {width} bits per value for m={decimals}, b={clamp:g}; at most "
                               f"{MAX_BITS} are supported", "width_rule")
        return cls(decimals, clamp, width, rule)

    def describe(self) -> str:
        return f"m={self.decimals}, b={self.clamp:g}, {self.bits} bits ({self.rule})"
