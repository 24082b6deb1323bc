"""Small gymnasium envs with image and Dict observations, registered on import (``obs_envs:ID`` ids work in a
fresh process, e.g. ``planner fit --env obs_envs:ObsImage-v0`` with this folder on PYTHONPATH).

- ObsImage-v0: a uint8 (36, 36, 3) image (channels last, as CarRacing's (96, 96, 3); 36 x 36 is the smallest
  NatureCNN takes), Box(2) actions; ObsImageDiscrete-v0 the same with Discrete(3) actions.
- ObsDict-v0: a Dict of an image, a float64 vector and a Discrete entry, Box(2) actions; ObsDictDiscrete-v0 with
  Discrete(3) actions.
- ObsGoal-v0: goal-conditioned (observation, achieved_goal, desired_goal) with ``compute_reward``, as HER needs.
"""

import gymnasium
import numpy as np
from gymnasium import spaces

EPISODE = 8


def _actions(discrete: bool) -> spaces.Space:
    return spaces.Discrete(3) if discrete else spaces.Box(-1.0, 1.0, (2,), np.float32)


class Episodic(gymnasium.Env):
    """Random observations from the space, zero reward, a time limit after ``episode`` steps."""

    episode = EPISODE

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self._t = 0
        return self.observation_space.sample(), {}

    def step(self, action):
        self._t += 1
        return self.observation_space.sample(), 0.0, False, self._t >= self.episode, {}


class ImageEnv(Episodic):
    def __init__(self, discrete: bool = False, size: int = 36) -> None:
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = _actions(discrete)


class DictEnv(Episodic):
    def __init__(self, discrete: bool = False) -> None:
        self.observation_space = spaces.Dict({
            "camera": spaces.Box(0, 255, (36, 36, 3), np.uint8),
            "state": spaces.Box(-1.0, 1.0, (4,), np.float64),
            "mode": spaces.Discrete(3),
        })
        self.action_space = _actions(discrete)


class GoalEnv(gymnasium.Env):
    """A 3-d point to move onto a goal; the reward is -distance > 0.05, as the robotics goal envs compute it."""

    def __init__(self) -> None:
        self.observation_space = spaces.Dict({
            "observation": spaces.Box(-10.0, 10.0, (6,), np.float64),
            "achieved_goal": spaces.Box(-10.0, 10.0, (3,), np.float64),
            "desired_goal": spaces.Box(-10.0, 10.0, (3,), np.float64),
        })
        self.action_space = spaces.Box(-1.0, 1.0, (3,), np.float32)

    def _obs(self):
        return {"observation": np.concatenate([self._pos, self._goal]), "achieved_goal": self._pos.copy(),
                "desired_goal": self._goal.copy()}

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self._t, self._pos, self._goal = 0, np.zeros(3), self.np_random.uniform(-1, 1, 3)
        return self._obs(), {}

    def step(self, action):
        self._t += 1
        self._pos = self._pos + 0.1 * np.asarray(action, dtype=np.float64)
        reward = float(self.compute_reward(self._pos, self._goal, {}))
        return self._obs(), reward, False, self._t >= EPISODE, {}

    def compute_reward(self, achieved_goal, desired_goal, info):
        return -(np.linalg.norm(achieved_goal - desired_goal, axis=-1) > 0.05).astype(np.float32)


ENVS = {
    "ObsImage-v0": lambda: ImageEnv(),
    "ObsImageDiscrete-v0": lambda: ImageEnv(discrete=True),
    "ObsDict-v0": lambda: DictEnv(),
    "ObsDictDiscrete-v0": lambda: DictEnv(discrete=True),
    "ObsGoal-v0": lambda: GoalEnv(),
}

for _id, _entry in ENVS.items():
    if _id not in gymnasium.registry:
        gymnasium.register(_id, entry_point=_entry)
