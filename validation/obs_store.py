"""Observation storage of the quantized buffers, for every space SB3 stores: one column per entry.

A Box of floats (or a Dict entry that is one) is a :class:`PackedColumn`: k-bit codes packed into 64-bit
words by the Cython core; or, with ``dtype="float16"`` / ``"bfloat16"``, a :class:`HalfColumn` (the
alternative a PyTorch user reaches for first, stored once too). Anything else (uint8 images, integer
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

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.preprocessing import get_obs_shape

from cython_core import CodeSpec, gather_unpack, quantize_pack_counts
from planner.defaults import BUFFER_DECIMALS, CLAMP
from planner.errors import PlannerError


def _label(key: "str | None") -> str:
    return "observation" if key is None else f"observation[{key!r}]"


def _rows_of(values: Any, n: int, width: int, key: "str | None", shape: "tuple[int, ...]") -> np.ndarray:
    arr = np.asarray(values)
    if arr.size != n * width:
        raise PlannerError(f"{_label(key)} has shape {arr.shape}, expected ({n}, {', '.join(map(str, shape))}) "
                           f"(n_envs = {n})", "obs")
    return arr.reshape(n, width)


_ROW_INDEX: "dict[int, np.ndarray]" = {}


def _row_index(n: int) -> np.ndarray:
    """0..n-1 as int64 (cached: encoding a batch writes rows 0..n-1 of its own codes)."""
    index = _ROW_INDEX.get(n)
    if index is None:
        index = _ROW_INDEX[n] = np.arange(n, dtype=np.int64)
        index.flags.writeable = False
    return index


class PackedColumn:
    """A Box of floats: rows of ``spec.dim`` k-bit codes in ``spec.row_words`` 64-bit words."""

    quantized = True

    def __init__(self, key: "str | None", shape: "tuple[int, ...]", spec: CodeSpec) -> None:
        self.key, self.shape, self.spec = key, shape, spec
        self.values, self.width, self.dtype = spec.dim, spec.row_words, np.dtype(np.uint64)
        self.sample_dtype = np.dtype(np.float32)

    def encode(self, values: Any, n: int) -> "tuple[np.ndarray, int]":
        """(codes (n, width), saturated values); raises ``NonFiniteError`` on NaN/inf unless the spec codes them."""
        arr = _rows_of(values, n, self.values, self.key, self.shape)
        if arr.dtype not in (np.float32, np.float64):
            arr = arr.astype(np.float64)
        codes = np.zeros((n, self.width), dtype=np.uint64)
        saturated, _ = quantize_pack_counts(arr, codes, _row_index(n), self.spec)
        return codes, saturated

    def decode(self, array: np.ndarray, rows: np.ndarray) -> th.Tensor:
        """Rows decoded straight into a new float32 tensor (n, *shape)."""
        out = th.empty((rows.size, self.values), dtype=th.float32)
        gather_unpack(array, rows, self.spec, out.numpy())
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


class HalfColumn:
    """A Box of floats stored as float16, or as bfloat16 (the high 16 bits of a float32, numpy having no
    bfloat16 type). Finite values beyond float16's range (65504) become inf and are counted as saturated."""

    quantized = True

    def __init__(self, key: "str | None", shape: "tuple[int, ...]", dtype: str) -> None:
        self.key, self.shape, self.half = key, shape, dtype
        self.values = self.width = int(np.prod(shape))
        self.dtype = np.dtype(np.float16 if dtype == "float16" else np.uint16)
        self.sample_dtype = np.dtype(np.float32)
        self.spec = None

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


class RawColumn:
    """An entry stored as SB3 stores it: ``get_obs_shape`` values of the space's dtype per row."""

    quantized = False

    def __init__(self, key: "str | None", shape: "tuple[int, ...]", dtype: np.dtype) -> None:
        self.key, self.shape, self.dtype = key, shape, np.dtype(dtype)
        self.values = self.width = int(np.prod(shape))
        self.sample_dtype = self.dtype
        self.spec = None

    def encode(self, values: Any, n: int) -> "tuple[np.ndarray, int]":
        return _rows_of(values, n, self.width, self.key, self.shape).astype(self.dtype), 0

    def decode(self, array: np.ndarray, rows: np.ndarray) -> th.Tensor:
        return th.from_numpy(array[rows]).view(rows.size, *self.shape)


class Codes:
    """A batch of encoded observations: codes (n, width) per column and the values that saturated."""

    __slots__ = ("arrays", "saturated")

    def __init__(self, arrays: "dict[str | None, np.ndarray]", saturated: int) -> None:
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


def _column(key: "str | None", space: spaces.Space, decimals: Any, clamp: Any, bits: Any, spec: Any,
            dtype: "str | None") -> Any:
    if not isinstance(space, (spaces.Box, spaces.Discrete, spaces.MultiDiscrete, spaces.MultiBinary)):
        raise PlannerError(f"{_label(key)}: quantized buffers store Box, Discrete, MultiDiscrete, MultiBinary and "
                           f"Dict spaces of those, got {type(space).__name__}", "observation_space")
    shape = tuple(int(e) for e in get_obs_shape(space))
    if not (isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.floating)):
        if spec is not None:
            raise PlannerError(f"{_label(key)} is {space}, stored as it is: a CodeSpec applies to Boxes of floats",
                               "spec")
        return RawColumn(key, shape, space.dtype)
    dim = int(np.prod(shape))
    if dtype is not None:
        if dtype not in HALF_DTYPES:
            raise PlannerError(f"dtype must be one of {', '.join(HALF_DTYPES)} (or None: k-bit codes), got {dtype!r}",
                               "dtype")
        if spec is not None or decimals is not None or bits is not None:
            raise PlannerError(f"dtype={dtype!r} stores floats as they round to {dtype}: give no decimals, bits or "
                               "spec", "dtype")
        return HalfColumn(key, shape, dtype)
    if spec is not None:
        if decimals is not None or bits is not None:
            raise PlannerError("give either spec= or decimals=/clamp=/bits=, not both", "spec")
        if not isinstance(spec, CodeSpec) or spec.dim != dim:
            raise PlannerError(f"spec for {_label(key)} must be a CodeSpec of dim {dim} (the space's size), "
                               f"got {spec!r}", "spec")
        return PackedColumn(key, shape, spec)
    try:
        return PackedColumn(key, shape, CodeSpec.uniform(dim, decimals=BUFFER_DECIMALS if decimals is None
                                                         else decimals, clamp=CLAMP if clamp is None else clamp,
                                                         bits=bits))
    except ValueError as err:
        raise PlannerError(f"invalid quantization of {_label(key)}: {err}", "decimals") from err


class ObservationCodec:
    """The columns of an observation space and the encoding of a batch of its observations.

    :param observation_space: a Box, Discrete, MultiDiscrete, MultiBinary, or a Dict of those
    :param decimals: m for Boxes of floats (default ``planner.defaults.BUFFER_DECIMALS``); a Dict space takes
        one value for all its float entries or a dict of values by key
    :param clamp: b (default the paper's); same per-key form
    :param bits: width of the codes (default: the exact level count); same per-key form
    :param spec: a :class:`CodeSpec` (per-dimension bounds and scales) instead of decimals/clamp/bits;
        a dict of them by key for a Dict space
    :param dtype: "float16" or "bfloat16": store floats in that type instead of k-bit codes (no decimals,
        bits or spec then); same per-key form
    """

    def __init__(self, observation_space: spaces.Space, decimals: Any = None, clamp: Any = CLAMP, bits: Any = None,
                 spec: Any = None, dtype: Any = None) -> None:
        self.space = observation_space
        self.is_dict = isinstance(observation_space, spaces.Dict)
        entries = list(observation_space.spaces.items()) if self.is_dict else [(None, observation_space)]
        keys = [str(key) for key, _ in entries] if self.is_dict else []
        self.columns = {key: _column(key, sub, *(_per_key(name, value, key, keys) for name, value in
                                                 (("decimals", decimals), ("clamp", clamp), ("bits", bits),
                                                  ("spec", spec), ("dtype", dtype))))
                        for key, sub in entries}
        #: values per row that are quantized (the others are stored as they are)
        self.quantized_values = sum(column.values for column in self.columns.values() if column.quantized)

    @property
    def specs(self) -> "dict[str | None, CodeSpec]":
        """The CodeSpec of each column of k-bit codes."""
        return {key: column.spec for key, column in self.columns.items() if column.spec is not None}

    @property
    def code_spec(self) -> Any:
        """The CodeSpec of a Box of floats; for a Dict space, a dict of them by key; None if none."""
        return self.specs if self.is_dict else self.specs.get(None)

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
        self.arrays = {key: np.zeros((n_rows, column.width), dtype=column.dtype)
                       for key, column in codec.columns.items()}
        if eager:
            for array in self.arrays.values():
                array.fill(0)
        self.saturated = 0

    @classmethod
    def holding(cls, codec: ObservationCodec, arrays: "dict[str | None, np.ndarray]",
                saturated: int) -> "ObservationRows":
        """Rows around existing arrays (a buffer saved before this layout)."""
        rows = cls.__new__(cls)
        rows.codec, rows.arrays, rows.saturated = codec, arrays, saturated
        return rows

    def put(self, rows: "np.ndarray | slice", codes: Codes) -> None:
        for key, array in self.arrays.items():
            array[rows] = codes.arrays[key]
        self.saturated += codes.saturated

    def take(self, rows: np.ndarray) -> Codes:
        return Codes({key: array[rows] for key, array in self.arrays.items()}, 0)

    def holds(self, rows: slice, codes: Codes) -> bool:
        """Whether the contiguous ``rows`` hold exactly ``codes`` (one bytes comparison per column)."""
        return all(array[rows].tobytes() == codes.arrays[key].tobytes() for key, array in self.arrays.items())

    def same(self, rows: "np.ndarray | slice", codes: Codes) -> np.ndarray:
        """Per row, whether it holds exactly ``codes``."""
        equal = None
        for key, array in self.arrays.items():
            match = (array[rows] == codes.arrays[key]).all(axis=1)
            equal = match if equal is None else equal & match
        return equal

    def decode(self, rows: np.ndarray) -> "dict[str | None, th.Tensor]":
        """Rows decoded per column: float32 tensors for quantized columns, the space's dtype for the others."""
        return {key: column.decode(self.arrays[key], rows) for key, column in self.codec.columns.items()}

    def breakdown(self, name: str) -> "dict[str, int]":
        """Bytes per array, named ``name`` or ``name[KEY]`` as the planner's layouts name them."""
        return {name if key is None else f"{name}[{key}]": int(array.nbytes) for key, array in self.arrays.items()}
