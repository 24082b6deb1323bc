"""``planner estimate``: the footprint of one configuration, field by field."""

import argparse
import json

from planner.commands.options import add_quant_options, count
from planner.envs import lookup_env
from planner.errors import PlannerError
from planner.footprint import footprint
from planner.layouts import LAYOUTS, QUANTIZED_LAYOUTS
from planner.networks import parse_net
from planner.quantization import QuantSpec
from planner.report import footprint_table
from planner.runspec import ALGOS, DEFAULT_BUFFER, DTYPE_BYTES, RunSpec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("estimate", help="memory of one training configuration, per component and field")
    p.add_argument("--algo", choices=ALGOS, required=True)
    p.add_argument("--env", help="environment id (gives obs and action dims), e.g. Humanoid-v5")
    p.add_argument("--obs-dim", type=count)
    p.add_argument("--action-dim", type=count)
    p.add_argument("--buffer-size", type=count, help="replay capacity (sac/td3, default 1e6) or n_steps (ppo, default 2048)")
    p.add_argument("--n-envs", type=count, default=1)
    p.add_argument("--layout", default="sb3", help=f"one of {', '.join(LAYOUTS)} (default sb3)")
    p.add_argument("--obs-dtype", default="float64", help="observation dtype of the env (default float64, as MuJoCo)")
    add_quant_options(p)
    p.add_argument("--net", type=str, help="hidden sizes, e.g. 256,256 (default: SB3's for the algo)")
    p.add_argument("--trunk", type=str, help="ppo: hidden sizes shared by policy and value before --net, e.g. 64 "
                                             "(SB3 < 1.8 net_arch=[64, dict(pi=..., vf=...)])")
    p.add_argument("--param-dtype", default="float32", choices=tuple(DTYPE_BYTES))
    p.add_argument("--no-optimizer", action="store_true", help="leave Adam's state out")
    p.add_argument("--terminal-capacity", type=count, help="packed replay: rows of the episode-end side store")
    p.add_argument("--unit", default="MB", choices=("B", "KB", "MB", "GB", "KiB", "MiB", "GiB"))
    p.add_argument("--json", action="store_true", help="print the breakdown as JSON")
    p.set_defaults(func=run)


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """A RunSpec from estimate-style arguments (env or explicit dims)."""
    obs_dim, action_dim = args.obs_dim, args.action_dim
    if args.env:
        dims = lookup_env(args.env)
        obs_dim = dims.obs_dim if obs_dim is None else obs_dim
        action_dim = dims.action_dim if action_dim is None else action_dim
    if obs_dim is None or action_dim is None:
        raise PlannerError("give --env, or both --obs-dim and --action-dim")
    quant = None
    if args.decimals is not None or args.bits is not None:
        quant = QuantSpec.create(args.decimals if args.decimals is not None else 2, args.clamp, args.bits, args.width_rule)
    elif args.layout in QUANTIZED_LAYOUTS:
        raise PlannerError(f"layout {args.layout!r} quantizes observations: give --decimals (e.g. -m 2)")
    buffer_size = DEFAULT_BUFFER[args.algo] if args.buffer_size is None else args.buffer_size
    return RunSpec(args.algo, obs_dim, action_dim, buffer_size, n_envs=args.n_envs, layout=args.layout, quant=quant,
                   net=None if args.net is None else parse_net(args.net),
                   trunk=None if args.trunk is None else parse_net(args.trunk, "--trunk"), param_dtype=args.param_dtype,
                   optimizer=not args.no_optimizer, obs_dtype=args.obs_dtype,
                   terminal_capacity=args.terminal_capacity)


def run(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    fp = footprint(spec)
    if args.json:
        print(json.dumps({"spec": spec_dict(spec), **fp.as_dict()}, indent=2))
    else:
        print(footprint_table(spec, fp, args.unit))
    return 0


def spec_dict(spec: RunSpec) -> dict:
    quant = spec.quant
    return {"algo": spec.algo, "obs_dim": spec.obs_dim, "action_dim": spec.action_dim,
            "buffer_size": spec.buffer_size, "n_envs": spec.n_envs, "rows": spec.rows, "layout": spec.layout,
            "quant": None if quant is None else {"decimals": quant.decimals, "clamp": quant.clamp,
                                                 "bits": quant.bits, "rule": quant.rule},
            "net": None if spec.net is None else list(spec.net),
            "trunk": None if spec.trunk is None else list(spec.trunk), "param_dtype": spec.param_dtype,
            "optimizer": spec.optimizer, "obs_dtype": spec.obs_dtype}
