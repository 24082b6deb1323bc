"""EscapeLayout: per dimension, the range of paper codes a row holds in its own width, the rest escaped.

The paper's code of a value is c = rint(clip(x, -b, b) * 10^m) (b = ``clamp``, m = ``decimals``, half to even).
Dimension j keeps c - lo[j] in ``bits[j]`` bits when that is below 2**bits[j] - 1; the top value is the escape:
the exact code is in the rows' side table (:class:`cython_core.EscapeRows`, compiled). No dimension is wider
than the uniform width (every code of -top..top fits below its escape there), so a row never costs more than the
uniform packing's. Decoding gives (double)c * (1 / 10^m), cast to the out dtype: the bits of the uniform kernels.

:meth:`EscapeLayout.choose` picks each dimension's width and range from sample codes: the fewest expected bits
per value, the width plus :data:`ENTRY_COST_BITS` times the share of values escaped.

>>> import numpy as np
>>> layout = EscapeLayout(lo=[-100, 50, -12700], bits=[8, 1, 15], decimals=2, clamp=127.0)
>>> layout.row_bits, layout.offsets.tolist(), layout.escape.tolist()
(24, [0, 8, 9], [255, 1, 32767])
>>> layout.holds(np.array([[-100, 50, 12700], [155, 51, 0]])).tolist()  # 155 - -100 = 255: the escape
[[True, True, True], [False, False, True]]
>>> EscapeLayout.uniform(11, 2, 127.0).row_bits  # Hopper at m = 2: 11 x 15 bits
165
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cython_core.checks import GridLayout
from cython_core.checks import int_vector as _int_vector
from cython_core.checks import whole_number as _whole
from cython_core.layout import ENTRY_BYTES, ENTRY_CODE_BITS, MAX_BITS, escape_width

ENTRY_COST_BITS = 8 * ENTRY_BYTES * 1.125  # an entry with its share of its block's slack (layout.pool_slack)


def uniform_bits(decimals: int, clamp: float) -> int:
    """The paper's width: the codes -top..top, top = rint(clamp 10^m).

    >>> uniform_bits(2, 127.0), uniform_bits(1, 127.0)
    (15, 12)
    """
    return int(2 * int(np.rint(float(clamp) * 10.0**decimals))).bit_length()


def _best_window(values: np.ndarray, counts: np.ndarray, size: int) -> "tuple[int, int]":
    """(lo, count inside) of the window [lo, lo + size - 1] holding the most of the sorted ``values`` (with
    ``counts``), lo one of the values."""
    cum = np.concatenate([[0], np.cumsum(counts)])
    ends = np.searchsorted(values, values + (size - 1), side="right")
    inside = cum[ends] - cum[:-1]
    best = int(np.argmax(inside))
    return int(values[best]), int(inside[best])


@dataclass(frozen=True, eq=False, repr=False)
class EscapeLayout(GridLayout):
    """Per dimension j the in-row codes lo[j] .. lo[j] + 2**bits[j] - 2 (bits 1..the uniform width), the top
    value the escape; the paper's grid 10^-decimals, clamp ``clamp``. See the module docstring."""

    lo: np.ndarray
    bits: np.ndarray
    decimals: int
    clamp: float
    scale: float = field(init=False, repr=False)
    inv_scale: float = field(init=False, repr=False)
    top: int = field(init=False, repr=False)
    offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lo, bits = _int_vector("lo", self.lo), _int_vector("bits", self.bits)
        if lo.size != bits.size:
            raise ValueError(f"lo and bits must have the same length, got {lo.size} and {bits.size}")
        decimals = _whole("decimals", self.decimals, 0, 9)
        clamp = self.clamp
        if isinstance(clamp, bool) or not isinstance(clamp, (int, float, np.integer, np.floating)) \
                or not (np.isfinite(clamp) and clamp > 0):
            raise ValueError(f"clamp must be a finite number > 0, got {clamp!r}")
        clamp, scale = float(clamp), 10.0**decimals
        top = int(np.rint(clamp * scale))
        if 2 * top + 1 > 2**ENTRY_CODE_BITS:
            raise ValueError(f"clamp * 10**decimals must stay below 2**{ENTRY_CODE_BITS - 1} (exception entries hold "
                             f"a code in {ENTRY_CODE_BITS} bits), got clamp={clamp!r}, decimals={decimals}")
        widest = min(MAX_BITS, uniform_bits(decimals, clamp))
        bad = (bits < 1) | (bits > widest)
        if np.any(bad):
            raise ValueError(f"bits must be in 1..{widest} (the uniform width) in every dimension; dimension "
                             f"{int(np.flatnonzero(bad)[0])} has {int(bits[bad][0])}")
        if lo.size >= 2**16:
            raise ValueError(f"lo and bits must have fewer than 65,536 dimensions, got {lo.size}")
        offsets = np.concatenate([[0], np.cumsum(bits)[:-1]]).astype(np.int64)
        for arr in (lo, bits, offsets):
            arr.setflags(write=False)
        for name, value in (("lo", lo), ("bits", bits), ("decimals", decimals), ("clamp", clamp), ("scale", scale),
                            ("inv_scale", 1.0 / scale), ("top", top), ("offsets", offsets)):
            object.__setattr__(self, name, value)

    @classmethod
    def uniform(cls, dim: int, decimals: int, clamp: float) -> "EscapeLayout":
        """Every dimension in the uniform width from -top: no code ever escapes."""
        _whole("dim", dim, 1, 2**16 - 1)
        top = int(np.rint(float(clamp) * 10.0 ** _whole("decimals", decimals, 0, 9)))
        return cls(np.full(dim, -top), np.full(dim, uniform_bits(decimals, clamp)), decimals, clamp)

    @classmethod
    def from_ranges(cls, obs_ranges: Any) -> "EscapeLayout":
        """The layout of observation ranges (``planner.obs_ranges.ObservationRanges``): each dimension's codes
        lo..hi below its escape (:func:`cython_core.layout.escape_width`), the uniform width where they need it."""
        base = cls.uniform(obs_ranges.dim, obs_ranges.decimals, obs_ranges.clamp)
        widest = int(base.bits[0])
        bits = np.array([escape_width(d.lo, d.hi, widest) for d in obs_ranges.dims], dtype=np.int64)
        lo = np.where(bits < widest, [d.lo for d in obs_ranges.dims], base.lo)
        return cls(lo, bits, obs_ranges.decimals, obs_ranges.clamp)

    @property
    def hi(self) -> np.ndarray:
        """The highest code each dimension holds in its row (the uniform width's: top)."""
        return np.minimum(self.lo + self.escape - 1, self.top)

    @classmethod
    def choose(cls, codes: Any, decimals: int, clamp: float) -> "EscapeLayout":
        """Per dimension of the sample ``codes`` (paper codes, (n, D)), the width and range with the fewest expected
        bits per value: bits + ENTRY_COST_BITS x the share of the sample escaped (the uniform width, which
        escapes nothing, is among the candidates)."""
        sample = np.asarray(codes, dtype=np.int64)
        if sample.ndim != 2 or sample.shape[0] == 0:
            raise ValueError(f"codes must be a non-empty (n, D) array, got shape {sample.shape}")
        base = cls.uniform(sample.shape[1], decimals, clamp)
        widest, n = int(base.bits[0]), sample.shape[0]
        lo, bits = base.lo.copy(), base.bits.copy()
        for j in range(sample.shape[1]):
            values, counts = np.unique(sample[:, j], return_counts=True)
            best = float(widest)
            for width in range(1, widest):
                size = (1 << width) - 1
                start, inside = _best_window(values, counts, size)
                cost = width + ENTRY_COST_BITS * (n - inside) / n
                if cost < best:
                    best, lo[j], bits[j] = cost, start, width
                if inside == n:
                    break
        return cls(lo, bits, decimals, clamp)

    def holds(self, codes: np.ndarray) -> np.ndarray:
        """Per code (paper codes, (n, D)), whether its row holds it (False: escaped)."""
        return (np.asarray(codes) - self.lo >= 0) & (np.asarray(codes) - self.lo < self.escape)

    def expected_bits(self, codes: np.ndarray) -> float:
        """Bits per value the sample ``codes`` would cost in these rows: widths plus escaped entries at
        ENTRY_COST_BITS."""
        return (self.row_bits + ENTRY_COST_BITS * np.count_nonzero(~self.holds(codes)) / len(codes)) / self.dim

    @property
    def escape(self) -> np.ndarray:
        """Each dimension's escape value: 2**bits - 1."""
        return (np.int64(1) << self.bits) - 1

    @property
    def row_bits(self) -> int:
        return int(self.bits.sum())

    def __repr__(self) -> str:
        return f"EscapeLayout(dim={self.dim}, row_bits={self.row_bits}, decimals={self.decimals}, clamp={self.clamp!r})"




