"""Byte sizes: parsing ``4GB`` / ``3.5 GiB`` / ``512MB`` and printing with an explicit unit.

MB, GB, KB are decimal (10^6, 10^9, 10^3); MiB, GiB, KiB are binary (2^20, 2^30, 2^10).

>>> parse_size("3.5 GiB")
3758096384
>>> format_bytes(27_091_200, "MB")
'27.09 MB'
"""

import math
import re

from planner.errors import PlannerError, quote

UNITS = {
    "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}
DISPLAY_UNITS = ("B", "KB", "MB", "GB", "KiB", "MiB", "GiB")
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?)\s*([A-Za-z]*)\s*$")
MAX_COUNT = 2**53  # the largest whole number a float holds exactly
MAX_SIZE = 2**64  # bytes: more than any address space


def parse_size(value: "int | float | str") -> int:
    """Bytes in ``value``: a number of bytes, or a string with a unit (B, KB, MB, GB, KiB, MiB, GiB...),
    at most 2^64."""
    if isinstance(value, bool):
        raise PlannerError(f"expected a size such as 4GB or 512MiB, got {quote(value)}")
    if isinstance(value, (int, float)):
        number, unit = (float(value) if abs(value) <= MAX_SIZE else math.inf), "B"
    else:
        match = _SIZE.match(str(value))
        if not match:
            raise PlannerError(f"expected a size such as 4GB or 512MiB, got {quote(value)}")
        number, unit = float(match.group(1)), (match.group(2) or "B").upper()
        if unit not in UNITS:
            raise PlannerError(f"unknown size unit {quote(match.group(2))} in {quote(value)} "
                               "(use B, KB, MB, GB, KiB, MiB, GiB)")
    size = number * UNITS[unit]
    if not abs(size) <= MAX_SIZE:  # also catches nan and inf
        raise PlannerError(f"expected a finite size of at most 2^64 bytes, such as 4GB or 512MiB, got {quote(value)}")
    return int(round(size))


def parse_count(value: "int | float | str") -> int:
    """A whole count such as ``1e6``, ``1_000_000`` or ``200000``, at most 2^53 in size."""
    try:
        number = float(str(value).replace("_", ""))
    except ValueError:
        raise PlannerError(f"expected a whole number such as 1e6 or 1_000_000, got {quote(value)}") from None
    if not abs(number) <= MAX_COUNT:  # also catches nan
        raise PlannerError(f"expected a whole number no larger than 2^53 (about 9e15), got {quote(value)}")
    if number != int(number):
        raise PlannerError(f"expected a whole number, got {quote(value)}")
    return int(number)


def format_bytes(n: float, unit: str = "MB", digits: int = 2) -> str:
    """``n`` bytes in ``unit`` (B, KB, MB, GB, KiB, MiB, GiB), with the unit written out."""
    key = unit.upper()
    if key not in UNITS:
        raise PlannerError(f"unknown display unit {quote(unit)}")
    if key == "B":
        return f"{int(n):,} B"
    return f"{n / UNITS[key]:,.{digits}f} {unit}"


def auto_unit(n: float, binary: bool = False) -> str:
    """The largest unit in which ``n`` bytes is at least 1 (decimal unless ``binary``)."""
    names = ("GiB", "MiB", "KiB") if binary else ("GB", "MB", "KB")
    for name in names:
        if abs(n) >= UNITS[name.upper()]:
            return name
    return "B"


def size_text(n: int) -> str:
    """``n`` bytes as a size a profile accepts, in MB to the kilobyte:
    ``size_text(24_563_453_952)`` is '24563.454MB'."""
    return f"{n / UNITS['MB']:.3f}MB"


def unit_note(unit: str) -> str:
    """What ``unit`` means, said once under a table: ``MB = 10^6 B``, ``MiB = 2^20 B``."""
    key = unit.upper()
    if key == "B":
        return "B = bytes"
    size = UNITS[key]
    return f"{unit} = 2^{size.bit_length() - 1} B" if "I" in key else f"{unit} = 10^{len(str(size)) - 1} B"
