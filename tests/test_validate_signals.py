"""``planner validate`` stopped from outside: Ctrl-C, SIGTERM, SIGHUP and SIGKILL of the validation, SIGKILL of
its training child. Each ends with a report that says what happened, holding what was measured, and no
training process of it survives (its child runs in a process group of its own, which is checked empty)."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from conftest import PLANNER

from validation.harness.folder import LOCK_NAME
from validation.harness.report import read_report

# PPO with a 64-step rollout: the probe and the run reach their marks in seconds, and never finish
COMMAND = ("validate", "--env", "Hopper-v5", "--algo", "ppo", "--steps", "1000000", "--n-steps", "64",
           "--storage", "sb3", "--no-memray")


def _start(out: Path) -> subprocess.Popen:
    return subprocess.Popen([str(PLANNER), *COMMAND, "--out", str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=out.parent)


def _wait_for_mark(parent: subprocess.Popen, run_json: Path, mark: str, timeout: float = 240) -> int:
    """The pid of the child writing ``run_json`` once it has passed ``mark``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert parent.poll() is None, parent.communicate()
        try:
            data = json.loads(run_json.read_text())
        except (OSError, ValueError):
            data = {}
        if mark in [m["name"] for m in data.get("marks", ())]:
            return data["pid"]
        time.sleep(0.1)
    raise AssertionError(f"{run_json} never reached {mark}")


def _group(pgid: int) -> "list[psutil.Process]":
    """The live (not zombie) processes of process group ``pgid``."""
    alive = []
    for process in psutil.process_iter(["status"]):
        try:
            if os.getpgid(process.pid) == pgid and process.info["status"] != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return alive


def _assert_gone(child_pid: int, timeout: float = 15) -> None:
    """No process of the child's group (the child leads it) survives."""
    deadline = time.monotonic() + timeout
    while _group(child_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _group(child_pid), [p.as_dict(["pid", "cmdline"]) for p in _group(child_pid)]


def _stop(parent: subprocess.Popen, signum: int) -> "tuple[str, str]":
    parent.send_signal(signum)
    try:
        return parent.communicate(timeout=120)
    finally:
        if parent.poll() is None:
            parent.kill()


def test_ctrl_c_is_one_line_exit_130_and_the_report_holds_what_was_measured(tmp_path):
    out = tmp_path / "report"
    parent = _start(out)
    child = _wait_for_mark(parent, out / "ppo-sb3" / "run.json", "buffer_full")
    assert os.getpgid(child) == child  # a process group of its own
    _, err = _stop(parent, signal.SIGINT)
    assert parent.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines()[-1] == (f"planner validate: interrupted by SIGINT; what was measured is in "
                                            f"{out}/report.json")
    _assert_gone(child)
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "interrupted" and report["signal"] == "SIGINT"
    assert report["calibration"]["runtime_bytes"]["training_bytes"] > 0
    run = report["runs"]["ppo-sb3"]
    assert run["status"] == "interrupted" and run["pid"] == child
    assert {"model_built", "buffer_full"} <= {m["name"] for m in run["marks"]}
    assert run["measured"]["buffer_resident_full"] == run["measured"]["buffer_bytes"] > 0
    assert not (out / LOCK_NAME).exists() and read_report(out)["status"] == "interrupted"


@pytest.mark.parametrize("signum, mark", [(signal.SIGTERM, "model_built"), (signal.SIGHUP, "start")])
def test_sigterm_and_sighup_kill_the_training_child_and_the_report_says_killed(tmp_path, signum, mark):
    out = tmp_path / "report"
    parent = _start(out)
    child = _wait_for_mark(parent, out / "calibration" / "run.json", mark)
    _, err = _stop(parent, signum)
    name = signal.Signals(signum).name
    assert parent.returncode == 128 + signum, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith(f"planner validate: killed by {name}")
    _assert_gone(child)
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "killed" and report["signal"] == name and report["reason"] == f"stopped by {name}"
    probe = report["calibration"]["probe"]
    assert probe["status"] == "killed" and probe["pid"] == child and mark in [m["name"] for m in probe["marks"]]
    assert not (out / LOCK_NAME).exists()


def test_sigkill_of_the_validation_takes_its_child_and_readers_see_killed(planner_cli, tmp_path):
    out = tmp_path / "report"
    parent = _start(out)
    child = _wait_for_mark(parent, out / "calibration" / "run.json", "start")
    _stop(parent, signal.SIGKILL)
    _assert_gone(child)  # PR_SET_PDEATHSIG: the kernel killed it with its parent
    assert json.loads((out / "report.json").read_text())["status"] == "running"  # its last write
    report = read_report(out)
    assert report["status"] == "killed" and f"(pid {parent.pid}) ended without writing its final report" in \
        report["reason"]
    r = planner_cli(*COMMAND, "--out", str(out))
    assert r.returncode == 2 and "not empty (a validation report, status killed" in r.stderr


def test_a_killed_child_leaves_a_report_that_says_so(tmp_path):
    out = tmp_path / "report"
    parent = _start(out)
    child = _wait_for_mark(parent, out / "ppo-sb3" / "run.json", "buffer_full")
    os.kill(child, signal.SIGKILL)
    stdout, stderr = parent.communicate(timeout=120)
    assert parent.returncode == 1, stderr
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "killed" and report["reason"] == "run ppo-sb3 killed by SIGKILL"
    run = report["runs"]["ppo-sb3"]
    assert run["status"] == "killed" and run["returncode"] == -signal.SIGKILL
    marks = [m["name"] for m in run["marks"]]
    assert "buffer_full" in marks and "end" not in marks  # what was measured up to then is kept
    assert run["measured"]["buffer_resident_full"] == run["measured"]["buffer_bytes"] > 0
    assert len((out / "ppo-sb3" / "timeseries.csv").read_text().splitlines()) > 2
    assert (out / "memory.png").stat().st_size > 0
    assert "status: killed (run ppo-sb3 killed by SIGKILL)" in stdout
    _assert_gone(child)
