"""Predicted against measured, quantity by quantity, with a tolerance and a verdict."""

from dataclasses import asdict, dataclass

from validation.predict import Prediction

BUFFER_TOL = 0.01
PEAK_TOL = 0.05
OBJECTS_ALLOWANCE = 64 * 1024  # the buffer's Python objects and spec vectors: a fixed few KB, not in the planner


@dataclass(frozen=True)
class Check:
    run: str
    quantity: str
    predicted: float
    measured: "float | None"
    tolerance: float  # relative; 0 = exact
    note: str = ""
    allowance: int = 0  # bytes: the error may also be up to this many bytes, whichever is larger

    @property
    def tolerance_text(self) -> str:
        if self.tolerance == 0:
            return "exact"
        return f"{100 * self.tolerance:g}%" + (f" or {self.allowance // 1024} KiB" if self.allowance else "")

    @property
    def error(self) -> "float | None":
        if self.measured is None or not self.predicted:
            return None
        return (self.measured - self.predicted) / self.predicted

    @property
    def verdict(self) -> str:
        if self.measured is None:
            return "n/a"
        if self.tolerance == 0:
            return "pass" if self.measured == self.predicted else "FAIL"
        within = abs(self.measured - self.predicted) <= max(self.tolerance * abs(self.predicted), self.allowance)
        return "pass" if within else "FAIL"

    def as_dict(self) -> dict:
        return {**asdict(self), "error": self.error, "verdict": self.verdict}


def _mark(run: dict, name: str) -> "dict | None":
    return next((m for m in run["marks"] if m["name"] == name), None)


def checks(prediction: Prediction, run: dict) -> "list[Check]":
    """The checks one run supports (those whose measurement exists are judged, the rest say n/a)."""
    name, fp, measured = prediction.config.name, prediction.footprint, run.get("measured", {})
    buffer = fp.buffer_bytes
    tenth, full = _mark(run, "buffer_10pct"), _mark(run, "buffer_full")
    memray = measured.get("memray")
    out = [
        Check(name, "buffer bytes: planner vs the buffer's own memory_bytes()", buffer, measured.get("buffer_bytes"),
              0),
        Check(name, "buffer bytes: planner vs memray, the allocations at the buffer's arrays", buffer,
              memray["buffer_arrays"] if memray else None, BUFFER_TOL, "" if memray else "run with --memray"),
        Check(name, "buffer bytes: planner vs memray, everything the buffer constructor allocated", buffer,
              memray["buffer"] if memray else None, BUFFER_TOL,
              f"{memray['buffer'] - memray['buffer_arrays']:,} B beyond the arrays (Python objects, spec vectors)"
              if memray else "run with --memray", OBJECTS_ALLOWANCE),
        Check(name, "buffer bytes: planner vs committed pages of its arrays when full (pagemap)", buffer,
              measured.get("buffer_resident_full"), BUFFER_TOL, "" if full else "buffer never full: use --fill"),
        Check(name, "RSS growth while the buffer fills from 10 % to full: planner vs psutil",
              prediction.buffer_committed(full["step"]) - prediction.buffer_committed(tenth["step"])
              if (full and tenth) else 0, full["rss_bytes"] - tenth["rss_bytes"] if (full and tenth) else None,
              BUFFER_TOL, "" if (full and tenth) else (
                  "PPO fills its rollout during the first forward passes: growth not attributable"
                  if prediction.config.algo == "ppo" else "buffer never full: use --fill"),
              prediction.heap_bytes),
    ]
    for phase, mark, when in (("built", "model_built", "once the model is built"),
                              ("acting", "training_starts", "just before the first update")):
        at = _mark(run, mark)
        out.append(Check(name, f"RSS {when}: calibrated {phase} runtime + planner vs psutil",
                         prediction.rss_at(at["step"], phase) if at else 0, at["rss_bytes"] if at else None, PEAK_TOL,
                         f"{phase} runtime calibrated at {prediction.runtime.in_phase(phase) / 1e6:,.1f} MB "
                         "by a probe run"))
    end = "optimizer_bytes" in measured
    out.append(Check(name, "models + optimizer state: planner vs torch tensors", fp.models_bytes + fp.optimizer_bytes,
                     measured["model_bytes"] + measured["optimizer_bytes"] if end else None, BUFFER_TOL))
    out.append(Check(name, "whole-process peak RSS: calibrated runtime + planner vs psutil", prediction.peak_bytes,
                     measured.get("peak_rss_bytes") if end else None, PEAK_TOL,
                     f"training runtime calibrated at {prediction.runtime.training_bytes / 1e6:,.1f} MB "
                     "by a probe run"))
    return out
