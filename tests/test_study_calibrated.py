"""``planner study``'s calibrated storage: the quantized buffers with ``obs_ranges=`` the ObservationRanges of each
trial's warm-up steps, the widths chosen again from the rows as they fill (the buffers' default).

Needs the buffers' ``obs_ranges`` keyword (issue 14, on main since ebeb3ec). It is not skipped where the keyword
is missing: it fails (the trials end "failed" with the TypeError), on purpose."""

import json
import subprocess
import tempfile

import yaml
from conftest import PLANNER

from validation.study.results import records
from validation.study.spec import SHIPPED


def test_calibrated_trials_train_with_a_spec_from_their_warmup(tmp_path):
    data = yaml.safe_load((SHIPPED / "smoke.yaml").read_text())
    for group in data["groups"]:
        group.update(storages=["sb3", "calibrated"], seeds=1)
    spec = tmp_path / "calibrated.yaml"
    spec.write_text(yaml.safe_dump(data))
    r = subprocess.run([str(PLANNER), "study", str(spec), "--out", str(tmp_path / "out"), "--workers", "2"],
                       capture_output=True, text=True, timeout=600, cwd=tempfile.gettempdir())
    ends = {p.stem: records(p)[-1] for p in (tmp_path / "out" / "trials").glob("*.jsonl")}
    assert r.returncode == 0, (r.stderr[-2000:], ends)
    for algo in ("ppo", "sac"):
        baseline = ends[f"Hopper-v5_{algo}_sb3_seed0_256steps"]
        assert baseline["calibration"] is None
        end = ends[f"Hopper-v5_{algo}_calibrated_seed0_256steps"]
        assert end["status"] == "done" and end["saturation"] is not None
        assert 0 < end["buffer_bytes"] < baseline["buffer_bytes"]
        column = end["calibration"]["observation"]
        assert column["recalibrate"] is True and column["bits_per_value"] < 15
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert all("calibrated" in cell["storages"] for cell in summary["cells"])
