"""The package as a user gets it: built into a wheel, installed non-editable, run outside the source tree."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def _python(target: Path, code: str, *args: str) -> subprocess.CompletedProcess:
    """``python -c code args`` importing from ``target`` first, run outside the source tree."""
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                          cwd=target.parent, timeout=120)


def _run(target: Path, *args: str) -> subprocess.CompletedProcess:
    return _python(target, "import sys; from planner.cli import main; sys.exit(main(sys.argv[1:]))", *args)


def test_installed_wheel_ships_profiles_and_compiled_core(installed):
    assert len(list((installed / "planner" / "builtin_profiles").glob("*.yaml"))) >= 15
    for extension in ("_kernels", "_mixed", "_escape"):
        assert (list((installed / "cython_core").glob(f"{extension}*.so"))
                or list((installed / "cython_core").glob(f"{extension}*.pyd")))
    assert not (installed / "profiles").exists()  # installed under planner.builtin_profiles, not as a top-level package
    specs = {p.name for p in (installed / "validation" / "study" / "specs").glob("*.yaml")}
    assert specs == {"evidence.yaml", "paper.yaml", "small.yaml", "smoke.yaml"}
    assert (installed / "validation" / "study" / "trial.py").is_file()


def test_installed_package_runs_fit_against_shipped_profiles(installed):
    where = _run(installed, "profiles", "show", "jetson-nano")
    assert where.returncode == 0, where.stderr
    assert str(installed) in where.stdout  # the profile came from the installed copy
    listed = _run(installed, "profiles", "list")
    assert listed.returncode == 0 and "crazyflie-2.1" in listed.stdout
    fit = _run(installed, "fit", "--profile", "jetson-nano", "--env", "Ant-v3")
    assert fit.returncode == 0, fit.stderr
    assert "SAC" in fit.stdout and "max size" in fit.stdout


ROUND_TRIP = """
import json, numpy as np
import cython_core._kernels as kernels
from cython_core import CodeLayout, PackedRows
rows = PackedRows(3, CodeLayout.uniform(6, decimals=1, clamp=127.0))
saturated = rows.encode(np.array([[-300.0, -1.5, 0.0, 0.25, 2.5, 300.0], [0.04, 0.05, 0.06, -0.05, 1e3, 9.0]]), [2, 0])
print(json.dumps({"file": kernels.__file__, "saturated": saturated, "decoded": rows.decode([2, 0, 1]).tolist()}))
"""


def test_installed_compiled_kernels_import_and_round_trip(installed):
    done = _python(installed, ROUND_TRIP)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert Path(result["file"]).resolve().is_relative_to(installed.resolve())  # the wheel's extension, not the tree's
    assert result["saturated"] == 3
    assert result["decoded"] == np.array([[-127.0, -1.5, 0.0, 0.2, 2.5, 127.0],  # 0.25 -> 0.2: half to even
                                          [0.0, 0.0, 0.1, 0.0, 127.0, 9.0],  # 0.05 * 10 is a tie: to 0
                                          [-127.0] * 6], np.float32).tolist()  # row 1 never written: code 0 is lo
