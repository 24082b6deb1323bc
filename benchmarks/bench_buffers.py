"""SB3's buffers versus the quantized ones, side by side in one run (medians, ratios).

    python benchmarks/bench_buffers.py            # full run (about 5-10 minutes on 2 cores)
    python benchmarks/bench_buffers.py --quick    # smoke run (about 1 minute)

1. Humanoid-v5 dims (348 obs, 17 actions), real random-policy observations, ``--rows`` filled rows:
   ``add()`` per transition, ``sample(256)`` with fresh indices each call (calls interleaved), and replay
   memory per transition (measured ``nbytes``) against SB3's default and the authors' uint16 layout; for
   SB3's buffer, the uniform packed one (m = 2) and the calibrated one (``obs_ranges`` scanned from the first
   5,000 observations of the same random policy: mixed widths, zero-bit dimensions, exceptions).
2. Full training ms/step, baseline versus quantized buffer (SAC m=2, PPO m=1, b=127) on Walker2d-v5 and
   Humanoid-v5: both models are built, warmed up, then trained in alternating chunks; ms/step is the
   median over chunks (order alternates: ABBA); "ratio" is quantized/baseline of those medians, "pair" the
   ratios of the two chunks run back to back (median, range). torch uses one thread so that the two runs
   compete less for the 2 cores.
"""

import argparse
import statistics
import time
import warnings

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.buffers import ReplayBuffer

from planner.defaults import CLAMP
from planner.footprint import RunSpec, footprint
from planner.obs_ranges import choose_ranges
from planner.quantization import Quantization
from validation.buffers import QuantizedReplayBuffer, QuantizedRolloutBuffer

ENV = "Humanoid-v5"
TRAIN_ENVS = ("Walker2d-v5", "Humanoid-v5")
BATCH = 256


def humanoid_stream(steps: int, seed: int = 0):
    """Real observations of a random policy: (obs, next_obs, action, reward, done, infos) per step."""
    env = gym.make(ENV)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    stream = []
    for _ in range(steps):
        action = env.action_space.sample()
        next_obs, reward, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        stream.append((obs[None], next_obs[None], action[None], np.array([reward], np.float32), np.array([done]),
                       [{"TimeLimit.truncated": truncated and not terminated}]))
        obs = env.reset()[0] if done else next_obs
    return env, stream


def median_us(times: "list[float]") -> float:
    return statistics.median(times) * 1e6


def bench_replay(rows: int, sample_calls: int) -> None:
    env, stream = humanoid_stream(5_000)
    obs_ranges = choose_ranges(np.concatenate([item[0] for item in stream]), 2, CLAMP)
    buffers = {"sb3": ReplayBuffer(rows, env.observation_space, env.action_space, "cpu"),
               "ours": QuantizedReplayBuffer(rows, env.observation_space, env.action_space, "cpu", decimals=2,
                                             clamp=CLAMP),
               "calibrated": QuantizedReplayBuffer(rows, env.observation_space, env.action_space, "cpu",
                                                   obs_ranges=obs_ranges)}
    sb3, ours, calibrated = buffers.values()
    warnings.filterwarnings("ignore", message="the planner's prediction of this buffer is stale")
    add_times: "dict[str, list[float]]" = {name: [] for name in buffers}
    for i in range(rows):
        item = stream[i % len(stream)]
        for name, buf in buffers.items():
            t = time.perf_counter()
            buf.add(*item)
            add_times[name].append(time.perf_counter() - t)
    sample_times: "dict[str, list[float]]" = {name: [] for name in buffers}
    order = list(buffers.items())
    for call in range(sample_calls):
        for name, buf in order[call % 3:] + order[:call % 3]:  # rotating order: no buffer always goes first
            t = time.perf_counter()
            buf.sample(BATCH)
            sample_times[name].append(time.perf_counter() - t)
    print(f"## Replay buffer, {ENV} dims (348 obs, 17 actions), {rows:,} rows filled by add(), real observations")
    print(f"{'operation':<28} {'SB3 us':>9} {'ours us':>9} {'ours/SB3':>9} {'calibrated us':>14} "
          f"{'calibrated/ours':>16} {'calibrated/SB3':>15}")
    for label, times in (("add() per transition", add_times), (f"sample({BATCH})", sample_times)):
        a, b, c = (median_us(times[name]) for name in buffers)
        print(f"{label:<28} {a:>9.1f} {b:>9.1f} {b / a:>9.2f} {c:>14.1f} {c / b:>16.2f} {c / a:>15.2f}")
    sb3_bytes = sum(getattr(sb3, n).nbytes for n in ("observations", "next_observations", "actions", "rewards",
                                                     "dones", "timeouts"))
    quant = Quantization.create(2, CLAMP)
    authors = footprint(RunSpec("sac", 348, 17, rows, storage="just-round", quant=quant)).buffer_bytes
    ours_bytes = ours.memory_bytes()
    million = footprint(RunSpec("sac", 348, 17, 1_000_000, storage="packed", quant=quant)).buffer_bytes
    print(f"\nreplay memory per transition (m=2, b=127, {ours.code_layout.bits} bits): "
          f"SB3 default {sb3_bytes / rows:,.1f} B, authors' uint16 layout {authors / rows:,.1f} B, "
          f"ours {ours_bytes / rows:,.2f} B (measured nbytes)")
    print(f"SB3 / ours = {sb3_bytes / ours_bytes:.2f}x, authors' uint16 / ours = {authors / ours_bytes:.2f}x; "
          f"ours at 1M transitions: {million / 1e6:,.1f} MB (planner, packed layout)"
          f"; terminal evictions {ours.terminal_evictions} (of timeouts: {ours.timeout_evictions}), "
          f"saturated values {ours.saturated}")
    stats = calibrated.quantization_stats()["observation"]
    zero_dims = sum(d.bits == 0 for d in obs_ranges.dims)
    print(f"calibrated (ranges {obs_ranges.mean_bits:.2f} bits mean, {zero_dims} zero-bit dims; rows now "
          f"{stats['bits_per_value']:.2f} bits per value, {stats['bits_per_value_all_in']:.2f} all-in, "
          f"{stats['recalibrations']} recalibration(s), {stats['entries_live']:,} side-table entries): "
          f"{calibrated.memory_bytes() / rows:,.2f} B per transition (measured nbytes)")


def make(algo: str, env_id: str, quantized: bool):
    if algo == "sac":
        kwargs = dict(replay_buffer_class=QuantizedReplayBuffer, replay_buffer_kwargs=dict(decimals=2, clamp=CLAMP))
        return SAC("MlpPolicy", env_id, buffer_size=100_000, learning_starts=100, seed=0, device="cpu",
                   **(kwargs if quantized else {}))
    kwargs = dict(rollout_buffer_class=QuantizedRolloutBuffer, rollout_buffer_kwargs=dict(decimals=1, clamp=CLAMP))
    return PPO("MlpPolicy", env_id, seed=0, device="cpu", **(kwargs if quantized else {}))


def bench_training(chunks: int, sac_chunk: int, ppo_chunk: int) -> None:
    print(f"\n## Full training ms/step, baseline vs quantized buffer, {chunks} alternating chunks each "
          f"(SAC {sac_chunk} steps/chunk after 100 warm-up steps, PPO {ppo_chunk} steps/chunk = one rollout + update)")
    print(f"{'algo':<5} {'env':<13} {'baseline ms/step':>17} {'quantized ms/step':>18} {'ratio':>7} "
          f"{'pair median':>11} {'pair range':>13}")
    for algo, chunk in (("sac", sac_chunk), ("ppo", ppo_chunk)):
        for env_id in TRAIN_ENVS:
            models = {"base": make(algo, env_id, False), "quant": make(algo, env_id, True)}
            times: "dict[str, list[float]]" = {"base": [], "quant": []}
            for model in models.values():
                model.learn(100 if algo == "sac" else chunk)  # warm-up: fills learning_starts / first rollout
            for i in range(chunks):
                for name in (("base", "quant") if i % 2 == 0 else ("quant", "base")):  # ABBA: no order bias
                    model = models[name]
                    t = time.perf_counter()
                    model.learn(chunk, reset_num_timesteps=False)
                    times[name].append((time.perf_counter() - t) / chunk * 1e3)
            base, quant = statistics.median(times["base"]), statistics.median(times["quant"])
            pairs = sorted(q / b for q, b in zip(times["quant"], times["base"]))
            print(f"{algo:<5} {env_id:<13} {base:>17.2f} {quant:>18.2f} {quant / base:>7.3f} "
                  f"{statistics.median(pairs):>11.3f} {pairs[0]:>6.3f}-{pairs[-1]:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run, not figures to report")
    parser.add_argument("--replay-only", action="store_true", help="part 1 only (no training)")
    args = parser.parse_args()
    th.set_num_threads(1)
    np.random.seed(0)
    bench_replay(rows=20_000, sample_calls=200) if args.quick else bench_replay(rows=200_000, sample_calls=2_000)
    if not args.replay_only:
        bench_training(chunks=2, sac_chunk=50, ppo_chunk=2048) if args.quick else \
            bench_training(chunks=12, sac_chunk=100, ppo_chunk=2048)


if __name__ == "__main__":
    main()
