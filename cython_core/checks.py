"""Argument checks the layouts share: whole numbers in a range, vectors of whole numbers."""

from typing import Any

import numpy as np


def whole_number(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int if it is a whole number in lo..hi, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise ValueError(f"{name} must be a whole number in {lo}..{hi}, got {value!r}")
    return int(value)


def int_vector(name: str, value: Any) -> np.ndarray:
    """``value`` as a non-empty 1-D int64 array of whole numbers within int64, else ValueError naming ``name``."""
    arr = np.array(value)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array (one value per dimension), got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        if arr.dtype.kind != "f" or not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{name} must hold whole numbers, got {arr.dtype}")
    if np.any(np.abs(arr.astype(np.float64)) > 2.0**62):
        raise ValueError(f"{name} must hold whole numbers within int64")
    return arr.astype(np.int64)


class GridLayout:
    """What a per-dimension layout on the paper's grid (``lo``, ``bits``, ``decimals``, ``clamp``) does the same way
    whatever its rows: its config, its size, equality and pickling through its constructor (validated, read-only
    arrays, no cached kernel tables)."""

    @classmethod
    def from_config(cls, cfg: "dict[str, Any]") -> Any:
        """Inverse of :meth:`get_config`."""
        return cls(**cfg)

    def get_config(self) -> "dict[str, Any]":
        """A JSON-able dict."""
        return {"lo": self.lo.tolist(), "bits": self.bits.tolist(), "decimals": self.decimals, "clamp": self.clamp}

    @property
    def dim(self) -> int:
        return int(self.lo.size)

    def __reduce__(self) -> tuple:
        return (type(self), (self.lo, self.bits, self.decimals, self.clamp))

    def _key(self) -> tuple:
        return (self.decimals, self.clamp, self.lo.tobytes(), self.bits.tobytes())

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())
