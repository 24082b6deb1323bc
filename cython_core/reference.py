"""Pure-numpy reference of the packing kernels: slow, obviously correct, bit for bit the same results.

The bit layout is built with ``numpy.unpackbits`` / ``packbits(bitorder="little")`` over the whole stream, an
independent route from the compiled word-at-a-time code, so the tests compare two implementations.

>>> import numpy as np
>>> from cython_core.uniform import CodeLayout
>>> spec = CodeLayout.uniform(3, decimals=1, clamp=1.0)
>>> storage = np.zeros(spec.words(2), dtype=np.uint64)
>>> quantize_pack(np.array([0.25, -3.0, 0.35]), storage, [1], spec)  # -3.0 saturates
1
>>> out = np.empty((1, 3), dtype=np.float32)
>>> gather_unpack(storage, np.array([1]), spec, out)
>>> out.tolist()  # 0.25 -> 0.2 and 0.35 -> 0.4 (half to even on the binary value)
[[0.20000000298023224, -1.0, 0.4000000059604645]]
"""

from typing import Any

import numpy as np

from cython_core.errors import NonFiniteError
from cython_core.indices import as_indices
from cython_core.uniform import CodeLayout


def _as_rows(x: Any, spec: CodeLayout) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != spec.dim:
        raise ValueError(f"x must have shape (n, {spec.dim}) or ({spec.dim},), got {np.shape(x)}")
    return arr


def encode_codes(x: Any, spec: CodeLayout) -> "tuple[np.ndarray, int]":
    """Codes (uint64, shape (n, D)) of ``x`` and the number of values that saturated at the clamp."""
    xd = _as_rows(x, spec).astype(np.float64)
    finite = np.isfinite(xd)
    bad = int(finite.size - np.count_nonzero(finite))
    if bad and spec.nonfinite == "error":
        row, dim = np.argwhere(~finite)[0]
        raise NonFiniteError(bad, int(row), int(dim))
    xd = np.where(finite, xd, spec.lo)
    saturated = int(np.count_nonzero((xd < spec.lo) | (xd > spec.hi)))
    codes = np.rint(np.clip(xd, spec.lo, spec.hi) * spec.scale).astype(np.int64) - spec.offset
    codes[~finite] = spec.nonfinite_code
    return codes.astype(np.uint64), saturated


def decode_codes(codes: np.ndarray, spec: CodeLayout, dtype: Any = np.float32) -> np.ndarray:
    """Values of ``codes``: ((code + offset) as float64) * (1 / scale), cast to ``dtype``."""
    values = (codes.astype(np.int64) + spec.offset).astype(np.float64) * spec.inv_scale
    return values.astype(dtype)


def _bits(codes: np.ndarray, bits: int) -> np.ndarray:
    """Rows of codes -> their bit streams, little-endian (code j at bits [j*bits, (j+1)*bits))."""
    n, dim = codes.shape
    return ((codes[:, :, None] >> np.arange(bits, dtype=np.uint64)) & np.uint64(1)).astype(np.uint8).reshape(
        n, dim * bits)


def pack_codes(codes: np.ndarray, storage: np.ndarray, rows: np.ndarray, spec: CodeLayout) -> None:
    """Write rows of codes (n, D) at bit stride into ``storage`` (row r at bit r x spec.row_bits), every other bit
    kept."""
    stream = np.unpackbits(storage.view(np.uint8), bitorder="little")
    positions = rows[:, None] * spec.row_bits + np.arange(spec.row_bits)
    stream[positions] = _bits(codes.astype(np.uint64), spec.bits)
    storage[:] = np.packbits(stream, bitorder="little").view("<u8")


def unpack_codes(storage: np.ndarray, rows: np.ndarray, spec: CodeLayout) -> np.ndarray:
    """Inverse of :func:`pack_codes`: the codes (uint64, (n, D)) of rows ``rows``."""
    stream = np.unpackbits(storage.view(np.uint8), bitorder="little")
    positions = rows[:, None] * spec.row_bits + np.arange(spec.row_bits)
    bitplanes = stream[positions].reshape(rows.size, spec.dim, spec.bits).astype(np.uint64)
    return (bitplanes << np.arange(spec.bits, dtype=np.uint64)).sum(axis=2, dtype=np.uint64)


def _check_storage(storage: np.ndarray, spec: CodeLayout, writable: bool) -> int:
    """The rows ``storage`` (a 1-D stream of uint64 words, the spare one included) holds."""
    if (not isinstance(storage, np.ndarray) or storage.dtype != np.uint64 or storage.ndim != 1 or storage.size < 1
            or not storage.flags.c_contiguous or (writable and not storage.flags.writeable)):
        raise ValueError("storage must be a writable C-contiguous 1-D uint64 array of at least one word (rows at bit "
                         "stride, cython_core.layout.words_for), "
                         f"got {getattr(storage, 'dtype', type(storage).__name__)} {getattr(storage, 'shape', '')}")
    return (storage.size - 1) * 64 // spec.row_bits


def _check_indices(indices: np.ndarray, n_rows: int, name: str) -> None:
    bad = (indices < 0) | (indices >= n_rows)
    if np.any(bad):
        raise IndexError(f"{name} must be in 0..{n_rows - 1}, got {int(indices[bad][0])}")


def quantize_pack(x: Any, storage: np.ndarray, rows: Any, spec: CodeLayout) -> int:
    """Encode ``x`` (n, D) into ``storage[rows]``; returns the saturation count (see the compiled twin)."""
    n_rows = _check_storage(storage, spec, writable=True)
    arr = _as_rows(x, spec)
    idx = np.atleast_1d(as_indices(rows, "rows"))
    if idx.shape != (arr.shape[0],):
        raise ValueError(f"rows must hold one index per row of x ({arr.shape[0]}), got shape {idx.shape}")
    _check_indices(idx, n_rows, "rows")
    codes, saturated = encode_codes(arr, spec)
    pack_codes(codes, storage, idx, spec)
    return saturated


def gather_unpack(storage: np.ndarray, indices: Any, spec: CodeLayout, out: np.ndarray) -> None:
    """Decode ``storage[indices]`` into ``out`` (n, D) float32 (or float64)."""
    n_rows = _check_storage(storage, spec, writable=False)
    idx = as_indices(indices, "indices")
    if idx.ndim != 1 or out.shape != (idx.size, spec.dim) or out.dtype not in (np.float32, np.float64):
        raise ValueError(f"out must be a writable C-contiguous float32 array of shape ({idx.size}, {spec.dim}), "
                         f"got {out.dtype} {out.shape}")
    _check_indices(idx, n_rows, "indices")
    out[...] = decode_codes(unpack_codes(storage, idx, spec), spec, out.dtype)
