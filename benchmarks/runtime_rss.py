"""Resident memory (RSS) of the training runtime, layer by layer, each layer in a fresh process.

    python benchmarks/runtime_rss.py [--repeat 3] [--steps 300] [--json]

Each row is a new Python process that loads everything of the rows above it plus one more thing, then
stops; this script (the parent) reads the child's RSS with psutil, and its peak RSS (VmHWM, Linux only)
from /proc. The rows:

    bare Python          the interpreter (with this venv's site packages on the path), nothing imported
    + numpy              import numpy
    + torch              import torch (CPU build here), torch.set_num_threads(1)
    + gymnasium, mujoco  import gymnasium and mujoco
    + Walker2d-v5 env    gymnasium.make("Walker2d-v5") and reset()
    + SB3 SAC built      stable_baselines3.SAC("MlpPolicy", env) with buffer_size=1000, so the replay
                         buffer (about 0.2 MB for Walker2d) does not count; SB3's default is 1e6
    + SAC trained        model.learn(300) with learning_starts=100: 200 gradient updates, batch 256

Sizes are printed in MB = 10^6 B; --json prints bytes. With --repeat N every row is measured N times
and the median is shown (the machine may be loaded; RSS varies little between runs).
"""

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil

ENV_ID = "Walker2d-v5"
BUFFER_SIZE = 1_000
LEARNING_STARTS = 100

# (label, code added by this row); each row runs all code above it too.
LAYERS = [
    ("bare Python", ""),
    ("+ numpy", "import numpy"),
    ("+ torch", "import torch\ntorch.set_num_threads(1)"),
    ("+ gymnasium, mujoco", "import gymnasium\nimport mujoco"),
    (f"+ {ENV_ID} env", f"env = gymnasium.make({ENV_ID!r})\nenv.reset(seed=0)"),
    ("+ SB3 SAC built", ("from stable_baselines3 import SAC\n"
                         f"model = SAC('MlpPolicy', env, buffer_size={BUFFER_SIZE}, "
                         f"learning_starts={LEARNING_STARTS}, device='cpu', seed=0)")),
    ("+ SAC trained", "model.learn(total_timesteps=STEPS)"),
]

# The child signals it is done loading, then waits for the parent to measure it before it exits.
WAIT = "import sys\nsys.stdout.write('ready\\n')\nsys.stdout.flush()\nsys.stdin.read()\n"


def child_code(rows: int, steps: int) -> str:
    body = "\n".join(code for _, code in LAYERS[:rows] if code)
    return f"STEPS = {steps}\n{body}\n{WAIT}"


def peak_rss(pid: int) -> "int | None":
    """VmHWM of a live process in bytes (Linux), else None."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def measure(rows: int, steps: int, timeout: float = 600) -> "tuple[int, int | None]":
    """(RSS, peak RSS) in bytes of a fresh process that has loaded the first ``rows`` layers."""
    with tempfile.TemporaryFile("w+") as stderr:  # a file, not a pipe: warnings cannot block the child
        proc = subprocess.Popen([sys.executable, "-c", child_code(rows, steps)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            if proc.stdout.readline().strip() != "ready":
                proc.wait(timeout=timeout)
                stderr.seek(0)
                sys.exit(f"row {LAYERS[rows - 1][0]!r} failed:\n{stderr.read().strip()}")
            rss = psutil.Process(proc.pid).memory_info().rss
            peak = peak_rss(proc.pid)
            proc.communicate(timeout=timeout)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return rss, peak


def mb(n: "int | None") -> str:
    return "-" if n is None else f"{n / 1e6:,.0f}"


def versions() -> dict:
    import importlib.metadata as md

    found = {"python": platform.python_version()}
    for name in ("numpy", "torch", "gymnasium", "mujoco", "stable-baselines3"):
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = None
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per row; the median is reported (default 3)")
    parser.add_argument("--steps", type=int, default=300, help="SAC training steps in the last row (default 300)")
    parser.add_argument("--json", action="store_true", help="print JSON (sizes in bytes) instead of a table")
    args = parser.parse_args()
    if args.repeat < 1 or args.steps <= LEARNING_STARTS:
        parser.error(f"--repeat must be >= 1 and --steps > {LEARNING_STARTS}")

    results = []
    for rows in range(1, len(LAYERS) + 1):
        runs = [measure(rows, args.steps) for _ in range(args.repeat)]
        peaks = [p for _, p in runs if p is not None]
        results.append({"row": LAYERS[rows - 1][0], "rss_bytes": int(statistics.median(r for r, _ in runs)),
                        "peak_rss_bytes": int(statistics.median(peaks)) if peaks else None,
                        "rss_runs_bytes": [r for r, _ in runs]})
    machine = {"arch": platform.machine(), "logical_cpus": psutil.cpu_count(),
               "memory_bytes": psutil.virtual_memory().total, "platform": platform.platform()}
    settings = {"env": ENV_ID, "buffer_size": BUFFER_SIZE, "learning_starts": LEARNING_STARTS,
                "train_steps": args.steps, "repeat": args.repeat, "torch_threads": 1}

    if args.json:
        print(json.dumps({"machine": machine, "versions": versions(), "settings": settings, "rows": results},
                         indent=2))
        return
    print(f"{'process has loaded':<24} {'RSS MB':>8} {'+ MB':>7} {'peak RSS MB':>12}")
    previous = 0
    for row in results:
        print(f"{row['row']:<24} {mb(row['rss_bytes']):>8} {mb(row['rss_bytes'] - previous):>7} "
              f"{mb(row['peak_rss_bytes']):>12}")
        previous = row["rss_bytes"]
    print(f"\nMB = 10^6 B. Each row is a fresh process; median of {args.repeat} run(s). SAC: MlpPolicy, "
          f"buffer_size {BUFFER_SIZE} (the buffer does not count),\nlearning_starts {LEARNING_STARTS}, "
          f"{args.steps} steps, 1 torch thread. {machine['arch']}, {machine['logical_cpus']} logical CPUs, "
          + ", ".join(f"{k} {v}" for k, v in versions().items()) + ".")


if __name__ == "__main__":
    main()
