"""The validation report: report.json, timeseries.csv, PNG plots, and the terminal table."""

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from planner.output import write_atomic
from planner.table import render
from validation.harness.compare import Check
from validation.harness.folder import holder
from validation.harness.predict import Prediction

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Per storage: (prediction, measurement in a lighter shade). Unknown storage names get a colour of
# matplotlib's cycle, as does a run whose storage colour an earlier run in the same figure already took.
COLORS = {"baseline": "black", "sb3": "black", "quantized": "#1f4e79", "packed": "#1f4e79"}
LIGHT = {"baseline": "#a0a0a0", "sb3": "#a0a0a0", "quantized": "#8fbbe3", "packed": "#8fbbe3"}
RUN_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:cyan", "tab:olive")
FAIL_RED = "#c0392b"
PASS_GREEN = "#1e7b34"
HIDDEN_PHASES = ("start", "imports", "env_made")  # before the model exists: not on the memory plot


def write_json(path: Path, data: dict) -> None:
    """Atomically: a reader never sees half a report."""
    write_atomic(path, json.dumps(data, indent=2, default=str).encode(), "out")


def read_report(out: Path) -> dict:
    """``out``/report.json as a reader should take it: a report still "running" whose validation no longer
    holds the folder (killed with SIGKILL, or crashed before its final write) says "killed", and why."""
    report = json.loads((out / "report.json").read_text())
    if report.get("status") == "running" and holder(out) is None:
        report["status"] = "killed"
        report["reason"] = (f"the validation (pid {report.get('pid', '?')}) ended without writing its final report "
                            "(SIGKILL, or a crash); what it measured up to then is here")
    return report


def describe_report(out: Path) -> "str | None":
    """What an earlier validation left in ``out``, in a few words (None if it left no readable report)."""
    try:
        report = read_report(out)
    except (OSError, ValueError):
        return None
    return f"a validation report, status {report.get('status')}, started {report.get('started')}"


def _fmt(value: "float | None") -> str:
    """Bytes as MB (10^6 B), three decimals; "-" for a missing figure."""
    if value is None:
        return "-"
    return f"{value / 1e6:,.3f} MB"


def table(checks: "list[Check]") -> str:
    rows = [[c.run, c.quantity, _fmt(c.predicted), _fmt(c.measured),
             "-" if c.error is None else f"{100 * c.error:+.2f}%",
             c.tolerance_text, c.verdict] for c in checks]
    return render(rows, ["run", "quantity", "predicted", "measured", "error", "tolerance", "verdict"])


def read_timeseries(run_dir: Path) -> "list[dict]":
    path = run_dir / "timeseries.csv"
    if not path.exists():
        return []
    with open(path) as handle:
        return [row for row in csv.DictReader(handle) if row.get("rss_bytes")]


def built_mark(run_dir: Path) -> "dict | None":
    """The run's ``model_built`` mark (step and RSS when the model was built, the figure the checks take), from its
    run.json; None where there is none. The growth panel measures from it: the first sample after it may already
    hold the policy's first forward passes (an on-policy algorithm acts at once), which would hide them."""
    try:
        marks = json.loads((run_dir / "run.json").read_text()).get("marks", [])
    except (OSError, ValueError, AttributeError):
        return None
    return next((m for m in marks if isinstance(m, dict) and m.get("name") == "model_built"), None)


def merge_timeseries(out: Path, names: "list[str]") -> Path:
    """One CSV for all runs (a ``run`` column first), from each run's own file."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(["run", "t_s", "step", "phase", "rss_bytes", "uss_bytes"])
    for name in names:
        for row in read_timeseries(out / name):
            writer.writerow([name, row["t_s"], row["step"], row["phase"], row["rss_bytes"], row["uss_bytes"]])
    return write_atomic(out / "timeseries.csv", text.getvalue().encode(), "out")


def _lighter(color: str, amount: float = 0.55) -> str:
    """``color`` mixed with white: the measurement's shade of a prediction's colour."""
    from matplotlib.colors import to_hex, to_rgb

    return to_hex(tuple(c + (1 - c) * amount for c in to_rgb(color)))


def run_colors(predictions: "dict[str, Prediction]") -> "dict[str, tuple[str, str]]":
    """(prediction colour, measurement colour) per run: its storage's pair from COLORS / LIGHT, else (an
    unknown storage name, or a storage an earlier run already shows) the next colour of matplotlib's cycle
    and a lighter shade of it."""
    import itertools

    import matplotlib
    from matplotlib.colors import to_hex, to_rgb

    def distinct(color: str) -> bool:  # not a near-copy of a storage's colour (C0 of "packed"), nor failure red
        return all(sum((a - b) ** 2 for a, b in zip(to_rgb(color), to_rgb(c))) > 0.1
                   for c in (*COLORS.values(), FAIL_RED))

    cycle = [entry["color"] for entry in matplotlib.rcParams["axes.prop_cycle"] if "color" in entry]
    spare = itertools.cycle([c for c in cycle if distinct(c)] or cycle or [f"C{i}" for i in range(10)])
    taken, out = set(), {}
    for name, prediction in predictions.items():
        storage = prediction.config.storage
        dark = COLORS.get(storage)
        if dark is not None and dark not in taken:
            light = LIGHT.get(storage) or _lighter(dark)
        else:
            dark = to_hex(next(spare))
            light = _lighter(dark)
        taken.add(dark)
        out[name] = (dark, light)
    return out


def failed_checks(checks: "list[Check] | tuple") -> "dict[str, list[Check]]":
    """The checks whose verdict is FAIL, by run, in the order given."""
    failed: dict[str, list[Check]] = {}
    for check in checks:
        if check.verdict == "FAIL":
            failed.setdefault(check.run, []).append(check)
    return failed


def _failures_label(count: int) -> str:
    return f"({count} check{'' if count == 1 else 's'} failed)"


def _unjudged_text(checks: "list[Check]", width: int, cap: int = 4) -> str:
    """The checks not judged ("n/a") and why, for the verdict box: each reason once with the runs it holds for (up to
    ``cap`` reasons, else their count), so that a curve the plot shows apart from its prediction is never left
    unexplained beside "pass"."""
    import textwrap

    reasons: "dict[tuple[str, str], list[str]]" = {}
    for check in checks:
        if check.verdict == "n/a":
            reasons.setdefault((check.quantity, check.reason or "not measured"), []).append(check.run)
    if not reasons:
        return ""
    count = sum(len(runs) for runs in reasons.values())
    lines = [f"\n{count} n/a (not judged):"]
    for (quantity, reason), runs in list(reasons.items())[:cap]:
        lines.append(textwrap.fill(f"{', '.join(runs)}: {quantity}: {reason}", width, initial_indent=" \u2022 ",
                                   subsequent_indent="    "))
    if len(reasons) > cap:
        lines.append(f"... and {len(reasons) - cap} more reasons (see report.json)")
    return "\n".join(lines)


def _checks_summary(checks: "list[Check]", width: int = 46) -> "tuple[str, bool] | None":
    """The text of the verdict box and whether it reports failures; None when no checks were given."""
    import textwrap

    if not checks:
        return None
    failed = failed_checks(checks)
    unjudged = sum(c.verdict == "n/a" for c in checks)
    na = _unjudged_text(checks, width) + "".join(
        "\n" + textwrap.fill(c.caveat, width, initial_indent="\u2022 ", subsequent_indent="  ") for c in checks
        if c.caveat)
    if not failed:
        judged = len(checks) - unjudged
        return (f"all {judged} checks pass{na}" if judged else f"no check judged{na}"), False
    total = sum(len(v) for v in failed.values())
    detailed, shown, cap = total <= 6, 0, 12  # many failures: the quantities only, and at most ``cap``
    lines = [f"{total} of {len(checks)} checks FAILED"]
    for run, run_failed in failed.items():
        if shown == cap:
            break
        lines.append(f"{run} {_failures_label(len(run_failed))}:")
        for check in run_failed[:cap - shown]:
            text = check.quantity
            if detailed:
                error = "" if check.error is None else f", {100 * check.error:+.2f}%"
                text += (f": predicted {_fmt(check.predicted)}, measured {_fmt(check.measured)}"
                         f"{error} (tolerance {check.tolerance_text})")
            lines.append(textwrap.fill(text, width, initial_indent=" \u2022 ", subsequent_indent="    "))
            shown += 1
    if shown < total:
        lines.append(f"... and {total - shown} more (see report.json)")
    return "\n".join(lines) + na, True


def memory_figure(out: Path, predictions: "dict[str, Prediction]", checks: "list[Check] | tuple" = (),
                  notes: "tuple[str, ...]" = ()) -> "Figure":
    """The memory plot as a matplotlib Figure (Agg canvas attached; not saved). Top: the whole process's
    RSS from 0, measured (psutil, light solid) beside predicted (dark dashed), per run. Bottom: the growth
    above the built model (RSS minus its value once the model was built, against the prediction minus the
    prediction at the same point): the buffer filling, then optimizer state and the training runtime from
    the first update. To the right, off the data: the legend and the checks' verdicts (a red box listing
    the failed quantities per run, else a green "all N checks pass"; below, each check not judged with its reason
    and what a check leaves out that the curves show; nothing when no checks are given); the legend entry of a
    run with a failed check is red and says how many failed. Both panels measure from the ``model_built`` mark."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    checks = list(checks)
    failed = failed_checks(checks)
    colors = run_colors(predictions)
    fig = Figure(figsize=(12.5, 8.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 2, width_ratios=(3, 1.15))
    whole = fig.add_subplot(grid[0, 0])
    growth = fig.add_subplot(grid[1, 0], sharex=whole)
    key, verdicts = fig.add_subplot(grid[0, 1]), fig.add_subplot(grid[1, 1])
    for side in (key, verdicts):
        side.set_axis_off()
    firsts, failed_labels, top = set(), set(), 0
    for name, prediction in predictions.items():
        series = [r for r in read_timeseries(out / name) if r["phase"] not in HIDDEN_PHASES]
        if not series:
            continue
        dark, light = colors[name]
        steps = [int(r["step"]) for r in series]
        rss = [int(r["rss_bytes"]) for r in series]
        built = built_mark(out / name) or next((r for r in series if r["phase"] == "model_built"), series[0])
        measured_base = int(built["rss_bytes"])
        predicted_base = prediction.rss_at(int(built["step"]), "built")
        first = prediction.config.first_update_step
        firsts.add(first)
        points = sorted(set(steps) | {0, 1, max(steps), first - 1, first})
        predicted = [prediction.rss_at(s) for s in points]
        top = max(top, *rss, *predicted)
        label = f"{name}: measured RSS (psutil)"
        if name in failed:
            label += " " + _failures_label(len(failed[name]))
            failed_labels.add(label)
        whole.plot(steps, [v / 1e6 for v in rss], color=light, linewidth=2.6, label=label)
        whole.plot(points, [v / 1e6 for v in predicted], color=dark, linestyle="--", linewidth=1.8, zorder=3,
                   label=f"{name}: predicted")
        growth.plot(steps, [(v - measured_base) / 1e6 for v in rss], color=light, linewidth=2.6)
        growth.plot(points, [(v - predicted_base) / 1e6 for v in predicted], color=dark, linestyle="--",
                    linewidth=1.8, zorder=3)
    for i, first in enumerate(sorted(firsts)):
        for ax in (whole, growth):
            ax.axvline(first, color="grey", linestyle=":", linewidth=1,
                       label="first gradient update" if (ax is whole and i == 0) else None)
    growth.axhline(0, color="0.55", linewidth=0.8)
    whole.set_ylim(0, 1.1 * top / 1e6 if top else None)  # from 0: a 1 MB difference looks like one
    whole.set_ylabel("process RSS (MB = 10^6 B)")
    whole.set_title("Whole process, from 0", fontsize=10, loc="left")
    whole.tick_params(labelbottom=False)
    growth.set_ylabel("growth above the built model (MB)")
    growth.set_xlabel("environment steps")
    growth.set_title("Growth above the built model: the buffer filling, then optimizer state "
                     "+ training runtime from the first update", fontsize=10, loc="left")
    growth.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    for ax in (whole, growth):
        ax.grid(alpha=0.3)
    fig.suptitle("Predicted vs measured memory (MB = 10^6 B)\npredicted: calibrated runtime + models + "
                 "committed buffer, + optimizer state from the first update", fontsize=11)
    handles, labels = whole.get_legend_handles_labels()
    if handles:
        legend = key.legend(handles, labels, loc="upper left", bbox_to_anchor=(0, 1), borderaxespad=0,
                            fontsize=8.5, title="solid: measured, dashed: predicted", title_fontsize=8.5,
                            alignment="left")
        for text in legend.get_texts():
            if text.get_text() in failed_labels:
                text.set_color(FAIL_RED)
    summary = _checks_summary(checks)
    if notes:  # the memory group each run was confined to: its limit, its peak, any OOM kill
        import textwrap
        text, bad = summary or ("", False)
        lines = [textwrap.fill(n, 46, initial_indent="\u2022 ", subsequent_indent="  ") for n in notes]
        summary = "\n".join(filter(None, (text, "\nconfined (MB = 10^6 B):", *lines))), bad
    if summary is not None:
        text, bad = summary
        verdicts.text(0, 1, text, transform=verdicts.transAxes, ha="left", va="top", fontsize=8.5,
                      color=FAIL_RED if bad else PASS_GREEN, fontweight="normal",
                      bbox={"boxstyle": "round,pad=0.5", "facecolor": "#fdecea" if bad else "#e9f5ec",
                            "edgecolor": FAIL_RED if bad else PASS_GREEN})
    return fig


def plot_memory(out: Path, predictions: "dict[str, Prediction]", checks: "list[Check] | tuple" = (),
                notes: "tuple[str, ...]" = ()) -> Path:
    """``memory_figure`` written to out/memory.png.

    :param out: the report folder
    :param predictions: each run's prediction, by name
    :param checks: the checks, for the verdict box
    :param notes: lines added to the verdict box (a confined run's group: limit, peak, OOM kill)
    """
    path = out / "memory.png"
    memory_figure(out, predictions, checks, notes).savefig(path)
    return path


def returns_figure(out: Path, predictions: "dict[str, Prediction]") -> "Figure":
    """Episode returns over steps as a matplotlib Figure (Agg canvas attached; not saved): each run in a colour
    of its own (RUN_COLORS, in run order: memory.png's black and navy are too alike for thin lines), its
    episodes as dots and their moving average (10 episodes) as a line, one legend entry per run."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.legend_handler import HandlerTuple

    fig = Figure(figsize=(11, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    handles, labels = [], []
    for i, name in enumerate(predictions):
        path = out / name / "returns.csv"
        if not path.exists():
            continue
        with open(path) as handle:
            rows = list(csv.DictReader(handle))
        if not rows:
            continue
        color = RUN_COLORS[i % len(RUN_COLORS)]
        steps = np.array([int(r["step"]) for r in rows])
        returns = np.array([float(r["episode_return"]) for r in rows])
        (dots,) = ax.plot(steps, returns, ".", markersize=4, alpha=0.45, color=color)
        window = min(10, len(returns))
        mean = np.convolve(returns, np.ones(window) / window, mode="valid")
        (line,) = ax.plot(steps[window - 1:], mean, color=color, linewidth=2)
        handles.append((dots, line))
        labels.append(f"{name}: episodes (dots), mean of {window} (line)")
    first = next(iter(predictions.values())).config.first_update_step
    handles.append(ax.axvline(first, color="grey", linestyle=":", linewidth=1))
    labels.append("first update")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title("Learning curves")
    ax.legend(handles, labels, handler_map={tuple: HandlerTuple(ndivide=None)}, fontsize=8, loc="upper left",
              bbox_to_anchor=(1.01, 1), borderaxespad=0)
    ax.grid(alpha=0.3)
    return fig


def plot_returns(out: Path, predictions: "dict[str, Prediction]") -> Path:
    """``returns_figure`` written to out/returns.png."""
    path = out / "returns.png"
    returns_figure(out, predictions).savefig(path)
    return path
