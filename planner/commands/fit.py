"""``planner fit``: will PPO / SAC fit this device, with which storage, and how large a buffer?"""

import argparse
import csv
import io
import json

from planner.commands.options import count
from planner.envs import lookup_env
from planner.errors import PlannerError
from planner.fit import best_row, fit, recommendation
from planner.networks import parse_net
from planner.output import check_output_path, write_atomic
from planner.plot import require_matplotlib, write_fit_png
from planner.profiles import builtin_names, load_all, load_profile
from planner.runspec import ALGOS
from planner.table import render
from planner.units import auto_unit, format_bytes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="does a training run fit a device, and at which precision?")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--profile", help=f"shipped profile ({', '.join(builtin_names())}) or a YAML path")
    who.add_argument("--all-profiles", action="store_true", help="one line per shipped profile")
    p.add_argument("--env", help="environment id, e.g. Ant-v3")
    p.add_argument("--obs-dim", type=count)
    p.add_argument("--action-dim", type=count)
    p.add_argument("--algo", choices=ALGOS, action="append", help="repeat for several (default: ppo and sac)")
    p.add_argument("--buffer-size", type=count, help="replay capacity for sac/td3 (default 1e6, the paper's)")
    p.add_argument("--n-steps", type=count, help="PPO rollout length (default 2048, the paper's)")
    p.add_argument("--n-envs", type=count, default=1)
    p.add_argument("--net", help="hidden sizes, e.g. 256,256 (default: SB3's for each algo)")
    p.add_argument("--decimals", "-m", type=int, help="decimals kept (default: the paper's, 1 for PPO and 2 for SAC)")
    p.add_argument("--clamp", "-b", type=float, default=127.0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", metavar="FILE", help="write the rows as CSV")
    p.add_argument("--plot", metavar="FILE.png", help="write a Figure-2-style bar chart")
    p.set_defaults(func=run)


def _dims(args: argparse.Namespace) -> "tuple[str, int, int]":
    if args.env:
        dims = lookup_env(args.env)
        return (args.env, dims.obs_dim if args.obs_dim is None else args.obs_dim,
                dims.action_dim if args.action_dim is None else args.action_dim)
    if args.obs_dim is None or args.action_dim is None:
        raise PlannerError("give --env, or both --obs-dim and --action-dim")
    return "custom", args.obs_dim, args.action_dim


def _fit(profile, obs_dim: int, action_dim: int, args: argparse.Namespace):
    return fit(profile, obs_dim, action_dim, tuple(args.algo or ("ppo", "sac")), args.buffer_size, args.n_steps,
               None if args.net is None else parse_net(args.net), args.decimals, args.clamp, args.n_envs)


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unusable --csv/--plot before anything is computed or written."""
    if args.all_profiles and (args.csv is not None or args.plot is not None):
        raise PlannerError("--csv and --plot take a single --profile; with --all-profiles use --json")
    if args.plot is not None:
        check_output_path(args.plot, "--plot", ".png")
        require_matplotlib()
    if args.csv is not None:
        check_output_path(args.csv, "--csv")


def _csv(rows: "list[dict]") -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def run(args: argparse.Namespace) -> int:
    _check_outputs(args)
    env_id, obs_dim, action_dim = _dims(args)
    if args.all_profiles:
        return _run_all(args, env_id, obs_dim, action_dim)
    profile = load_profile(args.profile)
    result = _fit(profile, obs_dim, action_dim, args)
    rows = [row.as_dict() for row in result.rows]
    budget = profile.budget()
    if args.plot is not None:
        write_fit_png(result, args.plot)
    if args.csv is not None:
        write_atomic(args.csv, _csv(rows).encode(), "--csv")
    if args.json:
        print(json.dumps({
            "profile": {"name": profile.name, "description": profile.description, "path": profile.path,
                        "total_bytes": budget.total, "os_reserve_bytes": budget.os_reserve,
                        "runtime_bytes": budget.runtime, "margin_bytes": budget.margin,
                        "buffer_only": profile.buffer_only},
            "env": {"id": env_id, "obs_dim": obs_dim, "action_dim": action_dim},
            "budget_bytes": budget.available, "rows": rows, "recommendation": recommendation(result)}, indent=2))
        return 0
    unit = auto_unit(budget.total)
    print(f"{profile.name}: {profile.description}")
    print(render(budget.rows(unit), ["budget", unit]))
    print(f"\n{env_id}: obs {obs_dim}, action {action_dim}"
          f"{'  (buffer only: no Python runtime on this device)' if profile.buffer_only else ''}\n")
    table = [[r["algo"].upper(), r["label"], f"{r['buffer_size']:,}", format_bytes(r["models_bytes"], "MB"),
              format_bytes(r["buffer_bytes"], "MB"), format_bytes(r["predicted_bytes"], "MB"),
              "yes" if r["fits"] else "NO", format_bytes(r["headroom_bytes"], "MB"), f"{r['max_buffer_size']:,}"]
             for r in rows]
    print(render(table, ["algo", "storage", "buffer", "models+opt", "buffer MB", "total", "fits", "headroom",
                         "max buffer"]))
    print("\n(buffer: replay capacity in transitions for SAC, n_steps for PPO; MB = 10^6 B)")
    print(recommendation(result))
    return 0


def _run_all(args: argparse.Namespace, env_id: str, obs_dim: int, action_dim: int) -> int:
    lines, records = [], []
    for profile in load_all():
        result = _fit(profile, obs_dim, action_dim, args)
        algos = list(dict.fromkeys(row.algo for row in result.rows))
        line = [f"{profile.name}{' (buffer only)' if profile.buffer_only else ''}",
                format_bytes(result.budget_bytes, "MB")]
        record = {"profile": profile.name, "buffer_only": profile.buffer_only, "budget_bytes": result.budget_bytes,
                  "best": {}}
        for algo in algos:
            rows = [row for row in result.rows if row.algo == algo]
            best = best_row(rows)
            if best is None:
                top = max(rows, key=lambda row: row.max_buffer_size)
                line.append(f"none (max {top.max_buffer_size:,} with {top.storage})")
                record["best"][algo] = None
            else:
                line.append(f"{best.storage} ({format_bytes(best.predicted_bytes, 'MB')})")
                record["best"][algo] = best.as_dict()
        lines.append(line)
        records.append(record)
    if args.json:
        print(json.dumps({"env": {"id": env_id, "obs_dim": obs_dim, "action_dim": action_dim}, "profiles": records},
                         indent=2))
        return 0
    print(f"{env_id}: obs {obs_dim}, action {action_dim}; the least intrusive storage that fits each device "
          "(MB = 10^6 B)\n")
    print(render(lines, ["profile", "budget", *(f"{a.upper()} best fit" for a in algos)]))
    print("\n(buffer only): a microcontroller with no Python runtime; its figures are for the buffer alone.")
    return 0
