"""``planner fit``: rows are the analytical model's numbers; max buffer exact to one transition."""

import csv
import json
import os
import struct
import sys
from dataclasses import replace

import pytest
import yaml

from planner.cli import main
from planner.fit import fit, recommendation
from planner.footprint import footprint
from planner.profiles import load_profile
from planner.runspec import RunSpec
from planner.storages import STORAGES


def _png_size(path) -> "tuple[int, int]":
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.parametrize("profile_name, dims", [
    ("jetson-nano", (111, 8)), ("raspberry-pi-zero-2w", (376, 17)), ("crazyflie-2.1", (17, 6)),
    ("esp32-s3-psram", (348, 17)), ("jetson-nano-2gb", (348, 17)),
])
def test_max_buffer_size_is_exact_to_one_transition(profile_name, dims):
    profile = load_profile(profile_name)
    budget = profile.budget().available
    result = fit(profile, *dims)
    assert result.rows
    for row in result.rows:
        def predicted(size: int) -> int:  # recomputed independently of planner.fit
            fp = footprint(replace(row.spec, buffer_size=size))
            return fp.buffer_bytes if profile.buffer_only else fp.total_bytes

        assert row.predicted_bytes == predicted(row.spec.buffer_size)
        assert row.fits == (row.predicted_bytes <= budget)
        n = row.max_buffer_size
        if n > 0:
            assert predicted(n) <= budget < predicted(n + 1), (row.storage, n)
        else:
            assert predicted(1) > budget


def test_headline_case_sac_needs_quantization_on_jetson_nano():
    result = fit(load_profile("jetson-nano"), 111, 8)
    rows = {(r.algo, r.storage.name): r for r in result.rows}
    assert rows[("ppo", "sb3")].fits
    assert not rows[("sac", "sb3")].fits
    assert rows[("sac", "packed")].fits and rows[("sac", "packed")].spec.quant.bits == 15
    assert rows[("ppo", "packed")].spec.quant.bits == 12
    assert rows[("sac", "packed")].max_buffer_size > rows[("sac", "sb3")].max_buffer_size * 6
    text = recommendation(result)
    assert "PPO fits as is" in text and "SAC in SB3 as is, float64 obs needs" in text


def test_microcontroller_counts_the_buffer_alone():
    result = fit(load_profile("crazyflie-2.1"), 17, 6)
    row = result.rows[0]
    assert row.predicted_bytes == row.footprint.buffer_bytes
    assert "no Python runtime" in recommendation(result)


def test_fit_cli_table_json_csv_plot(planner_cli, tmp_path):
    table = planner_cli("fit", "--profile", "jetson-nano", "--env", "Ant-v3")
    assert table.returncode == 0, table.stderr
    assert "available for training" in table.stdout and "max size" in table.stdout and "SAC" in table.stdout
    out = planner_cli("fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--json",
                      "--csv", str(tmp_path / "fit.csv"), "--plot", str(tmp_path / "fit.png"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["profile"]["name"] == "jetson-nano"
    assert data["env"] == {"id": "Ant-v3", "obs_dim": 111, "action_dim": 8, "obs_dtype": "float64",
                           "action_dtype": "float32"}
    assert data["profile"] == load_profile("jetson-nano").as_dict()
    assert data["budget_bytes"] == load_profile("jetson-nano").budget().available
    for row in data["rows"]:
        assert {"algo", "storage", "buffer_size", "predicted_bytes", "fits", "max_buffer_size"} <= set(row)
    with open(tmp_path / "fit.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(data["rows"])
    png = tmp_path / "fit.png"
    assert png.stat().st_size > 10_000
    assert _png_size(png) == (1200, 822)  # 12 in wide; 1.9 in + 0.85 in per panel + 0.42 in per row, at 100 dpi


def test_fit_all_profiles(planner_cli):
    r = planner_cli("fit", "--all-profiles", "--env", "Humanoid-v3", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert len(data["profiles"]) >= 15
    nano = next(p for p in data["profiles"] if p["profile"] == "jetson-nano")
    assert nano["best"]["sac"]["storage"] == "packed"
    assert {p["profile"] for p in data["profiles"] if p["buffer_only"]} == {"crazyflie-2.1", "esp32-s3-psram"}


def test_fit_all_profiles_table_marks_buffer_only_rows(planner_cli):
    r = planner_cli("fit", "--all-profiles", "--env", "Humanoid-v3")
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line[:1].isalpha()}
    assert "(buffer only)" in rows["crazyflie-2.1"] and "(buffer only)" in rows["esp32-s3-psram"]
    assert "(buffer only)" not in rows["jetson-nano"]


def test_fit_overrides_change_the_rows(planner_cli):
    r = planner_cli("fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--json", "--buffer-size", "200_000",
                    "--n-steps", "1024", "--net", "128,128", "-m", "1", "-b", "10")
    assert r.returncode == 0, r.stderr
    rows = {(row["algo"], row["storage"]): row for row in json.loads(r.stdout)["rows"]}
    halves = {(algo, half) for algo in ("ppo", "sac") for half in ("float16", "bfloat16")}
    assert set(rows) == {("ppo", "sb3"), ("ppo", "just-round"), ("ppo", "packed"),
                         ("sac", "sb3"), ("sac", "sb3-optimize"), ("sac", "just-round"), ("sac", "packed")} | halves
    # m = 1, b = 10: 201 levels -> 8 bits, the exact width the packed buffers use (Eq. 6 would say 9)
    assert rows[("sac", "packed")]["bits"] == 8 and rows[("sac", "packed")]["label"] == "packed 8-bit, m=1, b=10"
    for (algo, storage), row in rows.items():
        assert row["buffer_size"] == (1024 if algo == "ppo" else 200_000)
        assert row["decimals"] == (None if STORAGES[storage].quantized == "never" else 1)
        sb3 = footprint(RunSpec(algo, 111, 8, row["buffer_size"], storage="sb3", net=(128, 128)))
        assert row["models_bytes"] == sb3.models_bytes + sb3.optimizer_bytes
    default = footprint(RunSpec("sac", 111, 8, 200_000, storage="sb3"))
    assert rows[("sac", "sb3")]["models_bytes"] != default.models_bytes + default.optimizer_bytes


def test_fit_repeated_algo_counts_once(planner_cli):
    r = planner_cli("fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--algo", "ppo", "--algo", "ppo", "--json")
    assert r.returncode == 0, r.stderr
    storages = [row["storage"] for row in json.loads(r.stdout)["rows"]]
    assert storages == ["sb3", "just-round", "packed", "float16", "bfloat16"]


def test_fit_profile_by_path(planner_cli, tmp_path):
    profile = {"name": "my-robot", "description": "test robot", "class": "sbc", "arch": "aarch64",
               "total_memory": "4GB", "gpu_shares_memory": False, "os_reserve": "500MB", "runtime": "350MB",
               "margin": "100MB", "cpu": "4x A72", "gpu": None, "runs_python": True, "runs_torch": True,
               "source": ["measured by hand"]}
    (tmp_path / "robot.yaml").write_text(yaml.safe_dump(profile))
    r = planner_cli("fit", "--profile", "./robot.yaml", "--env", "Ant-v3", "--json", cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["profile"]["name"] == "my-robot" and data["profile"]["path"] == "robot.yaml"
    assert data["budget_bytes"] == 4_000_000_000 - 950_000_000


def test_fit_outputs_have_normal_permissions(planner_cli, tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    r = planner_cli("fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--csv", str(tmp_path / "fit.csv"),
                    "--plot", str(tmp_path / "fit.png"))
    assert r.returncode == 0, r.stderr
    for name in ("fit.csv", "fit.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.csv", "fit.png"]


def _one_line_error(code: int, out: str, err: str, fragment: str) -> None:
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and fragment in lines[0], err


def test_fit_plot_without_matplotlib_is_refused_up_front(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as after a plain `pip install .`
    code = main(["fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--csv", str(tmp_path / "fit.csv"),
                 "--plot", str(tmp_path / "fit.png")])
    out, err = capsys.readouterr()
    _one_line_error(code, out, err, 'pip install "justround-planner[plot]"')
    assert "--plot needs matplotlib" in err  # the library names the parameter, the CLI its flag
    assert list(tmp_path.iterdir()) == []  # nothing written, not even the CSV


def test_fit_csv_write_failure_leaves_no_partial_file(monkeypatch, capsys, tmp_path):
    target = tmp_path / "fit.csv"
    target.write_text("old\n")

    def fail(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("planner.output.os.replace", fail)
    code = main(["fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--csv", str(target)])
    out, err = capsys.readouterr()
    _one_line_error(code, out, err, f"--csv {target}: cannot write: No space left on device")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.csv"] and target.read_text() == "old\n"


@pytest.mark.parametrize("args, fragment", [
    (["--profile", "nope", "--env", "Ant-v3"], "unknown profile 'nope'"),
    (["--profile", "jetson-nano"], "give --env"),
    (["--profile", "jetson-nano", "--env", "Ant-v9"], "--env 'Ant-v9' cannot be made"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "--plot", "/no/such/dir/x.png"], "does not exist"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "--plot", "chart.jpg"], "expected a .png"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "-m", "-2"], "decimals"),
    (["--env", "Ant-v3"], "one of the arguments --profile --all-profiles is required"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "--buffer-size", "0"], "buffer-size must be a whole number >= 1"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "--n-steps", "0"], "--n-steps must be a whole number >= 1"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "--net", ""], "--net expects hidden sizes"),
    (["--profile", "jetson-nano", "--obs-dim", "0", "--action-dim", "3"], "--obs-dim must be a whole number >= 1"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "--obs-dim", "5"], "--env Ant-v3 gives the dimensions"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "--algo", "ppo", "--buffer-size", "5000"],
     "--buffer-size is the replay capacity of off-policy algorithms; ppo takes n_steps"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "--algo", "sac", "--n-steps", "512"],
     "--n-steps is the rollout length of on-policy algorithms"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "--buffer-size", "1e300"], "no larger than 2^53"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "--buffer-size", "inf"], "no larger than 2^53"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "-m", "2", "-b", "1e-9"], "smaller than one quantization step"),
    (["--all-profiles", "--env", "Ant-v3", "--csv", "fit.csv"], "--csv and --plot take a single --profile"),
    (["--all-profiles", "--env", "Ant-v3", "--plot", "fit.png"], "--csv and --plot take a single --profile"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "--csv", "."], "is a folder, expected a file name"),
    (["--profile", ".", "--env", "Ant-v3"], "profile . is a folder"),
])
def test_fit_bad_input(planner_cli, args, fragment, tmp_path):
    r = planner_cli("fit", *args, cwd=str(tmp_path))
    assert r.returncode == 2, r.stdout
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and fragment in lines[0]
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def _figure_texts(fig) -> "list[str]":
    return [text.get_text() for text in fig.findobj(lambda artist: hasattr(artist, "get_text"))]


def test_fit_plot_names_env_and_device_uses_the_table_labels_and_marks_the_largest_size():
    import textwrap

    from planner.plot import LABEL_WIDTH, fit_figure, short_count

    result = fit(load_profile("jetson-nano"), 111, 8, env_id="Ant-v3")
    fig = fit_figure(result)
    assert "Ant-v3" in fig._suptitle.get_text() and "jetson-nano" in fig._suptitle.get_text()
    texts = _figure_texts(fig)
    for axes, rows in zip(fig.axes, result.by_algo().values(), strict=True):
        assert [t.get_text() for t in axes.get_yticklabels()] == [textwrap.fill(r.label, LABEL_WIDTH) for r in rows]
        header, *notes = [a.get_text() for a in axes.texts]
        assert header.split()[-3:] == ["fits", "up", "to"]
        assert [note.split()[-1] for note in notes] == [short_count(row.max_buffer_size) for row in rows]
    assert not any("packed-exact" in text or text == "sb3" for text in texts)  # no internal names


def test_fit_plot_and_rows_of_a_microcontroller_speak_of_the_buffer_only():
    from planner.plot import fit_figure

    result = fit(load_profile("esp32-s3-psram"), 11, 3, env_id="Hopper-v5")
    for row in result.rows:
        assert "SB3" not in row.label and row.as_dict()["models_bytes"] is None
    assert "SB3" not in recommendation(result)
    fig = fit_figure(result)
    assert "buffer only" in fig._suptitle.get_text()
    legends = [t.get_text() for legend in fig.legends for t in legend.get_texts()]
    assert "buffer only (no Python runtime)" in legends and "models + optimizer" not in legends
    assert all(len(axes.containers) == 1 for axes in fig.axes)  # the buffer's bars alone


def test_all_profiles_names_buffer_layouts_for_microcontrollers(planner_cli):
    r = planner_cli("fit", "--all-profiles", "--env", "Hopper-v5")
    assert r.returncode == 0, r.stderr
    esp = next(line for line in r.stdout.splitlines() if line.startswith("esp32-s3-psram"))
    assert "SB3" not in esp and "float64 obs, unpacked" in esp  # PPO's buffer fits as SB3 lays it out
