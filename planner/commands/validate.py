"""``planner validate``: real SB3 training in each storage, measured against the prediction."""

import argparse
import signal
import sys
import time
from pathlib import Path

from planner.commands.options import (
    add_algo_option,
    add_obs_ranges_options,
    add_quant_options,
    add_size_options,
    count,
    scans_from_args,
)
from planner.defaults import CLAMP, SCAN_STEPS, default_decimals, is_on_policy
from planner.envs import lookup_env, training_id
from planner.errors import PlannerError
from planner.extras import require_train_extra
from planner.runspec import check_sizes, run_size
from planner.storages import STORAGES, storage

TRAINABLE = tuple(name for name, entry in STORAGES.items() if entry.trainable)
DEVICES = ("cpu", "cuda", "auto")
DEFAULT_STORAGES = ("sb3", "packed")
BOUNDARY_STORAGES = ("sb3", "sb3-optimize", "packed", "calibrated")
BOUNDARY_STEPS = 100


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="train for real (SB3 as is and packed) and check the prediction",
                       description="Trains with stable-baselines3 / sb3-contrib in each storage, each in a fresh "
                                   "process, and holds psutil, pagemap and memray measurements against the planner's "
                                   "prediction.")
    p.add_argument("--env", required=True, help="a gymnasium env id whose action space the algorithm takes, e.g. "
                                                "Hopper-v5 or CartPole-v1 (MuJoCo v3 ids train on their v5 twin)")
    add_algo_option(p)
    p.add_argument("--steps", type=count, help="training steps (after the fill, with --fill); required but with "
                                                "--boundary (default there 100)")
    p.add_argument("--profile", help="device profile (name or YAML): admission check and machine comparison")
    add_size_options(p, n_envs=False)
    add_quant_options(p, widths=False)
    p.add_argument("--storage", choices=TRAINABLE, action="append",
                   help=f"run only these storages (default: {' and '.join(DEFAULT_STORAGES)}, those of them with a "
                        "buffer class for the algorithm; repeatable)")
    add_obs_ranges_options(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the env and the model (default 0)")
    p.add_argument("--device", choices=DEVICES, default="cpu",
                   help="where torch trains: cpu (default), cuda (refused where CUDA is missing), auto (cuda where "
                        "present)")
    p.add_argument("--fill", action="store_true",
                   help="off-policy algorithms: fill the replay buffer by acting before training")
    p.add_argument("--memray", action=argparse.BooleanOptionalAction, default=True,
                   help="trace the model and buffer construction with memray, in a process of its own (default: on)")
    p.add_argument("--sample-ms", type=float, default=20.0, help="psutil sampling period in ms (default 20)")
    p.add_argument("--force", action="store_true", help="run even if the prediction exceeds the profile's budget")
    p.add_argument("--confine", action="store_true",
                   help="with --profile: run each training process in a memory cgroup limited to the device's memory "
                        "for training (fit's budget and its safety margin) plus this host's measured runtime, swap "
                        "off (cgroup v2, v1 as root, or systemd-run --user)")
    p.add_argument("--boundary", action="store_true",
                   help="with --profile, off-policy: train each storage (default sb3, sb3-optimize, packed, "
                        "calibrated) with the buffer full at fit's largest size that fits the profile and 5%% past the "
                        "largest the device's memory holds (its safety margin spent too), confined; exit status 1 if "
                        "a run's outcome disagrees with the planner's verdict")
    p.add_argument("--out", help="report folder, which must be new or empty (default runs/validate-ENV-ALGO-TIME)")
    p.add_argument("--overwrite", action="store_true", help="clear a non-empty --out first (never one that another "
                                                            "validation is writing into)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:  # outside the validation (which handles the signals itself): nothing is running
        print("planner validate: interrupted by SIGINT", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace) -> int:
    lookup_env(args.env)
    trained = training_id(args.env)
    if trained != args.env:
        dims = lookup_env(trained)
        print(f"{args.env} needs mujoco-py: training on {trained} (obs {dims.obs_dim}, action {dims.action_dim}), "
              "and the prediction uses its dimensions", file=sys.stderr)
    if (args.confine or args.boundary) and not args.profile:
        raise PlannerError(f"--{'boundary' if args.boundary else 'confine'} needs --profile: the profile's budget is "
                           "the memory limit", "profile")
    if args.steps is None and not args.boundary:
        raise PlannerError("--steps is required (but with --boundary)", "steps")
    if args.boundary:
        _check_boundary(args)
        args.steps = BOUNDARY_STEPS if args.steps is None else args.steps
    if args.steps < 1:
        raise PlannerError(f"--steps must be at least 1, got {args.steps}")
    check_sizes((args.algo,), args.buffer_size, args.n_steps)
    buffer_size = run_size(args.algo, args.buffer_size, args.n_steps)
    if not 1 <= args.sample_ms <= 1000:
        raise PlannerError(f"--sample-ms must be between 1 and 1000, got {args.sample_ms:g}")
    require_train_extra("planner validate")
    device = torch_device(args.device)
    profile = None
    if args.profile:
        from planner.profiles import load_profile
        profile = load_profile(args.profile)
    confine = None
    if args.confine or args.boundary:
        from validation.harness.confine import confinement
        confine = confinement()  # none here: one line saying what is missing, before any folder or scan
    out = Path(args.out or f"runs/validate-{args.env}-{args.algo}-{time.strftime('%Y%m%d-%H%M%S')}")
    from validation.harness.folder import check_fresh
    from validation.harness.report import describe_report
    from validation.harness.runconfig import RunConfig
    from validation.harness.runner import Stopped
    from validation.harness.validate import Validation, configs, summary, validate

    decimals = default_decimals(args.algo) if args.decimals is None else args.decimals
    storages = tuple(dict.fromkeys(args.storage or default_storages(args.algo, args.boundary)))
    if (args.obs_ranges or args.scan) and "calibrated" not in storages:
        raise PlannerError("--obs-ranges and --scan give the calibrated storage its ranges: add --storage calibrated",
                           "obs_ranges")
    base = RunConfig(args.env, args.algo, storages[0], steps=args.steps, buffer_size=buffer_size, decimals=decimals,
                     clamp=CLAMP if args.clamp is None else args.clamp, seed=args.seed, fill=args.fill,
                     memray=args.memray, sample_ms=args.sample_ms, device=device)
    for config in configs(base, storages):  # the algorithm in the env's spaces (as fit refuses it), a storage with a
        config.run_spec()  # buffer class for its buffer, the sizes: one line before a scan or anything else runs
        config.check_trainable()
    ranges = None
    if "calibrated" in storages:
        if not args.obs_ranges:
            print(f"the calibrated storage: scanning {args.env} for its observation ranges ({SCAN_STEPS:,} random "
                  "steps, seed 0; --obs-ranges FILE reads them instead)", file=sys.stderr)
        args.scan = not args.obs_ranges
        ranges = scans_from_args(args, lookup_env(args.env), (decimals,))[0].as_dict()
    runs = configs(base, storages, ranges)
    if args.boundary:
        from validation.harness.boundary import boundary_configs
        runs = boundary_configs(runs, profile)
    job = Validation(runs, out, profile, force=args.force, overwrite=args.overwrite, confine=confine,
                     boundary=args.boundary)
    for config in job.configs:  # a bad size, m or b, or what a child would refuse: one line before anything runs
        error = storage(config.storage).refusal(config.run_spec())
        if error is not None:
            raise error
        config.check_trainable()
    check_fresh(out, args.overwrite, describe_report)
    try:
        report, checks = validate(job)
    except Stopped as stop:  # while plotting, after the final report was written
        print(f"planner validate: {stop.status} by {stop.signal} while plotting; the report in {out}/report.json "
              "is final", file=sys.stderr)
        return 128 + stop.signum
    if report["status"] in ("interrupted", "killed") and "signal" in report:  # a stop signal: one line
        print(f"planner validate: {report['status']} by {report['signal']}; what was measured is in "
              f"{out}/report.json", file=sys.stderr)
        return 128 + signal.Signals[report["signal"]].value
    print(summary(report, checks))
    print(f"report: {out}/report.json")
    return 0 if report["status"] == "complete" else 1


def default_storages(algo: str, boundary: bool = False) -> "tuple[str, ...]":
    """:data:`DEFAULT_STORAGES` (the boundary experiment's with ``boundary``) that have a buffer class for ``algo``'s
    buffer (RecurrentPPO: SB3's own only)."""
    names = BOUNDARY_STORAGES if boundary else DEFAULT_STORAGES
    return tuple(name for name in names if storage(name).training_refusal(algo) is None)


def _check_boundary(args: argparse.Namespace) -> None:
    """Refuse what the boundary experiment cannot run: an on-policy algorithm (its rollout is no replay buffer to
    fill), a size of its own (the sizes are fit's), memray (the runs are not traced)."""
    if is_on_policy(args.algo):
        raise PlannerError(f"--boundary fills a replay buffer: {args.algo} is on-policy (use an off-policy algorithm)",
                           "boundary")
    if args.buffer_size is not None:
        raise PlannerError("--boundary sizes each buffer from fit's largest that fits the profile: leave out "
                           "--buffer-size", "boundary", "buffer_size")
    args.fill, args.memray = True, False


def torch_device(asked: str) -> str:
    """Where torch trains: ``asked``, or for "auto" cuda where torch sees a CUDA GPU; "cuda" where it
    sees none is refused."""
    if asked == "cpu":
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if asked == "auto":
        return "cpu"
    built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    raise PlannerError(f"device cuda: torch {torch.__version__} ({built}) sees no CUDA GPU here; use --device cpu "
                       "or auto", "device")
