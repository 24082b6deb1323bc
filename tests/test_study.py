"""``planner study``: the smoke study through both backends (the same files, keys and, seeded alike, the same
returns), a study killed part-way and resumed without rerunning what finished, a failing trial recorded while
the others finish, the summary's files, and bad specs and flags refused in one line.

The calibrated storage is left out here (tests/test_study_calibrated.py runs them)."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import yaml
from conftest import PLANNER

from planner.cli import main
from validation.study.results import records
from validation.study.spec import SHIPPED

TESTS = Path(__file__).parent


def smoke_without_calibrated(folder: Path) -> Path:
    """The shipped smoke study, every storage but the calibrated ones."""
    data = yaml.safe_load((SHIPPED / "smoke.yaml").read_text())
    for group in data["groups"]:
        group["storages"] = [s for s in group["storages"] if s != "calibrated"]
    path = folder / "smoke.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def study(*args: str, env: "dict | None" = None, timeout: float = 600, cwd: "Path | None" = None
          ) -> subprocess.CompletedProcess:
    return subprocess.run([str(PLANNER), "study", *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=cwd or tempfile.gettempdir())  # the installed package runs


def ends(out: Path) -> "dict[str, dict]":
    return {p.stem: records(p)[-1] for p in sorted((out / "trials").glob("*.jsonl"))}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The smoke study run locally, killed (SIGKILL) once its first trial is done, then rerun to the end; and
    the same study on Ray. Returns (spec, local folder, ray folder, the done files before the kill with their
    mtimes, the rerun's stderr)."""
    folder = tmp_path_factory.mktemp("study")
    spec, local, on_ray = smoke_without_calibrated(folder), folder / "local", folder / "ray"
    first = subprocess.Popen([str(PLANNER), "study", str(spec), "--out", str(local), "--workers", "2"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and first.poll() is None:
        done = {k for k, e in ends(local).items() if e.get("status") == "done"} if (local / "trials").is_dir() else ()
        if done:
            break
        time.sleep(0.2)
    first.send_signal(signal.SIGKILL)
    first.wait()
    before = {p.name: p.stat().st_mtime_ns for p in (local / "trials").glob("*.jsonl")
              if records(p) and records(p)[-1].get("status") == "done"}
    assert before, "no trial finished before the kill"
    rerun = study(str(spec), "--out", str(local), "--workers", "2")
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    ray_run = study(str(spec), "--out", str(on_ray), "--ray", "--workers", "2")
    assert ray_run.returncode == 0, ray_run.stderr[-2000:]
    return spec, local, on_ray, before, rerun.stderr


def test_a_killed_study_resumes_without_rerunning_finished_trials(smoke):
    _, local, _, before, stderr = smoke
    after = {p.name: p.stat().st_mtime_ns for p in (local / "trials").glob("*.jsonl")}
    assert {name: after[name] for name in before} == before  # not rewritten
    assert len(after) == 16 and all(e["status"] == "done" for e in ends(local).values())
    assert f"16 trials, {16 - len(before)} to run" in stderr
    for path in (local / "trials").glob("*.jsonl"):  # a trial cut short by the kill started over: one start
        assert [r["kind"] for r in records(path)].count("start") == 1


def test_both_backends_write_the_same_files_keys_and_returns(smoke):
    _, local, on_ray, _, _ = smoke
    names = sorted(p.name for p in (local / "trials").glob("*.jsonl"))
    assert names == sorted(p.name for p in (on_ray / "trials").glob("*.jsonl")) and len(names) == 16
    for name in names:
        mine, theirs = records(local / "trials" / name), records(on_ray / "trials" / name)
        assert [(r["kind"], sorted(r)) for r in mine] == [(r["kind"], sorted(r)) for r in theirs]
        assert [r.get("returns") for r in mine] == [r.get("returns") for r in theirs]  # seeded alike
        evals = [r for r in mine if r["kind"] == "eval"]
        end = mine[-1]  # PPO trains whole rollouts: equal-memory's shorter one ends past step 256
        assert [r["step"] for r in evals] == [0, 64, 128, 192, 256] + ([end["steps"]] if end["steps"] > 256 else [])
        assert all(len(r["returns"]) == 2 for r in evals)
        assert end["status"] == "done" and 256 <= end["steps"] < 256 + 64 and end["buffer_bytes"] > 0
        assert end["ms_per_step"] == pytest.approx(end["acting_ms_per_step"] + end["update_ms_per_step"])
        assert end["peak_rss_bytes"] > 50e6


def test_storages_hold_the_buffers_they_name(smoke):
    _, local, _, _, _ = smoke
    config = {name: records(p)[0]["config"] for name, p in
              ((p.stem, p) for p in (local / "trials").glob("*.jsonl"))}
    end = ends(local)
    for algo in ("ppo", "sac"):
        base = end[f"Hopper-v5_{algo}_sb3_seed0_256steps"]
        packed = end[f"Hopper-v5_{algo}_packed_seed0_256steps"]
        equal = f"Hopper-v5_{algo}_equal-memory_seed0_256steps"
        assert base["saturation"] is None and packed["saturation"] is not None
        assert packed["buffer_bytes"] < base["buffer_bytes"] / 1.8
        assert config[equal]["rows"] < config[equal]["nominal_rows"]  # shrunk to the packed buffer's bytes
        assert end[equal]["buffer_bytes"] <= packed["buffer_bytes"] * 1.1


def test_summary_files_and_keys(smoke):
    _, local, _, _, _ = smoke
    summary = json.loads((local / "summary.json").read_text())
    assert summary["done"] == summary["trials"] == 16 and summary["failed"] == []
    assert {(c["env"], c["algo"]) for c in summary["cells"]} == {("Hopper-v5", "ppo"), ("Hopper-v5", "sac")}
    for cell in summary["cells"]:
        assert list(cell["storages"]) == ["sb3", "packed", "float16", "equal-memory"]  # the registry's order
        for name, stats in cell["storages"].items():
            assert stats["seeds"] == 2 and stats["curve"]["steps"][:5] == [0, 64, 128, 192, 256]
            if name != "sb3":
                assert {"effect", "ci_low", "ci_high", "welch_p", "detectable", "verdict", "ms_ratio",
                        "memory_ratio"} <= set(stats)
                assert stats["ci_low"] <= stats["effect"] <= stats["ci_high"] and stats["detectable"] >= 0
                assert stats["verdict"].startswith(("loss of", "gain of", "no difference larger than"))
            assert len(stats["window_steps"]) >= 3 and len(stats["returns"]) == 2
    assert summary["window_evaluations"] == 3
    for png in ("figure4_returns.png", "figure3_equal_memory.png", "effects_forest.png"):
        assert (local / png).read_bytes()[:4] == b"\x89PNG"
    text = (local / "summary.md").read_text()
    assert "Welch p" in text and "95 % CI" in text and "ratio to baseline" in text and "MB = 10^6" in text
    again = study("--summarize", str(local))
    assert again.returncode == 0 and again.stdout == text


def test_a_failing_trial_is_recorded_and_the_study_finishes(tmp_path):
    spec = tmp_path / "fail.yaml"
    spec.write_text("eval_every: 32\neval_episodes: 1\ngroups:\n  - envs: [study_envs:Exploding-v0, Hopper-v5]\n"
                    "    algos: [ppo]\n    storages: [sb3]\n    seeds: 1\n    steps: 64\n    n_steps: 32\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    r = study(str(spec), "--out", str(tmp_path / "out"), env=env)
    assert r.returncode == 1, r.stderr[-2000:]
    end = ends(tmp_path / "out")
    assert end["study_envs-Exploding-v0_ppo_sb3_seed0_64steps"]["status"] == "failed"
    assert "the env exploded at step 40" in end["study_envs-Exploding-v0_ppo_sb3_seed0_64steps"]["error"]
    assert end["Hopper-v5_ppo_sb3_seed0_64steps"]["status"] == "done"
    assert "1 failed" in r.stderr and "the env exploded" in (tmp_path / "out" / "summary.md").read_text()


BAD = [
    (["study"], "give a study's SPEC (with --out), or --summarize DIR alone"),
    (["study", "smoke"], "--out is required"),
    (["study", "no-such.yaml", "--out", "{out}"], "study no-such.yaml: no such file"),
    (["study", "smoke", "--out", "{out}", "--summarize", "{out}"], "give a study's SPEC"),
    (["study", "--summarize", "{out}", "--ray"], "--summarize takes only the study's folder"),
    (["study", "--summarize", "{out}"], "is not a folder"),
    (["study", "smoke", "--out", "{out}", "--workers", "0"], "--workers must be at least 1"),
    # an address Ray cannot parse fails at once (an unreachable host retries for minutes; "auto" joins any
    # cluster already running on the machine)
    (["study", "smoke", "--out", "{out}", "--address", "localhost:notaport"],
     "cannot join the Ray cluster at --address localhost:notaport"),
]
BAD_SPECS = [
    ("groups: []\n", "groups must be a non-empty list"),
    ("[1, 2]\n", "a study is a mapping"),
    ("colour: red\ngroups: []\n", "unknown key 'colour'"),
    ("groups:\n  - {envs: Hopper-v5, algos: ppo, storages: sb3, seeds: 1}\n", "groups[0].steps is missing"),
    ("groups:\n  - {envs: Hopper-v5, algos: ppo, storages: zip, seeds: 1, steps: 9}\n",
     "groups[0].storages: 'zip' is not one of sb3"),
    ("groups:\n  - {envs: Hopper-v5, algos: dqn, storages: sb3, seeds: 1, steps: 9}\n", "'dqn' is not one of"),
    ("groups:\n  - {envs: Nope-v0, algos: ppo, storages: sb3, seeds: 1, steps: 9}\n", "groups[0].envs: env"),
    ("groups:\n  - {envs: Hopper-v5, algos: ppo, storages: sb3, seeds: 0, steps: 9}\n", "groups[0].seeds must"),
    ("groups:\n  - {envs: Hopper-v5, algos: ppo, storages: sb3, seeds: [1, 1], steps: 9}\n", "a seed twice"),
    ("groups:\n  - {envs: Hopper-v5, algos: ppo, storages: sb3, seeds: 1, steps: 0}\n", "groups[0].steps must"),
    ("groups:\n  - {envs: Hopper-v5, algos: ppo, storages: sb3, seeds: 1, steps: 100}\n",
     "steps 100 is below n_steps 2,048"),
    ("groups:\n  - {envs: Hopper-v5, algos: ppo, storages: sb3, seeds: 1, steps: 9, buffer_size: 9}\n",
     "buffer_size is SAC's replay capacity"),
    ("groups:\n  - {envs: Hopper-v5, algos: sac, storages: sb3, seeds: 1, steps: 9, gpu: 1}\n",
     "groups[0].gpu must be true or false"),
    ("groups:\n  - {envs: Hopper-v5, algos: sac, storages: sb3, seeds: 1, steps: 9}\n"
     "  - {envs: Hopper-v5, algos: sac, storages: sb3, seeds: 1, steps: 9}\n", "is also in groups[0]"),
    ("groups: &a [1]\n", "anchors (&name) and aliases"),
]


def _refused(argv: "list[str]", fragment: str, capsys) -> None:
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == "", (argv, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err and fragment in lines[0], (argv, err)


@pytest.mark.parametrize("argv, fragment", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_flags_are_one_line_and_write_nothing(argv, fragment, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [a.replace("{out}", str(out)) for a in argv]
    if fragment == "is not a folder":
        out.write_text("")
    _refused(argv, fragment, capsys)
    assert not out.exists() or out.is_file()


@pytest.mark.parametrize("text, fragment", BAD_SPECS, ids=[f for _, f in BAD_SPECS])
def test_bad_specs_are_one_line_naming_the_field_and_write_nothing(text, fragment, tmp_path, capsys):
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    _refused(["study", str(spec), "--out", str(tmp_path / "out")], fragment, capsys)
    assert not (tmp_path / "out").exists()


def test_shipped_specs_hold_the_issues_grids():
    from validation.study.grid import trials
    from validation.study.spec import read_spec

    paper, small, smoke = (trials(read_spec(name)) for name in ("paper", "small", "smoke"))
    assert len(paper) == 160 and {t.env for t in paper} == {"Walker2d-v5", "HalfCheetah-v5", "Ant-v5", "Humanoid-v5"}
    assert {(t.algo, t.decimals) for t in paper} == {("ppo", 1), ("sac", 2)} and {t.steps for t in paper} == {10**6}
    ppo = [t for t in small if t.algo == "ppo"]
    sac = [t for t in small if t.algo == "sac"]
    assert len(ppo) == 2 * 4 * 3 and {t.steps for t in ppo} == {200_000}
    assert len(sac) == 4 * 2 and {t.steps for t in sac} == {50_000} and {t.env for t in sac} == {"Hopper-v5"}
    assert {t.arm for t in smoke} == {"sb3", "float16", "packed", "calibrated", "equal-memory"}
    assert {t.seed for t in smoke} == {0, 1} and max(t.steps for t in smoke) < 1000



def test_a_folder_holding_other_files_is_refused_and_left_alone(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    _refused(["study", "smoke", "--out", str(out)], "holds files but no study", capsys)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_sigterm_ends_the_running_trials_in_one_line_and_a_second_study_is_refused(tmp_path):
    spec = tmp_path / "one.yaml"
    spec.write_text("groups:\n  - {envs: Hopper-v5, algos: sac, storages: sb3, seeds: 2, steps: 20000}\n")
    out = tmp_path / "out"
    run = subprocess.Popen([str(PLANNER), "study", str(spec), "--out", str(out), "--workers", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())
    first = out / "trials" / "Hopper-v5_sac_sb3_seed0_20000steps.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not any(r["kind"] == "eval" for r in records(first)):
        time.sleep(0.2)
    second = study(str(spec), "--out", str(out), "--workers", "1")  # the folder is the first study's
    assert second.returncode == 2 and second.stderr.strip() == (
        f"planner study: error: --out {out}: another study (pid {run.pid}) is writing into it; wait for it to end "
        "or choose another folder"), second.stderr
    assert sum(r["kind"] == "start" for r in records(first)) == 1  # the second one restarted nothing
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 128 + signal.SIGTERM
    assert err.strip().splitlines()[-1] == (f"planner study: killed by SIGTERM; the finished trials are kept in {out}: "
                                            "rerun the same command to resume")
    pid = records(first)[0]["pid"]
    time.sleep(0.5)
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert records(first)[-1]["kind"] != "end"  # cut short: a rerun starts it over


def test_ray_without_the_study_extra_is_refused_up_front(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as when the [study] extra is not installed
    _refused(["study", "smoke", "--out", str(tmp_path / "out"), "--ray"], 'pip install "justround-planner[study]"',
             capsys)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, absent", [
    (["smoke", "--out", "OUT", "--ray"], ("torch", "ray")),
    (["smoke", "--out", "OUT"], ("stable_baselines3", "scipy")),
    (["--summarize", "OUT"], ("matplotlib", "scipy")),
], ids=["ray", "local", "summarize"])
def test_a_study_missing_both_extras_names_both_in_one_line(monkeypatch, tmp_path, capsys, argv, absent):
    for module in absent:
        monkeypatch.setitem(sys.modules, module, None)  # as when neither extra is installed
    out = tmp_path / "out"
    _refused(["study", *(str(out) if arg == "OUT" else arg for arg in argv)],
             f"needs the [train] and [study] extras, which are not installed ({', '.join(absent)} not importable): "
             'pip install torch==2.13.0, then pip install "justround-planner[train,study]"', capsys)
    assert not out.exists()



@pytest.mark.parametrize("backend", [[], ["--ray"]], ids=["local", "ray"])
def test_a_study_started_in_a_source_checkout_trains_with_the_installed_package(source_checkout, backend):
    # the finding: run from the repository's root, trials imported the source tree's cython_core (no compiled
    # modules; Ray puts the driver's folder first on its workers' sys.path) and every quantized trial failed
    spec = source_checkout / "one.yaml"
    spec.write_text("groups:\n  - {envs: Hopper-v5, algos: ppo, storages: packed, seeds: 1, steps: 128, "
                    "n_steps: 64}\n")
    r = study(str(spec), "--out", "out", "--workers", "1", *backend, cwd=source_checkout)
    assert r.returncode == 0, (r.stderr[-2000:], ends(source_checkout / "out"))
    assert ends(source_checkout / "out")["Hopper-v5_ppo_packed_seed0_128steps"]["status"] == "done"


def test_sigterm_ends_a_study_on_ray_in_one_line(tmp_path):
    # the finding: the stop signal's exception, raised inside ray.wait, came back as a SystemError traceback
    spec = tmp_path / "one.yaml"
    spec.write_text("groups:\n  - {envs: Hopper-v5, algos: sac, storages: sb3, seeds: 1, steps: 20000}\n")
    out = tmp_path / "out"
    run = subprocess.Popen([str(PLANNER), "study", str(spec), "--out", str(out), "--ray", "--workers", "1"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tempfile.gettempdir())
    first = out / "trials" / "Hopper-v5_sac_sb3_seed0_20000steps.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not any(r["kind"] == "eval" for r in records(first)):
        time.sleep(0.2)
    run.send_signal(signal.SIGTERM)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "Traceback" not in err and err.strip().splitlines()[-1] == (
        f"planner study: killed by SIGTERM; the finished trials are kept in {out}: rerun the same command to resume")
    assert records(first)[-1]["kind"] != "end" and not (out / "study.lock").exists()
