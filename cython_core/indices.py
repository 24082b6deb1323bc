"""Row indices for the kernels and the reference alike: integers only, as a C-contiguous int64 array.

>>> as_indices([3, 1], "rows").tolist()
[3, 1]
>>> as_indices([1.7], "rows")
Traceback (most recent call last):
...
TypeError: rows must be integers, got float64
"""

from typing import Any

import numpy as np


def as_indices(obj: Any, name: str) -> np.ndarray:
    """``obj`` as int64 indices; floats (which would truncate silently) and bools are refused, and so are
    integers beyond int64 (no row is that far). Every index path of the kernels and the reference comes
    through here, then through the same bounds check against the storage's rows."""
    arr = np.asarray(obj)
    if arr.size and arr.dtype == object and all(type(value) is int for value in arr.flat):
        raise IndexError(f"{name} must be row numbers, got an integer beyond int64")
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must be integers, got {arr.dtype}")
    if arr.size and arr.dtype.kind == "u" and int(arr.max()) > np.iinfo(np.int64).max:
        raise IndexError(f"{name} must be row numbers, got an integer beyond int64")
    return np.ascontiguousarray(arr, dtype=np.int64)
