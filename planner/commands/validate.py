"""``planner validate``: real SB3 training, baseline and quantized, measured against the prediction."""

import argparse
import sys
import time
from pathlib import Path

from planner.commands.options import count
from planner.envs import lookup_env, training_id
from planner.errors import PlannerError
from planner.paper import PAPER_DECIMALS
from planner.runspec import DEFAULT_BUFFER

STORAGES = ("baseline", "quantized")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="train for real (baseline and quantized) and check the prediction")
    p.add_argument("--env", required=True, help="a MuJoCo env id (v3 ids train on their v5 twin)")
    p.add_argument("--algo", choices=("ppo", "sac"), required=True)
    p.add_argument("--steps", type=count, required=True, help="training steps (after the fill, with --fill)")
    p.add_argument("--profile", help="device profile (name or YAML): admission check and machine comparison")
    p.add_argument("--buffer-size", type=count, help="replay capacity (SAC, default 1e6) or n_steps (PPO, default 2048)")
    p.add_argument("--decimals", "-m", type=int, help="default: the paper's (1 for PPO, 2 for SAC)")
    p.add_argument("--clamp", "-b", type=float, default=127.0)
    p.add_argument("--storage", choices=STORAGES, action="append", help="run only these (default: both)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fill", action="store_true", help="SAC: fill the buffer by acting before training")
    p.add_argument("--memray", action=argparse.BooleanOptionalAction, default=True,
                   help="trace the model and buffer construction with memray, in a process of its own (default: on)")
    p.add_argument("--sample-ms", type=float, default=20.0, help="psutil sampling period (default 20 ms)")
    p.add_argument("--force", action="store_true", help="run even if the prediction exceeds the profile's budget")
    p.add_argument("--out", help="report folder (default runs/validate-ENV-ALGO-TIME)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    lookup_env(args.env)
    trained = training_id(args.env)
    if trained != args.env:
        dims = lookup_env(trained)
        print(f"{args.env} needs mujoco-py: training on {trained} (obs {dims.obs_dim}, action {dims.action_dim}), "
              "and the prediction uses its dimensions", file=sys.stderr)
    if args.steps < 1:
        raise PlannerError(f"--steps must be at least 1, got {args.steps}")
    decimals = PAPER_DECIMALS[args.algo] if args.decimals is None else args.decimals
    buffer_size = DEFAULT_BUFFER[args.algo] if args.buffer_size is None else args.buffer_size
    if not 1 <= args.sample_ms <= 1000:
        raise PlannerError(f"--sample-ms must be between 1 and 1000, got {args.sample_ms:g}")
    profile = None
    if args.profile:
        from planner.profiles import load_profile
        profile = load_profile(args.profile)
    out = Path(args.out or f"runs/validate-{args.env}-{args.algo}-{time.strftime('%Y%m%d-%H%M%S')}")
    if out.exists() and not out.is_dir():
        raise PlannerError(f"--out {out}: exists and is not a folder")
    from validation.harness import Validation, configs, summary, validate

    storages = tuple(dict.fromkeys(args.storage or STORAGES))
    job = Validation(configs(args.env, args.algo, args.steps, buffer_size, decimals, args.clamp, args.seed, args.fill,
                             args.memray, storages, args.sample_ms), out, profile, args.force)
    for config in job.configs:
        config.run_spec()  # a bad size, m or b is one line before anything runs
    report, checks = validate(job)
    print(summary(report, checks))
    print(f"report: {out}/report.json")
    failed = report["status"] != "complete" or any(c.verdict == "FAIL" for c in checks)
    return 1 if failed else 0
