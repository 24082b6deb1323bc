"""Calibrate the runtime figure: what this machine's training process costs beyond models, optimizer
and buffer (Python, numpy, torch and its kernels, SB3, gymnasium, MuJoCo, the env, update temporaries).

A short probe run (real SB3 training with a small buffer, in a fresh process) is measured; its peak
RSS minus the planner's models + optimizer + buffer is the runtime. ``calibrate(path)`` writes it
into a device profile of this machine that ``planner fit`` and ``planner validate`` accept.
"""

import os
import platform
import tempfile
from pathlib import Path

import psutil

from planner.errors import PlannerError
from planner.profiles import load_profile
from validation.predict import predict
from validation.runconfig import RunConfig

PROBE_STEPS = {"sac": 400, "ppo": 512}
PROBE_BUFFER = {"sac": 1_000, "ppo": 256}
CALIBRATION_ENV = "Walker2d-v5"


def probe_config(env_id: str, algo: str, seed: int = 0) -> RunConfig:
    """SB3 as is, a small buffer, a few hundred updates: enough to load every kernel training uses."""
    return RunConfig(env_id, algo, "baseline", PROBE_STEPS[algo], PROBE_BUFFER[algo], decimals=2, seed=seed)


def measure_runtime(config: RunConfig, run_dir: Path) -> "tuple[int, dict]":
    """(runtime bytes, the probe's run.json): the probe's peak RSS minus its predicted footprint."""
    from validation.harness import run_child

    run = run_child(config, run_dir)
    if run["status"] != "complete":
        raise PlannerError(f"calibration run {config.name} on {config.env_id} {run['status']} "
                           f"(exit status {run['returncode']}): see {run_dir}")
    footprint_bytes = predict(config, 0).peak_bytes
    return run["measured"]["peak_rss_bytes"] - footprint_bytes, run


def calibrate(out_path: "str | Path") -> Path:
    """Measure this machine and write a profile YAML (checked by loading it back)."""
    out_path = Path(out_path)
    if out_path.suffix not in (".yaml", ".yml"):
        raise PlannerError(f"--out {out_path}: expected a .yaml file name")
    if not out_path.parent.is_dir():
        raise PlannerError(f"--out {out_path}: folder {out_path.parent} does not exist")
    memory = psutil.virtual_memory()
    with tempfile.TemporaryDirectory() as tmp:
        runtimes = {algo: measure_runtime(probe_config(CALIBRATION_ENV, algo), Path(tmp) / algo)[0]
                    for algo in ("sac", "ppo")}
    runtime = max(runtimes.values())
    arch = platform.machine()
    os_reserve = memory.total - memory.available
    text = "\n".join([
        f"name: {out_path.stem}",
        f"description: this machine ({platform.node() or 'unnamed'}), measured by planner profiles calibrate",
        f"class: {'workstation' if arch == 'x86_64' else 'sbc'}",
        f"arch: {arch}",
        f"total_memory: {memory.total}",
        "gpu_shares_memory: false",
        f"os_reserve: {os_reserve}",
        f"runtime: {runtime}",
        f"runtime_note: peak RSS of short SB3 SAC / PPO probe runs on {CALIBRATION_ENV} minus the planner's models, "
        f"optimizer and buffer (SAC {runtimes['sac']:,} B, PPO {runtimes['ppo']:,} B; the larger is used)",
        f"margin: {int(0.05 * memory.total)}",
        f"cpu: {platform.processor() or arch} ({psutil.cpu_count()} logical cores)",
        "gpu: null",
        "runs_python: true",
        "runs_torch: true",
        "notes: os_reserve is the memory in use by everything else when calibrated; margin is 5 % of total",
        "source:",
        f"  - \"planner profiles calibrate on {platform.platform()}, Python {platform.python_version()}\"",
        "",
    ])
    tmp_path = out_path.parent / f".{out_path.stem}.partial.yaml"
    tmp_path.write_text(text)
    try:
        load_profile(str(tmp_path))  # what we write must pass the schema
        os.replace(tmp_path, out_path)
    finally:
        tmp_path.unlink(missing_ok=True)
    return out_path
