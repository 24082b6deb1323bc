"""QuantizeObservation: let the policy act on the same quantized observations it trains on.

The authors' code (and, by default, ours) stores quantized observations but acts on raw ones, so PPO's
probability ratio mixes the two. Wrapping the env with the same keyword arguments as the buffer makes
acting and training see identical values: the buffer re-encodes an already-quantized value to the same
code, and decodes it to the same float32 the policy saw.

>>> import gymnasium as gym
>>> env = QuantizeObservation(gym.make("Pendulum-v1"), decimals=1)
>>> obs, _ = env.reset(seed=0)
>>> bool(all(abs(v * 10 - round(v * 10)) < 1e-6 for v in obs.tolist()))
True
"""

from typing import Any

import gymnasium as gym
import numpy as np

from cython_core import CodeLayout, gather_unpack, quantize_pack
from planner.defaults import CLAMP
from validation.buffers.code_layout import flat_rows, uniform_layout


class QuantizeObservation(gym.ObservationWrapper):
    """Replace each observation by its decoded code: round(clamp(obs, -clamp, clamp), decimals) or ``layout``.

    Use the buffer's keyword arguments: ``make_vec_env(env_id, wrapper_class=QuantizeObservation,
    wrapper_kwargs=dict(decimals=2))`` with ``replay_buffer_kwargs=dict(decimals=2)``.

    :param decimals: m, the buffer's (no default: the rollout and the replay buffers differ, see
        :func:`planner.defaults.default_decimals`); or a ``layout``
    :param clamp: b
    :param bits: the width of the codes (default: the exact level count)
    :param layout: a per-dimension layout, used as given (no ``decimals`` or ``bits`` then)
    """

    def __init__(self, env: gym.Env, *, decimals: "int | None" = None, clamp: float = CLAMP,
                 bits: "int | None" = None, layout: "CodeLayout | None" = None) -> None:
        super().__init__(env)
        self.code_layout = uniform_layout(env.observation_space, decimals=decimals, clamp=clamp, bits=bits,
                                          layout=layout)
        self._store = np.zeros(self.code_layout.words(1), dtype=np.uint64)
        self._row = np.zeros(1, dtype=np.int64)
        # float64 spaces decode in float64: re-encoding the value is exact at any scale.
        self._dtype = np.float64 if env.observation_space.dtype == np.float64 else np.float32

    def observation(self, observation: Any) -> np.ndarray:
        quantize_pack(flat_rows(observation, 1, self.code_layout.dim), self._store, self._row, self.code_layout)
        out = np.empty((1, self.code_layout.dim), dtype=self._dtype)
        gather_unpack(self._store, self._row, self.code_layout, out)
        return out.reshape(self.observation_space.shape).astype(self.observation_space.dtype, copy=False)
