"""The ``CodeLayout`` of a Box of floats from buffer / wrapper keyword arguments.

The quantized buffers (:class:`~validation.buffers.obs_store.ObservationCodec`) and the
:class:`~validation.buffers.wrapper.QuantizeObservation` wrapper read the same keyword arguments the same way,
so they give the same codes.

>>> import numpy as np
>>> from gymnasium import spaces
>>> uniform_layout(spaces.Box(-np.inf, np.inf, (2, 3)), decimals=1).bits  # 2541 levels: 12 bits
12
"""

from typing import Any

import numpy as np
from gymnasium import spaces

from cython_core import CodeLayout
from planner.defaults import CLAMP
from planner.errors import PlannerError
from validation.buffers.obs_store import ObservationCodec


def uniform_layout(observation_space: spaces.Space, *, decimals: "int | None" = None, clamp: float = CLAMP,
                   bits: "int | None" = None, layout: "CodeLayout | None" = None) -> CodeLayout:
    """The layout of a Box of floats: ``layout`` as given (per-dimension), or round(clamp(x, -b, b), m).

    :param decimals: m, the buffer's (no default: the rollout and the replay buffers differ, see
        :func:`planner.defaults.default_decimals`); or a ``layout``
    :param clamp: b
    :param bits: the width of the codes (default: the exact level count)
    :param layout: a per-dimension layout, used as given (no ``decimals`` or ``bits`` then)
    """
    codec = ObservationCodec(observation_space, decimals=decimals, clamp=clamp, bits=bits, layout=layout)
    if codec.is_dict or None not in codec.layouts:
        raise PlannerError(f"quantizing an observation takes a Box of floats, got {observation_space}",
                           "observation_space")
    return codec.layouts[None]


def flat_rows(x: Any, n: int, dim: int) -> np.ndarray:
    """``x`` (n, *obs_shape) as an (n, dim) array, without a copy when it already is float32/float64."""
    arr = np.asarray(x)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    return arr.reshape(n, dim)
