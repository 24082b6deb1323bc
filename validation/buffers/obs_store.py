"""Observation storage of the quantized buffers, for every space SB3 stores: one column per entry.

A Box of floats (or a Dict entry that is one) is a :class:`PackedColumn`: k-bit codes in rows at bit stride
by the Cython core; or, with ``dtype="float16"`` / ``"bfloat16"``, a :class:`HalfColumn` (the
alternative a PyTorch user reaches for first, stored once too); or, with ``obs_ranges``, a :class:`CalibratedColumn`
(escape-coded rows at bit stride, each dimension in its own width, the values outside in a side table, exact;
:class:`Drift` re-chooses the widths from the rows themselves as they fill). Anything else (uint8 images, integer
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
from functools import cached_property
from os import PathLike
from typing import Any, Callable, TypeVar, Union

import numpy as np
import torch as th
from cython_core._escape import quantize as escape_quantize
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_obs_shape

from cython_core import (
    CodeLayout,
    EscapeLayout,
    EscapeRows,
    PackedRows,
    gather_unpack,
    quantize_codes,
    quantize_continue,
    quantize_match,
    quantize_pack_counts,
)
from planner.defaults import CLAMP
from planner.errors import PlannerError, quote
from planner.obs_ranges import ObservationRanges, load_ranges
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


def _indices(rows: "np.ndarray | slice", n_rows: int) -> np.ndarray:
    """Row indices (int64) of an index array or a slice of ``n_rows`` rows."""
    if isinstance(rows, slice):
        return np.arange(*rows.indices(n_rows), dtype=np.int64)
    return np.asarray(rows, dtype=np.int64)


class CodeRowsColumn:
    """A column whose store holds rows of integer codes (:class:`cython_core.PackedRows`,
    :class:`cython_core.EscapeRows`): a batch of codes goes in and out as codes (n, D)."""

    def put(self, store: Any, rows: "np.ndarray | slice", codes: np.ndarray) -> None:
        store.put_codes(codes, _indices(rows, store.n_rows))

    def take(self, store: Any, rows: np.ndarray) -> np.ndarray:
        return store.codes(np.asarray(rows, dtype=np.int64))

    def holds(self, store: Any, rows: slice, codes: np.ndarray) -> bool:
        return bool(np.array_equal(store.codes(_indices(rows, store.n_rows)), codes))

    def same(self, store: Any, rows: "np.ndarray | slice", codes: np.ndarray) -> np.ndarray:
        return (store.codes(_indices(rows, store.n_rows)) == codes).all(axis=1)

    def continue_into(self, store: Any, first: int, following: int, n: int, obs: Any,
                      next_obs: Any) -> "tuple[bool, int]":
        """(held, saturated): whether rows ``first``.. hold ``n`` rows of ``obs`` already (their values clipped:
        ``saturated``), and if so ``next_obs`` encoded straight into rows ``following``.. (nothing written where they
        do not, or a value is rejected)."""
        codes, saturated = self.match(store, first, n, obs)
        if codes is not None:
            return False, saturated
        self.encode_into(store, following, n, next_obs)
        return True, saturated


class PackedColumn(CodeRowsColumn):
    """A Box of floats: rows of ``layout.dim`` k-bit codes at bit stride (:class:`cython_core.PackedRows`). A batch
    of codes is the codes themselves (uint32 (n, D))."""

    quantized = True
    in_place = True

    def __init__(self, key: "str | None", shape: "tuple[int, ...]", layout: CodeLayout) -> None:
        self.key, self.shape, self.layout = key, shape, layout
        self.values = layout.dim
        self.sample_dtype = np.dtype(np.float32)

    def encode(self, values: Any, n: int) -> "tuple[np.ndarray, int]":
        """(codes (n, D), saturated values); raises ``NonFiniteError`` on NaN/inf unless the layout codes them."""
        codes, saturated, _ = quantize_codes(_float_rows(values, n, self), self.layout)
        return codes, saturated

    def encode_into(self, store: PackedRows, first: int, n: int, values: Any) -> int:
        """Encode ``n`` rows of ``values`` straight into ``store``'s rows ``first``.. (nothing written if they are
        rejected); returns the saturated values."""
        return quantize_pack_counts(_float_rows(values, n, self), store.storage, _rows_from(first, n), self.layout)[0]

    def match(self, store: PackedRows, first: int, n: int, values: Any) -> "tuple[np.ndarray | None, int]":
        """(codes, saturated) of ``n`` rows of ``values`` as :meth:`encode` gives them, codes None when ``store``'s
        rows ``first``.. hold them already (compared in the kernel: no codes made)."""
        arr = _float_rows(values, n, self)
        saturated, _, held = quantize_match(arr, store.storage, _rows_from(first, n), self.layout)
        return (None if held else self.encode(arr, n)[0]), saturated

    def continue_into(self, store: PackedRows, first: int, following: int, n: int, obs: Any,
                      next_obs: Any) -> "tuple[bool, int]":
        """:meth:`CodeRowsColumn.continue_into` in one kernel call (:func:`cython_core.quantize_continue`)."""
        saturated, held = quantize_continue(_float_rows(obs, n, self), _float_rows(next_obs, n, self), store.storage,
                                            first, following, self.layout)
        return held, saturated

    def allocate(self, n_rows: int, eager: bool) -> PackedRows:
        rows = PackedRows(n_rows, self.layout)
        if eager:
            rows.storage.fill(0)  # commits the pages now
        return rows

    def decode(self, store: PackedRows, rows: np.ndarray) -> th.Tensor:
        """Rows decoded straight into a new float32 tensor (n, *shape)."""
        out = th.empty((rows.size, self.values), dtype=th.float32)
        gather_unpack(store.storage, rows, self.layout, out.numpy())
        return out.view(rows.size, *self.shape)

    def breakdown(self, label: str, store: PackedRows) -> "dict[str, int]":
        """The planner's packed fields: the rows (their bits, in whole bytes) and the stream's tail."""
        rows = -(-store.n_rows * self.layout.row_bits // 8)
        return {label: rows, f"{label}.tail": store.nbytes - rows}

    def owned(self, store: PackedRows) -> "list[np.ndarray]":
        return [store.storage]


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


class CalibratedColumn(CodeRowsColumn):
    """A Box of floats on observation ranges' widths (:class:`cython_core.EscapeRows`): every value the uniform
    packing at the ranges' m and b keeps, each dimension in its own width, the values outside its range escaped to
    the rows' side table, exact. A batch of codes is the paper codes themselves (int64 (n, D))."""

    quantized = True
    in_place = True

    def __init__(self, key: "str | None", shape: "tuple[int, ...]", obs_ranges: ObservationRanges) -> None:
        self.key, self.shape, self.obs_ranges = key, shape, obs_ranges
        self.layout = EscapeLayout.from_ranges(obs_ranges)
        self.values = self.layout.dim
        self.sample_dtype = np.dtype(np.float32)

    def encode(self, values: Any, n: int) -> "tuple[np.ndarray, int]":
        return escape_quantize(_float_rows(values, n, self), self.layout)

    def encode_into(self, store: EscapeRows, first: int, n: int, values: Any) -> int:
        """Encode ``n`` rows of ``values`` straight into ``store``'s rows ``first``.. (nothing written if they are
        rejected); returns the saturated values."""
        return store.encode(_float_rows(values, n, self), _rows_from(first, n))

    def match(self, store: EscapeRows, first: int, n: int, values: Any) -> "tuple[np.ndarray | None, int]":
        """(codes, saturated) of ``n`` rows of ``values`` as :meth:`encode` gives them, codes None when ``store``'s
        rows ``first``.. hold them already."""
        return store.match(_float_rows(values, n, self), _rows_from(first, n))

    def allocate(self, n_rows: int, eager: bool) -> EscapeRows:
        """Rows and their side table (its pool sized for the ranges' expected rate); ``eager`` writes the rows'
        words now."""
        rows = EscapeRows(n_rows, self.layout, self.obs_ranges.exception_capacity(n_rows))
        if eager:
            rows.words.fill(0)
        return rows

    def decode(self, store: EscapeRows, rows: np.ndarray) -> th.Tensor:
        out = th.empty((rows.size, self.values), dtype=th.float32)
        store.decode(rows, out.numpy())
        return out.view(rows.size, *self.shape)

    def decode_pair(self, store: EscapeRows, rows: np.ndarray, following: np.ndarray) -> "tuple[th.Tensor, th.Tensor]":
        """Rows ``rows`` and ``following`` (one each) decoded in one pass: a row and the one after it share their
        side-table lines (:meth:`cython_core.EscapeRows.decode_pairs`)."""
        out = th.empty((2, rows.size, self.values), dtype=th.float32)
        store.decode_pairs(rows, following, out[0].numpy(), out[1].numpy())
        return out[0].view(rows.size, *self.shape), out[1].view(rows.size, *self.shape)

    def breakdown(self, label: str, store: EscapeRows) -> "dict[str, int]":
        """The planner's calibrated fields: the rows (their bits, in whole bytes), the words' tail, the side table's
        blocks and its pool of entries."""
        rows = -(-store.n_rows * store.layout.row_bits // 8)
        blocks = store.seg_start.nbytes + store.seg_len.nbytes + store.seg_cap.nbytes
        return {label: rows, f"{label}.tail": int(store.words.nbytes) - rows, f"{label}.blocks": int(blocks),
                f"{label}.exceptions": int(store.pool.nbytes)}

    def owned(self, store: EscapeRows) -> "list[np.ndarray]":
        return [store.words, store.seg_start, store.seg_len, store.seg_cap, store.pool]


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

    @cached_property
    def in_place(self) -> bool:
        """Whether a batch is encoded straight into its rows, all or nothing (:meth:`ObservationRows.encode_into`):
        one column (several could be rejected halfway), packed or calibrated (one kernel call that writes nothing
        when it rejects the batch). Read on every add: computed once."""
        return not self.is_dict and self.columns[None].in_place

    @property
    def layouts(self) -> "dict[str | None, CodeLayout | EscapeLayout]":
        """The layout of each column of codes: a CodeLayout, or a calibrated column's EscapeLayout."""
        return {key: column.layout for key, column in self.columns.items() if column.layout is not None}

    @property
    def code_layout(self) -> "CodeLayout | EscapeLayout | dict[str, CodeLayout | EscapeLayout] | None":
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


def adopted(codec: ObservationCodec, arrays: "dict[str | None, Any]") -> "dict[str | None, Any]":
    """``arrays`` with a packed column's word-padded rows (a buffer saved before format 6) at bit stride."""
    return {key: PackedRows.from_word_rows(store, column.layout)
            if isinstance(column, PackedColumn) and isinstance(store, np.ndarray) else store
            for key, column in codec.columns.items() for store in (arrays[key],)}


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
        rows.codec, rows.arrays, rows.saturated = codec, adopted(codec, arrays), saturated
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

    def decode_pair(self, rows: np.ndarray, following: np.ndarray) -> "tuple[dict, dict]":
        """:meth:`decode` of ``rows`` and of ``following`` (one each: a sample's observations and next ones); a
        calibrated column reads each pair in one pass."""
        decoded: "dict[str | None, th.Tensor]" = {}
        decoded_following: "dict[str | None, th.Tensor]" = {}
        for key, column in self.codec.columns.items():
            store = self.arrays[key]
            if isinstance(column, CalibratedColumn):
                decoded[key], decoded_following[key] = column.decode_pair(store, rows, following)
            else:
                decoded[key], decoded_following[key] = column.decode(store, rows), column.decode(store, following)
        return decoded, decoded_following

    def owned(self) -> "list[np.ndarray]":
        """Every numpy array these rows own (a calibrated column's exception store included)."""
        return [array for key, column in self.codec.columns.items() for array in column.owned(self.arrays[key])]

    def breakdown(self, name: str) -> "dict[str, int]":
        """Bytes per array, named ``name`` or ``name[KEY]`` as the planner's layouts name them."""
        out: "dict[str, int]" = {}
        for key, column in self.codec.columns.items():
            out.update(column.breakdown(name if key is None else f"{name}[{key}]", self.arrays[key]))
        return out


FIRST_CHECK = 1_000  # rows written before the first check of the widths (at least as many as the ranges were
# scanned on); each later check after twice as many
CHECK_EVERY = 100_000  # ... but at most this many rows apart
SAMPLE_ROWS = 4_096  # rows a check reads, drawn at random from those held
# a store's rows holding data: a count n (rows 0..n-1: no index array to allocate) or their indices
Held = "int | np.ndarray"
GAIN = 0.02  # a check re-packs when the widths it chooses would cost this share fewer bits per value


def _calibrated_columns(codec: ObservationCodec) -> "dict[str | None, CalibratedColumn]":
    return {key: column for key, column in codec.columns.items() if isinstance(column, CalibratedColumn)}


class Drift:
    """The calibrated columns' widths as the data moves: when ``recalibrate``, after 1,000 rows or as many as the
    ranges were scanned on (whichever is more: a check on fewer rows than the scan knows less than it), then after
    twice as many each time (at most every 100,000), the widths are chosen again from half of a sample of the rows
    the buffer holds (:meth:`cython_core.escape.EscapeLayout.choose`, priced with the side table's real entry cost)
    and every store is re-packed when that saves at least 2 % of the bits per value on the sample's other half.
    Until the first check the rows use the observation ranges the buffer was given.

    :param codec: the buffer's columns
    :param recalibrate: re-choose the widths as above (True, the default), or keep the given ranges' for good
    """

    def __init__(self, codec: ObservationCodec, recalibrate: bool) -> None:
        if not isinstance(recalibrate, bool):
            raise PlannerError(f"recalibrate must be True or False, got {quote(recalibrate)}", "recalibrate")
        self.codec, self.enabled = codec, recalibrate and bool(_calibrated_columns(codec))
        scanned = max((int(column.obs_ranges.source.get("observations", 0))
                       for column in _calibrated_columns(codec).values()), default=0)
        self.written, self.next_check = 0, max(FIRST_CHECK, scanned)  # rows written to the main store, ever
        self.events: "list[dict]" = []

    def check(self, stores: "Callable[[], list[ObservationRows]]", held: "Callable[[], list[Held]]",
              added: int) -> None:
        """Count ``added`` rows written to the main store; re-choose the widths when they reach the next check (a
        cheap test on every add: ``stores()``, the observation stores, and ``held()``, the rows holding data in each
        (:data:`Held`), are asked only then)."""
        if not self.enabled:
            return
        self.written += added
        if self.written < self.next_check:
            return
        self.next_check = self.written + min(self.written, CHECK_EVERY)
        for event in recalibrate(self.codec, stores(), held()):
            event["rows"] = self.written  # rows written to the main store so far
            LOG.info("recalibrated %s after %d rows: %d -> %d bits per row, %.3f -> %.3f bits per value expected, "
                     "%d -> %d side-table entries", _label(event["column"]), event["rows"], event["row_bits_before"],
                     event["row_bits_after"], event["bits_before"], event["bits_after"], event["entries_before"],
                     event["entries_after"])
            self.events.append(event)

    def stats(self, stores: "list[ObservationRows]") -> "dict[str, dict]":
        """Per calibrated column, of the main store (the first): row bits, all-in bits per value as allocated (rows,
        block table, pool), side-table entries live and allocated, and the recalibrations made."""
        out = {}
        for key, column in _calibrated_columns(self.codec).items():
            main = stores[0].arrays[key]
            values = max(main.n_rows * column.values, 1)
            out[_label(key)] = {
                "row_bits": column.layout.row_bits, "bits_per_value": column.layout.row_bits / column.values,
                "bits_per_value_all_in": 8 * main.nbytes / values,
                "entries_live": sum(int(store.arrays[key].live) for store in stores),
                "entries_allocated": sum(int(store.arrays[key].pool.size) for store in stores),
                "recalibrate": self.enabled,
                "recalibrations": sum(event["column"] == key for event in self.events)}
        return out

    def memory_bytes(self, breakdown: "dict[str, int]", stores: "list[ObservationRows]") -> int:
        """The sum of ``breakdown``; after a recalibration or a side table grown past what the ranges expected,
        with a warning that the planner's prediction is stale."""
        grown = [key for key, column in _calibrated_columns(self.codec).items() for store in stores
                 if store.arrays[key].pool.size != column.obs_ranges.exception_capacity(store.arrays[key].n_rows)]
        if self.events or grown:
            why = (f"recalibrated {len(self.events)} time(s)" if self.events else
                   f"the side table of {_label(grown[0])} grew past the ranges' expected rate")
            warnings.warn(f"the planner's prediction of this buffer is stale: {why}; these are the bytes allocated "
                          "now", stacklevel=3)
        return sum(breakdown.values())


def recalibrate(codec: ObservationCodec, stores: "list[ObservationRows]", held: "list[Held]") -> "list[dict]":
    """Choose each calibrated column's widths again from every other row of up to :data:`SAMPLE_ROWS` of the first
    store's rows ``held[0]`` (those holding data; drawn at random, seeded by their count), and re-pack every store's
    rows ``held`` (every value kept, bit for bit; the others blank) where the new widths cost :data:`GAIN` fewer bits
    per value on the rows in between (widths judged on the rows they were chosen from would always look better);
    else trim the pools grown past the ranges' expected size (what the planner allocates up front, never trimmed)
    that hold more than twice the room their blocks use. Returns one record per re-packed column."""
    events = []
    for key, column in _calibrated_columns(codec).items():
        main = stores[0].arrays[key]
        # at random, not evenly spaced: even spacing aliases with periodic streams (fixed-length episodes)
        count = held[0] if isinstance(held[0], int) else held[0].size
        rng = np.random.default_rng(count)  # the same rows held, the same sample
        picks = np.sort(rng.choice(count, min(count, SAMPLE_ROWS), replace=False))
        sample = main.codes(picks if isinstance(held[0], int) else held[0][picks])
        judged = sample[1::2] if len(sample) > 1 else sample
        old = column.layout
        new = EscapeLayout.choose(sample[0::2], old.decimals, old.clamp)
        before, after = old.expected_bits(judged), new.expected_bits(judged)
        if after > before * (1 - GAIN):
            for store in stores:
                rows = store.arrays[key]
                if rows.pool.size > max(2 * rows.pool_used, column.obs_ranges.exception_capacity(rows.n_rows)):
                    rows.trim()
            continue
        entries = sum(int(store.arrays[key].live) for store in stores)
        for store, rows in zip(stores, held):
            store.arrays[key].repack(new, rows)
        column.layout = new
        events.append({"column": key, "rows": count, "row_bits_before": old.row_bits,
                       "row_bits_after": new.row_bits, "bits_before": before, "bits_after": after,
                       "entries_before": entries,
                       "entries_after": sum(int(store.arrays[key].live) for store in stores)})
    return events
