"""Option groups shared by the subcommands, and the one place that turns them into planner inputs.

Each group is declared once: the run's spaces (``--env`` or explicit dimensions), its sizes,
quantization, and output (``--json/--csv/--plot/--unit``).
"""

import argparse

from planner.algorithms import ALGORITHMS
from planner.defaults import CLAMP, FIT_ALGOS, SCAN_STEPS, WIDTH_RULE
from planner.envs import EnvDims, lookup_env
from planner.errors import PlannerError
from planner.extras import require_train_extra
from planner.hyperparams import Applied, apply, zoo_file
from planner.quantization import WIDTH_RULES
from planner.runspec import ALGOS, DTYPE_BYTES
from planner.units import DISPLAY_UNITS, parse_count


def count(text: str) -> int:
    """argparse type for ``1e6``, ``1_000_000``, ``200000``."""
    try:
        return parse_count(text)
    except PlannerError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_algo_option(parser: argparse.ArgumentParser, several: bool = False) -> None:
    if several:
        parser.add_argument("--algo", choices=ALGOS, action="append",
                            help=f"algorithm; repeat for several (default: {' and '.join(FIT_ALGOS)})")
    else:
        parser.add_argument("--algo", choices=ALGOS, required=True,
                            help="algorithm (stable-baselines3's or sb3-contrib's)")


def add_env_options(parser: argparse.ArgumentParser) -> None:
    """``--env ID``, or ``--obs-dim/--action-dim`` (and ``--obs-dtype``) for a run without an env id."""
    parser.add_argument("--env", help="environment id: gives the dimensions and dtypes, e.g. Humanoid-v5 "
                                      "(-v3 MuJoCo ids are known without gymnasium)")
    parser.add_argument("--obs-dim", type=count, help="observation size, instead of --env")
    parser.add_argument("--action-dim", type=count, help="action size, instead of --env")
    parser.add_argument("--obs-dtype", choices=tuple(DTYPE_BYTES),
                        help="observation dtype, with --obs-dim (default float64, as MuJoCo envs)")


def env_from_args(args: argparse.Namespace) -> EnvDims:
    """The env's dimensions: from ``--env``, or from ``--obs-dim/--action-dim``; never both."""
    explicit = [flag for flag, value in (("--obs-dim", args.obs_dim), ("--action-dim", args.action_dim),
                                         ("--obs-dtype", args.obs_dtype)) if value is not None]
    if args.env:
        if explicit:
            raise PlannerError(f"--env {args.env} gives the dimensions: drop {' and '.join(explicit)}, or drop --env")
        return lookup_env(args.env)
    if args.obs_dim is None or args.action_dim is None:
        raise PlannerError("give --env, or both --obs-dim and --action-dim")
    return EnvDims("custom", args.obs_dim, args.action_dim, args.obs_dtype or "float64")


def _default_sizes(on_policy: bool) -> str:
    """SB3's default sizes of the on-policy (n_steps) or off-policy (buffer_size) algorithms, e.g.
    ``2048 for ppo, trpo; 5 for a2c``."""
    sizes: "dict[int, list[str]]" = {}
    for entry in ALGORITHMS.values():
        if entry.on_policy == on_policy:
            sizes.setdefault(entry.buffer_size, []).append(entry.name)
    shown = {size: f"{size:.0e}" if size >= 10**5 else str(size) for size in sizes}
    if len(sizes) == 1:
        return next(iter(shown.values()))
    return "; ".join(f"{shown[size]} for {', '.join(names)}" for size, names in sizes.items())


def add_size_options(parser: argparse.ArgumentParser, n_envs: bool = True) -> None:
    parser.add_argument("--buffer-size", type=count,
                        help=f"replay capacity in transitions, off-policy algorithms (default {_default_sizes(False)}, "
                             "SB3's); 1e6 and 1_000_000 both work")
    parser.add_argument("--n-steps", type=count,
                        help=f"rollout length per env, on-policy algorithms (default {_default_sizes(True)}, SB3's)")
    if n_envs:
        parser.add_argument("--n-envs", type=count, help="parallel envs (default 1, or the --hyperparams entry's)")


def add_wrapper_options(parser: argparse.ArgumentParser) -> None:
    """What wraps the env and the buffer: frame stacking and hindsight relabelling."""
    parser.add_argument("--frame-stack", type=count, help="frames stacked by VecFrameStack (default 1: none)")
    parser.add_argument("--her", action="store_true",
                        help="HerReplayBuffer (off-policy, goal-conditioned Dict envs): adds its episode arrays")


def add_quant_options(parser: argparse.ArgumentParser, widths: bool = True) -> None:
    parser.add_argument("--decimals", "-m", type=int,
                        help="decimal places kept (the paper's m; default: the paper's for the algorithm's kind, "
                             "PPO's 1 for on-policy algorithms, SAC's 2 for off-policy ones)")
    parser.add_argument("--clamp", "-b", type=float, help=f"symmetric clamp bound b (default {CLAMP:g}, the paper's)")
    if widths:
        parser.add_argument("--bits", type=int, help="bits per value (default: by --width-rule)")
        parser.add_argument("--width-rule", choices=WIDTH_RULES, default=WIDTH_RULE,
                            help=f"bit width by the exact level count or by the paper's Eq. 6 (default {WIDTH_RULE})")


def quant_requested(args: argparse.Namespace) -> bool:
    """Whether any quantization option was given."""
    return any(getattr(args, name, None) is not None for name in ("decimals", "clamp", "bits"))


def add_obs_ranges_options(parser: argparse.ArgumentParser) -> None:
    """``--obs-ranges RANGES.yaml`` or ``--scan``: the per-dimension widths of the calibrated storage."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--obs-ranges", metavar="RANGES.yaml",
                       help="observation ranges (planner obs scan): the calibrated storage's per-dimension widths")
    group.add_argument("--scan", action="store_true",
                       help=f"scan --env now ({SCAN_STEPS:,} random steps, seed 0; needs the [train] extra) for the "
                            "calibrated storage's widths")


def scans_from_args(args: argparse.Namespace, env: EnvDims, decimals: "tuple[int, ...]") -> tuple:
    """The observation ranges ``--obs-ranges`` reads (one) or ``--scan`` scans (one per m of ``decimals``),
    checked against the env's observation size; () without either flag."""
    from planner.obs_ranges import choose_ranges, load_ranges

    if args.obs_ranges:
        ranges = load_ranges(args.obs_ranges)
        ranges.check_fits(env.obs_dim, f"observations of {env.env_id}")
        return (ranges,)
    if not args.scan:
        return ()
    if not args.env:
        raise PlannerError("--scan scans --env: give an env id (or a file with --obs-ranges)", "scan", "env")
    require_train_extra("--scan")
    from validation.scan import rollout

    observations = rollout(args.env, SCAN_STEPS, 0, progress=True)
    source = {"env": args.env, "policy": "random", "seed": 0}
    return tuple(choose_ranges(observations, m, CLAMP, source) for m in dict.fromkeys(decimals))


def add_output_options(parser: argparse.ArgumentParser, files: bool = False) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--unit", default="MB", choices=DISPLAY_UNITS,
                        help="unit of the sizes shown (default MB = 10^6 B; MiB = 2^20 B)")
    if files:
        parser.add_argument("--csv", metavar="FILE", help="also write the rows as CSV")
        parser.add_argument("--plot", metavar="FILE.png", help="also write a chart (needs matplotlib)")


def add_hyperparams_options(parser: argparse.ArgumentParser) -> None:
    """``--hyperparams FILE.yml`` or ``--zoo``: an rl-zoo3 hyper-parameter file's entry for ``--env``."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--hyperparams", metavar="FILE.yml",
                       help="rl-zoo3 hyper-parameter file: plan its entry for --env (buffer_size, n_steps, n_envs, "
                            "policy_kwargs net_arch); flags given explicitly win")
    group.add_argument("--zoo", action="store_true",
                       help="as --hyperparams, with the installed rl-zoo3's file for --algo (pip install rl_zoo3)")


def apply_hyperparams(args: argparse.Namespace, algos: "tuple[str, ...]") -> "Applied | None":
    """Fill the sizes the flags left unset from ``--hyperparams``/``--zoo`` (explicit flags win); then
    ``args.n_envs`` is always set. Returns what the file gave, or None without a file."""
    name = "zoo" if getattr(args, "zoo", False) else ("hyperparams" if getattr(args, "hyperparams", None) else None)
    applied = None
    if name is not None:
        if not args.env:
            raise PlannerError(f"{name} needs env: rl-zoo3 files hold one entry per env id", name, "env")
        if len(set(algos)) != 1:
            raise PlannerError(f"{name}: an rl-zoo3 file holds one algorithm's settings; give one algo", name, "algo")
        explicit = {"buffer_size": args.buffer_size, "n_steps": args.n_steps, "n_envs": args.n_envs, "net": args.net,
                    "frame_stack": args.frame_stack}
        if name == "zoo":
            path = zoo_file(algos[0])
            try:
                applied = apply(path, args.env, algos[0], explicit)
            except PlannerError as exc:  # say --zoo, not --hyperparams, for rl-zoo3's own file
                raise PlannerError(str(exc).replace("hyperparams ", "zoo: ", 1), *exc.params) from None
        else:
            applied = apply(args.hyperparams, args.env, algos[0], explicit)
        for key, value in applied.used.items():
            setattr(args, key, ",".join(map(str, value)) if key == "net" else value)
    if args.n_envs is None:
        args.n_envs = 1
    if args.frame_stack is None:
        args.frame_stack = 1
    return applied
