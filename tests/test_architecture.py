"""The house's shape: imports flow one way, the Python API is what the README shows, the example is installed."""

import ast
import doctest
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import planner

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "stable_baselines3", "sb3_contrib", "gymnasium", "ray", "scipy", "matplotlib")


def module_imports(path: Path, top_level_only: bool) -> "set[str]":
    """The modules ``path`` imports (at module level only, or anywhere)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def offenders(folder: str, forbidden: "tuple[str, ...]", top_level_only: bool = False) -> "list[str]":
    return [f"{path.relative_to(ROOT)}: {name}" for path in sorted((ROOT / folder).rglob("*.py"))
            for name in sorted(module_imports(path, top_level_only))
            if any(name == f or name.startswith(f + ".") for f in forbidden)]


def test_the_buffers_import_nothing_of_the_harness_the_study_or_the_cli():
    assert offenders("validation/buffers", ("validation.harness", "validation.study", "validation.scan",
                                            "validation.peer_suite", "planner.cli", "planner.commands")) == []


def test_the_kernels_import_neither_the_planner_nor_validation():
    assert offenders("cython_core", ("planner", "validation")) == []


def test_the_planner_imports_no_training_stack_at_module_level_and_validation_only_in_its_commands():
    assert offenders("planner", HEAVY + ("validation",), top_level_only=True) == []
    lazily = {line.split(":")[0] for line in offenders("planner", ("validation",))}
    assert lazily <= {f"planner/commands/{name}.py" for name in ("obs", "options", "profiles", "study", "validate")}


def test_the_api_names_resolve_and_help_shows_them():
    assert planner.__all__ == sorted(planner.__all__)
    for name in planner.__all__:
        assert getattr(planner, name) is not None
    assert "fit" in planner.__doc__ and "load_profile" in planner.__doc__


def test_the_readme_python_api_example_runs():
    text = (ROOT / "README.md").read_text()
    section = re.search(r"^## Python API\n(.*?)^## ", text, re.S | re.M)
    assert section, "README.md has no '## Python API' section"
    blocks = re.findall(r"```python\n(.*?)```", section.group(1), re.S)
    assert blocks and all(">>>" in block for block in blocks)
    test = doctest.DocTestParser().get_doctest("\n".join(blocks), {}, "README: Python API", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    runner.run(test)
    assert runner.failures == 0 and runner.tries >= 3


@pytest.mark.parametrize("args", [("--help",), ("--algo", "ppo", "--env", "Hopper-v5", "--steps", "64")])
def test_the_example_training_script_is_installed(args):
    done = subprocess.run([sys.executable, "-m", "validation.train_quantized", *args], capture_output=True, text=True,
                          timeout=300, cwd=tempfile.gettempdir())
    assert done.returncode == 0, done.stderr[-2000:]
    if "--steps" in args:
        assert "planner predicts" in done.stdout and "(equal)" in done.stdout
