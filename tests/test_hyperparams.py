"""``--hyperparams FILE.yml`` / ``--zoo``: rl-zoo3 hyper-parameter files, read safely, planned as the file says."""

import importlib.util
import json
from pathlib import Path

import pytest
import yaml

from planner.envs import lookup_env
from planner.errors import PlannerError
from planner.fit import fit
from planner.footprint import footprint
from planner.hyperparams import load_entry, net_from_policy_kwargs, parse_policy_kwargs, settings
from planner.profiles import load_profile
from planner.runspec import RunSpec

ZOO_SAC = Path(__file__).parent / "data" / "rl_zoo3_sac.yml"  # an excerpt of rl-zoo3 2.9.2's sac.yml


@pytest.fixture
def tuned_humanoid(tmp_path):
    """rl-zoo3's BipedalWalker-v3 SAC entry (buffer_size 300000, net_arch [400, 300]) under Humanoid-v4, an env
    the planner knows offline, so that the file sets sizes."""
    entry = load_entry(ZOO_SAC, "BipedalWalker-v3")
    path = tmp_path / "tuned.yml"
    path.write_text(yaml.safe_dump({"Humanoid-v4": entry}))
    return path


def _rows_direct(buffer_size, net):
    env = lookup_env("Humanoid-v4")
    result = fit(load_profile("jetson-nano"), env.obs_dim, env.action_dim, ("sac",), buffer_size=buffer_size, net=net,
                 env_id=env.env_id, obs_dtype=env.obs_dtype, action_dtype=env.action_dtype)
    return json.loads(json.dumps([row.as_dict() for row in result.rows]))


def test_the_real_humanoid_entry_merges_its_anchor_and_reads_float_tags():
    entry = load_entry(ZOO_SAC, "Humanoid-v4")
    assert entry == {"n_timesteps": 2e6, "policy": "MlpPolicy", "learning_starts": 10000}
    found = settings("sac", entry)  # it sets no size: SB3's defaults, buffer_size 1e6 and net 256,256
    assert (found.buffer_size, found.n_steps, found.n_envs, found.net) == (None, None, None, None)
    assert found.ignored == ("n_timesteps", "policy", "learning_starts")


def test_fit_plans_the_real_humanoid_entry(planner_cli):
    r = planner_cli("fit", "--profile", "jetson-nano", "--env", "Humanoid-v4", "--algo", "sac",
                    "--hyperparams", str(ZOO_SAC), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["hyperparams"]["env"] == "Humanoid-v4" and out["hyperparams"]["used"] == {}
    assert {row["buffer_size"] for row in out["rows"]} == {1_000_000}
    assert out["rows"] == _rows_direct(None, None)


def test_fit_plans_an_entry_that_sets_sizes(planner_cli, tuned_humanoid):
    r = planner_cli("fit", "--profile", "jetson-nano", "--env", "Humanoid-v4", "--algo", "sac",
                    "--hyperparams", str(tuned_humanoid), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["hyperparams"]["used"] == {"buffer_size": 300000, "net": [400, 300]}
    assert "use_sde" in out["hyperparams"]["not_modelled"] and "gamma" in out["hyperparams"]["ignored"]
    assert {row["buffer_size"] for row in out["rows"]} == {300000}
    assert out["rows"] == _rows_direct(300000, (400, 300))
    assert out["rows"] != _rows_direct(None, None)


def test_fit_table_says_what_came_from_the_file_and_flags_win(planner_cli, tuned_humanoid):
    r = planner_cli("fit", "--profile", "jetson-nano", "--env", "Humanoid-v4", "--algo", "sac",
                    "--hyperparams", str(tuned_humanoid), "--buffer-size", "1e5")
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[0]
    assert first.startswith(f"hyper-parameters from {tuned_humanoid} [Humanoid-v4]: net 400,300, "
                            "buffer_size 300000 overridden by --buffer-size")
    assert "(ignored: " in first and "learning_rate" in first
    assert "100,000" in r.stdout


@pytest.mark.parametrize("fixture, buffer_size, net", [(None, None, None), ("tuned", 300000, (400, 300))])
def test_estimate_plans_the_entry(planner_cli, tuned_humanoid, fixture, buffer_size, net):
    path = tuned_humanoid if fixture else ZOO_SAC
    r = planner_cli("estimate", "--env", "Humanoid-v4", "--algo", "sac", "--hyperparams", str(path), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    env = lookup_env("Humanoid-v4")
    spec = RunSpec("sac", env.obs_dim, env.action_dim, buffer_size, net=net, obs_dtype=env.obs_dtype)
    direct = json.loads(json.dumps({"spec": spec.as_dict(), **footprint(spec).as_dict()}))
    assert {k: v for k, v in out.items() if k != "hyperparams"} == direct
    assert out["spec"]["buffer_size"] == (buffer_size or 1_000_000)
    r = planner_cli("estimate", "--env", "Humanoid-v4", "--algo", "sac", "--hyperparams", str(path))
    assert r.stdout.startswith(f"hyper-parameters from {path} [Humanoid-v4]: ")


def test_estimate_takes_n_steps_and_n_envs_of_an_on_policy_entry(planner_cli, tmp_path):
    path = tmp_path / "ppo.yml"
    path.write_text("Ant-v4:\n  n_envs: 4\n  n_steps: 512\n  policy_kwargs: \"dict(log_std_init=-2, ortho_init=False,"
                    " activation_fn=nn.ReLU, net_arch=dict(pi=[256, 256], vf=[256, 256]))\"\n")
    r = planner_cli("estimate", "--env", "Ant-v4", "--algo", "ppo", "--hyperparams", str(path), "--n-envs", "2",
                    "--json")
    assert r.returncode == 0, r.stderr
    spec = json.loads(r.stdout)["spec"]
    assert (spec["buffer_size"], spec["n_envs"], spec["net"]) == (512, 2, [256, 256])


@pytest.mark.parametrize("text, expected", [
    ("dict(net_arch=[64, 64])", {"net_arch": [64, 64]}),
    ("{'net_arch': [400, 300], 'log_std_init': -3.67}", {"net_arch": [400, 300], "log_std_init": -3.67}),
    ("dict(net_arch=dict(pi=[256, 256], qf=[400, 300]))", {"net_arch": {"pi": [256, 256], "qf": [400, 300]}}),
    ("dict(\n    log_std_init=-2,\n    ortho_init=False,\n    activation_fn=nn.ReLU,\n"
     "    net_arch=dict(pi=[256, 256], vf=[256, 256])\n  )",
     {"log_std_init": -2, "ortho_init": False, "activation_fn": "nn.ReLU",
      "net_arch": {"pi": [256, 256], "vf": [256, 256]}}),
    ("dict(activation_fn=th.nn.Tanh, net_arch=(32,))", {"activation_fn": "th.nn.Tanh", "net_arch": (32,)}),
])
def test_policy_kwargs_literal_forms(text, expected):
    assert parse_policy_kwargs(text) == expected


@pytest.mark.parametrize("text", [
    "__import__('os').system('x')",
    "lambda: 1",
    "[1]*10**9",
    "open('x')",
    "dict(net_arch=[1]*10**9)",
    "dict(net_arch=open('x'))",
    "dict(a=(lambda: 1)())",
    "dict(net_arch=[64, 64][0])",
    "dict(**x)",
    "dict(a=1",
])
def test_hostile_policy_kwargs_refused_in_one_line(text):
    with pytest.raises(PlannerError) as info:
        parse_policy_kwargs(text)
    assert "\n" not in str(info.value) and str(info.value).startswith("policy_kwargs")
    assert info.value.params == ("policy_kwargs",)


def test_hostile_policy_kwargs_in_a_file_are_one_line_naming_the_key(planner_cli, tmp_path):
    path = tmp_path / "evil.yml"
    path.write_text("Humanoid-v4:\n  policy_kwargs: \"__import__('os').system('touch pwned')\"\n")
    r = planner_cli("estimate", "--env", "Humanoid-v4", "--algo", "sac", "--hyperparams", str(path), cwd=str(tmp_path))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and "policy_kwargs" in r.stderr and "--hyperparams" in r.stderr
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("algo, kwargs, net", [
    ("sac", {"net_arch": [400, 300], "activation_fn": "nn.ReLU"}, (400, 300)),
    ("sac", {"net_arch": {"pi": [64], "qf": [64]}}, (64,)),
    ("ppo", {"net_arch": {"pi": [256, 256], "vf": [256, 256]}}, (256, 256)),
    ("crossq", {"net_arch": {"pi": [256, 256], "qf": [1024, 1024]}}, None),  # CrossQ's own defaults
    ("tqc", {"net_arch": [256, 256], "n_quantiles": 25}, (256, 256)),
    ("td3", {"log_std_init": -3}, None),
])
def test_net_from_policy_kwargs(algo, kwargs, net):
    assert net_from_policy_kwargs(algo, kwargs) == net


@pytest.mark.parametrize("algo, kwargs, fragment", [
    ("sac", {"net_arch": {"pi": [256, 256], "qf": [400, 300]}}, "different pi and qf sizes"),
    ("ppo", {"net_arch": {"pi": [64]}}, "different pi and vf sizes"),
    ("sac", {"net_arch": {"pi": [64]}}, "needs both pi and qf"),
    ("tqc", {"n_quantiles": 10}, "n_quantiles=10 is not supported yet"),
    ("td3", {"n_critics": 1}, "n_critics=1 is not supported yet"),
    ("sac", {"net_arch": [64, {"pi": [64], "vf": [64]}]}, "list of positive layer sizes"),
])
def test_net_forms_not_supported_are_refused(algo, kwargs, fragment):
    with pytest.raises(PlannerError, match=fragment):
        net_from_policy_kwargs(algo, kwargs)


def test_a_size_of_the_other_kind_of_algorithm_is_refused():
    with pytest.raises(PlannerError, match="is this sac's file"):
        settings("sac", {"n_steps": 512})


def _big(tmp_path):
    path = tmp_path / "big.yml"
    path.write_text("Humanoid-v4:\n  n_timesteps: 1\n" + "# padding\n" * 110_000)
    return path


@pytest.mark.parametrize("make, fragment", [
    (lambda tmp: ZOO_SAC, "has no entry for --env 'Humanoid-v5'; it has LunarLanderContinuous-v3, "
                          "BipedalWalker-v3, HalfCheetah-v4"),
    (lambda tmp: tmp / "missing.yml", "missing.yml: no such file"),
    (lambda tmp: (tmp / "bad.yml", (tmp / "bad.yml").write_text("Humanoid-v5: [1, 2\n"))[0], "not valid YAML (line"),
    (lambda tmp: (tmp / "list.yml", (tmp / "list.yml").write_text("- 1\n"))[0], "expected rl-zoo3's format"),
    (_big, "bytes; files over 1,000,000 bytes are refused"),
])
def test_bad_files_are_one_line_exit_2(planner_cli, tmp_path, make, fragment):
    path = make(tmp_path)
    for command in (["estimate", "--algo", "sac"], ["fit", "--profile", "jetson-nano", "--algo", "sac"]):
        r = planner_cli(*command, "--env", "Humanoid-v5", "--hyperparams", str(path))
        assert r.returncode == 2, r.stdout
        assert r.stderr.count("\n") == 1 and "--hyperparams" in r.stderr and fragment in r.stderr, r.stderr


@pytest.mark.skipif(importlib.util.find_spec("rl_zoo3") is not None, reason="rl_zoo3 is installed")
def test_zoo_without_rl_zoo3_says_how_to_install_it(planner_cli):
    for command in (["estimate", "--algo", "sac"], ["fit", "--profile", "jetson-nano", "--algo", "sac"]):
        r = planner_cli(*command, "--env", "Humanoid-v4", "--zoo")
        assert r.returncode == 2 and r.stdout == ""
        assert r.stderr.count("\n") == 1 and "--zoo" in r.stderr and "pip install rl_zoo3" in r.stderr, r.stderr


@pytest.mark.parametrize("args, fragment", [
    (["estimate", "--algo", "sac", "--obs-dim", "3", "--action-dim", "1", "--hyperparams", str(ZOO_SAC)],
     "--hyperparams needs --env"),
    (["fit", "--profile", "jetson-nano", "--env", "Humanoid-v4", "--hyperparams", str(ZOO_SAC)], "give one --algo"),
    (["estimate", "--algo", "sac", "--env", "Humanoid-v4", "--zoo", "--hyperparams", str(ZOO_SAC)],
     "not allowed with argument"),
])
def test_hyperparams_usage_errors(planner_cli, args, fragment):
    r = planner_cli(*args)
    assert r.returncode == 2 and fragment in r.stderr, r.stderr
