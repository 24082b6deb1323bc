"""The validation report: report.json, timeseries.csv, PNG plots, and the terminal table."""

import csv
import json
from pathlib import Path

from planner.output import write_atomic
from planner.table import render
from validation.compare import Check
from validation.predict import Prediction

COLORS = {"baseline": "black", "quantized": "#1f4e79"}  # predictions; measurements in a lighter shade
LIGHT = {"baseline": "#a0a0a0", "quantized": "#8fbbe3"}


def write_json(path: Path, data: dict) -> None:
    """Atomically: a reader never sees half a report."""
    write_atomic(path, json.dumps(data, indent=2, default=str).encode(), "--out")


def _fmt(value: "float | None", bytes_: bool = True) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:,.3f} MB" if bytes_ else f"{value:,.3f}"


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


def merge_timeseries(out: Path, names: "list[str]") -> Path:
    """One CSV for all runs (a ``run`` column first), from each run's own file."""
    path = out / "timeseries.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "t_s", "step", "phase", "rss_bytes", "uss_bytes"])
        for name in names:
            for row in read_timeseries(out / name):
                writer.writerow([name, row["t_s"], row["step"], row["phase"], row["rss_bytes"], row["uss_bytes"]])
    return path


def plot_memory(out: Path, predictions: "dict[str, Prediction]") -> Path:
    """Measured RSS over steps beside the predicted curve, one colour per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5), dpi=100)
    for name, prediction in predictions.items():
        series = [r for r in read_timeseries(out / name) if r["phase"] not in ("start", "imports", "env_made")]
        if not series:
            continue
        storage = prediction.config.storage
        steps = [int(r["step"]) for r in series]
        ax.plot(steps, [int(r["rss_bytes"]) / 1e6 for r in series], color=LIGHT[storage], linewidth=1.2,
                label=f"{name}: measured RSS (psutil)")
        first = prediction.config.first_update_step
        grid = sorted(set(steps) | {0, 1, max(steps), first - 1, first})
        ax.plot(grid, [prediction.rss_at(s) / 1e6 for s in grid], color=COLORS[storage], linestyle="--",
                linewidth=1.8, zorder=3, label=f"{name}: predicted")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("memory (MB = 10^6 B)")
    ax.set_title("Predicted vs measured memory\n(predicted: calibrated runtime + models + committed buffer, "
                 "+ optimizer state from the first update)", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "memory.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_returns(out: Path, predictions: "dict[str, Prediction]") -> Path:
    """Episode returns over steps, each run's episodes as dots and their moving average (10 episodes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(9, 4), dpi=100)
    for name, prediction in predictions.items():
        path = out / name / "returns.csv"
        if not path.exists():
            continue
        with open(path) as handle:
            rows = list(csv.DictReader(handle))
        if not rows:
            continue
        storage = prediction.config.storage
        steps = np.array([int(r["step"]) for r in rows])
        returns = np.array([float(r["episode_return"]) for r in rows])
        ax.plot(steps, returns, ".", markersize=3, alpha=0.5, color=LIGHT[storage], label=f"{name} episodes")
        window = min(10, len(returns))
        mean = np.convolve(returns, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1:], mean, color=COLORS[storage], linewidth=1.8,
                label=f"{name}, mean of {window} episodes")
    first = next(iter(predictions.values())).config.first_update_step
    ax.axvline(first, color="grey", linestyle=":", linewidth=1, label="first update")
    ax.set_xlabel("environment steps")
    ax.set_ylabel("episode return")
    ax.set_title("Learning curves")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "returns.png"
    fig.savefig(path)
    plt.close(fig)
    return path
