"""``planner estimate``: output, JSON, bad input (one line, exit 2) and start-up cost."""

import json
import subprocess
import sys
import tempfile

import pytest


def test_estimate_sb3_humanoid_buffer_bytes(planner_cli):
    r = planner_cli("estimate", "--algo", "sac", "--obs-dim", "348", "--action-dim", "17",
                    "--buffer-size", "1e6", "--layout", "sb3", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["buffer_bytes"] == 5_648_000_000


def test_estimate_accepts_underscored_counts_and_env(planner_cli):
    r = planner_cli("estimate", "--algo", "sac", "--env", "Humanoid-v5", "--buffer-size", "1_000_000", "--json")
    assert json.loads(r.stdout)["buffer_bytes"] == 5_648_000_000


def test_estimate_table_names_units(planner_cli):
    r = planner_cli("estimate", "--algo", "ppo", "--env", "Ant-v3", "--layout", "packed", "-m", "1")
    assert r.returncode == 0, r.stderr
    assert "MB" in r.stdout and "% buffer" in r.stdout and "12-bit packed" in r.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--layout", "zip"], "unknown layout 'zip'"),
    (["--obs-dim", "-5", "--action-dim", "3"], "obs-dim must be"),
    (["--layout", "packed", "--decimals", "-1"], "decimals (m) must be"),
    (["--layout", "packed", "--decimals", "2", "--bits", "40"], "bits must be"),
    (["--env", "NoSuchEnv-v9"], "unknown env 'NoSuchEnv-v9'"),
    (["--buffer-size", "lots"], "expected a whole number"),
    (["--net", "256,x"], "--net"),
])
def test_bad_input_is_one_line_exit_2(planner_cli, args, fragment):
    base = ["estimate", "--algo", "sac"]
    if "--env" not in args and "--obs-dim" not in args:
        base += ["--obs-dim", "17", "--action-dim", "6"]
    r = planner_cli(*base, *args)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert fragment in lines[0]


@pytest.mark.parametrize("command", [
    ["estimate", "--algo", "sac", "--env", "Humanoid-v3"],
    ["reproduce", "all"],
    ["fit", "--profile", "jetson-nano", "--env", "Ant-v3"],
    ["fit", "--all-profiles", "--env", "Humanoid-v3"],
])
def test_commands_never_import_heavy_libraries(command):
    code = ("import sys; from planner.cli import main; main(%r); "
            "heavy = [m for m in ('torch', 'stable_baselines3', 'gymnasium', 'pandas', 'scipy', 'matplotlib') if m in sys.modules]; "
            "print('HEAVY', heavy)" % (command,))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=tempfile.gettempdir())  # outside the tree: the installed package runs
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr
