"""``planner estimate``: output, JSON, bad input (one line, exit 2) and start-up cost."""

import json
import subprocess
import sys
import tempfile

import pytest

from planner.cli import main


def test_estimate_sb3_humanoid_buffer_bytes(planner_cli):
    r = planner_cli("estimate", "--algo", "sac", "--obs-dim", "348", "--action-dim", "17",
                    "--buffer-size", "1e6", "--storage", "sb3", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["buffer_bytes"] == 5_648_000_000


def test_estimate_accepts_underscored_counts_and_env(planner_cli):
    r = planner_cli("estimate", "--algo", "sac", "--env", "Humanoid-v5", "--buffer-size", "1_000_000", "--json")
    assert json.loads(r.stdout)["buffer_bytes"] == 5_648_000_000


def test_estimate_takes_the_papers_m_per_algorithm_as_fit_does(planner_cli):
    r = planner_cli("estimate", "--algo", "ppo", "--env", "Ant-v3", "--storage", "packed", "--bits", "12", "--json")
    assert r.returncode == 0, r.stderr  # m = 1 for PPO: 12 bits hold its 2,541 levels
    assert json.loads(r.stdout)["spec"]["quant"] == {"decimals": 1, "clamp": 127.0, "bits": 12, "rule": "explicit"}
    r = planner_cli("estimate", "--algo", "sac", "--env", "Ant-v3", "--storage", "packed", "--json")
    assert json.loads(r.stdout)["spec"]["quant"] == {"decimals": 2, "clamp": 127.0, "bits": 15, "rule": "exact"}


def test_estimate_table_names_units(planner_cli):
    r = planner_cli("estimate", "--algo", "ppo", "--env", "Ant-v3", "--storage", "packed", "-m", "1")
    assert r.returncode == 0, r.stderr
    assert "MB" in r.stdout and "% buffer" in r.stdout and "12-bit packed" in r.stdout


@pytest.mark.parametrize("args, fragment", [
    (["--storage", "zip"], "invalid choice: 'zip'"),
    (["--obs-dim", "-5", "--action-dim", "3"], "obs-dim must be"),
    (["--storage", "packed", "--decimals", "-1"], "--decimals must be"),
    (["--storage", "packed", "--decimals", "2", "--bits", "40"], "bits must be"),
    (["--env", "NoSuchEnv-v9"], "--env 'NoSuchEnv-v9' cannot be made"),
    (["--buffer-size", "lots"], "expected a whole number"),
    (["--net", "256,x"], "--net"),
    (["--net", ""], "--net expects hidden sizes"),
    (["--buffer-size", "0"], "buffer-size must be a whole number >= 1, got 0"),
    (["--buffer-size", "inf"], "no larger than 2^53"),
    (["--buffer-size", "nan"], "no larger than 2^53"),
    (["--buffer-size", "1e400"], "no larger than 2^53"),
    (["--buffer-size", "1e300"], "no larger than 2^53"),
    (["--env", "Ant-v3", "--obs-dim", "0"], "--env Ant-v3 gives the dimensions: drop --obs-dim"),
    (["-m", "2"], "storage sb3 does not quantize observations"),
    (["--storage", "paper64", "--bits", "16"], "storage paper64 does not quantize observations"),
    (["--storage", "sb3-optimize", "-m", "1"], "storage sb3-optimize does not quantize observations"),
    (["--storage", "packed", "-m", "2", "-b", "1e-9"], "smaller than one quantization step at m=2"),
    (["--storage", "packed", "-m", "2", "-b", "1e308"], "--clamp = 1e+308 at m=2 needs more than 32 bits"),
    (["--trunk", "64"], "--trunk applies to ppo"),
    (["--trunk", "64,"], "--trunk expects hidden sizes"),
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


@pytest.mark.parametrize("args, fragment", [
    (["--algo", "ppo", "--obs-dim", "17", "--action-dim", "6", "--n-steps", "0"], "--n-steps must be a whole number"),
    (["--algo", "ppo", "--obs-dim", "17", "--action-dim", "6", "--buffer-size", "100"],
     "--buffer-size is the replay capacity of off-policy algorithms; ppo takes n_steps"),
    (["--algo", "sac", "--obs-dim", "17", "--action-dim", "6", "--n-steps", "100"],
     "--n-steps is the rollout length of on-policy algorithms"),
    (["--algo", "ppo", "--obs-dim", "17", "--action-dim", "6", "--n-envs", "0"], "n-envs must be"),
])
def test_zero_is_refused_not_replaced_by_the_default(planner_cli, args, fragment):
    r = planner_cli("estimate", *args)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and fragment in lines[0]


def test_unknown_env_without_gymnasium_lists_the_known_ids(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gymnasium", None)  # import gymnasium now fails, as when it is not installed
    code = main(["estimate", "--algo", "sac", "--env", "NoSuchEnv-v9"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert "--env 'NoSuchEnv-v9' is unknown: known without gymnasium: Ant-v3, Ant-v4" in lines[0]
    assert "Humanoid-v3" in lines[0] and "Walker2d-v5" in lines[0]


def test_estimate_unit_mib(planner_cli):
    r = planner_cli("estimate", "--algo", "sac", "--obs-dim", "348", "--action-dim", "17", "--unit", "MiB")
    assert r.returncode == 0, r.stderr
    table = r.stdout.split("buffer bytes per transition")[0]
    assert "5,386.35 MiB" in table  # the buffer: 5,648,000,000 B / 2^20
    assert "2,655.03 MiB" in table  # observations: 348 x 8 B x 1e6 / 2^20
    assert " MB" not in table and "MiB  % total" in table


def test_estimate_ppo_trunk_json(planner_cli):
    r = planner_cli("estimate", "--algo", "ppo", "--obs-dim", "17", "--action-dim", "6", "--trunk", "64",
                    "--net", "64", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["spec"]["trunk"] == [64] and data["spec"]["net"] == [64]
    assert {c["name"]: c["params"] for c in data["components"]}["shared_net"] == 17 * 64 + 64


@pytest.mark.parametrize("command", [
    ["estimate", "--algo", "sac", "--env", "Humanoid-v3"],
    ["reproduce", "all"],
    ["fit", "--profile", "jetson-nano", "--env", "Ant-v3"],
    ["fit", "--all-profiles", "--env", "Humanoid-v3"],
])
def test_commands_never_import_heavy_libraries(command):
    code = ("import sys; from planner.cli import main; main(%r); "
            "heavy = [m for m in ('torch', 'stable_baselines3', 'gymnasium', 'pandas', 'scipy', 'matplotlib', "
            "'mujoco', 'memray', 'ray') if m in sys.modules]; "
            "print('HEAVY', heavy)" % (command,))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=tempfile.gettempdir())  # outside the tree: the installed package runs
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("env_id, hint", [
    ("FetchReach-v4", "FetchReach comes with gymnasium-robotics (pip install gymnasium-robotics)"),
    ("no_such_module_xyz:Thing-v0", "module no_such_module_xyz is not installed"),
])
def test_an_env_from_a_missing_package_names_the_package(planner_cli, env_id, hint):
    r = planner_cli("estimate", "--algo", "sac", "--env", env_id)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert hint in r.stderr and r.stderr.startswith(f"planner estimate: error: --env '{env_id}' cannot be made")
