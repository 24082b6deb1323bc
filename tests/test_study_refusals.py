"""``planner study`` refuses what it cannot run before any trial starts and before --out exists, in one line, exit
status 2, within 10 s (issue 24, item 4): an algorithm that cannot act in the env's action space, a grid past
1,000 trials unless confirmed, a size whose predicted footprint exceeds this host's memory (or is past 2^53), an
address where no Ray cluster answers; names from the spec are printed with control characters escaped."""

import io
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from conftest import PLANNER

from planner.units import MAX_COUNT
from validation.study.grid import arms, predicted_bytes, trials
from validation.study.progress import Progress
from validation.study.spec import read_spec

LIMIT_S = 10


def refused(tmp_path: Path, spec_text: str, *flags: str, spec_name: str = "spec.yaml") -> str:
    """The one line ``planner study SPEC --out OUT FLAGS`` answers, after checking it exits 2 within
    :data:`LIMIT_S` and leaves no OUT."""
    spec, out = tmp_path / spec_name, tmp_path / "out"
    spec.write_text(spec_text)
    start = time.monotonic()
    r = subprocess.run([str(PLANNER), "study", str(spec), "--out", str(out), *flags], capture_output=True, text=True,
                       timeout=60, cwd=tempfile.gettempdir())
    elapsed = time.monotonic() - start
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and r.stdout == "" and len(lines) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert elapsed < LIMIT_S, f"answered in {elapsed:.1f} s"
    assert not out.exists()
    return lines[0]


def group(**keys: object) -> str:
    """A one-group study, Hopper-v5 PPO sb3, 1 seed, 2,048 steps unless ``keys`` say otherwise."""
    fields = {"envs": "Hopper-v5", "algos": "ppo", "storages": "sb3", "seeds": 1, "steps": 2048, **keys}
    return "groups:\n  - {" + ", ".join(f"{k}: {v}" for k, v in fields.items()) + "}\n"


def read_spec_text(tmp_path: Path, text: str):
    """The study spec ``text``, read as ``planner study`` reads it."""
    path = tmp_path / "read.yaml"
    path.write_text(text)
    return read_spec(str(path))


def test_sac_on_a_discrete_action_space_is_refused_by_fits_rule(tmp_path):
    line = refused(tmp_path, group(envs="CartPole-v1", algos="[ppo, sac]", storages="[sb3, packed]"))
    assert line.startswith("planner study: error: study ") and line.endswith(
        "groups[0]: CartPole-v1 sac sb3: algo sac takes Box actions, got Discrete(2); for Discrete actions use one "
        "of ppo, a2c, dqn, qrdqn, trpo, ppo_lstm")  # planner fit's words: the same rule
    ppo = read_spec_text(tmp_path, group(envs="CartPole-v1", storages="[sb3, packed, calibrated]", equal_memory="true"))
    assert len(trials(ppo)) == 4  # PPO acts in Discrete(2)


def test_a_storage_that_cannot_hold_the_algorithms_buffer_is_refused(tmp_path):
    line = refused(tmp_path, group(storages="[sb3, sb3-optimize]"))
    assert line.endswith("groups[0]: Hopper-v5 ppo sb3-optimize: storage sb3-optimize holds replay buffers "
                         "(off-policy algorithms), not ppo's rollout buffer")


LARGE = "groups:\n  - {envs: Hopper-v5, algos: [ppo, sac], storages: [sb3, packed, calibrated, float16, bfloat16], " \
        "equal_memory: true, seeds: 10000, steps: 1000000}\n"  # 2 x 6 x 10,000 = 120,000 trials


def test_a_grid_of_more_than_1000_trials_is_refused_unless_confirmed(tmp_path):
    assert read_spec_text(tmp_path, LARGE).trial_count == 120_000
    line = refused(tmp_path, LARGE)
    assert line.endswith(": 120,000 trials, more than 1,000: give --confirm-large to run them all")
    # confirmed, the 120,000 trials are built and checked (the grid then fails its memory check, so nothing runs)
    huge = group(algos="sac", buffer_size=MAX_COUNT)
    line = refused(tmp_path, LARGE + huge.removeprefix("groups:\n"))
    assert "120,001 trials (groups[0] 120,000, groups[1] 1), more than 1,000: give --confirm-large" in line
    line = refused(tmp_path, LARGE + huge.removeprefix("groups:\n"), "--confirm-large")
    assert "groups[1]: Hopper-v5 sac sb3: buffer_size 9,007,199,254,740,992 needs" in line



@pytest.mark.parametrize("keys, flags, names", [
    ({"algos": "sac", "buffer_size": MAX_COUNT}, (), "groups[0]: Hopper-v5 sac sb3: buffer_size 9,007,199,254,740,992"),
    ({"algos": "sac", "storages": "calibrated", "buffer_size": MAX_COUNT}, ("--ray",),
     "groups[0]: Hopper-v5 sac calibrated: buffer_size 9,007,199,254,740,992"),
    ({"storages": "packed", "steps": 10**12, "n_steps": 10**12}, (), "groups[0]: Hopper-v5 ppo packed: n_steps "
                                                                     "1,000,000,000,000"),
], ids=["sac-2^53", "calibrated-on-ray", "ppo-n_steps"])
def test_a_footprint_past_this_hosts_memory_is_refused_naming_the_group_and_its_size(tmp_path, keys, flags, names):
    line = refused(tmp_path, group(**keys), *flags)
    size = "n_steps" if "n_steps" in keys else "buffer_size"
    assert names in line and line.endswith(f"(the planner's footprint), more than this host's memory of "
                                           f"{psutil.virtual_memory().total / 1e6:,.2f} MB: give a smaller {size}")


def test_the_calibrated_arm_is_sized_at_its_narrowest_ranges(tmp_path):
    spec = read_spec_text(tmp_path, group(algos="sac", storages="[packed, calibrated]", buffer_size=10**6))
    packed, calibrated = (arm.predicted for arm in arms(spec))
    assert 0 < calibrated < packed
    assert calibrated == predicted_bytes(arms(spec)[1].trial)


def test_a_size_past_2_to_the_53_is_one_line(tmp_path):
    line = refused(tmp_path, group(algos="sac", buffer_size=MAX_COUNT + 1))
    assert line.endswith("groups[0].buffer_size must be a whole number from 2 to 2^53, got 9007199254740993")


def test_an_address_where_nothing_answers_is_refused_within_seconds(tmp_path):
    # port 1 refuses on any machine, a Ray cluster running here or not
    line = refused(tmp_path, group(), "--address", "127.0.0.1:1")
    assert line == ("planner study: error: cannot join the Ray cluster at --address 127.0.0.1:1: no connection within "
                    "3 s (Connection refused); expected a running Ray head there (ray start --head, port 6379 by "
                    "default)")
    line = refused(tmp_path, group(), "--address", "ray://127.0.0.1:99999")  # not 99999 % 65536, which Linux tries
    assert line.endswith("--address ray://127.0.0.1:99999: port 99999 is not a TCP port (1..65535; a Ray head listens "
                         "on 6379 by default)")


def test_names_from_the_spec_are_printed_with_control_characters_escaped(tmp_path):
    line = refused(tmp_path, group(envs='"Hop\\eper-v5"'))
    assert "'Hop\\x1bper-v5' cannot be made" in line
    line = refused(tmp_path, group(storages='"pa\\ecked"'))
    assert "'pa\\x1bcked' is not one of sb3" in line
    line = refused(tmp_path, group(algos="sac", buffer_size=MAX_COUNT), spec_name="my\x1b[31mstudy.yaml")
    assert "my\\x1b[31mstudy.yaml: groups[0]" in line and "\x1b" not in line
    stream = io.StringIO()
    Progress(1, 0, stream).line("study evil\x1b[2J\x07: 1 trials, 1 to run locally")  # the spec's name
    assert stream.getvalue().endswith("| study evil\\x1b[2J\\x07: 1 trials, 1 to run locally\n")


def test_on_a_cluster_the_smallest_ray_nodes_memory_bounds_the_footprint(tmp_path, monkeypatch):
    # no cluster needed: joining is replaced by one whose smallest node gives tasks 100 MB
    from planner.errors import PlannerError
    from validation.study import backends
    from validation.study.driver import run_study

    left = []
    monkeypatch.setattr(backends, "connect_ray", lambda workers, address: (2, 100 * 10**6))
    monkeypatch.setattr(backends, "disconnect_ray", lambda: left.append(True))
    spec = tmp_path / "spec.yaml"
    spec.write_text(group(algos="sac", buffer_size=10**6))  # 203 MB: fits this host, not that node
    with pytest.raises(PlannerError, match=r"groups\[0\]: Hopper-v5 sac sb3: buffer_size 1,000,000 needs 203\.08 MB "
                                           r"\(the planner's footprint\), more than the smallest Ray node's memory of "
                                           r"100\.00 MB: give a smaller buffer_size"):
        run_study(str(spec), tmp_path / "out", address="head:6379")
    assert left == [True] and not (tmp_path / "out").exists()
