"""Memory pools: a discrete GPU holds models, optimizer state and the update; host RAM the buffer.

The GPU figures were measured on an H200 (``python benchmarks/gpu_pool.py --json``, kept in
docs/measurements/gpu_pool_h200.jsonl); the per-tensor accounting is also checked here against a real
SB3 model built on the CPU.
"""

import json
from pathlib import Path

import pytest
import yaml

from planner.fit import fit, recommendation
from planner.gpu import ALLOCATOR_BLOCK, device_pool
from planner.profiles import parse_profile
from planner.runspec import RunSpec

ROOT = Path(__file__).resolve().parents[1]
MEASURED = [json.loads(line) for line in
            (ROOT / "docs" / "measurements" / "gpu_pool_h200.jsonl").read_text().splitlines()]
SMALL_GPU = {"name": "small-gpu", "description": "a host with plenty of RAM and a small discrete GPU",
             "class": "workstation", "arch": "x86_64", "total_memory": "64GB", "gpu_shares_memory": False,
             "os_reserve": "2GB", "runtime": "2GB", "margin": "1GB", "gpu_memory": "1GB", "gpu_runtime": "900MB",
             "cpu": "c", "gpu": "g", "runs_python": True, "runs_torch": True, "source": ["test"]}


@pytest.mark.parametrize("row", MEASURED, ids=lambda r: f"{r['algo']}-{r['batch_size']}")
def test_gpu_models_match_the_measured_allocations_and_the_update_estimate_is_an_upper_bound(row):
    pool = device_pool(RunSpec(row["algo"], 348, 17), row["batch_size"])
    assert pool.models_bytes == row["model"]  # torch.cuda.memory_allocated() once the model was built
    measured_update = row["peak"] - row["trained"]
    assert measured_update <= pool.update_bytes <= 3 * measured_update


@pytest.mark.parametrize("algo", ["sac", "td3", "ppo"])
def test_gpu_models_are_the_real_tensors_in_allocator_blocks(algo):
    from stable_baselines3 import PPO, SAC, TD3

    cls = {"sac": SAC, "td3": TD3, "ppo": PPO}[algo]
    size = {"n_steps": 64} if algo == "ppo" else {"buffer_size": 100}
    model = cls("MlpPolicy", "Hopper-v5", device="cpu", **size)
    tensors = list(model.policy.parameters()) + ([model.log_ent_coef] if algo == "sac" else [])
    blocks = sum(-(-t.numel() * t.element_size() // ALLOCATOR_BLOCK) * ALLOCATOR_BLOCK for t in tensors)
    assert device_pool(RunSpec(algo, 11, 3)).models_bytes == blocks


def test_paper_workstation_answers_per_pool(planner_cli):
    r = planner_cli("fit", "--profile", "paper-workstation", "--env", "Humanoid-v5")
    assert r.returncode == 0, r.stderr
    assert "host budget" in r.stdout and "GPU budget" in r.stdout and "GPU: models+opt+update" in r.stdout
    data = json.loads(planner_cli("fit", "--profile", "paper-workstation", "--env", "Humanoid-v5", "--json").stdout)
    assert data["profile"]["gpu_pool"]["available_bytes"] == 11 * 2**30 - 900_000_000
    for row in data["rows"]:
        spec = RunSpec(row["algo"], 348, 17, row["buffer_size"])
        assert row["gpu"]["total_bytes"] == device_pool(spec).total_bytes
        assert row["predicted_bytes"] == row["buffer_bytes"]  # host RAM holds the buffer; the GPU the networks


def test_models_too_big_for_the_gpu_do_not_fit_and_the_gpu_is_named(planner_cli, tmp_path):
    profile = parse_profile(SMALL_GPU)
    result = fit(profile, 348, 17, algos=("sac",), buffer_size=1000, net=(4096, 4096))
    for row in result.rows:
        assert row.predicted_bytes <= row.budget_bytes  # the buffer fits host RAM...
        assert not row.fits and row.failing_pools == ["GPU"] and row.max_buffer_size == 0  # ...the networks not
    assert "does not fit the GPU at any buffer size" in recommendation(result)
    path = tmp_path / "small-gpu.yaml"
    path.write_text(yaml.safe_dump(SMALL_GPU))
    r = planner_cli("fit", "--profile", str(path), "--env", "Humanoid-v5", "--algo", "sac", "--buffer-size", "1000",
                    "--net", "4096,4096")
    assert r.returncode == 0, r.stderr
    assert "NO (GPU)" in r.stdout and "yes" not in r.stdout.split("max size")[1].split("(GPU:")[0]


@pytest.mark.parametrize("change, fragment", [
    ({"gpu_shares_memory": True}, "no gpu_memory where gpu_shares_memory is true"),
    ({"gpu_runtime": None}, "needs both gpu_memory and gpu_runtime"),
    ({"gpu_runtime": "2GB"}, "key 'gpu_runtime': expected a size smaller than gpu_memory"),
    ({"gpu_memory": 11}, "a bare number has no unit"),
])
def test_gpu_pool_keys_are_checked(change, fragment):
    data = {key: value for key, value in {**SMALL_GPU, **change}.items() if value is not None}
    with pytest.raises(ValueError, match=fragment):
        parse_profile(data)


def test_estimate_on_a_cuda_device_shows_the_gpu_pool(planner_cli):
    r = planner_cli("estimate", "--algo", "sac", "--env", "Humanoid-v5", "--device", "cuda", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["gpu"] == device_pool(RunSpec("sac", 348, 17)).as_dict()
    table = planner_cli("estimate", "--algo", "sac", "--env", "Humanoid-v5", "--device", "cuda")
    assert "on a CUDA device" in table.stdout and "upper estimate" in table.stdout
    assert "on a CUDA device" not in planner_cli("estimate", "--algo", "sac", "--env", "Humanoid-v5").stdout
