"""No value ever wrong: a calibrated buffer returns, bit for bit, what the uniform buffer at its m and b returns,
on real MuJoCo streams with episode ends and on hypothesis-driven streams (time limits, interruptions, ring
wrap, n_envs > 1, Dict spaces, recalibrations)."""

import pickle
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from stable_baselines3.common.buffers import DictReplayBuffer, ReplayBuffer

from cython_core.layout import ENTRY_CODE_BITS, block_rows
from planner.obs_ranges import choose_ranges
from validation.buffers import QuantizedReplayBuffer, QuantizedRolloutBuffer
from validation.buffers.replay import FREE
from validation.scan import rollout

ACTIONS = spaces.Box(-1.0, 1.0, (2,), np.float32)


def bits(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).view(np.uint32)


@pytest.mark.parametrize("env_id", ["Ant-v5", "Hopper-v5"])
def test_episode_end_next_observations_come_back_exact_on_a_real_env(env_id):
    """Random actions on a real env: every episode end's next observation (the terminal store) decodes as the
    uniform buffer's, right after its add and at the end; with recalibration too."""
    ranges = choose_ranges(rollout(env_id, 100, seed=1), 2)  # narrow: the widths are chosen again at 1,000 rows
    env = gym.make(env_id)
    space, actions = env.observation_space, env.action_space
    uniform = QuantizedReplayBuffer(5_000, space, actions, "cpu", decimals=2)
    calibrated = [QuantizedReplayBuffer(5_000, space, actions, "cpu", obs_ranges=ranges, recalibrate=again)
                  for again in (False, True)]
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
                assert np.array_equal(bits(buf.next_observations[step]), want), (step, buf.drift.enabled)
            obs, _ = env.reset()
    assert ends >= 2 and calibrated[1].drift.events
    for buf in calibrated:
        assert np.array_equal(bits(buf.next_observations[:1_500]), bits(uniform.next_observations[:1_500]))
        assert np.array_equal(bits(buf.observations[:1_500]), bits(uniform.observations[:1_500]))


def test_no_side_table_starts_with_entries_and_an_escaped_episode_end_decodes_exact():
    """Every side table a calibrated buffer allocates, the eagerly written episode-end store's included, starts
    with no entry in any block; an episode end whose next observation escapes decodes as the uniform buffer's."""
    box = spaces.Box(-np.inf, np.inf, (3,), np.float64)
    narrow = choose_ranges(np.tile([0.5, 1.0, 2.0], (10, 1)), 2)  # three constant dimensions: 1 bit each
    narrow = replace(narrow, dims=tuple(replace(d, outside=0.1) for d in narrow.dims))  # pools allocated up front
    replay = QuantizedReplayBuffer(640, box, ACTIONS, "cpu", obs_ranges=narrow)
    rollout_buf = QuantizedRolloutBuffer(64, spaces.Dict({"a": box}), ACTIONS, "cpu", obs_ranges={"a": narrow})
    stores = [replay.stored_observations.arrays[None], replay.terminal_observations.arrays[None],
              rollout_buf.stored_observations.arrays["a"]]
    for rows in stores:
        assert rows.pool.size > 0 and rows.live == 0 and not rows.seg_len.any() and not rows.seg_cap.any()
    uniform = QuantizedReplayBuffer(640, box, ACTIONS, "cpu", decimals=2)
    for buf in (replay, uniform):
        buf.add(np.array([[0.5, 1.0, 2.0]]), np.array([[1.12, 1.0, 2.0]]), np.zeros((1, 2)), np.ones(1),
                np.ones(1), [{}])
    assert np.array_equal(bits(replay.next_observations[0]), bits(uniform.next_observations[0]))
    assert replay.next_observations[0].tolist() == [[1.1200000047683716, 1.0, 2.0]]
    assert replay.terminal_observations.arrays[None].live == 1


def test_the_calibrated_bits_benchmark_checks_episode_ends():
    """benchmarks/calibrated_bits.py: its random streams end episodes as the env does, and its lockstep feed
    counts an episode end whose next observation differs from the first buffer's."""
    from conftest import benchmark_module

    bench = benchmark_module("calibrated_bits")
    stream = bench.random_stream("Hopper-v5", 300, seed=0)
    assert stream["dones"].sum() >= 3 and stream["observations"].shape == (300, 11)
    ends = np.flatnonzero(stream["dones"])
    assert not np.array_equal(stream["next_observations"][ends[0]], stream["observations"][ends[0] + 1])
    box = spaces.Box(-np.inf, np.inf, (11,), np.float64)
    ranges = choose_ranges(stream["observations"][:100], 2)
    uniform, calibrated, coarser = (QuantizedReplayBuffer(300, box, ACTIONS, "cpu", **kwargs) for kwargs in
                                    ({"decimals": 2}, {"obs_ranges": ranges}, {"decimals": 1}))
    seconds, differing = bench.feed([uniform, calibrated, coarser], stream)
    assert differing[:2] == [0, 0] and differing[2] == stream["dones"].sum() and min(seconds) > 0


# -- the property: calibrated == uniform == SB3's values on the paper's grid, whatever the stream ----------------

CLAMP = 127.0
VIEWS = ("observations", "next_observations")
OUTLIERS = np.array([-300.0, -127.0, -126.995, -0.005, 0.125, 3.335, 126.994, 126.995, 127.0, 1e6])


@st.composite
def scenarios(draw):
    """A buffer configuration and a stream: its shape, its events' rates and what the ranges were scanned from."""
    n_envs = draw(st.integers(1, 3))
    dims = draw(st.lists(st.integers(1, 4), min_size=1, max_size=2))
    per_env = draw(st.integers(1, 12))
    recalibrate = draw(st.booleans())
    return {
        "n_envs": n_envs, "dims": dims, "dict": len(dims) > 1 or draw(st.booleans()),
        "discrete": draw(st.booleans()), "per_env": per_env,
        "terminal_capacity": draw(st.one_of(st.none(), st.integers(n_envs if per_env == 1 else 1, 3 * n_envs))),
        "handle_timeout_termination": draw(st.booleans()), "recalibrate": recalibrate,
        # enough rows for the first check of the widths (1,000 rows written) when recalibrating
        "steps": draw(st.integers(1_000 // n_envs + 1, 1_100 // n_envs) if recalibrate else st.integers(2, 60)),
        "p_terminated": draw(st.sampled_from([0.0, 0.05, 0.3])), "max_len": draw(st.integers(1, 12)),
        "p_interrupt": draw(st.sampled_from([0.0, 0.05])), "p_outlier": draw(st.sampled_from([0.0, 0.02])),
        "drift": draw(st.sampled_from([0.0, 0.01, 0.2])), "scanned": draw(st.integers(1, 20)),
        "outside": draw(st.sampled_from([0.0, 0.1, 0.7])), "seed": draw(st.integers(0, 2**16)),
    }


def make_stream(s):
    """VecEnv-like transitions (obs, next_obs, action, reward, done, infos): values on and off the grid, some
    constant dimensions, outliers beyond the clamp and on half steps, a drift; episode ends by termination and by
    time limit, and per-env interruptions (an observation that is not the previous next observation)."""
    rng = np.random.default_rng(s["seed"])
    n, keys = s["n_envs"], [f"k{i}" for i in range(len(s["dims"]))]
    scale = {key: rng.choice([0.0, 0.003, 0.3, 4.0], dim) for key, dim in zip(keys, s["dims"])}
    center = {key: rng.uniform(-5, 5, dim) for key, dim in zip(keys, s["dims"])}

    def observe(t, envs):
        obs = {}
        for key in keys:
            x = center[key] + s["drift"] * t + scale[key] * rng.normal(size=(envs, scale[key].size))
            outlier = rng.random(x.shape) < s["p_outlier"]
            obs[key] = np.where(outlier, rng.choice(OUTLIERS, x.shape), x)
        if s["discrete"]:
            obs["cell"] = rng.integers(0, 5, envs)
        return obs

    obs, length, out = observe(0, n), np.zeros(n, dtype=int), []
    for t in range(s["steps"]):
        interrupted = rng.random(n) < s["p_interrupt"]
        if interrupted.any():
            fresh = observe(t, n)
            obs = {key: np.where(interrupted.reshape(-1, *[1] * (v.ndim - 1)), fresh[key], v) for key, v in obs.items()}
            length[interrupted] = 0
        next_obs = observe(t + 1, n)
        length += 1
        terminated = rng.random(n) < s["p_terminated"]
        truncated = (length >= s["max_len"]) & ~terminated
        done = terminated | truncated
        out.append((obs, next_obs, rng.uniform(-1, 1, (n, 2)).astype(np.float32), rng.normal(size=n), done,
                    [{"TimeLimit.truncated": bool(flag)} for flag in truncated]))
        reset = observe(t + 1, n)
        obs = {key: np.where(done.reshape(-1, *[1] * (v.ndim - 1)), reset[key], v) for key, v in next_obs.items()}
        length[done] = 0
    return out


def space_of(s):
    entries = {f"k{i}": spaces.Box(-np.inf, np.inf, (dim,), np.float64) for i, dim in enumerate(s["dims"])}
    if s["discrete"]:
        entries["cell"] = spaces.Discrete(5)
    return spaces.Dict(entries) if s["dict"] else entries["k0"]


def as_space(s, obs):
    """A stream's observation dict as the space takes it (copies: SB3's Dict buffer reshapes in place)."""
    return {key: np.array(value) for key, value in obs.items()} if s["dict"] else np.array(obs["k0"])


def ranges_of(s, stream):
    """Ranges scanned from the stream's first observations (narrow: the rest drifts out of them), each dimension's
    scanned share outside set to ``outside`` (what sizes the exception tables up front)."""
    out = {}
    for i in range(len(s["dims"])):
        scan = np.concatenate([obs[f"k{i}"] for obs, *_ in stream[:s["scanned"]]])
        ranges = choose_ranges(scan, 2, CLAMP)
        out[f"k{i}"] = replace(ranges, dims=tuple(replace(d, outside=s["outside"]) for d in ranges.dims))
    return out if s["dict"] else out["k0"]


def expected(values):
    """What every quantized buffer must return for float ``values`` at m = 2: rint(clip(x, -b, b) * 100) / 100."""
    return (np.rint(np.clip(values, -CLAMP, CLAMP) * 100.0).astype(np.int64) * (1 / 100.0)).astype(np.float32)


def unwritten(buf):
    """(buffer_size, n_envs): the transitions whose next observation lies in a row no ``add()`` has written yet:
    the newest, before the ring wraps, when it ended an episode that the terminal store did not keep (a
    terminated transition, masked by done in every target). Such a row holds zero words, which each layout
    decodes its own way: no stored value."""
    mask = np.zeros((buf.buffer_size, buf.n_envs), dtype=bool)
    if not buf.full and buf.pos:
        last = buf.pos - 1
        mask[last] = (buf.dones[last] != 0) & (buf.terminal_slot[last * buf.n_envs:buf.pos * buf.n_envs] == FREE)
    return mask


def columns(buf, view):
    """The buffer's observations (``view``: observations or next_observations) per key, as numpy arrays; ours with
    the next observations of :func:`unwritten` transitions zeroed."""
    values = getattr(buf, view)
    size = buf.buffer_size if buf.full else buf.pos
    out = {key: np.asarray(v[:size]) for key, v in (values.items() if isinstance(values, dict) else [(None, values)])}
    if view == "next_observations" and isinstance(buf, QuantizedReplayBuffer):
        for value in out.values():
            value[unwritten(buf)[:size]] = 0
    return out


def assert_same(got, want, what):
    """Per key: the same dtype, shape and bits."""
    for key in want:
        a, b = np.asarray(got[key]), np.asarray(want[key])
        assert a.dtype == b.dtype and a.shape == b.shape, (what, key, a.dtype, b.dtype, a.shape, b.shape)
        if a.dtype == np.float32:
            a, b = a.view(np.uint32), b.view(np.uint32)
        bad = np.argwhere(a != b)
        assert not bad.size, (what, key, bad[:3].tolist(), np.asarray(got[key])[tuple(bad[0])],
                              np.asarray(want[key])[tuple(bad[0])])


def sampled(buf, batch_inds, seed):
    """(observations, next_observations) per key of ``_get_samples(batch_inds)``, env indices drawn from ``seed``."""
    np.random.seed(seed)
    samples = buf._get_samples(batch_inds)
    return [{key: value.numpy() for key, value in (part.items() if isinstance(part, dict) else [(None, part)])}
            for part in (samples.observations, samples.next_observations)]


def assert_side_table_is_exact(buf):
    """Each escape-coded store's side table holds exactly the codes its rows escape: as many entries as escapes,
    each row's in its block's segment, in dimension order."""
    for store in (buf.stored_observations, buf.terminal_observations):
        for rows in store.arrays.values():
            if hasattr(rows, "pool"):
                codes = rows.codes(np.arange(rows.n_rows))
                escaped = ~rows.layout.holds(codes)
                assert int(escaped.sum()) == rows.live == int(rows.seg_len.sum())
                block = block_rows(rows.layout.dim)
                for b in np.flatnonzero(rows.seg_len).tolist():
                    segment = rows.pool[rows.seg_start[b]:rows.seg_start[b] + rows.seg_len[b]].astype(np.int64)
                    for within in np.unique(segment >> ENTRY_CODE_BITS).tolist():
                        mine = (segment[segment >> ENTRY_CODE_BITS == within] & (2**ENTRY_CODE_BITS - 1))
                        row = b * block + within
                        assert (mine - rows.layout.top).tolist() == codes[row][escaped[row]].tolist()


@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_calibrated_and_uniform_buffers_hold_the_same_values_bit_for_bit(s):
    """After every add: each transition's observation and next observation (SB3's layout, and ``_get_samples`` of
    every transition) are the uniform buffer's bit for bit, and SB3's own values on the grid while every next
    observation is kept; at the end no table holds entries past its used part, and a saved copy samples alike."""
    stream = make_stream(s)
    space, n = space_of(s), s["n_envs"]
    size = s["per_env"] * n
    common = {"n_envs": n, "handle_timeout_termination": s["handle_timeout_termination"],
              "terminal_capacity": s["terminal_capacity"]}
    uniform = QuantizedReplayBuffer(size, space, ACTIONS, "cpu", decimals=2, **common)
    calibrated = QuantizedReplayBuffer(size, space, ACTIONS, "cpu", obs_ranges=ranges_of(s, stream),
                                       recalibrate=s["recalibrate"], **common)
    sb3 = (DictReplayBuffer if s["dict"] else ReplayBuffer)(
        size, space, ACTIONS, "cpu", n_envs=n, handle_timeout_termination=s["handle_timeout_termination"])
    for step, (obs, next_obs, action, reward, done, infos) in enumerate(stream):
        for buf in (uniform, calibrated, sb3):
            buf.add(as_space(s, obs), as_space(s, next_obs), action, reward, done, infos)
        for view in VIEWS:
            want = columns(uniform, view)
            assert_same(columns(calibrated, view), want, (step, view))
            if not uniform.terminal_evictions:  # every next observation kept: SB3's own values, on the grid
                ref = columns(sb3, view)
                if uniform.full:  # the row at pos holds the newest next observation, no transition's observation
                    want = {key: np.delete(v, uniform.pos, axis=0) for key, v in want.items()}
                    ref = {key: np.delete(v, uniform.pos, axis=0) for key, v in ref.items()}
                assert_same(want, {key: expected(ref[key]) if ref[key].dtype == np.float64 else ref[key]
                                   for key in want}, (step, view, "sb3"))
        filled = uniform.buffer_size if uniform.full else uniform.pos
        assert np.array_equal(unwritten(calibrated), unwritten(uniform))
        every = np.repeat(np.flatnonzero(~unwritten(uniform).any(axis=1)[:filled]), 2)
        for got, want, what in zip(sampled(calibrated, every, step), sampled(uniform, every, step), VIEWS):
            assert_same(got, want, (step, "sampled", what))
    event(f"recalibrations: {min(len(calibrated.drift.events), 2)}")
    event(f"terminal evictions: {bool(uniform.terminal_evictions)}")
    assert calibrated.terminal_evictions == uniform.terminal_evictions
    assert calibrated.saturated == uniform.saturated
    assert_side_table_is_exact(calibrated)
    for got, want in zip(sampled(pickle.loads(pickle.dumps(calibrated)), every, 0), sampled(uniform, every, 0)):
        assert_same(got, want, "saved and loaded")
