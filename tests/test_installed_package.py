"""The package as a user gets it: built into a wheel, installed non-editable, run outside the source tree."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """``pip wheel .`` (builds the Cython extension) then ``pip install --target`` of that wheel."""
    work = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work), str(ROOT)],
                   check=True, capture_output=True, timeout=600)
    wheel = next(work.glob("justround_planner-*.whl"))
    target = work / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    return target


def _run(target: Path, *args: str) -> subprocess.CompletedProcess:
    code = "import sys; from planner.cli import main; sys.exit(main(sys.argv[1:]))"
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=target.parent, timeout=120)


def test_installed_wheel_ships_profiles_and_compiled_core(installed):
    assert len(list((installed / "planner" / "builtin_profiles").glob("*.yaml"))) >= 15
    assert list((installed / "cython_core").glob("_kernels*.so")) or list((installed / "cython_core").glob("_kernels*.pyd"))
    assert not (installed / "profiles").exists()  # installed under planner.builtin_profiles, not as a top-level package


def test_installed_package_runs_fit_against_shipped_profiles(installed):
    where = _run(installed, "profiles", "show", "jetson-nano")
    assert where.returncode == 0, where.stderr
    assert str(installed) in where.stdout  # the profile came from the installed copy
    listed = _run(installed, "profiles", "list")
    assert listed.returncode == 0 and "crazyflie-2.1" in listed.stdout
    fit = _run(installed, "fit", "--profile", "jetson-nano", "--env", "Ant-v3")
    assert fit.returncode == 0, fit.stderr
    assert "SAC" in fit.stdout and "max buffer" in fit.stdout
