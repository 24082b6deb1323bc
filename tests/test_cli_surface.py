"""What a new user meets first: help, version, help text on every option, a checkout that runs."""

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from planner.algorithms import ALGORITHMS
from planner.cli import build_parser, package_version
from planner.errors import PlannerError
from planner.fit import fit
from planner.output import check_output_path
from planner.profiles import load_profile
from planner.quantization import Quantization
from planner.runspec import RunSpec

ROOT = Path(__file__).resolve().parents[1]


def _parsers(parser: argparse.ArgumentParser, path: str = "planner"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_option_and_argument_has_help_text():
    missing = [f"{path} {action.option_strings or action.dest}" for path, parser in _parsers(build_parser())
               for action in parser._actions
               if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction))
               and not (action.help or "").strip()]
    assert missing == []


def test_every_subcommand_has_help_text():
    for path, parser in _parsers(build_parser()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                assert set(helps) == set(action.choices) and all(helps.values()), path


def test_planner_alone_prints_help_and_version_prints_the_version(planner_cli):
    alone = planner_cli()
    assert alone.returncode == 0 and alone.stderr == ""
    assert alone.stdout.startswith("usage: planner") and "estimate" in alone.stdout and "fit" in alone.stdout
    version = planner_cli("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"planner {package_version()}"
    assert package_version()[0].isdigit()


def test_a_fresh_checkout_runs_without_installing(tmp_path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=60)
    for path in ("planner", "profiles", "cython_core"):  # the working tree as it is now, committed or not
        shutil.rmtree(clone / path)
        shutil.copytree(ROOT / path, clone / path, ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
    for args in (["estimate", "--algo", "sac", "--env", "Humanoid-v5"],
                 ["fit", "--profile", "jetson-nano", "--env", "Ant-v3"], ["profiles", "list"]):
        done = subprocess.run([sys.executable, "-m", "planner", *args], cwd=clone, capture_output=True, text=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout
    check = subprocess.run([sys.executable, "-c", "import planner.profiles as p; print(p.builtin_dir())"],
                           cwd=clone, capture_output=True, text=True, timeout=60)
    assert Path(check.stdout.strip()) == clone / "profiles"


@pytest.mark.parametrize("call, param", [
    (lambda: RunSpec("sac", 17, 6, buffer_size=0), "buffer_size"),
    (lambda: RunSpec("ppo", 17, 6, buffer_size=0), "n_steps"),
    (lambda: Quantization.create(2, clamp=-1.0), "clamp"),
    (lambda: Quantization.create(2, bits=3), "bits"),
    (lambda: check_output_path("/no/such/folder/x.csv", "csv"), "csv"),
    (lambda: fit(load_profile("jetson-nano"), 17, 6, algos=("ppo",), buffer_size=10), "buffer_size"),
])
def test_library_errors_are_value_errors_naming_parameters_not_flags(call, param):
    with pytest.raises(ValueError) as caught:
        call()
    assert isinstance(caught.value, PlannerError) and param in caught.value.params
    assert param in str(caught.value) and "--" not in str(caught.value)


def test_the_cli_says_the_flag_that_set_the_parameter(planner_cli):
    done = planner_cli("estimate", "--algo", "ppo", "--obs-dim", "17", "--action-dim", "6", "--n-steps", "0")
    assert done.returncode == 2
    assert done.stderr.strip() == "planner estimate: error: --n-steps must be a whole number >= 1, got 0"


@pytest.mark.parametrize("argv, names", [
    (("reproduce",), ("eq6", "miki", "haarnoja", "figure2", "all")),
    (("profiles",), ("list", "show", "check", "calibrate")),
    (("validate", "--env", "Hopper-v5", "--steps", "10"), tuple(ALGORITHMS)),
])
def test_a_missing_argument_with_choices_is_one_line_that_lists_them(planner_cli, argv, names):
    done = planner_cli(*argv)
    assert done.returncode == 2 and done.stdout == "" and len(done.stderr.strip().splitlines()) == 1
    assert f"(choose from {', '.join(map(repr, names))})" in done.stderr
