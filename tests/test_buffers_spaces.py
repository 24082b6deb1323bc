"""The quantized buffers on every observation space SB3 stores, against SB3's own buffers fed the same stream:
every transition's observation and next observation (floats within half a step, the rest exactly), memory
equal to the planner's ``packed`` prediction, a rejected transition that changes nothing, ``extend()``."""

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import DictReplayBuffer, DictRolloutBuffer, ReplayBuffer, RolloutBuffer

from cython_core import NonFiniteError
from planner.actions import ActionSpace
from planner.errors import PlannerError
from planner.footprint import RunSpec, footprint
from planner.observations import ObsSpace
from planner.quantization import Quantization
from validation.buffers import QuantizedDictReplayBuffer, QuantizedReplayBuffer, QuantizedRolloutBuffer

DECIMALS = 2
ACTIONS = spaces.Box(-1.0, 1.0, (2,), np.float32)
SPACES = {
    "box": spaces.Box(-np.inf, np.inf, (5,), np.float64),
    "discrete": spaces.Discrete(7),
    "multidiscrete": spaces.MultiDiscrete([3, 4, 5]),
    "multibinary": spaces.MultiBinary(6),
    "image": spaces.Box(0, 255, (3, 36, 36), np.uint8),
    "int-box": spaces.Box(-50, 50, (4,), np.int32),
    "dict": spaces.Dict({"pos": spaces.Box(-np.inf, np.inf, (4,), np.float64),
                         "camera": spaces.Box(0, 255, (1, 36, 36), np.uint8), "cell": spaces.Discrete(5),
                         "flags": spaces.MultiBinary(3), "gears": spaces.MultiDiscrete([2, 3])}),
}


def batch(space, n, rng):
    """``n`` observations of ``space`` as a VecEnv returns them (floats ~ N(0, 60): some exceed the clamp)."""
    if isinstance(space, spaces.Dict):
        return {key: batch(sub, n, rng) for key, sub in space.spaces.items()}
    if isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.floating):
        return rng.normal(0, 60, (n, *space.shape))
    space.seed(int(rng.integers(2**31)))
    return np.stack([space.sample() for _ in range(n)])


def where(mask, new, old):
    if isinstance(new, dict):
        return {key: where(mask, new[key], old[key]) for key in new}
    return np.where(mask.reshape(-1, *([1] * (new.ndim - 1))), new, old)


def copied(obs):
    """SB3's DictReplayBuffer reshapes Discrete entries of the dicts it is given in place."""
    return {key: value.copy() for key, value in obs.items()} if isinstance(obs, dict) else obs.copy()


def stream(space, n_envs, steps, seed=0, interrupt_every=0, p_done=0.1, max_len=6):
    """VecEnv-like transitions: obs_{t+1} = next_obs_t unless the episode ended (a reset observation then);
    every ``interrupt_every`` steps the stream restarts (as a second ``learn()`` resets the env)."""
    rng = np.random.default_rng(seed)
    obs, length = batch(space, n_envs, rng), np.zeros(n_envs, dtype=int)
    for step in range(steps):
        if interrupt_every and step and step % interrupt_every == 0:
            obs, length = batch(space, n_envs, rng), np.zeros(n_envs, dtype=int)
        next_obs = batch(space, n_envs, rng)
        length += 1
        terminated = rng.random(n_envs) < p_done
        truncated = (length >= max_len) & ~terminated
        done = terminated | truncated
        infos = [{"TimeLimit.truncated": bool(t)} for t in truncated]
        yield (copied(obs), copied(next_obs), rng.uniform(-1, 1, (n_envs, 2)).astype(np.float32),
               rng.normal(size=n_envs).astype(np.float32), done, infos)
        obs = where(done, batch(space, n_envs, rng), next_obs)
        length[done] = 0


def sb3_replay(space, size, n_envs):
    cls = DictReplayBuffer if isinstance(space, spaces.Dict) else ReplayBuffer
    return cls(size, space, ACTIONS, "cpu", n_envs=n_envs)


def sample_both(ref, ours, batch_size, seed):
    """The same draw from SB3's buffer and ours (both sample with numpy's global generator)."""
    samples = []
    for buf in (ref, ours):
        np.random.seed(seed)
        samples.append(buf.sample(batch_size))
    return samples


def assert_same_observations(got, want, space):
    """Floats within half a step of the clamped value, everything else exactly, in SB3's shapes."""
    if isinstance(space, spaces.Dict):
        for key, sub in space.spaces.items():
            assert_same_observations(got[key], want[key], sub)
        return
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    if isinstance(space, spaces.Box) and np.issubdtype(space.dtype, np.floating):
        assert np.abs(got - np.clip(want, -127, 127)).max() <= 0.5 * 10.0**-DECIMALS + 1e-4
    else:
        assert got.dtype == want.dtype and np.array_equal(got, want)


def assert_every_transition_matches(ours, ref, space, steps):
    """Every stored transition's observation and next observation, read through SB3's layout."""
    if isinstance(space, spaces.Dict):
        for key in space.spaces:
            assert_same_observations(ours.observations[key][:steps], ref.observations[key][:steps], space[key])
            assert_same_observations(ours.next_observations[key][:steps], ref.next_observations[key][:steps],
                                     space[key])
    else:
        assert_same_observations(ours.observations[:steps], ref.observations[:steps], space)
        assert_same_observations(ours.next_observations[:steps], ref.next_observations[:steps], space)


@pytest.mark.parametrize("name", list(SPACES))
@pytest.mark.parametrize("n_envs", [1, 3])
def test_replay_matches_sb3_on_every_space(name, n_envs):
    space = SPACES[name]
    size = 64 * n_envs  # no wrap-around: a full buffer's row at pos is not a transition
    ref, ours = sb3_replay(space, size, n_envs), QuantizedReplayBuffer(size, space, ACTIONS, "cpu", n_envs=n_envs,
                                                                       decimals=DECIMALS, terminal_capacity=64)
    for transition in stream(space, n_envs, 50, interrupt_every=17):
        ref.add(*transition)
        ours.add(*transition)
    assert_every_transition_matches(ours, ref, space, 50)
    want, got = sample_both(ref, ours, 32, seed=3)
    assert type(got).__name__ == type(want).__name__
    assert_same_observations(got.observations, want.observations, space)
    assert_same_observations(got.next_observations, want.next_observations, space)
    for field in ("actions", "dones", "rewards"):
        assert th.equal(getattr(got, field), getattr(want, field)), field


@pytest.mark.parametrize("name", list(SPACES))
def test_rollout_minibatches_match_sb3_on_every_space(name):
    space, n_envs = SPACES[name], 2
    cls = DictRolloutBuffer if isinstance(space, spaces.Dict) else RolloutBuffer
    ref = cls(8, space, ACTIONS, "cpu", n_envs=n_envs)
    ours = QuantizedRolloutBuffer(8, space, ACTIONS, "cpu", n_envs=n_envs, decimals=DECIMALS)
    rng = np.random.default_rng(1)
    for _ in range(8):
        data = (batch(space, n_envs, rng), rng.uniform(-1, 1, (n_envs, 2)).astype(np.float32),
                rng.normal(size=n_envs).astype(np.float32), np.zeros(n_envs, dtype=np.float32),
                th.zeros(n_envs, 1), th.zeros(n_envs))
        ref.add(*data)
        ours.add(*data)
    for buf in (ref, ours):
        buf.compute_returns_and_advantage(th.zeros(n_envs, 1), np.zeros(n_envs))
    np.random.seed(2)
    want = list(ref.get(batch_size=4))
    np.random.seed(2)
    got = list(ours.get(batch_size=4))
    assert len(got) == len(want) == 4
    for g, w in zip(got, want):
        assert type(g).__name__ == type(w).__name__
        assert_same_observations(g.observations, w.observations, space)
        assert th.equal(g.actions, w.actions) and th.equal(g.advantages, w.advantages)


def _run_spec(space, algo, size, n_envs, her=False):
    return RunSpec(algo, buffer_size=size, n_envs=n_envs, storage="packed", quant=Quantization.create(DECIMALS, 127.0),
                   obs_space=ObsSpace.of(space), action_space=ActionSpace.box(2), her=her)


@pytest.mark.parametrize("name", list(SPACES))
def test_memory_equals_the_planners_packed_prediction_on_every_space(name):
    space = SPACES[name]
    replay = QuantizedReplayBuffer(300, space, ACTIONS, "cpu", n_envs=3, decimals=DECIMALS)
    predicted = footprint(_run_spec(space, "sac", 300, 3))
    assert replay.memory_breakdown() == {f.name: f.bytes for f in predicted.fields}
    assert replay.memory_bytes() == predicted.buffer_bytes
    rollout = QuantizedRolloutBuffer(64, space, ACTIONS, "cpu", n_envs=2, decimals=DECIMALS)
    predicted = footprint(_run_spec(space, "ppo", 64, 2))
    assert rollout.memory_breakdown() == {f.name: f.bytes for f in predicted.fields}


def test_dict_entries_take_their_own_quantization():
    space = spaces.Dict({"a": spaces.Box(-np.inf, np.inf, (3,)), "b": spaces.Box(-np.inf, np.inf, (2,))})
    buf = QuantizedDictReplayBuffer(10, space, ACTIONS, "cpu", decimals={"a": 0, "b": 3}, clamp={"b": 2.0})
    assert buf.code_layout["a"].bits == 8 and buf.code_layout["b"].bits == 12  # 255 and 4001 levels
    with pytest.raises(PlannerError, match="keys the observation space lacks: c"):
        QuantizedReplayBuffer(10, space, ACTIONS, "cpu", decimals={"c": 1})


@pytest.mark.parametrize("name", ["box", "dict"])
def test_a_rejected_transition_leaves_the_buffer_as_it_was(name):
    """A NaN observation mid-stream (right after a time limit) is refused; the stream goes on; every
    transition then matches SB3's buffer fed the same stream without the rejected one."""
    space = SPACES[name]
    ref, ours = sb3_replay(space, 128, 2), QuantizedReplayBuffer(128, space, ACTIONS, "cpu", n_envs=2,
                                                                 decimals=DECIMALS, terminal_capacity=64)
    rejected = 0
    for step, transition in enumerate(stream(space, 2, 40, seed=4)):
        if step in (9, 21):
            bad = {k: v.copy() for k, v in transition[0].items()} if name == "dict" else transition[0].copy()
            (bad["pos"] if name == "dict" else bad)[1, 0] = np.nan
            with pytest.raises(NonFiniteError):
                ours.add(bad, *transition[1:])
            rejected += 1
        ref.add(*transition)
        ours.add(*transition)
    assert rejected == 2 and ours.pos == ref.pos == 40
    assert_every_transition_matches(ours, ref, space, 40)


def test_a_wrong_shape_or_missing_key_is_one_clear_error_and_changes_nothing():
    ours = QuantizedReplayBuffer(10, SPACES["dict"], ACTIONS, "cpu", n_envs=1)
    obs = batch(SPACES["dict"], 1, np.random.default_rng(0))
    with pytest.raises(PlannerError, match=r"observation\['pos'\] has shape \(1, 5\), expected \(1, 4\)"):
        ours.add({**obs, "pos": np.zeros((1, 5))}, obs, np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{}])
    with pytest.raises(PlannerError, match="observation must be a dict with keys"):
        ours.add({"pos": obs["pos"]}, obs, np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{}])
    assert ours.pos == 0 and not ours.full


def test_extend_from_a_dataset_keeps_every_next_observation():
    """``extend()`` with independent transitions (a dataset): no next observation is the following one."""
    space = SPACES["box"]
    rng = np.random.default_rng(5)
    n = 30
    data = (rng.normal(0, 60, (n, 1, 5)), rng.normal(0, 60, (n, 1, 5)),
            rng.uniform(-1, 1, (n, 1, 2)).astype(np.float32), rng.normal(size=(n, 1)).astype(np.float32),
            np.zeros((n, 1)), [[{}] for _ in range(n)])
    ref, ours = sb3_replay(space, 64, 1), QuantizedReplayBuffer(64, space, ACTIONS, "cpu", decimals=DECIMALS,
                                                                terminal_capacity=32)
    ref.extend(*data)
    ours.extend(*data)
    assert_every_transition_matches(ours, ref, space, n)
    assert ours.timeout_evictions == 0
    # SB3's pattern: copy one buffer into another through its arrays
    copy = QuantizedReplayBuffer(64, space, ACTIONS, "cpu", decimals=DECIMALS, terminal_capacity=32)
    copy.extend(ours.observations[:n], ours.next_observations[:n], ours.actions[:n], ours.rewards[:n],
                ours.dones[:n], [[{}] for _ in range(n)])
    assert_every_transition_matches(copy, ref, space, n)


def test_a_tiny_terminal_store_gives_way_and_says_so_for_dataset_transitions():
    space = SPACES["box"]
    rng = np.random.default_rng(6)
    ours = QuantizedReplayBuffer(64, space, ACTIONS, "cpu", decimals=DECIMALS, terminal_capacity=4)
    for _ in range(20):
        ours.add(rng.normal(size=(1, 5)), rng.normal(size=(1, 5)), np.zeros((1, 2)), np.zeros(1), np.zeros(1), [{}])
    assert ours.timeout_evictions == ours.terminal_evictions == 15  # 19 replaced next observations, 4 kept


def test_writing_into_the_observation_view_is_refused():
    ours = QuantizedReplayBuffer(10, SPACES["box"], ACTIONS, "cpu")
    with pytest.raises(PlannerError, match="write them with add"):
        ours.observations[0] = 1.0


@pytest.mark.parametrize("half", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["box", "dict"])
def test_half_precision_storage_rounds_as_torch_does_and_equals_the_planner(half, name):
    """dtype="float16" / "bfloat16": floats stored once in that type (bfloat16 as a float32's high 16 bits,
    rounded to nearest even: torch's own conversion is the reference); the planner's storage of that name
    predicts the bytes."""
    space = SPACES[name]
    ours = QuantizedReplayBuffer(128, space, ACTIONS, "cpu", n_envs=2, dtype=half, terminal_capacity=64)
    ref = sb3_replay(space, 128, 2)
    for transition in stream(space, 2, 30, seed=8, interrupt_every=11):
        ref.add(*transition)
        ours.add(*transition)
    torch_dtype = getattr(th, half)
    for got_view, want_view in ((ours.observations, ref.observations), (ours.next_observations,
                                                                          ref.next_observations)):
        got, want = (got_view, want_view) if name == "dict" else ({"": got_view}, {"": want_view})
        for key in got:
            want_values = np.asarray(want[key][:30])
            if want_values.dtype.kind == "f":
                rounded = th.from_numpy(want_values.astype(np.float32)).to(torch_dtype).float().numpy()
                assert np.array_equal(np.asarray(got[key][:30]), rounded), key
            else:
                assert np.array_equal(np.asarray(got[key][:30]), want_values), key
    spec = RunSpec("sac", buffer_size=128, n_envs=2, storage=half, obs_space=ObsSpace.of(space),
                   action_space=ActionSpace.box(2), terminal_capacity=64)
    assert ours.memory_breakdown() == {f.name: f.bytes for f in footprint(spec).fields}
    with pytest.raises(PlannerError, match="give no decimals, bits or layout"):
        QuantizedReplayBuffer(16, space, ACTIONS, "cpu", dtype=half, decimals=2)


def test_float16_counts_values_beyond_its_range_as_saturated():
    ours = QuantizedRolloutBuffer(4, SPACES["box"], ACTIONS, "cpu", dtype="float16")
    ours.add(np.array([[1.0, 7e4, -1e5, 3.0, 65504.0]]), np.zeros((1, 2)), np.zeros(1), np.zeros(1),
             th.zeros(1, 1), th.zeros(1))
    assert ours.saturated == 2 and np.isinf(ours.stored_observations.arrays[None][0, 1:3]).all()


def test_a_rejected_transition_leaves_her_bookkeeping_as_it_was():
    import gymnasium
    import obs_envs  # noqa: F401  (registers ObsGoal-v0)
    from stable_baselines3.common.env_util import make_vec_env

    from validation.buffers import QuantizedHerReplayBuffer

    env = make_vec_env("ObsGoal-v0", n_envs=1)
    space = gymnasium.make("ObsGoal-v0").observation_space
    buf = QuantizedHerReplayBuffer(16, space, spaces.Box(-1, 1, (3,)), env, "cpu", decimals=2)
    rng = np.random.default_rng(0)
    obs = {key: rng.normal(size=(1, *sub.shape)) for key, sub in space.spaces.items()}
    for step in range(28):  # wraps: the next add overwrites a stored episode, which HER would invalidate
        done = np.array([step % 4 == 3])
        buf.add(obs, obs, np.zeros((1, 3)), np.zeros(1), done, [{}])
    assert buf.ep_length[buf.pos, 0] > 0
    before = {name: getattr(buf, name).copy() for name in ("ep_start", "ep_length", "_current_ep_start")}
    bad = {**obs, "observation": np.full((1, 6), np.nan)}
    with pytest.raises(NonFiniteError):
        buf.add(bad, obs, np.zeros((1, 3)), np.zeros(1), np.array([True]), [{}])
    assert buf.pos == 12 and buf.full
    assert all(np.array_equal(getattr(buf, name), value) for name, value in before.items())


@pytest.mark.parametrize("name", ["box", "dict"])
@pytest.mark.parametrize("n_envs", [1, 2])
def test_one_row_per_env_keeps_every_next_observation_aside(name, n_envs):
    """buffer_size // n_envs == 1 (SB3 takes it): the following row is the transition's own, so every next
    observation goes to the terminal store; each add() matches SB3's buffer of the same size."""
    space = SPACES[name]
    ref, ours = sb3_replay(space, n_envs, n_envs), QuantizedReplayBuffer(n_envs, space, ACTIONS, "cpu",
                                                                           n_envs=n_envs, decimals=DECIMALS)
    assert ours.buffer_size == 1
    assert ours.memory_bytes() == footprint(_run_spec(space, "sac", n_envs, n_envs)).buffer_bytes
    for transition in stream(space, n_envs, 12, seed=9, interrupt_every=5):
        ref.add(*transition)
        ours.add(*transition)
        assert_every_transition_matches(ours, ref, space, 1)
        want, got = sample_both(ref, ours, 4, seed=0)
        assert_same_observations(got.next_observations, want.next_observations, space)
    assert ours.terminal_evictions == 0
