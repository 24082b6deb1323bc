"""Observation ranges: per dimension, the code range the data needs on the paper's own grid 10^-m.

The paper keeps round(clamp(x, -b, b) * 10^m) for every value: 15 bits at m = 2, b = 127, whatever the data.
:func:`choose_ranges` reads observations and, per dimension, finds the width and range of those same codes that
minimise the expected bits per value (:meth:`cython_core.escape.EscapeLayout.choose`): the width (at least 1
bit, whose top value is the escape) plus, for the values outside (kept exactly in the rows' side table, never
clamped), the cost of a side-table entry times their rate. No dimension is wider than the uniform width, which
holds every code: the rows never cost more than the uniform packing's. A constant dimension costs 1 bit. It also
records the fraction of exact zeros and the empirical entropy of the codes (the bound no per-value code beats).
An :class:`ObservationRanges` is saved as versioned YAML (``planner obs scan``) and read back without gymnasium
(``planner obs show``).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = np.stack([rng.normal(0, 1, 5000), np.full(5000, 0.5), rng.normal(0, 1, 5000)], axis=1)
>>> x[::1000, 2] = 120.0  # rare outliers
>>> ranges = choose_ranges(x, decimals=2)
>>> (ranges.dims[1].lo, ranges.dims[1].hi), ranges.row_bits_of(1), ranges.dims[2].outside > 0
((50, 50), 1, True)
"""

from dataclasses import asdict, dataclass, field

import numpy as np

from cython_core.escape import ENTRY_COST_BITS, EscapeLayout, uniform_bits
from cython_core.layout import ENTRY_BYTES, SEGMENT_BYTES, block_rows, escape_width, pool_capacity
from planner.defaults import CLAMP
from planner.errors import PlannerError, quote
from planner.yamlio import read_yaml

RANGES_VERSION = 1
RULE = ("per dimension, the width w (1 bit to the uniform width) and the window of 2^w - 1 codes [lo, hi] holding "
        "the most values, with the fewest expected bits per value: w + "
        f"{ENTRY_COST_BITS:g} x (share of values outside; a side-table entry with its slack)")

def width(lo: int, hi: int) -> int:
    """Bits for the codes lo..hi: 0 for a single value.

    >>> width(0, 0), width(-100, 100), width(-12700, 12700)
    (0, 8, 15)
    """
    return int(hi - lo).bit_length()

def entropy_bits(codes: np.ndarray) -> float:
    """Empirical entropy of a column of codes, in bits per value (0.0, not -0.0, for a constant column)."""
    _, counts = np.unique(codes, return_counts=True)
    p = counts / counts.sum()
    return float((p * np.log2(1 / p)).sum())

@dataclass(frozen=True)
class DimRange:
    """One dimension: codes lo..hi in ``bits`` bits; ``outside``: share of the scanned values outside (they go to
    the exception store); ``zeros``: share of exact zeros; ``entropy``: bits per value of the scanned codes."""

    lo: int
    hi: int
    bits: int
    outside: float
    zeros: float
    entropy: float

@dataclass(frozen=True)
class ObservationRanges:
    """Per-dimension code ranges of one observation space, with where they came from."""

    decimals: int
    clamp: float
    dims: "tuple[DimRange, ...]"
    source: "dict[str, object]" = field(default_factory=dict)
    rule: str = RULE
    version: int = RANGES_VERSION

    @property
    def dim(self) -> int:
        return len(self.dims)

    def row_bits_of(self, index: int) -> int:
        """The bits dimension ``index`` takes in an escape-coded row (its codes lo..hi below the escape)."""
        return escape_width(self.dims[index].lo, self.dims[index].hi, self.uniform_bits)

    @property
    def row_bits(self) -> int:
        """Bits of one row at bit stride (cython_core.escape.EscapeLayout.from_ranges)."""
        return sum(self.row_bits_of(i) for i in range(self.dim))

    @property
    def mean_bits(self) -> float:
        return self.row_bits / max(self.dim, 1)

    @property
    def row_bytes(self) -> float:
        """Bytes of one row: rows are stored at bit stride."""
        return self.row_bits / 8

    @property
    def uniform_bits(self) -> int:
        """The paper's width for every value: the codes -b 10^m .. b 10^m."""
        return uniform_bits(self.decimals, self.clamp)

    @property
    def exceptions_per_row(self) -> float:
        """Expected side-table entries per row: the scanned share of values outside, summed over dimensions."""
        return sum(d.outside for d in self.dims)

    def exception_capacity(self, rows: int) -> int:
        """Side-table entries rows of ``rows`` allocate up front: the expected count at the scanned rate, with
        its slack (cython_core.layout.pool_capacity)."""
        return pool_capacity(rows, self.dim, self.exceptions_per_row)

    def check_fits(self, values: int, where: str = "observations") -> None:
        """Refuse ranges scanned from observations of another size than ``values``."""
        env = self.source.get("env")
        if self.dim != values:
            raise PlannerError(f"the observation ranges have {self.dim} dims{f' (scanned on {env})' if env else ''}, "
                               f"the {where} {values}", "obs_ranges")

    def summary(self) -> "dict[str, float]":
        """Mean bits per value, bytes per row (and the uniform packing's), expected exceptions per row and
        the share of values outside, mean entropy bits per value."""
        n = max(self.dim, 1)
        uniform_row = self.dim * self.uniform_bits / 8
        exceptions = self.exceptions_per_row
        return {"dims": self.dim, "mean_bits": self.mean_bits, "row_bytes": self.row_bytes,
                "block_bytes_per_row": SEGMENT_BYTES / block_rows(self.dim),
                "exceptions_per_row": exceptions, "exception_bytes_per_row": exceptions * ENTRY_BYTES,
                "outside_share": exceptions / n, "entropy_bits": sum(d.entropy for d in self.dims) / n,
                "uniform_bits": self.uniform_bits, "uniform_row_bytes": uniform_row}

    def as_dict(self) -> dict:
        return {"version": self.version, "decimals": self.decimals, "clamp": self.clamp, "source": self.source,
                "rule": self.rule, "dims": [asdict(d) for d in self.dims]}

    @classmethod
    def from_dict(cls, data: object, where: str = "<obs_ranges>") -> "ObservationRanges":
        """Read :meth:`as_dict`'s form back; anything else is one error naming the key at fault."""
        if not isinstance(data, dict):
            raise PlannerError(f"{where}: observation ranges are a mapping, got {type(data).__name__}", "obs_ranges")
        version = data.get("version")
        if version != RANGES_VERSION:
            raise PlannerError(f"{where}: version must be {RANGES_VERSION} (what this release writes), got "
                               f"{version!r}", "obs_ranges")
        unknown = sorted(map(str, set(data) - {"version", "decimals", "clamp", "source", "rule", "dims"}))
        if unknown:
            raise PlannerError(f"{where}: unknown keys {', '.join(unknown)[:80]}", "obs_ranges")
        decimals, clamp, dims = data.get("decimals"), data.get("clamp"), data.get("dims")
        if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= 9:
            raise PlannerError(f"{where}: decimals must be a whole number 0..9, got {quote(decimals)}"[:160],
                               "obs_ranges")
        if isinstance(clamp, bool) or not isinstance(clamp, (int, float)) or not 0 < clamp < 1e6:
            raise PlannerError(f"{where}: clamp must be a number in (0, 1e6), got {quote(clamp)}"[:160], "obs_ranges")
        if not isinstance(dims, list) or not dims:
            raise PlannerError(f"{where}: dims must be a non-empty list", "obs_ranges")
        out, keys = [], set(DimRange.__dataclass_fields__)
        for index, entry in enumerate(dims):
            if not isinstance(entry, dict) or set(entry) != keys:
                raise PlannerError(f"{where}: dims[{index}] must have exactly the keys {', '.join(sorted(keys))}",
                                   "obs_ranges")
            lo, hi, bits = entry["lo"], entry["hi"], entry["bits"]
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (lo, hi, bits)) or lo > hi \
                    or bits != width(lo, hi) or bits > 32:
                raise PlannerError(f"{where}: dims[{index}]: lo <= hi whole numbers with bits = "
                                   f"ceil(log2(hi - lo + 1)) <= 32, got lo={lo!r}, hi={hi!r}, bits={bits!r}"[:200],
                                   "obs_ranges")
            shares = [entry[k] for k in ("outside", "zeros")]
            if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in shares):
                raise PlannerError(f"{where}: dims[{index}]: outside and zeros are shares in [0, 1]", "obs_ranges")
            if not isinstance(entry["entropy"], (int, float)) or not 0 <= entry["entropy"] <= 64:
                raise PlannerError(f"{where}: dims[{index}]: entropy must be bits in [0, 64]", "obs_ranges")
            # abs: the checks above let -0.0 through (files scanned before entropy_bits gave 0.0 hold it)
            out.append(DimRange(lo, hi, bits, abs(float(entry["outside"])), abs(float(entry["zeros"])),
                               abs(float(entry["entropy"]))))
        source = data.get("source") if isinstance(data.get("source"), dict) else {}
        return cls(decimals, float(clamp), tuple(out), source, str(data.get("rule", RULE)))

def load_ranges(path: str) -> ObservationRanges:
    """Observation ranges file: read with the bounded YAML loader (1 MB, no anchors or aliases), checked
    field by field."""
    where = f"observation ranges {path}"
    return ObservationRanges.from_dict(read_yaml(path, where, "obs_ranges"), where)

def codes(observations: np.ndarray, decimals: int, clamp: float = CLAMP) -> np.ndarray:
    """The paper's codes: round(clamp(x, -b, b) * 10^m), as int64 (N, dim)."""
    x = np.asarray(observations, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0:
        raise PlannerError(f"observations must be a non-empty (N, dim) array, got shape {x.shape}", "observations")
    if not np.isfinite(x).all():
        raise PlannerError(f"observations hold {int((~np.isfinite(x)).sum())} NaN/inf values", "observations")
    return np.rint(np.clip(x, -clamp, clamp) * 10.0**decimals).astype(np.int64)

def choose_ranges(observations: np.ndarray, decimals: int, clamp: float = CLAMP,
              source: "dict[str, object] | None" = None) -> ObservationRanges:
    """The :class:`ObservationRanges` of ``observations`` (N, dim) at m = ``decimals``, b = ``clamp``."""
    all_codes = codes(observations, decimals, clamp)
    layout = EscapeLayout.choose(all_codes, decimals, clamp)
    held = layout.holds(all_codes)
    dims = []
    for j, column in enumerate(all_codes.T):
        lo, hi = int(layout.lo[j]), int(layout.hi[j])
        dims.append(DimRange(lo, hi, width(lo, hi), float(1 - held[:, j].mean()), float(np.mean(column == 0)),
                             entropy_bits(column)))
    return ObservationRanges(decimals, float(clamp), tuple(dims),
                           {"observations": int(all_codes.shape[0]), **(source or {})})
