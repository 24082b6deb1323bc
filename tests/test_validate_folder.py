"""``planner validate``'s report folder and its up-front refusals: a fresh folder (or one cleared with
--overwrite), one validation at a time, and nothing created for input a training child would refuse."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PLANNER
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from validation.harness.folder import LOCK_NAME, claim, holder
from validation.harness.report import read_report
from validation.harness.runner import read_run

RUN = ("validate", "--env", "Hopper-v5", "--algo", "sac", "--steps", "10", "--no-memray")


def _one_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    return r.stderr


def test_a_folder_holding_an_earlier_report_is_refused_and_left_as_it_was(planner_cli, tmp_path):
    out = tmp_path / "report"
    (out / "sac-sb3").mkdir(parents=True)
    earlier = {"status": "complete", "started": "2026-11-30T10:00:00+0000", "pid": 1, "runs": {}}
    (out / "report.json").write_text(json.dumps(earlier))
    (out / "sac-sb3" / "run.json").write_text('{"pid": 1}')
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    err = _one_line(planner_cli(*RUN, "--out", str(out)))
    assert f"--out {out}: not empty (a validation report, status complete" in err and "--overwrite" in err
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before
    assert json.loads((out / "report.json").read_text()) == earlier


def test_any_other_content_or_a_file_is_refused(planner_cli, tmp_path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    assert "not empty (1 entry, e.g. 'notes.txt')" in _one_line(planner_cli(*RUN, "--out", str(tmp_path / "busy")))
    (tmp_path / "file").write_text("x")
    assert "exists and is not a folder" in _one_line(planner_cli(*RUN, "--out", str(tmp_path / "file")))
    assert (tmp_path / "busy" / "notes.txt").read_text() == "mine" and (tmp_path / "file").read_text() == "x"


def test_overwrite_clears_the_folder_but_never_follows_a_link_out_of_it(tmp_path):
    out, outside = tmp_path / "report", tmp_path / "outside"
    (out / "sac-sb3" / "memray").mkdir(parents=True)
    (out / "report.json").write_text("{}")
    (out / "sac-sb3" / "memray" / "run.json").write_text("{}")
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (out / "link").symlink_to(outside)
    with claim(out, overwrite=True):
        assert os.listdir(out) == [LOCK_NAME]
        assert holder(out) == os.getpid()
    assert os.listdir(out) == [] and holder(out) is None
    assert (outside / "keep.txt").read_text() == "keep"


def test_a_second_validation_into_a_held_folder_is_refused_even_with_overwrite(planner_cli, tmp_path):
    out = tmp_path / "report"
    with claim(out, overwrite=False):
        (out / "report.json").write_text(json.dumps({"status": "running", "pid": os.getpid()}))
        for extra in ((), ("--overwrite",)):
            err = _one_line(planner_cli(*RUN, "--out", str(out), *extra))
            assert f"another validation (pid {os.getpid()}) is writing into it" in err
        assert read_report(out)["status"] == "running"  # its validation is alive
        assert sorted(os.listdir(out)) == sorted([LOCK_NAME, "report.json"])
    # the holder is gone without finishing its report (as after SIGKILL): readers say killed
    report = read_report(out)
    assert report["status"] == "killed" and f"pid {os.getpid()}" in report["reason"]
    assert "status killed" in _one_line(planner_cli(*RUN, "--out", str(out)))


@pytest.mark.parametrize("args, fragment", [
    (["--algo", "ppo", "--steps", "100", "--n-steps", "2048"],
     "--steps 100 is below --n-steps 2,048: ppo trains whole rollouts, so it would train 2,048 steps"),
    (["--algo", "ppo", "--steps", "4096", "--fill"], "--fill fills an off-policy replay buffer"),
    (["--algo", "sac", "--steps", "10", "--buffer-size", "1"], "--buffer-size 1 is below 2"),
    (["--algo", "ppo", "--steps", "10", "--n-steps", "1"], "--n-steps 1 is below 2"),
])
def test_what_a_child_would_refuse_is_refused_before_anything_is_created(planner_cli, tmp_path, args, fragment):
    out = tmp_path / "report"
    r = subprocess.run([str(PLANNER), "validate", "--env", "Hopper-v5", *args, "--out", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert fragment in _one_line(r)
    assert os.listdir(tmp_path) == []


def test_an_algorithm_that_cannot_act_in_the_env_is_refused_before_anything_is_created(tmp_path):
    r = subprocess.run([str(PLANNER), "validate", "--env", "CartPole-v1", "--algo", "sac", "--steps", "10", "--out",
                        str(tmp_path / "report")], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert "--algo sac takes Box actions, got Discrete(2)" in _one_line(r)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("command, module", [
    (["validate", "--env", "Hopper-v5", "--algo", "sac", "--steps", "10"], "torch"),
    (["validate", "--env", "Hopper-v5", "--algo", "ppo", "--steps", "4096"], "stable_baselines3"),
    (["validate", "--env", "Hopper-v5", "--algo", "sac", "--steps", "10"], "gymnasium"),
    (["profiles", "calibrate", "--out", "me.yaml"], "torch"),
    (["obs", "scan", "--env", "Hopper-v5", "--out", "hopper.yaml"], "gymnasium"),
])
def test_a_missing_train_extra_is_one_line_before_anything_starts(tmp_path, command, module):
    code = (f"import sys; sys.modules[{module!r}] = None\n"  # as if not installed: import and find_spec fail
            "from planner.cli import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, cwd=tmp_path,
                       timeout=120)
    err = _one_line(r)
    name = " ".join(command[:1 if command[0] == "validate" else 2])
    assert f"planner {name} needs the [train] extra, which is not installed ({module} not importable)" in err
    assert not Path(tmp_path / "runs").exists() and os.listdir(tmp_path) == []


def test_an_earlier_runs_run_json_is_never_taken_for_this_runs(tmp_path):
    # the finding: a child killed at start left the folder's earlier run.json, read as this run's
    (tmp_path / "run.json").write_text(json.dumps({"pid": 1, "status": "complete", "marks": [{"name": "end"}],
                                                   "measured": {"buffer_bytes": 5}}))
    child = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    child.wait()
    run = read_run(tmp_path, child)
    assert run["status"] == "killed" and run["signal"] == "SIGKILL" and run["marks"] == [] and run["measured"] == {}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(algo=st.sampled_from(["ppo", "sac"]), steps=st.integers(1, 3000), size=st.integers(1, 3000),
       fill=st.booleans())
def test_validate_accepts_only_what_trains_as_asked(tmp_path, monkeypatch, capsys, algo, steps, size, fill):
    """Fuzzed sizes: validate either refuses them (one line, exit 2, nothing created) or hands the harness
    configurations that SB3 builds and trains as asked: no rollout longer than the steps, no ignored --fill."""
    import gymnasium

    import validation.harness.validate
    from planner.cli import main
    from validation.harness.child import build_model

    jobs = []
    monkeypatch.setattr(validation.harness.validate, "validate",
                        lambda job: jobs.append(job) or ({"status": "complete"}, []))
    monkeypatch.setattr(validation.harness.validate, "summary", lambda report, checks: "")
    out = tmp_path / f"out-{algo}-{steps}-{size}-{fill}"
    size_flag = "--n-steps" if algo == "ppo" else "--buffer-size"
    code = main(["validate", "--env", "Hopper-v5", "--algo", algo, "--steps", str(steps), size_flag, str(size),
                 "--out", str(out), "--storage", "sb3"] + (["--fill"] if fill else []))
    err = capsys.readouterr().err
    if not jobs:
        assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
        assert not out.exists()
        assert (algo == "ppo" and (steps < size or fill)) or size < 2
        return
    (config,) = jobs[0].configs
    assert size >= 2 and (algo == "sac" or (steps >= size and not fill))
    model = build_model(config, gymnasium.make("Hopper-v5"))
    model._setup_model()  # SB3 accepts it
    buffer = model.rollout_buffer if algo == "ppo" else model.replay_buffer
    assert buffer.buffer_size == size
    assert config.total_steps == (steps + size if (fill and algo == "sac") else steps) >= size * (algo == "ppo")


def test_a_run_started_in_a_source_checkout_imports_the_installed_package(source_checkout):
    # the finding: run from the repository's root, the training child imported the source tree's cython_core,
    # which has no compiled modules, and every packed run failed
    out = source_checkout / "report"
    r = subprocess.run([str(PLANNER), *RUN, "--storage", "packed", "--out", str(out)], capture_output=True,
                       text=True, cwd=source_checkout, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert read_report(out)["status"] == "complete"


def test_cuda_where_torch_sees_none_is_one_line_and_auto_trains_on_the_cpu(tmp_path):
    import torch

    from planner.commands.validate import torch_device

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU: the refusal is for machines without one")
    r = subprocess.run([str(PLANNER), "validate", "--env", "Hopper-v5", "--algo", "ppo", "--steps", "2048", "--device",
                        "cuda", "--out", str(tmp_path / "report")], capture_output=True, text=True, cwd=tmp_path,
                       timeout=120)
    assert r.returncode == 2 and "--device cuda: torch" in _one_line(r) and "sees no CUDA GPU here" in r.stderr
    assert os.listdir(tmp_path) == []
    assert torch_device("auto") == torch_device("cpu") == "cpu"
