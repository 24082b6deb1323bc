"""A Figure-2-style chart of a fit: models vs buffer per storage, the budget as a line, the largest size
that fits written on each bar."""

import importlib.util
import io
import textwrap
from pathlib import Path

from planner.errors import PlannerError
from planner.fit import FitResult
from planner.output import check_output_path, write_atomic

FIGSIZE = (12, 5.6)
DPI = 100
OFF_SCALE = 4  # draw the budget line only if it is within this factor of the tallest bar
FITS, TOO_BIG = "black", "#b22222"


def require_matplotlib() -> None:
    """Refuse a plot up front when matplotlib (the ``plot`` extra) is not installed."""
    if importlib.util.find_spec("matplotlib") is None:
        raise PlannerError('plot needs matplotlib, which is not installed: pip install "justround-planner[plot]"',
                           "plot")


def short_count(count: int) -> str:
    """A count in three digits: 1,277,561 -> '1.28M'.

    >>> short_count(1_277_561), short_count(654_224), short_count(99)
    ('1.28M', '654k', '99')
    """
    for size, suffix in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if count >= size:
            return f"{count / size:.3g}{suffix}"
    return str(count)


def fit_figure(result: FitResult):
    """Stacked bars per algorithm (models + optimizer in black, buffer in blue), labelled as the table
    labels its rows, each annotated with its total and the largest size that fits; a matplotlib Figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_algo = result.by_algo()
    buffer_only = result.profile.buffer_only
    fig, axes = plt.subplots(1, len(by_algo), figsize=FIGSIZE, dpi=DPI, squeeze=False)
    budget_mb = result.budget_bytes / 1e6
    for ax, (algo, rows) in zip(axes[0], by_algo.items()):
        labels = [textwrap.fill(row.label, 20) for row in rows]
        models = [0.0 if buffer_only else (row.predicted_bytes - row.footprint.buffer_bytes) / 1e6 for row in rows]
        buffers = [row.footprint.buffer_bytes / 1e6 for row in rows]
        if not buffer_only:
            ax.bar(labels, models, color="black", label="models + optimizer")
        bars = ax.bar(labels, buffers, bottom=models, color="#3b75af",
                      label="buffer only (no Python runtime)" if buffer_only else "buffer")
        size_name = rows[0].spec.size_param
        for bar, row in zip(bars, rows):
            verdict = "fits" if row.fits else "too big"
            note = f"{row.predicted_bytes / 1e6:,.1f} MB, {verdict}\nfits up to {short_count(row.max_buffer_size)}"
            ax.annotate(note,
                        (bar.get_x() + bar.get_width() / 2, row.predicted_bytes / 1e6), ha="center", va="bottom",
                        fontsize=8, color=FITS if row.fits else TOO_BIG)
        tallest = max(m + b for m, b in zip(models, buffers))
        if budget_mb <= OFF_SCALE * tallest:
            ax.axhline(budget_mb, color=TOO_BIG, linestyle="--", linewidth=1.5, label=f"budget {budget_mb:,.1f} MB")
            ax.set_ylim(0, max(tallest, budget_mb) * 1.25)
        else:  # a budget far above the bars would flatten them: say where it is instead
            ax.set_ylim(0, tallest * 1.35)
            ax.text(0.02, 0.97, f"budget {budget_mb:,.1f} MB: off the scale, far above", transform=ax.transAxes,
                    va="top", fontsize=9, color=TOO_BIG)
        ax.set_title(f"{algo.upper()}, {size_name} {rows[0].spec.buffer_size:,}")
        ax.set_ylabel("memory (MB = 10^6 B)")
        ax.tick_params(axis="x", labelsize=8)
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=3, frameon=False)
    where = "buffer only: a microcontroller with no Python runtime" if buffer_only else "whole training process"
    fig.suptitle(f"{result.env_id} (obs {result.obs_dim}, action {result.action_dim}) on {result.profile.name}: "
                 f"{where}\n'fits up to': the largest size whose prediction fits the budget")
    fig.tight_layout()
    return fig


def write_fit_png(result: FitResult, path: "str | Path") -> Path:
    """:func:`fit_figure` as a PNG, written atomically."""
    import matplotlib.pyplot as plt

    path = check_output_path(path, "plot", ".png")
    fig = fit_figure(result)
    png = io.BytesIO()
    try:
        fig.savefig(png, format="png")
    finally:
        plt.close(fig)
    return write_atomic(path, png.getvalue(), "plot")
