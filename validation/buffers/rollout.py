"""QuantizedRolloutBuffer: SB3's RolloutBuffer with observations stored as k-bit packed codes.

Everything but the observations is SB3's own code and arrays: GAE (``compute_returns_and_advantage``),
``get()`` minibatching, the float32 scalars. Row ``step * n_envs + env`` holds one observation. Every
observation space SB3 stores is taken (:mod:`validation.buffers.obs_store`): Boxes of floats are quantized, the others
stored as SB3 stores them, a Dict space per key (minibatches are then ``DictRolloutBufferSamples``).
"""

from collections.abc import Iterator
from contextlib import contextmanager
from os import PathLike
from typing import Any

import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictRolloutBuffer, RolloutBuffer
from stable_baselines3.common.preprocessing import get_obs_shape
from stable_baselines3.common.vec_env import VecNormalize

from cython_core import CodeLayout, EscapeLayout
from planner.defaults import CLAMP, default_decimals
from planner.obs_ranges import ObservationRanges
from validation.buffers.obs_store import Drift, ObservationCodec, ObservationRows, PerKey
from validation.buffers.persistence import PersistentBuffer
from validation.buffers.replay import PLACEHOLDER

ROLLOUT_FIELDS = ("actions", "rewards", "returns", "episode_starts", "values", "log_probs", "advantages")


class QuantizedRolloutBuffer(PersistentBuffer, RolloutBuffer):
    """Drop-in rollout buffer for PPO/A2C storing observations as k-bit codes (``decimals``, ``clamp``).

    ``observations`` is a zero-size placeholder that keeps SB3's ``add()`` / ``get()`` running unchanged;
    the data is ``stored_observations``. Minibatches hold float32 tensors for quantized observations (decoded
    into tensor memory), the space's dtype for the others.

    :param decimals: m of the quantized columns, by default PPO's (:func:`planner.defaults.default_decimals`)
    :param clamp, bits, layout, dtype, obs_ranges, recalibrate: as
        :class:`~validation.buffers.replay.QuantizedReplayBuffer`'s

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
                 device: "th.device | str" = "auto", *, gae_lambda: float = 1, gamma: float = 0.99, n_envs: int = 1,
                 decimals: "PerKey[int | None]" = None, clamp: "PerKey[float]" = CLAMP,
                 bits: "PerKey[int | None]" = None, layout: "PerKey[CodeLayout | None]" = None,
                 dtype: "PerKey[str | None]" = None,
                 obs_ranges: "PerKey[ObservationRanges | str | PathLike | None]" = None,
                 recalibrate: bool = True) -> None:
        self.codec = ObservationCodec(observation_space, decimals=decimals, clamp=clamp, bits=bits, layout=layout,
                                      dtype=dtype, obs_ranges=obs_ranges, default_decimals=default_decimals("ppo"))
        self.drift = Drift(self.codec, recalibrate)
        self.stored_observations = ObservationRows(self.codec, buffer_size * n_envs)
        self.stored_values = 0
        self._no_obs = np.empty((n_envs, 0), dtype=np.float32)
        # Called by name: DictRolloutBuffer's constructor (next in QuantizedDictRolloutBuffer's MRO) would
        # allocate per key. The parent takes the shapes of the real space; reset() zeroes them.
        RolloutBuffer.__init__(self, buffer_size, PLACEHOLDER, action_space, device, gae_lambda=gae_lambda,
                               gamma=gamma, n_envs=n_envs)
        self.observation_space = observation_space
        self.obs_shape = get_obs_shape(observation_space)

    def _upgrade_from_version_0(self) -> None:
        """A buffer pickled before format versions kept one Box's ``PackedRows`` and its ``code_layout``."""
        self.codec = ObservationCodec(self.observation_space, layout=self.__dict__.pop("code_layout"))
        rows = self.__dict__.pop("packed_observations")
        self.stored_observations = ObservationRows.holding(self.codec, {None: rows.storage}, rows.saturated)
        self._sink = np.zeros((self.buffer_size, self.n_envs, 0), dtype=np.float32)

    @property
    def code_layout(self) -> "CodeLayout | EscapeLayout | dict[str, CodeLayout | EscapeLayout] | None":
        """The CodeLayout of a quantized Box space; for a Dict space, a dict of them by key; None if none."""
        return self.codec.code_layout

    @contextmanager
    def _zero_size_observations(self) -> Iterator[None]:
        """The parent allocates and writes observations with ``obs_shape`` (and reshapes a Discrete one):
        a zero-size Box shape makes its observation array 0 bytes."""
        obs_shape, space = self.obs_shape, self.observation_space
        self.obs_shape, self.observation_space = (0,), PLACEHOLDER
        try:
            yield
        finally:
            self.obs_shape, self.observation_space = obs_shape, space

    # SB3's methods are called by name: in a QuantizedDictRolloutBuffer, DictRolloutBuffer's come next in the
    # MRO, and a Dict space takes DictRolloutBuffer's get() whatever the class.
    def get(self, batch_size: "int | None" = None) -> Iterator[Any]:
        return (DictRolloutBuffer.get if self.codec.is_dict else RolloutBuffer.get)(self, batch_size)

    def reset(self) -> None:
        with self._zero_size_observations():
            RolloutBuffer.reset(self)
        self._sink = self.observations  # what the parent's add() writes its zero-size observations into
        # 0-byte stand-ins in SB3's shape and sampled dtype (a dict of them for a Dict space), which get() flattens
        self.observations = self.codec.pack({key: np.zeros((self.buffer_size, self.n_envs, 0), column.sample_dtype)
                                             for key, column in self.codec.columns.items()})

    def add(self, obs: Any, action: np.ndarray, reward: np.ndarray, episode_start: np.ndarray,
            value: th.Tensor, log_prob: th.Tensor) -> None:
        n = self.n_envs
        codes = self.codec.encode(obs, n)  # validated first: a rejected observation changes nothing
        first = self.pos * n
        placeholders, self.observations = self.observations, self._sink
        try:
            if isinstance(self.observation_space, spaces.Discrete):  # the parent reshapes a Discrete observation
                with self._zero_size_observations():
                    RolloutBuffer.add(self, self._no_obs, action, reward, episode_start, value, log_prob)
            else:
                RolloutBuffer.add(self, self._no_obs, action, reward, episode_start, value, log_prob)
        finally:
            self.observations = placeholders
        self.stored_observations.put(slice(first, first + n), codes)
        self.stored_values += n * self.codec.quantized_values
        self.drift.check(self._observation_stores, self._rows_held, self.n_envs)

    def _observation_stores(self) -> "list[ObservationRows]":
        return [self.stored_observations]

    def _rows_held(self) -> "list[int]":
        """The rows holding data in the one observation store: a count (rows 0..n-1)."""
        return [(self.buffer_size if self.full else self.pos) * self.n_envs]

    def _get_samples(self, batch_inds: np.ndarray, env: "VecNormalize | None" = None) -> Any:
        samples = (DictRolloutBuffer if self.codec.is_dict else RolloutBuffer)._get_samples(self, batch_inds, env)
        inds = np.asarray(batch_inds, dtype=np.int64)
        # get() flattens (step, env) env-major: flat index = env * buffer_size + step.
        rows = inds if self.n_envs == 1 else (inds % self.buffer_size) * self.n_envs + inds // self.buffer_size
        obs = self.stored_observations.decode(rows)
        if self.device.type != "cpu":
            obs = {key: value.to(self.device) for key, value in obs.items()}
        return samples._replace(observations=self.codec.pack(obs))

    @property
    def saturated(self) -> int:
        """Stored observation values that saturated at the clamp, over all rollouts."""
        return self.stored_observations.saturated

    def quantization_stats(self) -> "dict[str, Any]":
        """Counters for logging: saturations and their share of stored values."""
        return {"saturated": self.saturated, "saturated_fraction": self.saturated / max(self.stored_values, 1),
                **self.drift.stats(self._observation_stores())}

    def memory_breakdown(self) -> "dict[str, int]":
        """Bytes of each array, named as the planner's ``packed`` layout names its fields."""
        return {**self.stored_observations.breakdown("observations"),
                **{name: int(getattr(self, name).nbytes) for name in ROLLOUT_FIELDS}}

    def memory_bytes(self) -> int:
        """Total bytes allocated (what the planner predicts, to the byte; see the replay buffer's for
        ``calibrated``)."""
        return self.drift.memory_bytes(self.memory_breakdown(), self._observation_stores())


class QuantizedDictRolloutBuffer(QuantizedRolloutBuffer, DictRolloutBuffer):
    """:class:`QuantizedRolloutBuffer` (which takes Dict spaces itself) that is also a ``DictRolloutBuffer``
    for ``isinstance`` checks. As SB3's, it takes Dict observation spaces only."""

    def __init__(self, buffer_size: int, observation_space: spaces.Space, *args: Any, **kwargs: Any) -> None:
        assert isinstance(observation_space, spaces.Dict), "DictRolloutBuffer must be used with Dict obs space only"
        super().__init__(buffer_size, observation_space, *args, **kwargs)
