"""justround-planner: will a deep-RL run fit a robot's memory, and which storage makes it fit.

The Python API, for notebooks and scripts (the ``planner`` command is a thin layer over it):

- :func:`lookup_env` -- an env's observation and action sizes (MuJoCo, classic control, Atari; v3 ids too);
- :class:`RunSpec` and :class:`Quantization` -- one training run: algorithm, sizes, storage, the paper's m and b;
- :func:`footprint` -- its predicted memory, byte by byte (models, optimizer state, buffer fields);
- :func:`load_profile` -- a device (a shipped name such as ``jetson-nano``, or a YAML file) and its budget;
- :func:`fit` -- every algorithm x storage against a profile: fits or not, the largest buffer that fits;
- :data:`STORAGES` and :func:`storage` -- the registry of storages (sb3, packed, calibrated, float16, ...);
- :func:`choose_ranges` and :func:`load_ranges` -- per-dimension observation ranges for the calibrated storage.

Nothing here imports torch or SB3: the names load on first use (``fit`` and ``footprint`` at once, since their
modules share their names). The quantized SB3 buffers that train what
the planner predicts are in :mod:`validation.buffers` (the ``[train]`` extra).

>>> import planner
>>> ant = planner.lookup_env("Ant-v3")
>>> run = planner.RunSpec("sac", ant.obs_dim, ant.action_dim, 1_000_000, storage="packed",
...                       quant=planner.Quantization.create(decimals=2))
>>> round(planner.footprint(run).buffer_bytes / 1e6, 1)  # MB = 10^6 B
259.5
>>> result = planner.fit(planner.load_profile("jetson-nano"), ant.obs_dim, ant.action_dim, algos=("sac",))
>>> for row in result.rows:  # the most transitions that fit, per storage
...     print(f"{row.storage.name:12} {row.max_buffer_size:>9,}")
sb3            654,224
sb3-optimize 1,277,561
just-round   2,439,933
packed       4,588,356
float16      4,352,027
bfloat16     4,352,027
"""

import importlib
from typing import Any

from planner.fit import fit  # noqa: F401 - bound now: the module planner.fit would otherwise shadow it
from planner.footprint import footprint  # noqa: F401

_HOMES = {
    "DeviceProfile": "planner.profiles",
    "FitResult": "planner.fit",
    "Footprint": "planner.footprint",
    "ObservationRanges": "planner.obs_ranges",
    "PlannerError": "planner.errors",
    "Quantization": "planner.quantization",
    "RunSpec": "planner.runspec",
    "STORAGES": "planner.storages",
    "choose_ranges": "planner.obs_ranges",
    "load_profile": "planner.profiles",
    "load_ranges": "planner.obs_ranges",
    "lookup_env": "planner.envs",
    "max_buffer_size": "planner.fit",
    "storage": "planner.storages",
}
__all__ = sorted([*_HOMES, "fit", "footprint"])


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'planner' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> "list[str]":
    return sorted(set(globals()) | set(_HOMES))
