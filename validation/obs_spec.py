"""The one place that turns buffer / wrapper keyword arguments into the observation ``CodeSpec``.

The quantized buffers and the :class:`~validation.obs_wrapper.QuantizeObservation` wrapper both call
:func:`observation_spec`, so the same keyword arguments give the same codes everywhere.

>>> import numpy as np
>>> from gymnasium import spaces
>>> observation_spec(spaces.Box(-np.inf, np.inf, (2, 3)), decimals=1).bits  # 2541 levels: 12 bits
12
"""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces

from cython_core import CodeSpec, gather_unpack
from planner.defaults import BUFFER_DECIMALS, CLAMP
from planner.errors import PlannerError


def observation_spec(observation_space: spaces.Space, decimals: "int | None" = None, clamp: float = CLAMP,
                     bits: "int | None" = None, spec: "CodeSpec | None" = None) -> CodeSpec:
    """The spec for a Box space: ``spec`` as given (per-dimension), or round(clamp(x, -clamp, clamp), decimals)."""
    if isinstance(observation_space, spaces.Dict):
        raise PlannerError("quantized buffers take Box observation spaces; Dict spaces are not supported "
                           "(flatten them with gymnasium.wrappers.FlattenObservation)")
    if not isinstance(observation_space, spaces.Box):
        raise PlannerError(f"quantized buffers take Box observation spaces, got {type(observation_space).__name__}")
    dim = int(np.prod(observation_space.shape))
    if spec is not None:
        if decimals is not None or bits is not None:
            raise PlannerError("give either spec= or decimals=/clamp=/bits=, not both")
        if not isinstance(spec, CodeSpec) or spec.dim != dim:
            raise PlannerError(f"spec must be a CodeSpec of dim {dim} (the observation space's size), got {spec!r}")
        return spec
    try:
        decimals = BUFFER_DECIMALS if decimals is None else decimals
        return CodeSpec.uniform(dim, decimals=decimals, clamp=clamp, bits=bits)
    except ValueError as err:
        raise PlannerError(f"invalid observation quantization: {err}") from err


def flat_rows(x: Any, n: int, dim: int) -> np.ndarray:
    """``x`` (n, *obs_shape) as an (n, dim) array, without a copy when it already is float32/float64."""
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr.reshape(n, dim)


def decode_to_tensor(storage: np.ndarray, rows: np.ndarray, spec: CodeSpec) -> th.Tensor:
    """Rows of packed ``storage`` decoded straight into a new float32 CPU tensor of shape (n, dim)."""
    out = th.empty((rows.size, spec.dim), dtype=th.float32)
    gather_unpack(storage, rows, spec, out.numpy())
    return out
