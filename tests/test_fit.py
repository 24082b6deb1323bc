"""``planner fit``: rows are the analytical model's numbers; max buffer exact to one transition."""

import csv
import json
import struct
from dataclasses import replace

import pytest

from planner.fit import fit, recommendation
from planner.footprint import footprint
from planner.profiles import load_profile


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
    rows = {(r.algo, r.storage): r for r in result.rows}
    assert rows[("ppo", "sb3")].fits
    assert not rows[("sac", "sb3")].fits
    assert rows[("sac", "packed")].fits and rows[("sac", "packed")].option.quant.bits == 15
    assert rows[("ppo", "packed")].option.quant.bits == 12
    assert rows[("sac", "packed")].max_buffer_size > rows[("sac", "sb3")].max_buffer_size * 6
    text = recommendation(result)
    assert "PPO fits as is" in text and "SAC with SB3's storage" in text


def test_microcontroller_counts_the_buffer_alone():
    result = fit(load_profile("crazyflie-2.1"), 17, 6)
    row = result.rows[0]
    assert row.predicted_bytes == row.footprint.buffer_bytes
    assert "no Python runtime" in recommendation(result)


def test_fit_cli_table_json_csv_plot(planner_cli, tmp_path):
    table = planner_cli("fit", "--profile", "jetson-nano", "--env", "Ant-v3")
    assert table.returncode == 0, table.stderr
    assert "available for training" in table.stdout and "max buffer" in table.stdout and "SAC" in table.stdout
    out = planner_cli("fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--json",
                      "--csv", str(tmp_path / "fit.csv"), "--plot", str(tmp_path / "fit.png"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["profile"]["name"] == "jetson-nano"
    assert data["env"] == {"id": "Ant-v3", "obs_dim": 111, "action_dim": 8}
    assert data["budget_bytes"] == load_profile("jetson-nano").budget().available
    for row in data["rows"]:
        assert {"algo", "storage", "buffer_size", "predicted_bytes", "fits", "max_buffer_size"} <= set(row)
    with open(tmp_path / "fit.csv") as handle:
        assert len(list(csv.DictReader(handle))) == len(data["rows"])
    png = tmp_path / "fit.png"
    assert png.stat().st_size > 10_000
    assert _png_size(png) == (1100, 480)


def test_fit_all_profiles(planner_cli):
    r = planner_cli("fit", "--all-profiles", "--env", "Humanoid-v3", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert len(data["profiles"]) >= 15
    nano = next(p for p in data["profiles"] if p["profile"] == "jetson-nano")
    assert nano["best"]["sac"]["storage"] == "packed"


@pytest.mark.parametrize("args, fragment", [
    (["--profile", "nope", "--env", "Ant-v3"], "unknown profile 'nope'"),
    (["--profile", "jetson-nano"], "give --env"),
    (["--profile", "jetson-nano", "--env", "Ant-v9"], "unknown env"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "--plot", "/no/such/dir/x.png"], "does not exist"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "--plot", "chart.jpg"], "expected a .png"),
    (["--profile", "jetson-nano", "--env", "Ant-v3", "-m", "-2"], "decimals"),
    (["--env", "Ant-v3"], "one of the arguments --profile --all-profiles is required"),
])
def test_fit_bad_input(planner_cli, args, fragment):
    r = planner_cli("fit", *args)
    assert r.returncode == 2, r.stdout
    assert len(r.stderr.strip().splitlines()) == 1 and fragment in r.stderr
