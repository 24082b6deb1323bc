"""A study's summary, from its trial files: summary.json, summary.md and the plots.

Per cell (env x algorithm) and storage: each seed's return over the last ``WINDOW`` evaluations (their mean),
mean and sample std over seeds, and against the baseline (SB3's own buffer) the effect (difference of means,
storage minus baseline) with a 95 % percentile bootstrap interval, Welch's t-test p-value (scipy), the smallest
difference the seeds at hand detect with 80 % power at alpha 0.05, and the verdict those numbers give; the
seeds, ms per step (acting, updating, total) and its ratio to the baseline (Table I of the paper), the measured
buffer bytes and the baseline's bytes over them. Plots: returns against steps, mean and a one-std band, each
storage in a panel beside the baseline (Figure 4), and the equal-memory comparison (Figure 3); storages whose
returns are identical share one curve; and each storage's effect with its interval (a forest plot). Verdicts are
written as measured.
"""

import json
import math
from pathlib import Path

from planner.errors import PlannerError
from planner.evidence import ALPHA
from validation.study.grid import BASELINE, EQUAL_MEMORY, arm_name, arm_order
from validation.study.results import records, study_trials, trial_path

FIGURE4 = "figure4_returns.png"
FIGURE3 = "figure3_equal_memory.png"
FOREST = "effects_forest.png"
STYLES = {BASELINE: ("black", "-", None), "float16": ("tab:purple", "--", "s"),  # colour, line style, marker
          "bfloat16": ("tab:brown", ":", "P"), "sb3-optimize": ("tab:gray", ":", "x"),
          "packed": ("tab:blue", "-", "o"), "calibrated": ("tab:green", "-.", "^"),
          EQUAL_MEMORY: ("tab:red", "--", "v")}
FINER = ("tab:cyan", (0, (5, 1, 1, 1)), "D")  # an arm at an m finer than the paper's (packed-m3)
MB = 1e6
WINDOW = 3  # evaluations, the last of each seed, averaged into that seed's return
POWER = 0.80  # the power the detectable difference is at (ALPHA, the test's two-sided level: planner.evidence)
RESAMPLES, BOOTSTRAP_SEED = 10_000, 0  # the bootstrap's resamples and its fixed RNG seed (reproducible output)


def _trial(out: Path, trial_id: str) -> dict:
    found = records(trial_path(out, trial_id))
    start = next((r for r in found if r.get("kind") == "start"), None)
    end = found[-1] if found and found[-1].get("kind") == "end" else None
    return {"id": trial_id, "config": start["config"] if start else None, "end": end,
            "evals": [r for r in found if r.get("kind") == "eval"]}


def _mean_std(values: "list[float]") -> "tuple[float, float]":
    import numpy as np

    array = np.asarray(values, dtype=float)
    return float(array.mean()), float(array.std(ddof=1)) if len(array) > 1 else 0.0


def _curve(trials: "list[dict]") -> dict:
    """Mean and std of the evaluation return at the steps every seed evaluated."""
    steps = sorted(set.intersection(*({e["step"] for e in t["evals"]} for t in trials)))
    by_step = [[next(e["return_mean"] for e in t["evals"] if e["step"] == s) for t in trials] for s in steps]
    stats = [_mean_std(v) for v in by_step]
    return {"steps": steps, "mean": [m for m, _ in stats], "std": [s for _, s in stats]}


def _window(trial: dict) -> "tuple[float, list[int]]":
    """A seed's return: the mean of its last ``WINDOW`` evaluations' returns, and their steps."""
    last = sorted(trial["evals"], key=lambda e: e["step"])[-WINDOW:]
    return sum(e["return_mean"] for e in last) / len(last), [e["step"] for e in last]


def _welch(a: "list[float]", b: "list[float]") -> "float | None":
    """Welch's t-test p-value (None with fewer than 2 seeds on a side, or no variance on either)."""
    if len(a) < 2 or len(b) < 2:
        return None
    from scipy.stats import ttest_ind

    p = float(ttest_ind(a, b, equal_var=False).pvalue)
    return None if math.isnan(p) else p


def bootstrap_interval(arm: "list[float]", base: "list[float]", resamples: int = RESAMPLES,
                       seed: int = BOOTSTRAP_SEED) -> "tuple[float, float]":
    """The 95 % percentile bootstrap interval of mean(arm) - mean(base): seeds resampled with replacement within
    each side, ``resamples`` times, from a generator seeded with ``seed`` (the same inputs give the same
    interval)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    means = [np.asarray(side, dtype=float)[rng.integers(0, len(side), (resamples, len(side)))].mean(axis=1)
             for side in (arm, base)]
    low, high = np.percentile(means[0] - means[1], [100 * ALPHA / 2, 100 * (1 - ALPHA / 2)])
    return float(low), float(high)


def detectable_difference(arm: "list[float]", base: "list[float]") -> float:
    """The smallest difference of means a two-sided two-sample t-test at ``ALPHA`` detects with ``POWER``, from
    the pooled std and the seed counts: (t(1 - ALPHA/2) + t(POWER)) * pooled std * sqrt(1/n_arm + 1/n_base),
    t with n_arm + n_base - 2 degrees of freedom (the usual t approximation of the noncentral t)."""
    from scipy.stats import t

    n, m = len(arm), len(base)
    pooled = math.sqrt(((n - 1) * _mean_std(arm)[1] ** 2 + (m - 1) * _mean_std(base)[1] ** 2) / (n + m - 2))
    df = n + m - 2
    return float((t.ppf(1 - ALPHA / 2, df) + t.ppf(POWER, df)) * pooled * math.sqrt(1 / n + 1 / m))


def compare(arm: "list[float]", base: "list[float]") -> dict:
    """The storage's seeds' returns against the baseline's: effect (difference of means), its bootstrap interval,
    Welch's p, the detectable difference and the verdict. A loss or gain is claimed only where the interval
    excludes 0 and Welch's p < ``ALPHA``: with few seeds the percentile bootstrap is too narrow (from 2 seeds a
    side it spans just the differences between them), and Welch's t, with its few degrees of freedom, checks it.
    """
    effect = _mean_std(arm)[0] - _mean_std(base)[0]
    if len(arm) < 2 or len(base) < 2:
        return {"effect": effect, "ci_low": None, "ci_high": None, "welch_p": None, "detectable": None,
                "verdict": "too few seeds"}
    low, high = bootstrap_interval(arm, base)
    p, detectable = _welch(arm, base), detectable_difference(arm, base)
    excludes_zero = high < 0 or low > 0
    if excludes_zero and p is not None and p < ALPHA:
        verdict = f"{'loss' if high < 0 else 'gain'} of {abs(effect):.1f} (95 % CI {low:.1f} to {high:.1f})"
    else:
        verdict = f"no difference larger than {detectable:.1f} detected" + (
            " (the interval excludes 0, Welch p does not)" if excludes_zero else "")
    return {"effect": effect, "ci_low": low, "ci_high": high, "welch_p": p, "detectable": detectable,
            "verdict": verdict}


def _storage_stats(trials: "list[dict]") -> dict:
    ends = [t["end"] for t in trials]
    finals = [e["final_return"] for e in ends]
    windows = [_window(t) for t in trials]
    returns = [value for value, _ in windows]
    mean, std = _mean_std(returns)
    return {"seeds": len(trials), "final_returns": finals, "returns": returns, "return_mean": mean,
            "return_std": std, "window_steps": sorted({step for _, steps in windows for step in steps}),
            **{key: _mean_std([e[key] for e in ends])[0] for key in
               ("acting_ms_per_step", "update_ms_per_step", "ms_per_step", "buffer_bytes", "peak_rss_bytes")},
            "buffer_rows": ends[0]["buffer_rows"], "curve": _curve(trials)}


def _judge(stats: dict, base: "dict | None") -> None:
    """Add the comparison with the baseline to ``stats`` (in place)."""
    if base is None:
        stats.update(effect=None, ci_low=None, ci_high=None, welch_p=None, detectable=None, verdict="no baseline",
                     ms_ratio=None, memory_ratio=None)
        return
    stats.update(compare(stats["returns"], base["returns"]), ms_ratio=stats["ms_per_step"] / base["ms_per_step"],
                 memory_ratio=base["buffer_bytes"] / stats["buffer_bytes"])


def _same_as_packed(stats: dict, calibrated: "list[dict]", packed: "list[dict]") -> None:
    """Add to the calibrated arm's ``stats`` (in place) whether each of its seeds evaluated exactly as packed's
    same seed at the same m did (both decode the same values): ``identical_seeds``, ``differing_seeds``; with a
    single seed that check is its verdict, and it has no effect of its own (one seed against the baseline's mean
    is not one: its returns are packed's)."""
    by_seed = {t["config"]["seed"]: t["evals"] for t in packed}
    checked = [t for t in calibrated if t["config"]["seed"] in by_seed]
    same = [t["config"]["seed"] for t in checked if _returns(t["evals"]) == _returns(by_seed[t["config"]["seed"]])]
    stats.update(identical_seeds=same, differing_seeds=[t["config"]["seed"] for t in checked
                                                         if t["config"]["seed"] not in same])
    if checked and stats["seeds"] < 2:
        stats["effect"] = None
        stats["verdict"] = (f"returns identical to packed's, seed for seed ({len(same)} of {len(checked)})"
                            if len(same) == len(checked) else
                            f"returns differ from packed's (seeds {stats['differing_seeds']})")


def _returns(evals: "list[dict]") -> list:
    return [(e["step"], e["returns"]) for e in sorted(evals, key=lambda e: e["step"])]


def summarize(out: Path) -> dict:
    """Read every trial of the study in ``out``; write summary.json, summary.md and the plots; return the
    summary (``markdown`` holds summary.md's text)."""
    if not out.is_dir():
        raise PlannerError(f"{out} is not a folder (give a study's --out folder)", "summarize")
    ids = study_trials(out)
    if not ids:
        raise PlannerError(f"{out} holds no study (no study.json, no trials/*.jsonl)", "summarize")
    trials = [_trial(out, i) for i in ids]
    done = [t for t in trials if t["end"] and t["end"].get("status") == "done" and t["config"]]
    failed = [{"id": t["id"], "error": t["end"].get("error", "")} for t in trials
              if t["end"] and t["end"].get("status") == "failed"]
    unfinished = [t["id"] for t in trials if not t["end"]]
    cells: "dict[tuple[str, str], dict[str, list[dict]]]" = {}
    for t in done:
        config = t["config"]
        arm = arm_name(config["storage"], config["algo"], config["decimals"], config.get("equal_memory", False))
        cells.setdefault((config["env"], config["algo"]), {}).setdefault(arm, []).append(t)
    summary = {"folder": str(out), "units": "MB = 10^6 bytes; returns in the env's reward (undiscounted episode sum)",
               "window_evaluations": WINDOW, "alpha": ALPHA, "power": POWER, "bootstrap_resamples": RESAMPLES,
               "bootstrap_seed": BOOTSTRAP_SEED, "trials": len(trials), "done": len(done),
               "failed": failed, "unfinished": unfinished, "cells": []}
    for (env, algo), by_storage in cells.items():
        storages = {name: _storage_stats(by_storage[name]) for name in sorted(by_storage, key=arm_order)}
        base = storages.get(BASELINE)
        for name, stats in storages.items():
            if name != BASELINE:
                _judge(stats, base)
            if name.startswith("calibrated"):
                _same_as_packed(stats, by_storage[name], by_storage.get("packed" + name[len("calibrated"):], []))
        summary["cells"].append({"env": env, "algo": algo, "storages": storages})
    summary["plots"] = _plots(out, summary["cells"])
    summary["markdown"] = markdown(summary)
    (out / "summary.json").write_text(json.dumps({k: v for k, v in summary.items() if k != "markdown"}, indent=1))
    (out / "summary.md").write_text(summary["markdown"])
    return summary


def _groups(storages: dict, wanted: "tuple[str, ...]") -> "list[list[str]]":
    """The ``wanted`` storages present, those whose curves are identical (same seeds, and the same mean and
    std at every step) in one group, in the order given."""
    groups: "dict[tuple, list[str]]" = {}
    for name in wanted:
        if name in storages:
            stats = storages[name]
            curve = stats["curve"]
            key = (stats["seeds"], tuple(curve["steps"]), tuple(curve["mean"]), tuple(curve["std"]))
            groups.setdefault(key, []).append(name)
    return list(groups.values())


def _label(storages: dict, group: "list[str]") -> str:
    """A curve's legend entry: its storages (joined by '=' where their returns are identical), seeds and
    buffer MB."""
    names = " = ".join(group) + (" (identical returns)" if len(group) > 1 else "")
    buffers = " / ".join(f"{storages[name]['buffer_bytes'] / MB:.3g}" for name in group)
    return f"{names}\n{_seeds(storages[group[0]]['seeds'])}, buffer {buffers} MB"


def _draw(ax, storages: dict, group: "list[str]") -> None:
    """One group's mean curve (its first storage's colour, line style and markers) and its one-std band, light
    and edged in the same colour so that overlapping bands stay apart."""
    from matplotlib.colors import to_rgba

    color, linestyle, marker = STYLES.get(group[0], FINER)
    curve = storages[group[0]]["curve"]
    steps, mean, std = curve["steps"], curve["mean"], curve["std"]
    ax.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                    facecolor=to_rgba(color, 0.05 if group[0] == BASELINE else 0.1),
                    edgecolor=to_rgba(color, 0.45), linewidth=0.8, linestyle=linestyle)
    ax.plot(steps, mean, color=color, linestyle=linestyle, marker=marker, markersize=4,
            markevery=max(1, len(steps) // 8), linewidth=1.8, label=_label(storages, group))


def _axes_style(ax, cell: dict, title: str, columns: int) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.set_title(f"{cell['env']} {cell['algo'].upper()}: {title}", fontsize=10)
    ax.set_xlabel("environment steps")
    ax.set_ylabel("evaluation return")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1000:g}k" if x else "0"))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.17), ncol=columns, frameon=False)


def _figure(rows: int, columns: int, title: str, panel_height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(5.4 * columns, 7), panel_height * rows), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    fig.suptitle(title + "\nmean and 1 std over seeds; buffer MB = 10^6 B")
    return fig, fig.subplots(rows, columns, squeeze=False)


def returns_figure(cells: "list[dict]"):
    """Figure 4 as small multiples: a row per cell (env x algorithm), a panel per storage beside the baseline
    (storages with identical returns share one curve, the baseline's included); None without cells."""
    if not cells:
        return None
    rows = []
    for cell in cells:
        groups = _groups(cell["storages"], tuple(sorted(cell["storages"], key=arm_order)))
        base = next((group for group in groups if BASELINE in group), None)
        rows.append((cell, base, [group for group in groups if group is not base]))
    fig, axes = _figure(len(rows), max(1, *(len(others) for _, _, others in rows)),
                        "evaluation return against steps, each storage beside the baseline", 4.4)
    for (cell, base, others), row in zip(rows, axes):
        for ax in row[len(others or [base]):]:
            ax.set_axis_off()
        for ax, group in zip(row, others or [None]):
            for drawn in (base, group):
                if drawn:
                    _draw(ax, cell["storages"], drawn)
            _axes_style(ax, cell, " = ".join(group or base), columns=2)
        for ax in row[1:len(others)]:
            ax.sharey(row[0])
    return fig


def equal_memory_figure(cells: "list[dict]"):
    """Figure 3: a panel per cell that ran equal-memory, with packed and the baseline; None without one."""
    chosen = [cell for cell in cells if EQUAL_MEMORY in cell["storages"]]
    if not chosen:
        return None
    fig, axes = _figure(1, len(chosen), "at equal memory: packed beside equal-memory\n"
                        "(SB3's buffer, its rows shrunk to the packed buffer's bytes)", 5)
    for ax, cell in zip(axes[0], chosen):
        for group in _groups(cell["storages"], (BASELINE, "packed", EQUAL_MEMORY)):
            _draw(ax, cell["storages"], group)
        _axes_style(ax, cell, "at equal memory", columns=1)
    return fig


def forest_figure(cells: "list[dict]"):
    """Each storage's effect on the return against the baseline with its 95 % bootstrap interval, in percent of the
    baseline's mean return (tasks of different scales side by side), a row per cell and storage, zero marked; a
    storage with too few seeds for an interval shows its effect alone. None without an effect to show."""
    rows = [(cell, name, stats) for cell in cells for name, stats in cell["storages"].items()
            if name != BASELINE and stats.get("effect") is not None and BASELINE in cell["storages"]]
    if not rows:
        return None
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8.5, 1.4 + 0.42 * len(rows)), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for y, (cell, name, stats) in enumerate(reversed(rows)):
        scale = 100.0 / abs(cell["storages"][BASELINE]["return_mean"] or 1.0)
        color, _, marker = STYLES.get(name, FINER)
        if stats.get("ci_low") is not None:
            ax.plot([stats["ci_low"] * scale, stats["ci_high"] * scale], [y, y], color=color, linewidth=2.2,
                    solid_capstyle="butt")
        ax.plot([stats["effect"] * scale], [y], marker=marker or "o", color=color, markersize=7, linestyle="none")
    ax.axvline(0.0, color="black", linewidth=1.0)
    ax.set_yticks(range(len(rows)), [f"{c['env']} {c['algo'].upper()}: {n} ({_seeds(s['seeds'])})"
                                      for c, n, s in reversed(rows)], fontsize=8)
    ax.set_xlabel("effect on the return (storage minus baseline), % of the baseline's mean")
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("effect of each storage with its 95 % bootstrap interval (left of 0: a loss)", fontsize=10)
    return fig


def _plots(out: Path, cells: "list[dict]") -> "list[str]":
    written = []
    for name, fig in ((FIGURE4, returns_figure(cells)), (FIGURE3, equal_memory_figure(cells)),
                      (FOREST, forest_figure(cells))):
        if fig is not None:
            fig.savefig(out / name)
            written.append(name)
    return written


def _seeds(count: int) -> str:
    return f"{count} seed{'' if count == 1 else 's'}"


def _number(value: "float | None", digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _effect(s: dict) -> str:
    """The effect with its interval, signed: ``-173.3 (-276.6 to -70.0)``."""
    if s.get("ci_low") is None:
        return _number(s.get("effect"), 1)
    return f"{s['effect']:+.1f} ({s['ci_low']:+.1f} to {s['ci_high']:+.1f})"


def markdown(summary: dict) -> str:
    """summary.md: the verdicts, the step times (Table I), the plots, and what did not finish."""
    window = summary["window_evaluations"]
    lines = [f"# Study {summary['folder']}", "",
             f"{summary['done']} of {summary['trials']} trials done, {len(summary['failed'])} failed, "
             f"{len(summary['unfinished'])} unfinished. Sizes in MB = 10^6 bytes.", "",
             "## Return against the baseline", "",
             f"A seed's return is the mean of its last {window} evaluations' returns (each the mean of the "
             "evaluation's episodes; the env's reward, undiscounted). Effect: the storage's mean over seeds minus "
             f"the baseline's, with its 95 % bootstrap interval ({summary['bootstrap_resamples']:,} resamples of "
             f"the seeds within each side, RNG seed {summary['bootstrap_seed']}). Welch p: Welch's t-test. "
             f"Detectable: the smallest difference the seeds detect with {summary['power'] * 100:.0f} % power at alpha "
             f"{summary['alpha']} (two-sided two-sample t approximation, pooled std). A loss or gain is claimed "
             f"only where the interval excludes 0 and Welch p < {summary['alpha']}.", "",
             f"| env | algo | storage | seeds | return, last {window} evals (mean ± std) | effect (95 % CI) | "
             "Welch p | detectable | verdict | buffer MB | baseline / buffer |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for cell in summary["cells"]:
        for name, s in cell["storages"].items():
            lines.append(f"| {cell['env']} | {cell['algo']} | {name} | {s['seeds']} | "
                         f"{s['return_mean']:.1f} ± {s['return_std']:.1f} | {_effect(s)} | "
                         f"{_number(s.get('welch_p'), 3)} | {_number(s.get('detectable'), 1)} | "
                         f"{s.get('verdict', 'baseline')} | {s['buffer_bytes'] / MB:.3f} | "
                         f"{'1.00' if name == BASELINE else _number(s.get('memory_ratio'))}x |")
    lines += ["", "## Step time (Table I)", "",
              "Each trial's own times: trials that ran at different times on a shared machine carry its load "
              "into these ratios (benchmarks/bench_buffers.py times the storages side by side, in ABBA chunks).",
              "", "| env | algo | storage | acting ms/step | update ms/step | ms/step | ratio to baseline |",
              "|---|---|---|---|---|---|---|"]
    for cell in summary["cells"]:
        for name, s in cell["storages"].items():
            ratio = 1.0 if name == BASELINE else s.get("ms_ratio")
            lines.append(f"| {cell['env']} | {cell['algo']} | {name} | {s['acting_ms_per_step']:.3f} | "
                         f"{s['update_ms_per_step']:.3f} | {s['ms_per_step']:.3f} | {_number(ratio)} |")
    if summary["plots"]:
        lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in summary["plots"]]
    if summary["failed"]:
        lines += ["", "## Failed trials", ""] + [f"- {f['id']}: {f['error']}" for f in summary["failed"]]
    if summary["unfinished"]:
        lines += ["", "## Unfinished trials", ""] + [f"- {i}" for i in summary["unfinished"]]
    return "\n".join(lines) + "\n"
