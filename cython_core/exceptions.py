"""ExceptionStore: the codes a mixed-width row cannot hold, kept exact, row by row.

``at[r]`` is -1 when storage row r has no exceptions, else the index in ``table`` of its first entry; a row's
entries are consecutive in ``table`` and each carries its row, so a reader walks from ``at[r]`` while
``table[k]["row"] == r`` and ``k < used``: the decode kernels take ``entries`` (``table[:used]``), never the
free slots past it (which hold row -1 in every table this module allocates). Rewriting rows marks their old
entries dead (row = -1) and appends the new ones; when the table is full it is compacted, and grown (x2, or
to fit) only if the live entries need it.
The per-call bookkeeping of :meth:`ExceptionStore.put` (checks, dropping, appending) runs compiled
(``cython_core._mixed``): about 1-2 us for a few rows, with or without exceptions.

>>> import numpy as np
>>> store = ExceptionStore(n_rows=5, dim=3)
>>> store.put(np.array([1, 4]), np.array([(1, 0, -900), (1, 2, 5), (4, 1, 7)], dtype=EXCEPTION_DTYPE))
>>> store.at.tolist(), store.live
([-1, 0, -1, -1, 2], 3)
>>> store.put(np.array([1]), np.zeros(0, EXCEPTION_DTYPE))  # row 1 rewritten without exceptions
>>> store.at.tolist(), store.live, store.take(np.array([4, 1])).tolist()
([-1, -1, -1, -1, 2], 1, [(0, 1, 7)])
>>> store.per_dim.tolist(), store.rows_put
([1, 1, 1], 3)
"""

from typing import Any

import numpy as np

from cython_core.indices import as_indices

EXCEPTION_DTYPE = np.dtype([("row", "<i8"), ("dim", "<u2"), ("code", "<i4")], align=True)
assert EXCEPTION_DTYPE.itemsize == 16, EXCEPTION_DTYPE.itemsize  # row at 0, dim at 8, code at 12
MAX_ENTRIES = 2**31 - 1  # ``at`` is int32


def _empty_table(capacity: int) -> np.ndarray:
    """A table of ``capacity`` free slots (row -1: they never match a row); writing it commits its pages."""
    table = np.zeros(capacity, dtype=EXCEPTION_DTYPE)
    table["row"] = -1
    return table


def _kernels() -> Any:
    """The compiled module (imported on first use: it imports this one)."""
    global _KERNELS
    if _KERNELS is None:
        import cython_core._mixed as _KERNELS
    return _KERNELS


_KERNELS = None


def _check_rows(rows: np.ndarray, n_rows: int) -> None:
    bad = (rows < 0) | (rows >= n_rows)
    if np.any(bad):
        raise IndexError(f"rows must be in 0..{n_rows - 1}, got {int(rows[bad][0])}")


def _run_positions(table: np.ndarray, used: int, starts: np.ndarray, rows: np.ndarray) -> "tuple[np.ndarray, ...]":
    """(positions, which) of the entries of runs that begin at ``starts`` for storage rows ``rows``:
    ``which`` is the index into ``starts`` of each position; one vectorised step per entry of the longest run."""
    pos, which = [], []
    active = np.arange(starts.size)
    k = starts.astype(np.int64)
    while active.size:
        pos.append(k)
        which.append(active)
        k = k + 1
        more = k < used
        more[more] = table["row"][k[more]] == rows[active[more]]
        active, k = active[more], k[more]
    return np.concatenate(pos), np.concatenate(which)


class ExceptionStore:
    """Exception entries (EXCEPTION_DTYPE: storage row, dimension, paper code) of ``n_rows`` rows of ``dim``
    dimensions; see the module docstring. ``per_dim``: entries ever put, by dimension; ``rows_put``: rows
    ever written (both kept by :meth:`clear`; reset them by assignment)."""

    def __init__(self, n_rows: int, dim: int, capacity: int = 0) -> None:
        for name, value, low in (("n_rows", n_rows, 0), ("dim", dim, 1), ("capacity", capacity, 0)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
        if capacity > MAX_ENTRIES:
            raise ValueError(f"capacity must be at most {MAX_ENTRIES:,} entries, got {capacity:,}")
        self.dim = int(dim)
        self.at = np.full(int(n_rows), -1, dtype=np.int32)
        self.table = _empty_table(int(capacity))
        self.used = 0
        self.live = 0
        self.per_dim = np.zeros(self.dim, dtype=np.int64)
        self.rows_put = 0

    @property
    def n_rows(self) -> int:
        return int(self.at.size)

    @property
    def capacity(self) -> int:
        return int(self.table.size)

    @property
    def nbytes(self) -> int:
        """Bytes allocated: ``at`` plus the whole table."""
        return int(self.at.nbytes + self.table.nbytes)

    @property
    def entries(self) -> np.ndarray:
        """The table's slots in use, ``table[:used]`` (a view): what the decode kernels walk."""
        return self.table[:self.used]

    @property
    def live_bytes(self) -> int:
        """Bytes of the live entries."""
        return self.live * EXCEPTION_DTYPE.itemsize

    def put(self, rows: np.ndarray, entries: np.ndarray, trusted: bool = False) -> None:
        """Storage ``rows`` (int64, distinct) were rewritten: drop their old entries and append ``entries``
        (EXCEPTION_DTYPE, their ``row`` among ``rows``, grouped by row). ``trusted=True`` skips those checks,
        for ``rows`` and ``entries`` exactly as ``mixed_pack`` took and returned them."""
        kernels = _kernels()
        if not trusted:
            rows, entries = np.ascontiguousarray(rows), np.ascontiguousarray(entries)
            if rows.dtype != np.int64 or rows.ndim != 1:
                raise ValueError(f"rows must be a 1-D int64 array, got {rows.dtype} {rows.shape}")
            if entries.dtype != EXCEPTION_DTYPE or entries.ndim != 1:
                raise ValueError(f"entries must be a 1-D EXCEPTION_DTYPE array, got {entries.dtype} {entries.shape}")
            if self.live + len(entries) > MAX_ENTRIES:
                raise ValueError(f"entries would make {self.live + len(entries):,} live exceptions, beyond "
                                 f"{MAX_ENTRIES:,}")
            kernels._store_check(self.at, rows, entries, self.dim)
        if self.live:
            self.live -= kernels._store_drop(self.at, self.table, self.used, rows)
        m = len(entries)
        if m:
            if self.used + m > self.capacity:
                need = self.live + m
                self._compact(self.capacity if need <= self.capacity
                              else min(MAX_ENTRIES, max(2 * self.capacity, need)))
            kernels._store_append(self.at, self.table, self.used, entries, self.per_dim)
            self.used += m
            self.live += m
        self.rows_put += len(rows)

    def _compact(self, capacity: int) -> None:
        """Keep the live entries (in table order, so every row's run stays whole) in a table of ``capacity``."""
        keep = self.table[:self.used][self.table["row"][:self.used] >= 0]
        table = self.table if capacity == self.capacity else _empty_table(capacity)
        table[:keep.size] = keep
        table["row"][keep.size:] = -1  # stale copies past the end would extend a run
        self.table, self.used, self.live = table, int(keep.size), int(keep.size)
        if keep.size:
            r = keep["row"]
            starts = np.flatnonzero(np.concatenate([[True], r[1:] != r[:-1]]))
            self.at[r[starts]] = starts

    def take(self, rows: Any) -> np.ndarray:
        """The entries of storage ``rows``, in row order, with ``row`` renumbered to the position in ``rows``."""
        rows = as_indices(rows, "rows").reshape(-1)
        _check_rows(rows, self.n_rows)
        starts = self.at[rows]
        has = np.flatnonzero(starts >= 0)
        if not has.size:
            return np.zeros(0, EXCEPTION_DTYPE)
        pos, which = _run_positions(self.table, self.used, starts[has], rows[has])
        order = np.lexsort((pos, which))
        out = self.table[pos[order]]
        out["row"] = has[which[order]]
        return out

    def clear(self) -> None:
        """Drop every entry (the allocation and the counters stay)."""
        self.at[:] = -1
        self.table["row"][:self.used] = -1
        self.used = self.live = 0
