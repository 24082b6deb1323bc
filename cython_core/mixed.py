"""Mixed-width rows on the paper's grid: MixedLayout (per-dimension code ranges) and MixedRows (storage + exceptions).

The paper's code of a value is c = rint(clip(x, -b, b) * 10^m) (b = ``clamp``, m = ``decimals``, half to even).
Dimension j keeps in its row the codes lo[j] .. lo[j] + 2**bits[j] - 1, as c - lo[j] in bits[j] bits (a 0-bit
dimension keeps only lo[j]); any other code goes, exact, to the row's entries in an
:class:`~cython_core.exceptions.ExceptionStore`. Code j sits at bits [offset_j, offset_j + bits_j) of the row's
little-endian bit stream, rows padded to whole 64-bit words. Decoding gives (double)c * (1 / 10^m), cast to
the out dtype: the same bits as the uniform kernels (``CodeLayout.uniform``) give for the same input.

>>> import numpy as np
>>> spec = MixedLayout(lo=[-100, 50, 0], bits=[8, 0, 15], decimals=2, clamp=127.0)
>>> spec.row_bits, spec.row_words, spec.offsets.tolist()
(23, 1, [0, 8, 8])
>>> rows = MixedRows(4, spec)
>>> rows.encode(np.array([[0.5, 0.5, 3.0], [-9.0, 0.51, 200.0]]), [2, 0])  # 200.0 saturates at 127
1
>>> rows.decode([2, 0]).tolist()  # -9.0 and 0.51 are outside their rows' ranges: exceptions, exact
[[0.5, 0.5, 3.0], [-9.0, 0.5099999904632568, 127.0]]
>>> rows.store.live, rows.codes([0]).tolist()
(2, [[-900, 51, 12700]])
>>> wider = spec.widen(rows.codes([0, 2]).min(axis=0), rows.codes([0, 2]).max(axis=0))
>>> wider.lo.tolist(), wider.bits.tolist()
([-900, 50, 0], [11, 1, 15])
>>> rows.repack(wider); rows.store.live, rows.decode([0]).tolist()
(0, [[-9.0, 0.5099999904632568, 127.0]])
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cython_core.checks import GridLayout
from cython_core.checks import int_vector as _int_vector
from cython_core.checks import whole_number as _whole
from cython_core.exceptions import ExceptionStore, _kernels
from cython_core.indices import as_indices
from cython_core.layout import MAX_BITS, WORD_BITS, WORD_BYTES

MAX_MIXED_DECIMALS = 9  # 10^9 * clamp must stay below 2**31 (exception codes are int32) for any clamp >= 1
MAX_LO = 2**40  # |lo| bound: lo + a 32-bit code stays exact in float64 and int64
REPACK_ROWS = 8192  # rows re-packed per step (bounds the int64 code scratch)


@dataclass(frozen=True, eq=False, repr=False)
class MixedLayout(GridLayout):
    """Per dimension j the in-row codes lo[j] .. lo[j] + 2**bits[j] - 1 (bits 0..32) on the grid 10^-decimals,
    clamp ``clamp``; see the module docstring."""

    lo: np.ndarray
    bits: np.ndarray
    decimals: int
    clamp: float
    scale: float = field(init=False, repr=False)
    inv_scale: float = field(init=False, repr=False)
    offsets: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lo, bits = _int_vector("lo", self.lo), _int_vector("bits", self.bits)
        if lo.size != bits.size:
            raise ValueError(f"lo and bits must have the same length, got {lo.size} and {bits.size}")
        if np.any((bits < 0) | (bits > MAX_BITS)):
            raise ValueError(f"bits must be in 0..{MAX_BITS} in every dimension; dimension "
                             f"{int(np.flatnonzero((bits < 0) | (bits > MAX_BITS))[0])} is not")
        if np.any(np.abs(lo) > MAX_LO):
            raise ValueError(f"lo must be within +-2**40 in every dimension; dimension "
                             f"{int(np.flatnonzero(np.abs(lo) > MAX_LO)[0])} is not")
        if lo.size >= 2**16:
            raise ValueError(f"lo and bits must have fewer than 65,536 dimensions (exception entries hold the "
                             f"dimension in 16 bits), got {lo.size}")
        decimals = _whole("decimals", self.decimals, 0, MAX_MIXED_DECIMALS)
        clamp = self.clamp
        if isinstance(clamp, bool) or not isinstance(clamp, (int, float, np.integer, np.floating)):
            raise ValueError(f"clamp must be a number > 0, got {clamp!r}")
        clamp = float(clamp)
        scale = 10.0**decimals
        if not (np.isfinite(clamp) and clamp > 0) or clamp * scale >= 2**31:
            raise ValueError(f"clamp must be > 0 with clamp * 10**decimals < 2**31 (exception codes are int32), "
                             f"got clamp={clamp!r}, decimals={decimals}")
        offsets = np.concatenate([[0], np.cumsum(bits)[:-1]]).astype(np.int64)
        for arr in (lo, bits, offsets):
            arr.setflags(write=False)
        for name, value in (("lo", lo), ("bits", bits), ("decimals", decimals), ("clamp", clamp),
                            ("scale", scale), ("inv_scale", 1.0 / scale), ("offsets", offsets)):
            object.__setattr__(self, name, value)

    @classmethod
    def uniform(cls, dim: int, decimals: int, clamp: float) -> "MixedLayout":
        """Every dimension holds all the paper's codes -rint(b 10^m) .. rint(b 10^m) (no exceptions ever)."""
        _whole("dim", dim, 1, 2**16 - 1)
        top = int(np.rint(float(clamp) * 10.0 ** _whole("decimals", decimals, 0, MAX_MIXED_DECIMALS)))
        return cls(np.full(dim, -top), np.full(dim, (2 * top).bit_length()), decimals, clamp)

    @classmethod
    def from_ranges(cls, obs_ranges: Any) -> "MixedLayout":
        """The spec of a scan (``planner.obs_ranges.ObservationRanges``: ``dims`` with ``lo`` and ``bits``)."""
        return cls([d.lo for d in obs_ranges.dims], [d.bits for d in obs_ranges.dims], obs_ranges.decimals,
                   obs_ranges.clamp)

    def widen(self, codes_lo: Any, codes_hi: Any) -> "MixedLayout":
        """A spec whose dimension j holds at least [codes_lo[j], codes_hi[j]] besides its own range
        (bits = (hi - lo).bit_length()); dimensions with codes_lo > codes_hi (no data) are kept."""
        new_lo, new_hi = _int_vector("codes_lo", codes_lo), _int_vector("codes_hi", codes_hi)
        if new_lo.shape != (self.dim,) or new_hi.shape != (self.dim,):
            raise ValueError(f"codes_lo and codes_hi must have one value per dimension ({self.dim}), "
                             f"got {new_lo.size} and {new_hi.size}")
        data = new_lo <= new_hi
        lo = np.where(data, np.minimum(self.lo, new_lo), self.lo)
        hi = np.where(data, np.maximum(self.hi, new_hi), self.hi)
        bits = np.array([int(span).bit_length() for span in (hi - lo)], dtype=np.int64)
        return MixedLayout(lo, bits, self.decimals, self.clamp)

    @property
    def hi(self) -> np.ndarray:
        """The highest code each dimension holds in its row: lo + 2**bits - 1."""
        return self.lo + (np.int64(1) << self.bits) - 1

    @property
    def top(self) -> int:
        """rint(clamp * 10^m): paper codes lie in -top..top."""
        return int(np.rint(self.clamp * self.scale))

    @property
    def row_bits(self) -> int:
        return int(self.bits.sum())

    @property
    def row_words(self) -> int:
        """64-bit words per row (0 when every dimension has 0 bits)."""
        return -(-self.row_bits // WORD_BITS)

    @property
    def row_bytes(self) -> int:
        return self.row_words * WORD_BYTES

    def __repr__(self) -> str:
        return (f"MixedLayout(dim={self.dim}, row_bits={self.row_bits}, decimals={self.decimals}, "
                f"clamp={self.clamp!r})")






class MixedRows:
    """``n_rows`` mixed-width rows (``storage``: uint64 (n_rows, spec.row_words)) and their exceptions
    (``store``); ``saturated`` counts the values clamped at +-b over every :meth:`encode`."""

    def __init__(self, n_rows: int, spec: MixedLayout, exception_capacity: int = 0) -> None:
        if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 0:
            raise ValueError(f"n_rows must be a whole number >= 0, got {n_rows!r}")
        if not isinstance(spec, MixedLayout):
            raise TypeError(f"spec must be a MixedLayout, got {type(spec).__name__}")
        self.spec = spec
        self.storage = np.zeros((int(n_rows), spec.row_words), dtype=np.uint64)
        self.store = ExceptionStore(int(n_rows), spec.dim, exception_capacity)
        self.saturated = 0

    @property
    def n_rows(self) -> int:
        return int(self.storage.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes allocated: the rows plus the exception store (its index and its whole table)."""
        return int(self.storage.nbytes) + self.store.nbytes

    def encode(self, x: Any, rows: Any) -> int:
        """Quantize ``x`` (n, D) into ``rows`` (distinct), replacing their exceptions; returns (and accumulates)
        the saturation count."""
        idx = np.atleast_1d(as_indices(rows, "rows"))
        saturated, entries = _kernels().mixed_pack(x, self.storage, idx, self.spec)
        self.store.put(idx, entries, trusted=True)
        self.saturated += saturated
        return saturated

    def decode(self, indices: Any, out: "np.ndarray | None" = None) -> np.ndarray:
        """Rows ``indices`` as float32 (n, D), written into ``out`` (float32 or float64) when given."""
        idx = as_indices(indices, "indices")
        if out is None:
            out = np.empty((idx.size, self.spec.dim), dtype=np.float32)
        _kernels().mixed_unpack(self.storage, idx, self.spec, self.store.at, self.store.entries, out)
        return out

    def codes(self, indices: Any) -> np.ndarray:
        """The paper codes (int64 (n, D)) of rows ``indices``."""
        idx = as_indices(indices, "indices")
        return _kernels().mixed_codes(self.storage, idx, self.spec, self.store.at, self.store.entries)

    def repack(self, spec: MixedLayout) -> None:
        """Re-pack every row under ``spec`` (same dim, decimals and clamp), keeping every code: codes the new
        ranges hold move into the rows, the others stay exceptions. The store's counters restart."""
        kernels = _kernels()
        if not isinstance(spec, MixedLayout):
            raise TypeError(f"spec must be a MixedLayout, got {type(spec).__name__}")
        old = self.spec
        if (spec.dim, spec.decimals, spec.clamp) != (old.dim, old.decimals, old.clamp):
            raise ValueError(f"spec must keep dim, decimals and clamp ({old.dim}, {old.decimals}, {old.clamp!r}), "
                             f"got ({spec.dim}, {spec.decimals}, {spec.clamp!r})")
        storage = np.zeros((self.n_rows, spec.row_words), dtype=np.uint64)
        store = ExceptionStore(self.n_rows, spec.dim, self.store.live)
        for start in range(0, self.n_rows, REPACK_ROWS):
            rows = np.arange(start, min(start + REPACK_ROWS, self.n_rows), dtype=np.int64)
            codes = kernels.mixed_codes(self.storage, rows, old, self.store.at, self.store.entries)
            store.put(rows, kernels.mixed_pack_codes(codes, storage, rows, spec), trusted=True)
        store.per_dim[:] = 0
        store.rows_put = 0
        self.spec, self.storage, self.store = spec, storage, store
