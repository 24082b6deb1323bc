"""The peer suite's own machinery: the shim, the runner and the comparison with the expected-differences list.

The peer suite itself (``python -m validation.peer_suite``: SB3's and sb3-contrib's tests, about 20 minutes)
is not run here; these tests run the same command on a small upstream-style test folder made on the spot.
"""

import subprocess
import sys
import textwrap
from importlib.metadata import version

import pytest
import yaml

from planner.errors import PlannerError
from validation.peer_suite.compare import EXPECTED_FILE, compare, load_expected, parse_expected
from validation.peer_suite.upstream import SELECTION

REASONS = {"rounding", "float32", "placeholder", "stored-once"}  # docs/buffers.md, "Differences from SB3"

UPSTREAM_TESTS = '''
import numpy as np
from gymnasium import spaces
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.buffers import ReplayBuffer


def test_swapped_in():
    assert ReplayBuffer.__module__ == "validation.buffers.replay"
    assert type(SAC("MlpPolicy", "Pendulum-v1", buffer_size=100).replay_buffer).__name__ == "QuantizedReplayBuffer"
    assert type(PPO("MlpPolicy", "Pendulum-v1", n_steps=8, batch_size=8).rollout_buffer).__name__ == (
        "QuantizedRolloutBuffer")


def test_the_swap_does_not_last():
    from stable_baselines3.common import buffers

    assert buffers.ReplayBuffer.__module__ == "stable_baselines3.common.buffers"
    space = spaces.Dict({"a": spaces.Box(-1, 1, (2,))})
    buffers.DictReplayBuffer(10, space, spaces.Box(-1, 1, (1,)))  # calls super(ReplayBuffer, self) by name


def test_rounded():
    rb = ReplayBuffer(10, spaces.Box(-10, 10, (1,)), spaces.Box(-1, 1, (1,)))
    rb.add(np.array([[0.123456]]), np.array([[0.2]]), np.zeros((1, 1)), np.zeros(1), np.zeros(1), [{}])
    assert rb.sample(1).observations.item() == np.float32(0.123456)


def test_not_listed():
    raise IndexError("nothing here")
'''


def test_shipped_list_parses_with_the_documented_reasons():
    data = yaml.safe_load(EXPECTED_FILE.read_text())
    assert set(data["reasons"]) == REASONS
    entries = load_expected()
    assert {entry.reason for entry in entries} <= REASONS
    assert all(entry.pattern.split("/", 1)[0] in SELECTION for entry in entries)


@pytest.mark.parametrize("data, message", [
    ({"expected": {}}, "needs a 'reasons' mapping"),
    ({"reasons": {"float32": "x"}, "expected": {"a": {"reason": "float32"}}}, "needs exactly 'reason' and 'error'"),
    ({"reasons": {"float32": "x"}, "expected": {"a": {"reason": "luck", "error": "."}}}, "'luck' is not one of"),
    ({"reasons": {"float32": "x"}, "expected": {"a": {"reason": "float32", "error": "("}}}, "not a regular expression"),
])
def test_malformed_lists_are_refused(data, message):
    with pytest.raises(PlannerError, match=message):
        parse_expected(data)


def test_a_listed_test_failing_with_another_error_is_unexpected():
    entries = parse_expected({"reasons": {"rounding": "grid"},
                              "expected": {"d/tests/t.py::test_[*]": {"reason": "rounding", "error": "assert 0.12"}}})
    result = compare({"d/tests/t.py::test_[a]": {"outcome": "failed", "error": "assert 0.12 == 0.123"},
                      "d/tests/t.py::test_[b]": {"outcome": "error", "error": "TypeError: bad"},
                      "d/tests/t.py::test_skip": {"outcome": "skipped", "error": ""}}, entries, full=True)
    assert result.expected == {"rounding": ["d/tests/t.py::test_[a]"]}
    assert result.unexpected == [("d/tests/t.py::test_[b]", "[listed as rounding, but the error is not /assert 0.12/] "
                                                            "TypeError: bad")]
    assert result.skipped == ["d/tests/t.py::test_skip"] and not result.stale and not result.ok


def test_an_entry_matching_no_test_is_stale_on_a_full_run_only():
    entries = parse_expected({"reasons": {"float32": "x"},
                              "expected": {"d/tests/gone.py::*": {"reason": "float32", "error": "."}}})
    results = {"d/tests/t.py::test_a": {"outcome": "passed", "error": ""}}
    assert compare(results, entries, full=True).stale == [("d/tests/gone.py::*", "matches no test")]
    assert compare(results, entries, full=False).ok


def test_peer_suite_on_a_small_upstream_folder(tmp_path):
    """The real command: the shim swaps the buffers in, SB3's own buffers keep working, and the
    comparison sorts a listed rounding failure, an unlisted failure and a stale entry."""
    upstream = tmp_path / "work" / f"stable-baselines3-{version('stable-baselines3')}"
    (upstream / "tests").mkdir(parents=True)
    (upstream / "tests" / "test_small.py").write_text(UPSTREAM_TESTS)
    (upstream / "pyproject.toml").write_text("[tool.pytest.ini_options]\nmarkers = []\n")
    listed = tmp_path / "expected.yaml"
    listed.write_text(textwrap.dedent("""
        reasons: {rounding: grid, float32: dtype}
        expected:
          "stable-baselines3/tests/test_small.py::test_rounded": {reason: rounding, error: "assert 0.1"}
          "stable-baselines3/tests/test_small.py::test_swapped_in": {reason: float32, error: "."}
    """))
    cmd = [sys.executable, "-m", "validation.peer_suite", "--workdir", str(tmp_path / "work"), "--expected",
           str(listed), "--only", "stable-baselines3/tests/test_small.py"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "buffers swapped in: ReplayBuffer -> validation.buffers.replay.QuantizedReplayBuffer" in out
    assert "2 passed, 1 expected failures, 1 unexpected failures, 1 stale entries, 0 skipped" in out
    assert "  expected (rounding): 1" in out
    assert "  1 x IndexError: nothing here\n      stable-baselines3/tests/test_small.py::test_not_listed\n" in out
    assert ("  stable-baselines3/tests/test_small.py::test_swapped_in: "
            "stable-baselines3/tests/test_small.py::test_swapped_in passes") in out


def test_bad_input_is_one_line_and_status_2(tmp_path):
    done = subprocess.run([sys.executable, "-m", "validation.peer_suite", "--workdir", str(tmp_path), "--only",
                           "numpy/tests/test_x.py"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "peer_suite: error: --only takes DIST/tests/FILE.py with DIST one of ['sb3-contrib', 'stable-baselines3'], "
        "got 'numpy/tests/test_x.py'"]
