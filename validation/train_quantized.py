"""Train SAC and PPO with the quantized buffers and compare their memory with the planner's prediction.

    python -m validation.train_quantized                                  # SAC + PPO on Walker2d-v5 and Hopper-v5
    python -m validation.train_quantized --algo sac --env Humanoid-v5 --steps 1000 --act-on-quantized

SAC stores m = 2 decimals, PPO m = 1 (the paper's settings), clamp b = 127. By default the policy acts on
raw observations and trains on quantized ones, as in the paper; ``--act-on-quantized`` wraps the env
with QuantizeObservation so that it acts on the very values it trains on.
"""

import argparse
import sys
import time

from planner.defaults import CLAMP, default_decimals
from planner.errors import PlannerError


def train(algo: str, env_id: str, steps: int, act_on_quantized: bool, clamp: float) -> None:
    from stable_baselines3 import PPO, SAC
    from stable_baselines3.common.env_util import make_vec_env

    from planner.footprint import RunSpec, footprint
    from planner.quantization import Quantization
    from validation.buffers import QuantizedReplayBuffer, QuantizedRolloutBuffer, QuantizeObservation

    quant_kwargs = dict(decimals=default_decimals(algo), clamp=clamp)
    wrapper = dict(wrapper_class=QuantizeObservation, wrapper_kwargs=quant_kwargs) if act_on_quantized else {}
    env = make_vec_env(env_id, n_envs=1, seed=0, **wrapper)
    if len(env.action_space.shape) != 1 or len(env.observation_space.shape) != 1:
        raise PlannerError(f"{env_id} must have 1-D Box observation and action spaces (MuJoCo locomotion envs do)")
    if algo == "sac":
        capacity = max(steps, 1_000)
        model = SAC("MlpPolicy", env, buffer_size=capacity, learning_starts=min(100, steps // 2), seed=0, device="cpu",
                    replay_buffer_class=QuantizedReplayBuffer, replay_buffer_kwargs=quant_kwargs)
    else:
        capacity = 256
        model = PPO("MlpPolicy", env, n_steps=capacity, batch_size=64, seed=0, device="cpu",
                    rollout_buffer_class=QuantizedRolloutBuffer, rollout_buffer_kwargs=quant_kwargs)
    start = time.perf_counter()
    model.learn(steps)
    elapsed = time.perf_counter() - start
    buf = model.replay_buffer if algo == "sac" else model.rollout_buffer
    quant = Quantization.create(default_decimals(algo), clamp, bits=buf.code_layout.bits)
    predicted = footprint(RunSpec(algo, env.observation_space.shape[0], env.action_space.shape[0], capacity,
                                  storage="packed", quant=quant)).buffer_bytes
    stats = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                      for k, v in buf.quantization_stats().items())
    verdict = "equal" if predicted == buf.memory_bytes() else "DIFFERENT"
    print(f"{algo} {env_id}: {steps} steps in {elapsed:.1f} s ({elapsed / steps * 1e3:.2f} ms/step); "
          f"buffer {buf.memory_bytes():,} B = {buf.memory_bytes() / 1e6:.3f} MB allocated, planner predicts "
          f"{predicted:,} B ({verdict}); {quant.describe()}; {stats}")


def main(argv: "list[str] | None" = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", nargs="+", choices=("sac", "ppo"), default=["sac", "ppo"])
    parser.add_argument("--env", nargs="+", default=["Walker2d-v5", "Hopper-v5"],
                        help="gymnasium env ids with 1-D Box observations and actions")
    parser.add_argument("--steps", type=int, default=300, help="environment steps per run (default 300)")
    parser.add_argument("--clamp", type=float, default=CLAMP, help=f"symmetric clamp b (default {CLAMP:g})")
    parser.add_argument("--act-on-quantized", action="store_true", help="the policy acts on quantized observations")
    args = parser.parse_args(argv)
    if args.steps < 2:
        print(f"train_quantized: error: --steps must be >= 2, got {args.steps}", file=sys.stderr)
        return 2
    import gymnasium as gym

    for env_id in args.env:
        if env_id not in gym.registry:
            print(f"train_quantized: error: unknown gymnasium env {env_id!r} in --env (expected e.g. Walker2d-v5)",
                  file=sys.stderr)
            return 2
    try:
        for algo in args.algo:
            for env_id in args.env:
                train(algo, env_id, args.steps, args.act_on_quantized, args.clamp)
    except PlannerError as err:
        print(f"train_quantized: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
