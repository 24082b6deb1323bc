"""``planner study``: does learning survive the storage that fits? A grid of real training runs and its summary."""

import argparse
import sys
from pathlib import Path

from planner.commands.options import count
from planner.errors import PlannerError
from planner.extras import TRAIN_MODULES, missing, require_train_extra

STUDY_MODULES = ("ray", "scipy")  # the [study] extra
LARGE = 1_000  # trials: a larger study runs only with --confirm-large
SHIPPED = sorted(p.stem for p in (Path(__file__).resolve().parents[2] / "validation/study/specs").glob("*.yaml"))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="train a grid of envs x algorithms x storages x seeds and compare the returns",
                       description=f"Runs a study (a YAML grid: validation/study/specs/{{{','.join(SHIPPED)}}}"
                                   ".yaml, or their names) as real SB3 training runs, locally or on Ray, into --out, "
                                   "and writes the summary: returns against the baseline (Welch's t-test), step times, "
                                   "plots (docs/study.md). A rerun with the same --out skips the finished trials.")
    p.add_argument("spec", nargs="?", help=f"the study's YAML file, or a shipped study's name ({', '.join(SHIPPED)})")
    p.add_argument("--out", help="results folder (new, empty, or the study's own to resume it)")
    p.add_argument("--summarize", metavar="DIR", help="only summarize the study in DIR (no SPEC)")
    p.add_argument("--ray", action="store_true", help="run the trials on a local Ray started here (Ray comes with "
                                                      "the [study] extra)")
    p.add_argument("--address", help="run the trials on the Ray cluster at ADDRESS (e.g. auto, or HEAD:6379; the "
                                     "[study] extra)")
    p.add_argument("--workers", type=count, help="trials at once (default: the cores; with --address: the "
                                                 "cluster's CPUs)")
    p.add_argument("--confirm-large", action="store_true", help=f"run a study of more than {LARGE:,} trials "
                                                                "(refused without it)")
    p.set_defaults(func=run)


def _require_extras(train: "tuple[str, ...]", study: "tuple[str, ...]") -> None:
    """Refuse, in one line, a run whose modules of the [train] or [study] extra are not importable, naming every
    extra to install (not the first alone)."""
    absent_train, absent_study = missing(train), missing(study)
    if absent_train and absent_study:
        raise PlannerError(f"planner study needs the [train] and [study] extras, which are not installed "
                           f"({', '.join(absent_train + absent_study)} not importable): pip install torch==2.13.0, "
                           'then pip install "justround-planner[train,study]"')
    if absent_study:
        raise PlannerError(f"planner study needs the [study] extra ({', '.join(absent_study)} not importable): "
                           'pip install "justround-planner[study]"')
    require_train_extra("planner study", train)


def run(args: argparse.Namespace) -> int:
    if (args.spec is None) == (args.summarize is None):
        raise PlannerError("give a study's SPEC (with out), or summarize DIR alone", "summarize", "out")
    if args.summarize is not None:
        if args.out or args.ray or args.address or args.workers or args.confirm_large:
            raise PlannerError("summarize takes only the study's folder (no out, ray, address, workers or "
                               "confirm_large)", "summarize")
        _require_extras(("matplotlib",), ("scipy",))
        from validation.study.summary import summarize
        print(summarize(Path(args.summarize))["markdown"], end="")
        return 0
    if not args.out:
        raise PlannerError("out is required: the folder the trials and the summary go to", "out")
    if args.workers is not None and args.workers < 1:
        raise PlannerError(f"workers must be at least 1, got {args.workers}", "workers")
    _require_extras(TRAIN_MODULES, STUDY_MODULES if args.ray or args.address else ("scipy",))
    from validation.harness.runner import Stopped
    from validation.study.driver import run_study

    try:
        summary = run_study(args.spec, Path(args.out), args.ray, args.address, args.workers,
                            None if args.confirm_large else LARGE)
    except Stopped as stop:
        print(f"planner study: {stop.status} by {stop.signal}; the finished trials are kept in {args.out}: rerun "
              "the same command to resume", file=sys.stderr)
        return 128 + stop.signum
    print(summary["markdown"], end="")
    print(f"summary: {args.out}/summary.md", file=sys.stderr)
    return 0 if summary["done"] == summary["trials"] else 1
