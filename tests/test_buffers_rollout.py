"""QuantizedRolloutBuffer against SB3's RolloutBuffer fed the same rollout; memory equals the planner; the buffers'
default m is the planner's."""

import json

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import RolloutBuffer

from planner.actions import ActionSpace
from planner.algorithms import algorithm
from planner.cli import main
from planner.defaults import default_decimals, is_on_policy
from planner.errors import PlannerError
from planner.footprint import RunSpec, footprint
from planner.quantization import Quantization
from planner.runspec import ALGOS
from validation.buffers import QuantizedReplayBuffer, QuantizedRolloutBuffer, uniform_layout

ACTION_DIM = 2


def _spaces(obs_shape):
    return spaces.Box(-np.inf, np.inf, obs_shape, np.float64), spaces.Box(-1, 1, (ACTION_DIM,), np.float32)


def fill(buffers, n_steps, n_envs, obs_shape, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(n_steps):
        data = (rng.normal(0, 60, (n_envs, *obs_shape)), rng.uniform(-1, 1, (n_envs, ACTION_DIM)).astype(np.float32),
                rng.normal(size=n_envs).astype(np.float32), (rng.random(n_envs) < 0.1).astype(np.float32),
                th.as_tensor(rng.normal(size=(n_envs, 1)).astype(np.float32)),
                th.as_tensor(rng.normal(size=n_envs).astype(np.float32)))
        for buf in buffers:
            buf.add(*data)
    last_values, dones = th.as_tensor(rng.normal(size=(n_envs, 1)).astype(np.float32)), rng.random(n_envs) < 0.1
    for buf in buffers:
        buf.compute_returns_and_advantage(last_values, dones)


@pytest.mark.parametrize("n_envs", [1, 4])
@pytest.mark.parametrize("obs_shape", [(5,), (3, 2)])
def test_minibatches_match_sb3_rollout_buffer(n_envs, obs_shape):
    obs_space, act_space = _spaces(obs_shape)
    ref = RolloutBuffer(16, obs_space, act_space, "cpu", gae_lambda=0.95, gamma=0.99, n_envs=n_envs)
    ours = QuantizedRolloutBuffer(16, obs_space, act_space, "cpu", gae_lambda=0.95, gamma=0.99, n_envs=n_envs,
                                  decimals=1, clamp=127)
    fill([ref, ours], 16, n_envs, obs_shape)
    assert np.array_equal(ours.advantages, ref.advantages) and np.array_equal(ours.returns, ref.returns)
    np.random.seed(7)
    want = list(ref.get(batch_size=8))
    np.random.seed(7)
    got = list(ours.get(batch_size=8))
    assert len(got) == len(want) == 2 * n_envs
    spec = ours.code_layout
    for g, w in zip(got, want):
        assert g.observations.shape == w.observations.shape and g.observations.dtype == th.float32
        expected = np.clip(w.observations.numpy(), -127, 127)
        assert np.abs(g.observations.numpy() - expected).max() <= 0.5 / spec.scale[0] + 1e-4
        for name in ("actions", "old_values", "old_log_prob", "advantages", "returns"):
            assert np.array_equal(getattr(g, name).numpy(), getattr(w, name).numpy()), name
    assert ours.saturated > 0 and 0 < ours.quantization_stats()["saturated_fraction"] < 0.1


def test_reset_keeps_packed_storage_and_allocates_no_observation_array():
    obs_space, act_space = _spaces((348,))
    buf = QuantizedRolloutBuffer(2048, obs_space, act_space, "cpu", n_envs=2)
    storage = buf.stored_observations.arrays[None]
    buf.reset()
    assert buf.stored_observations.arrays[None] is storage and buf.observations.nbytes == 0
    assert buf.obs_shape == (348,)


@pytest.mark.parametrize("dim, n_steps, n_envs, decimals, bits", [
    (17, 2048, 1, 1, None), (348, 2048, 1, 1, None), (11, 512, 8, 2, None), (105, 100, 3, 1, 16), (1, 1, 1, 0, 32)])
def test_memory_equals_planner_packed_prediction_and_real_allocation(dim, n_steps, n_envs, decimals, bits):
    obs_space, act_space = _spaces((dim,))
    buf = QuantizedRolloutBuffer(n_steps, obs_space, act_space, "cpu", n_envs=n_envs, decimals=decimals, bits=bits)
    quant = Quantization.create(decimals, 127.0, bits=buf.code_layout.bits)
    predicted = footprint(RunSpec("ppo", dim, ACTION_DIM, n_steps, n_envs, storage="packed", quant=quant))
    assert buf.memory_breakdown() == {f.name: f.bytes for f in predicted.fields}
    arrays = [v for v in vars(buf).values() if isinstance(v, np.ndarray)] + [buf.stored_observations.arrays[None]]
    assert sum(a.nbytes for a in arrays) == buf.memory_bytes() == predicted.buffer_bytes


@pytest.mark.parametrize("act_space, action_dim, action_dtype", [
    (spaces.Box(-1, 1, (3,), np.float64), 3, "float64"), (spaces.Discrete(5), 1, "int64")])
def test_memory_equals_planner_for_other_action_spaces(act_space, action_dim, action_dtype):
    """SB3's rollout buffer stores actions in the action space's dtype; the planner counts them so."""
    obs_space = spaces.Box(-np.inf, np.inf, (11,), np.float64)
    buf = QuantizedRolloutBuffer(256, obs_space, act_space, "cpu", n_envs=2, decimals=1)
    spec = RunSpec("ppo", 11, action_dim, 256, 2, storage="packed", quant=Quantization.create(1, 127.0),
                   action_dtype=action_dtype)
    assert buf.memory_breakdown() == {f.name: f.bytes for f in footprint(spec).fields}
    assert buf.actions.dtype == np.dtype(action_dtype)


@pytest.mark.parametrize("algo", ALGOS)
def test_a_bare_buffer_keeps_the_paper_m_of_its_algorithm_as_the_cli_does(algo, capsys):
    buffer = QuantizedRolloutBuffer if is_on_policy(algo) else QuantizedReplayBuffer
    layout = buffer(8, *_spaces((3,)), "cpu").code_layout
    env = "Hopper-v5" if algorithm(algo).refusal(ActionSpace.box(3)) is None else "CartPole-v1"  # DQN: Discrete
    assert main(["estimate", "--algo", algo, "--env", env, "--storage", "packed", "--json"]) == 0
    cli = json.loads(capsys.readouterr().out)["spec"]["quant"]["decimals"]
    assert layout.scale[0] == 10.0 ** default_decimals(algo) == 10.0 ** cli
    assert default_decimals(algo) == (1 if is_on_policy(algo) else 2)  # the paper's PPO and SAC m


def test_the_wrapper_takes_no_default_m_the_buffer_it_feeds_has_one():
    with pytest.raises(PlannerError, match=r"observation is a Box of floats: give its decimals \(the m of the buffer"):
        uniform_layout(_spaces((3,))[0])
    assert uniform_layout(_spaces((3,))[0], decimals=1).scale[0] == 10.0
