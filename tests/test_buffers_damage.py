"""A damaged saved calibrated buffer: one bit and all bits of a byte flipped (every byte of the header and of the
record's version and configuration, every third byte elsewhere) and the file cut at every third length, each load
through ``load_replay_buffer`` gives the saved buffer or one PlannerError saying what is damaged; and every field
of a calibrated column's observation ranges, layout, counters, escape-coded rows, side tables and drift policy is
checksummed."""

import collections
import contextlib
import dataclasses
import io
import pickle
import re
import resource
import signal
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from stable_baselines3 import SAC

from cython_core import EscapeLayout, EscapeRows
from planner.errors import PlannerError
from planner.obs_ranges import choose_ranges
from validation.buffers import QuantizedReplayBuffer
from validation.buffers.persistence import FORMAT_VERSION, RECORD, load_replay_buffer

LOAD_SECONDS = 5  # a load that takes longer counts as a hang


def pendulum():
    return gym.make("Pendulum-v1", max_episode_steps=12)


def sac(obs_ranges):
    return SAC("MlpPolicy", pendulum(), buffer_size=24, learning_starts=1000, seed=0, device="cpu",
               policy_kwargs=dict(net_arch=[8]), replay_buffer_class=QuantizedReplayBuffer,
               replay_buffer_kwargs=dict(obs_ranges=obs_ranges))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A SAC Pendulum-v1 model after 30 random steps (12-step episodes: two episode ends; the 24-row buffer
    wrapped) on observation ranges chosen from the first 10 observations of a random rollout (values outside
    them: side-table entries), its saved buffer and a fresh model to load into."""
    env, rng = pendulum(), np.random.default_rng(0)
    obs = [env.reset(seed=0)[0]]
    for _ in range(9):
        obs.append(env.step(rng.uniform(-2, 2, (1,)))[0])
    ranges = choose_ranges(np.array(obs), decimals=2, source={"env": "Pendulum-v1"})
    model = sac(ranges)
    model.learn(30)
    buf = model.replay_buffer
    assert buf.full and (buf.terminal_slot >= 0).any() and buf.stored_observations.arrays[None].live > 0
    path = tmp_path_factory.mktemp("rb") / "rb.pkl"
    model.save_replay_buffer(path)
    fresh = sac(ranges)
    load_replay_buffer(fresh, path)
    return path, fresh, fresh.replay_buffer


def same(a, b, seen=None):
    """Whether two object graphs hold the same data: types, dict keys in order, arrays by dtype, shape and bytes,
    floats by their repr, other objects by their attributes (False where a damaged dtype cannot say its fields)."""
    seen = set() if seen is None else seen
    if (id(a), id(b)) in seen:
        return True
    seen.add((id(a), id(b)))
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        try:
            described = a.dtype.descr == b.dtype.descr
        except Exception:  # a damaged structured dtype
            return False
        return described and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[key], b[key], seen) for key in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y, seen) for x, y in zip(a, b))
    if isinstance(a, (float, np.floating)):
        return repr(a) == repr(b)
    if isinstance(a, np.random.Generator):
        return a.bit_generator.state == b.bit_generator.state
    if isinstance(a, EscapeRows):  # compiled: its state, not its attributes
        return same(a.state(), b.state(), seen)
    if isinstance(a, EscapeLayout):  # its fields, not the kernel tables it caches once used
        return a == b
    if isinstance(getattr(a, "__dict__", None), dict):
        return same(vars(a), vars(b), seen)
    return a == b


class _Hang(BaseException):
    """Raised by the alarm: no ``except Exception`` on the way turns it into a load error."""


def _alarm(signum, frame):
    raise _Hang


@contextlib.contextmanager
def bounded(seconds, extra_bytes):
    """Each block under an alarm of ``seconds`` (raising _Hang), and no more than ``extra_bytes`` of address space
    allocated beyond what the process holds now: an allocation sized by a damaged length fails at once
    (MemoryError) instead of filling gigabytes of a shared machine's memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    held = int(Path("/proc/self/statm").read_text().split()[0]) * resource.getpagesize()
    limit = held + extra_bytes if hard == resource.RLIM_INFINITY else min(hard, held + extra_bytes)
    previous = signal.signal(signal.SIGALRM, _alarm)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield lambda: signal.setitimer(signal.ITIMER_REAL, seconds)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, previous)


def damaged_loads(path, model, variants):
    """Load each ``(label, data)`` through ``load_replay_buffer`` from ``path``: (label, the loaded buffer, or the
    PlannerError's message, or the other exception raised)."""
    before = model.replay_buffer
    with bounded(LOAD_SECONDS, 2 << 30) as arm:
        for label, data in variants:
            path.write_bytes(data)
            arm()
            try:
                load_replay_buffer(model, path)
                outcome = model.replay_buffer
            except PlannerError as err:
                assert model.replay_buffer is before, label  # nothing installed
                outcome = str(err)
            except (Exception, _Hang) as err:  # what must never come out
                outcome = err
            signal.setitimer(signal.ITIMER_REAL, 0)
            model.replay_buffer = before
            yield label, outcome


def variants(data):
    """Flips of one bit (text stays text) and of every bit: at every byte of the header (the spaces, the codec
    with the calibrated column's observation ranges and layout: all before the drift policy) and of the format
    record's version and configuration, at every third byte elsewhere; and cuts at every third length."""
    drift, record = data.index(b"\x8c\x05drift"), data.index(RECORD.encode())
    every = [*range(drift), *range(drift, record, 3), *range(record, record + 600), *range(record + 600, len(data), 3)]
    for at in every:
        for mask in (0x01, 0xFF):
            flipped = bytearray(data)
            flipped[at] ^= mask
            yield f"byte {at} ^ {mask:#04x}", bytes(flipped)
    for length in range(0, len(data), 3):
        yield f"cut at {length}", data[:length]


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="bounds the address space the Linux way")
def test_every_flipped_byte_and_every_cut_is_the_saved_buffer_or_one_error_saying_what(saved, tmp_path):
    path, model, reference = saved
    bad = tmp_path / "bad.pkl"
    said = re.compile(rf"{re.escape(str(bad))}(: the saved QuantizedReplayBuffer (is damaged: \S.*|has buffer format "
                      rf"version .*the file is damaged)| is damaged or cut short: not a whole pickle \(\S.*\))")
    start = time.perf_counter()
    kinds, wrong = collections.Counter(), []
    for label, outcome in damaged_loads(bad, model, variants(path.read_bytes())):
        if isinstance(outcome, str):
            kinds["refused, naming what" if " is damaged: " in outcome else "refused"] += 1
            if not said.fullmatch(outcome) or "MemoryError" in outcome:  # one line; no allocation sized by damage
                wrong.append(f"{label}: {outcome}")
        elif isinstance(outcome, BaseException):
            wrong.append(f"{label}: {type(outcome).__name__}: {str(outcome)[:100]}")
        elif same(outcome, reference):
            kinds["loaded, the same buffer"] += 1
        else:
            wrong.append(f"{label}: loaded a different buffer")
    seconds = time.perf_counter() - start
    assert not wrong, f"{len(wrong)} of {kinds.total() + len(wrong)} loads:\n" + "\n".join(wrong[:40])
    assert kinds["refused, naming what"] > 3000 and kinds["refused"] > 5000, kinds
    assert seconds < 40, seconds


def _copy_and_state(buf):
    """A copy of ``buf`` and its state as pickled (the record computed), to damage before restoring the copy."""
    copy = pickle.loads(pickle.dumps(buf))
    return copy, copy.__getstate__()


def _restore(state, into=None):
    (into or QuantizedReplayBuffer.__new__(QuantizedReplayBuffer)).__setstate__(state)


def _ranges(state):
    return state["codec"].columns[None].obs_ranges


def _set(obj, **fields):
    for name, value in fields.items():
        object.__setattr__(obj, name, value)  # frozen dataclasses too


def _dim(state, index, **fields):
    ranges = _ranges(state)
    dims = list(ranges.dims)
    dims[index] = dataclasses.replace(dims[index], **fields)
    _set(ranges, dims=tuple(dims))


def _rows(state, store="stored_observations"):
    return state[store].arrays[None]


def _rebuilt(state, store="stored_observations", layout=None, **counters):
    """Replace the escape-coded rows of ``store`` (compiled: their fields are read-only) by a copy with another
    ``layout`` or other ``counters``."""
    rows = _rows(state, store)
    parts = rows.state()
    names = ("n_rows", "pool_used", "pool_dead", "live", "rows_put", "saturated")
    parts["counters"] = tuple(counters.get(name, value) for name, value in zip(names, parts["counters"]))
    parts["layout"] = layout or parts["layout"]
    state[store].arrays[None] = type(rows)._restore(*parts.values())


def _shifted(layout):
    """The layout with dimension 0's range one code lower (the same row bits)."""
    return type(layout)(layout.lo - np.eye(layout.dim, dtype=np.int64)[0], layout.bits, layout.decimals,
                        layout.clamp)


RANGES = "codec.columns.None.obs_ranges"
STORE = "stored_observations.arrays.None"
DAMAGE = {
    f"{RANGES}.rule": lambda s: _set(_ranges(s), rule=_ranges(s).rule.replace("w", "v")),
    f"{RANGES}.version": lambda s: _set(_ranges(s), version=2),
    f"{RANGES}.decimals": lambda s: _set(_ranges(s), decimals=3),
    f"{RANGES}.clamp": lambda s: _set(_ranges(s), clamp=126.0),
    f"{RANGES}.source.env": lambda s: _ranges(s).source.update(env="Pendulum-v2"),
    f"{RANGES}.dims.lo": lambda s: _dim(s, 0, lo=_ranges(s).dims[0].lo - 1),
    f"{RANGES}.dims.hi": lambda s: _dim(s, 1, hi=_ranges(s).dims[1].hi + 1),
    f"{RANGES}.dims.bits": lambda s: _dim(s, 2, bits=_ranges(s).dims[2].bits + 1),
    f"{RANGES}.dims.outside": lambda s: _dim(s, 0, outside=0.5),
    f"{RANGES}.dims.zeros": lambda s: _dim(s, 1, zeros=0.25),
    f"{RANGES}.dims.entropy": lambda s: _dim(s, 2, entropy=_ranges(s).dims[2].entropy + 1e-9),
    f"{STORE}.layout": lambda s: _rebuilt(s, layout=_shifted(_rows(s).layout)),
    f"{STORE}.words": lambda s: _rows(s).words.__setitem__(0, _rows(s).words[0] ^ 1),
    f"{STORE}.pool": lambda s: _rows(s).pool.__setitem__(0, _rows(s).pool[0] ^ 1),
    f"{STORE}.seg_start": lambda s: _rows(s).seg_start.__setitem__(0, _rows(s).seg_start[0] + 1),
    f"{STORE}.seg_len": lambda s: _rows(s).seg_len.__setitem__(0, _rows(s).seg_len[0] + 1),
    f"{STORE}.seg_cap": lambda s: _rows(s).seg_cap.__setitem__(0, _rows(s).seg_cap[0] + 1),
    f"{STORE}.outside": lambda s: _rows(s).outside.__setitem__(1, 7),
    f"{STORE}.counters": lambda s: _rebuilt(s, live=0),
    "terminal_observations.arrays.None.counters": lambda s: _rebuilt(s, "terminal_observations", rows_put=0),
    "drift.enabled": lambda s: setattr(s["drift"], "enabled", not s["drift"].enabled),
    "drift.next_check": lambda s: setattr(s["drift"], "next_check", 12345),
    "observations.following": lambda s: setattr(s["observations"], "following", True),
}


@pytest.mark.parametrize("entry", DAMAGE)
def test_each_field_of_the_calibrated_column_is_checksummed_and_named(saved, entry):
    copy, state = _copy_and_state(saved[2])
    assert state[RECORD]["version"] == FORMAT_VERSION
    DAMAGE[entry](state)
    with pytest.raises(PlannerError) as err:
        _restore(state, copy)
    assert str(err.value) == (f"the saved QuantizedReplayBuffer is damaged: {entry} differs from its checksum "
                              f"(format version {FORMAT_VERSION}); save it again or use a good copy")


@pytest.mark.parametrize("damage, said", [
    (lambda s: s.pop(RECORD), "its format record (version, configuration, checksums) is missing"),
    (lambda s: s.__setitem__(RECORD, [4]), "its format record (version, configuration, checksums) is unreadable"),
    (lambda s: s[RECORD].pop("checksums"), "its format record (version, configuration, checksums) is unreadable"),
    (lambda s: s.__setitem__("terminal_cursor", None), "terminal_cursor differs from its checksum"),
    (lambda s: s[RECORD].pop("names"), "its format record (version, configuration, checksums) is unreadable"),
    (lambda s: s[RECORD].__setitem__("names", s[RECORD]["names"].replace("\npos\n", "\nqos\n")),
     "qos, pos differ from their checksums"),
    (lambda s: s[RECORD]["checksums"].__setitem__(slice(0, 20), [0] * 20),
     "codec, codec.None, codec.space, codec.space.dtype, codec.space._shape, codec.space.low, "
     "codec.space.bounded_below, codec.space.high and 12 more differ from their checksums"),
])
def test_a_damaged_record_or_state_is_one_error(saved, damage, said):
    copy, state = _copy_and_state(saved[2])
    damage(state)
    with pytest.raises(PlannerError, match=f"^the saved QuantizedReplayBuffer is damaged: {re.escape(said)}"):
        _restore(state, copy)


def test_what_restoring_raises_is_one_error_too():
    with pytest.raises(PlannerError, match=r"^the saved QuantizedReplayBuffer is damaged: its state is a tuple"):
        _restore((1, 2))
    with pytest.raises(PlannerError, match=r"^the saved QuantizedReplayBuffer is damaged: restoring it raised "
                                           r"KeyError: 'code_spec'; use a good copy$"):
        _restore({"observation_space": spaces.Box(-1, 1, (3,))})  # no record, no codec: version 0, but incomplete


def test_a_file_object_is_checked_too_and_named_when_it_has_a_name(saved):
    path, model, _ = saved
    before = model.replay_buffer
    data = path.read_bytes()
    with pytest.raises(PlannerError, match=r"^the file is damaged or cut short: not a whole pickle \(UnpicklingError: "
                                           r"(cut short|the data) at byte \d+"):
        load_replay_buffer(model, io.BytesIO(data[: len(data) // 2]))
    with path.open("rb") as file:
        load_replay_buffer(model, file)
        assert not file.closed  # the caller's to close
    assert model.replay_buffer is not before
    model.replay_buffer = before
