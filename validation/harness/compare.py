"""Predicted against measured, quantity by quantity, with a tolerance and a verdict: "pass", "FAIL", or
"n/a" with the reason when the run gives nothing to compare (not measured, no update ran, a figure too
small to rise above the noise its measurement allows).

A tolerance is one figure, stated one way wherever it is shown (table, summary, plot, report.json): the error
it allows as a percentage of the prediction, the unit of the error beside it; where a byte floor allows more
than the relative bound, the percentage is the floor's and the floor follows in brackets."""

from dataclasses import KW_ONLY, asdict, dataclass

from planner.defaults import is_on_policy
from validation.harness.predict import Prediction

BUFFER_TOL = 0.01
PEAK_TOL = 0.05
OBJECTS_ALLOWANCE = 64 * 1024  # the buffer's Python objects and spec vectors: a fixed few KB, not in the planner
# What else a process's RSS may gain while a buffer fills (the allocator's arenas, code pages touched for the
# first time, psutil's own reads): up to ~130 KB seen on a loaded machine. The RSS-growth check allows it,
# and judges only a growth of at least GROWTH_FLOORS times it: below, the noise could be a quarter of it.
RSS_NOISE = 256 * 1024
GROWTH_FLOORS = 4


@dataclass(frozen=True)
class Check:
    run: str
    quantity: str
    predicted: float
    measured: "float | None"
    tolerance: float  # relative; 0 = exact
    _: KW_ONLY
    note: str = ""
    allowance: int = 0  # bytes: the error may also be up to this many bytes, whichever is larger
    reason: str = ""  # why the check is not judged (verdict "n/a"); empty when it is
    caveat: str = ""  # what memory.png shows that the check leaves out, and why (said beside the verdicts)

    @property
    def allowed_bytes(self) -> float:
        """The largest error the verdict allows, in bytes: the relative bound or the byte floor, the larger."""
        return max(self.tolerance * abs(self.predicted), self.allowance)

    @property
    def tolerance_pct(self) -> "float | None":
        """:attr:`allowed_bytes` as a percentage of the prediction (None for a prediction of 0)."""
        return 100 * self.allowed_bytes / abs(self.predicted) if self.predicted else None

    @property
    def tolerance_text(self) -> str:
        """"exact", or "±P%" (the error it allows, in the error's unit), "±P% (F KiB)" where the floor F sets it."""
        if self.tolerance == 0:
            return "exact"
        floor = f"{self.allowance / 1024:,.0f} KiB"
        pct = self.tolerance_pct
        if pct is None:
            return f"±{floor}"
        text = f"±{pct:,.0f}%" if pct >= 100 else f"±{pct:.3g}%"
        return text + (f" ({floor})" if self.allowance > self.tolerance * abs(self.predicted) else "")

    @property
    def error(self) -> "float | None":
        if self.measured is None or not self.predicted:
            return None
        return (self.measured - self.predicted) / self.predicted

    @property
    def verdict(self) -> str:
        if self.measured is None or self.reason:
            return "n/a"
        if self.tolerance == 0:
            return "pass" if self.measured == self.predicted else "FAIL"
        return "pass" if abs(self.measured - self.predicted) <= self.allowed_bytes else "FAIL"

    def as_dict(self) -> dict:
        """The check as report.json keeps it: error and tolerance in percent of the prediction, the tolerance's text
        as the table shows it, and the bytes it allows."""
        out = {k: v for k, v in asdict(self).items() if k not in ("tolerance", "allowance")}
        return {**out, "error_pct": None if self.error is None else 100 * self.error, "tolerance": self.tolerance_text,
                "tolerance_pct": self.tolerance_pct, "allowed_bytes": self.allowed_bytes, "verdict": self.verdict}


def _mark(run: dict, name: str) -> "dict | None":
    return next((m for m in run["marks"] if m["name"] == name), None)


def _growth_check(prediction: Prediction, run: dict) -> Check:
    """Anonymous RSS growth while the buffer fills from 10 % to full: judged when the buffer's growth is large enough
    to rise above the process's other growth (``RSS_NOISE``), which it allows on top of 1 %.

    The buffer's arrays are anonymous memory; pages backed by a file are code (torch loads a kernel's code on its
    first use: DQN's first target-network update, at step 10,000, runs during a fill) and are left out, as
    ``file_bytes`` at the marks counts them (runs measured before marks had it: the whole RSS). Arrays of 128 KiB
    or more that glibc placed in a free chunk of its heap (``buffer_heap_placed``) are committed when built (calloc
    clears the chunk): not in the growth."""
    tenth, full = _mark(run, "buffer_10pct"), _mark(run, "buffer_full")
    predicted = measured = None
    code = 0
    eager = {f.name for f in prediction.footprint.fields if f.eager}
    placed = sum(size for name, size in (run.get("measured", {}).get("buffer_heap_placed") or {}).items()
                 if name not in eager)  # large arrays glibc put in a free heap chunk: committed when built
    if full and tenth:
        lazy = prediction.lazy_bytes
        planned = prediction.buffer_committed(full["step"]) - prediction.buffer_committed(tenth["step"])
        predicted = planned * (lazy - placed) // lazy if lazy else planned
        if "file_bytes" in full and "file_bytes" in tenth:
            code = full["file_bytes"] - tenth["file_bytes"]
        measured = full["rss_bytes"] - tenth["rss_bytes"] - code
    if is_on_policy(prediction.config.algo):
        reason = (f"{prediction.config.algo} fills its rollout while the policy's first forward passes load torch's "
                  "kernels (the acting runtime): growth not attributable to the buffer")
    elif predicted is None:
        reason = "buffer never full: use --fill"
    elif predicted < GROWTH_FLOORS * RSS_NOISE:
        reason = (f"a growth of {predicted / 1e6:,.3f} MB is under {GROWTH_FLOORS}x the RSS noise this check allows "
                  f"({RSS_NOISE // 1024} KiB): too small to judge (the pagemap check counts the buffer's pages)")
    else:
        reason = ""
    pages = run.get("measured", {})
    beyond = ""
    if measured is not None and "buffer_resident_10pct" in pages and pages.get("buffer_resident_full") is not None:
        own = pages["buffer_resident_full"] - pages["buffer_resident_10pct"]
        beyond = f"; anonymous memory grew {measured - own:,} B beyond the buffer's own pages (pagemap)"
    built = _mark(run, "model_built")
    fill_code = full["file_bytes"] - built["file_bytes"] if full and built and "file_bytes" in full \
        and "file_bytes" in built and not is_on_policy(prediction.config.algo) else 0  # on-policy: the acting runtime
    left_out = (f"{prediction.config.name}: code loaded on first use (file-backed pages: learn()'s start, a target "
                f"network's first update) grew {fill_code / 1e6:,.3f} MB from the built model to the full buffer: in "
                "the plotted RSS, not in the prediction before the first update, nor in the growth check "
                f"({code / 1e6:,.3f} MB of it from 10 % to full)") if fill_code > RSS_NOISE else ""
    if placed:
        left_out = "; ".join(filter(None, (left_out, (
            f"{prediction.config.name}: glibc placed {placed:,} B of the buffer's large arrays in free chunks of its "
            "heap, committed when built: the predicted curve grows by them, the growth check does not"))))
    return Check(prediction.config.name, "RSS growth while the buffer fills from 10 % to full: planner vs psutil, "
                 "anonymous pages", predicted or 0, measured, BUFFER_TOL, note="allowance: the RSS noise, plus the "
                 "buffer's arrays under 128 KiB (glibc may serve them from heap pages already resident)" + beyond
                 + f"; file-backed pages left out: {code:,} B; arrays of 128 KiB or more glibc placed in its heap, "
                 f"committed when built: {placed:,} B", allowance=RSS_NOISE + prediction.heap_bytes,
                 reason=reason, caveat=left_out)


def checks(prediction: Prediction, run: dict) -> "list[Check]":
    """The checks one run supports: those whose measurement exists are judged, the rest say n/a and why."""
    name, fp, measured = prediction.config.name, prediction.footprint, run.get("measured", {})
    buffer, full = fp.buffer_bytes, _mark(run, "buffer_full")
    memray = measured.get("memray")
    traced = "" if memray else measured.get("memray_error") or "not traced: run with --memray"
    steps_done, first = measured.get("steps_done"), prediction.config.first_update_step
    no_update = "" if steps_done is None or steps_done >= first else (
        f"no gradient update ran ({steps_done:,} steps done; the first update comes after step {first:,})")
    ended = "" if steps_done is not None else "not measured: the run ended before its end mark"
    out = [
        Check(name, "buffer bytes: planner vs the buffer's own memory_bytes()", buffer, measured.get("buffer_bytes"),
              0, reason="" if "buffer_bytes" in measured else "not measured: the run ended before its model was built"),
        Check(name, "buffer bytes: planner vs memray, the allocations at the buffer's arrays", buffer,
              memray["buffer_arrays"] if memray else None, BUFFER_TOL, reason=traced),
        Check(name, "buffer bytes: planner vs memray, everything the buffer constructor allocated", buffer,
              memray["buffer"] if memray else None, BUFFER_TOL,
              note=f"{memray['buffer'] - memray['buffer_arrays']:,} B beyond the arrays (Python objects, layout "
              f"vectors; the largest {memray.get('buffer_largest') or 'none'})" if memray else "",
              allowance=OBJECTS_ALLOWANCE, reason=traced),
        Check(name, "buffer bytes: planner vs committed pages of its arrays when full (pagemap)", buffer,
              measured.get("buffer_resident_full"), BUFFER_TOL,
              reason="" if full else "buffer never full: use --fill"),
        _growth_check(prediction, run),
    ]
    for phase, mark, when in (("built", "model_built", "once the model is built"),
                              ("acting", "training_starts", "just before the first update")):
        at = _mark(run, mark)
        out.append(Check(name, f"RSS {when}: calibrated {phase} runtime + planner vs psutil",
                         prediction.rss_at(at["step"], phase) if at else 0, at["rss_bytes"] if at else None, PEAK_TOL,
                         note=f"{phase} runtime calibrated at {prediction.runtime.in_phase(phase) / 1e6:,.1f} MB "
                         "by a probe run", reason="" if at else (no_update or f"not measured: no {mark} mark")))
    out.append(Check(name, "models + optimizer state: planner vs torch tensors", fp.models_bytes + fp.optimizer_bytes,
                     measured["model_bytes"] + measured.get("module_buffer_bytes", 0) + measured["optimizer_bytes"]
                     if not ended else None, BUFFER_TOL, reason=ended or no_update))
    out.append(Check(name, "whole-process peak RSS: calibrated runtime + planner vs psutil", prediction.peak_bytes,
                     measured.get("peak_rss_bytes") if not ended else None, PEAK_TOL,
                     note=f"training runtime calibrated at {prediction.runtime.training_bytes / 1e6:,.1f} MB "
                     "by a probe run", reason=ended or no_update))
    return out
