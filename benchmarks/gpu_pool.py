"""What a CUDA training process keeps on the GPU: context, models, optimizer state, the update's peak.

    python benchmarks/gpu_pool.py [--json]          # needs a CUDA GPU, torch, stable-baselines3, gymnasium

Each configuration runs in a fresh process (so each measures a fresh CUDA context): SB3 SAC / TD3 / PPO
with MlpPolicy on a stand-in env with Humanoid-v5's spaces (348 float64 observations, 17 actions; no
simulator needed), device="cuda". Per configuration it reads:

- ``context``: GPU memory in use (NVML) once torch has created its CUDA context, minus before;
- ``model``: ``torch.cuda.memory_allocated()`` once the model is built (its parameters, targets included);
- ``trained``: the same after the updates (parameters + optimizer state);
- ``peak``: ``torch.cuda.max_memory_allocated()`` over the updates (+ the sampled batch and the
  update's activations and gradients); ``reserved``: ``max_memory_reserved()`` (the caching allocator's
  blocks); ``nvml_used``: the device's memory in use at the end, everything of this process.
Sizes in bytes with --json, else MB = 10^6 B.
"""

import argparse
import json
import subprocess
import sys

CONFIGS = [("sac", 256), ("sac", 1024), ("td3", 256), ("ppo", 64), ("ppo", 512)]
OBS, ACT = 348, 17


def measure(algo: str, batch: int) -> dict:
    import gymnasium as gym
    import numpy as np
    import pynvml
    import torch
    from stable_baselines3 import PPO, SAC, TD3

    class StandIn(gym.Env):
        """Humanoid-v5's spaces, random observations, episodes of 1,000 steps."""

        observation_space = gym.spaces.Box(-np.inf, np.inf, (OBS,), np.float64)
        action_space = gym.spaces.Box(-0.4, 0.4, (ACT,), np.float32)

        def reset(self, *, seed=None, options=None):
            super().reset(seed=seed)
            self.t = 0
            return self.np_random.standard_normal(OBS), {}

        def step(self, action):
            self.t += 1
            return self.np_random.standard_normal(OBS), 0.0, False, self.t >= 1000, {}

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    used = lambda: pynvml.nvmlDeviceGetMemoryInfo(handle).used  # noqa: E731
    before = used()
    torch.zeros(1, device="cuda")
    context = used() - before
    if algo == "ppo":
        model = PPO("MlpPolicy", StandIn(), n_steps=2048, batch_size=batch, n_epochs=2, device="cuda", seed=0)
        steps = 2048
    else:
        cls = SAC if algo == "sac" else TD3
        model = cls("MlpPolicy", StandIn(), buffer_size=5_000, batch_size=batch, learning_starts=batch,
                    device="cuda", seed=0)
        steps = batch + 50
    torch.cuda.synchronize()
    built = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    model.learn(steps)
    torch.cuda.synchronize()
    return {"algo": algo, "batch_size": batch, "context": context, "model": built,
            "trained": torch.cuda.memory_allocated(), "peak": torch.cuda.max_memory_allocated(),
            "reserved": torch.cuda.max_memory_reserved(), "nvml_used": used() - before,
            "device": torch.cuda.get_device_name(0), "torch": torch.__version__}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print bytes as JSON lines")
    parser.add_argument("--one", nargs=2, metavar=("ALGO", "BATCH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(args.one[0], int(args.one[1]))))
        return 0
    for algo, batch in CONFIGS:
        done = subprocess.run([sys.executable, __file__, "--one", algo, str(batch)], capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{algo} batch {batch}: failed\n{done.stderr[-2000:]}", file=sys.stderr)
            continue
        row = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps(row) if args.json else
              f"{algo:<4} batch {batch:>5}: context {row['context'] / 1e6:8.1f} MB  "
              f"model {row['model'] / 1e6:7.3f} MB  "
              f"trained {row['trained'] / 1e6:7.3f} MB  peak {row['peak'] / 1e6:7.3f} MB  "
              f"reserved {row['reserved'] / 1e6:7.1f} MB  device in use {row['nvml_used'] / 1e6:8.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
