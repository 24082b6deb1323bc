"""``planner estimate``: the footprint of one configuration, field by field."""

import argparse
import json

from planner.commands.options import (
    add_algo_option,
    add_env_options,
    add_hyperparams_options,
    add_obs_ranges_options,
    add_output_options,
    add_quant_options,
    add_size_options,
    add_wrapper_options,
    apply_hyperparams,
    count,
    env_from_args,
    quant_requested,
    scans_from_args,
)
from planner.defaults import CLAMP, default_decimals
from planner.errors import PlannerError
from planner.footprint import footprint
from planner.gpu import device_pool
from planner.networks import parse_net
from planner.quantization import Quantization
from planner.report import footprint_table, pool_table
from planner.runspec import DTYPE_BYTES, RunSpec, check_sizes, run_size
from planner.storages import STORAGES, storage


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="memory of one training configuration, per component and field",
                       description="Models, optimizer state and buffer of one training run, field by field.")
    add_algo_option(p)
    add_env_options(p)
    add_hyperparams_options(p)
    add_size_options(p)
    add_wrapper_options(p)
    p.add_argument("--storage", dest="storage", default="sb3", choices=tuple(STORAGES),
                   help="how the buffer is stored (default sb3: stable-baselines3 as is); packed = ours "
                        "(with --obs-ranges or --scan: calibrated)")
    add_quant_options(p)
    add_obs_ranges_options(p)
    p.add_argument("--net", type=str, help="hidden sizes, e.g. 256,256 (default: SB3's for the algo)")
    p.add_argument("--trunk", type=str, help="ppo: hidden sizes shared by policy and value before --net, e.g. 64 "
                                             "(SB3 < 1.8 net_arch=[64, dict(pi=..., vf=...)])")
    p.add_argument("--param-dtype", default="float32", choices=tuple(DTYPE_BYTES),
                   help="dtype of the network parameters (default float32)")
    p.add_argument("--no-optimizer", action="store_true", help="leave Adam's state out (inference only)")
    p.add_argument("--terminal-capacity", type=count,
                   help="packed replay: rows of the episode-end side store (default: rows / 64)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="where the networks train: cuda adds the GPU pool (models, optimizer state and one update "
                        "on the GPU; the buffer in host RAM)")
    add_output_options(p)
    p.set_defaults(func=run)


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """A RunSpec from estimate's arguments (env or explicit dims)."""
    env = env_from_args(args)
    check_sizes((args.algo,), args.buffer_size, args.n_steps)
    decimals = default_decimals(args.algo) if args.decimals is None else args.decimals
    scans = scans_from_args(args, env, (decimals,))
    if scans:
        if args.storage not in ("packed", "calibrated"):
            raise PlannerError(f"--obs-ranges and --scan size the calibrated storage, not --storage {args.storage}",
                               "obs_ranges", "storage")
        args.storage = "calibrated"
        if args.decimals is None:
            decimals = scans[0].decimals
    quant = None
    if storage(args.storage).quantized == "always" or quant_requested(args):
        clamp = args.clamp
        if clamp is None:
            clamp = scans[0].clamp if scans else CLAMP
        quant = Quantization.create(decimals, clamp, args.bits, args.width_rule)
    box = env.action_space is None
    return RunSpec(args.algo, env.obs_dim, env.action_dim if box else None,
                   run_size(args.algo, args.buffer_size, args.n_steps),
                   n_envs=args.n_envs, storage=args.storage, quant=quant,
                   net=None if args.net is None else parse_net(args.net),
                   trunk=None if args.trunk is None else parse_net(args.trunk, "trunk"), param_dtype=args.param_dtype,
                   optimizer=not args.no_optimizer, obs_dtype=env.obs_dtype,
                   action_dtype=env.action_dtype if box else None, terminal_capacity=args.terminal_capacity,
                   action_space=env.action_space, obs_space=env.obs_space, frame_stack=args.frame_stack,
                   her=args.her, obs_ranges=scans[0] if scans else None)


def run(args: argparse.Namespace) -> int:
    applied = apply_hyperparams(args, (args.algo,))
    spec = spec_from_args(args)
    fp = footprint(spec)
    pool = device_pool(spec) if args.device == "cuda" else None
    if args.json:
        print(json.dumps({"spec": spec.as_dict(), **fp.as_dict(),
                          **({"gpu": pool.as_dict()} if pool else {}),
                          **({"hyperparams": applied.as_dict()} if applied else {})}, indent=2))
    else:
        if applied:
            print(applied.line(args._flags))
        print(footprint_table(spec, fp, args.unit))
        if pool:
            print("\n" + pool_table(pool, fp, args.unit))
    return 0
