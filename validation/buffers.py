"""Drop-in quantized stable-baselines3 buffers on the k-bit packing core (the planner's ``packed`` layout).

``SAC(..., replay_buffer_class=QuantizedReplayBuffer, replay_buffer_kwargs=dict(decimals=2))``
``PPO(..., rollout_buffer_class=QuantizedRolloutBuffer, rollout_buffer_kwargs=dict(decimals=1))``
``SAC("MultiInputPolicy", goal_env, replay_buffer_class=QuantizedHerReplayBuffer)``
(the clamp b defaults to the paper's, ``planner.defaults.CLAMP``). Every space SB3 stores is taken; the
``Dict`` names are the same buffers that are also SB3's Dict buffers for ``isinstance`` checks.
To act on the same quantized observations, wrap the env with :class:`QuantizeObservation`.
"""

from validation.obs_spec import observation_spec
from validation.obs_store import ObservationCodec
from validation.obs_wrapper import QuantizeObservation
from validation.replay_buffer import QuantizedDictReplayBuffer, QuantizedHerReplayBuffer, QuantizedReplayBuffer
from validation.rollout_buffer import QuantizedDictRolloutBuffer, QuantizedRolloutBuffer

__all__ = ["ObservationCodec", "QuantizeObservation", "QuantizedDictReplayBuffer", "QuantizedDictRolloutBuffer",
           "QuantizedHerReplayBuffer", "QuantizedReplayBuffer", "QuantizedRolloutBuffer", "observation_spec"]
