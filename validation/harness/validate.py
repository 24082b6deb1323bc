"""Run training in each storage (SB3 as is, packed), each in a fresh process, and hold the measurements
against the planner's prediction. The report folder is written as the runs go, so a validation that
stops part-way leaves a report that says why, with what it measured."""

import os
import time
from dataclasses import KW_ONLY, asdict, dataclass, replace
from pathlib import Path

from planner.errors import PlannerError
from planner.fit import max_buffer_size
from planner.footprint import footprint
from planner.profiles import DeviceProfile
from planner.units import format_bytes
from validation.harness.boundary import grid, grid_table
from validation.harness.calibrate import probe_config, probe_label, runtime_of
from validation.harness.compare import Check, checks
from validation.harness.confine import Confinement, confine_limit
from validation.harness.folder import claim
from validation.harness.predict import Runtime, predict
from validation.harness.report import merge_timeseries, plot_memory, plot_returns, table, write_json
from validation.harness.runconfig import RunConfig
from validation.harness.runner import Stopped, machine, run_child, stopping, versions


@dataclass(frozen=True)
class Validation:
    configs: "tuple[RunConfig, ...]"
    out: Path
    profile: "DeviceProfile | None" = None
    _: KW_ONLY
    force: bool = False
    overwrite: bool = False  # clear a non-empty ``out`` first (else it is refused)
    confine: "Confinement | None" = None  # hold each run to the device's memory for training + this host's runtime
    boundary: bool = False  # the boundary experiment: a run the limit kills is an outcome, not the end


def device_differences(profile: DeviceProfile) -> "list[str]":
    """Where this machine differs from the profile it is validated against."""
    here = machine()
    notes = []
    if here["arch"] != profile.arch:
        notes.append(f"architecture: this machine is {here['arch']}, the profile says {profile.arch}")
    ratio = here["total_memory_bytes"] / profile.total_memory
    if not 0.9 <= ratio <= 1.1:
        notes.append(f"total memory: this machine has {format_bytes(here['total_memory_bytes'], 'GB')}, "
                     f"the profile says {format_bytes(profile.total_memory, 'GB')}")
    return notes


def admit(config: RunConfig, profile: DeviceProfile) -> None:
    """Refuse a run the planner predicts will not fit the profile's budget."""
    spec = config.run_spec()
    budget = profile.budget().available
    needed = footprint(spec).total_bytes
    if needed > budget:
        largest = max_buffer_size(spec, budget, buffer_only=False)
        raise PlannerError(
            f"{config.name} needs {format_bytes(needed, 'MB')} but {profile.name} leaves "
            f"{format_bytes(budget, 'MB')} for training; the largest {spec.size_param} that fits is {largest:,} "
            "(lower it, or force to run anyway)", spec.size_param, "force")


def _end_status(run: dict) -> str:
    """The validation's status when ``run`` did not complete: killed by a signal, killed by its group's limit, or
    failed."""
    return run["status"] if run["status"] in ("killed", "killed-by-limit") else "failed"


def _why(name: str, run: dict) -> str:
    group = run.get("confinement") or {}
    detail = {"killed": f" by {run.get('signal')}", "failed": f" (exit status {run.get('returncode')}"
              + (f": {run['error']}" if run.get("error") else "") + ")",
              "killed-by-limit": f" (the OOM killer of its memory group: peak {_mb(group.get('peak_bytes') or 0)} "
              f"against the limit {_mb(group.get('limit_bytes') or 0)})"}.get(run["status"], "")
    return f"run {name} {run['status']}{detail}"


def validate(job: Validation) -> "tuple[dict, list[Check]]":
    """Run every configuration and return the report with its checks. The report folder (``folder.claim``:
    fresh, or cleared with ``overwrite``, locked) gets report.json as the runs go ("running"); its final status,
    written before the plots (a plotting failure cannot leave it "running"), is "complete",
    "complete-with-failures", "failed" (a run or the probe exited with an error), "killed" (a run killed by a
    signal; SIGTERM or SIGHUP here) or "interrupted" (SIGINT), with a ``reason``. A stop signal kills the
    training child and ends the validation with what it measured."""
    for config in job.configs:
        config.check_trainable()
    if (job.confine is not None or job.boundary) and job.profile is None:
        raise PlannerError("a confined run needs a device profile: its budget is the limit", "confine", "profile")
    if job.boundary and job.confine is None:
        raise PlannerError("the boundary experiment runs confined: give it a mechanism", "boundary", "confine")
    if job.profile is not None and not job.force and not job.boundary:
        for config in job.configs:
            admit(config, job.profile)
    with claim(job.out, job.overwrite), stopping():
        return _validate(job)


def _validate(job: Validation) -> "tuple[dict, list[Check]]":
    report = {"status": "running", "reason": "", "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "machine": machine(), "versions": versions(), "profile": None, "runs": {}, "checks": [], "plots": []}
    if job.profile is not None:
        report["profile"] = {**job.profile.as_dict(), "differences_from_this_machine": device_differences(job.profile)}
    write_json(job.out / "report.json", report)
    predictions, all_checks, stopped = {}, [], False
    report["calibration"] = {"probe": None}
    into, key = report["calibration"], "probe"  # where a stopped child's run.json goes (key None: merged)
    try:
        probe = probe_config(job.configs[0].env_id, job.configs[0].algo, job.configs[0].seed)
        probe_run = run_child(probe, job.out / "calibration", probe_label(probe), job.confine)  # measured, no limit
        report["calibration"]["probe"] = probe_run
        if probe_run["status"] != "complete":
            report["status"], report["reason"] = _end_status(probe_run), "calibration " + _why(probe.name, probe_run)
            return report, all_checks
        runtime = runtime_of(probe, probe_run)
        report["calibration"].update(label=probe_label(probe), runtime_bytes=asdict(runtime),
                                     profile_runtime_bytes=job.profile.runtime if job.profile else None)
        limit = None
        if job.confine is not None:
            report["confinement"] = confinement_record(job, probe, probe_run, runtime)
            limit = report["confinement"]["limit_bytes"]
        write_json(job.out / "report.json", report)
        for config in job.configs:
            prediction = predictions[config.name] = predict(config, runtime)
            record = report["runs"][config.name] = {"prediction": {
                "runtime_bytes": asdict(runtime), "footprint": prediction.footprint.as_dict(),
                "peak_rss_bytes": prediction.peak_bytes}}
            into, key = record, None
            run = run_child(replace(config, memray=False), job.out / config.name, None, job.confine, limit)
            record.update(run)
            into, key = record, "memray_pass"
            if run["status"] == "complete" and config.memray:
                # traced in a process of its own: memray's bookkeeping stays out of the RSS figures
                traced = run_child(replace(config, steps=0), job.out / config.name / "memray",
                                   f"{config.name} memray pass (construction only)")
                run["measured"]["memray"] = traced["measured"].get("memray")
                if traced["status"] != "complete":
                    run["measured"]["memray_error"] = _why(f"{config.name} (memray pass)", traced)
            run_checks = checks(prediction, run)
            all_checks += run_checks
            report["checks"] = [c.as_dict() for c in all_checks]
            if run["status"] != "complete" and not (job.boundary and run["status"] == "killed-by-limit"):
                report["status"], report["reason"] = _end_status(run), _why(config.name, run)
                return report, all_checks
            write_json(job.out / "report.json", report)
        failed = [c for c in all_checks if c.verdict == "FAIL"]
        report["status"] = "complete-with-failures" if failed else "complete"
        report["reason"] = f"{len(failed)} check{'' if len(failed) == 1 else 's'} failed" if failed else ""
        if job.boundary:
            report["boundary"] = grid(report, job.configs, job.profile)
            disagree = sum(not row["agree"] for row in report["boundary"])
            if disagree:
                report["status"] = "complete-with-failures"
                report["reason"] = "; ".join(filter(None, (report["reason"], f"{disagree} boundary verdict"
                                                           f"{'' if disagree == 1 else 's'} disagree")))
        return report, all_checks
    except Stopped as stop:
        stopped = True
        if stop.run is not None:
            into.update({key: stop.run} if key else stop.run)
        report["status"], report["reason"], report["signal"] = stop.status, str(stop), stop.signal
        return report, all_checks
    except BaseException as exc:
        report["status"], report["reason"] = "failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
        raise
    finally:
        report["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        try:
            merge_timeseries(job.out, [name for name in report["runs"] if (job.out / name).is_dir()])
        finally:
            write_json(job.out / "report.json", report)  # final before the plots
        if predictions and not stopped:
            _plot(job.out, report, predictions, all_checks)


def confinement_record(job: Validation, probe: RunConfig, probe_run: dict, runtime: Runtime) -> dict:
    """What report.json says of the confinement: the mechanism, the limit and how it was reached.

    The host's runtime is taken in the group's own currency (what the kernel charged the calibration probe's group at
    its peak, minus the planner's models, optimizer and buffer for the probe), as a profile's runtime is the peak
    minus those: the RSS the probe reached (``runtime``) counts shared library pages the kernel charged elsewhere.

    :param job: the validation (its profile and mechanism)
    :param probe: the calibration probe's configuration
    :param probe_run: the probe's run.json, measured in a group of its own without a limit
    :param runtime: the runtimes the probe measured from RSS
    """
    charged = probe_run["confinement"]["peak_bytes"]
    if charged is None:
        raise PlannerError(f"{job.confine.mechanism} gave no peak for the calibration probe's group", "confine")
    host_runtime = charged - predict(probe, Runtime(0, 0, 0)).peak_bytes
    env_made = next((m["rss_bytes"] for m in probe_run["marks"] if m["name"] == "env_made"), None)
    return {"mechanism": job.confine.mechanism, "parent": str(job.confine.parent),
            "limit_bytes": confine_limit(job.profile, host_runtime),
            "profile_available_bytes": job.profile.budget().available, "profile_margin_bytes": job.profile.margin,
            "host_runtime_bytes": host_runtime,
            "probe_group_peak_bytes": charged, "probe_rss_runtime_bytes": runtime.training_bytes,
            "probe_env_made_rss_bytes": env_made,
            "rule": "limit = the device's memory for training (total - OS reserve - runtime: fit's available and "
                    "its safety margin) + this host's runtime, charged to the probe's group at its peak minus the "
                    "planner's models, optimizer and buffer for the probe; swap off"}


def group_notes(report: dict) -> "tuple[str, ...]":
    """One line per confined run: its group's peak against the limit, and whether the OOM killer ended it.

    :param report: the validation's report
    """
    notes = []
    for name, run in report["runs"].items():
        usage = run.get("confinement")
        if usage and usage.get("peak_bytes") is not None and usage.get("limit_bytes"):
            killed = "KILLED by the limit" if usage["oom_killed"] else "no OOM kill"
            share = 100 * usage["peak_bytes"] / usage["limit_bytes"]
            notes.append(f"{name}: group peak {usage['peak_bytes'] / 1e6:,.1f} of limit "
                         f"{usage['limit_bytes'] / 1e6:,.1f} ({share:.1f}%), {killed}")
    return tuple(notes)


def _plot(out: Path, report: dict, predictions: dict, all_checks: "list[Check]") -> None:
    """The plots, and report.json again naming them; a plot that fails is named in the report, which keeps
    its status."""
    try:
        report["plots"] = [str(plot_memory(out, predictions, all_checks, group_notes(report))),
                           str(plot_returns(out, predictions))]
    except Exception as exc:  # the measurements are in the report already: a plot is not worth losing them
        report["plot_error"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    write_json(out / "report.json", report)


def summary(report: dict, all_checks: "list[Check]") -> str:
    """The terminal table, each failed check and each check not judged (with why), what a check leaves out that the
    plot shows, the calibration probe's runtimes, the timings, the measured reduction, and the status with its
    reason."""
    lines = [table(all_checks), ""] if all_checks else []
    for check in all_checks:
        if check.verdict == "FAIL":
            lines.append(f"FAILED {check.run}: {check.quantity}: predicted {_mb(check.predicted)}, measured "
                         f"{_mb(check.measured)} ({100 * check.error:+.2f}%, tolerance {check.tolerance_text})"
                         if check.error is not None else f"FAILED {check.run}: {check.quantity}")
    for check in all_checks:
        if check.verdict == "n/a":
            lines.append(f"n/a {check.run}: {check.quantity}: {check.reason or 'not measured'}")
    lines += [f"note {check.caveat}" for check in all_checks if check.caveat]
    if len(lines) > 2:
        lines.append("")
    calibration = report.get("calibration") or {}
    if calibration.get("runtime_bytes"):  # the probe, said to be one: its figures are the predictions' runtime
        runtime = calibration["runtime_bytes"]
        lines.append(f"{calibration['label']}: runtime {_mb(runtime['built_bytes'])} built, "
                     f"{_mb(runtime['acting_bytes'])} acting, {_mb(runtime['training_bytes'])} training (the "
                     "predictions' runtime; its own figures are not checked)")
    for name, run in report["runs"].items():
        timing = run.get("measured", {}).get("timing", {})
        figures = ", ".join(f"{k} {v:.3f}" for k, v in timing.items())
        quant = run.get("measured", {}).get("quantization")
        lines.append(f"{name}: {run.get('status', 'not started')}; {figures}"
                     + (f"; quantization {quant}" if quant else ""))
    per_row: "dict[str, float]" = {}  # per transition: the boundary runs' sizes differ by storage
    for run in report["runs"].values():
        measured = run.get("measured", {}).get("buffer_bytes")
        if "config" in run and measured:
            per_row.setdefault(run["config"]["storage"], measured / run["config"]["buffer_size"])
    for name, measured in per_row.items():
        if name != "sb3" and "sb3" in per_row:
            lines.append(f"buffer memory a transition, sb3 / {name} (measured): {per_row['sb3'] / measured:.2f}x")
    group = report.get("confinement")
    if group:
        lines.append(f"confined ({group['mechanism']}): limit {_mb(group['limit_bytes'])} = {report['profile']['name']}"
                     f"'s {_mb(group['profile_available_bytes'])} for training + its safety margin "
                     f"{_mb(group['profile_margin_bytes'])} + this host's runtime "
                     f"{_mb(group['host_runtime_bytes'])} (charged to the probe's group), swap off")
    for name, run in report["runs"].items():
        usage = run.get("confinement")
        if usage and usage.get("peak_bytes") is not None:
            lines.append(f"{name}: group peak {_mb(usage['peak_bytes'])} of {_mb(usage['limit_bytes'])}"
                         f" ({100 * usage['peak_bytes'] / usage['limit_bytes']:.1f}%), OOM kill "
                         f"{'yes' if usage['oom_killed'] else 'no'}")
    if report.get("boundary"):
        lines += ["", "boundary: fit's largest size, and past the device's memory, each confined (MB = 10^6 B):",
                  grid_table(report["boundary"]), ""]
    if report.get("profile") and report["profile"]["differences_from_this_machine"]:
        lines.append("this machine differs from the profile: "
                     + "; ".join(report["profile"]["differences_from_this_machine"]))
    reason = f" ({report['reason']})" if report.get("reason") else ""
    plots = " and ".join(Path(p).name for p in report.get("plots", ())) or "none"
    lines.append(f"status: {report['status']}{reason}  (MB = 10^6 B; report in report.json, plots: {plots})")
    if report.get("plot_error"):
        lines.append(f"plotting failed: {report['plot_error']}")
    return "\n".join(lines)


def _mb(value: float) -> str:
    return f"{value / 1e6:,.3f} MB"


def configs(base: RunConfig, storages: "tuple[str, ...]", obs_ranges: "dict | None" = None) -> "tuple[RunConfig, ...]":
    """One configuration per storage, the rest as ``base``; the calibrated one packs on ``obs_ranges``
    (:meth:`planner.obs_ranges.ObservationRanges.as_dict`)."""
    return tuple(replace(base, storage=name, obs_ranges=obs_ranges if name == "calibrated" else None)
                 for name in storages)
