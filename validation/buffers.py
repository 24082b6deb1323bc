"""Drop-in quantized stable-baselines3 buffers on the k-bit packing core (the planner's ``packed`` layout).

``SAC(..., replay_buffer_class=QuantizedReplayBuffer, replay_buffer_kwargs=dict(decimals=2))``
``PPO(..., rollout_buffer_class=QuantizedRolloutBuffer, rollout_buffer_kwargs=dict(decimals=1))``
(the clamp b defaults to the paper's, ``planner.defaults.CLAMP``).
To act on the same quantized observations, wrap the env with :class:`QuantizeObservation`.
"""

from validation.obs_spec import observation_spec
from validation.obs_wrapper import QuantizeObservation
from validation.replay_buffer import QuantizedReplayBuffer
from validation.rollout_buffer import QuantizedRolloutBuffer

__all__ = ["QuantizeObservation", "QuantizedReplayBuffer", "QuantizedRolloutBuffer", "observation_spec"]
