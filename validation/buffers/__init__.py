"""Drop-in quantized stable-baselines3 buffers on the k-bit packing core (the planner's ``packed`` layout).

``SAC(..., replay_buffer_class=QuantizedReplayBuffer, replay_buffer_kwargs=dict(decimals=2))``
``PPO(..., rollout_buffer_class=QuantizedRolloutBuffer, rollout_buffer_kwargs=dict(decimals=1))``
``SAC("MultiInputPolicy", goal_env, replay_buffer_class=QuantizedHerReplayBuffer)``
(the clamp b defaults to the paper's, ``planner.defaults.CLAMP``). Every space SB3 stores is taken; the
``Dict`` names are the same buffers that are also SB3's Dict buffers for ``isinstance`` checks.
To act on the same quantized observations, wrap the env with :class:`QuantizeObservation`.
"""

from validation.buffers.code_layout import uniform_layout
from validation.buffers.obs_store import ObservationCodec
from validation.buffers.replay import QuantizedDictReplayBuffer, QuantizedHerReplayBuffer, QuantizedReplayBuffer
from validation.buffers.rollout import QuantizedDictRolloutBuffer, QuantizedRolloutBuffer
from validation.buffers.wrapper import QuantizeObservation

__all__ = ["ObservationCodec", "QuantizeObservation", "QuantizedDictReplayBuffer", "QuantizedDictRolloutBuffer",
           "QuantizedHerReplayBuffer", "QuantizedReplayBuffer", "QuantizedRolloutBuffer", "uniform_layout"]
