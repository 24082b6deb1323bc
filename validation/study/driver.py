"""A study from its spec to its summary: the trials not finished yet, on the chosen backend, then the summary."""

import os
from pathlib import Path

import psutil

from planner.errors import PlannerError
from validation.harness.folder import hold
from validation.study.grid import Trial, arms, check_memory, trials
from validation.study.progress import Progress
from validation.study.results import LOCK, STUDY, TRIALS, is_done, trial_path, write_study
from validation.study.spec import read_spec


def check_folder(out: Path) -> None:
    """``out`` is new, empty, or a study's folder (a rerun resumes it); anything else is refused."""
    if out.exists() and not out.is_dir():
        raise PlannerError(f"{out} is not a folder", "out")
    if out.is_dir() and any(p.name != LOCK for p in out.iterdir()) and not ((out / STUDY).is_file()
                                                                          or (out / TRIALS).is_dir()):
        raise PlannerError(f"{out} holds files but no study (no {STUDY}): give a new or empty folder, or a "
                           "study's folder to resume", "out")


def run_study(spec_path: str, out: Path, use_ray: bool = False, address: "str | None" = None,
              workers: "int | None" = None, max_trials: "int | None" = None) -> dict:
    """Run every trial of the spec whose file does not end with a done record; then summarize. Returns the
    summary (see :func:`validation.study.summary.summarize`). A stop signal raises
    :class:`validation.harness.runner.Stopped` once the running trials are killed (their files are restarted on a
    rerun).

    Refused before anything is written: a spec of more than ``max_trials`` trials (None: any number), an arm the
    harness refuses, one whose predicted footprint exceeds this host's memory (with ``address``: the smallest
    Ray node's), a Ray cluster that cannot be reached."""
    spec = read_spec(spec_path)
    if max_trials is not None and spec.trial_count > max_trials:
        groups = ", ".join(f"groups[{i}] {g.trial_count:,}" for i, g in enumerate(spec.groups))
        raise PlannerError(f"study {spec_path}: {spec.trial_count:,} trials"
                           f"{f' ({groups})' if len(spec.groups) > 1 else ''}, more than {max_trials:,}: give "
                           "confirm_large to run them all", "confirm_large")
    checked = arms(spec)
    grid = trials(spec, checked)
    if not address:  # the trials run here
        check_memory(spec, checked, psutil.virtual_memory().total, "this host's")
    check_folder(out)
    on_ray = use_ray or bool(address)
    limit = None
    if on_ray and _pending(grid, out):
        # before anything is written: a cluster that cannot be reached, or too small, leaves no folder
        from validation.study.backends import connect_ray, disconnect_ray
        limit, memory = connect_ray(workers if workers or address else os.cpu_count(), address)
        if address and memory is not None:
            try:
                check_memory(spec, checked, memory, "the smallest Ray node's")
            except PlannerError:
                disconnect_ray()
                raise
    with hold(out, LOCK, "study"):
        pending = _pending(grid, out)
        write_study(out, spec_path, [t.id for t in grid])
        progress = Progress(len(grid), len(grid) - len(pending))
        progress.line(f"study {spec.name}: {len(grid)} trials, {len(pending)} to run"
                      + (f" on Ray{' at ' + address if address else ''}" if on_ray else " locally"))
        if pending:
            from validation.harness.runner import stopping
            from validation.study.backends import run_local, run_ray

            with stopping():  # SIGINT, SIGTERM, SIGHUP: Stopped, after the backend has ended its trials
                if on_ray:
                    run_ray(pending, out, limit, progress)
                else:
                    run_local(pending, out, workers or os.cpu_count() or 1, progress)
    from validation.study.summary import summarize
    return summarize(out)


def _pending(grid: "list[Trial]", out: Path) -> "list[Trial]":
    """The trials of ``grid`` whose file in ``out`` does not end with a done record (read only where one exists)."""
    started = {path.stem for path in (out / TRIALS).glob("*.jsonl")}
    return [t for t in grid if t.id not in started or not is_done(trial_path(out, t.id), t.record())]
