"""Shared test helpers: run the installed ``planner`` command in a fresh process; load a benchmark script."""

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

PLANNER = Path(sys.executable).parent / "planner"
BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def benchmark_module(name: str):
    """The script ``benchmarks/<name>.py`` loaded as a module (the benchmarks are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_planner(*args: str, timeout: float = 120, cwd: "str | None" = None) -> subprocess.CompletedProcess:
    """The installed ``planner`` console script in a fresh process, run outside the source tree
    (so the installed package, with its compiled core and shipped profiles, is what runs)."""
    return subprocess.run([str(PLANNER), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or tempfile.gettempdir())


@pytest.fixture
def planner_cli():
    return run_planner


@pytest.fixture
def source_checkout(tmp_path) -> Path:
    """A folder that looks like a source checkout without the compiled core: packages ``cython_core``,
    ``validation`` and ``planner`` that fail on import. A child process started there must import the installed
    packages, not these."""
    folder = tmp_path / "checkout"
    for name in ("cython_core", "validation", "planner"):
        (folder / name).mkdir(parents=True)
        (folder / name / "__init__.py").write_text(
            f"raise ImportError('{name} was imported from the current folder, not the installed package')\n")
    return folder
