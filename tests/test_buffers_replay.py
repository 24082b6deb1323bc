"""QuantizedReplayBuffer against SB3's float64 ReplayBuffer fed the same transitions, memory, pickling, errors."""

import pickle

import memray
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.buffers import NStepReplayBuffer, ReplayBuffer

from cython_core import CodeLayout
from planner.errors import PlannerError
from planner.footprint import RunSpec, footprint
from planner.quantization import Quantization
from validation.buffers import QuantizedReplayBuffer, QuantizedRolloutBuffer, uniform_layout
from validation.buffers.replay import FREE

ACTION_DIM = 3


def _spaces(obs_shape):
    return (spaces.Box(-np.inf, np.inf, obs_shape, np.float64),
            spaces.Box(-1.0, 1.0, (ACTION_DIM,), np.float32))


def feed(buffers, n_envs, steps, obs_shape, seed=0, p_done=0.05, max_len=9):
    """VecEnv-like stream: obs_{t+1} = next_obs_t unless the episode ended (done or time limit), then a reset obs.
    Values ~ N(0, 60): some exceed the clamp of 127."""
    rng = np.random.default_rng(seed)
    obs = rng.normal(0, 60, (n_envs, *obs_shape))
    length = np.zeros(n_envs, dtype=int)
    for _ in range(steps):
        next_obs = rng.normal(0, 60, (n_envs, *obs_shape))
        action = rng.uniform(-1, 1, (n_envs, ACTION_DIM)).astype(np.float32)
        reward = rng.normal(size=n_envs).astype(np.float32)
        length += 1
        terminated = rng.random(n_envs) < p_done
        truncated = (length >= max_len) & ~terminated
        done = terminated | truncated
        infos = [{"TimeLimit.truncated": bool(t)} for t in truncated]
        for buf in buffers:
            buf.add(obs.copy(), next_obs.copy(), action, reward, done, infos)
        obs = np.where(done.reshape(-1, *([1] * len(obs_shape))), rng.normal(0, 60, obs.shape), next_obs)
        length[done] = 0
    return buffers


def valid_steps(buf):
    """Every step index our buffer may sample (a full buffer skips ``pos``)."""
    if buf.full:
        return (np.arange(1, buf.buffer_size) + buf.pos) % buf.buffer_size
    return np.arange(buf.pos)


def samples_of(buf, steps, seed, env=None):
    np.random.seed(seed)  # both buffers draw their env indices first, from the global generator
    return buf._get_samples(steps, env=env)


def assert_within_half_step(decoded, original, spec):
    expected = np.clip(original, spec.lo[0], spec.hi[0])
    half_step = 0.5 / spec.scale[0]
    err = np.abs(decoded.numpy().astype(np.float64) - expected)
    bound = half_step * (1 + 1e-9) + 2 * np.finfo(np.float32).eps * np.abs(expected)  # + the float32 cast
    assert (err <= bound).all(), (err - bound).max()


@pytest.mark.parametrize("n_envs", [1, 4])
@pytest.mark.parametrize("obs_shape", [(7,), (2, 3)])
def test_samples_match_float64_reference_across_episode_ends_timeouts_and_wraparound(n_envs, obs_shape):
    obs_space, act_space = _spaces(obs_shape)
    size = 40 * n_envs
    ref = ReplayBuffer(size, obs_space, act_space, "cpu", n_envs=n_envs)
    ours = QuantizedReplayBuffer(size, obs_space, act_space, "cpu", n_envs=n_envs, decimals=2, clamp=127,
                                 terminal_capacity=40 * n_envs)
    feed([ref, ours], n_envs, steps=97, obs_shape=obs_shape)  # wraps around twice
    assert ours.full and ours.terminal_evictions == 0
    assert ours.saturated > 0  # N(0, 60) exceeds 127 now and then
    steps = np.repeat(valid_steps(ours), 4)
    got, want = samples_of(ours, steps, 1), samples_of(ref, steps, 1)
    ends = ref.dones[steps, np.random.RandomState(1).randint(0, n_envs, steps.size)]
    assert 0 < ends.sum() < ends.size  # the batch holds episode ends and ordinary steps
    assert_within_half_step(got.observations, want.observations.numpy(), ours.code_layout)
    assert_within_half_step(got.next_observations, want.next_observations.numpy(), ours.code_layout)
    assert got.observations.shape == want.observations.shape and got.observations.dtype.is_floating_point
    for name in ("actions", "rewards", "dones"):
        assert getattr(got, name).dtype == getattr(want, name).dtype
        assert getattr(got, name).shape == getattr(want, name).shape
        assert np.array_equal(getattr(got, name).numpy(), getattr(want, name).numpy()), name


def test_timeouts_are_not_dones_but_keep_their_terminal_next_observation():
    obs_space, act_space = _spaces((5,))
    ref = ReplayBuffer(200, obs_space, act_space, "cpu")
    ours = QuantizedReplayBuffer(200, obs_space, act_space, "cpu", decimals=1, terminal_capacity=200)
    feed([ref, ours], 1, steps=150, obs_shape=(5,), p_done=0.0, max_len=6)  # only time limits end episodes
    steps = np.flatnonzero(ref.timeouts[:150, 0])
    got, want = samples_of(ours, steps, 3), samples_of(ref, steps, 3)
    assert steps.size == 25 and float(got.dones.sum()) == 0.0
    assert_within_half_step(got.next_observations, want.next_observations.numpy(), ours.code_layout)


def test_full_buffer_never_samples_the_overwritten_row():
    obs_space, act_space = _spaces((4,))
    ours = feed([QuantizedReplayBuffer(30, obs_space, act_space, "cpu")], 1, steps=47, obs_shape=(4,))[0]
    sampled = []
    get_samples = ours._get_samples
    ours._get_samples = lambda inds, env=None: sampled.append(inds.copy()) or get_samples(inds, env)
    np.random.seed(0)
    for _ in range(50):
        assert ours.sample(64).observations.shape == (64, 4)
    drawn = set(np.concatenate(sampled).tolist())
    assert ours.pos not in drawn and drawn == set(range(30)) - {ours.pos}


def test_time_limits_evicted_within_one_add_are_counted():
    obs_space, act_space = _spaces((3,))
    ours = QuantizedReplayBuffer(8, obs_space, act_space, "cpu", n_envs=4, terminal_capacity=1)
    obs = np.zeros((4, 3))
    ours.add(obs, obs + 1, np.zeros((4, ACTION_DIM)), np.zeros(4), np.ones(4), [{"TimeLimit.truncated": True}] * 4)
    assert ours.terminal_evictions == ours.timeout_evictions == 3
    assert (ours.terminal_slot[:4] != FREE).sum() == 1


def test_default_terminal_store_keeps_time_limits_over_terminations():
    """Terminated transitions' next observations are masked by done: with the default ring (rows / 64 slots)
    they make room for time limits, whose next observations SAC/TD3 bootstrap from."""
    obs_space, act_space = _spaces((5,))
    ref = ReplayBuffer(1280, obs_space, act_space, "cpu")
    ours = QuantizedReplayBuffer(1280, obs_space, act_space, "cpu", decimals=2)
    feed([ref, ours], 1, steps=1280, obs_shape=(5,), p_done=0.3, max_len=12)
    timeouts = np.flatnonzero(ref.timeouts[:, 0])
    capacity = ours.quantization_stats()["terminal_capacity"]
    assert capacity == 20 and 0 < timeouts.size <= capacity
    assert ours.terminal_evictions > 100 and ours.timeout_evictions == 0  # many terminations gave way
    assert (ours.terminal_slot[timeouts] != FREE).all()
    steps = timeouts[timeouts != ours.pos]
    got, want = samples_of(ours, steps, 2), samples_of(ref, steps, 2)
    assert_within_half_step(got.next_observations, want.next_observations.numpy(), ours.code_layout)


def test_evicted_terminal_falls_back_to_the_following_row_and_is_counted():
    obs_space, act_space = _spaces((6,))
    ref = ReplayBuffer(100, obs_space, act_space, "cpu")
    ours = QuantizedReplayBuffer(100, obs_space, act_space, "cpu", terminal_capacity=2)
    feed([ref, ours], 1, steps=80, obs_shape=(6,), p_done=0.0, max_len=4)  # 20 episode ends, 2 slots
    assert ours.terminal_evictions == ours.timeout_evictions == 18
    assert ours.quantization_stats()["terminal_evictions"] == 18
    steps = valid_steps(ours)
    got, want = samples_of(ours, steps, 0), samples_of(ref, steps, 0)
    evicted = (ref.dones[steps, 0] > 0) & (ours.terminal_slot[steps] == FREE)
    assert evicted.sum() == 18
    following = samples_of(ours, steps + 1, 0).observations.numpy()
    assert np.array_equal(got.next_observations.numpy()[evicted], following[evicted])
    assert_within_half_step(got.next_observations[~evicted], want.next_observations.numpy()[~evicted], ours.code_layout)


@pytest.mark.parametrize("dim, buffer_size, n_envs, decimals, clamp, bits", [
    (17, 1000, 1, 2, 127.0, None),
    (348, 200_000, 4, 2, 127.0, None),
    (11, 4097, 4, 1, 127.0, None),
    (105, 3000, 2, 3, 10.0, 20),
    (1, 10, 1, 0, 1.0, 32),
    (376, 65_537, 3, 1, 100.0, None),
])
def test_memory_equals_planner_packed_prediction_and_real_allocation(dim, buffer_size, n_envs, decimals, clamp, bits):
    obs_space, act_space = _spaces((dim,))
    buf = QuantizedReplayBuffer(buffer_size, obs_space, act_space, "cpu", n_envs=n_envs, decimals=decimals,
                                clamp=clamp, bits=bits)
    quant = Quantization.create(decimals, clamp, bits=buf.code_layout.bits)
    predicted = footprint(RunSpec("sac", dim, ACTION_DIM, buffer_size, n_envs, storage="packed", quant=quant))
    assert buf.memory_breakdown() == {f.name: f.bytes for f in predicted.fields}
    assert buf.memory_bytes() == predicted.buffer_bytes
    arrays = [v for v in vars(buf).values() if isinstance(v, np.ndarray)]
    arrays += [buf.stored_observations.arrays[None].storage, buf.terminal_observations.arrays[None].storage]
    assert sum(a.nbytes for a in arrays) == buf.memory_bytes()


def test_constructor_allocates_no_float64_observation_array(tmp_path):
    obs_space, act_space = _spaces((348,))
    path = tmp_path / "alloc.bin"
    with memray.Tracker(path):
        buf = QuantizedReplayBuffer(1_000_000, obs_space, act_space, "cpu")
    peak = memray.FileReader(path).metadata.peak_memory
    # SB3 would allocate 2 x 2.78 GB of float64 observations; we allocate the packed rows (about 0.67 GB)
    assert buf.memory_bytes() <= peak <= buf.memory_bytes() + 2 * 2**20, (peak, buf.memory_bytes())


def test_pickle_round_trip_loses_nothing():
    obs_space, act_space = _spaces((9,))
    buf = feed([QuantizedReplayBuffer(60, obs_space, act_space, "cpu", n_envs=2, terminal_capacity=3)], 2,
               steps=45, obs_shape=(9,))[0]
    copy = pickle.loads(pickle.dumps(buf))
    for name in ("pos", "full", "terminal_cursor", "terminal_evictions", "saturated", "stored_values", "code_layout"):
        assert getattr(copy, name) == getattr(buf, name), name
    for name in ("actions", "rewards", "dones", "timeouts", "terminal_slot", "terminal_owner"):
        assert np.array_equal(getattr(copy, name), getattr(buf, name)), name
    assert np.array_equal(copy.stored_observations.arrays[None].storage, buf.stored_observations.arrays[None].storage)
    assert np.array_equal(copy.terminal_observations.arrays[None].storage,
                          buf.terminal_observations.arrays[None].storage)
    np.random.seed(5)
    a = buf.sample(32)
    np.random.seed(5)
    b = copy.sample(32)
    assert all(np.array_equal(x.numpy(), y.numpy()) for x, y in zip(a[:5], b[:5]))


def test_per_dimension_layout_is_used_as_given():
    obs_space, act_space = _spaces((2,))
    layout = CodeLayout.per_dim(lo=[-1.0, 0.0], hi=[1.0, 1000.0], scale=[100.0, 1.0])
    buf = QuantizedReplayBuffer(10, obs_space, act_space, "cpu", layout=layout)
    buf.add(np.array([[0.123, 2000.4]]), np.array([[-5.0, 12.6]]), np.zeros((1, 3)), np.zeros(1), np.zeros(1), [{}])
    got = buf._get_samples(np.array([0]))
    assert got.observations.numpy().tolist() == [[np.float32(0.12), 1000.0]]
    assert got.next_observations.numpy().tolist() == [[-1.0, 13.0]]
    assert buf.saturated == 1  # 2000.4 > 1000 (the next observation's -5.0 is counted when it is stored as obs)


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_steps=0), "n_steps"),
    (dict(decimals=2, layout=CodeLayout.uniform(4, decimals=2, clamp=127.0)), "not both"),
    (dict(decimals=40), "decimals"),
    (dict(buffer_size=3, n_envs=2, terminal_capacity=1), "terminal_capacity must be >= n_envs"),
])
def test_unsupported_options_raise_one_clear_error(kwargs, message):
    obs_space, act_space = _spaces((4,))
    args = dict(buffer_size=100, observation_space=obs_space, action_space=act_space, device="cpu")
    args.update(kwargs)
    with pytest.raises(PlannerError, match=message):
        QuantizedReplayBuffer(**args)


BAD_QUANTIZATIONS = [(-1, 127.0, None), (1.5, 127.0, None), (16, 127.0, None), (True, 127.0, None),
                     ("2", 127.0, None), (2, 0, None), (2, -3.0, None), (2, float("inf"), None),
                     (2, float("nan"), None), (2, True, None), (2, "1", None), (2, 1e-9, None), (1, 0.09, None),
                     (2, 1e308, None), (9, 1e6, None), (2, 127.0, 0), (2, 127.0, 40), (2, 127.0, 14),
                     (2, 127.0, 15.0)]


@pytest.mark.parametrize("decimals, clamp, bits", BAD_QUANTIZATIONS)
@pytest.mark.parametrize("make", [
    lambda space, **kw: QuantizedReplayBuffer(8, space, _spaces((4,))[1], "cpu", **kw),
    lambda space, **kw: QuantizedRolloutBuffer(8, space, _spaces((4,))[1], "cpu", **kw),
    lambda space, **kw: QuantizedReplayBuffer(8, spaces.Dict({"pos": space}), _spaces((4,))[1], "cpu",
                                              **{name: {"pos": value} for name, value in kw.items()}),
    uniform_layout,
], ids=["replay", "rollout", "dict-entry", "wrapper-layout"])
def test_a_bad_m_b_or_width_is_the_planners_error_word_for_word(make, decimals, clamp, bits):
    with pytest.raises(PlannerError) as planner_error:
        Quantization.create(decimals, clamp, bits)
    with pytest.raises(PlannerError) as buffer_error:
        make(_spaces((4,))[0], decimals=decimals, clamp=clamp, bits=bits)
    got, want = buffer_error.value, planner_error.value
    assert (type(got), str(got), got.params) == (type(want), str(want), want.params)


def test_numpy_numbers_are_good_quantization_values():
    buf = QuantizedReplayBuffer(8, *_spaces((4,)), "cpu", decimals=np.int64(1), clamp=np.float32(10), bits=np.int32(9))
    assert (buf.code_layout.bits, buf.code_layout.scale[0], buf.code_layout.hi[0]) == (9, 10.0, 10.0)


def test_vecnormalize_normalizes_decoded_observations_and_rewards_like_sb3():
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    venv = VecNormalize(make_vec_env("Pendulum-v1", n_envs=2, seed=0))
    venv.reset()
    for _ in range(20):  # running statistics that are not the identity
        venv.step(np.array([venv.action_space.sample() for _ in range(2)]))
    obs_space, act_space = venv.observation_space, spaces.Box(-1, 1, (ACTION_DIM,), np.float32)
    ref = ReplayBuffer(40, obs_space, act_space, "cpu", n_envs=2)
    ours = QuantizedReplayBuffer(40, obs_space, act_space, "cpu", n_envs=2, decimals=2, terminal_capacity=40)
    feed([ref, ours], 2, steps=15, obs_shape=(3,), p_done=0.1)
    steps = valid_steps(ours)
    raw = samples_of(ours, steps, 4)
    got, want = samples_of(ours, steps, 4, env=venv), samples_of(ref, steps, 4, env=venv)
    for name in ("observations", "next_observations"):
        expected = venv.normalize_obs(getattr(raw, name).numpy())
        assert np.array_equal(getattr(got, name).numpy(), expected) and getattr(got, name).dtype == th.float32
    assert np.array_equal(got.rewards.numpy(), want.rewards.numpy()) and not np.array_equal(got.rewards, raw.rewards)


@pytest.mark.parametrize("n_envs", [1, 4])
def test_n_step_returns_match_sb3_nstep_replay_buffer(n_envs):
    obs_space, act_space = _spaces((5,))
    ref = NStepReplayBuffer(30 * n_envs, obs_space, act_space, "cpu", n_envs=n_envs, n_steps=3, gamma=0.9)
    ours = QuantizedReplayBuffer(30 * n_envs, obs_space, act_space, "cpu", n_envs=n_envs, n_steps=3, gamma=0.9,
                                 terminal_capacity=30 * n_envs)
    feed([ref, ours], n_envs, steps=71, obs_shape=(5,), p_done=0.1, max_len=7)
    steps = np.repeat(valid_steps(ours), 3)
    got, want = samples_of(ours, steps, 2), samples_of(ref, steps, 2)
    assert_within_half_step(got.observations, want.observations.numpy(), ours.code_layout)
    assert_within_half_step(got.next_observations, want.next_observations.numpy(), ours.code_layout)
    assert len(np.unique(want.discounts.numpy())) == 3  # windows cut short by episode ends and full windows
    for name in ("actions", "rewards", "dones", "discounts"):
        assert getattr(got, name).dtype == getattr(want, name).dtype, name
        assert np.array_equal(getattr(got, name).numpy(), getattr(want, name).numpy()), name


def test_reset_frees_the_terminal_store():
    obs_space, act_space = _spaces((4,))
    ref = ReplayBuffer(50, obs_space, act_space, "cpu")
    ours = QuantizedReplayBuffer(50, obs_space, act_space, "cpu", terminal_capacity=10)
    feed([ours], 1, steps=40, obs_shape=(4,), p_done=0.0, max_len=4, seed=1)
    ours.reset()
    assert ours.size() == 0 and (ours.terminal_owner == FREE).all() and (ours.terminal_slot == FREE).all()
    evictions = ours.terminal_evictions
    feed([ref, ours], 1, steps=40, obs_shape=(4,), p_done=0.0, max_len=4, seed=2)
    assert ours.terminal_evictions == evictions  # 10 episode ends fit the 10 freed slots
    steps = valid_steps(ours)
    got, want = samples_of(ours, steps, 0), samples_of(ref, steps, 0)
    assert_within_half_step(got.next_observations, want.next_observations.numpy(), ours.code_layout)


@pytest.mark.parametrize("act_space, action_dim, action_dtype", [
    (spaces.Box(-1, 1, (3,), np.float64), 3, "float64"), (spaces.Discrete(5), 1, "int64")])
def test_memory_equals_planner_for_other_action_spaces(act_space, action_dim, action_dtype):
    """SB3's replay buffer casts float64 actions to float32 and keeps integer ones; so does the planner."""
    obs_space = spaces.Box(-np.inf, np.inf, (11,), np.float64)
    buf = QuantizedReplayBuffer(1000, obs_space, act_space, "cpu", decimals=2)
    spec = RunSpec("sac", 11, action_dim, 1000, storage="packed", quant=Quantization.create(2, 127.0),
                   action_dtype=action_dtype)
    assert buf.memory_breakdown() == {f.name: f.bytes for f in footprint(spec).fields}
    assert buf.actions.dtype == np.dtype("float32" if action_dtype == "float64" else action_dtype)


def feed_interrupted(buffers, n_envs, chunks, steps, obs_shape, seed=0):
    """``chunks`` streams one after another, each starting from a fresh observation although the last
    transition of the one before did not end an episode (a second ``learn()``, a loaded buffer, a dataset)."""
    for chunk in range(chunks):
        feed(buffers, n_envs, steps=steps, obs_shape=obs_shape, seed=seed + chunk, p_done=0.1)


@pytest.mark.parametrize("n_envs", [1, 3])
def test_an_interrupted_stream_keeps_every_next_observation(n_envs):
    obs_space, act_space = _spaces((6,))
    ref = ReplayBuffer(200 * n_envs, obs_space, act_space, "cpu", n_envs=n_envs)
    ours = QuantizedReplayBuffer(200 * n_envs, obs_space, act_space, "cpu", n_envs=n_envs, decimals=2,
                                 terminal_capacity=200 * n_envs)
    feed_interrupted([ref, ours], n_envs, chunks=4, steps=23, obs_shape=(6,))
    assert not ref.dones[22, :].all()  # some chunk ends mid-episode: its next observation is not the next obs
    steps = valid_steps(ours)
    got, want = samples_of(ours, np.repeat(steps, 3), 2), samples_of(ref, np.repeat(steps, 3), 2)
    assert_within_half_step(got.observations, want.observations.numpy(), ours.code_layout)
    assert_within_half_step(got.next_observations, want.next_observations.numpy(), ours.code_layout)
    assert ours.terminal_evictions == 0


def test_sac_learning_twice_samples_the_next_observations_sb3_samples():
    from stable_baselines3 import SAC

    models = [SAC("MlpPolicy", "Pendulum-v1", buffer_size=500, learning_starts=10_000, seed=3, device="cpu",
                  **kwargs) for kwargs in ({}, dict(replay_buffer_class=QuantizedReplayBuffer,
                                                     replay_buffer_kwargs=dict(decimals=2)))]
    for model in models:
        model.learn(57)  # stops mid-episode (Pendulum's episodes last 200 steps)
        model.learn(41)  # resets the env: the first observation is not the last transition's next one
    ref, ours = models[0].replay_buffer, models[1].replay_buffer
    steps = valid_steps(ours)
    assert steps.size == 98 and not ref.dones[56, 0]
    got, want = samples_of(ours, steps, 4), samples_of(ref, steps, 4)
    assert_within_half_step(got.next_observations, want.next_observations.numpy().astype(np.float64),
                            ours.code_layout)


def test_learning_after_load_replay_buffer_samples_the_next_observations_sb3_samples(tmp_path):
    """Each buffer is saved mid-episode and loaded into a fresh model, which learns on (its env starts anew)."""
    from stable_baselines3 import SAC

    kwargs = ({}, dict(replay_buffer_class=QuantizedReplayBuffer, replay_buffer_kwargs=dict(decimals=2)))
    buffers = []
    for index, extra in enumerate(kwargs):
        model = SAC("MlpPolicy", "Pendulum-v1", buffer_size=500, learning_starts=10_000, seed=3, device="cpu", **extra)
        model.learn(57)
        model.save_replay_buffer(tmp_path / f"rb{index}.pkl")
        fresh = SAC("MlpPolicy", "Pendulum-v1", buffer_size=500, learning_starts=10_000, seed=4, device="cpu", **extra)
        fresh.load_replay_buffer(tmp_path / f"rb{index}.pkl")
        fresh.learn(41, reset_num_timesteps=False)
        buffers.append(fresh.replay_buffer)
    ref, ours = buffers
    assert isinstance(ours, QuantizedReplayBuffer) and ours.pos == ref.pos == 98 and not ref.dones[56, 0]
    steps = valid_steps(ours)
    got, want = samples_of(ours, steps, 4), samples_of(ref, steps, 4)
    assert_within_half_step(got.observations, want.observations.numpy().astype(np.float64), ours.code_layout)
    assert_within_half_step(got.next_observations, want.next_observations.numpy().astype(np.float64),
                            ours.code_layout)
