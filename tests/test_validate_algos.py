"""``planner validate`` for every algorithm the planner predicts, on its natural env (Box actions: Hopper-v5;
Discrete only: CartPole-v1), a short real run each: it completes, and the buffer and model figures the
planner predicts are what the run measured. What SB3 would refuse is refused up front: one line, exit 2,
no folder."""

import json

import pytest

from planner.algorithms import ALGORITHMS, algorithm
from planner.commands.validate import default_storages
from planner.storages import STORAGES, storage
from validation.harness.calibrate import probe_config, probe_label
from validation.harness.runconfig import RunConfig

BYTE_CHECKS = ("buffer bytes: planner vs the buffer's own memory_bytes()",
               "buffer bytes: planner vs memray, the allocations at the buffer's arrays",
               "buffer bytes: planner vs committed pages of its arrays when full (pagemap)",
               "models + optimizer state: planner vs torch tensors",
               "whole-process peak RSS: calibrated runtime + planner vs psutil")


def natural_env(algo: str) -> str:
    """The env a test trains ``algo`` on: Hopper-v5 where it takes Box actions, else CartPole-v1."""
    return "Hopper-v5" if "box" in algorithm(algo).actions else "CartPole-v1"


def short_run(algo: str) -> "list[str]":
    """A small run: one rollout of 256 steps and its update, or a 1,000-row replay buffer filled, then 50 steps."""
    if algorithm(algo).on_policy:
        return ["--n-steps", "256", "--steps", "256"]
    return ["--buffer-size", "1000", "--fill", "--steps", "50"]


def _validate(planner_cli, out, algo: str, *args: str) -> "tuple[object, dict]":
    r = planner_cli("validate", "--env", natural_env(algo), "--algo", algo, *short_run(algo), *args, "--memray",
                    "--out", str(out), timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "complete"
    return r, report


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_validate_trains_and_checks_every_algorithm(planner_cli, tmp_path, algo):
    name = "packed" if storage("packed").training_refusal(algo) is None else "sb3"  # RecurrentPPO: its own buffer
    r, report = _validate(planner_cli, tmp_path / "report", algo, "--storage", name)
    run = report["runs"][f"{algo}-{name}"]
    verdicts = {c["quantity"]: c["verdict"] for c in report["checks"]}
    assert {quantity: verdicts[quantity] for quantity in BYTE_CHECKS} == dict.fromkeys(BYTE_CHECKS, "pass")
    predicted, measured = run["prediction"]["footprint"], run["measured"]
    assert measured["buffer_bytes"] == measured["buffer_resident_full"] == measured["memray"]["buffer_arrays"] \
        == predicted["buffer_bytes"]
    assert measured["steps_done"] >= RunConfig(**run["config"]).first_update_step  # an update ran
    assert "FAIL" not in verdicts.values()
    assert probe_label(probe_config(natural_env(algo), algo)) in r.stderr  # the probe's bar says it is the probe
    assert f"{probe_label(probe_config(natural_env(algo), algo))}: runtime" in r.stdout


def test_the_calibrated_storage_trains_td3(planner_cli, tmp_path):
    r, report = _validate(planner_cli, tmp_path / "report", "td3", "--storage", "calibrated")
    assert "scanning Hopper-v5 for its observation ranges" in r.stderr
    run = report["runs"]["td3-calibrated"]
    assert run["config"]["obs_ranges"]["decimals"] == 2 and len(run["config"]["obs_ranges"]["dims"]) == 11
    assert run["measured"]["buffer_bytes"] == run["prediction"]["footprint"]["buffer_bytes"]
    verdicts = {c["quantity"]: c["verdict"] for c in report["checks"]}
    assert all(verdicts[quantity] == "pass" for quantity in BYTE_CHECKS)


REFUSED = [
    (["--env", "CartPole-v1", "--algo", "sac"], "--algo sac takes Box actions, got Discrete(2)"),
    (["--env", "CartPole-v1", "--algo", "td3", "--storage", "calibrated"], "--algo td3 takes Box actions"),
    (["--env", "Hopper-v5", "--algo", "dqn"], "--algo dqn takes Discrete actions, got Box(3)"),
    (["--env", "Hopper-v5", "--algo", "qrdqn", "--storage", "sb3-optimize"], "--algo qrdqn takes Discrete actions"),
    (["--env", "Hopper-v5", "--algo", "ppo_lstm", "--storage", "packed"],
     "--storage packed has no buffer class for ppo_lstm's recurrent rollout buffer"),
    (["--env", "Hopper-v5", "--algo", "ppo_lstm", "--storage", "calibrated"], "ppo_lstm trains with storage sb3 only"),
    (["--env", "Hopper-v5", "--algo", "a2c", "--storage", "sb3-optimize"],
     "--storage sb3-optimize holds replay buffers (off-policy algorithms), not a2c's rollout buffer"),
    (["--env", "Hopper-v5", "--algo", "trpo", "--buffer-size", "100"], "trpo takes n_steps"),
    (["--env", "CartPole-v1", "--algo", "dqn", "--n-steps", "100"], "dqn takes buffer_size"),
    (["--env", "Hopper-v5", "--algo", "a2c", "--fill"], "--fill fills an off-policy replay buffer"),
]


@pytest.mark.parametrize("args, fragment", REFUSED, ids=[" ".join(a[1:4:2]) + f" {i}" for i, (a, _) in
                                                         enumerate(REFUSED)])
def test_what_sb3_refuses_is_refused_up_front_in_one_line(planner_cli, tmp_path, args, fragment):
    out = tmp_path / "report"
    r = planner_cli("validate", *args, "--steps", "300", "--out", str(out))
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and fragment in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "scanning" not in r.stderr  # refused before the calibrated scan
    assert not out.exists()


def test_validate_offers_every_algorithm_and_the_storages_that_train_it():
    from planner.cli import build_parser

    parser = next(a for a in build_parser()._actions if a.dest == "command").choices["validate"]
    assert tuple(next(a for a in parser._actions if "--algo" in a.option_strings).choices) == tuple(ALGORITHMS)
    assert default_storages("ppo") == default_storages("dqn") == ("sb3", "packed")
    assert default_storages("ppo_lstm") == ("sb3",)  # RecurrentPPO builds its own RecurrentRolloutBuffer
    trains = {algo: [name for name, entry in STORAGES.items() if entry.trainable
                     and entry.training_refusal(algo) is None] for algo in ALGORITHMS}
    assert trains["ppo_lstm"] == ["sb3"]
    assert trains["td3"] == trains["dqn"] == ["sb3", "sb3-optimize", "packed", "calibrated", "float16", "bfloat16"]
    assert trains["a2c"] == trains["trpo"] == ["sb3", "packed", "calibrated", "float16", "bfloat16"]


@pytest.mark.parametrize("algo, learning_starts, first", [
    ("sac", 100, 101), ("td3", 1000, 1001), ("dqn", 100, 104), ("qrdqn", 1000, 1004), ("dqn", 1003, 1004),
])
def test_the_first_update_follows_the_algorithms_train_freq(algo, learning_starts, first):
    # SB3 collects train_freq steps at a time (DQN, QR-DQN: 4) and updates once it has more than learning_starts
    config = RunConfig(natural_env(algo), algo, "sb3", steps=10, buffer_size=learning_starts, decimals=2, fill=True)
    assert config.first_update_step == first


def test_recurrent_ppo_takes_no_buffer_class():
    assert RunConfig("Hopper-v5", "ppo_lstm", "sb3", steps=128, buffer_size=128, decimals=1).buffer_arguments() == {}
    with pytest.raises(Exception, match="no buffer class for ppo_lstm"):
        RunConfig("Hopper-v5", "ppo_lstm", "packed", steps=128, buffer_size=128, decimals=1).check_trainable()


def test_the_docs_list_every_algorithm_with_its_env_buffer_and_storages():
    from pathlib import Path

    from planner.actions import KINDS

    text = (Path(__file__).resolve().parents[1] / "docs" / "validate.md").read_text()
    rows = [line.split("|")[1:-1] for line in text.split("## Every algorithm", 1)[1].splitlines()
            if line.startswith("| `") and not line.startswith("| `--algo`")]
    assert [row[0].strip(" `") for row in rows] == list(ALGORITHMS)
    for row in rows:
        entry = algorithm(row[0].strip(" `"))
        trains = [name for name, s in STORAGES.items() if s.trainable and s.training_refusal(entry.name) is None]
        assert [cell.strip() for cell in row[1:5]] == [
            f"{entry.package}.{entry.class_name}", ", ".join(KINDS[k] for k in entry.actions),
            natural_env(entry.name), entry.buffer_kind]
        assert [name.strip(" `*") for name in row[5].split(",")] == trains
