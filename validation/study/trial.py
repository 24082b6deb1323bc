"""One trial: a real SB3 training run, evaluated every K steps, its records emitted as it goes.

Records (one JSON object each): "start" (the trial), "eval" (step, the returns of ``eval_episodes``
deterministic episodes on an env of its own seeded apart, timings so far, RSS, buffer bytes and saturation),
then "end" with status "done" (the final figures) or "failed" (the error). Local trials run in a process of
their own: ``python -m validation.study.trial TRIAL_JSON OUT``; Ray runs :func:`run_trial` in its worker.
"""

import os
import platform
import resource
import sys
import time
from pathlib import Path

import psutil

from planner.defaults import is_on_policy
from planner.envs import training_id
from validation.harness.measure import buffer_bytes
from validation.study.grid import Trial
from validation.study.results import TrialFile, failure, trial_path

EVAL_SEED = 1_000_000  # evaluation episodes are seeded from trial seed + this (+ the episode's index)
EVAL_STEPS = 10_000  # the longest evaluation episode of an env registered without a time limit


def peak_rss_bytes() -> int:
    """This process's peak resident set (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def warmup_steps(trial: Trial) -> int:
    """The steps before the first update: PPO's rollout, SAC's learning_starts."""
    return trial.rows if is_on_policy(trial.algo) else trial.learning_starts


def warmup_ranges(trial: Trial) -> dict:
    """The calibrated storage's observation ranges (as a dict) of the trial's warm-up: random actions in its env,
    its seed."""
    from planner.obs_ranges import choose_ranges
    from validation.scan import rollout

    observations = rollout(trial.env, warmup_steps(trial), trial.seed)
    return choose_ranges(observations, trial.decimals, source={"env": trial.env, "policy": "random",
                                                              "seed": trial.seed}).as_dict()


def evaluate(model, env, trial: Trial) -> "list[float]":
    """Returns of ``eval_episodes`` deterministic episodes, episode i reset with seed trial seed + EVAL_SEED + i
    (cut at EVAL_STEPS where the env has no time limit of its own)."""
    returns = []
    limit = (env.spec.max_episode_steps if env.spec else None) or EVAL_STEPS
    for episode in range(trial.eval_episodes):
        obs, _ = env.reset(seed=trial.seed + EVAL_SEED + episode)
        total, done, steps = 0.0, False, 0
        while not done and steps < limit:
            action, _ = model.predict(obs, deterministic=True)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done, steps = terminated or truncated, steps + 1
        returns.append(total)
    return returns


def run_trial(trial: Trial, emit) -> dict:
    """Train ``trial``, calling ``emit(record)`` with each record; returns the end record. An exception in the
    run is its failed end record."""
    emit({"kind": "start", "trial": trial.id, "config": trial.record(), "pid": os.getpid(),
          "host": platform.node(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    try:
        end = _train(trial, emit)
    except Exception as exc:  # recorded: a trial that fails must not stop the others
        end = failure(f"{type(exc).__name__}: {exc}")
    emit(end)
    return end


def _train(trial: Trial, emit) -> dict:
    import gymnasium
    import numpy as np
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.vec_env import DummyVecEnv

    from validation.harness.child import build_model

    torch.set_num_threads(1)
    config = trial.run_config(warmup_ranges(trial) if trial.storage == "calibrated" else None)
    env = DummyVecEnv([lambda: gymnasium.make(training_id(trial.env))])
    env.seed(trial.seed)
    eval_env = gymnasium.make(training_id(trial.env))
    overrides = {} if is_on_policy(trial.algo) else {"learning_starts": trial.learning_starts}
    model = build_model(config, env, **overrides)
    model._setup_model()
    buffer = model.rollout_buffer if is_on_policy(trial.algo) else model.replay_buffer
    process = psutil.Process()

    class Recorder(BaseCallback):
        """Evaluates every ``eval_every`` steps; times acting (rollouts) apart from updating (the rest)."""

        def __init__(self) -> None:
            super().__init__()
            self.start = self.rollout_t = 0.0
            self.acting_s = self.eval_s = 0.0
            self.last_eval = -1
            self.final_return = None

        def _on_training_start(self) -> None:
            self.record()
            self.eval_s, self.start = 0.0, time.perf_counter()  # the clocks start after the step-0 evaluation

        def _on_rollout_start(self) -> None:
            self.rollout_t = time.perf_counter()

        def _on_rollout_end(self) -> None:
            self.acting_s += time.perf_counter() - self.rollout_t

        def _on_step(self) -> bool:
            if self.num_timesteps % trial.eval_every == 0:
                self.record()
            return True

        def timing(self) -> dict:
            steps = max(self.num_timesteps, 1)
            wall = time.perf_counter() - self.start - self.eval_s
            acting = self.acting_s - self.eval_s  # evaluations after step 0 run inside a rollout
            return {"acting_ms_per_step": 1000 * acting / steps, "update_ms_per_step": 1000 * (wall - acting) / steps,
                    "ms_per_step": 1000 * wall / steps, "train_s": wall}

        def record(self) -> None:
            began = time.perf_counter()
            returns = evaluate(self.model, eval_env, trial)
            self.eval_s += time.perf_counter() - began
            self.last_eval, self.final_return = self.num_timesteps, float(np.mean(returns))
            emit({"kind": "eval", "step": self.num_timesteps, "return_mean": self.final_return,
                  "return_std": float(np.std(returns)), "returns": returns, "eval_s": time.perf_counter() - began,
                  "rss_bytes": process.memory_info().rss, "peak_rss_bytes": peak_rss_bytes(),
                  "buffer_bytes": buffer_bytes(buffer), "saturation": saturation(buffer),
                  **(self.timing() if self.num_timesteps else {})})

    recorder = Recorder()
    model.learn(total_timesteps=trial.steps, callback=recorder)
    timing = recorder.timing()
    if recorder.last_eval != model.num_timesteps:
        recorder.record()
    return {"kind": "end", "status": "done", "steps": int(model.num_timesteps), "final_return": recorder.final_return,
            "buffer_bytes": buffer_bytes(buffer), "buffer_rows": trial.rows, "saturation": saturation(buffer),
            "calibration": calibration(buffer), "peak_rss_bytes": peak_rss_bytes(), **timing}


def saturation(buffer) -> "float | None":
    """The share of stored observation values that saturated at the clamp (None: SB3's float buffers)."""
    stats = buffer.quantization_stats() if hasattr(buffer, "quantization_stats") else None
    return None if stats is None else float(stats["saturated_fraction"])


def calibration(buffer) -> "dict | None":
    """Per calibrated column, its side table, bits per value and recalibrations (None: no such column)."""
    stats = buffer.quantization_stats() if hasattr(buffer, "quantization_stats") else {}
    return {key: value for key, value in stats.items() if isinstance(value, dict)} or None


def main(trial_json: str, out: str) -> int:
    """A local trial in its own process: dies with the study that started it; records go to its file."""
    from validation.harness.child import die_with_parent

    die_with_parent()
    trial = Trial.from_json(trial_json)
    sink = TrialFile(trial_path(Path(out), trial.id))
    try:
        end = run_trial(trial, sink.write)
    finally:
        sink.close()
    return 0 if end["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
