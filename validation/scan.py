"""Observations to calibrate observation ranges from: a rollout (random actions, or a saved SB3 model acting),
or the observations held by a saved replay buffer (SB3's or ours).

>>> x = rollout("Pendulum-v1", steps=50, seed=0)
>>> x.shape, x.dtype
((50, 3), dtype('float64'))
"""

import importlib
import pickle
import sys
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


def rollout(env_id: str, steps: int, seed: int = 0, model: "str | None" = None,
            algo: "str | None" = None, progress: bool = False) -> np.ndarray:
    """``steps`` observations of ``env_id`` (a -v3 id runs its -v5 twin), acting at random or, given ``model``
    (a saved SB3 model of ``algo``), deterministically with it; episodes restart as they end. ``progress``: a bar
    on stderr while it runs where stderr is a terminal (cleared at the end; nothing elsewhere)."""
    env = gym.make(training_id(env_id))
    dim = _flat_box(env.observation_space, env_id)
    policy = None
    if model is not None:
        if algo is None:
            raise PlannerError("a saved model needs its algorithm", "algo")
        entry = algorithm(algo)
        cls = getattr(importlib.import_module(entry.package), entry.class_name)
        try:
            policy = cls.load(model, device="cpu")
        except (OSError, ValueError, KeyError) as err:
            raise PlannerError(f"model {model}: cannot load it as {entry.class_name}: {err}"[:200], "model") from None
    env.action_space.seed(seed)
    out = np.empty((steps, dim), dtype=np.float64)
    obs, _ = env.reset(seed=seed)
    with tqdm(total=steps, desc=f"scanning {env_id}", unit="step", file=sys.stderr, leave=False, dynamic_ncols=True,
              disable=None if progress else True) as bar:  # None: shown only on a terminal
        for step in range(steps):
            out[step] = np.asarray(obs, dtype=np.float64).reshape(dim)
            action = env.action_space.sample() if policy is None else policy.predict(obs, deterministic=True)[0]
            obs, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                obs, _ = env.reset()
            bar.update()
    env.close()
    return out


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
