"""Observation ranges: per-dimension code ranges on the paper's grid, the range rule, files and ``planner obs``."""

import fcntl
import json
import math
import os
import pickle
import pty
import select
import struct
import subprocess
import termios

import numpy as np
import pytest
import yaml
from conftest import PLANNER

from cython_core.escape import ENTRY_COST_BITS
from planner.errors import PlannerError
from planner.obs_ranges import ObservationRanges, choose_ranges, codes, entropy_bits


def test_codes_are_the_papers_and_constant_dimensions_cost_one_bit():
    """Two codes need 2 bits (3 in-row values below the escape), a constant 1, two codes 25,400 apart the
    uniform 15 (any narrower width escapes half the values): 18 bits a row at bit stride."""
    x = np.array([[0.123, 5.0, 300.0], [0.126, 5.0, -300.0]])
    assert codes(x, 2).tolist() == [[12, 500, 12700], [13, 500, -12700]]
    spec = choose_ranges(x, 2)
    assert [spec.row_bits_of(i) for i in range(3)] == [2, 1, 15] and spec.uniform_bits == 15
    assert spec.row_bytes == 18 / 8 and spec.summary()["uniform_row_bytes"] == 45 / 8


def test_entropy_of_eight_equally_likely_codes_is_three_bits():
    assert entropy_bits(np.repeat(np.arange(8), 10)) == pytest.approx(3.0)
    assert entropy_bits(np.zeros(5, dtype=np.int64)) == 0.0


def test_the_chosen_range_has_the_fewest_expected_bits_among_the_candidates():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, (20_000, 2))
    x[rng.random(20_000) < 0.002, 0] = 100.0  # rare outliers in dimension 0
    spec = choose_ranges(x, 2)
    column = codes(x, 2)[:, 0]
    costs = []  # by brute force: every width below the uniform one, every window of 2^w - 1 codes
    for bits in range(1, 15):
        size = (1 << bits) - 1
        inside = max(np.count_nonzero((column >= lo) & (column < lo + size)) for lo in np.unique(column))
        costs.append(bits + ENTRY_COST_BITS * (1 - inside / column.size))
    costs.append(15.0)  # the uniform width escapes nothing
    chosen = spec.dims[0]
    assert spec.row_bits_of(0) + ENTRY_COST_BITS * chosen.outside == pytest.approx(min(costs))
    assert chosen.hi < 10_000 and 0.002 <= chosen.outside < 0.02  # the outliers escaped, they did not widen it


def test_a_spec_file_round_trips_and_bad_fields_are_one_error():
    spec = choose_ranges(np.random.default_rng(0).normal(0, 3, (500, 4)), 1, source={"env": "test"})
    again = ObservationRanges.from_dict(yaml.safe_load(yaml.safe_dump(spec.as_dict())))
    assert again == spec
    data = spec.as_dict()
    for broken, message in ((dict(data, version=2), "version must be 1"),
                            (dict(data, dims=[dict(data["dims"][0], bits=3)]), r"dims\[0\]"),
                            (dict(data, decimals=-1), "decimals must be"),
                            (dict(data, extra=1), "unknown keys extra")):
        with pytest.raises(PlannerError, match=message):
            ObservationRanges.from_dict(broken, "f.yaml")


def test_obs_scan_and_show(planner_cli, tmp_path):
    out = tmp_path / "hopper.yaml"
    scanned = planner_cli("obs", "scan", "--env", "Hopper-v5", "--steps", "300", "--out", str(out))
    assert scanned.returncode == 0, scanned.stderr
    shown = planner_cli("obs", "show", str(out), "--json")
    data = json.loads(shown.stdout)
    assert data["source"]["env"] == "Hopper-v5" and data["source"]["observations"] == 300
    assert len(data["dims"]) == 11
    summary = data["summary"]
    assert summary["row_bytes"] == pytest.approx(summary["mean_bits"] * 11 / 8)
    assert summary["mean_bits"] < summary["uniform_bits"] == 15
    table = planner_cli("obs", "show", str(out))
    assert table.returncode == 0 and "entropy bits" in table.stdout and "MB" not in table.stdout


def test_no_figure_shows_as_negative_zero(planner_cli, tmp_path):
    spec = choose_ranges(np.full((50, 2), 0.5), 2)  # constant dimensions: entropy 0
    assert all(math.copysign(1, d.entropy) == 1 for d in spec.dims)
    data = spec.as_dict()
    for dim in data["dims"]:
        dim.update(entropy=-0.0, zeros=-0.0, outside=-0.0)  # as a spec scanned before the fix holds them
    path = tmp_path / "constant.yaml"
    path.write_text(yaml.safe_dump(data))
    table = planner_cli("obs", "show", str(path))
    assert table.returncode == 0 and "0.00" in table.stdout and "-0.0" not in table.stdout, table.stdout
    shown = planner_cli("obs", "show", str(path), "--json")
    assert shown.returncode == 0 and "-0.0" not in shown.stdout


def test_obs_scan_shows_progress_on_a_terminal_stderr_and_nothing_else(tmp_path):
    argv = [str(PLANNER), "obs", "scan", "--env", "Pendulum-v1", "--steps", "5000", "--out", str(tmp_path / "p.yaml")]
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=terminal, text=True, cwd=tmp_path)
    os.close(terminal)
    shown = b""
    while select.select([controller], [], [], 120)[0]:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
    os.close(controller)
    stdout = child.communicate(timeout=120)[0]
    assert child.returncode == 0 and b"scanning Pendulum-v1" in shown and b"step" in shown, shown
    assert stdout.startswith("3 dims at m = 2") and "scanning" not in stdout and "\r" not in stdout, stdout
    piped = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert piped.returncode == 0 and piped.stderr == "" and piped.stdout.startswith("3 dims at m = 2")


@pytest.mark.parametrize("text, message", [
    ("a: &x [1]\nb: *x\n", "anchor"),
    ("version: 1\ndims: [\n", "not valid YAML"),
    ("- 1\n", "are a mapping"),
])
def test_a_bad_spec_file_is_one_line_and_exit_2(planner_cli, tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    result = planner_cli("obs", "show", str(path))
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_scan_from_a_saved_replay_buffer_reads_its_observations(tmp_path):
    from gymnasium import spaces
    from stable_baselines3.common.buffers import ReplayBuffer

    from validation.scan import from_buffer

    buf = ReplayBuffer(10, spaces.Box(-np.inf, np.inf, (3,)), spaces.Box(-1, 1, (1,)), "cpu", n_envs=2)
    rng = np.random.default_rng(0)
    added = [rng.normal(size=(2, 3)).astype(np.float32) for _ in range(4)]
    for obs in added:
        buf.add(obs, obs, np.zeros((2, 1)), np.zeros(2), np.zeros(2), [{}, {}])
    path = tmp_path / "rb.pkl"
    path.write_bytes(pickle.dumps(buf))
    assert np.array_equal(from_buffer(path), np.concatenate(added).astype(np.float64))


def test_random_transitions_are_the_scans_stream_with_each_episodes_last_observation():
    # the boundary experiment fills buffers from these: their observations must be the very ones the calibrated
    # storage's default ranges were scanned on, and a transition that ends an episode must go to its last
    # observation, not to the next episode's first
    from validation.scan import random_transitions, rollout

    pool = random_transitions("Hopper-v5", 600, seed=0)
    assert len(pool) == 600 and np.array_equal(pool.observations[:600], rollout("Hopper-v5", 600, seed=0))
    ends = np.flatnonzero(pool.terminated | pool.truncated)
    assert len(ends) > 3 and sorted(pool.final) == list(ends)  # a random Hopper falls every few dozen steps
    for i in ends[ends < 599]:
        assert not np.array_equal(pool.next_observation(i), pool.observations[i + 1])  # a reset came between
        assert np.array_equal(pool.next_observation(i - 1), pool.observations[i])
