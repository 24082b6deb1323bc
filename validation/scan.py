"""Observations to calibrate observation ranges from: a rollout (random actions, or a saved SB3 model acting),
or the observations held by a saved replay buffer (SB3's or ours).

>>> x = rollout("Pendulum-v1", steps=50, seed=0)
>>> x.shape, x.dtype
((50, 3), dtype('float64'))
"""

import importlib
import pickle
import sys
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from planner.algorithms import algorithm
from planner.envs import training_id
from planner.errors import PlannerError


def _flat_box(space: gym.Space, env_id: str) -> int:
    if not isinstance(space, gym.spaces.Box) or not np.issubdtype(space.dtype, np.floating):
        raise PlannerError(f"{env_id}: observation ranges scans take a Box of floats, got {space}", "env")
    return int(np.prod(space.shape))


def _load_policy(model: "str | None", algo: "str | None"):
    if model is None:
        return None
    if algo is None:
        raise PlannerError("a saved model needs its algorithm", "algo")
    entry = algorithm(algo)
    cls = getattr(importlib.import_module(entry.package), entry.class_name)
    try:
        return cls.load(model, device="cpu")
    except (OSError, ValueError, KeyError) as err:
        raise PlannerError(f"model {model}: cannot load it as {entry.class_name}: {err}"[:200], "model") from None


def _steps(env: gym.Env, steps: int, seed: int, policy, progress: bool, desc: str):
    """(obs, action, next obs, reward, terminated, truncated) of ``steps`` steps of ``env``, acting at random
    (``env.action_space`` seeded with ``seed``) or with ``policy``; episodes restart as they end."""
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    with tqdm(total=steps, desc=desc, unit="step", file=sys.stderr, leave=False, dynamic_ncols=True,
              disable=None if progress else True) as bar:  # None: shown only on a terminal
        for _ in range(steps):
            action = env.action_space.sample() if policy is None else policy.predict(obs, deterministic=True)[0]
            next_obs, reward, terminated, truncated, _ = env.step(action)
            yield obs, action, next_obs, reward, terminated, truncated
            obs = env.reset()[0] if (terminated or truncated) else next_obs
            bar.update()


def rollout(env_id: str, steps: int, seed: int = 0, model: "str | None" = None,
            algo: "str | None" = None, progress: bool = False) -> np.ndarray:
    """``steps`` observations of ``env_id`` (a -v3 id runs its -v5 twin), acting at random or, given ``model``
    (a saved SB3 model of ``algo``), deterministically with it; episodes restart as they end. ``progress``: a bar
    on stderr while it runs where stderr is a terminal (cleared at the end; nothing elsewhere)."""
    env = gym.make(training_id(env_id))
    dim = _flat_box(env.observation_space, env_id)
    policy = _load_policy(model, algo)
    out = np.empty((steps, dim), dtype=np.float64)
    for step, (obs, *_) in enumerate(_steps(env, steps, seed, policy, progress, f"scanning {env_id}")):
        out[step] = np.asarray(obs, dtype=np.float64).reshape(dim)
    env.close()
    return out


@dataclass(frozen=True)
class Transitions:
    """Consecutive transitions of one env, each observation kept once: transition i goes from ``observations[i]``
    to ``observations[i + 1]``, or, where its episode ended, to ``final[i]`` (row i + 1 is then the next episode's
    first)."""

    observations: np.ndarray  # (n + 1, dim) float64
    actions: np.ndarray  # (n, ...) as the env took them
    rewards: np.ndarray  # (n,)
    terminated: np.ndarray  # (n,) bool
    truncated: np.ndarray  # (n,) bool
    final: "dict[int, np.ndarray]"

    def __len__(self) -> int:
        return len(self.rewards)

    def next_observation(self, i: int) -> np.ndarray:
        return self.final[i] if i in self.final else self.observations[i + 1]


def random_transitions(env_id: str, steps: int, seed: int = 0) -> Transitions:
    """``steps`` transitions of ``env_id`` acting at random: the stream :func:`rollout` scans with the same
    ``seed`` (its observations are ``observations[:steps]``)."""
    env = gym.make(training_id(env_id))
    dim = _flat_box(env.observation_space, env_id)
    observations = np.empty((steps + 1, dim), dtype=np.float64)
    actions = np.empty((steps, *env.action_space.shape), dtype=env.action_space.dtype)
    rewards, ended = np.empty(steps), np.zeros((2, steps), dtype=bool)
    final, next_obs = {}, None
    for i, (obs, action, next_obs, reward, terminated, truncated) in enumerate(_steps(env, steps, seed, None, False,
                                                                                      "")):
        observations[i], actions[i], rewards[i], ended[:, i] = np.ravel(obs), action, reward, (terminated, truncated)
        if terminated or truncated:
            final[i] = np.asarray(next_obs, dtype=np.float64).reshape(dim)
    if steps:
        observations[steps] = np.ravel(next_obs)  # the last transition's next (its episode's last, if it ended)
    env.close()
    return Transitions(observations, actions, rewards, ended[0], ended[1], final)


def from_buffer(path: "str | Path") -> np.ndarray:
    """The stored observations of a replay buffer saved with ``save_replay_buffer`` (every transition's
    observation, each env's rows; ours decoded from their codes)."""
    try:
        with open(path, "rb") as handle:
            buffer = pickle.load(handle)
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError) as err:
        raise PlannerError(f"buffer {path}: cannot read a saved replay buffer: {err}"[:200], "from_buffer") from None
    observations = getattr(buffer, "observations", None)
    if observations is None or isinstance(observations, dict):
        raise PlannerError(f"buffer {path}: holds no Box observations (a Dict buffer or not a buffer)", "from_buffer")
    size = buffer.buffer_size if buffer.full else buffer.pos
    if size == 0:
        raise PlannerError(f"buffer {path}: is empty", "from_buffer")
    values = np.asarray(observations[:size], dtype=np.float64)
    return values.reshape(size * values.shape[1], -1)
