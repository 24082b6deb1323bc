"""Observation spaces beyond a flat Box against real stable-baselines3 / sb3-contrib models, to the byte: CnnPolicy
on a uint8 image (NatureCNN, VecTransposeImage), VecFrameStack, MultiInputPolicy on a Dict (CombinedExtractor,
DictReplayBuffer / DictRolloutBuffer) and HerReplayBuffer on a goal-conditioned Dict. After one real update the
planner's parameters, optimizer state, module buffers and every numpy array of the buffer (Dict values too) equal
the model's. The envs are in ``tests/obs_envs.py``.
"""

import importlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import gymnasium  # noqa: E402  (the train extra: a missing one fails, never skips)
import numpy as np
import pytest

from planner.actions import ActionSpace
from planner.algorithms import ALGORITHMS, algorithm
from planner.errors import PlannerError
from planner.footprint import footprint
from planner.observations import ObsSpace
from planner.runspec import RunSpec
from planner.storages import STORAGES

sys.path.insert(0, str(Path(__file__).parent))
import obs_envs  # noqa: E402, F401  (registers the envs)

from validation.harness.child import model_and_optimizer_bytes  # noqa: E402

TESTS = Path(__file__).parent
N_STEPS = 16
BUFFER_SIZE = 100


def _cases() -> "list[tuple[str, str, int, bool]]":
    """Every algorithm with a CnnPolicy and a MultiInputPolicy (CrossQ has neither) on an image and on a Dict
    (Discrete actions for the algorithms that take only those), then frame stacking and HER."""
    cases = []
    for entry in ALGORITHMS.values():
        if entry.multi_input:
            discrete = "" if "box" in entry.actions else "Discrete"
            cases += [(entry.name, f"ObsImage{discrete}-v0", 1, False), (entry.name, f"ObsDict{discrete}-v0", 1, False)]
    return cases + [("ppo", "ObsImage-v0", 4, False), ("sac", "ObsGoal-v0", 1, True)]


CASES = _cases()


def all_arrays(buffer) -> "dict[str, np.ndarray]":
    """Every numpy array the buffer holds, Dict values as ``name[key]``, each once."""
    out, seen = {}, set()
    for name, value in vars(buffer).items():
        items = value.items() if isinstance(value, dict) else [(None, value)]
        for key, array in items:
            if isinstance(array, np.ndarray) and array.ctypes.data not in seen:
                seen.add(array.ctypes.data)
                out[name if key is None else f"{name}[{key}]"] = array
    return out


def build_and_update(algo: str, env_id: str, frame_stack: int, her: bool):
    from stable_baselines3 import HerReplayBuffer
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecFrameStack

    entry = algorithm(algo)
    model_class = getattr(importlib.import_module(entry.package), entry.class_name)
    raw = gymnasium.make(env_id)
    vec_env = make_vec_env(env_id, n_envs=1, seed=0)
    if frame_stack > 1:
        vec_env = VecFrameStack(vec_env, frame_stack)
    _, cnn, multi_input = entry.policies
    policy = multi_input if isinstance(raw.observation_space, gymnasium.spaces.Dict) else cnn
    kwargs = dict(device="cpu", seed=0, policy_kwargs=dict(normalize_images=True))  # SB3's default
    if entry.on_policy:
        extra = {"a2c": {}, "ppo": {"batch_size": 8, "n_epochs": 1}, "trpo": {"batch_size": 8},
                 "ppo_lstm": {"batch_size": 8, "n_epochs": 1}}[algo]
        model = model_class(policy, vec_env, n_steps=N_STEPS, **extra, **kwargs)
        model.learn(total_timesteps=N_STEPS)
        return raw, model, model.rollout_buffer, N_STEPS
    if her:
        kwargs["replay_buffer_class"] = HerReplayBuffer
    model = model_class(policy, vec_env, buffer_size=BUFFER_SIZE, learning_starts=10, batch_size=4, train_freq=1,
                        gradient_steps=2, **kwargs)
    model.learn(total_timesteps=14)
    return raw, model, model.replay_buffer, BUFFER_SIZE


@pytest.mark.parametrize("algo, env_id, frame_stack, her", CASES,
                         ids=[f"{a}-{e}{f'-stack{n}' if n > 1 else ''}{'-her' if h else ''}" for a, e, n, h in CASES])
def test_planner_equals_the_real_model_to_the_byte(algo, env_id, frame_stack, her):
    raw, model, buffer, size = build_and_update(algo, env_id, frame_stack, her)
    spec = RunSpec(algo, obs_space=ObsSpace.of(raw.observation_space), action_space=ActionSpace.of(raw.action_space),
                   buffer_size=size, frame_stack=frame_stack, her=her)
    assert spec.observation == ObsSpace.of(model.observation_space)  # stacked, transposed as SB3's wrappers make it
    fp = footprint(spec)
    params, optimizer = model_and_optimizer_bytes(model)
    assert fp.models_bytes == params, f"params: planner {fp.models_bytes:,} B, real {params:,} B"
    assert fp.optimizer_bytes == optimizer, f"optimizer: planner {fp.optimizer_bytes:,} B, real {optimizer:,} B"
    assert [b for b in model.policy.buffers() if b.dim()] == []  # no module buffers (no BatchRenorm here)
    arrays = all_arrays(buffer)
    for name in ("seq_start_indices", "seq_end_indices"):  # RecurrentPPO's last minibatch's sequence bounds
        scratch = arrays.pop(name, None)  # (int64, at most one per sample): update scratch, not buffer storage
        assert scratch is None or (scratch.dtype == np.int64 and scratch.size <= 8), name
    real = {name: array.nbytes for name, array in arrays.items()}
    predicted = {f.name: f.bytes for f in fp.fields}
    assert predicted == real
    if her:
        assert arrays["infos"].dtype == object and arrays["ep_start"].dtype == np.int64


def test_extractors_are_counted_once_per_owner():
    """PPO shares one NatureCNN between policy and value; SAC's actor, critic and critic target own one each."""
    image = ObsSpace.box((36, 36, 3), "uint8")
    ppo = footprint(RunSpec("ppo", obs_space=image, action_dim=2))
    sac = footprint(RunSpec("sac", obs_space=image, action_dim=2))
    assert [c.name for c in ppo.components if "features" in c.name] == [
        "features_extractor.features_extractor", "adam(features_extractor.features_extractor)"]
    assert [c.name for c in sac.components if "features" in c.name and c.group == "model"] == [
        "actor.features_extractor", "critic.features_extractor", "critic_target.features_extractor"]


def test_runspec_keeps_flat_box_callers_working():
    spec = RunSpec("sac", 17, 6)
    assert (spec.obs_dim, spec.obs_dtype, spec.obs_space) == (17, "float64", ObsSpace.box((17,), "float64"))
    assert RunSpec("sac", obs_space=ObsSpace.box((17,), "float64"), action_dim=6) == spec
    with pytest.raises(PlannerError, match="obs_dim 5 disagrees with obs_space"):
        RunSpec("sac", 5, 6, obs_space=ObsSpace.box((17,)))


def test_just_round_refuses_images_and_dicts_and_packed_stores_them():
    """The authors' uint16 buffers quantize float Boxes only; packed quantizes the float entries and stores the
    others as SB3 does (validation.buffers.obs_store)."""
    from planner.quantization import Quantization

    for space in (ObsSpace.box((36, 36, 3), "uint8"), ObsSpace.of(gymnasium.make("ObsDict-v0").observation_space)):
        spec = RunSpec("sac", obs_space=space, action_dim=2, storage="packed", quant=Quantization.create(2, 127.0))
        error = STORAGES["just-round"].refusal(spec)
        assert error is not None and "quantizes Box observations of floats" in str(error) and "use packed" in str(error)
        assert STORAGES["packed"].refusal(spec) is None
    fields = {f.name: f for f in STORAGES["packed"].fields(spec)}
    assert fields["observations[camera]"].storage == "3888 x uint8"  # 36 x 36 x 3, stored once, as it is
    assert fields["observations[state]"].storage.startswith("4 x 15-bit packed")
    assert fields["observations[mode]"].storage == "int64"


def test_refusals():
    goal = ObsSpace.of(gymnasium.make("ObsGoal-v0").observation_space)
    with pytest.raises(PlannerError, match="MlpPolicy only"):
        RunSpec("crossq", obs_space=goal, action_dim=3)
    with pytest.raises(PlannerError, match="not for ppo's rollouts"):
        RunSpec("ppo", obs_space=goal, action_dim=3, her=True)
    with pytest.raises(PlannerError, match="her needs a Dict observation"):
        RunSpec("sac", 4, 3, her=True)
    with pytest.raises(PlannerError, match="at least 36 x 36"):
        footprint(RunSpec("ppo", obs_space=ObsSpace.box((32, 32, 3), "uint8"), action_dim=2))
    assert STORAGES["sb3-optimize"].refusal(RunSpec("sac", obs_space=goal, action_dim=3)) is not None


def _fit_cli(env_id: str) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(TESTS), os.environ.get("PYTHONPATH")]))}
    planner = Path(sys.executable).parent / "planner"
    r = subprocess.run([str(planner), "fit", "--profile", "jetson-nano", "--env", f"obs_envs:{env_id}", "--json"],
                       capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir(), env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_fit_cli_on_an_image_env_shows_only_the_storages_that_apply():
    data = _fit_cli("ObsImage-v0")
    assert data["env"]["obs_space"] == {"kind": "box", "shape": [36, 36, 3], "dtype": "uint8", "image": True}
    assert [(r["algo"], r["storage"]) for r in data["rows"]] == [("ppo", "sb3"), ("ppo", "packed"), ("sac", "sb3"),
                                                                 ("sac", "sb3-optimize"), ("sac", "packed")]
    sac = footprint(RunSpec("sac", obs_space=ObsSpace.box((36, 36, 3), "uint8"), action_dim=2))
    assert data["rows"][2]["buffer_bytes"] == sac.buffer_bytes
    assert data["rows"][2]["models_bytes"] == sac.models_bytes + sac.optimizer_bytes
    # uint8 images are stored once, as they are: packed is SB3's optimize_memory_usage plus the terminal store
    assert data["rows"][3]["buffer_bytes"] < data["rows"][4]["buffer_bytes"] < sac.buffer_bytes


def test_fit_cli_on_a_goal_env_shows_sb3_and_packed():
    data = _fit_cli("ObsGoal-v0")
    assert [(r["algo"], r["storage"]) for r in data["rows"]] == [
        (algo, name) for algo in ("ppo", "sac") for name in ("sb3", "packed", "float16", "bfloat16")]
    assert data["env"]["obs_dim"] == 12 and data["rows"][0]["obs_dtype"] == "float64"


def test_fit_cli_takes_frame_stack_and_her_and_says_so(planner_cli):
    from conftest import PLANNER

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent)}
    stacked = planner_cli("fit", "--profile", "jetson-nano", "--env", "Hopper-v5", "--algo", "ppo", "--frame-stack",
                          "4", "--json")
    plain = planner_cli("fit", "--profile", "jetson-nano", "--env", "Hopper-v5", "--algo", "ppo", "--json")
    rows, base = json.loads(stacked.stdout)["rows"][0], json.loads(plain.stdout)["rows"][0]
    assert rows["buffer_bytes"] - base["buffer_bytes"] == 2048 * 3 * 11 * 8  # three more frames of 11 float64 values
    table = subprocess.run([str(PLANNER), "fit", "--profile", "jetson-nano", "--env", "obs_envs:ObsGoal-v0",
                            "--algo", "sac", "--her"], capture_output=True, text=True, env=env, timeout=120,
                           cwd=tempfile.gettempdir())
    assert table.returncode == 0, table.stderr
    assert ", HER" in table.stdout and "achieved_goal" in table.stdout
