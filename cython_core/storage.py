"""PackedRows: a stream of k-bit rows at bit stride that owns its storage and counts saturations.

>>> import numpy as np
>>> rows = PackedRows(1000, CodeLayout.uniform(348, decimals=2, clamp=127.0))
>>> rows.nbytes  # 1000 rows of 5220 bits (81,563 words), plus the spare word
652512
>>> rows.encode(np.full((2, 348), 200.0), [0, 1])  # every value saturates at +127
696
>>> float(rows.decode(np.array([1]))[0, 0])
127.0
"""

from typing import Any

import numpy as np

from cython_core._kernels import gather_unpack, pack_codes, quantize_match, quantize_pack_counts, unpack_codes
from cython_core.indices import as_indices
from cython_core.uniform import CodeLayout


class PackedRows:
    """``n_rows`` rows of ``layout.dim`` codes of ``layout.bits`` bits, row r at bit r x ``layout.row_bits`` of
    ``storage`` (uint64 words, ``layout.words(n_rows)`` of them)."""

    def __init__(self, n_rows: int, layout: CodeLayout) -> None:
        if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 0:
            raise ValueError(f"n_rows must be a whole number >= 0, got {n_rows!r}")
        self.layout = layout
        self.n_rows = int(n_rows)
        self.storage = np.zeros(layout.words(self.n_rows), dtype=np.uint64)
        self.saturated = 0
        self.nonfinite_coded = 0

    @classmethod
    def from_word_rows(cls, words: np.ndarray, layout: CodeLayout) -> "PackedRows":
        """The rows of ``words`` (uint64 (n_rows, w), each row's codes from its first bit and padded to whole words:
        what buffers saved before format 6 hold) at bit stride, bit for bit."""
        if words.dtype != np.uint64 or words.ndim != 2 or words.shape[1] * 64 < layout.row_bits:
            raise ValueError(f"words must be uint64 (n_rows, >= {-(-layout.row_bits // 64)}), "
                             f"got {words.dtype} {words.shape}")
        rows = cls(words.shape[0], layout)
        stream = rows.storage.view(np.uint8)
        step = 4096  # rows a chunk: a multiple of 8 rows starts at a whole byte
        for first in range(0, rows.n_rows, step):
            chunk = np.ascontiguousarray(words[first:first + step], dtype="<u8").view(np.uint8)
            bits = np.unpackbits(chunk, axis=1, bitorder="little")[:, :layout.row_bits]
            packed = np.packbits(bits.reshape(-1), bitorder="little")
            start = first * layout.row_bits // 8
            stream[start:start + packed.size] = packed
        return rows

    @property
    def nbytes(self) -> int:
        """Bytes allocated (what the planner's ``packed`` layout counts)."""
        return int(self.storage.nbytes)

    def encode(self, x: Any, rows: Any) -> int:
        """Quantize ``x`` (n, D) into ``rows``; returns (and accumulates) the saturation count."""
        saturated, coded = quantize_pack_counts(x, self.storage, self._rows(rows, "rows"), self.layout)
        self.saturated += saturated
        self.nonfinite_coded += coded
        return saturated

    def match(self, x: Any, rows: Any) -> "tuple[int, int, bool]":
        """``(saturated, nonfinite_coded, held)`` of ``x`` against ``rows`` (:func:`cython_core.quantize_match`)."""
        return quantize_match(x, self.storage, self._rows(rows, "rows"), self.layout)

    def put_codes(self, codes: np.ndarray, rows: Any) -> None:
        """Write ``codes`` (uint32 (n, D)) into ``rows``."""
        pack_codes(codes, self.storage, self._rows(rows, "rows"), self.layout)

    def codes(self, indices: Any) -> np.ndarray:
        """The codes rows ``indices`` hold, uint32 (n, D)."""
        return unpack_codes(self.storage, self._rows(indices, "indices"), self.layout)

    def decode(self, indices: Any, out: "np.ndarray | None" = None) -> np.ndarray:
        """Dequantized rows ``indices`` as float32 (n, D), written into ``out`` when given."""
        idx = self._rows(indices, "indices")
        if out is None:
            out = np.empty((idx.size, self.layout.dim), dtype=np.float32)
        gather_unpack(self.storage, idx, self.layout, out)
        return out

    def _rows(self, rows: Any, name: str) -> "int | np.ndarray":
        """``rows`` as the kernels take them, each checked against ``n_rows`` (the stream's spare bits could hold
        part of one more row: the kernels check only that a row fits the stream)."""
        if type(rows) is int and 0 <= rows < self.n_rows:
            return rows
        idx = as_indices(rows, name)  # floats and bools refused, as the kernels refuse them
        bad = (idx < 0) | (idx >= self.n_rows)
        if np.any(bad):
            raise IndexError(f"{name} must be in 0..{self.n_rows - 1}, got {int(idx[bad].flat[0])}")
        return idx
