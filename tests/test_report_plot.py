"""The validation memory plot: whole process from 0, growth above the built model, legends off the data,
failed checks marked. Real predictions over synthetic run folders (no training)."""

import csv
import json
import random
from pathlib import Path
from types import SimpleNamespace

import matplotlib.colors
import pytest
from matplotlib.text import Text

from validation.harness.compare import Check, checks
from validation.harness.predict import Prediction, Runtime, predict
from validation.harness.report import (
    COLORS,
    LIGHT,
    _checks_summary,
    _fmt,
    memory_figure,
    plot_memory,
    returns_figure,
    run_colors,
    table,
)
from validation.harness.runconfig import RunConfig
from validation.harness.validate import summary

STORAGES = ("sb3", "packed")  # SB3's buffer as is, and ours
# calibrated figures of a CPU SAC run on Walker2d (imports + env + torch, then forward passes, then updates)
RUNTIME = Runtime(built_bytes=343_500_000, acting_bytes=348_600_000, training_bytes=359_500_000)
PEAK_QUANTITY = "whole-process peak RSS: calibrated runtime + planner vs psutil"


def _predictions() -> "dict[str, Prediction]":
    out = {}
    for storage in STORAGES:
        config = RunConfig("Walker2d-v5", "sac", storage, steps=2000, buffer_size=5000, decimals=2, fill=True)
        out[config.name] = predict(config, RUNTIME)
    return out


def _write_run(out: Path, name: str, prediction: Prediction, offset: int, seed: int) -> None:
    """A run's timeseries.csv as the child writes it: the predicted curve plus an offset and noise."""
    rng = random.Random(seed)
    config = prediction.config
    end = config.buffer_size + config.steps
    rows = [(0, "start", 30_000_000), (0, "imports", 250_000_000), (0, "env_made", 300_000_000)]
    rows += [(0, "model_built", prediction.rss_at(0, "built"))] * 5
    rows += [(s, "acting", prediction.rss_at(s)) for s in range(1, config.buffer_size, 100)]
    rows += [(config.buffer_size, "buffer_full", prediction.rss_at(config.buffer_size, "built"))]
    rows += [(s, "training_starts", prediction.rss_at(s)) for s in range(config.first_update_step, end, 50)]
    rows += [(end, "end", prediction.rss_at(end))]
    (out / name).mkdir(parents=True)
    with open(out / name / "timeseries.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t_s", "step", "phase", "rss_bytes", "uss_bytes"])
        for i, (step, phase, rss) in enumerate(rows):
            rss = rss + (offset + rng.randint(-50_000, 50_000) if phase not in ("start", "imports", "env_made") else 0)
            writer.writerow([f"{0.02 * i:.4f}", step, phase, rss, rss - 40_000_000])


@pytest.fixture
def runs(tmp_path: Path) -> "tuple[Path, dict[str, Prediction]]":
    predictions = _predictions()
    for i, (name, prediction) in enumerate(predictions.items()):
        _write_run(tmp_path, name, prediction, offset=300_000 * (i + 1), seed=i)
    return tmp_path, predictions


def _passing(predictions: "dict[str, Prediction]") -> "list[Check]":
    return [Check(name, PEAK_QUANTITY, p.peak_bytes, p.peak_bytes + 200_000, 0.05) for name, p in predictions.items()]


def _data_axes(fig) -> list:
    return [ax for ax in fig.axes if ax.axison]


def _texts(fig) -> "list[str]":
    """Every text in the figure, whitespace (line wrapping) collapsed."""
    return [" ".join(t.get_text().split()) for t in fig.findobj(Text) if t.get_text()]


def test_main_axis_starts_at_zero_and_growth_panel_starts_at_the_built_model(runs):
    out, predictions = runs
    fig = memory_figure(out, predictions, _passing(predictions))
    whole, growth = _data_axes(fig)
    assert whole.get_ylim()[0] == 0
    assert whole.get_ylim()[1] > RUNTIME.training_bytes / 1e6
    assert "MB = 10^6 B" in whole.get_ylabel()
    assert "growth above" in growth.get_ylabel() and "(MB)" in growth.get_ylabel()
    assert len(whole.lines) >= 2 * len(predictions) and len(growth.lines) >= 2 * len(predictions)
    # growth curves (measured, predicted per run) start at 0: their reference is the built model
    curves = [line for line in growth.lines if len(line.get_xdata()) > 2]
    assert len(curves) == 2 * len(predictions)
    for line in curves:
        assert line.get_ydata()[0] == pytest.approx(0)
    # the predicted growth ends at the buffer plus optimizer state plus the training runtime's extra
    prediction = next(iter(predictions.values()))
    expected = (prediction.rss_at(prediction.config.buffer_size + prediction.config.steps)
                - prediction.rss_at(0, "built")) / 1e6
    assert curves[1].get_ydata()[-1] == pytest.approx(expected)


@pytest.mark.parametrize("failing", [False, True])
def test_legends_and_verdicts_sit_off_the_data(runs, failing):
    out, predictions = runs
    checks = _passing(predictions)
    if failing:
        checks.append(Check(next(iter(predictions)), PEAK_QUANTITY, 400e6, 480e6, 0.05))
    fig = memory_figure(out, predictions, checks)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    boxes = [t.get_bbox_patch() for t in fig.findobj(Text) if t.get_bbox_patch() is not None]
    assert legends and boxes
    for ax in _data_axes(fig):
        area = ax.get_window_extent(renderer)
        for artist in legends + boxes:
            assert not artist.get_window_extent(renderer).overlaps(area), artist


def test_failed_check_is_marked(runs):
    out, predictions = runs
    failing = next(iter(predictions))
    quantity = "RSS growth while the buffer fills from 10 % to full: planner vs psutil"
    checks = _passing(predictions) + [Check(failing, quantity, 1.2e6, 1.5e6, 0.01)]
    texts = " | ".join(_texts(memory_figure(out, predictions, checks)))
    assert quantity in texts
    assert "FAILED" in texts and "checks pass" not in texts
    assert f"{failing}: measured RSS (psutil) (1 check failed)" in texts
    other = [name for name in predictions if name != failing]
    assert all(f"{name}: measured RSS (psutil) (" not in texts for name in other)


def test_all_pass_says_so_and_no_checks_say_nothing(runs):
    out, predictions = runs
    texts = " | ".join(_texts(memory_figure(out, predictions, _passing(predictions))))
    assert f"all {len(predictions)} checks pass" in texts and "FAILED" not in texts
    texts = " | ".join(_texts(memory_figure(out, predictions)))
    assert "checks pass" not in texts and "FAILED" not in texts


def test_plot_memory_writes_the_png(runs):
    out, predictions = runs
    path = plot_memory(out, predictions, _passing(predictions))
    assert path == out / "memory.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    path.unlink()
    assert plot_memory(out, predictions) == path and path.stat().st_size > 10_000  # without checks, as before


def test_colours_for_any_storage_name():
    def runs(*storages):
        return {f"run{i}": SimpleNamespace(config=SimpleNamespace(storage=s)) for i, s in enumerate(storages)}

    known = [s for s in COLORS if s in STORAGES] or list(COLORS)[:1]
    colors = run_colors(runs(known[0], "mystery", known[0], "another"))
    assert colors["run0"] == (COLORS[known[0]], LIGHT[known[0]])
    darks = [dark for dark, _ in colors.values()]
    assert len(set(darks)) == 4  # an unknown name, or a storage shown already, gets a colour of its own
    for dark, light in colors.values():
        assert matplotlib.colors.is_color_like(dark) and matplotlib.colors.is_color_like(light)


def test_many_failures_list_the_quantities_up_to_a_cap():
    checks = [Check(f"run{i % 2}", f"quantity {i}", 100e6, 200e6, 0.05) for i in range(14)]
    text, bad = _checks_summary(checks)
    assert bad and text.startswith("14 of 14 checks FAILED")
    assert "quantity 0" in text and "predicted" not in text  # many: the quantities only
    assert text.count("\u2022") == 12 and "... and 2 more (see report.json)" in text
    assert _checks_summary([]) is None
    assert _checks_summary([Check("run0", "q", 1e6, None, 0.01)]) == (
        "no check judged\n1 n/a (not judged):\n \u2022 run0: q: not measured", False)


def test_fmt_is_megabytes():
    assert _fmt(None) == "-"
    assert _fmt(1_234_567) == "1.235 MB"


def _write_returns(out: Path, name: str, seed: int) -> None:
    rng = random.Random(seed)
    with open(out / name / "returns.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["step", "episode_return"])
        for k in range(40):
            writer.writerow([100 * k + seed, 50 + 3 * k + rng.gauss(0, 30)])


def test_each_run_of_the_returns_plot_has_its_own_colour_and_legend_entry(runs):
    out, predictions = runs
    for i, name in enumerate(predictions):
        _write_returns(out, name, seed=i)
    fig = returns_figure(out, predictions)
    (ax,) = fig.axes
    curves = [line for line in ax.lines if len(line.get_xdata()) > 2]
    assert len(curves) == 2 * len(predictions)  # per run: its episodes (dots), then their moving average
    colors = [matplotlib.colors.to_rgb(line.get_color()) for line in curves]
    assert colors[::2] == colors[1::2]  # a run's dots and line share its colour
    hsv = [matplotlib.colors.rgb_to_hsv(color) for color in colors[::2]]
    assert all(s > 0.4 and v > 0.4 for _, s, v in hsv)  # colourful: not black beside navy
    for i, (hue, _, _) in enumerate(hsv):  # and of hues far apart
        assert all(min(abs(hue - other), 1 - abs(hue - other)) > 0.1 for other, _, _ in hsv[i + 1:])
    entries = [text.get_text() for text in ax.get_legend().get_texts()]
    assert entries == [f"{name}: episodes (dots), mean of 10 (line)" for name in predictions] + ["first update"]
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    assert not ax.get_legend().get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


def _ppo_run(out: Path, acting_extra: int) -> "tuple[Prediction, dict]":
    """A PPO run as the child leaves it: run.json's marks, and a timeseries whose first sample after the
    model_built mark already holds the policy's first forward passes (``acting_extra`` bytes: PPO acts at once)."""
    config = RunConfig("Hopper-v5", "ppo", "sb3", steps=4096, buffer_size=2048, decimals=1)
    prediction = predict(config, Runtime(built_bytes=386_400_000, acting_bytes=386_400_000 + acting_extra,
                                         training_bytes=396_000_000))
    built = prediction.rss_at(0, "built") + 200_000
    marks = [{"name": "model_built", "step": 0, "rss_bytes": built},
             {"name": "training_starts", "step": 2048, "rss_bytes": built + acting_extra + 30_000},
             {"name": "end", "step": 4096, "rss_bytes": built + acting_extra + 4_500_000}]
    rows = [(0, "env_made", 300_000_000), (0, "model_built", built)]
    rows += [(s, "model_built", built + acting_extra + 10 * s) for s in range(12, 2048, 64)]
    rows += [(m["step"], m["name"], m["rss_bytes"]) for m in marks[1:]]
    (out / config.name).mkdir(parents=True)
    with open(out / config.name / "timeseries.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["t_s", "step", "phase", "rss_bytes", "uss_bytes"])
        writer.writerows([f"{0.02 * i:.4f}", step, phase, rss, rss] for i, (step, phase, rss) in enumerate(rows))
    run = {"marks": marks, "measured": {}}
    (out / config.name / "run.json").write_text(json.dumps(run))
    return prediction, run


@pytest.mark.parametrize("first_sample_labelled", [True, False])
def test_the_growth_panel_measures_from_the_model_built_mark_as_the_checks_do(tmp_path, first_sample_labelled):
    # the finding: a PPO memory.png showed a predicted growth of 5.3 MB against ~0 measured beside "all checks pass".
    # The panel measured from the first sample labelled model_built, taken after PPO's first forward passes; the
    # checks take the model_built mark. Older runs labelled the mark's own sample with the phase before it.
    acting_extra = 5_300_000
    prediction, run = _ppo_run(tmp_path, acting_extra)
    if not first_sample_labelled:
        path = tmp_path / prediction.config.name / "timeseries.csv"
        path.write_text(path.read_text().replace("0.0200,0,model_built", "0.0200,0,env_made"))
    fig = memory_figure(tmp_path, {prediction.config.name: prediction})
    growth = _data_axes(fig)[1]
    measured, predicted = [line for line in growth.lines if len(line.get_xdata()) > 2]
    steps = list(measured.get_xdata())
    at = {m["name"]: m["rss_bytes"] for m in run["marks"]}
    starts = steps.index(2048)
    assert measured.get_ydata()[starts] == pytest.approx((at["training_starts"] - at["model_built"]) / 1e6)
    acting = [y for x, y in zip(predicted.get_xdata(), predicted.get_ydata()) if 0 < x < 2048]
    assert acting and all(y == pytest.approx(acting_extra / 1e6, abs=0.3) for y in acting)  # both show the acting
    assert measured.get_ydata()[5] == pytest.approx(acting_extra / 1e6, abs=0.1)  # runtime, as the acting check does


def test_a_check_not_judged_shows_its_reason_on_the_plot(tmp_path):
    prediction, run = _ppo_run(tmp_path, 5_300_000)
    growth = next(c for c in checks(prediction, run) if c.quantity.startswith("RSS growth"))
    assert growth.verdict == "n/a" and "not attributable" in growth.reason
    passing = Check(prediction.config.name, PEAK_QUANTITY, prediction.peak_bytes, prediction.peak_bytes, 0.05)
    texts = " | ".join(_texts(memory_figure(tmp_path, {prediction.config.name: prediction}, [passing, growth])))
    assert "all 1 checks pass" in texts and "1 n/a (not judged)" in texts
    assert f"{growth.run}: {growth.quantity}: {growth.reason}" in texts


def test_a_tolerance_is_stated_one_way_everywhere(runs):
    out, predictions = runs
    name = next(iter(predictions))
    floor = Check(name, "buffer bytes: planner vs memray, everything the buffer constructor allocated", 100_000,
                  180_000, 0.01, allowance=64 * 1024)  # the 64 KiB floor allows 65.5 %: this +80 % fails
    relative = Check(name, PEAK_QUANTITY, 400e6, 440e6, 0.05)
    assert floor.tolerance_text == "±65.5% (64 KiB)" and relative.tolerance_text == "±5%"
    for check in (floor, relative):
        data = check.as_dict()
        assert data["tolerance"] == check.tolerance_text and "allowance" not in data
        assert data["error_pct"] > data["tolerance_pct"] and data["verdict"] == "FAIL"  # one unit: compared at sight
        assert abs(check.measured - check.predicted) > data["allowed_bytes"]
        assert f"+{data['error_pct']:.2f}%  {check.tolerance_text}" in table([check])
        texts = " ".join(_texts(memory_figure(out, predictions, [check])))
        assert f"(tolerance {check.tolerance_text})" in texts
        report = {"runs": {}, "status": "complete-with-failures", "reason": "1 check failed"}
        assert f"tolerance {check.tolerance_text})" in summary(report, [check])
    assert Check(name, "q", 0, 4096, 0.01, allowance=8192).tolerance_text == "±8 KiB"  # nothing to take a % of
    assert Check(name, "q", 100, 100, 0).tolerance_text == "exact"


def test_the_mark_sample_carries_the_marks_phase(tmp_path):
    # the sample a mark takes is the mark's: the growth panel and any reader of timeseries.csv find it under its name
    from validation.harness.child import RunLog
    from validation.harness.measure import MemorySampler

    sampler = MemorySampler(tmp_path / "timeseries.csv")
    log = RunLog(tmp_path, RunConfig("Hopper-v5", "ppo", "sb3", steps=1, buffer_size=2, decimals=1), sampler)
    log.mark("env_made")
    log.mark("model_built")
    sampler._file.close()
    with open(tmp_path / "timeseries.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["phase"] for row in rows] == ["env_made", "model_built"]
    assert int(rows[-1]["rss_bytes"]) == json.loads((tmp_path / "run.json").read_text())["marks"][-1]["rss_bytes"]


def test_the_calibration_probe_is_labelled_as_such():
    from validation.harness.calibrate import probe_config, probe_label

    for algo, env in (("sac", "Walker2d-v5"), ("dqn", "CartPole-v1"), ("ppo_lstm", "Hopper-v5")):
        probe = probe_config(env, algo)
        assert probe_label(probe).startswith(f"calibration probe ({algo}-sb3 on {env}, ")


def test_what_a_check_leaves_out_is_said_beside_the_verdicts(runs):
    out, predictions = runs
    name = next(iter(predictions))
    caveat = f"{name}: code loaded on first use grew 2.523 MB from the built model to the full buffer"
    growth = Check(name, "RSS growth while the buffer fills from 10 % to full: planner vs psutil, anonymous pages",
                   2_340_000, 2_375_680, 0.01, allowance=256 * 1024, caveat=caveat)
    texts = " | ".join(_texts(memory_figure(out, predictions, [growth])))
    assert "all 1 checks pass" in texts and caveat in texts
