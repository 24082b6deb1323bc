"""The calibrated storage in the planner: ``estimate``/``fit`` with ``--obs-ranges`` (or ``--scan``)."""

import json
import math

import numpy as np
import pytest
import yaml

from planner.fit import fit
from planner.footprint import footprint
from planner.obs_ranges import choose_ranges
from planner.profiles import load_profile
from planner.quantization import Quantization
from planner.runspec import RunSpec


def _spec(dim: int, decimals: int = 2, env: str = "test"):
    rng = np.random.default_rng(dim)
    x = rng.normal(0, 1, (4000, dim)) * rng.uniform(0.01, 5, dim)
    x[:, 0] = 0.25  # a constant dimension: 1 bit
    x[rng.random(4000) < 0.002, dim - 1] = 90.0  # rare outliers: exceptions
    return choose_ranges(x, decimals, source={"env": env})


def _write(spec, path) -> str:
    path.write_text(yaml.safe_dump(spec.as_dict(), sort_keys=False))
    return str(path)


def test_the_calibrated_fields_are_the_rows_at_bit_stride_their_blocks_and_the_expected_entries():
    obs_ranges = _spec(17)
    spec = RunSpec("sac", 17, 6, buffer_size=10_000, storage="calibrated", quant=Quantization.create(2),
                   obs_ranges=obs_ranges)
    fields = {f.name: f for f in footprint(spec).fields}
    assert obs_ranges.row_bits_of(0) == 1 and obs_ranges.exceptions_per_row > 0
    words = -(-10_000 * obs_ranges.row_bits // 64) + 1  # the rows at bit stride and the spare word
    assert fields["observations"].bytes + fields["observations.tail"].bytes == 8 * words
    assert fields["observations.blocks"].bytes == 8 * math.ceil(10_000 / 64)  # start, length and room per block
    entries = 10_000 * obs_ranges.exceptions_per_row
    assert fields["observations.exceptions"].bytes == 4 * (math.ceil(entries * 1.125) + math.ceil(10_000 / 64))
    capacity = fields["terminal_observations"].rows
    assert fields["terminal_observations.exceptions"].rows == obs_ranges.exception_capacity(capacity)
    packed = footprint(RunSpec("sac", 17, 6, buffer_size=10_000, storage="packed", quant=Quantization.create(2)))
    assert footprint(spec).observation_bytes < packed.observation_bytes


def test_fit_shows_a_calibrated_row_only_with_a_spec_and_at_the_spec_m():
    profile = load_profile("jetson-nano")
    plain = fit(profile, 17, 6, env_id="Walker2d-v5")
    assert "calibrated" not in {row.storage.name for row in plain.rows}
    result = fit(profile, 17, 6, env_id="Walker2d-v5", scans=(_spec(17),))
    rows = {(row.algo, row.storage.name): row for row in result.rows}
    calibrated = rows["sac", "calibrated"]
    assert calibrated.spec.quant.decimals == 2 and "m=2" in calibrated.label
    assert calibrated.max_buffer_size > rows["sac", "packed"].max_buffer_size
    assert rows["ppo", "calibrated"].spec.quant.decimals == 2  # the only spec given: its own m, said in the label
    both = fit(profile, 17, 6, scans=(_spec(17, 1), _spec(17, 2)))
    assert {row.algo: row.spec.obs_ranges.decimals for row in both.rows if row.storage.name == "calibrated"} == \
        {"ppo": 1, "sac": 2}


def test_estimate_and_fit_read_a_spec_file(planner_cli, tmp_path):
    path = _write(_spec(17, env="Walker2d-v5"), tmp_path / "w.yaml")
    result = planner_cli("estimate", "--algo", "sac", "--env", "Walker2d-v5", "--storage", "packed", "--obs-ranges",
                         path, "--buffer-size", "1000", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["spec"]["storage"] == "calibrated" and data["spec"]["obs_ranges"]["source"]["env"] == "Walker2d-v5"
    names = [f["name"] for f in data["fields"]]
    assert {"observations", "observations.blocks", "observations.exceptions"} <= set(names)
    table = planner_cli("fit", "--profile", "raspberry-pi-4-2gb", "--env", "Walker2d-v5", "--obs-ranges", path)
    assert table.returncode == 0, table.stderr
    assert "calibrated" in table.stdout and "side table is sized at the ranges' expected" in table.stdout


@pytest.mark.parametrize("args, message", [
    (("estimate", "--algo", "sac", "--env", "Hopper-v5", "--storage", "packed"), "the observation ranges have 17 dims"),
    (("estimate", "--algo", "sac", "--env", "Walker2d-v5", "--storage", "sb3"), "not --storage sb3"),
    (("fit", "--profile", "jetson-nano", "--env", "Humanoid-v5"), "the observation ranges have 17 dims"),
])
def test_a_mismatched_spec_is_one_line_and_exit_2(planner_cli, tmp_path, args, message):
    path = _write(_spec(17, env="Walker2d-v5"), tmp_path / "w.yaml")
    result = planner_cli(*args, "--obs-ranges", path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_malformed_spec_or_calibrate_without_an_env_is_one_line(planner_cli, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\ndecimals: 2\nclamp: 127\ndims: []\n")
    result = planner_cli("fit", "--profile", "jetson-nano", "--env", "Walker2d-v5", "--obs-ranges", str(bad))
    assert result.returncode == 2 and "dims must be a non-empty list" in result.stderr
    result = planner_cli("fit", "--profile", "jetson-nano", "--obs-dim", "17", "--action-dim", "6", "--scan")
    assert result.returncode == 2 and "--scan scans --env" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_calibrate_scans_the_env_and_adds_the_row(planner_cli):
    result = planner_cli("fit", "--profile", "jetson-nano", "--env", "Hopper-v5", "--algo", "sac", "--scan",
                         "--json", timeout=300)
    assert result.returncode == 0, result.stderr
    rows = {row["storage"]: row for row in json.loads(result.stdout)["rows"]}
    assert rows["calibrated"]["buffer_bytes"] < rows["packed"]["buffer_bytes"]
