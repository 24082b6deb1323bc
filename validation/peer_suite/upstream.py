"""The upstream test suites: stable-baselines3's and sb3-contrib's ``tests/`` for the installed versions.

Their sdists on PyPI carry ``tests/``; :func:`upstream_tests` fetches one with ``pip download`` and keeps
``tests/`` and ``pyproject.toml`` (pytest's configuration: markers, warning filters) in a work folder,
without the package sources, so the tests import the installed package. A later run reuses the folder.
"""

import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path, PurePosixPath

from planner.errors import PlannerError

# The upstream test files that train or build SB3's replay / rollout buffers (ReplayBuffer, DictReplayBuffer,
# NStepReplayBuffer, RolloutBuffer, DictRolloutBuffer, HerReplayBuffer). Left out: files that build no buffer
# (logger, envs, vec envs, distributions, preprocessing, ...); sb3-contrib's test_lstm.py and
# test_invalid_actions.py (RecurrentPPO and MaskablePPO use sb3-contrib's own buffers); and, for time on
# 2 cores (measured 30 November 2026, loaded machine), SB3's test_cnn.py (320 s), test_train_eval_mode.py
# (197 s), test_sde.py (148 s), test_predict.py (75 s), test_custom_policy.py (70 s), test_deterministic.py
# (56 s): pass them with --only.
SELECTION = {
    "stable-baselines3": ("test_buffers.py", "test_n_step_replay.py", "test_her.py", "test_save_load.py",
                          "test_dict_env.py", "test_spaces.py", "test_identity.py", "test_gae.py",
                          "test_callbacks.py", "test_run.py", "test_vec_normalize.py"),
    "sb3-contrib": ("test_run.py", "test_save_load.py", "test_dict_env.py", "test_identity.py", "test_cnn.py",
                    "test_deterministic.py", "test_train_eval_mode.py"),
}
# A 5,000-step DQN + HER learning run (229 s): HER's buffer is exercised by the rest of test_her.py.
DESELECTED = ("tests/test_her.py::test_performance_her",)
KEPT = ("tests", "pyproject.toml")


def installed_version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError as err:
        raise PlannerError(f"{dist} is not installed: pip install '.[train]' sb3-contrib") from err


def upstream_tests(dist: str, workdir: Path) -> Path:
    """``workdir/<dist>-<installed version>``, holding that version's ``tests/`` (downloaded once)."""
    target = workdir / f"{dist}-{installed_version(dist)}"
    if (target / "tests").is_dir():
        return target
    workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        sdist = _download(dist, installed_version(dist), Path(tmp))
        staged = Path(tmp) / "staged"
        _extract(sdist, staged)
        staged.rename(target)  # in place whole or not at all
    return target


def _download(dist: str, ver: str, into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "-q", f"{dist}=={ver}",
           "-d", str(into)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    sdists = list(into.glob("*.tar.gz"))
    if done.returncode != 0 or len(sdists) != 1:
        last = (done.stderr.strip().splitlines() or ["no sdist"])[-1]
        raise PlannerError(f"could not download the {dist} {ver} sdist with pip ({last}); "
                           f"or unpack its tests/ into --workdir yourself")
    return sdists[0]


def _extract(sdist: Path, into: Path) -> None:
    """The sdist's ``tests/`` files and ``pyproject.toml`` under ``into`` (regular files only, no path escapes)."""
    with tarfile.open(sdist) as tar:
        for member in tar.getmembers():
            parts = PurePosixPath(member.name).parts[1:]  # below the sdist's top folder
            if not member.isfile() or not parts or parts[0] not in KEPT or ".." in parts:
                continue
            path = into.joinpath(*parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst)
    if not (into / "tests").is_dir():
        raise PlannerError(f"{sdist.name} holds no tests/ folder")

