"""Saved buffers that say what they are and notice damage: a format version, the configuration, a CRC-32 per array.

A buffer class with :class:`PersistentBuffer` first among its bases pickles (``save_replay_buffer``,
``pickle.dump``) its state plus a record: ``version`` (:data:`FORMAT_VERSION`), ``config``
(:func:`buffer_config`), and ``names`` and ``checksums`` (:func:`checksums`: the names in one string, one a
line, the checksums in a list, in that order): a CRC-32 of every array, bytes object and scalar in the state and
in every object it holds (observation stores, exception stores, a calibrated column's observation ranges, the
drift policy), of the code layouts and of the spaces. Unpickling checks them all and raises one
:class:`~planner.errors.PlannerError` naming every entry that differs, or saying what else is damaged. A pickle
written before format versions (version 0: no record) loads unchecked.

A stream too damaged to reach the buffer (a flipped opcode, a cut file) fails inside pickle with whatever
pickle raises. :func:`load_replay_buffer` first walks the file's opcodes (no allocation sized by a damaged
length), turns every failure into one PlannerError naming the file, and compares the saved buffer's
configuration with the model's own buffer, naming every field that differs.

>>> import pickle
>>> import numpy as np
>>> from gymnasium import spaces
>>> from validation.buffers import QuantizedReplayBuffer
>>> buf = QuantizedReplayBuffer(8, spaces.Box(-1, 1, (3,)), spaces.Box(-1, 1, (1,)), "cpu", decimals=2)
>>> buf.add(np.zeros((1, 3)), np.ones((1, 3)), np.array([[0.5]]), np.ones(1), np.zeros(1), [{}])
>>> data = bytearray(pickle.dumps(buf))
>>> data[data.index(buf.actions.tobytes()) + 1] ^= 1  # one flipped bit in the actions' bytes
>>> pickle.loads(bytes(data))
Traceback (most recent call last):
...
planner.errors.PlannerError: the saved QuantizedReplayBuffer is damaged: actions differs from its checksum ...
"""

import importlib
import itertools
import json
import pickle
import pickletools
import struct
import sys
import types
import zlib
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.save_util import open_path

from cython_core import CodeLayout, EscapeLayout, EscapeRows, MixedLayout, MixedRows
from planner.errors import PlannerError, one_line
from planner.obs_ranges import DimRange, ObservationRanges
from validation.buffers.obs_store import CalibratedColumn, Drift, ObservationCodec, ObservationRows, adopted

FORMAT_VERSION = 6  # 6: a packed column's rows lie at bit stride (PackedRows; were word-padded arrays, converted
# on load); 5: a calibrated column's rows are escape-coded at bit stride (EscapeRows; were MixedRows with
# an ExceptionStore, converted on load); 4: the checksums cover the attributes of every object in the state (a
# calibrated column's observation ranges, the drift policy, ...), tuples and structured dtypes, their names apart;
# 3: a column's CodeLayout is its `layout` (was `spec`); 2: modules moved into validation.buffers, classes renamed
# (CodeSpec -> CodeLayout, ...)
# Where the names that uniform buffers of format 0 and 1 refer to live now (pickle finds classes by module and
# name); a calibrated buffer of format 1 (cython_core.mixed.MixedSpec) is not read.
FORMER_MODULES = {"validation.replay_buffer": "validation.buffers.replay",
                  "validation.rollout_buffer": "validation.buffers.rollout",
                  "validation.obs_store": "validation.buffers.obs_store",
                  "validation.persistence": "validation.buffers.persistence",
                  "cython_core.spec": "cython_core.uniform"}
FORMER_NAMES = {"CodeSpec": "CodeLayout"}
RECORD = "_saved_format"  # the state key of the record; never an attribute of a live buffer
CONFIG_FIELDS = ("buffer_size", "n_envs", "n_steps", "gamma", "gae_lambda", "handle_timeout_termination",
                 "optimize_memory_usage")
SCALARS = (bool, int, float, str, type(None), np.generic)
NAMED = 8  # the most damaged entries an error names


def _former_module(old: str, new: str) -> types.ModuleType:
    """A stand-in for the module ``old`` that resolves its names, renamed ones included, in ``new`` on use."""
    module = types.ModuleType(old, f"moved to {new}")
    module.__getattr__ = lambda name: getattr(importlib.import_module(new), FORMER_NAMES.get(name, name))
    return module


for _old, _new in FORMER_MODULES.items():
    sys.modules.setdefault(_old, _former_module(_old, _new))


class PersistentBuffer:
    """Mixin for SB3 buffers: versioned, checksummed pickles; list it first among the bases."""

    def __getstate__(self) -> "dict[str, Any]":
        parent = getattr(super(), "__getstate__", None)  # HerReplayBuffer's drops its env; Python < 3.11 has none
        state = dict(self.__dict__ if parent is None else parent())  # a copy: the record is no attribute
        sums = checksums(state, self)
        # the names in one string, apart from the checksums: pickle writes equal strings once, so a state's key
        # used as the key of its checksum would be one string in the file, damaged together
        state[RECORD] = {"version": FORMAT_VERSION, "config": buffer_config(self), "names": "\n".join(sums),
                         "checksums": list(sums.values())}
        return state

    def __setstate__(self, state: "dict[str, Any]") -> None:
        name = type(self).__name__
        try:
            record = _checked_record(name, state, self)
        except PlannerError:
            raise
        except Exception as err:  # a damaged state can make a check itself fail
            raise _damaged(name, "checking", err) from err
        try:
            parent = getattr(super(), "__setstate__", None)  # HerReplayBuffer has one; object has none
            if parent is None:
                self.__dict__.update(state)
            else:
                parent(state)
            if record is None:
                self._upgrade_from_version_0()
            if "drift" not in self.__dict__ and "codec" in self.__dict__:  # saved before calibrated columns
                self.drift = Drift(self.codec, False)
            if record is not None and record["version"] < 5:
                _upgrade_calibrated(self)
            if record is not None and record["version"] < 6:
                for rows in vars(self).values():
                    if isinstance(rows, ObservationRows):
                        rows.arrays = adopted(self.codec, rows.arrays)
        except Exception as err:  # what the checks cannot see (a version-0 file): a PlannerError too is damage
            raise _damaged(name, "restoring", err) from err

    def _upgrade_from_version_0(self) -> None:
        """Bring the attributes of a version-0 pickle to today's layout (a class that changed them says how)."""


def _checked_record(name: str, state: Any, owner: Any) -> "dict[str, Any] | None":
    """The record popped from ``state`` once its checksums match (None: a version-0 file); else one PlannerError."""
    if not isinstance(state, dict):
        raise PlannerError(f"the saved {name} is damaged: its state is a {type(state).__name__}, not a dict", "path")
    record = state.pop(RECORD, None)
    if record is None and "codec" in state:  # a codec came with format 1, the record before it
        raise PlannerError(f"the saved {name} is damaged: its format record (version, configuration, checksums) "
                           "is missing; use a good copy", "path")
    if record is not None:
        version = _format_version(name, record)
        if version in (1, 2):
            _rename_layouts(state.get("codec"))
        _compare(name, version, record, state, owner)
    return record


def _upgrade_calibrated(buffer: Any) -> None:
    """Bring a calibrated column saved before format 5 (MixedRows and an ExceptionStore, read by the kernels that
    wrote them) to escape-coded rows on its observation ranges, every row's codes kept; and its drift policy
    (a share, or None) to today's (re-choose the widths, or not)."""
    for column in buffer.codec.columns.values():
        if isinstance(column, CalibratedColumn) and not isinstance(column.layout, EscapeLayout):
            for name in ("width", "dtype", "outside", "encoded", "outside_total", "encoded_total"):
                vars(column).pop(name, None)
            column.layout = EscapeLayout.from_ranges(column.obs_ranges)
    for rows in vars(buffer).values():
        if isinstance(rows, ObservationRows):
            for key, store in rows.arrays.items():
                if isinstance(store, MixedRows):
                    every = np.arange(store.n_rows, dtype=np.int64)
                    column = buffer.codec.columns[key]
                    rows.arrays[key] = column.allocate(store.n_rows, eager=False)
                    rows.arrays[key].put_codes(store.codes(every), every)
    drift = buffer.drift
    if "threshold" in vars(drift):
        buffer.drift = Drift(buffer.codec, vars(drift)["threshold"] is not None)
        buffer.drift.events = drift.events


def _damaged(name: str, doing: str, err: Exception) -> PlannerError:
    """The error for what ``doing`` (checking, restoring) the saved state raised."""
    return PlannerError(f"the saved {name} is damaged: {doing} it raised {_error(err)}; use a good copy", "path")


def _error(err: BaseException) -> str:
    """An exception as one line of at most about 200 characters: its type and message."""
    message = one_line(str(err))
    return type(err).__name__ + (f": {message[:160]}{'...' if len(message) > 160 else ''}" if message else "")


def _rename_layouts(codec: "ObservationCodec | None") -> None:
    """The columns of a format 1 or 2 file keep their CodeLayout as ``spec``; today's name is ``layout``."""
    for column in getattr(codec, "columns", {}).values():
        if "spec" in vars(column):
            column.layout = vars(column).pop("spec")


def _format_version(name: str, record: Any) -> int:
    """The format version of a readable record that this release reads."""
    version = record.get("version") if isinstance(record, dict) else None
    if type(version) is not int or version < 1:
        readable = False
    elif version > FORMAT_VERSION:
        raise PlannerError(f"the saved {name} has buffer format version {version}; this justround-planner reads "
                           f"versions 0 to {FORMAT_VERSION}: load it with the release that saved it (or a newer one)"
                           "; if none did, the file is damaged", "path")
    elif version == FORMAT_VERSION:  # the names in one string, the checksums in a list
        readable = isinstance(record.get("names"), str) and isinstance(record.get("checksums"), list)
    else:  # a dict of checksums by name
        readable = isinstance(record.get("checksums"), dict)
    if not readable:
        raise PlannerError(f"the saved {name} is damaged: its format record (version, configuration, checksums) "
                           "is unreadable; use a good copy", "path")
    return version


def _compare(name: str, version: int, record: "dict[str, Any]", state: "dict[str, Any]", owner: Any) -> None:
    """Refuse a state whose checksums differ from the saved ones (all of today's for a file of this format; an
    older format checksummed fewer entries, in a dict by name)."""
    saved, now = record["checksums"], checksums(state, owner)
    if version == FORMAT_VERSION:
        saved = dict(zip(record["names"].split("\n"), saved))
    keys = dict.fromkeys([*saved, *now]) if version == FORMAT_VERSION else saved
    differing = [str(key) for key in keys if saved.get(key) != now.get(key)]
    if differing:
        more = f" and {len(differing) - NAMED} more" if len(differing) > NAMED else ""
        raise PlannerError(f"the saved {name} is damaged: {', '.join(differing[:NAMED])}{more} "
                           f"{'differs from its checksum' if len(differing) == 1 else 'differ from their checksums'} "
                           f"(format version {version}); save it again or use a good copy", "path")


def checksums(state: "dict[str, Any]", owner: Any = None) -> "dict[str, Any]":
    """Dotted name -> checksum of everything in ``state``: arrays by dtype, shape and a CRC-32 of their bytes (read
    in place when contiguous; a structured dtype's fields apart), bytes objects, scalars, lists and tuples of
    scalars, dtypes and devices; code layouts and spaces by their description, observation ranges with each
    per-dimension figure as one array; other dicts, lists and tuples by their items and every other object by its
    attributes (each object once; ``owner``, the buffer whose state this is, not again). Object arrays (HER's
    ``infos``) are not covered."""
    out: "dict[str, Any]" = {}
    seen = {id(owner)}
    for key, value in state.items():
        _checksum(str(key), value, out, seen)
    return out


def _crc(text: str) -> int:
    return zlib.crc32(text.encode())


def _checksum(name: str, value: Any, out: "dict[str, Any]", seen: "set[int]") -> None:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return
        data = value if value.flags.c_contiguous else np.ascontiguousarray(value)
        out[name] = (value.dtype.str, value.shape, zlib.crc32(data))
        if value.dtype.fields:  # dtype.str gives a structured dtype's size only
            out[f"{name}.dtype"] = _crc(str(value.dtype))
        if type(value) is not np.ndarray:
            out[f"{name}.type"] = _crc(type(value).__qualname__)
    elif isinstance(value, (bytes, bytearray)):
        out[name] = zlib.crc32(value)
    elif isinstance(value, SCALARS) or (isinstance(value, (list, tuple))
                                        and all(isinstance(item, SCALARS) for item in value)):
        out[name] = _crc(repr(value))
    elif isinstance(value, (np.dtype, th.device)):
        out[name] = _crc(str(value))
    elif isinstance(value, (CodeLayout, MixedLayout, EscapeLayout)):  # pickled as their constructor's arguments
        out[name] = _crc(json.dumps(_describe(value), sort_keys=True))
    elif isinstance(value, EscapeRows):  # compiled: no __dict__, its state instead
        out[name] = _crc("EscapeRows")
        _checksum(name, value.state(), out, seen)
    elif isinstance(value, ObservationRanges):  # thousands of dims: each figure's values in one array
        dims = getattr(value, "dims", None)
        if isinstance(dims, tuple) and all(type(dim) is DimRange for dim in dims):  # else walked: named as differing
            # a field missing gives None, an object array, left out: named as differing too
            dims = {key: np.array([getattr(dim, key, None) for dim in dims]) for key in DimRange.__annotations__}
        _checksum(name, {**vars(value), "dims": dims}, out, seen)
    elif isinstance(value, (dict, list, tuple)):
        out[name] = (type(value).__name__, len(value))
        for key, item in value.items() if isinstance(value, dict) else enumerate(value):
            _checksum(f"{name}.{key}" if isinstance(value, dict) else f"{name}[{key}]", item, out, seen)
    elif isinstance(value, np.random.Generator):
        _checksum(name, value.bit_generator.state, out, seen)
    else:
        kind = type(value)
        out[name] = _crc(json.dumps(_describe(value), sort_keys=True) if isinstance(value, spaces.Space)
                         else f"{kind.__module__}.{kind.__qualname__}")
        if isinstance(value, ObservationCodec):
            for key, layout in value.layouts.items():  # named as format 3 named them
                _checksum(f"{name}.{key}", layout, out, seen)
        if isinstance(getattr(value, "__dict__", None), dict) and id(value) not in seen:
            seen.add(id(value))
            for key, item in vars(value).items():
                _checksum(f"{name}.{key}", item, out, seen)


def buffer_config(buffer: Any) -> "dict[str, Any]":
    """What must match for a saved buffer to stand in for another: class, spaces, code layouts (``code_layout``:
    one, or a dict of them by key), sizes, returns settings and the terminal store's capacity."""
    cls = type(buffer)
    config: "dict[str, Any]" = {"class": f"{cls.__module__}.{cls.__qualname__}",
                                "observation_space": _describe(buffer.observation_space),
                                "action_space": _describe(buffer.action_space)}
    layout = getattr(buffer, "code_layout", None)
    if layout:
        config["code_layout"] = _describe(layout)
    config.update({name: getattr(buffer, name) for name in CONFIG_FIELDS if hasattr(buffer, name)})
    stats = buffer.quantization_stats() if hasattr(buffer, "quantization_stats") else {}
    if "terminal_capacity" in stats:
        config["terminal_capacity"] = stats["terminal_capacity"]
    return config


def _describe(value: Any) -> Any:
    """A JSON-able description of a space, a code layout or a dict of them (bounds given once when uniform)."""
    if isinstance(value, dict):
        return {str(key): _describe(item) for key, item in value.items()}
    if isinstance(value, (CodeLayout, MixedLayout, EscapeLayout)):
        return value.get_config()
    if isinstance(value, spaces.Dict):
        return {"type": "Dict", "spaces": _describe(dict(value.spaces))}
    if isinstance(value, spaces.Box):
        return {"type": "Box", "shape": list(value.shape), "dtype": str(value.dtype), "low": _values(value.low),
                "high": _values(value.high)}
    if isinstance(value, spaces.Discrete):
        return {"type": "Discrete", "n": int(value.n), "start": int(value.start)}
    if isinstance(value, spaces.MultiDiscrete):
        return {"type": "MultiDiscrete", "nvec": _values(value.nvec), "start": _values(value.start)}
    if isinstance(value, spaces.MultiBinary):
        return {"type": "MultiBinary", "n": _values(np.asarray(value.n))}
    return {"type": type(value).__name__, "repr": repr(value)}


def _values(arr: np.ndarray) -> Any:
    flat = np.asarray(arr).ravel()
    return flat[0].item() if flat.size and np.all(flat == flat[0]) else flat.tolist()


def config_differences(saved: "dict[str, Any]", current: "dict[str, Any]", prefix: str = "") -> "list[str]":
    """One line per field that differs between two :func:`buffer_config` dicts (nested fields dotted)."""
    lines = []
    for key in dict.fromkeys([*current, *saved]):
        name, a, b = prefix + key, saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            lines += config_differences(a, b, name + ".")
        elif key not in saved or key not in current or a != b:
            lines.append(f"{name}: saved {_show(a, b, key in saved)}, this model {_show(b, a, key in current)}")
    return lines


def _show(value: Any, other: Any, present: bool) -> str:
    if not present:
        return "none"
    if isinstance(value, list) and len(value) > 6:
        pairs = zip(value, other) if isinstance(other, list) else ()
        at = next((i for i, (x, y) in enumerate(pairs) if x != y), None)
        return f"{len(value)} values" + ("" if at is None else f" ({value[at]!r} at index {at})")
    return json.dumps(value) if isinstance(value, dict) else repr(value)


# pickle's arguments that say how many bytes follow them: how that count is written
COUNTS = {pickletools.TAKEN_FROM_ARGUMENT1: struct.Struct("<B"), pickletools.TAKEN_FROM_ARGUMENT4: struct.Struct("<i"),
          pickletools.TAKEN_FROM_ARGUMENT4U: struct.Struct("<I"),
          pickletools.TAKEN_FROM_ARGUMENT8U: struct.Struct("<Q")}


def _opcode(op: pickletools.OpcodeInfo) -> "tuple[str, int, struct.Struct | None, int]":
    """An opcode's name, the bytes of its argument, how the count of the bytes that follow the argument is written,
    and the lines of an argument that ends at a newline (a GLOBAL's: two)."""
    n = op.arg.n if op.arg else 0
    lines = op.arg.name.endswith("_pair") + 1 if n == pickletools.UP_TO_NEWLINE else 0
    return op.name, max(n, 0), COUNTS.get(n), lines


OPCODES = {op.code.encode("latin-1"): _opcode(op) for op in pickletools.opcodes}  # by their byte


def _check_opcodes(file: Any) -> None:
    """Walk the pickle in ``file`` from its position to its STOP, reading each opcode and its argument but skipping
    what an argument says follows (an array's bytes); raise ``pickle.UnpicklingError`` at an unknown opcode, a
    length past the end of the file, a memo index past the opcodes read, or the end before STOP: what pickle
    would misread on a damaged stream, found cheaply (CPython before 3.15 makes room for the memo up to any index
    it is given: gigabytes for one flipped byte of a LONG_BINPUT, python/cpython#115952)."""
    at = file.tell()
    end = file.seek(0, 2)
    file.seek(at)
    for count in itertools.count(1):
        opcode = OPCODES.get(file.read(1))
        if opcode is None:
            raise pickle.UnpicklingError(f"cut short at byte {at}" if at >= end else f"no pickle opcode at byte {at}")
        name, size, counted, lines = opcode
        start = at
        if counted:
            raw = file.read(counted.size)
            following = counted.unpack(raw)[0] if len(raw) == counted.size else -1
            at += 1 + counted.size + following
            if following < 0 or at > end:
                raise pickle.UnpicklingError(f"the data at byte {start} runs past the end of the file")
            file.seek(following, 1)
            continue
        argument = b"".join(file.readline() for _ in range(lines)) if lines else file.read(size)
        at += 1 + len(argument)
        if name == "FRAME" and int.from_bytes(argument, "little") > end - at:
            raise pickle.UnpicklingError(f"the data at byte {start} runs past the end of the file")
        if name in ("PUT", "BINPUT", "LONG_BINPUT") \
                and (int(argument) if name == "PUT" else int.from_bytes(argument, "little")) > count:
            raise pickle.UnpicklingError(f"a memo index out of range at byte {start}")  # numbered as they come
        if name == "STOP":
            return


def load_replay_buffer(model: Any, path: Any, truncate_last_traj: bool = True) -> None:
    """``model.load_replay_buffer(path, truncate_last_traj)``, refused (the model's buffer kept) with one
    PlannerError naming every configuration field in which the saved buffer differs from ``model.replay_buffer``
    (what ``replay_buffer_class`` / ``replay_buffer_kwargs`` built for this model's env), or saying what in the file
    is damaged, or that it is damaged or cut short."""
    current = getattr(model, "replay_buffer", None)
    if current is None:
        raise PlannerError(f"{type(model).__name__} has no replay buffer to compare with; set up the model first",
                           "model")
    opened = isinstance(path, (str, PathLike))
    file = open_path(Path(path), "r", suffix="pkl") if opened else path  # as SB3 opens it: ".pkl" added if missing
    where = path if opened else getattr(file, "name", "the file")
    try:
        if file.seekable():
            position = file.tell()
            _check_opcodes(file)
            file.seek(position)
        model.load_replay_buffer(file, truncate_last_traj)
        differences = config_differences(buffer_config(model.replay_buffer), buffer_config(current))
    except Exception as err:  # on a damaged stream pickle raises almost anything, PlannerErrors of what it calls too
        model.replay_buffer = current
        if isinstance(err, PlannerError) and err.params == ("path",):  # the buffer's verdict (the file at fault)
            raise PlannerError(f"{where}: {err}", "path") from err
        raise PlannerError(f"{where} is damaged or cut short: not a whole pickle ({_error(err)})", "path") from err
    finally:
        if opened:
            file.close()
    if differences:
        model.replay_buffer = current
        raise PlannerError(f"the replay buffer saved in {where} does not fit this {type(model).__name__}: "
                           + "; ".join(differences), "path")
