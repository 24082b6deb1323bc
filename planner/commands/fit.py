"""``planner fit``: will this run fit the device, with which storage, and how large a buffer?"""

import argparse
import csv
import io
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
    env_from_args,
    scans_from_args,
)
from planner.defaults import CLAMP, default_decimals
from planner.envs import EnvDims
from planner.errors import PlannerError
from planner.evidence import learning_note
from planner.fit import FitResult, best_row, default_algos, fit, recommendation
from planner.hyperparams import Applied
from planner.networks import parse_net
from planner.output import check_output_path, write_atomic
from planner.plot import require_matplotlib, write_fit_png
from planner.profiles import DeviceProfile, builtin_names, load_all, load_profile
from planner.table import render
from planner.units import auto_unit, format_bytes, unit_note

BUFFER_ONLY_NOTE = "(buffer only): a microcontroller with no Python runtime; its figures are for the buffer alone."


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="does a training run fit a device, and at which precision?",
                       description="One row per algorithm and storage against a device profile's budget, with the "
                                   "largest buffer that fits.")
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--profile", help=f"shipped profile ({', '.join(builtin_names())}) or a YAML path")
    who.add_argument("--all-profiles", action="store_true", help="one line per shipped profile")
    add_env_options(p)
    add_algo_option(p, several=True)
    add_hyperparams_options(p)
    add_size_options(p)
    add_wrapper_options(p)
    p.add_argument("--net", help="hidden sizes, e.g. 256,256 (default: SB3's for each algo)")
    add_quant_options(p, widths=False)
    add_obs_ranges_options(p)
    add_output_options(p, files=True)
    p.set_defaults(func=run)


def _fit(profile: DeviceProfile, env: EnvDims, args: argparse.Namespace, scans: tuple = ()) -> FitResult:
    return fit(profile, env.obs_dim, env.action_dim, tuple(args.algo or default_algos(env.action_space)),
               buffer_size=args.buffer_size, n_steps=args.n_steps,
               net=None if args.net is None else parse_net(args.net), decimals=args.decimals,
               clamp=CLAMP if args.clamp is None else args.clamp, n_envs=args.n_envs, env_id=env.env_id,
               obs_dtype=env.obs_dtype, action_dtype=env.action_dtype, action_space=env.action_space,
               obs_space=env.obs_space, frame_stack=args.frame_stack, her=args.her, scans=scans)


def _check_outputs(args: argparse.Namespace) -> None:
    """Refuse unusable --csv/--plot before anything is computed or written."""
    if args.all_profiles and (args.csv is not None or args.plot is not None):
        raise PlannerError("--csv and --plot take a single --profile; with --all-profiles use --json")
    if args.plot is not None:
        check_output_path(args.plot, "plot", ".png")
        require_matplotlib()
    if args.csv is not None:
        check_output_path(args.csv, "csv")


def _csv(rows: "list[dict]") -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def _assumed(env: EnvDims, args: argparse.Namespace) -> str:
    observations = env.obs_space or f"{env.obs_dim} ({env.obs_dtype})"
    actions = env.action_space or f"{env.action_dim} ({env.action_dtype})"
    wrappers = (f", frame_stack {args.frame_stack}" if args.frame_stack > 1 else "") + (", HER" if args.her else "")
    return f"{env.env_id}: obs {observations}, action {actions}, n_envs {args.n_envs}{wrappers}"


def _learning(env: EnvDims, args: argparse.Namespace, algos: "tuple[str, ...]") -> "dict[str, str]":
    """What the learning study measured for each algorithm packed at the run's m, where it trained the env."""
    return {a: learning_note(env.env_id, a, default_decimals(a) if args.decimals is None else args.decimals)
            for a in algos}


def run(args: argparse.Namespace) -> int:
    _check_outputs(args)
    env = env_from_args(args)
    algos = tuple(args.algo or default_algos(env.action_space))
    applied = apply_hyperparams(args, algos)
    scans = scans_from_args(args, env, tuple(default_decimals(a) if args.decimals is None else args.decimals
                                                     for a in algos))
    if applied and not args.json:
        print(applied.line(args._flags))
    if args.all_profiles:
        return _run_all(args, env, applied, scans)
    profile = load_profile(args.profile)
    result = _fit(profile, env, args, scans)
    rows = [row.as_dict() for row in result.rows]
    if args.plot is not None:
        write_fit_png(result, args.plot)
    if args.csv is not None:
        write_atomic(args.csv, _csv(rows).encode(), "csv")
    if args.json:
        print(json.dumps({"profile": profile.as_dict(), "env": env.as_dict(), "n_envs": args.n_envs,
                          "budget_bytes": result.budget_bytes, "rows": rows,
                          "recommendation": recommendation(result), "learning": _learning(env, args, algos),
                          **({"hyperparams": applied.as_dict()} if applied else {})}, indent=2))
        return 0
    budget, unit, gpu_budget = profile.budget(), args.unit, profile.gpu_budget()
    print(f"{profile.name}: {profile.description}")
    print(render(budget.rows(auto_unit(budget.total)), ["host budget" if gpu_budget else "budget",
                                                         auto_unit(budget.total)]))
    if gpu_budget:
        print(render(gpu_budget.rows(auto_unit(gpu_budget.total), "GPU runtime (CUDA context, libraries)"),
                     ["GPU budget", auto_unit(gpu_budget.total)]))
    print(f"\n{_assumed(env, args)}{'  (buffer only: no Python runtime on this device)' if profile.buffer_only else ''}"
          "\n")
    verdicts = ["yes" if r["fits"] else f"NO ({', '.join(r['failing_pools'])})" for r in rows]
    if gpu_budget:  # two pools: the buffer in host RAM, models, optimizer and update on the GPU
        table = [[r["algo"].upper(), r["label"], f"{r['buffer_size']:,}", format_bytes(r["gpu"]["total_bytes"], unit),
                  format_bytes(r["buffer_bytes"], unit), verdict, format_bytes(r["gpu"]["headroom_bytes"], unit),
                  format_bytes(r["headroom_bytes"], unit), f"{r['max_buffer_size']:,}"]
                 for r, verdict in zip(rows, verdicts)]
        print(render(table, ["algo", "storage", "size", "GPU: models+opt+update", "host: buffer", "fits",
                             "GPU headroom", "host headroom", "max size"]))
        print("\n(GPU: parameters and optimizer state as the CUDA allocator holds them, plus an upper estimate of one "
              "update's batch and activations; the buffer stays in host RAM)")
    else:
        table = [[r["algo"].upper(), r["label"], f"{r['buffer_size']:,}",
                  "-" if r["models_bytes"] is None else format_bytes(r["models_bytes"], unit),
                  format_bytes(r["buffer_bytes"], unit), format_bytes(r["predicted_bytes"], unit), verdict,
                  format_bytes(r["headroom_bytes"], unit), f"{r['max_buffer_size']:,}"]
                 for r, verdict in zip(rows, verdicts)]
        print(render(table, ["algo", "storage", "size", "models+opt", "buffer", "total", "fits", "headroom",
                             "max size"]))
    print(f"\n(size: replay capacity in transitions for off-policy algorithms, n_steps per env for PPO; "
          f"max size: the largest that fits; {unit_note(unit)})")
    for spec in scans:
        source = ", ".join(f"{k} {v}" for k, v in spec.source.items() if k in ("env", "policy", "buffer",
                                                                                 "observations"))
        print(f"(calibrated, m = {spec.decimals}: widths from the observation ranges ({source}), chosen again from "
              f"the buffer's own rows as it fills; its side table is sized at the ranges' expected "
              f"{spec.exceptions_per_row:.4f} entries per row and grows if the data exceeds it)")
    print(recommendation(result))
    for note in _learning(env, args, algos).values():
        print(note)
    return 0


def _run_all(args: argparse.Namespace, env: EnvDims, applied: "Applied | None" = None, scans: tuple = ()) -> int:
    lines, records, algos = [], [], list(dict.fromkeys(args.algo or default_algos(env.action_space)))
    for profile in load_all():
        result = _fit(profile, env, args, scans)
        line = [f"{profile.name}{' (buffer only)' if profile.buffer_only else ''}",
                format_bytes(result.budget_bytes, args.unit)]
        record = {"profile": profile.name, "buffer_only": profile.buffer_only, "budget_bytes": result.budget_bytes,
                  "best": {}}
        for algo, rows in result.by_algo().items():
            best = best_row(rows)
            if best is None:
                top = max(rows, key=lambda row: row.max_buffer_size)
                line.append(f"none (max {top.max_buffer_size:,} in {top.label})")
                record["best"][algo] = None
            else:
                line.append(f"{best.label} ({format_bytes(best.predicted_bytes, args.unit)})")
                record["best"][algo] = best.as_dict()
        lines.append(line)
        records.append(record)
    if args.json:
        print(json.dumps({"env": env.as_dict(), "n_envs": args.n_envs, "profiles": records,
                          **({"hyperparams": applied.as_dict()} if applied else {})}, indent=2))
        return 0
    print(f"{_assumed(env, args)}; the least intrusive storage that fits each device ({unit_note(args.unit)})\n")
    print(render(lines, ["profile", "budget", *(f"{a.upper()} best fit" for a in algos)]))
    print(f"\n{BUFFER_ONLY_NOTE}")
    return 0
