"""``planner validate``: real SB3 training in child processes, measured and held against the planner."""

import csv
import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

import validation.harness.compare
import validation.harness.validate
from cython_core.layout import words_for
from planner.errors import PlannerError
from planner.profiles import load_profile, parse_profile
from validation.harness.compare import RSS_NOISE, Check, checks
from validation.harness.predict import MMAP_THRESHOLD, Runtime, predict
from validation.harness.runconfig import RunConfig
from validation.harness.validate import Validation, configs, device_differences, summary, validate

REPORT_KEYS = {"status", "started", "machine", "versions", "profile", "runs", "checks", "calibration", "plots"}


def _validate(planner_cli, out: Path, *args: str) -> "tuple[subprocess.CompletedProcess, dict]":
    r = planner_cli("validate", *args, "--memray", "--out", str(out), timeout=600)
    report = json.loads((out / "report.json").read_text())
    assert REPORT_KEYS <= set(report), set(report)
    assert {"platform", "arch", "cpu_count", "total_memory_bytes"} <= set(report["machine"])
    assert report["versions"]["stable-baselines3"] and report["versions"]["memray"]
    failed = [c for c in report["checks"] if c["verdict"] == "FAIL"]
    assert report["status"] == ("complete-with-failures" if failed else "complete"), report["status"]
    assert r.returncode == (1 if failed else 0), r.stdout + r.stderr
    for check in failed:  # the summary names each failed check
        assert f"FAILED {check['run']}: {check['quantity']}" in r.stdout
    assert "verdict" in r.stdout and "MB" in r.stdout
    return r, report


def _buffer_bytes_agree(report: dict) -> None:
    """The buffer's memory_bytes(), its committed pages once full and memray's allocations at its arrays
    are the planner's prediction to the byte; the constructor allocated little else."""
    for name, run in report["runs"].items():
        predicted = run["prediction"]["footprint"]["buffer_bytes"]
        measured = run["measured"]
        assert measured["buffer_bytes"] == predicted, name
        assert measured["buffer_resident_full"] == predicted, name
        assert measured["memray"]["buffer_arrays"] == predicted, (name, measured["memray"])
        assert 0 <= measured["memray"]["buffer"] - predicted <= 64 * 1024, (name, measured["memray"])
        assert [m["name"] for m in run["marks"]][-1] == "end"
        assert measured["timing"]["training_ms_per_step"] > 0
        verdicts = {c["quantity"]: c["verdict"] for c in report["checks"] if c["run"] == name}
        assert verdicts["buffer bytes: planner vs the buffer's own memory_bytes()"] == "pass"
        assert verdicts["buffer bytes: planner vs memray, the allocations at the buffer's arrays"] == "pass"


def test_ppo_validation_end_to_end(planner_cli, tmp_path):
    out = tmp_path / "report"
    r, report = _validate(planner_cli, out, "--env", "Hopper-v5", "--algo", "ppo", "--steps", "4096",
                          "--n-steps", "2048")
    assert set(report["runs"]) == {"ppo-sb3", "ppo-packed"}
    _buffer_bytes_agree(report)
    for run in report["runs"].values():
        assert {m["name"] for m in run["marks"]} >= {"start", "imports", "env_made", "model_built", "buffer_full",
                                                      "training_starts", "end"}
    buffers = {n: run["measured"]["buffer_bytes"] for n, run in report["runs"].items()}
    assert buffers["ppo-packed"] < buffers["ppo-sb3"]  # 12-bit packed observations
    assert "buffer memory a transition, sb3 / packed (measured)" in r.stdout
    with open(out / "timeseries.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["run"] for row in rows} == {"ppo-sb3", "ppo-packed"}
    assert all(int(row["rss_bytes"]) > 0 for row in rows)
    assert [Path(p).name for p in report["plots"]] == ["memory.png", "returns.png"]
    for plot in report["plots"]:
        assert Path(plot).stat().st_size > 10_000


def test_the_calibrated_storage_validates_on_ranges_it_scans(planner_cli, tmp_path):
    out = tmp_path / "report"
    r, report = _validate(planner_cli, out, "--env", "Hopper-v5", "--algo", "ppo", "--steps", "2048",
                          "--storage", "calibrated")
    assert set(report["runs"]) == {"ppo-calibrated"} and report["status"] == "complete"
    assert "scanning Hopper-v5 for its observation ranges" in r.stderr
    run = report["runs"]["ppo-calibrated"]
    predicted, measured = run["prediction"]["footprint"]["buffer_bytes"], run["measured"]
    assert measured["buffer_bytes"] == measured["buffer_resident_built"] == predicted  # rows, index and entries
    assert measured["memray"]["buffer_arrays"] == predicted
    assert all(c["verdict"] == "pass" for c in report["checks"] if c["quantity"].startswith("buffer bytes"))
    ranges = report["runs"]["ppo-calibrated"]["config"]["obs_ranges"]
    assert ranges["decimals"] == 1 and len(ranges["dims"]) == 11  # the paper's PPO m; Hopper's 11 dims


def test_sac_fill_validation_measures_the_buffer_filling(planner_cli, tmp_path):
    _, report = _validate(planner_cli, tmp_path / "report", "--env", "Hopper-v5", "--algo", "sac", "--steps", "50",
                          "--buffer-size", "12000", "--fill")
    _buffer_bytes_agree(report)
    for name, run in report["runs"].items():
        marks = [m["name"] for m in run["marks"]]
        assert marks.index("buffer_10pct") < marks.index("buffer_full") < marks.index("training_starts")
        assert run["measured"]["steps_done"] == 12000 + 50
        growth = next(c for c in report["checks"] if c["run"] == name and c["quantity"].startswith("RSS growth"))
        assert growth["measured"] is not None
        if name == "sac-sb3":  # 1.9 MB of committed pages: judged
            assert growth["predicted"] > 4 * RSS_NOISE and growth["verdict"] != "n/a" and not growth["reason"]
        else:  # packed: 0.6 MB in all, under the noise floor: not judged, and says why
            assert growth["verdict"] == "n/a" and "too small to judge" in growth["reason"]


def test_a_pool_fills_the_buffer_through_add_before_learning(tmp_path):
    # the boundary experiment's fill: 300 real transitions recorded once, written in a loop until 12,000 rows are full,
    # each through the buffer's own add(); the steps count the rows, then learn()'s own
    base = RunConfig("Hopper-v5", "sac", "sb3", steps=50, buffer_size=12_000, decimals=2, fill=True, fill_pool=300)
    report, _ = validate(Validation(configs(base, ("sb3", "packed")), tmp_path / "report"))
    assert report["status"] == "complete", report["reason"]
    for name, run in report["runs"].items():
        measured, marks = run["measured"], {m["name"]: m for m in run["marks"]}
        assert measured["buffer_resident_full"] == run["prediction"]["footprint"]["buffer_bytes"], name
        assert (marks["buffer_10pct"]["step"], marks["buffer_full"]["step"]) == (1_200, 12_000)
        assert marks["training_starts"]["step"] == 12_001 and measured["steps_done"] == 12_000 + 50
        assert measured["timing"]["fill_us_per_row"] > 0 and measured["optimizer_bytes"] > 0  # it trained
    growth = next(c for c in report["checks"] if c["run"] == "sac-sb3" and c["quantity"].startswith("RSS growth"))
    assert growth["verdict"] == "pass", growth


@pytest.mark.parametrize("fill, pool, fragment", [(False, 300, "only with fill"), (True, -1, "at least 0")])
def test_a_pool_without_fill_or_below_zero_is_refused(fill, pool, fragment):
    config = RunConfig("Hopper-v5", "sac", "sb3", steps=10, buffer_size=1000, decimals=2, fill=fill, fill_pool=pool)
    with pytest.raises(PlannerError, match=fragment) as error:
        config.check_trainable()
    assert "fill_pool" in error.value.params


def test_admission_refuses_a_run_over_budget(planner_cli, tmp_path):
    r = planner_cli("validate", "--env", "Humanoid-v5", "--algo", "sac", "--steps", "100", "--buffer-size", "1e6",
                    "--profile", "raspberry-pi-zero-2w", "--out", str(tmp_path / "x"))
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1
    assert "the largest --buffer-size that fits is" in r.stderr and "--force to run anyway" in r.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--env", "Nope-v1", "--algo", "sac", "--steps", "10"], "--env 'Nope-v1' cannot be made"),
    (["--env", "Hopper-v5", "--algo", "sac", "--steps", "10", "--sample-ms", "0"], "--sample-ms"),
    (["--env", "Hopper-v5", "--algo", "sac", "--steps", "10", "-m", "-1"], "decimals"),
    (["--env", "Hopper-v5", "--algo", "dqn", "--steps", "10"], "--algo dqn takes Discrete actions, got Box(3)"),
    (["--env", "Hopper-v5", "--algo", "nope", "--steps", "10"], "invalid choice"),
    (["--env", "Hopper-v5", "--algo", "sac", "--steps", "0"], "--steps must be at least 1"),
    (["--env", "Hopper-v5", "--algo", "sac", "--steps", "10", "--buffer-size", "0"], "buffer-size"),
    (["--env", "Hopper-v5", "--algo", "ppo", "--steps", "10", "--n-steps", "inf"], "--n-steps"),
    (["--env", "Hopper-v5", "--algo", "ppo", "--steps", "10", "--buffer-size", "100"], "ppo takes n_steps"),
    (["--env", "Hopper-v5", "--algo", "sac", "--steps", "10", "--profile", "no-such-device"], "no-such-device"),
])
def test_validate_bad_input(planner_cli, args, fragment):
    r = planner_cli("validate", *args)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and fragment in r.stderr


def test_device_differences_name_arch_and_memory():
    data = {"name": "far", "description": "d", "class": "sbc", "arch": "xtensa", "total_memory": "1MB",
            "gpu_shares_memory": False, "os_reserve": 0, "runtime": 0, "margin": 0, "cpu": "c",
            "runs_python": False, "runs_torch": False, "source": ["s"]}
    notes = device_differences(parse_profile(data))
    assert any(n.startswith("architecture") for n in notes) and any(n.startswith("total memory") for n in notes)


def test_calibrate_writes_a_profile_that_loads(planner_cli, tmp_path):
    out = tmp_path / "this-machine.yaml"
    r = planner_cli("profiles", "calibrate", "--out", str(out), timeout=600)
    assert r.returncode == 0, r.stderr
    profile = load_profile(str(out))
    assert 100e6 < profile.runtime < 2e9  # Python + torch + SB3 + MuJoCo: hundreds of MB
    assert profile.budget().available > 0
    assert not list(Path(tmp_path).glob(".*partial*"))
    fit = planner_cli("fit", "--profile", str(out), "--env", "Ant-v3")
    assert fit.returncode == 0, fit.stderr
    written = yaml.safe_load(out.read_text())
    for key in ("total_memory", "os_reserve", "runtime", "margin"):  # sizes with units, as profiles must have
        assert re.fullmatch(r"[0-9]+\.[0-9]{3}MB", written[key]), (key, written[key])


def test_the_progress_bar_stays_short_when_a_rollout_runs_past_the_steps(tmp_path, capfd):
    # PPO collects whole rollouts: 1 step asked, 2,048 run. The bar is tqdm's, drawn by the parent from the
    # child's samples (the measured process draws nothing), and does not grow with steps done / steps asked.
    from validation.harness.runner import run_child

    run = run_child(RunConfig("Hopper-v5", "ppo", "sb3", steps=1, buffer_size=2048, decimals=1), tmp_path)
    assert run["status"] == "complete" and run["measured"]["steps_done"] == 2048
    err = capfd.readouterr().err
    assert "ppo-sb3" in err and "2048step" in err  # past its total, tqdm counts on without a bar
    assert len(err) < 2000, err[:300]



def test_predicted_curve_steps_through_built_acting_and_training():
    config = RunConfig("Walker2d-v5", "sac", "packed", steps=100, buffer_size=50_000, decimals=2, fill=True)
    p = predict(config, Runtime(built_bytes=300_000_000, acting_bytes=305_000_000, training_bytes=320_000_000))
    fp = p.footprint
    assert p.phase_at(0) == p.phase_at(50_000) == "built"  # SAC acts at random until learning_starts
    assert p.phase_at(50_001) == "training" and config.first_update_step == 50_001
    # committed row by row: the observations' stream (its tail included: one array), actions, rewards, dones, timeouts
    lazy = words_for(50_000, 17 * 15) * 8 + 50_000 * 6 * 4 + 3 * 50_000 * 4
    assert p.lazy_bytes == lazy
    eager = fp.buffer_bytes - lazy
    assert p.rss_at(0) == 300_000_000 + fp.models_bytes + eager
    half = p.rss_at(25_000) - p.rss_at(0)
    assert half == (fp.buffer_bytes - eager) // 2  # lazily committed pages grow with the rows written
    assert p.rss_at(50_000, "acting") == 305_000_000 + fp.models_bytes + fp.buffer_bytes
    assert p.rss_at(50_001) == p.peak_bytes == 320_000_000 + fp.total_bytes
    ppo = predict(RunConfig("Hopper-v5", "ppo", "sb3", steps=4096, buffer_size=2048, decimals=1), Runtime(1, 2, 3))
    assert [ppo.phase_at(s) for s in (0, 1, 2047, 2048)] == ["built", "acting", "acting", "training"]


@pytest.mark.parametrize("predicted, measured, tolerance, allowance, verdict", [
    (1000, 1000, 0, 0, "pass"), (1000, 1001, 0, 0, "FAIL"),
    (1000, 1010, 0.01, 0, "pass"), (1000, 1011, 0.01, 0, "FAIL"), (1000, 989, 0.01, 0, "FAIL"),
    (1000, 1500, 0.01, 500, "pass"), (1000, 1501, 0.01, 500, "FAIL"), (1000, None, 0.01, 0, "n/a"),
    (0, 4096, 0.01, 8192, "pass"), (0, 4096, 0.01, 0, "FAIL"),
])
def test_check_verdicts(predicted, measured, tolerance, allowance, verdict):
    assert Check("run", "q", predicted, measured, tolerance, allowance=allowance).verdict == verdict


def test_a_short_run_says_which_checks_do_not_apply_and_a_plot_failure_cannot_leave_it_running(tmp_path, monkeypatch):
    # SAC's first update comes after step 101: in 50 steps none runs, so nothing is there to compare the
    # optimizer state, the pre-update RSS or the training peak with. The RSS-once-built check, its calibrated
    # runtime put 1 GB off here, fails; the status says so even though the plotting then fails. (Held to an exact
    # tolerance instead, it passed in one CI run: the probe's built RSS and the run's can agree to the page.)
    monkeypatch.chdir(tmp_path)
    runtime_of = validation.harness.validate.runtime_of
    monkeypatch.setattr(validation.harness.validate, "runtime_of", lambda probe, run: replace(
        runtime_of(probe, run), built_bytes=runtime_of(probe, run).built_bytes + 10**9))

    def broken_plot(*args, **kwargs):
        raise RuntimeError("no room on the canvas")

    monkeypatch.setattr(validation.harness.validate, "plot_memory", broken_plot)
    out = tmp_path / "report"
    base = RunConfig("Hopper-v5", "sac", "sb3", steps=50, buffer_size=1000, decimals=2)
    report, all_checks = validate(Validation(configs(base, ("sb3",)), out))
    assert report["status"] == "complete-with-failures" and report["reason"] == "1 check failed"
    assert report["plot_error"] == "RuntimeError: no room on the canvas" and report["plots"] == []
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report, default=str))
    verdicts = {c.quantity: c for c in all_checks}
    no_update = "no gradient update ran (50 steps done; the first update comes after step 101)"
    for quantity in ("models + optimizer state: planner vs torch tensors",
                     "whole-process peak RSS: calibrated runtime + planner vs psutil",
                     "RSS just before the first update: calibrated acting runtime + planner vs psutil"):
        assert verdicts[quantity].verdict == "n/a" and verdicts[quantity].reason == no_update, quantity
    models = verdicts["models + optimizer state: planner vs torch tensors"]
    assert models.measured < 0.99 * models.predicted  # no optimizer state yet: this used to FAIL
    failed = verdicts["RSS once the model is built: calibrated built runtime + planner vs psutil"]
    assert failed.verdict == "FAIL"
    text = summary(report, all_checks)
    assert f"FAILED sac-sb3: {failed.quantity}: predicted" in text
    assert f"n/a sac-sb3: models + optimizer state: planner vs torch tensors: {no_update}" in text
    assert text.splitlines()[-2].startswith("status: complete-with-failures (1 check failed)")
    assert text.splitlines()[-1] == "plotting failed: RuntimeError: no room on the canvas"


def test_rss_growth_of_a_small_buffer_is_not_judged_and_says_why():
    # the finding: Hopper SAC, 5,000 rows, fill, on a loaded machine: +16.9 % on 0.79 MB, failed. The figures
    # below are that run's (sb3: the process grew 131,680 B beyond the buffer's own pages)
    config = RunConfig("Hopper-v5", "sac", "sb3", steps=1000, buffer_size=5000, decimals=2, fill=True)
    prediction = predict(config, Runtime(346_500_000, 351_500_000, 362_100_000))
    run = {"marks": [{"name": "buffer_10pct", "step": 500, "rss_bytes": 400_000_000},
                     {"name": "buffer_full", "step": 5000, "rss_bytes": 400_921_600}],
           "measured": {"buffer_resident_10pct": 88_000, "buffer_resident_full": 877_920}}
    growth = next(c for c in checks(prediction, run) if c.quantity.startswith("RSS growth"))
    assert growth.predicted == 792_000 < 4 * RSS_NOISE and growth.measured == 921_600
    assert growth.verdict == "n/a" and "under 4x the RSS noise this check allows (256 KiB)" in growth.reason
    assert "131,680 B beyond the buffer's own pages" in growth.note
    big = predict(replace(config, buffer_size=50_000), prediction.runtime)  # 7.9 MB: judged, with the noise allowed
    run["marks"][1].update(step=50_000, rss_bytes=400_000_000 + big.buffer_committed(50_000)
                           - big.buffer_committed(500) + 200_000)
    growth = next(c for c in checks(big, run) if c.quantity.startswith("RSS growth"))
    floor = RSS_NOISE + big.heap_bytes  # the noise allowed is more than 1 % of 7.9 MB: the tolerance is the floor
    assert growth.verdict == "pass" and growth.reason == ""
    assert growth.tolerance_text == f"±{100 * floor / growth.predicted:.3g}% ({floor / 1024:,.0f} KiB)"
    run["marks"][1]["rss_bytes"] += RSS_NOISE
    assert next(c for c in checks(big, run) if c.quantity.startswith("RSS growth")).verdict == "FAIL"


def test_rss_growth_leaves_out_code_pages_and_says_so():
    # the finding: DQN on CartPole-v1, 50,000 rows, fill: the RSS grew 4.16 MB from 10 % to full against 2.34 MB of
    # buffer pages (+78 %, in both storages). 1.79 MB of it was libtorch_cpu.so's code, paged in by DQN's first
    # target-network update at step 10,000 (every 10,000 steps, fill or not): file-backed, not the buffer's.
    config = RunConfig("CartPole-v1", "dqn", "sb3", steps=1000, buffer_size=50_000, decimals=2, fill=True)
    prediction = predict(config, Runtime(354_000_000, 360_000_000, 367_300_000))
    run = {"marks": [  # that run's marks
        {"name": "model_built", "step": 0, "rss_bytes": 354_533_376, "file_bytes": 121_016_320},
        {"name": "buffer_10pct", "step": 5000, "rss_bytes": 355_557_376, "file_bytes": 121_749_504},
        {"name": "buffer_full", "step": 50_000, "rss_bytes": 359_723_008, "file_bytes": 123_539_456}],
        "measured": {"buffer_resident_10pct": 260_000, "buffer_resident_full": 2_600_000}}
    growth = next(c for c in checks(prediction, run) if c.quantity.startswith("RSS growth"))
    assert growth.predicted == 2_340_000 and growth.measured == 4_165_632 - 1_789_952
    assert growth.verdict == "pass" and growth.quantity.endswith("anonymous pages")
    assert "grew 2.523 MB from the built model to the full buffer" in growth.caveat  # what the plot shows, said
    assert "(1.790 MB of it from 10 % to full)" in growth.caveat
    report = {"runs": {}, "status": "complete", "reason": ""}
    assert f"note {growth.caveat}" in summary(report, [growth]).splitlines()
    for mark in run["marks"]:  # a run measured before the marks had file_bytes: the whole RSS, as then
        del mark["file_bytes"]
    old = next(c for c in checks(prediction, run) if c.quantity.startswith("RSS growth"))
    assert old.measured == 4_165_632 and old.verdict == "FAIL" and not old.caveat


def test_rss_growth_takes_large_arrays_glibc_placed_in_its_heap_as_committed_when_built():
    # the finding: Walker2d-v5 SAC packed, 50,000 rows, fill, anonymous growth 2.707 MB against 3.060 MB predicted
    # (-11.5 %, FAIL). Its rewards and dones (200,000 B each) were resident when built: glibc had served them from a
    # free chunk of its heap (the mmap threshold applies only where no free chunk fits), which calloc clears.
    config = RunConfig("Walker2d-v5", "sac", "packed", steps=5000, buffer_size=50_000, decimals=2, fill=True)
    prediction = predict(config, Runtime(381_765_000, 387_333_000, 396_765_000))
    run = {"marks": [  # that run's marks
        {"name": "model_built", "step": 0, "rss_bytes": 385_269_760, "file_bytes": 139_661_312},
        {"name": "buffer_10pct", "step": 5000, "rss_bytes": 386_363_392, "file_bytes": 140_296_192},
        {"name": "buffer_full", "step": 50_000, "rss_bytes": 389_070_848, "file_bytes": 140_296_192}],
        "measured": {"buffer_resident_10pct": 938_432, "buffer_resident_full": 3_631_280,
                     "buffer_heap_placed": {"rewards": 200_000, "dones": 200_000, "terminal_slot": 200_000}}}
    growth = next(c for c in checks(prediction, run) if c.quantity.startswith("RSS growth"))
    # observations (50,000 rows of 17 x 15 bits at bit stride and the stream's tail: one array; the run had them
    # word-padded, 6,240 B more), actions, rewards, dones, timeouts
    assert prediction.lazy_bytes == words_for(50_000, 255) * 8 + 1_800_000 == 3_393_760
    # from 10 % to full, less the 400,000 B glibc placed in its heap (terminal_slot is eager: committed anyway)
    assert growth.predicted == 9 * (3_393_760 - 400_000) // 10
    assert growth.measured == 2_707_456 and growth.verdict == "pass" and growth.allowance == RSS_NOISE
    assert "glibc placed 400,000 B of the buffer's large arrays in free chunks of its heap" in growth.caveat
    run["measured"]["buffer_heap_placed"] = {}
    assert next(c for c in checks(prediction, run) if c.quantity.startswith("RSS growth")).verdict == "FAIL"


def test_heap_placed_finds_the_arrays_in_glibcs_heap():
    # as the harness runs its child: a fresh process with glibc's mmap threshold pinned (in a long-lived process
    # glibc raises the threshold after large frees, and a 16 MB array may land in the heap, the case it detects)
    import os
    import sys

    script = (
        "import json, numpy as np\n"
        "from validation.harness.measure import heap_placed\n"
        "class Holder: pass\n"
        "holder = Holder()\n"
        "holder.small, holder.large = np.zeros(1000), np.zeros(2_000_000)\n"
        f"print(json.dumps([heap_placed(holder, {MMAP_THRESHOLD}), heap_placed(holder, 1)]))\n")
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(MMAP_THRESHOLD)}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True,
                          cwd=Path(__file__).resolve().parents[1])
    # the large one is a mapping of its own; the small one is malloc'd in the heap
    assert json.loads(done.stdout) == [{}, {"small": 8000}]


def test_an_on_policy_rollout_has_no_code_note():
    # an on-policy prediction holds the acting runtime from the first step: the code its first rollout loads is in it
    config = RunConfig("Hopper-v5", "ppo", "sb3", steps=2048, buffer_size=2048, decimals=1)
    prediction = predict(config, Runtime(386_400_000, 391_700_000, 396_000_000))
    run = {"marks": [{"name": "model_built", "step": 0, "rss_bytes": 386_600_000, "file_bytes": 121_000_000},
                     {"name": "buffer_full", "step": 2048, "rss_bytes": 391_900_000, "file_bytes": 124_000_000}],
           "measured": {}}
    growth = next(c for c in checks(prediction, run) if c.quantity.startswith("RSS growth"))
    assert growth.verdict == "n/a" and growth.caveat == ""


def test_cpython_arenas_are_counted_apart_from_the_site_that_opened_them(tmp_path):
    """Small objects live in 1 MiB arenas that memray sees mapped by whichever allocation first needed one (in CI,
    now and then, a buffer constructor: 1.111 MB against the 0.053 MB it owns); they are their own group. Traced
    in a fresh process, as the harness's memray pass is (a long-lived one has room in the arenas it has)."""
    import sys

    from validation.harness.measure import ARENA_BYTES, memray_attribution

    trace = tmp_path / "small-objects.memray"
    script = ("import memray\n"
              f"with memray.Tracker({str(trace)!r}):\n"
              "    kept = [object() for _ in range(200_000)]  # ~3 MB of small objects: new arenas\n")
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    groups = memray_attribution(trace, [])
    assert groups["arenas"] >= 2 * ARENA_BYTES and groups["arenas"] % ARENA_BYTES == 0
    assert groups["other"] < groups["arenas"]  # the list's own 1.6 MB of pointers, a malloc


def test_memray_attribution_counts_what_the_construction_kept_not_its_temporaries(tmp_path):
    """A temporary freed before the trace stops is in the peak, not in any site's bytes; what is kept is."""
    import sys

    from validation.harness.measure import memray_attribution

    trace = tmp_path / "temporary.memray"
    script = ("import memray\n"
              f"with memray.Tracker({str(trace)!r}):\n"
              "    scratch = bytearray(8 << 20)  # 8 MiB, freed below\n"
              "    del scratch\n"
              "    kept = bytearray(3 << 20)\n")
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)
    groups = memray_attribution(trace, [])
    assert groups["peak"] >= 8 << 20
    assert 3 << 20 <= groups["other"] < 4 << 20
