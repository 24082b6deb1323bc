"""``planner obs {scan,show}``: what precision the observations need, per dimension (observation ranges)."""

import argparse
import json
import time

import yaml

from planner.commands.options import count
from planner.defaults import CLAMP, SCAN_STEPS
from planner.errors import PlannerError
from planner.extras import require_train_extra
from planner.obs_ranges import ObservationRanges, load_ranges
from planner.output import check_output_path, write_atomic
from planner.table import render


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("obs", help="scan observations for the precision each dimension needs, or show their ranges",
                       description="Observation ranges: per dimension, the code range on the paper's grid 10^-m "
                                   "that the data needs (docs/obs_ranges.md).")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=type(p))
    scan = actions.add_parser("scan", help="collect observations and write observation ranges (needs [train])")
    scan.add_argument("--env", required=True, help="a gymnasium env id with a Box of floats (v3 ids run on v5)")
    scan.add_argument("--steps", type=count, default=SCAN_STEPS,
                      help=f"observations to collect (default {SCAN_STEPS:,})")
    scan.add_argument("--decimals", "-m", type=count, default=2, help="m: the grid is 10^-m (default 2)")
    scan.add_argument("--policy", default="random", help="random (default) or a saved SB3 model (.zip) acting")
    scan.add_argument("--algo", help="the algorithm of --policy MODEL.zip (ppo, sac, td3, ...)")
    scan.add_argument("--from-buffer", help="read the observations of a saved replay buffer instead of acting")
    scan.add_argument("--seed", type=int, default=0, help="seed of the env and the random actions (default 0)")
    scan.add_argument("--out", required=True, help="the observation ranges' YAML file")
    show = actions.add_parser("show", help="the per-dimension table and summary of observation ranges")
    show.add_argument("ranges", help="observation ranges YAML (from `planner obs scan`)")
    show.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def scan(args: argparse.Namespace) -> ObservationRanges:
    require_train_extra("planner obs scan")
    if not 0 <= args.decimals <= 9:
        raise PlannerError(f"--decimals must be 0..9, got {args.decimals}", "decimals")
    out = check_output_path(args.out, "out")
    from planner.obs_ranges import choose_ranges
    from validation.scan import from_buffer, rollout

    if args.from_buffer:
        observations, how = from_buffer(args.from_buffer), {"buffer": str(args.from_buffer)}
    else:
        model = None if args.policy == "random" else args.policy
        observations = rollout(args.env, args.steps, args.seed, model, args.algo, progress=True)
        how = {"policy": args.policy, "seed": args.seed}
    from planner.cli import package_version

    ranges = choose_ranges(observations, args.decimals, CLAMP,
                     {"env": args.env, **how, "date": time.strftime("%Y-%m-%d"), "package": package_version()})
    write_atomic(out, yaml.safe_dump(ranges.as_dict(), sort_keys=False).encode(), "out")
    return ranges


def run(args: argparse.Namespace) -> int:
    ranges = scan(args) if args.action == "scan" else load_ranges(args.ranges)
    summary = ranges.summary()
    if args.action == "show" and args.json:
        print(json.dumps({**ranges.as_dict(), "summary": summary}, indent=2))
        return 0
    rows = [[str(i), f"{d.lo:,}", f"{d.hi:,}", str(ranges.row_bits_of(i)), f"{100 * d.outside:.3f}%",
             f"{100 * d.zeros:.1f}%", f"{d.entropy:.2f}"] for i, d in enumerate(ranges.dims)]
    if args.action == "show":
        print(render(rows, ["dim", "lo code", "hi code", "bits", "outside", "zeros", "entropy bits"]))
        print()
    source = ", ".join(f"{k} {v}" for k, v in ranges.source.items())
    print(f"{ranges.dim} dims at m = {ranges.decimals} (grid 10^-{ranges.decimals}, clamp {ranges.clamp:g}); {source}")
    print(f"mean {summary['mean_bits']:.2f} bits per value ({summary['row_bytes']:g} B per row at bit stride, plus "
          f"{summary['block_bytes_per_row']:.3f} B of side-table blocks) against the uniform "
          f"{summary['uniform_bits']} bits ({summary['uniform_row_bytes']:g} B); expected side-table entries "
          f"{summary['exceptions_per_row']:.4f} per row ({summary['exception_bytes_per_row']:.2f} B); entropy "
          f"{summary['entropy_bits']:.2f} bits per value (the bound for any per-value code)")
    if args.action == "scan":
        print(f"wrote {args.out}: `planner obs show {args.out}` for the per-dimension table")
    return 0
