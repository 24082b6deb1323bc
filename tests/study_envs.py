"""An env that raises part-way, for ``planner study``'s failing-trial test (``study_envs:Exploding-v0`` with this
folder on PYTHONPATH): a Box(3) observation, Box(1) actions, a RuntimeError at its 40th step."""

import gymnasium
import numpy as np
from gymnasium import spaces
from obs_envs import Episodic  # tests/ is on the path (the trials get it through PYTHONPATH)

EXPLODES_AT = 40


class Exploding(Episodic):
    observation_space = spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = spaces.Box(-1.0, 1.0, (1,), np.float32)
    episode = 1000

    def step(self, action):
        if self._t + 1 >= EXPLODES_AT:
            raise RuntimeError(f"the env exploded at step {self._t + 1}")
        return super().step(action)


gymnasium.register("Exploding-v0", entry_point=Exploding, max_episode_steps=1000)
