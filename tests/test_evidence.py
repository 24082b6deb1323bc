"""planner.evidence: the learning study's effects that ``fit`` cites are what its committed trials summarize."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from planner.defaults import default_decimals
from planner.evidence import EFFECTS, STUDY, Effect, learning_note

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def summary(tmp_path_factory):
    from validation.study.summary import summarize

    return summarize(shutil.copytree(ROOT / STUDY, tmp_path_factory.mktemp("evidence") / "study"))


def test_every_effect_is_what_the_committed_trials_summarize(summary):
    assert summary["done"] == summary["trials"] and not summary["failed"] and not summary["unfinished"]
    summarized = []
    for cell in summary["cells"]:
        base = cell["storages"]["sb3"]
        for name, arm in cell["storages"].items():
            if name in ("sb3", "calibrated"):  # the baseline; calibrated is checked identical to packed, not trained
                continue
            decimals = (int(name.split("-m", 1)[1]) if "-m" in name else default_decimals(cell["algo"])
                        if name == "packed" else None)
            summarized.append(Effect(cell["env"], cell["algo"], name, decimals, seeds=arm["seeds"],
                                     steps=max(arm["curve"]["steps"]), baseline=round(base["return_mean"], 1),
                                     effect=round(arm["effect"], 1), low=round(arm["ci_low"], 1),
                                     high=round(arm["ci_high"], 1), welch_p=round(arm["welch_p"], 3)))
    assert sorted(summarized, key=repr) == sorted(EFFECTS, key=repr)


def test_a_measured_loss_names_the_precision_that_recovers_it():
    loss = replace(EFFECTS[0], effect=-150.0, low=-250.0, high=-40.0, welch_p=0.01)
    finer = replace(EFFECTS[1], effect=-5.0, low=-90.0, high=80.0, welch_p=0.9)
    note = learning_note("Hopper-v3", "sac", 2, (loss, finer, EFFECTS[2]))
    assert note.endswith("a loss; packed m=3 changed the return by -5.0 (95 % CI -90.0 to +80.0) against SB3's "
                         "374.8, no loss detected: pack at m=3.")
    lost_too = replace(finer, high=-10.0, welch_p=0.02)
    assert learning_note("Hopper-v5", "sac", 2, (loss, lost_too, EFFECTS[2])).endswith(
        "no loss detected: store float16.")
    float_loss = replace(EFFECTS[2], high=-1.0, welch_p=0.04)
    assert learning_note("Hopper-v5", "sac", 2, (loss, lost_too, float_loss)).endswith(
        "a loss, and no finer precision the study trained recovers it.")


def test_no_loss_says_the_largest_loss_the_interval_rules_out():
    note = learning_note("Hopper-v5", "sac", 2)
    assert note.endswith("no loss detected; one larger than 115.2 (31 % of it) is ruled out.")
    assert learning_note("Ant-v3", "sac", 2) == f"Learning: {STUDY} did not train SAC on Ant packed at m=2."
    assert learning_note("Hopper-v5", "sac", 4).startswith("Learning: ") and "did not train" in \
        learning_note("Hopper-v5", "sac", 4)


def test_fit_cites_the_study_for_each_algorithm(planner_cli):
    done = planner_cli("fit", "--profile", "jetson-nano", "--env", "Walker2d-v5", "--algo", "ppo", "--json")
    assert json.loads(done.stdout)["learning"] == {"ppo": learning_note("Walker2d-v5", "ppo", 1)}
    done = planner_cli("fit", "--profile", "jetson-nano", "--env", "Walker2d-v5", "--algo", "ppo", "-m", "2")
    assert done.stdout.rstrip().splitlines()[-1] == learning_note("Walker2d-v5", "ppo", 2)
