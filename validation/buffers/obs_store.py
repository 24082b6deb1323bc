"""Observation storage of the quantized buffers, for every space SB3 stores: one column per entry.

A Box of floats (or a Dict entry that is one) is a :class:`PackedColumn`: k-bit codes packed into 64-bit
words by the Cython core; or, with ``dtype="float16"`` / ``"bfloat16"``, a :class:`HalfColumn` (the
alternative a PyTorch user reaches for first, stored once too); or, with ``obs_ranges``, a :class:`CalibratedColumn`
(each dimension in the width observation ranges gives it, the values outside in an exception store, exact;
:class:`Drift` counts them and may recalibrate). Anything else (uint8 images, integer
Boxes, Discrete, MultiDiscrete, MultiBinary) is a :class:`RawColumn`, kept as SB3 keeps it (the space's
dtype, ``get_obs_shape``): quantizing it would gain nothing, but it is still stored once.
:class:`ObservationCodec` holds the columns of one space (one column, keyed ``None``, or one per Dict key)
and turns a batch of observations into :class:`Codes` (validating and encoding everything before a buffer
changes any state); :class:`ObservationRows` holds ``n_rows`` rows of every column.

>>> import numpy as np
>>> from gymnasium import spaces
>>> space = spaces.Dict({"pos": spaces.Box(-np.inf, np.inf, (3,)), "cell": spaces.Discrete(5)})
>>> codec = ObservationCodec(space, decimals=1)
>>> {key: type(column).__name__ for key, column in codec.columns.items()}
{'cell': 'RawColumn', 'pos': 'PackedColumn'}
>>> rows = ObservationRows(codec, 4)
>>> rows.put(np.array([2]), codec.encode({"pos": np.array([[0.26, -1.0, 300.0]]), "cell": np.array([3])}, 1))
>>> decoded = rows.decode(np.array([2]))
>>> decoded["pos"].tolist(), decoded["cell"].tolist(), rows.saturated
([[0.30000001192092896, -1.0, 127.0]], [[3]], 1)
"""

import logging
import warnings
from os import PathLike
from typing import Any, Callable, TypeVar, Union

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_obs_shape

from cython_core import (
    CodeLayout,
    MixedLayout,
    MixedRows,
    gather_unpack,
    mixed_match,
    mixed_pack,
    quantize_match,
    quantize_pack_counts,
)
from cython_core.layout import EXCEPTION_ENTRY_BYTES
from planner.defaults import CLAMP
from planner.errors import PlannerError, quote
from planner.obs_ranges import ObservationRanges, load_ranges, widen_range
from planner.quantization import Quantization

LOG = logging.getLogger(__name__)
T = TypeVar("T")
PerKey = Union[T, dict[str, T]]  # one value for every entry of a Dict space, or a dict of values by key
CODEC_OPTIONS = ("decimals", "clamp", "bits", "layout", "dtype", "obs_ranges")  # ObservationCodec's keywords


def _label(key: "str | None") -> str:
    return "observation" if key is None else f"observation[{key!r}]"


def _rows_of(values: Any, n: int, width: int, key: "str | None", shape: "tuple[int, ...]") -> np.ndarray:
    arr = np.asarray(values)
    if arr.size != n * width:
        raise PlannerError(f"{_label(key)} has shape {arr.shape}, expected ({n}, {', '.join(map(str, shape))}) "
                           f"(n_envs = {n})", "obs")
    return arr.reshape(n, width)


def _float_rows(values: Any, n: int, column: Any) -> np.ndarray:
    """``n`` rows of a float column's values, float32 or float64 as given (anything else as float64)."""
    if type(values) is np.ndarray and values.shape == (n, column.values) and values.dtype.char in "fd":
        return values  # the usual case: no conversion, no reshape
    arr = _rows_of(values, n, column.values, column.key, column.shape)
    return arr if arr.dtype in (np.float32, np.float64) else arr.astype(np.float64)


def _rows_from(first: int, n: int) -> "int | np.ndarray":
    """Rows ``first``..``first + n - 1`` for the uniform kernels: one row as an int (no array to make or read)."""
    return first if n == 1 else np.arange(first, first + n, dtype=np.int64)


_ROW_INDEX: "dict[int, np.ndarray]" = {}


def _row_index(n: int) -> np.ndarray:
    """0..n-1 as int64 (cached: encoding a batch writes rows 0..n-1 of its own codes)."""
    index = _ROW_INDEX.get(n)
    if index is None:
        index = _ROW_INDEX[n] = np.arange(n, dtype=np.int64)
        index.flags.writeable = False
    return index


class ArrayColumn:
    """A column whose rows are one numpy array of ``width`` values of ``dtype`` (the codes a batch encodes to)."""

    width: int
    dtype: np.dtype
    in_place = False  # whether it has ``encode_into``

    def allocate(self, n_rows: int, eager: bool) -> np.ndarray:
        array = np.zeros((n_rows, self.width), dtype=self.dtype)
        if eager:
            array.fill(0)  # commits the pages now
        return array

    def put(self, store: np.ndarray, rows: "np.ndarray | slice", codes: np.ndarray) -> None:
        store[rows] = codes

    def take(self, store: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return store[rows]

    def holds(self, store: np.ndarray, rows: slice, codes: np.ndarray) -> bool:
        return store[rows].tobytes() == codes.tobytes()

    def same(self, store: np.ndarray, rows: "np.ndarray | slice", codes: np.ndarray) -> np.ndarray:
        return (store[rows] == codes).all(axis=1)

    def breakdown(self, label: str, store: np.ndarray) -> "dict[str, int]":
        return {label: int(store.nbytes)}

    def owned(self, store: np.ndarray) -> "list[np.ndarray]":
        """The numpy arrays that hold ``store``."""
        return [store]


class PackedColumn(ArrayColumn):
    """A Box of floats: rows of ``layout.dim`` k-bit codes in ``layout.row_words`` 64-bit words."""

    quantized = True
    in_place = True

    def __init__(self, key: "str | None", shape: "tuple[int, ...]", layout: CodeLayout) -> None:
        self.key, self.shape, self.layout = key, shape, layout
        self.values, self.width, self.dtype = layout.dim, layout.row_words, np.dtype(np.uint64)
        self.sample_dtype = np.dtype(np.float32)

    def encode(self, values: Any, n: int) -> "tuple[np.ndarray, int]":
        """(codes (n, width), saturated values); raises ``NonFiniteError`` on NaN/inf unless the layout codes them."""
        codes = np.empty((n, self.width), dtype=np.uint64)  # the kernel writes every word, padding included
        saturated, _ = quantize_pack_counts(_float_rows(values, n, self), codes, _row_index(n), self.layout)
        return codes, saturated

    def encode_into(self, store: np.ndarray, first: int, n: int, values: Any) -> int:
        """Encode ``n`` rows of ``values`` straight into ``store``'s rows ``first``.. (nothing written if they are
        rejected); returns the saturated values."""
        return quantize_pack_counts(_float_rows(values, n, self), store, _rows_from(first, n), self.layout)[0]

    def match(self, store: np.ndarray, first: int, n: int, values: Any) -> "tuple[np.ndarray | None, int]":
        """(codes, saturated) of ``n`` rows of ``values`` as :meth:`encode` gives them, codes None when ``store``'s
        rows ``first``.. hold them already (compared in the kernel: no codes made)."""
        arr = _float_rows(values, n, self)
        saturated, _, held = quantize_match(arr, store, _rows_from(first, n), self.layout)
        return (None if held else self.encode(arr, n)[0]), saturated

    def decode(self, array: np.ndarray, rows: np.ndarray) -> th.Tensor:
        """Rows decoded straight into a new float32 tensor (n, *shape)."""
        out = th.empty((rows.size, self.values), dtype=th.float32)
        gather_unpack(array, rows, self.layout, out.numpy())
        return out.view(rows.size, *self.shape)


HALF_DTYPES = ("float16", "bfloat16")
FLOAT16_MAX = float(np.finfo(np.float16).max)


def to_bfloat16(x: np.ndarray) -> np.ndarray:
    """float32 -> bfloat16 bits (the high 16 bits, rounded to nearest even; NaN stays NaN) as uint16.

    >>> to_bfloat16(np.array([1.0, 3.14159, -2.5e38, np.nan], dtype=np.float32)).tolist()
    [16256, 16457, 65340, 32704]
    """
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.uint32)
    rounded = ((bits + np.uint32(0x7FFF) + ((bits >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))
    return np.where(np.isnan(x), np.uint32(0x7FC0), rounded).astype(np.uint16)


def from_bfloat16(bits: np.ndarray, out: np.ndarray) -> None:
    """bfloat16 bits (uint16) -> float32, written into ``out`` (same shape)."""
    out.view(np.uint32)[...] = bits.astype(np.uint32) << np.uint32(16)


class HalfColumn(ArrayColumn):
    """A Box of floats stored as float16, or as bfloat16 (the high 16 bits of a float32, numpy having no
    bfloat16 type). Finite values beyond float16's range (65504) become inf and are counted as saturated."""

    quantized = True

    def __init__(self, key: "str | None", shape: "tuple[int, ...]", dtype: str) -> None:
        self.key, self.shape, self.half = key, shape, dtype
        self.values = self.width = int(np.prod(shape))
        self.dtype = np.dtype(np.float16 if dtype == "float16" else np.uint16)
        self.sample_dtype = np.dtype(np.float32)
        self.layout = None

    def encode(self, values: Any, n: int) -> "tuple[np.ndarray, int]":
        arr = _rows_of(values, n, self.values, self.key, self.shape)
        if self.half == "float16":
            with np.errstate(over="ignore"):
                saturated = int(np.count_nonzero(np.isfinite(arr) & (np.abs(arr) > FLOAT16_MAX)))
                return arr.astype(np.float16), saturated
        return to_bfloat16(arr.astype(np.float32)), 0

    def decode(self, array: np.ndarray, rows: np.ndarray) -> th.Tensor:
        out = th.empty((rows.size, self.values), dtype=th.float32)
        if self.half == "float16":
            out.numpy()[...] = array[rows]
        else:
            from_bfloat16(array[rows], out.numpy())
        return out.view(rows.size, *self.shape)


class RawColumn(ArrayColumn):
    """An entry stored as SB3 stores it: ``get_obs_shape`` values of the space's dtype per row."""

    quantized = False

    def __init__(self, key: "str | None", shape: "tuple[int, ...]", dtype: np.dtype) -> None:
        self.key, self.shape, self.dtype = key, shape, np.dtype(dtype)
        self.values = self.width = int(np.prod(shape))
        self.sample_dtype = self.dtype
        self.layout = None

    def encode(self, values: Any, n: int) -> "tuple[np.ndarray, int]":
        return _rows_of(values, n, self.width, self.key, self.shape).astype(self.dtype), 0

    def decode(self, array: np.ndarray, rows: np.ndarray) -> th.Tensor:
        return th.from_numpy(array[rows]).view(rows.size, *self.shape)


def _indices(rows: "np.ndarray | slice", n_rows: int) -> np.ndarray:
    """Row indices (int64) of an index array or a slice of ``n_rows`` rows."""
    if isinstance(rows, slice):
        return np.arange(*rows.indices(n_rows), dtype=np.int64)
    return np.asarray(rows, dtype=np.int64)


def _same_entries(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two runs of exception entries are equal field by field (their padding bytes are not data)."""
    return a.size == b.size and all(np.array_equal(a[name], b[name]) for name in ("row", "dim", "code"))


class MixedCodes:
    """A batch of mixed-width rows: ``words`` (n, row_words) and the exception ``entries`` of its rows
    (``entries["row"]`` is the position in the batch)."""

    __slots__ = ("words", "entries")

    def __init__(self, words: np.ndarray, entries: np.ndarray) -> None:
        self.words, self.entries = words, entries

    def __getitem__(self, envs: Any) -> "MixedCodes":
        """Rows ``envs`` of the batch, renumbered 0..len(envs)-1."""
        envs = np.atleast_1d(np.asarray(envs, dtype=np.int64))
        parts = []
        for position, env in enumerate(envs.tolist()):
            part = self.entries[self.entries["row"] == env]
            part["row"] = position
            parts.append(part)
        return MixedCodes(self.words[envs], np.concatenate(parts) if parts else self.entries[:0])

    def same_rows(self, other: "MixedCodes") -> np.ndarray:
        """Per row, whether both batches hold the same words and the same exceptions."""
        equal = (self.words == other.words).all(axis=1)
        if self.entries.size or other.entries.size:
            for row in np.union1d(self.entries["row"], other.entries["row"]).tolist():
                equal[row] &= _same_entries(self[[row]].entries, other[[row]].entries)
        return equal


class CalibratedColumn:
    """A Box of floats on observation ranges' widths (:class:`cython_core.MixedRows`): every value the uniform
    packing at the ranges' m and b keeps, in each dimension's own width, the values outside a dimension's range in
    the rows' exception store, exact. Counts, per dimension, the values that fell outside since the last
    calibration (``outside``, over ``encoded`` rows): the drift :func:`recalibrate` reads."""

    quantized = True
    in_place = True

    def __init__(self, key: "str | None", shape: "tuple[int, ...]", obs_ranges: ObservationRanges) -> None:
        self.key, self.shape, self.obs_ranges = key, shape, obs_ranges
        self.layout = MixedLayout.from_ranges(obs_ranges)
        self.values, self.width, self.dtype = self.layout.dim, self.layout.row_words, np.dtype(np.uint64)
        self.sample_dtype = np.dtype(np.float32)
        self.outside = np.zeros(self.values, dtype=np.int64)
        self.encoded = 0
        self.outside_total = self.encoded_total = 0  # over the buffer's life, recalibrations or not

    def encode(self, values: Any, n: int) -> "tuple[MixedCodes, int]":
        words = np.empty((n, self.width), dtype=np.uint64)  # the kernel writes every word, padding included
        saturated, entries = mixed_pack(_float_rows(values, n, self), words, _row_index(n), self.layout)
        self._count(entries, n)
        return MixedCodes(words, entries), saturated

    def encode_into(self, store: MixedRows, first: int, n: int, values: Any) -> int:
        """Encode ``n`` rows of ``values`` straight into ``store``'s rows ``first``.. and their exceptions (nothing
        written if they are rejected); returns the saturated values."""
        rows = np.arange(first, first + n, dtype=np.int64)
        saturated, entries = mixed_pack(_float_rows(values, n, self), store.storage, rows, self.layout)
        store.store.put(rows, entries, trusted=True)
        self._count(entries, n)
        return saturated

    def match(self, store: MixedRows, first: int, n: int, values: Any) -> "tuple[MixedCodes | None, int]":
        """(codes, saturated) of ``n`` rows of ``values`` as :meth:`encode` gives them (counted alike), codes None
        when ``store``'s rows ``first``.. hold them already, words and exceptions (compared in the kernel: no codes
        made)."""
        arr = _float_rows(values, n, self)
        saturated, entries, held = mixed_match(arr, store.storage, np.arange(first, first + n, dtype=np.int64),
                                               self.layout, store.store.at, store.store.entries)
        self._count(entries, n)
        if held:
            return None, saturated
        words = np.empty((n, self.width), dtype=np.uint64)
        mixed_pack(arr, words, _row_index(n), self.layout)  # the same entries
        return MixedCodes(words, entries), saturated

    def _count(self, entries: np.ndarray, n: int) -> None:
        """Count ``n`` rows encoded and their values outside the ranges (``entries``), for :class:`Drift`."""
        if entries.size:
            self.outside += np.bincount(entries["dim"], minlength=self.values)
            self.outside_total += int(entries.size)
        self.encoded += n
        self.encoded_total += n

    def allocate(self, n_rows: int, eager: bool) -> MixedRows:
        """Rows and their exception store; ``eager`` writes the rows now (the store's arrays are written at
        construction: ``at`` -1, every free slot of its table row -1)."""
        rows = MixedRows(n_rows, self.layout, self.obs_ranges.exception_capacity(n_rows))
        if eager:
            rows.storage.fill(0)
        return rows

    def put(self, store: MixedRows, rows: "np.ndarray | slice", codes: MixedCodes) -> None:
        index = _indices(rows, store.n_rows)
        store.storage[index] = codes.words
        entries = codes.entries.copy()
        entries["row"] = index[entries["row"]]
        store.store.put(index, entries, trusted=True)  # encoded by mixed_pack: grouped by distinct rows

    def take(self, store: MixedRows, rows: np.ndarray) -> MixedCodes:
        return MixedCodes(store.storage[rows], store.store.take(np.asarray(rows, dtype=np.int64)))

    def holds(self, store: MixedRows, rows: slice, codes: MixedCodes) -> bool:
        if store.storage[rows].tobytes() != codes.words.tobytes():
            return False
        starts, entries = store.store.at[rows], codes.entries
        if not entries.size:
            return bool((starts < 0).all())
        # A row's entries are one run of the table from ``at`` on: compare it in place with the batch's.
        table, used = store.store.table, store.store.used
        for position, start in enumerate(starts.tolist()):
            mine, row = entries[entries["row"] == position], rows.start + position
            stop = start + mine.size
            if (start >= 0) != bool(mine.size):  # exceptions on one side only
                return False
            if start < 0:
                continue
            if stop > used or (stop < used and table["row"][stop] == row):
                return False
            run = table[start:stop]
            if not ((run["row"] == row).all() and np.array_equal(run["dim"], mine["dim"])
                    and np.array_equal(run["code"], mine["code"])):
                return False
        return True

    def same(self, store: MixedRows, rows: "np.ndarray | slice", codes: MixedCodes) -> np.ndarray:
        return self.take(store, _indices(rows, store.n_rows)).same_rows(codes)

    def decode(self, store: MixedRows, rows: np.ndarray) -> th.Tensor:
        out = th.empty((rows.size, self.values), dtype=th.float32)
        store.decode(rows, out.numpy())
        return out.view(rows.size, *self.shape)

    def breakdown(self, label: str, store: MixedRows) -> "dict[str, int]":
        """The planner's calibrated fields: rows, each row's first exception index, the exception entries."""
        return {label: int(store.storage.nbytes), f"{label}.exception_index": int(store.store.at.nbytes),
                f"{label}.exceptions": int(store.store.table.nbytes)}

    def owned(self, store: MixedRows) -> "list[np.ndarray]":
        return [store.storage, store.store.at, store.store.table]


class Codes:
    """A batch of encoded observations: codes (n, width) per column and the values that saturated (``arrays`` None:
    the rows they were matched against hold them, :meth:`ObservationRows.match`)."""

    __slots__ = ("arrays", "saturated")

    def __init__(self, arrays: "dict[str | None, np.ndarray] | None", saturated: int) -> None:
        self.arrays, self.saturated = arrays, saturated

    def select(self, envs: "np.ndarray | list[int]") -> "Codes":
        return Codes({key: codes[envs] for key, codes in self.arrays.items()}, 0)


def _per_key(name: str, value: Any, key: "str | None", keys: "list[str]") -> Any:
    """``value`` itself, or its entry for ``key`` when a dict of per-key values is given (Dict spaces)."""
    if not isinstance(value, dict):
        return value
    unknown = sorted(set(map(str, value)) - set(keys))
    if unknown:
        raise PlannerError(f"{name} names keys the observation space lacks: {', '.join(unknown)} "
                           f"(it has {', '.join(keys) or 'none'})", name)
    return value.get(key)


def _column(key: "str | None", space: spaces.Space, *, decimals: "int | None", clamp: "float | None",
            bits: "int | None", layout: "CodeLayout | None", dtype: "str | None",
            obs_ranges: "ObservationRanges | str | PathLike | None", default_decimals: "int | None") -> Any:
    if not isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        raise PlannerError(f"{_label(key)}: quantized buffers store Box, Discrete, MultiDiscrete, MultiBinary and "
                           f"Dict spaces of those, got {type(space).__name__}", "observation_space")
    shape = tuple(int(e) for e in get_obs_shape(space))
    if not (isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.floating)):
        if layout is not None:
            raise PlannerError(f"{_label(key)} is {space}, stored as it is: a CodeLayout applies to Boxes of floats",
                               "layout")
        return RawColumn(key, shape, space.dtype)
    dim = int(np.prod(shape))
    if obs_ranges is not None:
        return _calibrated(key, shape, dim, obs_ranges, (decimals, bits, layout, dtype))
    if dtype is not None:
        if dtype not in HALF_DTYPES:
            raise PlannerError(f"dtype must be one of {', '.join(HALF_DTYPES)} (or None: k-bit codes), "
                               f"got {quote(dtype)}", "dtype")
        if layout is not None or decimals is not None or bits is not None:
            raise PlannerError(f"dtype={dtype!r} stores floats as they round to {dtype}: give no decimals, bits or "
                               "layout", "dtype")
        return HalfColumn(key, shape, dtype)
    if layout is not None:
        if decimals is not None or bits is not None:
            raise PlannerError("give either layout= or decimals=/clamp=/bits=, not both", "layout")
        if not isinstance(layout, CodeLayout) or layout.dim != dim:
            raise PlannerError(f"layout for {_label(key)} must be a CodeLayout of dim {dim} (the space's size), "
                               f"got {quote(layout)}", "layout")
        return PackedColumn(key, shape, layout)
    if decimals is None and default_decimals is None:
        raise PlannerError(f"{_label(key)} is a Box of floats: give its decimals (the m of the buffer it goes to) or "
                           "a layout", "decimals")
    quant = Quantization.create(default_decimals if decimals is None else decimals, CLAMP if clamp is None else clamp,
                                bits)  # refuses a bad m, b or width as the planner does
    return PackedColumn(key, shape, CodeLayout.uniform(dim, decimals=quant.decimals, clamp=quant.clamp,
                                                       bits=quant.bits))


def _calibrated(key: "str | None", shape: "tuple[int, ...]", dim: int,
                obs_ranges: "ObservationRanges | str | PathLike", others: tuple) -> CalibratedColumn:
    """The calibrated column of a Box of floats: ``obs_ranges`` an :class:`~planner.obs_ranges.ObservationRanges` or the
    path of one (``planner obs scan``), of the Box's size."""
    if any(value is not None for value in others):
        raise PlannerError("obs_ranges gives the precision (its m, b and widths): give no decimals, bits, layout or "
                           "dtype with it", "obs_ranges")
    if isinstance(obs_ranges, (str, PathLike)):
        obs_ranges = load_ranges(str(obs_ranges))
    if not isinstance(obs_ranges, ObservationRanges):
        raise PlannerError(f"obs_ranges must be an ObservationRanges or the path of a file of them, got "
                           f"{type(obs_ranges).__name__}", "obs_ranges")
    obs_ranges.check_fits(dim, f"{_label(key)} {shape}")
    return CalibratedColumn(key, shape, obs_ranges)


class ObservationCodec:
    """The columns of an observation space and the encoding of a batch of its observations.

    :param observation_space: a Box, Discrete, MultiDiscrete, MultiBinary, or a Dict of those
    :param decimals: m for Boxes of floats; a Dict space takes one value for all its float entries or a dict of
        values by key
    :param clamp: b (default the paper's); same per-key form
    :param bits: width of the codes (default: the exact level count); same per-key form
    :param layout: a :class:`CodeLayout` (per-dimension bounds and scales) instead of decimals/clamp/bits;
        a dict of them by key for a Dict space
    :param dtype: "float16" or "bfloat16": store floats in that type instead of k-bit codes (no decimals,
        bits or layout then); same per-key form
    :param obs_ranges: observation ranges (``planner obs scan``; the object or its path): each dimension in the
        width its data needs, values outside in an exception store (no decimals, bits, layout or dtype then; its m
        and b are the ranges'); same per-key form
    :param default_decimals: m of the Boxes of floats given none of the above (the buffers pass their kind's,
        :func:`planner.defaults.default_decimals`); None: they must be given one
    """

    def __init__(self, observation_space: spaces.Space, *, decimals: "PerKey[int | None]" = None,
                 clamp: "PerKey[float]" = CLAMP, bits: "PerKey[int | None]" = None,
                 layout: "PerKey[CodeLayout | None]" = None, dtype: "PerKey[str | None]" = None,
                 obs_ranges: "PerKey[ObservationRanges | str | PathLike | None]" = None,
                 default_decimals: "int | None" = None) -> None:
        self.space = observation_space
        self.is_dict = isinstance(observation_space, spaces.Dict)
        entries = list(observation_space.spaces.items()) if self.is_dict else [(None, observation_space)]
        keys = [str(key) for key, _ in entries] if self.is_dict else []
        options = dict(zip(CODEC_OPTIONS, (decimals, clamp, bits, layout, dtype, obs_ranges)))
        self.columns = {key: _column(key, sub, default_decimals=default_decimals,
                                     **{name: _per_key(name, value, key, keys) for name, value in options.items()})
                        for key, sub in entries}
        #: values per row that are quantized (the others are stored as they are)
        self.quantized_values = sum(column.values for column in self.columns.values() if column.quantized)

    @property
    def in_place(self) -> bool:
        """Whether a batch is encoded straight into its rows, all or nothing (:meth:`ObservationRows.encode_into`):
        one column (several could be rejected halfway), packed or calibrated (one kernel call that writes nothing
        when it rejects the batch)."""
        return not self.is_dict and self.columns[None].in_place

    @property
    def layouts(self) -> "dict[str | None, CodeLayout | MixedLayout]":
        """The layout of each column of codes: a CodeLayout, or a calibrated column's MixedLayout."""
        return {key: column.layout for key, column in self.columns.items() if column.layout is not None}

    @property
    def code_layout(self) -> "CodeLayout | MixedLayout | dict[str, CodeLayout | MixedLayout] | None":
        """The CodeLayout of a Box of floats; for a Dict space, a dict of them by key; None if none."""
        return self.layouts if self.is_dict else self.layouts.get(None)

    def encode(self, obs: Any, n: int) -> Codes:
        """Validate and encode ``n`` observations (an array, or a dict of arrays for a Dict space)."""
        if not self.is_dict:
            codes, saturated = self.columns[None].encode(obs, n)
            return Codes({None: codes}, saturated)
        if not isinstance(obs, dict) or set(obs) != set(self.columns):
            got = sorted(map(str, obs)) if isinstance(obs, dict) else type(obs).__name__
            raise PlannerError(f"observation must be a dict with keys {sorted(self.columns)}, got {got}", "obs")
        parts = {key: column.encode(obs[key], n) for key, column in self.columns.items()}
        return Codes({key: codes for key, (codes, _) in parts.items()}, sum(s for _, s in parts.values()))

    def pack(self, tensors: "dict[str | None, Any]") -> Any:
        """Per-column results as the space shapes them: the one value, or a dict by key."""
        return tensors if self.is_dict else tensors[None]


class ObservationRows:
    """``n_rows`` rows of every column of ``codec``.

    :param codec: the columns
    :param n_rows: rows to allocate (zeroed: numpy commits the pages as they are written)
    :param eager: write the arrays now, so that their pages are committed from the start
    """

    def __init__(self, codec: ObservationCodec, n_rows: int, eager: bool = False) -> None:
        self.codec = codec
        self.arrays = {key: column.allocate(n_rows, eager) for key, column in codec.columns.items()}
        self.saturated = 0

    @classmethod
    def holding(cls, codec: ObservationCodec, arrays: "dict[str | None, np.ndarray]",
                saturated: int) -> "ObservationRows":
        """Rows around existing arrays (a buffer saved before this layout)."""
        rows = cls.__new__(cls)
        rows.codec, rows.arrays, rows.saturated = codec, arrays, saturated
        return rows

    def put(self, rows: "np.ndarray | slice", codes: Codes) -> None:
        for key, column in self.codec.columns.items():
            column.put(self.arrays[key], rows, codes.arrays[key])
        self.saturated += codes.saturated

    def encode_into(self, first: int, n: int, obs: Any) -> int:
        """Encode ``n`` observations straight into rows ``first``.. (a codec that encodes
        :attr:`~ObservationCodec.in_place`); returns the values that saturated (not counted here: the caller decides
        whose they are)."""
        return self.codec.columns[None].encode_into(self.arrays[None], first, n, obs)

    def match(self, first: int, n: int, obs: Any) -> Codes:
        """``n`` observations encoded (validated, counted) for rows ``first``.. (a codec that encodes
        :attr:`~ObservationCodec.in_place`); the codes' ``arrays`` are None when the rows hold them already."""
        codes, saturated = self.codec.columns[None].match(self.arrays[None], first, n, obs)
        return Codes(None if codes is None else {None: codes}, saturated)

    def take(self, rows: np.ndarray) -> Codes:
        return Codes({key: column.take(self.arrays[key], rows) for key, column in self.codec.columns.items()}, 0)

    def holds(self, rows: slice, codes: Codes) -> bool:
        """Whether the contiguous ``rows`` hold exactly ``codes`` (one bytes comparison per column)."""
        return all(column.holds(self.arrays[key], rows, codes.arrays[key])
                   for key, column in self.codec.columns.items())

    def same(self, rows: "np.ndarray | slice", codes: Codes) -> np.ndarray:
        """Per row, whether it holds exactly ``codes``."""
        equal = None
        for key, column in self.codec.columns.items():
            match = column.same(self.arrays[key], rows, codes.arrays[key])
            equal = match if equal is None else equal & match
        return equal

    def decode(self, rows: np.ndarray) -> "dict[str | None, th.Tensor]":
        """Rows decoded per column: float32 tensors for quantized columns, the space's dtype for the others."""
        return {key: column.decode(self.arrays[key], rows) for key, column in self.codec.columns.items()}

    def owned(self) -> "list[np.ndarray]":
        """Every numpy array these rows own (a calibrated column's exception store included)."""
        return [array for key, column in self.codec.columns.items() for array in column.owned(self.arrays[key])]

    def breakdown(self, name: str) -> "dict[str, int]":
        """Bytes per array, named ``name`` or ``name[KEY]`` as the planner's layouts name them."""
        out: "dict[str, int]" = {}
        for key, column in self.codec.columns.items():
            out.update(column.breakdown(name if key is None else f"{name}[{key}]", self.arrays[key]))
        return out


RECALIBRATE_ROWS = 1_000  # rows encoded between drift checks, and the fewest a verdict rests on


def _calibrated_columns(codec: ObservationCodec) -> "dict[str | None, CalibratedColumn]":
    return {key: column for key, column in codec.columns.items() if isinstance(column, CalibratedColumn)}


class Drift:
    """The drift of a buffer's calibrated columns: counts, the ``recalibrate`` policy and its log.

    :param codec: the buffer's columns
    :param threshold: the share of rows above which a dimension's values outside its range make
        :func:`recalibrate` widen it (None: never; the exception store grows instead)
    """

    def __init__(self, codec: ObservationCodec, threshold: "float | None") -> None:
        if threshold is not None:
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
                raise PlannerError(f"recalibrate must be a share in (0, 1) (or None), got {quote(threshold)}",
                                   "recalibrate")
            if not _calibrated_columns(codec):
                raise PlannerError("recalibrate applies to calibrated columns: give obs_ranges", "recalibrate")
        self.codec, self.threshold = codec, threshold
        self.events: "list[dict]" = []

    def check(self, stores: "list[ObservationRows]", rows: "Callable[[], list[int]]") -> None:
        """Recalibrate where the policy says so (a cheap test on most calls); ``rows()``: the rows written in
        each store."""
        if self.threshold is None or all(column.encoded < RECALIBRATE_ROWS
                                         for column in _calibrated_columns(self.codec).values()):
            return
        for event in recalibrate(self.codec, stores, self.threshold, rows()):
            LOG.info("recalibrated %s after %d rows: dims %s widened (bits %s -> %s), %d B -> %d B per row, "
                     "%d -> %d exception entries", _label(event["column"]), event["rows_encoded"], event["dims"],
                     event["bits_before"], event["bits_after"], event["row_bytes_before"], event["row_bytes_after"],
                     event["exceptions_before"], event["exceptions_after"])
            self.events.append(event)

    def stats(self, stores: "list[ObservationRows]") -> "dict[str, dict]":
        """Per calibrated column: exception entries live and allocated, the share of values that fell outside over
        the buffer's life, bits per value of the rows with and without the exception entries, the recalibrate
        policy and the recalibrations it made."""
        out = {}
        for key, column in _calibrated_columns(self.codec).items():
            rows = [store.arrays[key] for store in stores]
            values = max(column.encoded_total, 1) * column.values
            live = sum(int(r.store.live) for r in rows)
            out[_label(key)] = {
                "exceptions_live": live, "exception_capacity": sum(int(r.store.table.size) for r in rows),
                "outside_share": column.outside_total / values, "row_bits": int(column.layout.row_bits),
                "bits_per_value": column.layout.row_bits / column.values,
                "bits_per_value_with_exceptions": (column.layout.row_bits + 8 * EXCEPTION_ENTRY_BYTES
                                                   * column.outside_total / max(column.encoded_total, 1))
                / column.values,
                "recalibrate": self.threshold, "recalibrations": sum(event["column"] == key for event in self.events)}
        return out

    def memory_bytes(self, breakdown: "dict[str, int]") -> int:
        """The sum of ``breakdown``; after a recalibration, with a warning that the planner's prediction is stale."""
        if self.events:
            last = self.events[-1]
            warnings.warn(f"the planner's prediction of this buffer is stale: recalibrated {len(self.events)} "
                          f"time(s), last widening {_label(last['column'])} dims {last['dims'][:8]} "
                          f"({last['row_bytes_before']} -> {last['row_bytes_after']} B per row); these are the "
                          "bytes allocated now", stacklevel=3)
        return sum(breakdown.values())


def recalibrate(codec: ObservationCodec, stores: "list[ObservationRows]", threshold: float,
                rows: "list[int]") -> "list[dict]":
    """Widen the drifted dimensions of ``codec``'s calibrated columns and re-pack ``stores``.

    A dimension drifted when more than ``threshold`` of the rows encoded since the last calibration (at least
    :data:`RECALIBRATE_ROWS`) held a value outside its range. Its range grows by the scan's rule applied to what
    the stores hold (:func:`planner.obs_ranges.widen_range` over their exception codes, ``rows`` rows written in
    each store); every store is re-packed (every value kept, bit for bit) and its exception store keeps only
    what is still outside; the drift counters restart. Returns one record per re-packed column.
    """
    events = []
    for key, column in codec.columns.items():
        if not isinstance(column, CalibratedColumn) or column.encoded < RECALIBRATE_ROWS:
            continue
        drifted = np.flatnonzero(column.outside > threshold * column.encoded)
        encoded, column.encoded = column.encoded, 0
        outside, column.outside = column.outside, np.zeros_like(column.outside)
        if drifted.size == 0:
            continue
        entries = np.concatenate([store.arrays[key].store.take(np.arange(store.arrays[key].n_rows,
                                                                         dtype=np.int64)) for store in stores])
        live_before = int(entries.size)
        lo, hi = column.layout.lo.copy(), column.layout.hi.copy()
        for dim in drifted.tolist():
            lo[dim], hi[dim] = widen_range(int(lo[dim]), int(hi[dim]),
                                           entries["code"][entries["dim"] == dim].astype(np.int64), sum(rows))
        old = column.layout
        new = old.widen(lo, hi)
        if new == old:  # the rule keeps what fell outside as exceptions: nothing to re-pack
            continue
        for store in stores:
            store.arrays[key].repack(new)
        column.layout, column.width = new, new.row_words
        events.append({"column": key, "rows_encoded": encoded, "dims": drifted.tolist(),
                       "outside_share": (outside[drifted] / encoded).round(6).tolist(),
                       "bits_before": old.bits[drifted].tolist(), "bits_after": new.bits[drifted].tolist(),
                       "row_bytes_before": old.row_bytes, "row_bytes_after": new.row_bytes,
                       "exceptions_before": live_before,
                       "exceptions_after": sum(int(store.arrays[key].store.live) for store in stores)})
    return events
