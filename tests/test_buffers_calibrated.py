"""Calibrated buffers (``obs_ranges=``): every value bit for bit what the uniform packing at the spec's m keeps,
memory equal to the planner's ``calibrated`` prediction, the side table's growth, the widths chosen again as the
rows fill."""

import pickle
import warnings

import numpy as np
import pytest
import yaml
from gymnasium import spaces
from test_buffers_spaces import ACTIONS, stream

from planner.errors import PlannerError
from planner.footprint import RunSpec, footprint
from planner.obs_ranges import choose_ranges
from planner.quantization import Quantization
from validation.buffers import QuantizedReplayBuffer, QuantizedRolloutBuffer
from validation.scan import rollout

ENV = "Walker2d-v5"


@pytest.fixture(scope="module")
def walker():
    """Real Walker2d-v5 observations (random actions) and the spec scanned from their first 1,000."""
    observations = rollout(ENV, 3_000, seed=0)
    return observations, choose_ranges(observations[:1_000], 2, source={"env": ENV})


def with_outliers(observations, seed=1, share=0.002):
    """A copy with injected outliers: values far outside every calibrated range, within and beyond the clamp."""
    rng = np.random.default_rng(seed)
    x = observations.copy()
    mask = rng.random(x.shape) < share
    x[mask] = rng.choice([-126.99, -80.5, 55.555, 126.994, 127.0, 300.0, -1e6], mask.sum())
    return x


def feed(buf, observations, n_envs=1, episode=200):
    """The observations as a stream of transitions, episodes of ``episode`` steps ending by time limit."""
    rows = observations.reshape(-1, n_envs, observations.shape[1])
    for t in range(rows.shape[0] - 1):
        end = (t + 1) % episode == 0
        buf.add(rows[t], rows[t + 1], np.zeros((n_envs, 2), np.float32), np.ones(n_envs, np.float32),
                np.zeros(n_envs), [{"TimeLimit.truncated": end}] * n_envs)


def decoded(buf):
    size = buf.buffer_size if buf.full else buf.pos
    return np.asarray(buf.observations[:size]), np.asarray(buf.next_observations[:size])


def space_of(dim):
    return spaces.Box(-np.inf, np.inf, (dim,), np.float64)


def test_every_value_a_calibrated_buffer_returns_is_the_uniform_buffers_bit_for_bit(walker):
    observations, spec = walker
    x = with_outliers(observations)
    uniform = QuantizedReplayBuffer(2_000, space_of(17), ACTIONS, "cpu", decimals=2)
    calibrated = QuantizedReplayBuffer(2_000, space_of(17), ACTIONS, "cpu", obs_ranges=spec)
    for buf in (uniform, calibrated):
        feed(buf, x)  # 2,999 transitions into 2,000 rows: the ring wraps
    stats = calibrated.quantization_stats()["observation"]
    assert stats["entries_live"] > 10  # the outliers (and what the rows' widths leave out)
    for got, want in zip(decoded(calibrated), decoded(uniform)):
        assert got.dtype == want.dtype == np.float32
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    np.random.seed(3)
    a = uniform.sample(256)
    np.random.seed(3)
    b = calibrated.sample(256)
    assert np.array_equal(a.observations.numpy().view(np.uint32), b.observations.numpy().view(np.uint32))
    assert np.array_equal(a.next_observations.numpy().view(np.uint32), b.next_observations.numpy().view(np.uint32))
    assert calibrated.saturated == uniform.saturated > 0


def _run_spec(spec, algo, size, n_envs=1):
    return RunSpec(algo, spec.dim, 2, buffer_size=size, n_envs=n_envs, storage="calibrated",
                   quant=Quantization.create(spec.decimals, spec.clamp), obs_ranges=spec)


@pytest.mark.parametrize("n_envs", [1, 3])
def test_memory_equals_the_planners_calibrated_prediction(walker, n_envs):
    _, spec = walker
    replay = QuantizedReplayBuffer(3_000, space_of(17), ACTIONS, "cpu", n_envs=n_envs, obs_ranges=spec)
    predicted = footprint(_run_spec(spec, "sac", 3_000, n_envs))
    assert replay.memory_breakdown() == {f.name: f.bytes for f in predicted.fields}
    assert replay.memory_bytes() == predicted.buffer_bytes
    rollout_buf = QuantizedRolloutBuffer(512, space_of(17), ACTIONS, "cpu", n_envs=n_envs, obs_ranges=spec)
    predicted = footprint(_run_spec(spec, "ppo", 512, n_envs))
    assert rollout_buf.memory_breakdown() == {f.name: f.bytes for f in predicted.fields}


def test_the_side_table_grows_past_the_prediction_and_says_so(walker):
    observations, spec = walker
    buf = QuantizedReplayBuffer(3_000, space_of(17), ACTIONS, "cpu", obs_ranges=spec, recalibrate=False)
    predicted = footprint(_run_spec(spec, "sac", 3_000)).buffer_bytes
    feed(buf, with_outliers(observations, share=0.05))  # 25x the scanned rate
    stats = buf.quantization_stats()["observation"]
    assert stats["entries_live"] > stats["entries_allocated"] * 0.5
    assert stats["entries_allocated"] > spec.exception_capacity(3_000)
    assert buf.memory_breakdown()["observations.exceptions"] == 4 * buf.stored_observations.arrays[None].pool.size
    assert stats["bits_per_value_all_in"] > stats["bits_per_value"]
    with pytest.warns(UserWarning, match="side table of observation grew past the ranges' expected rate"):
        assert buf.memory_bytes() > predicted


def test_the_widths_are_chosen_again_from_the_rows_and_every_value_kept(walker, caplog):
    """Dimension 8 drifts far outside its scanned range: the check after 2,000 rows re-packs with widths that cost
    fewer bits per value than keeping the scanned ones (whose escapes pile up), every value as before."""
    observations, spec = walker
    x = observations.copy()
    x[1_500:, 8] += 40.0
    uniform = QuantizedReplayBuffer(3_000, space_of(17), ACTIONS, "cpu", decimals=2)
    keep = QuantizedReplayBuffer(3_000, space_of(17), ACTIONS, "cpu", obs_ranges=spec, recalibrate=False)
    recal = QuantizedReplayBuffer(3_000, space_of(17), ACTIONS, "cpu", obs_ranges=spec)
    with caplog.at_level("INFO", logger="validation.buffers.obs_store"):
        for buf in (uniform, keep, recal):
            feed(buf, x)
    assert [event["rows"] for event in recal.drift.events][-1] == 2_000
    assert any("recalibrated observation after 2000 rows" in message for message in caplog.messages)
    event = recal.drift.events[-1]
    assert event["bits_after"] < event["bits_before"] * 0.98 and event["entries_after"] < event["entries_before"]
    for got, want in zip(decoded(recal), decoded(uniform)):
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    kept, chosen = keep.quantization_stats()["observation"], recal.quantization_stats()["observation"]
    assert chosen["bits_per_value_all_in"] < kept["bits_per_value_all_in"]
    assert chosen["entries_live"] < kept["entries_live"] / 10
    with pytest.warns(UserWarning, match="prediction of this buffer is stale: recalibrated"):
        recal.memory_bytes()
    fresh = QuantizedReplayBuffer(3_000, space_of(17), ACTIONS, "cpu", obs_ranges=spec)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fresh.memory_bytes()  # before any data: the prediction holds


def test_a_rollout_buffer_on_a_spec_gives_the_uniform_minibatches(walker):
    observations, spec = walker
    x = with_outliers(observations[:512])
    import torch as th

    bufs = [QuantizedRolloutBuffer(512, space_of(17), ACTIONS, "cpu", **kwargs)
            for kwargs in ({"decimals": 2}, {"obs_ranges": spec})]
    for buf in bufs:
        for row in x:
            buf.add(row[None], np.zeros((1, 2)), np.ones(1), np.zeros(1), th.zeros(1), th.zeros(1))
        buf.compute_returns_and_advantage(th.zeros(1), np.zeros(1))
    batches = []
    for buf in bufs:
        np.random.seed(0)
        batches.append(next(buf.get(64)).observations.numpy())
    assert np.array_equal(batches[0].view(np.uint32), batches[1].view(np.uint32))


def test_a_spec_path_is_read_and_a_mismatched_spec_is_one_error(walker, tmp_path):
    _, spec = walker
    path = tmp_path / "walker.yaml"
    path.write_text(yaml.safe_dump(spec.as_dict()))
    buf = QuantizedReplayBuffer(10, space_of(17), ACTIONS, "cpu", obs_ranges=str(path))
    assert buf.codec.columns[None].obs_ranges == spec
    with pytest.raises(PlannerError, match=r"observation ranges have 17 dims \(scanned on Walker2d-v5\)"):
        QuantizedReplayBuffer(10, space_of(11), ACTIONS, "cpu", obs_ranges=spec)
    with pytest.raises(PlannerError, match="give no decimals"):
        QuantizedReplayBuffer(10, space_of(17), ACTIONS, "cpu", obs_ranges=spec, decimals=2)
    with pytest.raises(PlannerError, match="recalibrate must be True or False, got 0.01"):
        QuantizedReplayBuffer(10, space_of(17), ACTIONS, "cpu", obs_ranges=spec, recalibrate=0.01)


def test_a_saved_calibrated_buffer_loads_with_every_value_and_notices_damage(walker):
    observations, spec = walker
    buf = QuantizedReplayBuffer(1_000, space_of(17), ACTIONS, "cpu", obs_ranges=spec)
    feed(buf, with_outliers(observations[:800]))
    data = pickle.dumps(buf)
    loaded = pickle.loads(data)
    for got, want in zip(decoded(loaded), decoded(buf)):
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    rows = buf.stored_observations.arrays[None]
    live = rows.pool[:rows.pool_used]
    assert rows.live > 0
    damaged = bytearray(data)
    at = damaged.index(live.tobytes()[:48])
    damaged[at + 1] ^= 1  # one bit of a side-table entry's code
    with pytest.raises(PlannerError, match="damaged"):
        pickle.loads(bytes(damaged))


def test_sac_trains_on_a_calibrated_buffer():
    """A real SAC run on Pendulum-v1 with the calibrated buffer (spec scanned from another seed's rollout)."""
    import torch as th
    from stable_baselines3 import SAC

    spec = choose_ranges(rollout("Pendulum-v1", 500, seed=1), 2)
    model = SAC("MlpPolicy", "Pendulum-v1", buffer_size=2_000, learning_starts=1_200, seed=0, batch_size=64,
                replay_buffer_class=QuantizedReplayBuffer,
                replay_buffer_kwargs={"obs_ranges": spec})
    before = [p.detach().clone() for p in model.actor.parameters()]
    model.learn(1_250)  # 50 gradient steps on decoded samples
    assert any(not th.equal(a, b) for a, b in zip(before, model.actor.parameters()))
    buf = model.replay_buffer
    stored = np.asarray(buf.observations[:1_250])[:, 0]
    assert buf.pos == 1_250 and np.abs(stored[:, :2]).max() <= 1 and np.abs(stored[:, 2]).max() <= 8
    assert np.array_equal(np.rint(stored.astype(np.float64) * 100) / 100, stored.astype(np.float64).round(2))
    assert buf.quantization_stats()["observation"]["bits_per_value"] < 15


def test_stream_with_episode_ends_and_interruptions_matches_the_uniform_buffer():
    """The shared space-test stream (episode ends, time limits, interrupted streams, 3 envs) on a spec."""
    space = space_of(5)
    spec = choose_ranges(np.random.default_rng(0).normal(0, 20, (2_000, 5)), 2)
    calibrated = QuantizedReplayBuffer(40, space, ACTIONS, "cpu", n_envs=3, obs_ranges=spec, terminal_capacity=5)
    uniform_small = QuantizedReplayBuffer(40, space, ACTIONS, "cpu", n_envs=3, decimals=2, terminal_capacity=5)
    for transition in stream(space, 3, 60, seed=4, interrupt_every=17):
        for buf in (uniform_small, calibrated):
            buf.add(*transition)
    for got, want in zip(decoded(calibrated), decoded(uniform_small)):
        assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    assert calibrated.terminal_evictions == uniform_small.terminal_evictions
