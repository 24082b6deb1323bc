"""An env that raises part-way, for ``planner study``'s failing-trial test (``study_envs:Exploding-v0`` with this
folder on PYTHONPATH): a Box(3) observation, Box(1) actions, a RuntimeError at its 40th step."""

import gymnasium
import numpy as np
from gymnasium import spaces

EXPLODES_AT = 40


class Exploding(gymnasium.Env):
    observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self._t += 1
        if self._t >= EXPLODES_AT:
            raise RuntimeError(f"the env exploded at step {self._t}")
        return self.observation_space.sample(), 1.0, False, False, {}


gymnasium.register("Exploding-v0", entry_point=Exploding, max_episode_steps=1000)
