"""The study's figures (Figure 4 as small multiples, Figure 3 at equal memory): storages whose returns are
identical share one curve and the legend says so, distinct storages differ in colour and line style, bands
stay light and edged, and no text overlaps another. Synthetic summaries, and the committed small study's."""

import json
from pathlib import Path

import pytest
from matplotlib.collections import PolyCollection
from matplotlib.colors import to_rgb, to_rgba
from plot_texts import assert_texts_apart, drawn_texts

from validation.study.summary import equal_memory_figure, returns_figure

SMALL_STUDY = Path(__file__).resolve().parents[1] / "docs" / "measurements" / "study-small"
STEPS = [0, 100, 200, 300, 400]


def _stats(mean: "list[float]", std: "list[float]", buffer_bytes: int, seeds: int = 3) -> dict:
    return {"seeds": seeds, "buffer_bytes": buffer_bytes, "curve": {"steps": STEPS, "mean": mean, "std": std}}


def _cell(**storages: dict) -> dict:
    return {"env": "Hopper-v5", "algo": "sac", "storages": {k.replace("_", "-"): v for k, v in storages.items()}}


SHARED = [10.0, 40.0, 90.0, 120.0, 150.0]
CELL = _cell(sb3=_stats([10.0, 50.0, 100.0, 140.0, 180.0], [5.0] * 5, 10_000_000),
             float16=_stats([10.0, 45.0, 95.0, 130.0, 170.0], [6.0] * 5, 5_000_000),
             packed=_stats(SHARED, [8.0] * 5, 2_625_000),
             calibrated=_stats(list(SHARED), [8.0] * 5, 5_105_000),  # the same returns: drawn once, with packed
             bfloat16=_stats(list(SHARED), [9.0] * 5, 2_400_000),  # the same mean, another std: its own
             equal_memory=_stats([10.0, 60.0, 110.0, 150.0, 190.0], [7.0] * 5, 2_624_000))


def _curves(ax) -> list:
    return [line for line in ax.lines if len(line.get_xdata()) == len(STEPS)]


def _legend(ax) -> "list[str]":
    return [text.get_text() for text in ax.get_legend().get_texts()]


def test_identical_returns_are_drawn_once_and_the_legend_says_so():
    fig = returns_figure([CELL])
    panels = [ax for ax in fig.axes if ax.axison]
    assert [ax.get_title() for ax in panels] == [
        f"Hopper-v5 SAC: {name}" for name in ("packed = calibrated", "float16", "bfloat16", "equal-memory")]
    shared = [line for ax in panels for line in _curves(ax) if list(line.get_ydata()) == SHARED]
    assert len(shared) == 2  # packed = calibrated once, bfloat16 (another std) once
    legends = [entry for ax in panels for entry in _legend(ax)]
    assert "packed = calibrated (identical returns)\n3 seeds, buffer 2.62 / 5.11 MB" in legends
    assert "bfloat16\n3 seeds, buffer 2.4 MB" in legends
    assert not any("bfloat16 (identical" in entry or "= bfloat16" in entry for entry in legends)
    for ax in panels:  # the baseline beside each storage
        assert _legend(ax)[0] == "sb3\n3 seeds, buffer 10 MB" and len(_curves(ax)) == 2


def test_a_storage_identical_to_the_baseline_has_no_panel_of_its_own():
    cell = _cell(sb3=CELL["storages"]["sb3"], float16=dict(CELL["storages"]["sb3"]),
                 packed=CELL["storages"]["packed"])
    (panel,) = [ax for ax in returns_figure([cell]).axes if ax.axison]
    assert panel.get_title() == "Hopper-v5 SAC: packed"
    assert _legend(panel)[0].startswith("sb3 = float16 (identical returns)\n")


def test_distinct_storages_get_distinct_colours_and_styles_and_light_edged_bands():
    looks = {}
    for fig in (returns_figure([CELL]), equal_memory_figure([CELL])):
        for ax in (ax for ax in fig.axes if ax.axison):
            for line, label, band in zip(_curves(ax), _legend(ax), ax.findobj(PolyCollection), strict=True):
                name = label.split()[0]
                look = (to_rgb(line.get_color()), line.get_linestyle(), line.get_marker())
                assert looks.setdefault(name, look) == look  # a storage looks the same in every panel
                face, edge = band.get_facecolor()[0], band.get_edgecolor()[0]
                assert to_rgb(face[:3]) == to_rgb(edge[:3]) == look[0]  # its band in its colour,
                assert face[3] <= 0.1 < edge[3]  # light, with a darker edge
    assert set(looks) == {"sb3", "float16", "packed", "bfloat16", "equal-memory"}
    colours = [colour for colour, _, _ in looks.values()]
    assert len(set(colours)) == len(colours)
    assert len({(style, marker) for _, style, marker in looks.values()}) == len(looks)
    assert to_rgb(looks["sb3"][0]) == to_rgba("black")[:3]


@pytest.mark.parametrize("make", [returns_figure, equal_memory_figure])
def test_the_small_study_figures_keep_their_texts_apart(monkeypatch, make):
    cells = json.loads((SMALL_STUDY / "summary.json").read_text())["cells"]
    fig = make(cells)
    texts = drawn_texts(fig, monkeypatch)
    assert_texts_apart(fig, texts)
    renderer = fig.canvas.get_renderer()
    data = [ax.get_window_extent(renderer) for ax in fig.axes if ax.axison]
    legends = [ax.get_legend().get_window_extent(renderer) for ax in fig.axes if ax.axison]
    assert not any(legend.overlaps(area) for legend in legends for area in data)
    if make is returns_figure:  # packed and calibrated returned the same, seed for seed (PPO, two envs)
        entries = [entry for ax in fig.axes if ax.axison for entry in _legend(ax)]
        assert sum(entry.startswith("packed = calibrated (identical returns)") for entry in entries) == 2


def test_the_forest_plot_draws_each_effect_with_its_interval_and_the_zero_line(monkeypatch):
    """A row per compared storage: its interval as a segment from low to high and its effect as a marker, in % of
    the baseline's mean return; a storage with one seed (no interval) shows its effect alone; the baseline is no
    row."""
    from validation.study.summary import forest_figure

    cell = _cell(sb3=dict(_stats(SHARED, [1.0] * 5, 10), return_mean=200.0),
                 packed=dict(_stats(SHARED, [1.0] * 5, 5), effect=-30.0, ci_low=-50.0, ci_high=-10.0),
                 calibrated=dict(_stats(SHARED, [1.0] * 5, 4, seeds=1), effect=-30.0, ci_low=None, ci_high=None))
    fig = forest_figure([cell])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["Hopper-v5 SAC: calibrated (1 seed)", "Hopper-v5 SAC: packed (3 seeds)"]
    segments = [line for line in ax.lines if len(line.get_xdata()) == 2 and line.get_xdata()[0] != line.get_xdata()[1]]
    assert [list(line.get_xdata()) for line in segments] == [[-25.0, -5.0]]  # % of the baseline's 200
    markers = [line for line in ax.lines if len(line.get_xdata()) == 1]
    assert [float(line.get_xdata()[0]) for line in markers] == [-15.0, -15.0]
    assert any(list(line.get_xdata()) == [0.0, 0.0] for line in ax.lines)  # the zero line
    assert_texts_apart(fig, drawn_texts(fig, monkeypatch))
    assert forest_figure([_cell(sb3=_stats(SHARED, [1.0] * 5, 10))]) is None
