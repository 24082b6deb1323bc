"""One training run in a fresh interpreter (``validation.child``), and what describes the machine it ran on.

Used by the harness (baseline and quantized runs) and by calibration (the probe runs).
"""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import psutil
from tqdm import tqdm

from validation.predict import MMAP_THRESHOLD
from validation.runconfig import RunConfig

POLL_S = 0.5  # how often the progress bar reads the child's step


def machine() -> dict:
    memory = psutil.virtual_memory()
    return {"platform": platform.platform(), "arch": platform.machine(), "cpu": platform.processor() or "unknown",
            "cpu_count": psutil.cpu_count(), "total_memory_bytes": memory.total, "python": platform.python_version()}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("justround-planner", "numpy", "torch", "stable-baselines3", "gymnasium", "mujoco", "memray", "psutil"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def latest_step(run_dir: Path) -> int:
    """The step of the newest sample in a run's timeseries.csv (0 before the first)."""
    try:
        with open(run_dir / "timeseries.csv", "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - 512))
            lines = handle.read().decode(errors="replace").splitlines()
    except OSError:
        return 0
    for line in reversed(lines[:-1] if len(lines) > 1 else lines):
        fields = line.split(",")
        if len(fields) > 1 and fields[1].isdigit():
            return int(fields[1])
    return 0


def run_child(config: RunConfig, run_dir: Path) -> dict:
    """Train ``config`` in a fresh interpreter; return its run.json, marked killed or failed if it did not finish.

    A progress bar (tqdm, on stderr) follows the child's steps from this process, reading the child's
    sample file, so that drawing it costs the measured process nothing."""
    run_dir.mkdir(parents=True, exist_ok=True)
    config_path = run_dir / "config.json"
    config_path.write_text(config.to_json())
    # a fixed mmap threshold: every large array is a fresh, lazily committed mapping (glibc's dynamic
    # threshold would otherwise hand the buffer heap pages that torch freed, already resident)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    child = subprocess.Popen([sys.executable, "-m", "validation.child", str(config_path), str(run_dir)], env=env)
    try:
        with tqdm(total=config.total_steps, desc=f"  {config.name}", unit="step", file=sys.stderr, mininterval=1.0,
                  dynamic_ncols=True) as bar:
            while (returncode := _wait(child, POLL_S)) is None:
                bar.update(max(0, latest_step(run_dir) - bar.n))
            bar.update(max(0, latest_step(run_dir) - bar.n))
    except KeyboardInterrupt:  # stop the child too; the report then says "killed"
        child.terminate()
        child.wait()
        raise
    path = run_dir / "run.json"
    data = json.loads(path.read_text()) if path.exists() else {"marks": [], "measured": {}, "status": "not started"}
    data["returncode"] = returncode
    if returncode != 0:
        data["status"] = "killed" if returncode < 0 else "failed"
    return data


def _wait(child: subprocess.Popen, seconds: float) -> "int | None":
    """The child's exit status, or None if it is still running after ``seconds``."""
    try:
        return child.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None
