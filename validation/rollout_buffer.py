"""QuantizedRolloutBuffer: SB3's RolloutBuffer with observations stored as k-bit packed rows.

Everything but the observations is SB3's own code and arrays: GAE (``compute_returns_and_advantage``),
``get()`` minibatching, the float32 scalars. Row ``step * n_envs + env`` holds one observation.
"""

from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.type_aliases import RolloutBufferSamples
from stable_baselines3.common.vec_env import VecNormalize

from cython_core import CodeSpec, PackedRows
from planner.defaults import CLAMP
from validation.obs_spec import decode_to_tensor, flat_rows, observation_spec
from validation.persistence import PersistentBuffer

ROLLOUT_FIELDS = ("actions", "rewards", "returns", "episode_starts", "values", "log_probs", "advantages")


class QuantizedRolloutBuffer(PersistentBuffer, RolloutBuffer):
    """Drop-in rollout buffer for PPO/A2C storing observations as k-bit codes (``decimals``, ``clamp``).

    ``observations`` is a zero-size placeholder that keeps SB3's ``add()`` / ``get()`` running unchanged;
    the data is ``packed_observations``. Minibatches hold float32 observations decoded into tensor memory.

    >>> import numpy as np, torch as th
    >>> from gymnasium import spaces
    >>> rb = QuantizedRolloutBuffer(2, spaces.Box(-np.inf, np.inf, (2,)), spaces.Box(-1, 1, (1,)), decimals=1)
    >>> for step in range(2):
    ...     rb.add(np.array([[0.26, -9.0 - step]]), np.zeros((1, 1)), np.ones(1), np.zeros(1), th.zeros(1), th.zeros(1))
    >>> rb.compute_returns_and_advantage(th.zeros(1), np.zeros(1))
    >>> sorted(round(v, 4) for v in next(rb.get()).observations[:, 1].tolist())
    [-10.0, -9.0]
    """

    def __init__(self, buffer_size: int, observation_space: spaces.Space, action_space: spaces.Space,
                 device: "th.device | str" = "auto", gae_lambda: float = 1, gamma: float = 0.99, n_envs: int = 1, *,
                 decimals: "int | None" = None, clamp: float = CLAMP, bits: "int | None" = None,
                 spec: "CodeSpec | None" = None) -> None:
        self.code_spec = observation_spec(observation_space, decimals, clamp, bits, spec)
        self.packed_observations = PackedRows(buffer_size * n_envs, self.code_spec)
        self.stored_values = 0
        self._no_obs = np.empty((n_envs, 0), dtype=observation_space.dtype)
        super().__init__(buffer_size, observation_space, action_space, device, gae_lambda, gamma, n_envs)

    def reset(self) -> None:
        # The parent allocates every field from obs_shape; a zero-size shape makes its observation array 0 bytes.
        obs_shape, self.obs_shape = self.obs_shape, (0,)
        try:
            super().reset()
        finally:
            self.obs_shape = obs_shape

    def add(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, episode_start: np.ndarray,
            value: th.Tensor, log_prob: th.Tensor) -> None:
        n, dim = self.n_envs, self.code_spec.dim
        rows = self.pos if n == 1 else self.pos * n + np.arange(n)
        self.packed_observations.encode(flat_rows(obs, n, dim), rows)
        self.stored_values += n * dim
        super().add(self._no_obs, action, reward, episode_start, value, log_prob)

    def _get_samples(self, batch_inds: np.ndarray, env: "VecNormalize | None" = None) -> RolloutBufferSamples:
        samples = super()._get_samples(batch_inds, env)
        inds = np.asarray(batch_inds, dtype=np.int64)
        # get() flattens (step, env) env-major: flat index = env * buffer_size + step.
        rows = inds if self.n_envs == 1 else (inds % self.buffer_size) * self.n_envs + inds // self.buffer_size
        obs = decode_to_tensor(self.packed_observations.storage, rows, self.code_spec).view(rows.size, *self.obs_shape)
        return samples._replace(observations=obs if self.device.type == "cpu" else obs.to(self.device))

    @property
    def saturated(self) -> int:
        """Stored observation values that saturated at the clamp, over all rollouts."""
        return self.packed_observations.saturated

    def quantization_stats(self) -> "dict[str, Any]":
        """Counters for logging: saturations and their share of stored values."""
        return {"saturated": self.saturated, "saturated_fraction": self.saturated / max(self.stored_values, 1)}

    def memory_breakdown(self) -> "dict[str, int]":
        """Bytes of each array, named as the planner's ``packed`` layout names its fields."""
        return {"observations": self.packed_observations.nbytes,
                **{name: int(getattr(self, name).nbytes) for name in ROLLOUT_FIELDS}}

    def memory_bytes(self) -> int:
        """Total bytes allocated (what the planner's ``packed`` layout predicts, to the byte)."""
        return sum(self.memory_breakdown().values())
