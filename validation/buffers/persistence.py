"""Saved buffers that say what they are and notice damage: a format version, the configuration, a CRC-32 per array.

A buffer class with :class:`PersistentBuffer` first among its bases pickles (``save_replay_buffer``,
``pickle.dump``) its state plus a record: ``version`` (:data:`FORMAT_VERSION`), ``config``
(:func:`buffer_config`) and ``checksums``, a CRC-32 of every array, bytes object and scalar in the state
(arrays inside dicts and ``PackedRows`` included), of the code layouts and of the spaces. Unpickling checks
them all and raises one :class:`~planner.errors.PlannerError` naming every entry that differs. A pickle
written before format versions (version 0: no record) loads unchecked.

SB3's ``model.load_replay_buffer`` installs whatever buffer the file holds; :func:`load_replay_buffer`
first compares its configuration with the model's own buffer and names every field that differs.

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
import json
import pickle
import sys
import types
import zlib
from typing import Any

import numpy as np
from gymnasium import spaces

from cython_core import CodeLayout, ExceptionStore, MixedLayout, MixedRows, PackedRows
from planner.errors import PlannerError
from validation.buffers.obs_store import Drift, ObservationCodec, ObservationRows

FORMAT_VERSION = 3  # 3: a column's CodeLayout is its `layout` (was `spec`); 2: modules moved into
# validation.buffers, classes renamed (CodeSpec -> CodeLayout, ...)
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
        state[RECORD] = {"version": FORMAT_VERSION, "config": buffer_config(self), "checksums": checksums(state)}
        return state

    def __setstate__(self, state: "dict[str, Any]") -> None:
        record = state.pop(RECORD, None)
        if record is not None:
            if record.get("version") in (1, 2):
                _rename_layouts(state.get("codec"))
            _check_record(type(self).__name__, record, state)
        parent = getattr(super(), "__setstate__", None)  # HerReplayBuffer has one; object has none
        if parent is None:
            self.__dict__.update(state)
        else:
            parent(state)
        if record is None:
            self._upgrade_from_version_0()
        if "drift" not in self.__dict__ and "codec" in self.__dict__:  # saved before calibrated columns
            self.drift = Drift(self.codec, None)

    def _upgrade_from_version_0(self) -> None:
        """Bring the attributes of a version-0 pickle to today's layout (a class that changed them says how)."""


def _rename_layouts(codec: "ObservationCodec | None") -> None:
    """The columns of a format 1 or 2 file keep their CodeLayout as ``spec``; today's name is ``layout``."""
    for column in getattr(codec, "columns", {}).values():
        if "spec" in vars(column):
            column.layout = vars(column).pop("spec")


def _check_record(name: str, record: "dict[str, Any]", state: "dict[str, Any]") -> None:
    version = record.get("version")
    if not isinstance(version, int) or not 1 <= version <= FORMAT_VERSION:
        raise PlannerError(f"the saved {name} has buffer format version {version!r}; this justround-planner reads "
                           f"versions 0 to {FORMAT_VERSION}: load it with the release that saved it (or a newer one)",
                           "path")
    saved, now = record["checksums"], checksums(state)
    differing = [key for key in dict.fromkeys([*saved, *now]) if saved.get(key) != now.get(key)]
    if differing:
        raise PlannerError(f"the saved {name} is damaged: {', '.join(differing)} "
                           f"{'differs from its checksum' if len(differing) == 1 else 'differ from their checksums'} "
                           f"(format version {version}); save it again or use a good copy", "path")


def checksums(state: "dict[str, Any]") -> "dict[str, Any]":
    """Dotted name -> checksum for every array (dtype, shape, CRC-32 of its bytes, read in place when
    contiguous), bytes object and scalar in ``state``, walking dicts and ``PackedRows``; code layouts and
    spaces by their description. Object arrays (HER's ``infos``) and other objects are not covered."""
    out: "dict[str, Any]" = {}
    for key, value in state.items():
        _checksum(str(key), value, out)
    return out


def _checksum(name: str, value: Any, out: "dict[str, Any]") -> None:
    if isinstance(value, np.ndarray):
        if value.dtype.hasobject:
            return
        data = value if value.flags.c_contiguous else np.ascontiguousarray(value)
        out[name] = (value.dtype.str, value.shape, zlib.crc32(data))
    elif isinstance(value, (bytes, bytearray)):
        out[name] = zlib.crc32(value)
    elif isinstance(value, SCALARS):
        out[name] = zlib.crc32(repr(value).encode())
    elif isinstance(value, (CodeLayout, MixedLayout, spaces.Space)):
        out[name] = zlib.crc32(json.dumps(_describe(value), sort_keys=True).encode())
    elif isinstance(value, dict):
        for key, item in value.items():
            _checksum(f"{name}.{key}", item, out)
    elif isinstance(value, (PackedRows, ObservationRows, MixedRows, ExceptionStore)):
        for key, item in vars(value).items():
            _checksum(f"{name}.{key}", item, out)
    elif isinstance(value, ObservationCodec):
        _checksum(name, value.layouts, out)


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
    if isinstance(value, (CodeLayout, MixedLayout)):
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


def load_replay_buffer(model: Any, path: Any, truncate_last_traj: bool = True) -> None:
    """``model.load_replay_buffer(path, truncate_last_traj)``, refused (the model's buffer kept) with one
    PlannerError naming every configuration field in which the saved buffer differs from ``model.replay_buffer``
    (what ``replay_buffer_class`` / ``replay_buffer_kwargs`` built for this model's env), or saying that the
    file is damaged or cut short."""
    current = getattr(model, "replay_buffer", None)
    if current is None:
        raise PlannerError(f"{type(model).__name__} has no replay buffer to compare with; set up the model first",
                           "model")
    try:
        model.load_replay_buffer(path, truncate_last_traj)
    except (pickle.UnpicklingError, EOFError) as err:
        raise PlannerError(f"{path} is not a whole pickle ({err}): a truncated or damaged file", "path") from err
    differences = config_differences(buffer_config(model.replay_buffer), buffer_config(current))
    if differences:
        model.replay_buffer = current
        raise PlannerError(f"the replay buffer saved in {path} does not fit this {type(model).__name__}: "
                           + "; ".join(differences), "path")
