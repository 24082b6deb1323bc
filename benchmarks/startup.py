"""Wall time of the planner's light commands, each in a fresh process (median of N runs).

    python benchmarks/startup.py [--repeat 7]

They must answer in well under 1 s: none of them may import torch, SB3, gymnasium, pandas or scipy.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = (
    ["estimate", "--algo", "sac", "--env", "Humanoid-v3"],
    ["reproduce", "all"],
    ["fit", "--profile", "jetson-nano", "--env", "Ant-v3"],
    ["fit", "--all-profiles", "--env", "Humanoid-v3"],
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    planner = shutil.which("planner") or sys.exit("the planner command is not on PATH: pip install . first")
    print(f"{'command':<55} {'median s':>9} {'max s':>7}")
    for command in COMMANDS:
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            done = subprocess.run([planner, *command], capture_output=True)
            times.append(time.perf_counter() - start)
            if done.returncode != 0:
                sys.exit(f"planner {' '.join(command)} failed: {done.stderr.decode().strip()}")
        print(f"{'planner ' + ' '.join(command):<55} {statistics.median(times):>9.3f} {max(times):>7.3f}")


if __name__ == "__main__":
    main()
