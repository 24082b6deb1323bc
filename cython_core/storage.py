"""PackedRows: a block of k-bit packed rows that owns its storage and counts saturations.

>>> import numpy as np
>>> rows = PackedRows(1000, CodeLayout.uniform(348, decimals=2, clamp=127.0))
>>> rows.nbytes, rows.padding_bytes  # 656 B per row, 28 padding bits per row
(656000, 3500.0)
>>> rows.encode(np.full((2, 348), 200.0), [0, 1])  # every value saturates at +127
696
>>> float(rows.decode(np.array([1]))[0, 0])
127.0
"""

from typing import Any

import numpy as np

from cython_core._kernels import gather_unpack, quantize_pack_counts
from cython_core.indices import as_indices
from cython_core.uniform import CodeLayout


class PackedRows:
    """``n_rows`` rows of ``layout.dim`` codes of ``layout.bits`` bits, ``layout.row_words`` uint64 words each."""

    def __init__(self, n_rows: int, layout: CodeLayout) -> None:
        if isinstance(n_rows, bool) or not isinstance(n_rows, (int, np.integer)) or n_rows < 0:
            raise ValueError(f"n_rows must be a whole number >= 0, got {n_rows!r}")
        self.layout = layout
        self.storage = np.zeros((int(n_rows), layout.row_words), dtype=np.uint64)
        self.saturated = 0
        self.nonfinite_coded = 0

    @property
    def n_rows(self) -> int:
        return int(self.storage.shape[0])

    @property
    def nbytes(self) -> int:
        """Bytes allocated, padding included (what the planner's ``packed`` layout counts)."""
        return int(self.storage.nbytes)

    @property
    def padding_bytes(self) -> float:
        """Bytes of the allocation that are row padding (unused bits at each row's end)."""
        return self.n_rows * self.layout.padding_bits / 8

    def encode(self, x: Any, rows: Any) -> int:
        """Quantize ``x`` (n, D) into ``rows``; returns (and accumulates) the saturation count."""
        saturated, coded = quantize_pack_counts(x, self.storage, rows, self.layout)
        self.saturated += saturated
        self.nonfinite_coded += coded
        return saturated

    def decode(self, indices: Any, out: "np.ndarray | None" = None) -> np.ndarray:
        """Dequantized rows ``indices`` as float32 (n, D), written into ``out`` when given."""
        idx = as_indices(indices, "indices")  # floats and bools refused, as gather_unpack refuses them
        if out is None:
            out = np.empty((idx.size, self.layout.dim), dtype=np.float32)
        gather_unpack(self.storage, idx, self.layout, out)
        return out
