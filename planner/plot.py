"""A Figure-2-style chart of a fit: one horizontal bar per storage, grouped by algorithm, models and optimizer
(black) beside the buffer (blue), the budget as a line, and per row its total, verdict and the largest size
that fits in a column beside the bars. The PNG carries the chart's rows as JSON (:data:`METADATA_KEY`)."""

import importlib.util
import io
import json
import textwrap
from pathlib import Path

from planner.errors import PlannerError
from planner.fit import FitResult, FitRow
from planner.output import check_output_path, write_atomic

DPI = 100
WIDTH = 12  # inches
ROW_HEIGHT = 0.42  # inches per bar
OFF_SCALE = 4  # draw the budget line only if it is within this factor of the longest bar
MODELS, BUFFER, FITS, TOO_BIG = "black", "#3b75af", "black", "#b22222"
LABEL_WIDTH = 30  # characters per line of a storage's label
METADATA_KEY = "fit-chart"  # the PNG text chunk holding chart_description()'s JSON


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


def _verdict(row: FitRow) -> str:
    """"fits" or "too big", naming the pool (host, GPU) where a discrete GPU makes two."""
    if row.fits:
        return "fits"
    return f"too big ({', '.join(row.failing_pools)})" if row.gpu else "too big"


def _mb(count: int) -> str:
    """Bytes in MB (10^6 B), two decimals, and three significant digits below 1 MB.

    >>> _mb(1_824_280_000), _mb(254_000), _mb(2_214_000)
    ('1,824.28', '0.254', '2.21')
    """
    mb = count / 1e6
    return f"{mb:,.2f}" if mb >= 1 else f"{mb:.3g}"


def _notes(rows: "list[FitRow]") -> "tuple[str, list[str]]":
    """The column beside the bars, aligned in a monospace font: its header and one line per row."""
    cells = [(f"{_mb(row.predicted_bytes)} MB", _verdict(row), short_count(row.max_buffer_size))
             for row in rows]
    header = ("total", "verdict", "fits up to")
    widths = [max(len(text) for text in column) for column in zip(header, *cells)]

    def line(total: str, verdict: str, size: str) -> str:
        return f"{total:>{widths[0]}}  {verdict:<{widths[1]}}  {size:>{widths[2]}}"

    return line(*header), [line(*row) for row in cells]


def fit_figure(result: FitResult):
    """The chart as a matplotlib Figure (Agg canvas attached, not saved): one panel per algorithm, its own MB
    scale (PPO's rollout buffer is a thousandth of SAC's replay buffer), rows labelled as the table labels
    them, the rows that do not fit in red."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import StrMethodFormatter

    by_algo = result.by_algo()
    profile = result.profile
    on_gpu = any(row.gpu for row in result.rows)
    buffer_label = ("buffer only (no Python runtime)" if profile.buffer_only
                    else "buffer (host RAM; the networks are on the GPU)" if on_gpu else "buffer")
    counts = [len(rows) for rows in by_algo.values()]
    fig = Figure(figsize=(WIDTH, 1.9 + 0.85 * len(counts) + ROW_HEIGHT * sum(counts)), dpi=DPI,
                 layout="constrained")
    fig.get_layout_engine().set(w_pad=0.1, h_pad=0.1)  # inches kept free at the figure's edges
    FigureCanvasAgg(fig)
    budget_mb = result.budget_bytes / 1e6
    show_models = not (profile.buffer_only or on_gpu)  # else the bars are the buffer alone
    handles = [Patch(color=MODELS, label="models + optimizer")] if show_models else []
    handles.append(Patch(color=BUFFER, label=buffer_label))
    header, notes = _notes([row for rows in by_algo.values() for row in rows])  # one column for all panels
    note_lines = iter(notes)
    grid = fig.add_gridspec(len(counts), 1, height_ratios=counts)
    for i, (algo, rows) in enumerate(by_algo.items()):
        ax = fig.add_subplot(grid[i, 0])
        y = range(len(rows))
        models = [(row.predicted_bytes - row.footprint.buffer_bytes) / 1e6 for row in rows]
        buffers = [row.footprint.buffer_bytes / 1e6 for row in rows]
        if show_models:
            ax.barh(y, models, height=0.6, color=MODELS)
        ax.barh(y, buffers, left=models, height=0.6, color=BUFFER)
        ax.set_yticks(y, [textwrap.fill(row.label, LABEL_WIDTH) for row in rows], fontsize=9)
        for tick, row in zip(ax.get_yticklabels(), rows):
            tick.set_color(FITS if row.fits else TOO_BIG)
        ax.invert_yaxis()  # the table's order, top down
        ax.annotate(header, (1, 1), xycoords="axes fraction", xytext=(10, 4), textcoords="offset points",
                    ha="left", va="bottom", family="monospace", fontsize=8.5, color="0.35", gid="header")
        for j, row in enumerate(rows):
            ax.annotate(next(note_lines), (1, j), xycoords=ax.get_yaxis_transform(), xytext=(10, 0),
                        textcoords="offset points", ha="left", va="center", family="monospace", fontsize=8.5,
                        color=FITS if row.fits else TOO_BIG, gid="note")
        longest = max(m + b for m, b in zip(models, buffers))
        title = f"{algo.upper()}, {rows[0].spec.size_param} {rows[0].spec.buffer_size:,}"
        if budget_mb <= OFF_SCALE * longest:
            ax.axvline(budget_mb, color=TOO_BIG, linestyle="--", linewidth=1.5, gid="budget")
            ax.set_xlim(0, 1.04 * max(longest, budget_mb))
        else:  # a budget far beyond the bars would flatten them: say where it is instead
            ax.set_xlim(0, 1.04 * longest)
            title += f" (budget {budget_mb:,.2f} MB: off this scale, {budget_mb / longest:,.0f}x the longest bar)"
        ax.set_title(title, loc="left", fontsize=10)
        ax.set_xlabel("memory (MB = 10^6 B)")
        ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.6g}"))
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    if any(line.get_gid() == "budget" for ax in fig.axes for line in ax.lines):
        handles.append(Line2D([], [], color=TOO_BIG, linestyle="--", linewidth=1.5,
                              label=f"budget {budget_mb:,.2f} MB ({'host RAM ' if on_gpu else ''}"
                                    "available for training)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), frameon=False, fontsize=9)
    where = ("buffer only: a microcontroller with no Python runtime" if profile.buffer_only
             else "host RAM: the buffer (networks on the GPU)" if on_gpu else "whole training process")
    fig.suptitle(f"{result.env_id} (obs {result.obs_dim}, action {result.action_dim}) on {profile.name}: {where}\n"
                 "'fits up to': the largest size whose prediction fits the budget", fontsize=11, gid="title")
    return fig


def chart_description(fig) -> dict:
    """What the chart shows, read back from its artists: titles, and per panel each row's label, its bars'
    widths (MB = 10^6 B) and its note, and the budget line's position."""
    from matplotlib.text import Text

    panels = []
    for ax in fig.axes:
        widths = [[round(bar.get_width(), 6) for bar in container] for container in ax.containers]
        panels.append({
            "title": ax.get_title(loc="left"), "xlabel": ax.get_xlabel(),
            "header": [t.get_text() for t in ax.texts if t.get_gid() == "header"],
            "rows": [{"label": tick.get_text(), "bars_mb": [w[j] for w in widths], "note": note.get_text()}
                     for j, (tick, note) in enumerate(zip(ax.get_yticklabels(),
                                                          [t for t in ax.texts if t.get_gid() == "note"]))],
            "budget_mb": [round(line.get_xdata()[0], 6) for line in ax.lines if line.get_gid() == "budget"]})
    title = next(text.get_text() for text in fig.findobj(Text) if text.get_gid() == "title")
    return {"title": title, "panels": panels,
            "legend": [text.get_text() for legend in fig.legends for text in legend.get_texts()]}


def write_fit_png(result: FitResult, path: "str | Path") -> Path:
    """:func:`fit_figure` as a PNG, written atomically, with :func:`chart_description` as its metadata."""
    path = check_output_path(path, "plot", ".png")
    fig = fit_figure(result)
    png = io.BytesIO()
    fig.savefig(png, format="png", metadata={METADATA_KEY: json.dumps(chart_description(fig), sort_keys=True)})
    return write_atomic(path, png.getvalue(), "plot")
