"""Record the observations a real SAC run stores, for the calibrated-packing measurement.

    python benchmarks/sac_observations.py --env Ant-v5 --steps 50000 --out ant.npz

Trains SB3's SAC as it is (default hyper-parameters, its own float32 replay buffer holding every step) with
``learning_starts`` random steps first (5,000 by default, as the calibrated measurement scans them), one
torch thread, and saves what the replay buffer holds, in the order it was stored (observations, next
observations, dones and time limits: the stream a buffer was fed), with the run's settings.
``benchmarks/calibrated_bits.py`` reads the file.
"""

import argparse
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", required=True)
    parser.add_argument("--steps", type=int, default=50_000)
    parser.add_argument("--learning-starts", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    import gymnasium as gym
    import torch
    from stable_baselines3 import SAC

    torch.set_num_threads(1)
    env = gym.make(args.env)
    model = SAC("MlpPolicy", env, buffer_size=args.steps, learning_starts=args.learning_starts, seed=args.seed,
                verbose=0)
    start = time.perf_counter()
    model.learn(args.steps)
    seconds = time.perf_counter() - start
    buffer = model.replay_buffer
    stored = buffer.buffer_size if buffer.full else buffer.pos
    np.savez_compressed(args.out, observations=buffer.observations[:stored, 0],
                        next_observations=buffer.next_observations[:stored, 0], dones=buffer.dones[:stored, 0],
                        timeouts=buffer.timeouts[:stored, 0], env=args.env, steps=args.steps,
                        learning_starts=args.learning_starts, seed=args.seed, seconds=seconds)
    print(f"{args.env}: {stored} observations in {seconds:.0f} s -> {args.out}")


if __name__ == "__main__":
    main()
