"""Calibrate the runtime figure: what this machine's training process costs beyond models, optimizer
and buffer (Python, numpy, torch and its kernels, SB3, gymnasium, MuJoCo, the env, update temporaries).

A short probe run (real SB3 training with a small buffer, in a fresh process) is measured: its peak
RSS minus the planner's models + optimizer + buffer is the training runtime (what a profile's
``runtime`` means); its RSS once the model is built and just before the first update, minus models
and committed buffer, are the built and acting runtimes (``validation.harness.predict``). ``calibrate(path)``
writes the training runtime into a device profile of this machine that ``planner fit`` and ``planner validate`` accept.
"""

import platform
import tempfile
from pathlib import Path

import psutil
import yaml

from planner.defaults import is_on_policy
from planner.errors import PlannerError
from planner.output import check_output_path, write_atomic
from planner.profiles import parse_profile
from planner.units import size_text
from validation.harness.predict import Runtime, predict
from validation.harness.runconfig import RunConfig
from validation.harness.runner import run_child

PROBE_STEPS = {"replay": 400, "rollout": 512}  # by on-policy (a rollout) or off-policy (a replay buffer)
PROBE_BUFFER = {"replay": 1_000, "rollout": 256}
CALIBRATION_ENV = "Walker2d-v5"


def probe_config(env_id: str, algo: str, seed: int = 0) -> RunConfig:
    """The calibration probe of ``algo`` on ``env_id``: SB3 as is, a small buffer, a few hundred updates (off-policy;
    on-policy: two rollouts): enough to load every kernel training uses."""
    kind = "rollout" if is_on_policy(algo) else "replay"
    return RunConfig(env_id, algo, "sb3", steps=PROBE_STEPS[kind], buffer_size=PROBE_BUFFER[kind], decimals=2,
                     seed=seed)


def probe_label(config: RunConfig) -> str:
    """What the progress bar and the summary call the probe ``config``, so that it never reads as the run itself."""
    return f"calibration probe ({config.name} on {config.env_id}, {config.total_steps:,} steps)"


def measure_runtime(config: RunConfig, run_dir: Path) -> "tuple[Runtime, dict]":
    """(the runtimes, the probe's run.json) of the probe ``config`` run in ``run_dir``."""
    run = run_child(config, run_dir, probe_label(config))
    if run["status"] != "complete":
        raise PlannerError(f"calibration run {config.name} on {config.env_id} {run['status']} "
                           f"(exit status {run['returncode']}): see {run_dir}")
    return runtime_of(config, run), run


def runtime_of(config: RunConfig, run: dict) -> Runtime:
    """The runtimes a complete probe ``run`` of ``config`` measured: its RSS once built, just before its first
    update and at its peak, each minus what the planner predicts for the probe at that point."""
    bare = predict(config, Runtime(0, 0, 0))
    marks = {m["name"]: m for m in run["marks"]}
    built, starts = marks["model_built"], marks["training_starts"]
    return Runtime(built["rss_bytes"] - bare.rss_at(built["step"], "built"),
                   starts["rss_bytes"] - bare.rss_at(starts["step"], "acting"),
                   run["measured"]["peak_rss_bytes"] - bare.peak_bytes)


JETPACK_OF_L4T = {"R32": "jetpack-4", "R34": "jetpack-5", "R35": "jetpack-5", "R36": "jetpack-6"}


def detect_route(root: Path = Path("/")) -> str:
    """This machine's install route (planner.profiles.ROUTES): a Jetson's JetPack from its L4T release file, a
    Raspberry Pi from its device-tree model, else pip-cpu."""
    try:
        tegra = (root / "etc" / "nv_tegra_release").read_text(errors="replace")
    except OSError:
        tegra = ""
    if tegra:
        release = tegra.split("(", 1)[0].replace("#", "").strip()
        return JETPACK_OF_L4T.get(release, "pip-cpu")
    try:
        model = (root / "proc" / "device-tree" / "model").read_bytes().decode(errors="replace")
    except OSError:
        model = ""
    return "raspberry-pi-os" if "Raspberry Pi" in model and platform.machine() == "aarch64" else "pip-cpu"


def calibrate(out_path: "str | Path") -> Path:
    """Measure this machine and write a profile YAML (checked against the schema before it is written)."""
    out_path = check_output_path(out_path, "out", ".yaml")
    memory = psutil.virtual_memory()
    with tempfile.TemporaryDirectory() as tmp:
        runtimes = {algo: measure_runtime(probe_config(CALIBRATION_ENV, algo), Path(tmp) / algo)[0].training_bytes
                    for algo in ("sac", "ppo")}
    runtime = max(runtimes.values())
    arch = platform.machine()
    os_reserve = memory.total - memory.available
    route = detect_route()
    notes = "os_reserve is the memory in use by everything else when calibrated; margin is 5 % of total"
    if route in ("jetpack-6", "pip-cuda"):
        notes += ("; the probes trained on the CPU: for GPU training add the CUDA context to runtime "
                  "(docs/profiles.md, Measuring your own device)")
    profile = {
        "name": out_path.stem,
        "description": f"this machine ({platform.node() or 'unnamed'}), measured by planner profiles calibrate",
        "class": "workstation" if arch == "x86_64" else "sbc",
        "arch": arch,
        "total_memory": size_text(memory.total),
        "gpu_shares_memory": False,
        "os_reserve": size_text(os_reserve),
        "runtime": size_text(runtime),
        "runtime_note": f"peak RSS of short SB3 SAC / PPO probe runs on {CALIBRATION_ENV} minus the planner's models, "
                        f"optimizer and buffer (SAC {size_text(runtimes['sac'])}, PPO {size_text(runtimes['ppo'])}; "
                        "the larger is used)",
        "margin": size_text(int(0.05 * memory.total)),
        "cpu": f"{platform.processor() or arch} ({psutil.cpu_count()} logical cores)",
        "gpu": None,
        "runs_python": True,
        "runs_torch": True,
        "route": route,
        "notes": notes,
        "source": [f"planner profiles calibrate on {platform.platform()}, Python {platform.python_version()}"],
    }
    text = yaml.safe_dump(profile, sort_keys=False, allow_unicode=True)
    parse_profile(yaml.safe_load(text), str(out_path))  # what we write must pass the schema
    return write_atomic(out_path, text.encode(), "out")
