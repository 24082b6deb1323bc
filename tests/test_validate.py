"""``planner validate``: real SB3 training in child processes, measured and held against the planner."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from planner.profiles import load_profile, parse_profile
from validation.harness import device_differences

PLANNER = Path(sys.executable).parent / "planner"


def test_short_validation_end_to_end(planner_cli, tmp_path):
    out = tmp_path / "report"
    r = planner_cli("validate", "--env", "Hopper-v5", "--algo", "ppo", "--steps", "256", "--buffer-size", "128",
                    "--out", str(out), timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "complete"
    assert {"machine", "versions", "calibration", "runs", "checks", "plots"} <= set(report)
    assert {"ppo-baseline", "ppo-quantized"} == set(report["runs"])
    for name, run in report["runs"].items():
        assert run["status"] == "complete"
        assert {m["name"] for m in run["marks"]} >= {"start", "imports", "env_made", "model_built", "buffer_full", "end"}
        predicted = run["prediction"]["footprint"]["buffer_bytes"]
        assert run["measured"]["buffer_bytes"] == predicted
        assert run["measured"]["timing"]["training_ms_per_step"] > 0
    exact = [c for c in report["checks"] if "memory_bytes()" in c["quantity"]]
    assert len(exact) == 2 and all(c["verdict"] == "pass" for c in exact)
    header = (out / "timeseries.csv").read_text().splitlines()[0]
    assert header == "run,t_s,step,phase,rss_bytes,uss_bytes"
    for plot in ("memory.png", "returns.png"):
        assert (out / plot).stat().st_size > 10_000
    assert "buffer memory, baseline / quantized (measured)" in r.stdout


def test_a_killed_run_leaves_a_report_that_says_so(tmp_path):
    out = tmp_path / "report"
    parent = subprocess.Popen([str(PLANNER), "validate", "--env", "Walker2d-v5", "--algo", "sac", "--steps", "20000",
                               "--buffer-size", "20000", "--storage", "baseline", "--out", str(out)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    run_json = out / "sac-baseline" / "run.json"
    deadline = time.time() + 300
    while time.time() < deadline:
        if run_json.exists() and "model_built" in run_json.read_text():
            break
        time.sleep(0.5)
    else:
        parent.kill()
        pytest.fail("the training child never reached model_built")
    time.sleep(2)
    os.kill(json.loads(run_json.read_text())["pid"], signal.SIGKILL)
    stdout, _ = parent.communicate(timeout=120)
    assert parent.returncode == 1
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "incomplete: run sac-baseline killed"
    run = report["runs"]["sac-baseline"]
    assert run["status"] == "killed" and run["returncode"] == -signal.SIGKILL
    assert run["measured"]["buffer_bytes"] > 0  # what was measured up to then is kept
    assert len((out / "sac-baseline" / "timeseries.csv").read_text().splitlines()) > 5
    assert "killed" in stdout


def test_admission_refuses_a_run_over_budget(planner_cli, tmp_path):
    r = planner_cli("validate", "--env", "Humanoid-v5", "--algo", "sac", "--steps", "100", "--buffer-size", "1e6",
                    "--profile", "raspberry-pi-zero-2w", "--out", str(tmp_path / "x"))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert "largest buffer that fits is" in r.stderr and "--force" in r.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--env", "Nope-v1", "--algo", "sac", "--steps", "10"], "unknown env"),
    (["--env", "Hopper-v5", "--algo", "sac", "--steps", "10", "--sample-ms", "0"], "--sample-ms"),
    (["--env", "Hopper-v5", "--algo", "sac", "--steps", "10", "-m", "-1"], "decimals"),
    (["--env", "Hopper-v5", "--algo", "dqn", "--steps", "10"], "invalid choice"),
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
