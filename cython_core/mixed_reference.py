"""Pure-numpy reference of the mixed-width kernels: slow, obviously correct, bit for bit the compiled results.

Rows are built as a bit stream (bit t of dimension j's stored code at stream position offset_j + t) turned
into words by ``numpy.packbits(bitorder="little")``, and read back by ``numpy.unpackbits``: an independent
route from the compiled loads and shifts. Exceptions are patched by walking each row's run in ``table``, the
store's entries in use (``ExceptionStore.entries``), up to its end.

>>> import numpy as np
>>> from cython_core.mixed import MixedLayout
>>> spec = MixedLayout(lo=[-8, 0], bits=[4, 0], decimals=1, clamp=10.0)
>>> storage = np.zeros((3, 1), dtype=np.uint64)
>>> saturated, entries = mixed_pack(np.array([[0.3, 0.0], [-12.0, 0.1]]), storage, [2, 0], spec)
>>> saturated, entries.tolist(), storage[:, 0].tolist()
(1, [(0, 0, -100), (0, 1, 1)], [0, 0, 11])
>>> out = np.empty((2, 2), dtype=np.float32)
>>> mixed_unpack(storage, [0, 2], spec, np.array([0, -1, -1], dtype=np.int32), entries, out)
>>> out.tolist()
[[-10.0, 0.10000000149011612], [0.30000001192092896, 0.0]]
"""

from typing import Any

import numpy as np

from cython_core.errors import NonFiniteError
from cython_core.exceptions import EXCEPTION_DTYPE
from cython_core.indices import as_indices
from cython_core.mixed import MixedLayout
from cython_core.reference import _check_indices


def _check_storage(storage: np.ndarray, spec: MixedLayout, writable: bool) -> None:
    """``storage`` holds rows of ``spec.row_words`` words."""
    if (not isinstance(storage, np.ndarray) or storage.dtype != np.uint64 or storage.ndim != 2
            or storage.shape[1] != spec.row_words or not storage.flags.c_contiguous
            or (writable and not storage.flags.writeable)):
        raise ValueError(f"storage must be a writable C-contiguous uint64 array of shape (n_rows, {spec.row_words}), "
                         f"got {getattr(storage, 'dtype', type(storage).__name__)} {getattr(storage, 'shape', '')}")


def _spec(spec: Any) -> MixedLayout:
    if not isinstance(spec, MixedLayout):
        raise TypeError(f"spec must be a MixedLayout, got {type(spec).__name__}")
    return spec


def _as_rows(x: Any, spec: MixedLayout, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != spec.dim:
        raise ValueError(f"{name} must have shape (n, {spec.dim}) or ({spec.dim},), got {np.shape(x)}")
    return arr


def _rows(rows: Any, n: int, n_rows: int) -> np.ndarray:
    idx = as_indices(rows, "rows")
    if idx.ndim > 1 or idx.size != n:
        raise ValueError(f"rows must hold one index per row of x ({n}), got shape {idx.shape}")
    idx = idx.reshape(-1)
    _check_indices(idx, n_rows, "rows")
    if np.unique(idx).size != idx.size:
        raise ValueError("rows must be distinct (each row is written once per call)")
    return idx


def paper_codes(x: Any, spec: MixedLayout) -> "tuple[np.ndarray, int]":
    """rint(clip(x, -b, b) * 10^m) as int64 (n, D), and how many values lay beyond +-b."""
    arr = _as_rows(x, spec, "x")
    xd = arr.astype(np.float64)
    finite = np.isfinite(xd)
    if not finite.all():
        row, dim = np.argwhere(~finite)[0]
        raise NonFiniteError(int(finite.size - finite.sum()), int(row), int(dim))
    saturated = int(np.count_nonzero((xd < -spec.clamp) | (xd > spec.clamp)))
    return np.rint(np.clip(xd, -spec.clamp, spec.clamp) * spec.scale).astype(np.int64), saturated


def _stream_layout(spec: MixedLayout) -> "tuple[np.ndarray, np.ndarray]":
    """For each bit of a row's stream: its dimension and its place in that dimension's code."""
    dims = np.repeat(np.arange(spec.dim), spec.bits)
    places = np.concatenate([np.arange(b, dtype=np.uint64) for b in spec.bits] + [np.zeros(0, np.uint64)])
    return dims, places


def pack_rows(codes: np.ndarray, spec: MixedLayout) -> "tuple[np.ndarray, np.ndarray]":
    """(words (n, row_words) uint64, inside (n, D) bool) of paper ``codes``: codes outside their rows' ranges
    store 0."""
    inside = (codes >= spec.lo) & (codes <= spec.hi)
    stored = np.where(inside, codes - spec.lo, 0).astype(np.uint64)
    dims, places = _stream_layout(spec)
    stream = np.zeros((codes.shape[0], spec.row_words * 64), dtype=np.uint8)
    stream[:, : spec.row_bits] = (stored[:, dims] >> places) & np.uint64(1)
    words = np.packbits(stream, axis=1, bitorder="little").view("<u8").astype(np.uint64)
    return words.reshape(codes.shape[0], spec.row_words), inside


def unpack_rows(words: np.ndarray, spec: MixedLayout) -> np.ndarray:
    """Paper codes (int64 (n, D)) held in the rows ``words``, exceptions not patched (their slots read lo)."""
    n = words.shape[0]
    stream = np.unpackbits(np.ascontiguousarray(words).astype("<u8").view(np.uint8).reshape(n, spec.row_bytes), axis=1,
                           bitorder="little")[:, : spec.row_bits].astype(np.uint64)
    dims, places = _stream_layout(spec)
    stored = np.zeros((n, spec.dim), dtype=np.uint64)
    for j in range(spec.dim):
        stored[:, j] = (stream[:, dims == j] << places[dims == j]).sum(axis=1, dtype=np.uint64)
    return stored.astype(np.int64) + spec.lo


def _entries(codes: np.ndarray, inside: np.ndarray, rows: np.ndarray) -> np.ndarray:
    where = np.argwhere(~inside)  # row-major
    entries = np.zeros(len(where), dtype=EXCEPTION_DTYPE)
    entries["row"] = rows[where[:, 0]]
    entries["dim"] = where[:, 1]
    entries["code"] = codes[~inside]
    return entries


def mixed_pack(x: Any, storage: np.ndarray, rows: Any, spec: MixedLayout) -> "tuple[int, np.ndarray]":
    """Encode ``x`` into ``storage[rows]``; (saturated, entries) as the compiled twin returns them."""
    spec = _spec(spec)
    arr = _as_rows(x, spec, "x")
    _check_storage(storage, spec, writable=True)
    idx = _rows(rows, arr.shape[0], storage.shape[0])
    codes, saturated = paper_codes(arr, spec)
    words, inside = pack_rows(codes, spec)
    storage[idx] = words
    return saturated, _entries(codes, inside, idx)


def mixed_pack_codes(codes: Any, storage: np.ndarray, rows: Any, spec: MixedLayout) -> np.ndarray:
    """Pack paper codes into ``storage[rows]``; the entries, as the compiled twin returns them."""
    spec = _spec(spec)
    arr = _as_rows(codes, spec, "codes")
    if arr.dtype.kind not in "iu":
        raise ValueError(f"codes must be integers, got {arr.dtype}")
    arr = arr.astype(np.int64)
    outside = (arr < -spec.top) | (arr > spec.top)
    if np.any(outside):
        i, j = np.argwhere(outside)[0]
        raise ValueError(f"codes must be paper codes in -{spec.top}..{spec.top}; codes[{i}, {j}] = {arr[i, j]} is not")
    _check_storage(storage, spec, writable=True)
    idx = _rows(rows, arr.shape[0], storage.shape[0])
    words, inside = pack_rows(arr, spec)
    storage[idx] = words
    return _entries(arr, inside, idx)


def _check_store(at: Any, table: Any, n_rows: int) -> None:
    if not (isinstance(at, np.ndarray) and at.dtype == np.int32 and at.shape == (n_rows,)):
        raise ValueError(f"at must be a C-contiguous int32 array of shape ({n_rows},) (one entry per storage row), "
                         f"got {getattr(at, 'dtype', type(at).__name__)} {getattr(at, 'shape', '')}")
    if not (isinstance(table, np.ndarray) and table.dtype == EXCEPTION_DTYPE and table.ndim == 1):
        raise ValueError(f"table must be a C-contiguous 1-D EXCEPTION_DTYPE array, got "
                         f"{getattr(table, 'dtype', type(table).__name__)} {getattr(table, 'shape', '')}")


def mixed_codes(storage: np.ndarray, indices: Any, spec: MixedLayout, at: np.ndarray, table: np.ndarray) -> np.ndarray:
    """Paper codes (int64 (n, D)) of ``storage[indices]`` with each row's run of ``table`` entries (the entries in
    use) patched in; ``at`` pointing past ``table`` is refused, as the compiled kernel refuses it."""
    spec = _spec(spec)
    _check_storage(storage, spec, writable=False)
    idx = as_indices(indices, "indices")
    if idx.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {idx.shape}")
    _check_store(at, table, storage.shape[0])
    _check_indices(idx, storage.shape[0], "indices")
    codes = unpack_rows(storage[idx], spec)
    for i, r in enumerate(idx):
        k = int(at[r])
        if k >= len(table):
            raise ValueError("at points past the end of table")
        while 0 <= k < len(table) and table[k]["row"] == r:
            codes[i, table[k]["dim"]] = table[k]["code"]
            k += 1
    return codes


def mixed_unpack(storage: np.ndarray, indices: Any, spec: MixedLayout, at: np.ndarray, table: np.ndarray,
                 out: np.ndarray) -> None:
    """Decode ``storage[indices]`` into ``out`` (float32 or float64): (double)code * inv_scale, then cast."""
    spec = _spec(spec)
    idx = as_indices(indices, "indices")
    if (not isinstance(out, np.ndarray) or out.dtype not in (np.float32, np.float64)
            or out.shape != (idx.size, spec.dim)):
        raise ValueError(f"out must be a writable C-contiguous float32 array of shape ({idx.size}, {spec.dim}), "
                         f"got {getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
    codes = mixed_codes(storage, idx, spec, at, table)
    out[...] = (codes.astype(np.float64) * spec.inv_scale).astype(out.dtype)
