"""Saved quantized buffers: format version, configuration and checksums in the file; damaged files, other
configurations and version-0 files (written before format versions) on load; real SB3 SAC / PPO models."""

import pickle

import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3 import PPO, SAC, HerReplayBuffer
from stable_baselines3.common.buffers import DictReplayBuffer
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.envs import BitFlippingEnv

from cython_core import CodeLayout, PackedRows
from planner.errors import PlannerError
from planner.obs_ranges import choose_ranges
from validation.buffers import QuantizedDictReplayBuffer, QuantizedReplayBuffer, QuantizedRolloutBuffer
from validation.buffers.obs_store import ObservationRows
from validation.buffers.persistence import (
    FORMAT_VERSION,
    RECORD,
    PersistentBuffer,
    buffer_config,
    checksums,
    load_replay_buffer,
)

DATA = __import__("pathlib").Path(__file__).parent / "data"
ENV = "Hopper-v5"
KWARGS = dict(decimals=2, clamp=127)
SMALL = dict(learning_starts=100, batch_size=32, seed=0, device="cpu", policy_kwargs=dict(net_arch=[32]))


def sac(env=ENV, buffer_size=500, **kwargs):
    return SAC("MlpPolicy", env, buffer_size=buffer_size, replay_buffer_class=QuantizedReplayBuffer,
               replay_buffer_kwargs={**KWARGS, **kwargs}, **SMALL)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A SAC Hopper-v5 model trained 600 steps (the 500-row buffer wrapped, episodes ended) and its saved buffer."""
    model = sac()
    model.learning_starts = 500  # 100 updates: the buffer is what is tested
    model.learn(600)
    path = tmp_path_factory.mktemp("rb") / "rb.pkl"
    model.save_replay_buffer(path)
    return model, path


class _Record:
    """What unpickling the file yields when the buffer class is swapped for this: the raw state, record included."""

    def __setstate__(self, state):
        self.state = state


class _RawUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        return _Record if name == "QuantizedReplayBuffer" else super().find_class(module, name)


def raw_state(path):
    with open(path, "rb") as file:
        return _RawUnpickler(file).load().state


def flip(path, arrays, out):
    """A copy of ``path`` with one byte flipped in the middle of each array's bytes (found in the pickle)."""
    data = bytearray(path.read_bytes())
    for arr in arrays:
        payload = arr.tobytes()
        assert data.count(payload) == 1  # the array's bytes are in the file exactly once
        data[data.index(payload) + len(payload) // 2] ^= 0xFF
    out.write_bytes(bytes(data))
    return out


def fields_named(err):
    """The configuration fields a load error names (``name: saved X, this model Y; ...``)."""
    return {part.split(": saved")[0].split(": ")[-1] for part in str(err.value).split("; ")}


def test_the_file_carries_version_config_and_checksums_once(saved):
    model, path = saved
    buf = model.replay_buffer
    state = raw_state(path)
    record = state[RECORD]
    assert record["version"] == FORMAT_VERSION == 6
    config = record["config"]
    assert config["class"] == "validation.buffers.replay.QuantizedReplayBuffer"
    assert config["observation_space"] == {"type": "Box", "shape": [11], "dtype": "float64", "low": -np.inf,
                                           "high": np.inf}
    assert config["action_space"]["shape"] == [3] and config["code_layout"] == buf.code_layout.get_config()
    assert {k: config[k] for k in ("buffer_size", "n_envs", "n_steps", "gamma", "handle_timeout_termination",
                                   "terminal_capacity")} == dict(buffer_size=500, n_envs=1, n_steps=1, gamma=0.99,
                                                                 handle_timeout_termination=True, terminal_capacity=8)
    sums = dict(zip(record["names"].split("\n"), record["checksums"], strict=True))
    for name in ("stored_observations.arrays.None", "terminal_observations.arrays.None", "terminal_slot",
                 "terminal_owner", "actions", "rewards", "dones", "timeouts", "pos", "full", "codec.None",
                 "observation_space"):
        assert name in sums, name
    assert sums["stored_observations.arrays.None.storage"][:2] == ("<u8",
                                                                  buf.stored_observations.arrays[None].storage.shape)
    # SB3 2.9's save_to_pkl: a plain (uncompressed) pickle, the highest protocol; every array written once
    raw = path.read_bytes()
    assert raw[:2] == b"\x80\x05"
    arrays = buf.memory_bytes()
    assert arrays <= len(raw) <= arrays + 32_000, (len(raw), arrays)


def test_a_loaded_buffer_is_the_saved_one_and_training_goes_on(saved):
    model, path = saved
    buf = model.replay_buffer
    fresh = sac()
    load_replay_buffer(fresh, path)
    loaded = fresh.replay_buffer
    assert loaded is not buf and type(loaded) is QuantizedReplayBuffer and RECORD not in vars(loaded)
    for name, value in vars(buf).items():
        if isinstance(value, np.ndarray):
            assert np.array_equal(getattr(loaded, name), value), name
        elif isinstance(value, ObservationRows):
            assert all(np.array_equal(getattr(loaded, name).arrays[k].storage, a.storage)
                       for k, a in value.arrays.items()), name
        elif isinstance(value, (int, float, bytes, CodeLayout)):
            assert getattr(loaded, name) == value, name
    assert buf.full and (buf.terminal_slot >= 0).any()  # wrapped, with episode ends in the terminal store
    np.random.seed(3)
    a = buf.sample(64)
    np.random.seed(3)
    b = loaded.sample(64)
    assert all(th.equal(x, y) for x, y in zip(a[:5], b[:5]))
    fresh.learn(50, reset_num_timesteps=False)  # training continues from the loaded buffer
    assert fresh.replay_buffer.pos == (buf.pos + 50) % 500


@pytest.mark.parametrize("names", [["stored_observations.arrays.None.storage"],
                                   ["terminal_observations.arrays.None.storage"], ["actions"],
                                   ["rewards", "terminal_slot"]])
def test_a_flipped_byte_is_one_error_naming_the_array(saved, tmp_path, names):
    model, path = saved
    buf = model.replay_buffer
    arrays = [buf.stored_observations.arrays[None].storage if n == "stored_observations.arrays.None.storage" else
              buf.terminal_observations.arrays[None].storage if n == "terminal_observations.arrays.None.storage"
              else getattr(buf, n) for n in names]
    bad = flip(path, arrays, tmp_path / "bad.pkl")
    fresh = sac()
    before = fresh.replay_buffer
    with pytest.raises(PlannerError, match=r"bad\.pkl: the saved QuantizedReplayBuffer is damaged: ") as err:
        load_replay_buffer(fresh, bad)
    assert str(err.value).split("is damaged: ")[1].split(" differ")[0] == ", ".join(names)
    assert fresh.replay_buffer is before  # nothing installed
    with pytest.raises(PlannerError, match="damaged"):  # SB3's own load_replay_buffer refuses it too
        fresh.load_replay_buffer(bad)
    assert fresh.replay_buffer is before


def test_a_truncated_file_is_one_error(saved, tmp_path):
    _, path = saved
    cut = tmp_path / "cut.pkl"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    model = sac()
    before = model.replay_buffer
    with pytest.raises(PlannerError, match=r"cut\.pkl is damaged or cut short: not a whole pickle "
                                          r"\(UnpicklingError: the data at byte \d+ runs past the end of the file\)$"):
        load_replay_buffer(model, cut)
    assert model.replay_buffer is before


@pytest.mark.parametrize("other, fields", [
    (dict(decimals=1), {"code_layout.scale", "code_layout.bits"}),
    (dict(clamp=50), {"code_layout.lo", "code_layout.hi", "code_layout.bits"}),
    (dict(buffer_size=450), {"buffer_size"}),  # the default terminal capacity stays 8
    (dict(terminal_capacity=20), {"terminal_capacity"}),
    (dict(n_steps=3, gamma=0.9), {"n_steps", "gamma"}),
    (dict(env="Walker2d-v5"), {"observation_space.shape", "action_space.shape", "code_layout.dim"}),
    (dict(env="n_envs=2"), {"n_envs", "terminal_capacity"}),  # 1000 rows: 16 slots
])
def test_another_configuration_is_one_error_naming_what_differs(saved, other, fields):
    _, path = saved
    if other.get("env") == "n_envs=2":
        other = dict(env=make_vec_env(ENV, n_envs=2, seed=0), buffer_size=1000)  # 500 rows per env, as saved
    model = sac(**other)
    before = model.replay_buffer
    with pytest.raises(PlannerError, match=r"the replay buffer saved in .*rb\.pkl does not fit this SAC: ") as err:
        load_replay_buffer(model, path)
    assert fields_named(err) == fields, str(err.value)
    assert model.replay_buffer is before


def test_the_error_says_what_each_side_has(saved):
    _, path = saved
    with pytest.raises(PlannerError) as err:
        load_replay_buffer(sac(env="Walker2d-v5", decimals=1, buffer_size=300), path)
    message = str(err.value)
    for part in ("observation_space.shape: saved [11], this model [17]", "buffer_size: saved 500, this model 300",
                 "code_layout.scale: saved 100.0, this model 10.0", "code_layout.bits: saved 15, this model 12"):
        assert part in message, message


def test_plain_sb3_load_into_another_env_fails_at_the_first_add(saved):
    _, path = saved
    model = sac(env="Walker2d-v5")
    model.load_replay_buffer(path)  # SB3 compares nothing
    with pytest.raises(PlannerError, match=r"observation has shape \(1, 17\), expected \(1, 11\)"):
        model.learn(5, reset_num_timesteps=False)


def test_a_version_0_file_loads_and_trains_on():
    """tests/data/quantized_replay_buffer_v0.pkl: written by ``save_replay_buffer`` at commit fb55ed3 (before format
    versions) from SAC on Pendulum-v1 (seed 0, buffer_size 64, learn(250): wrapped, one time limit)."""
    path = DATA / "quantized_replay_buffer_v0.pkl"
    assert RECORD not in raw_state(path)
    model = SAC("MlpPolicy", "Pendulum-v1", buffer_size=64, replay_buffer_class=QuantizedReplayBuffer,
                replay_buffer_kwargs=KWARGS, **SMALL)
    load_replay_buffer(model, path)
    buf = model.replay_buffer
    assert buf.pos == 58 and buf.full and (buf.terminal_slot >= 0).sum() == 1
    obs = buf._get_samples(np.arange(64)).observations.numpy()
    assert np.abs(obs[:, 0] ** 2 + obs[:, 1] ** 2 - 1).max() < 0.02  # (cos, sin, speed), 2 decimals
    model.learn(20, reset_num_timesteps=False)
    with pytest.raises(PlannerError, match="code_layout.scale: saved 100.0, this model 10.0"):
        load_replay_buffer(SAC("MlpPolicy", "Pendulum-v1", buffer_size=64, replay_buffer_class=QuantizedReplayBuffer,
                               replay_buffer_kwargs=dict(decimals=1), **SMALL), path)


def _format_2_buffer(ranges=None):
    """A replay buffer on a Dict space with every kind of column (packed, float16, calibrated, raw), 20 transitions
    (two episode ends) from a seeded generator; the calibrated column on ``ranges`` (default: scanned from the
    generator, by today's rule; a saved file holds the ranges of the rule it was saved with)."""
    rng = np.random.default_rng(0)
    space = spaces.Dict({"pos": spaces.Box(-np.inf, np.inf, (3,)), "vel": spaces.Box(-np.inf, np.inf, (2,)),
                         "cal": spaces.Box(-np.inf, np.inf, (4,)), "cell": spaces.Discrete(5)})
    scanned = choose_ranges(rng.normal(0, 3, (500, 4)), 2)
    ranges = scanned if ranges is None else ranges
    buf = QuantizedReplayBuffer(16, space, spaces.Box(-1, 1, (1,)), "cpu", decimals={"pos": 2},
                                dtype={"vel": "float16"}, obs_ranges={"cal": ranges})

    def obs():
        return {"pos": rng.normal(0, 50, (1, 3)), "vel": rng.normal(0, 5, (1, 2)), "cal": rng.normal(0, 4, (1, 4)),
                "cell": rng.integers(0, 5, (1,))}

    last = obs()
    for step in range(20):
        following = obs()
        buf.add(last, following, rng.uniform(-1, 1, (1, 1)), np.ones(1), np.array([step % 7 == 6]), [{}])
        last = obs() if step % 7 == 6 else following
    return buf


def test_a_format_2_file_loads_with_the_columns_layouts_under_their_new_name():
    """tests/data/quantized_replay_buffer_v2.pkl: ``pickle.dump`` (protocol 5), at commit be63c36 (format 2: a
    column kept its CodeLayout as ``spec``), of the buffer :func:`_format_2_buffer` builds."""
    path = DATA / "quantized_replay_buffer_v2.pkl"
    assert raw_state(path)[RECORD]["version"] == 2
    loaded = pickle.loads(path.read_bytes())
    fresh = _format_2_buffer(loaded.codec.columns["cal"].obs_ranges)
    assert all("spec" not in vars(column) for column in loaded.codec.columns.values())
    assert buffer_config(loaded) == buffer_config(fresh) and loaded.memory_breakdown() == fresh.memory_breakdown()
    for following in (False, True):
        got, want = loaded.decode_rows(np.arange(16), following), fresh.decode_rows(np.arange(16), following)
        assert all(th.equal(got[key], want[key]) for key in want)
    loaded.sample(4)


def test_a_format_3_file_loads_checked_by_the_checksums_it_has():
    """tests/data/quantized_replay_buffer_v3.pkl: ``pickle.dump`` (protocol 5), at commit fabb3ac (format 3: a dict
    of checksums by name, fewer of them), of the buffer :func:`_format_2_buffer` builds."""
    path = DATA / "quantized_replay_buffer_v3.pkl"
    assert isinstance(raw_state(path)[RECORD]["checksums"], dict)
    loaded = pickle.loads(path.read_bytes())
    fresh = _format_2_buffer(loaded.codec.columns["cal"].obs_ranges)
    # the calibrated rows were converted to today's escape-coded rows (format 5): the same values, the side table
    # built in one pass rather than row by row
    for following in (False, True):
        got, want = loaded.decode_rows(np.arange(16), following), fresh.decode_rows(np.arange(16), following)
        assert all(th.equal(got[key], want[key]) for key in want)
    assert buffer_config(loaded) == buffer_config(fresh)
    data = bytearray(path.read_bytes())
    data[data.index(fresh.actions.tobytes()) + 1] ^= 1
    with pytest.raises(PlannerError, match=r"damaged: actions differs from its checksum \(format version 3\)"):
        pickle.loads(bytes(data))


def test_a_newer_format_version_is_refused_with_what_this_release_reads(saved):
    buf = saved[0].replay_buffer
    state = buf.__getstate__()
    state[RECORD]["version"] = FORMAT_VERSION + 1
    with pytest.raises(PlannerError, match=f"has buffer format version {FORMAT_VERSION + 1}; this justround-planner "
                                           f"reads versions 0 to {FORMAT_VERSION}"):
        QuantizedReplayBuffer.__new__(QuantizedReplayBuffer).__setstate__(state)
    assert RECORD not in vars(buf)  # __getstate__ copied the state


@pytest.mark.parametrize("protocol", range(2, pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_round_trips_with_its_checks(saved, protocol):
    buf = saved[0].replay_buffer
    copy = pickle.loads(pickle.dumps(buf, protocol=protocol))
    assert np.array_equal(copy.stored_observations.arrays[None].storage, buf.stored_observations.arrays[None].storage)
    assert checksums(vars(copy)).keys() == checksums(vars(buf)).keys()


def test_the_rollout_buffer_of_ppo_is_checked_too():
    model = PPO("MlpPolicy", make_vec_env(ENV, n_envs=2, seed=0), n_steps=64, batch_size=64, n_epochs=1, seed=0,
                device="cpu", rollout_buffer_class=QuantizedRolloutBuffer, rollout_buffer_kwargs=dict(decimals=1))
    model.learn(128)
    buf = model.rollout_buffer
    data = pickle.dumps(buf)
    copy = pickle.loads(data)
    for name in ("advantages", "returns", "values", "actions"):
        assert np.array_equal(getattr(copy, name), getattr(buf, name)), name
    assert np.array_equal(copy.stored_observations.arrays[None].storage, buf.stored_observations.arrays[None].storage)
    assert (copy.gae_lambda, copy.gamma, copy.pos, copy.full) == (buf.gae_lambda, buf.gamma, buf.pos, buf.full)
    bad = bytearray(data)
    at = bad.index(buf.advantages.tobytes())
    bad[at + 5] ^= 0x10
    with pytest.raises(PlannerError, match="the saved QuantizedRolloutBuffer is damaged: advantages differs"):
        pickle.loads(bytes(bad))


class _DictBuffer(PersistentBuffer, DictReplayBuffer):
    """SB3's Dict buffer (observations: a dict of arrays per key) with the mixin, as the Dict buffers will have it."""


def test_arrays_inside_dicts_and_packed_rows_are_named_by_their_path():
    space = spaces.Dict({"goal": spaces.Box(-1, 1, (3,)), "state": spaces.Box(-5, 5, (4,))})
    buf = _DictBuffer(10, space, spaces.Box(-1, 1, (2,)), "cpu")
    obs = {"goal": np.full((1, 3), 0.5, np.float32), "state": np.arange(4, dtype=np.float32)[None]}
    buf.add(obs, obs, np.zeros((1, 2)), np.ones(1), np.zeros(1), [{}])
    data = bytearray(pickle.dumps(buf))
    data[data.index(buf.observations["state"].tobytes()) + 4] ^= 1
    with pytest.raises(PlannerError, match="damaged: observations.state differs from its checksum"):
        pickle.loads(bytes(data))
    rows = {"goal": PackedRows(4, CodeLayout.uniform(3, decimals=1, clamp=1.0))}
    assert set(checksums({"packed": rows})) == {"packed", "packed.goal", "packed.goal.storage", "packed.goal.layout",
                                                "packed.goal.n_rows", "packed.goal.saturated",
                                                "packed.goal.nonfinite_coded"}


class _HerBuffer(PersistentBuffer, HerReplayBuffer):
    """HER's buffer (its own __getstate__ drops the env) with the mixin on top."""


def test_her_keeps_its_own_pickling_under_the_mixin(tmp_path):
    def her_sac():
        return SAC("MultiInputPolicy", BitFlippingEnv(n_bits=4, continuous=True, max_steps=4), buffer_size=200,
                   replay_buffer_class=_HerBuffer, replay_buffer_kwargs=dict(n_sampled_goal=2), **SMALL)

    model = her_sac()
    model.learn(120)
    model.save_replay_buffer(tmp_path / "her.pkl")
    fresh = her_sac()
    load_replay_buffer(fresh, tmp_path / "her.pkl", truncate_last_traj=False)  # passed on to SB3
    buf, loaded = model.replay_buffer, fresh.replay_buffer
    assert loaded.env is fresh.env and loaded.pos == buf.pos == 120
    for key in ("observation", "achieved_goal", "desired_goal"):
        assert np.array_equal(loaded.observations[key], buf.observations[key]), key
    assert np.array_equal(loaded.ep_length, buf.ep_length)
    fresh.learn(20, reset_num_timesteps=False)
    bad = flip(tmp_path / "her.pkl", [buf.ep_start], tmp_path / "bad.pkl")
    with pytest.raises(PlannerError, match="the saved _HerBuffer is damaged: ep_start differs from its checksum"):
        load_replay_buffer(her_sac(), bad)


def test_the_quantized_dict_buffer_names_the_damaged_entry():
    space = spaces.Dict({"goal": spaces.Box(-1, 1, (3,)), "cell": spaces.Discrete(4)})
    buf = QuantizedDictReplayBuffer(10, space, spaces.Box(-1, 1, (2,)), "cpu", decimals=2)
    obs = {"goal": np.full((1, 3), 0.5), "cell": np.array([3])}
    buf.add(obs, obs, np.zeros((1, 2)), np.ones(1), np.zeros(1), [{}])
    data = bytearray(pickle.dumps(buf))
    data[data.index(buf.stored_observations.arrays["cell"].tobytes()) + 3] ^= 1
    with pytest.raises(PlannerError, match="damaged: stored_observations.arrays.cell differs from its checksum"):
        pickle.loads(bytes(data))
    copy = pickle.loads(pickle.dumps(buf))
    assert copy.observations["cell"][0].tolist() == [[3]] and copy.code_layout["goal"] == buf.code_layout["goal"]
