"""CodeLayout: how each observation value maps to a k-bit integer code and back.

code  = rint(clamp(x, lo, hi) * scale) - offset,  offset = rint(lo * scale)   (so 0 <= code < 2**bits)
value = (code + offset) * inv_scale,              inv_scale = 1 / scale        (float64, then the out dtype)

``rint`` rounds half to even (C ``rint`` in the default rounding mode, like ``numpy.round``).
Decoding multiplies by the float64 reciprocal instead of dividing (a division per value would cost
more than the memory traffic); the result is within one float64 ulp of ``(code + offset) / scale``.

>>> spec = CodeLayout.uniform(348, decimals=2, clamp=127.0)
>>> spec.bits, spec.levels, spec.row_bits  # rows lie at bit stride: 348 x 15 bits, no padding
(15, 25401, 5220)
>>> CodeLayout.from_config(spec.get_config()) == spec
True
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from cython_core.layout import MAX_BITS, bits_for_levels, check_bits, words_for

ROUNDINGS = ("half_even",)
NONFINITE_POLICIES = ("error", "code")
MAX_SCALED = 2.0**51  # |lo*scale|, |hi*scale| bound: integers stay exact in float64 and int64


def _vector(name: str, value: Any, dim: "int | None") -> np.ndarray:
    arr = np.array(value, dtype=np.float64)
    if arr.ndim == 0 and dim is not None:
        arr = np.full(dim, float(arr))
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array (one value per dimension), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got a non-finite value at dimension "
                         f"{int(np.argmin(np.isfinite(arr)))}")
    arr.setflags(write=False)
    return arr


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0])


@dataclass(frozen=True, eq=False, repr=False)
class CodeLayout:
    """Per-dimension clamp [lo, hi], scale and code width ``bits`` (1..MAX_BITS); see the module docstring.

    >>> spec = CodeLayout.per_dim(lo=[-1.0, 0.0], hi=[1.0, 10.0], scale=[10.0, 1.0])
    >>> spec.bits, spec.offset.tolist()
    (5, [-10, 0])
    """

    lo: np.ndarray
    hi: np.ndarray
    scale: np.ndarray
    bits: int
    rounding: str = "half_even"
    nonfinite: str = "error"
    nonfinite_code: int = 0
    offset: np.ndarray = field(init=False, repr=False)
    inv_scale: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        lo = _vector("lo", self.lo, None)
        hi = _vector("hi", self.hi, lo.size)
        scale = _vector("scale", self.scale, lo.size)
        if not (lo.size == hi.size == scale.size):
            raise ValueError(f"lo, hi and scale must have the same length, got {lo.size}, {hi.size}, {scale.size}")
        if np.any(lo >= hi):
            raise ValueError(f"lo must be < hi in every dimension; dimension {_first(lo >= hi)} has lo >= hi")
        if np.any(scale <= 0):
            raise ValueError(f"scale must be > 0 in every dimension; dimension {_first(scale <= 0)} has scale <= 0")
        too_big = (np.abs(lo * scale) >= MAX_SCALED) | (np.abs(hi * scale) >= MAX_SCALED)
        if np.any(too_big):
            raise ValueError("lo*scale and hi*scale must be below 2**51 in magnitude; "
                             f"dimension {_first(too_big)} is not")
        check_bits(self.bits)
        if self.rounding not in ROUNDINGS:
            raise ValueError(f"rounding must be one of {ROUNDINGS}, got {self.rounding!r}")
        if self.nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"nonfinite must be one of {NONFINITE_POLICIES}, got {self.nonfinite!r}")
        code = self.nonfinite_code
        if isinstance(code, bool) or not isinstance(code, (int, np.integer)) or not 0 <= code < 2**int(self.bits):
            raise ValueError(f"nonfinite_code must be a whole number in 0..2**bits - 1 = {2**int(self.bits) - 1}, "
                             f"got {code!r}")
        offset = np.rint(lo * scale).astype(np.int64)
        top = np.rint(hi * scale).astype(np.int64) - offset  # the largest code of each dimension
        if int(top.max()) >= 2**int(self.bits):
            need = bits_for_levels(int(top.max()) + 1)
            raise ValueError(f"bits={self.bits} cannot hold the {int(top.max()) + 1:,} levels of dimension "
                             f"{int(top.argmax())} (needs >= {need} bits)")
        with np.errstate(over="ignore", divide="ignore"):
            inv_scale = 1.0 / scale
        if not np.all(np.isfinite(inv_scale)):
            raise ValueError(f"scale must have a finite inverse in every dimension; dimension "
                             f"{_first(~np.isfinite(inv_scale))} has scale {scale[~np.isfinite(inv_scale)][0]!r} "
                             "(a denormal: its inverse overflows)")
        for arr in (offset, inv_scale):
            arr.setflags(write=False)
        for name, value in (("lo", lo), ("hi", hi), ("scale", scale), ("bits", int(self.bits)),
                            ("nonfinite_code", int(code)), ("offset", offset), ("inv_scale", inv_scale)):
            object.__setattr__(self, name, value)

    @classmethod
    def uniform(cls, dim: int, decimals: int, clamp: float, bits: "int | None" = None,
                **policy: Any) -> "CodeLayout":
        """round(clamp(x, -clamp, clamp), decimals) in every one of ``dim`` dimensions. ``decimals`` and ``clamp`` are
        taken as given: their check is the planner's (``planner.quantization.check_quantization``, which the
        quantized buffers make first); this refuses only what the kernels cannot run (see :meth:`per_dim`)."""
        if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
            raise ValueError(f"dim must be a whole number >= 1, got {dim!r}")
        clamp = float(clamp)
        return cls.per_dim(np.full(dim, -clamp), np.full(dim, clamp), np.full(dim, 10.0**decimals), bits, **policy)

    @classmethod
    def per_dim(cls, lo: Any, hi: Any, scale: Any, bits: "int | None" = None, **policy: Any) -> "CodeLayout":
        """Per-dimension bounds and scales; ``bits=None`` takes the tight width for the most levels."""
        if bits is None:
            bits = bits_for_levels(cls(lo, hi, scale, MAX_BITS).levels)  # validates, counts the levels
        return cls(lo, hi, scale, bits, **policy)

    @classmethod
    def from_config(cls, cfg: "dict[str, Any]") -> "CodeLayout":
        """Inverse of :meth:`get_config` (scalars are broadcast to ``dim``)."""
        cfg = dict(cfg)
        dim = cfg.pop("dim", None)
        lo = _vector("lo", cfg.pop("lo"), dim)
        return cls(lo, _vector("hi", cfg.pop("hi"), lo.size), _vector("scale", cfg.pop("scale"), lo.size), **cfg)

    def get_config(self) -> "dict[str, Any]":
        """A JSON-able dict; uniform fields are stored as one number."""
        cfg: "dict[str, Any]" = {"dim": self.dim}
        for name in ("lo", "hi", "scale"):
            arr = getattr(self, name)
            cfg[name] = float(arr[0]) if np.all(arr == arr[0]) else arr.tolist()
        cfg.update(bits=self.bits, rounding=self.rounding, nonfinite=self.nonfinite, nonfinite_code=self.nonfinite_code)
        return cfg

    @property
    def dim(self) -> int:
        return int(self.lo.size)

    @property
    def levels(self) -> int:
        """Most distinct codes any one dimension uses."""
        return int((np.rint(self.hi * self.scale).astype(np.int64) - self.offset).max()) + 1

    @property
    def row_bits(self) -> int:
        """Bits one row takes in the stream (rows at bit stride): dim x bits."""
        return self.dim * self.bits

    def words(self, n_rows: int) -> int:
        """64-bit words a stream of ``n_rows`` rows takes (``layout.words_for``: the spare word included)."""
        return words_for(n_rows, self.row_bits)

    def __repr__(self) -> str:
        cfg = self.get_config()
        short = {k: (v if not isinstance(v, list) else f"<{len(v)} values>") for k, v in cfg.items()}
        return "CodeLayout(" + ", ".join(f"{k}={v!r}" for k, v in short.items()) + ")"

    def __reduce__(self) -> tuple:
        # Rebuild through the constructor: validated, read-only arrays, no cached kernel tables.
        return (CodeLayout,
                (self.lo, self.hi, self.scale, self.bits, self.rounding, self.nonfinite, self.nonfinite_code))

    def _key(self) -> tuple:
        return (self.bits, self.rounding, self.nonfinite, self.nonfinite_code,
                self.lo.tobytes(), self.hi.tobytes(), self.scale.tobytes())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CodeLayout) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())
