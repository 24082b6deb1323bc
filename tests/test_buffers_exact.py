"""No value ever wrong: a calibrated buffer returns, bit for bit, what the uniform buffer at its m and b returns,
on real MuJoCo streams with episode ends; no exception table holds free slots that read as entries."""

import pickle
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces

from planner.obs_ranges import choose_ranges
from validation.buffers import QuantizedReplayBuffer, QuantizedRolloutBuffer
from validation.scan import rollout

ACTIONS = spaces.Box(-1.0, 1.0, (2,), np.float32)


def bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("env_id", ["Ant-v5", "Hopper-v5"])
def test_episode_end_next_observations_come_back_exact_on_a_real_env(env_id):
    """Random actions on a real env: every episode end's next observation (the terminal store) decodes as the
    uniform buffer's, right after its add and at the end; with recalibration too."""
    ranges = choose_ranges(rollout(env_id, 1_000, seed=1), 2)
    env = gym.make(env_id)
    space, actions = env.observation_space, env.action_space
    uniform = QuantizedReplayBuffer(5_000, space, actions, "cpu", decimals=2)
    calibrated = [QuantizedReplayBuffer(5_000, space, actions, "cpu", obs_ranges=ranges, recalibrate=share)
                  for share in (None, 0.01)]
    actions.seed(0)
    obs, _ = env.reset(seed=0)
    ends = 0
    for step in range(1_500):
        action = actions.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for buf in (uniform, *calibrated):
            buf.add(obs[None], next_obs[None], action[None], np.array([reward]), np.array([terminated]),
                    [{"TimeLimit.truncated": truncated and not terminated}])
        obs = next_obs
        if terminated or truncated:
            ends += 1
            want = bits(uniform.next_observations[step])
            for buf in calibrated:
                assert np.array_equal(bits(buf.next_observations[step]), want), (step, buf.drift.threshold)
            obs, _ = env.reset()
    assert ends >= 2 and calibrated[1].drift.events
    for buf in calibrated:
        assert np.array_equal(bits(buf.next_observations[:1_500]), bits(uniform.next_observations[:1_500]))
        assert np.array_equal(bits(buf.observations[:1_500]), bits(uniform.observations[:1_500]))


def one_episode_end(buf, first=0.5):
    """A transition that ends its episode with a next observation outside the ranges of :func:`narrow_ranges`
    (its observation too unless ``first`` is 0.5)."""
    buf.add(np.array([[first, 1.0, 2.0]]), np.array([[1.12, 1.0, 2.0]]), np.zeros((1, 2)), np.ones(1), np.ones(1),
            [{}])


def narrow_ranges(outside=0.1):
    """Three constant dimensions (0 bits each), tables sized for ``outside`` entries per row and dimension."""
    ranges = choose_ranges(np.tile([0.5, 1.0, 2.0], (10, 1)), 2)
    return replace(ranges, dims=tuple(replace(d, outside=outside) for d in ranges.dims))


def test_no_exception_table_starts_with_slots_that_read_as_entries():
    """Every table a calibrated buffer allocates, the eagerly written episode-end store's included, holds free
    slots (row -1), never zeros (row 0, dim 0, code 0: an entry of row 0)."""
    box = spaces.Box(-np.inf, np.inf, (3,), np.float64)
    replay = QuantizedReplayBuffer(640, box, ACTIONS, "cpu", obs_ranges=narrow_ranges())
    rollout_buf = QuantizedRolloutBuffer(64, spaces.Dict({"a": box}), ACTIONS, "cpu", obs_ranges={"a": narrow_ranges()})
    stores = [replay.stored_observations.arrays[None], replay.terminal_observations.arrays[None],
              rollout_buf.stored_observations.arrays["a"]]
    for rows in stores:
        assert rows.store.capacity > 0 and np.all(rows.store.table["row"] == -1) and rows.store.entries.size == 0
    uniform = QuantizedReplayBuffer(640, box, ACTIONS, "cpu", decimals=2)
    for buf in (replay, uniform):
        one_episode_end(buf)
    assert np.array_equal(bits(replay.next_observations[0]), bits(uniform.next_observations[0]))
    assert replay.next_observations[0].tolist() == [[1.1200000047683716, 1.0, 2.0]]


def test_a_saved_buffer_with_zero_filled_free_slots_loads_every_value():
    """A file saved by a release that zero-filled the episode-end store's table: its free slots continue the run
    of the last row written (terminal slot 0); loaded, every value is still the uniform buffer's."""
    box = spaces.Box(-np.inf, np.inf, (3,), np.float64)
    calibrated = QuantizedReplayBuffer(640, box, ACTIONS, "cpu", obs_ranges=narrow_ranges(), recalibrate=0.01)
    uniform = QuantizedReplayBuffer(640, box, ACTIONS, "cpu", decimals=2)
    for buf in (calibrated, uniform):
        one_episode_end(buf)
    store = calibrated.terminal_observations.arrays[None].store
    assert store.entries.tolist() == [(0, 0, 112)] and store.capacity > store.used
    store.table[store.used:] = np.zeros(1, store.table.dtype)  # what the eager allocation used to write
    loaded = pickle.loads(pickle.dumps(calibrated))
    assert np.array_equal(bits(loaded.next_observations[0]), bits(uniform.next_observations[0]))
    for _ in range(400):  # 1,200 rows: a drift check; dimension 0 drifted: a recalibration re-packs
        for buf in (loaded, uniform):
            one_episode_end(buf, first=1.12)
    assert loaded.drift.events
    assert np.array_equal(bits(loaded.next_observations[:401]), bits(uniform.next_observations[:401]))

