"""The fit chart: the committed PNG is what the README's command draws (compared through the rows the PNG
carries as metadata), and no text overlaps another or leaves the figure, whatever the device."""

import json
from pathlib import Path

import pytest
from PIL import Image
from plot_texts import assert_texts_apart, drawn_texts

from planner.fit import fit
from planner.plot import METADATA_KEY, chart_description, fit_figure, short_count
from planner.profiles import load_profile

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "fit-jetson-nano-ant.png"
COMMAND = ("fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--plot")  # + docs/fit-jetson-nano-ant.png


def _metadata(path: Path) -> dict:
    with Image.open(path) as image:
        return json.loads(image.text[METADATA_KEY])


def test_the_committed_chart_is_what_the_command_draws(planner_cli, tmp_path):
    done = planner_cli(*COMMAND, str(tmp_path / "fit.png"))
    assert done.returncode == 0, done.stderr
    fresh = _metadata(tmp_path / "fit.png")
    result = fit(load_profile("jetson-nano"), 111, 8, env_id="Ant-v3")
    assert [" ".join(row["label"].split()) for panel in fresh["panels"] for row in panel["rows"]] == [
        row.label for row in result.rows]  # 11 rows, PPO's then SAC's
    assert _metadata(COMMITTED) == fresh, "regenerate it: planner " + " ".join(COMMAND) + " " + str(
        COMMITTED.relative_to(ROOT))


def test_the_description_is_what_the_rows_say():
    result = fit(load_profile("jetson-nano"), 111, 8, env_id="Ant-v3")
    description = chart_description(fit_figure(result))
    assert "Ant-v3" in description["title"] and "jetson-nano" in description["title"]
    assert description["legend"] == ["models + optimizer", "buffer", "budget 1,194.97 MB (available for training)"]
    ppo, sac = description["panels"]
    assert ppo["budget_mb"] == [] and "budget 1,194.97 MB: off this scale" in ppo["title"]
    assert sac["budget_mb"] == [pytest.approx(result.budget_bytes / 1e6)]
    rows = [row for panel in description["panels"] for row in panel["rows"]]
    for drawn, row in zip(rows, result.rows, strict=True):
        assert sum(drawn["bars_mb"]) == pytest.approx(row.predicted_bytes / 1e6)
        assert drawn["bars_mb"][1] == pytest.approx(row.footprint.buffer_bytes / 1e6)
        note = drawn["note"].split()
        assert note[-1] == short_count(row.max_buffer_size) and ("fits" in note) == row.fits
        assert ("too big" in drawn["note"]) != row.fits
    assert rows[5]["note"].split()[:2] == ["1,824.28", "MB"] and "too big" in rows[5]["note"]


@pytest.mark.parametrize("profile, env, dims", [
    ("jetson-nano", "Ant-v3", (111, 8)),  # the README's chart: one row too big, the budget off PPO's scale
    ("paper-workstation", "Ant-v3", (111, 8)),  # a discrete GPU: the host's buffer alone, a wider budget
    ("esp32-s3-psram", "Hopper-v5", (11, 3)),  # a microcontroller: buffer only, SAC's rows all too big
    ("raspberry-pi-zero-2w", "Humanoid-v5", (348, 17)),
])
def test_no_text_overlaps_another_or_leaves_the_figure(monkeypatch, profile, env, dims):
    result = fit(load_profile(profile), *dims, env_id=env)
    assert len(result.rows) == 11
    fig = fit_figure(result)
    texts = drawn_texts(fig, monkeypatch)
    assert len(texts) >= 2 * 11  # a label and a note per row at least
    assert_texts_apart(fig, texts)
    renderer = fig.canvas.get_renderer()
    data = [ax.get_window_extent(renderer) for ax in fig.axes]
    notes = [text.get_window_extent(renderer) for text in texts if text.get_gid() in ("note", "header")]
    assert len(notes) == 11 + len(data)
    assert not any(note.overlaps(area) for note in notes for area in data)  # the notes sit beside the bars
