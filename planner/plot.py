"""A Figure-2-style chart of a fit: models vs buffer per storage option, the budget as a line."""

import importlib.util
import io
from pathlib import Path

from planner.errors import PlannerError
from planner.fit import FitResult
from planner.output import check_output_path, write_atomic

FIGSIZE = (11, 4.8)
DPI = 100
OFF_SCALE = 4  # draw the budget line only if it is within this factor of the tallest bar


def require_matplotlib() -> None:
    """Refuse --plot up front when matplotlib (the ``plot`` extra) is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        raise PlannerError('--plot needs matplotlib, which is not installed: pip install "justround-planner[plot]"')


def write_fit_png(result: FitResult, path: "str | Path") -> Path:
    """Stacked bars (models + optimizer in black, buffer in blue) per algorithm, written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = check_output_path(path, "--plot", ".png")
    algos = list(dict.fromkeys(row.algo for row in result.rows))
    fig, axes = plt.subplots(1, len(algos), figsize=FIGSIZE, dpi=DPI, squeeze=False)
    budget_mb = result.budget_bytes / 1e6
    for ax, algo in zip(axes[0], algos):
        rows = [row for row in result.rows if row.algo == algo]
        labels = [row.storage for row in rows]
        models = [(row.predicted_bytes - row.footprint.buffer_bytes) / 1e6 for row in rows]
        buffers = [row.footprint.buffer_bytes / 1e6 for row in rows]
        ax.bar(labels, models, color="black", label="models + optimizer")
        bars = ax.bar(labels, buffers, bottom=models, color="#3b75af", label="buffer")
        for bar, row in zip(bars, rows):
            ax.annotate(f"{row.predicted_bytes / 1e6:,.1f}\n{'fits' if row.fits else 'too big'}",
                        (bar.get_x() + bar.get_width() / 2, row.predicted_bytes / 1e6),
                        ha="center", va="bottom", fontsize=8, color="black" if row.fits else "#b22222")
        tallest = max(m + b for m, b in zip(models, buffers))
        if budget_mb <= OFF_SCALE * tallest:
            ax.axhline(budget_mb, color="#b22222", linestyle="--", linewidth=1.5, label=f"budget {budget_mb:,.1f} MB")
            ax.set_ylim(0, max(tallest, budget_mb) * 1.18)
        else:  # a budget far above the bars would flatten them: say where it is instead
            ax.set_ylim(0, tallest * 1.3)
            ax.text(0.02, 0.97, f"budget {budget_mb:,.1f} MB: off the scale, far above", transform=ax.transAxes,
                    va="top", fontsize=9, color="#b22222")
        size = rows[0].spec.buffer_size
        ax.set_title(f"{algo.upper()} ({'n_steps' if algo == 'ppo' else 'buffer'} {size:,})")
        ax.set_ylabel("memory (MB = 10^6 B)")
        ax.tick_params(axis="x", labelrotation=20)
        ax.legend(fontsize=8, loc="upper right")
    fig.suptitle(f"{result.profile.name}: obs {result.obs_dim}, action {result.action_dim}")
    fig.tight_layout()
    png = io.BytesIO()
    try:
        fig.savefig(png, format="png")
    finally:
        plt.close(fig)
    return write_atomic(path, png.getvalue(), "--plot")
