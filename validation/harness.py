"""Run training in each storage (SB3 as is, packed), each in a fresh process, and hold the measurements
against the planner's prediction. The report directory is written as the runs go, so an interrupted
validation leaves a report that says so."""

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from planner.errors import PlannerError
from planner.fit import max_buffer_size
from planner.footprint import footprint
from planner.profiles import DeviceProfile
from planner.units import format_bytes
from validation.calibrate import measure_runtime, probe_config
from validation.compare import Check, checks
from validation.predict import predict
from validation.report import merge_timeseries, plot_memory, plot_returns, table, write_json
from validation.runconfig import RunConfig
from validation.runner import machine, run_child, versions


@dataclass(frozen=True)
class Validation:
    configs: "tuple[RunConfig, ...]"
    out: Path
    profile: "DeviceProfile | None" = None
    force: bool = False


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


def validate(job: Validation) -> "tuple[dict, list[Check]]":
    """Run every configuration, write the report as it goes, and return it with its checks."""
    job.out.mkdir(parents=True, exist_ok=True)
    report = {"status": "running", "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(),
              "versions": versions(), "profile": None, "runs": {}, "checks": []}
    if job.profile is not None:
        report["profile"] = {**job.profile.as_dict(), "differences_from_this_machine": device_differences(job.profile)}
        if not job.force:
            for config in job.configs:
                admit(config, job.profile)
    write_json(job.out / "report.json", report)
    predictions, all_checks = {}, []
    try:
        probe = probe_config(job.configs[0].env_id, job.configs[0].algo, job.configs[0].seed)
        runtime, probe_run = measure_runtime(probe, job.out / "calibration")
        report["calibration"] = {"runtime_bytes": asdict(runtime), "probe": probe_run,
                                 "profile_runtime_bytes": job.profile.runtime if job.profile else None}
        write_json(job.out / "report.json", report)
        for config in job.configs:
            run = run_child(replace(config, memray=False), job.out / config.name)
            if config.memray:  # traced in a process of its own: memray's bookkeeping stays out of the RSS figures
                traced = run_child(replace(config, steps=0), job.out / config.name / "memray")
                run["measured"]["memray"] = traced["measured"].get("memray")
            prediction = predict(config, runtime)
            predictions[config.name] = prediction
            run_checks = checks(prediction, run)
            all_checks += run_checks
            report["runs"][config.name] = {**run, "prediction": {
                "runtime_bytes": asdict(runtime), "footprint": prediction.footprint.as_dict(),
                "peak_rss_bytes": prediction.peak_bytes}}
            report["checks"] = [c.as_dict() for c in all_checks]
            if run["status"] != "complete":
                report["status"] = f"incomplete: run {config.name} {run['status']}"
                break
            write_json(job.out / "report.json", report)
        else:
            report["status"] = "complete"
    finally:
        if report["status"] == "running":
            report["status"] = "killed"
        names = list(report["runs"])
        merge_timeseries(job.out, names)
        if predictions:
            report["plots"] = [str(plot_memory(job.out, predictions, all_checks)),
                               str(plot_returns(job.out, predictions))]
        write_json(job.out / "report.json", report)
    return report, all_checks


def summary(report: dict, all_checks: "list[Check]") -> str:
    """The terminal table, the timings and the measured reduction."""
    lines = [table(all_checks), ""]
    for name, run in report["runs"].items():
        timing = run.get("measured", {}).get("timing", {})
        figures = ", ".join(f"{k} {v:.3f}" for k, v in timing.items())
        quant = run.get("measured", {}).get("quantization")
        lines.append(f"{name}: {run['status']}; {figures}" + (f"; quantization {quant}" if quant else ""))
    buffers = {run["config"]["storage"]: run.get("measured", {}).get("buffer_bytes")
               for run in report["runs"].values() if "config" in run}
    for name, measured in buffers.items():
        if name != "sb3" and measured and buffers.get("sb3"):
            lines.append(f"buffer memory, sb3 / {name} (measured): {buffers['sb3'] / measured:.2f}x")
    if report.get("profile") and report["profile"]["differences_from_this_machine"]:
        lines.append("this machine differs from the profile: "
                     + "; ".join(report["profile"]["differences_from_this_machine"]))
    lines.append(f"status: {report['status']}  (MB = 10^6 B; report in report.json, plots memory.png and returns.png)")
    return "\n".join(lines)


def configs(env_id: str, algo: str, steps: int, buffer_size: int, decimals: int, clamp: float, seed: int,
            fill: bool, use_memray: bool, storages: "tuple[str, ...]", sample_ms: float) -> "tuple[RunConfig, ...]":
    base = RunConfig(env_id, algo, storages[0], steps, buffer_size, decimals, clamp, seed, fill, use_memray, sample_ms)
    return tuple(replace(base, storage=s) for s in storages)
