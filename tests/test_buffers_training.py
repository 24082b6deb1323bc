"""Real SB3 training on MuJoCo with the quantized buffers (a few hundred steps each), save/load, acting wrapper."""

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.env_util import make_vec_env

from planner.footprint import RunSpec, footprint
from planner.quantization import Quantization
from validation.buffers import QuantizedReplayBuffer, QuantizedRolloutBuffer, QuantizeObservation


def _params(model):
    return th.cat([p.detach().flatten().clone() for p in model.policy.parameters()])


@pytest.mark.parametrize("env_id", ["Walker2d-v5", "Hopper-v5"])
def test_sac_trains_with_the_quantized_replay_buffer(env_id, tmp_path):
    model = SAC("MlpPolicy", env_id, buffer_size=5_000, learning_starts=100, batch_size=64, seed=0, device="cpu",
                replay_buffer_class=QuantizedReplayBuffer, replay_buffer_kwargs=dict(decimals=2, clamp=127))
    before = _params(model)
    model.learn(300)
    buf = model.replay_buffer
    assert isinstance(buf, QuantizedReplayBuffer) and buf.size() == 300
    after = _params(model)
    assert th.isfinite(after).all() and not th.equal(before, after)
    obs_dim, act_dim = model.observation_space.shape[0], model.action_space.shape[0]
    predicted = footprint(RunSpec("sac", obs_dim, act_dim, 5_000, storage="packed", quant=Quantization.create(2, 127)))
    assert buf.memory_bytes() == predicted.buffer_bytes

    model.save_replay_buffer(tmp_path / "rb.pkl")
    fresh = SAC("MlpPolicy", env_id, buffer_size=5_000, device="cpu", replay_buffer_class=QuantizedReplayBuffer,
                replay_buffer_kwargs=dict(decimals=2, clamp=127))
    fresh.load_replay_buffer(tmp_path / "rb.pkl")
    loaded = fresh.replay_buffer
    assert loaded.pos == buf.pos and loaded.terminal_evictions == buf.terminal_evictions
    assert np.array_equal(loaded.stored_observations.arrays[None].storage, buf.stored_observations.arrays[None].storage)
    assert np.array_equal(loaded.terminal_slot, buf.terminal_slot) and np.array_equal(loaded.actions, buf.actions)
    fresh.learn(50, reset_num_timesteps=False)  # training continues from the loaded buffer
    assert fresh.replay_buffer.size() == 350


@pytest.mark.parametrize("env_id", ["Walker2d-v5", "Hopper-v5"])
def test_ppo_trains_with_the_quantized_rollout_buffer(env_id):
    model = PPO("MlpPolicy", make_vec_env(env_id, n_envs=2, seed=0), n_steps=128, batch_size=64, n_epochs=2, seed=0,
                device="cpu", rollout_buffer_class=QuantizedRolloutBuffer, rollout_buffer_kwargs=dict(decimals=1))
    before = _params(model)
    model.learn(512)
    buf = model.rollout_buffer
    assert isinstance(buf, QuantizedRolloutBuffer) and buf.stored_values == 512 * buf.code_layout.dim
    after = _params(model)
    assert th.isfinite(after).all() and not th.equal(before, after)


def test_wrapped_env_acts_on_exactly_the_values_the_buffer_returns():
    env = QuantizeObservation(gym.make("Walker2d-v5"), decimals=2)
    buf = QuantizedReplayBuffer(100, env.observation_space, env.action_space, "cpu", decimals=2)
    obs, _ = env.reset(seed=1)
    seen = []
    for _ in range(30):
        next_obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        buf.add(obs[None], next_obs[None], np.zeros((1, 6)), np.array([reward]), np.array([terminated]),
                [{"TimeLimit.truncated": truncated}])
        seen.append(obs.astype(np.float32))  # what the policy network gets (SB3 casts observations to float32)
        obs = next_obs
    got = buf._get_samples(np.arange(30)).observations.numpy()
    assert np.array_equal(got, np.stack(seen))
    assert not np.array_equal(np.stack(seen), np.round(np.stack(seen), 1))  # really 2 decimals, not coarser


def test_sac_trains_with_n_step_returns_from_the_quantized_buffer():
    model = SAC("MlpPolicy", "Hopper-v5", buffer_size=1_000, learning_starts=50, batch_size=64, seed=0, device="cpu",
                replay_buffer_class=QuantizedReplayBuffer, replay_buffer_kwargs=dict(decimals=2, n_steps=3, gamma=0.99))
    model.learn(150)
    batch = model.replay_buffer.sample(64)
    assert batch.discounts is not None and float(batch.discounts.min()) == pytest.approx(0.99**3, rel=1e-6)


def test_her_sac_trains_on_a_goal_env_with_the_quantized_buffer_and_memory_equals_the_planner():
    """HerReplayBuffer's goal relabelling on the quantized store: SAC learns on a goal-conditioned Dict env; the
    relabelled goals are achieved goals the buffer holds; the buffer's bytes are the planner's prediction."""
    import obs_envs  # noqa: F401  (registers ObsGoal-v0)
    from stable_baselines3 import SAC

    from planner.actions import ActionSpace
    from planner.footprint import RunSpec, footprint
    from planner.observations import ObsSpace
    from planner.quantization import Quantization
    from validation.buffers import QuantizedHerReplayBuffer

    model = SAC("MultiInputPolicy", "ObsGoal-v0", buffer_size=400, learning_starts=40, batch_size=32, seed=0,
                device="cpu", replay_buffer_class=QuantizedHerReplayBuffer,
                replay_buffer_kwargs=dict(n_sampled_goal=4, goal_selection_strategy="future", decimals=2))
    model.learn(120)
    buf = model.replay_buffer
    assert isinstance(buf, QuantizedHerReplayBuffer) and buf.pos == 120 and model.logger.name_to_value
    samples = buf.sample(64)
    achieved = buf.next_observations["achieved_goal"][:120].reshape(-1, 3)
    goals = samples.observations["desired_goal"].numpy()
    for goal in goals[-8:]:  # HerReplayBuffer puts the relabelled (virtual) transitions last
        assert np.abs(achieved - goal).max(axis=1).min() == 0.0  # an achieved goal the buffer holds, bit for bit
    assert np.array_equal(samples.observations["desired_goal"], samples.next_observations["desired_goal"])
    spec = RunSpec("sac", buffer_size=400, storage="packed", quant=Quantization.create(2, 127.0), her=True,
                   obs_space=ObsSpace.of(model.observation_space), action_space=ActionSpace.box(3))
    predicted = footprint(spec)
    assert buf.memory_breakdown() == {f.name: f.bytes for f in predicted.fields}
    assert buf.memory_bytes() == predicted.buffer_bytes
