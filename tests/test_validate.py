"""``planner validate``: real SB3 training in child processes, measured and held against the planner."""

import csv
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import PLANNER

from planner.profiles import load_profile, parse_profile
from validation.compare import Check
from validation.harness import device_differences
from validation.predict import MMAP_THRESHOLD, Runtime, predict
from validation.runconfig import RunConfig

REPORT_KEYS = {"status", "started", "machine", "versions", "profile", "runs", "checks", "calibration", "plots"}


def _validate(planner_cli, out: Path, *args: str) -> "tuple[subprocess.CompletedProcess, dict]":
    r = planner_cli("validate", *args, "--memray", "--out", str(out), timeout=600)
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report), set(report)
    assert report["status"] == "complete", report["status"]
    assert {"platform", "arch", "cpu_count", "total_memory_bytes"} <= set(report["machine"])
    assert report["versions"]["stable-baselines3"] and report["versions"]["memray"]
    failed = [c for c in report["checks"] if c["verdict"] == "FAIL"]
    assert r.returncode == (1 if failed else 0), r.stdout + r.stderr
    assert "verdict" in r.stdout and "MB" in r.stdout
    return r, report


def _buffer_bytes_agree(report: dict) -> None:
    """The buffer's memory_bytes(), its committed pages once full and memray's allocations at its arrays
    are the planner's prediction to the byte; the constructor allocated little else."""
    for name, run in report["runs"].items():
        predicted = run["prediction"]["footprint"]["buffer_bytes"]
        measured = run["measured"]
        assert measured["buffer_bytes"] == predicted, name
        assert measured["buffer_resident_full"] == predicted, name
        assert measured["memray"]["buffer_arrays"] == predicted, (name, measured["memray"])
        assert 0 <= measured["memray"]["buffer"] - predicted <= 64 * 1024, (name, measured["memray"])
        assert [m["name"] for m in run["marks"]][-1] == "end"
        assert measured["timing"]["training_ms_per_step"] > 0
        verdicts = {c["quantity"]: c["verdict"] for c in report["checks"] if c["run"] == name}
        assert verdicts["buffer bytes: planner vs the buffer's own memory_bytes()"] == "pass"
        assert verdicts["buffer bytes: planner vs memray, the allocations at the buffer's arrays"] == "pass"


def test_ppo_validation_end_to_end(planner_cli, tmp_path):
    out = tmp_path / "report"
    r, report = _validate(planner_cli, out, "--env", "Hopper-v5", "--algo", "ppo", "--steps", "4096",
                          "--n-steps", "2048")
    assert set(report["runs"]) == {"ppo-sb3", "ppo-packed"}
    _buffer_bytes_agree(report)
    for run in report["runs"].values():
        assert {m["name"] for m in run["marks"]} >= {"start", "imports", "env_made", "model_built", "buffer_full",
                                                      "training_starts", "end"}
    buffers = {n: run["measured"]["buffer_bytes"] for n, run in report["runs"].items()}
    assert buffers["ppo-packed"] < buffers["ppo-sb3"]  # 12-bit packed observations
    assert "buffer memory, sb3 / packed (measured)" in r.stdout
    with open(out / "timeseries.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["run"] for row in rows} == {"ppo-sb3", "ppo-packed"}
    assert all(int(row["rss_bytes"]) > 0 for row in rows)
    assert [Path(p).name for p in report["plots"]] == ["memory.png", "returns.png"]
    for plot in report["plots"]:
        assert Path(plot).stat().st_size > 10_000


def test_sac_fill_validation_measures_the_buffer_filling(planner_cli, tmp_path):
    _, report = _validate(planner_cli, tmp_path / "report", "--env", "Hopper-v5", "--algo", "sac", "--steps", "50",
                          "--buffer-size", "6000", "--fill")
    _buffer_bytes_agree(report)
    for name, run in report["runs"].items():
        marks = [m["name"] for m in run["marks"]]
        assert marks.index("buffer_10pct") < marks.index("buffer_full") < marks.index("training_starts")
        assert run["measured"]["steps_done"] == 6000 + 50
        growth = next(c for c in report["checks"] if c["run"] == name and c["quantity"].startswith("RSS growth"))
        assert growth["predicted"] > 100_000 and growth["measured"] is not None and growth["verdict"] != "n/a"


def test_a_killed_run_leaves_a_report_that_says_so(tmp_path):
    out = tmp_path / "report"
    parent = subprocess.Popen([str(PLANNER), "validate", "--env", "Hopper-v5", "--algo", "ppo", "--steps", "1000000",
                               "--n-steps", "256", "--storage", "sb3", "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    run_json = out / "ppo-sb3" / "run.json"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:  # wait until the run has measured its full rollout buffer
            if run_json.exists() and "buffer_full" in [m["name"] for m in json.loads(run_json.read_text())["marks"]]:
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the run never reached buffer_full")
        os.kill(json.loads(run_json.read_text())["pid"], signal.SIGKILL)
        stdout, stderr = parent.communicate(timeout=120)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert parent.returncode == 1, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "incomplete: run ppo-sb3 killed"
    run = report["runs"]["ppo-sb3"]
    assert run["status"] == "killed" and run["returncode"] == -signal.SIGKILL
    marks = [m["name"] for m in run["marks"]]
    assert "buffer_full" in marks and "end" not in marks  # what was measured up to then is kept
    assert run["measured"]["buffer_resident_full"] == run["measured"]["buffer_bytes"] > 0
    assert len((out / "ppo-sb3" / "timeseries.csv").read_text().splitlines()) > 2
    assert (out / "memory.png").stat().st_size > 0
    assert "killed" in stdout


def test_admission_refuses_a_run_over_budget(planner_cli, tmp_path):
    r = planner_cli("validate", "--env", "Humanoid-v5", "--algo", "sac", "--steps", "100", "--buffer-size", "1e6",
                    "--profile", "raspberry-pi-zero-2w", "--out", str(tmp_path / "x"))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert "the largest --buffer-size that fits is" in r.stderr and "--force to run anyway" in r.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--env", "Nope-v1", "--algo", "sac", "--steps", "10"], "--env 'Nope-v1' cannot be made"),
    (["--env", "Hopper-v5", "--algo", "sac", "--steps", "10", "--sample-ms", "0"], "--sample-ms"),
    (["--env", "Hopper-v5", "--algo", "sac", "--steps", "10", "-m", "-1"], "decimals"),
    (["--env", "Hopper-v5", "--algo", "dqn", "--steps", "10"], "invalid choice"),
    (["--env", "Hopper-v5", "--algo", "sac", "--steps", "0"], "--steps must be at least 1"),
    (["--env", "Hopper-v5", "--algo", "sac", "--steps", "10", "--buffer-size", "0"], "buffer-size"),
    (["--env", "Hopper-v5", "--algo", "ppo", "--steps", "10", "--n-steps", "inf"], "--n-steps"),
    (["--env", "Hopper-v5", "--algo", "ppo", "--steps", "10", "--buffer-size", "100"], "ppo takes n_steps"),
    (["--env", "Hopper-v5", "--algo", "sac", "--steps", "10", "--profile", "no-such-device"], "no-such-device"),
])
def test_validate_bad_input(planner_cli, args, fragment):
    r = planner_cli("validate", *args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and fragment in r.stderr


def test_device_differences_name_arch_and_memory():
    data = {"name": "far", "description": "d", "class": "sbc", "arch": "xtensa", "total_memory": "1MB",
            "gpu_shares_memory": False, "os_reserve": 0, "runtime": 0, "margin": 0, "cpu": "c",
            "runs_python": False, "runs_torch": False, "source": ["s"]}
    notes = device_differences(parse_profile(data))
    assert any(n.startswith("architecture") for n in notes) and any(n.startswith("total memory") for n in notes)


def test_calibrate_writes_a_profile_that_loads(planner_cli, tmp_path):
    out = tmp_path / "this-machine.yaml"
    r = planner_cli("profiles", "calibrate", "--out", str(out), timeout=600)
    assert r.returncode == 0, r.stderr
    profile = load_profile(str(out))
    assert 100e6 < profile.runtime < 2e9  # Python + torch + SB3 + MuJoCo: hundreds of MB
    assert profile.budget().available > 0
    assert not list(Path(tmp_path).glob(".*partial*"))
    fit = planner_cli("fit", "--profile", str(out), "--env", "Ant-v3")
    assert fit.returncode == 0, fit.stderr
    written = yaml.safe_load(out.read_text())
    for key in ("total_memory", "os_reserve", "runtime", "margin"):  # sizes with units, as profiles must have
        assert re.fullmatch(r"[0-9]+\.[0-9]{3}MB", written[key]), (key, written[key])


def test_the_progress_bar_stays_short_when_a_rollout_runs_past_the_steps(tmp_path, capfd):
    # PPO collects whole rollouts: 1 step asked, 2,048 run. The bar is tqdm's, drawn by the parent from the
    # child's samples (the measured process draws nothing), and does not grow with steps done / steps asked.
    from validation.runner import run_child

    run = run_child(RunConfig("Hopper-v5", "ppo", "sb3", steps=1, buffer_size=2048, decimals=1), tmp_path)
    assert run["status"] == "complete" and run["measured"]["steps_done"] == 2048
    err = capfd.readouterr().err
    assert "ppo-sb3" in err and "2048step" in err  # past its total, tqdm counts on without a bar
    assert len(err) < 2000, err[:300]



def test_predicted_curve_steps_through_built_acting_and_training():
    config = RunConfig("Walker2d-v5", "sac", "packed", steps=100, buffer_size=50_000, decimals=2, fill=True)
    p = predict(config, Runtime(built_bytes=300_000_000, acting_bytes=305_000_000, training_bytes=320_000_000))
    fp = p.footprint
    assert p.phase_at(0) == p.phase_at(50_000) == "built"  # SAC acts at random until learning_starts
    assert p.phase_at(50_001) == "training" and config.first_update_step == 50_001
    eager = sum(f.bytes for f in fp.fields if f.eager or f.bytes < MMAP_THRESHOLD)
    assert p.rss_at(0) == 300_000_000 + fp.models_bytes + eager
    half = p.rss_at(25_000) - p.rss_at(0)
    assert half == (fp.buffer_bytes - eager) // 2  # lazily committed pages grow with the rows written
    assert p.rss_at(50_000, "acting") == 305_000_000 + fp.models_bytes + fp.buffer_bytes
    assert p.rss_at(50_001) == p.peak_bytes == 320_000_000 + fp.total_bytes
    ppo = predict(RunConfig("Hopper-v5", "ppo", "sb3", 4096, 2048, 1), Runtime(1, 2, 3))
    assert [ppo.phase_at(s) for s in (0, 1, 2047, 2048)] == ["built", "acting", "acting", "training"]


@pytest.mark.parametrize("predicted, measured, tolerance, allowance, verdict", [
    (1000, 1000, 0, 0, "pass"), (1000, 1001, 0, 0, "FAIL"),
    (1000, 1010, 0.01, 0, "pass"), (1000, 1011, 0.01, 0, "FAIL"), (1000, 989, 0.01, 0, "FAIL"),
    (1000, 1500, 0.01, 500, "pass"), (1000, 1501, 0.01, 500, "FAIL"), (1000, None, 0.01, 0, "n/a"),
    (0, 4096, 0.01, 8192, "pass"), (0, 4096, 0.01, 0, "FAIL"),
])
def test_check_verdicts(predicted, measured, tolerance, allowance, verdict):
    assert Check("run", "q", predicted, measured, tolerance, allowance=allowance).verdict == verdict
