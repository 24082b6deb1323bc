"""The algorithm registry against the real models: for every stable-baselines3 / sb3-contrib algorithm, on
float64 and float32 observations, Box, Discrete, MultiDiscrete and MultiBinary actions and 1 or 4 envs,
the planner predicts to the byte, after one real update, the parameters of every network (targets,
entropy coefficients and RecurrentPPO's LSTMs too), the optimizers' state, the module buffers (CrossQ's
BatchRenorm statistics) and SB3's buffer arrays (RecurrentPPO's: the LSTM states too).

What is left out, on both sides, is what :class:`planner.algorithms.Optimizer` and
:class:`planner.networks.BatchRenorm` document: the optimizers' 0-dim ``step`` scalars and BatchRenorm's
0-dim ``steps`` counters; tests below check that those are all there is besides.
"""

import importlib
import inspect

import numpy as np
import pytest
import torch  # noqa: E402
from gymnasium import spaces  # noqa: E402
from obs_envs import Episodic  # noqa: E402  (tests/ is on the path: pytest puts it there)

from planner.actions import ActionSpace
from planner.algorithms import ALGORITHMS, algorithm
from planner.errors import PlannerError
from planner.footprint import footprint
from planner.networks import BatchRenorm
from planner.runspec import RunSpec
from validation.harness.child import model_and_optimizer_bytes  # noqa: E402
from validation.harness.measure import buffer_arrays  # noqa: E402

N_STEPS = 64  # rollout per env (A2C: 8)
ON_POLICY_EXTRA = {"a2c": {}, "ppo": {"batch_size": 32, "n_epochs": 1}, "trpo": {"batch_size": 32},
                   "ppo_lstm": {"batch_size": 32, "n_epochs": 1}}
BUFFER_SIZE = 1000  # replay capacity
TINY_SPACES = {
    "multidiscrete": lambda: spaces.MultiDiscrete([3, 4, 2]),
    "multibinary": lambda: spaces.MultiBinary(4),
    "discrete": lambda: spaces.Discrete(3),
    "box64": lambda: spaces.Box(-1.0, 1.0, (2,), np.float64),  # rollouts keep float64 actions, replays cast
    "box": lambda: spaces.Box(-1.0, 1.0, (2,), np.float32),
}


class TinyEnv(Episodic):
    """A flat Box observation of 5 values (``obs_dtype``) and any action space; 16-step episodes."""

    episode = 16

    def __init__(self, actions: str, obs_dtype: str = "float32") -> None:
        self.observation_space = spaces.Box(-1.0, 1.0, (5,), np.dtype(obs_dtype))
        self.action_space = TINY_SPACES[actions]()
        self._t = 0


def make_env(env: str):
    """A gymnasium id, or ``tiny-ACTIONS[-OBSDTYPE]``."""
    if env.startswith("tiny-"):
        _, actions, *dtype = env.split("-")
        return lambda: TinyEnv(actions, *dtype)
    return env


BOX_ALGOS = [a.name for a in ALGORITHMS.values() if "box" in a.actions]
DISCRETE_ALGOS = [a.name for a in ALGORITHMS.values() if "discrete" in a.actions]
CASES = (
    [(algo, "Hopper-v5", 1) for algo in BOX_ALGOS]  # float64 observations
    + [(algo, "Pendulum-v1", 1) for algo in BOX_ALGOS]  # float32 observations
    + [(algo, "CartPole-v1", 1) for algo in DISCRETE_ALGOS]  # float32 observations, Discrete(2)
    + [(algo, "tiny-discrete-float64", 1) for algo in ("dqn", "qrdqn")]  # Discrete(3), float64 observations
    + [(algo, f"tiny-{actions}", 1) for algo in ("ppo", "a2c", "trpo") for actions in ("multidiscrete", "multibinary")]
    + [("ppo_lstm", "tiny-multidiscrete", 1)]  # sb3-contrib 2.9.2's RecurrentPPO cannot train on MultiBinary (int8)
    + [(algo, "tiny-box64", 1) for algo in ("ppo", "sac")]
    + [("ppo", "Hopper-v5", 4), ("a2c", "tiny-multidiscrete", 4), ("trpo", "CartPole-v1", 4),
       ("sac", "Pendulum-v1", 4), ("crossq", "Hopper-v5", 4), ("dqn", "CartPole-v1", 4), ("qrdqn", "CartPole-v1", 4),
       ("ppo_lstm", "Hopper-v5", 4), ("ppo_lstm", "CartPole-v1", 4), ("td3", "Pendulum-v1", 4),
       ("ddpg", "Pendulum-v1", 4), ("tqc", "Pendulum-v1", 4)]
)


def build_and_update(algo: str, env: str, n_envs: int):
    """The real model, trained through one rollout (on-policy) or three gradient steps past learning_starts
    (off-policy: TD3 updates its actor every 2nd step, CrossQ every 3rd), so that every optimizer has state."""
    from stable_baselines3.common.env_util import make_vec_env

    entry = algorithm(algo)
    model_class = getattr(importlib.import_module(entry.package), entry.class_name)
    vec_env = make_vec_env(make_env(env), n_envs=n_envs, seed=0)
    policy = entry.policies[0]  # MlpPolicy (RecurrentPPO: MlpLstmPolicy)
    if entry.on_policy:
        n_steps = 8 if algo == "a2c" else N_STEPS
        model = model_class(policy, vec_env, n_steps=n_steps, device="cpu", seed=0, **ON_POLICY_EXTRA[algo])
        model.learn(total_timesteps=n_steps * n_envs)
        return model, model.rollout_buffer, n_steps
    model = model_class(policy, vec_env, buffer_size=BUFFER_SIZE, learning_starts=10, batch_size=8, train_freq=1,
                        gradient_steps=3, device="cpu", seed=0)
    model.learn(total_timesteps=12 + n_envs)
    return model, model.replay_buffer, BUFFER_SIZE


def measure(algo: str, env: str, n_envs: int) -> dict:
    """The real model's bytes and the planner's prediction for the same run."""
    model, buffer, size = build_and_update(algo, env, n_envs)
    arrays = buffer_arrays(buffer)
    # RecurrentRolloutBuffer keeps the last minibatch's sequence bounds, int64 index arrays of at most one entry
    # per sample, replaced at every minibatch: scratch of the update, not storage the planner sizes
    scratch = [getattr(buffer, name) for name in ("seq_start_indices", "seq_end_indices")
               if isinstance(getattr(buffer, name, None), np.ndarray)]
    batch = ON_POLICY_EXTRA.get(algo, {}).get("batch_size", 0)
    assert all(a.dtype == np.int64 and a.ndim == 1 and a.size <= batch for a in scratch)
    arrays = [a for a in arrays if all(a.ctypes.data != s.ctypes.data for s in scratch)]
    obs_space = model.observation_space
    spec = RunSpec(algo, obs_dim=int(np.prod(obs_space.shape)), buffer_size=size, n_envs=n_envs, storage="sb3",
                   obs_dtype=str(obs_space.dtype), action_space=ActionSpace.of(model.action_space))
    fp = footprint(spec)
    params, optimizer = model_and_optimizer_bytes(model)
    module_buffers = [b for b in model.policy.buffers()]
    predicted_buffers = sum(c.bytes for c in fp.components if c.name.startswith("buffers("))
    return {
        "model": model, "spec": spec, "footprint": fp,
        "params": (fp.models_bytes - predicted_buffers, params),
        "optimizer": (fp.optimizer_bytes, optimizer),
        "module_buffers": (predicted_buffers, sum(b.numel() * b.element_size() for b in module_buffers if b.dim())),
        "scalar_buffers": [b for b in module_buffers if not b.dim()],
        "buffer": (fp.buffer_bytes, sum(a.nbytes for a in arrays)),
    }


@pytest.mark.parametrize("algo, env, n_envs", CASES, ids=[f"{a}-{e}-{n}env" for a, e, n in CASES])
def test_planner_equals_the_real_model_to_the_byte(algo, env, n_envs):
    got = measure(algo, env, n_envs)
    for part in ("params", "optimizer", "module_buffers", "buffer"):
        predicted, real = got[part]
        assert predicted == real, f"{part}: planner {predicted:,} B, real {real:,} B"
    # what is left out: BatchRenorm's 0-dim int64 step counters, one per BatchRenorm layer ...
    layers = [layer for n in algorithm(algo).networks(got["spec"].obs_dim, got["spec"].action_space)
              for layer in n.layers if isinstance(layer, BatchRenorm)]
    assert [(b.dtype, b.element_size()) for b in got["scalar_buffers"]] == [(torch.int64, 8)] * len(layers)
    # ... and the optimizers' 0-dim step scalars, at most 8 bytes each; the other state is what the registry names
    model, entry = got["model"], algorithm(algo)
    optimizers = {id(m.optimizer): m.optimizer for m in model.policy.modules()
                  if isinstance(getattr(m, "optimizer", None), torch.optim.Optimizer)}
    assert {type(o).__module__.split(".")[0] + ".optim." + type(o).__name__ for o in optimizers.values()} == \
        {entry.optimizer.torch_class}
    for opt in optimizers.values():
        for state in opt.state.values():
            assert {k for k, t in state.items() if t.dim()} == set(entry.optimizer.states)
            assert all(t.element_size() <= 8 for k, t in state.items() if not t.dim() and k == "step")


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_registry_defaults_are_sb3s(algo):
    """The default n_steps / buffer_size, batch_size and train_freq are the class's; the nets are checked by the
    parameter counts above."""
    entry = algorithm(algo)
    model_class = getattr(importlib.import_module(entry.package), entry.class_name)
    parameters = inspect.signature(model_class.__init__).parameters
    assert parameters["n_steps" if entry.on_policy else "buffer_size"].default == entry.buffer_size
    assert parameters["batch_size"].default == entry.batch_size if "batch_size" in parameters else not entry.batch_size
    assert set(model_class.policy_aliases) == set(entry.policies if entry.multi_input else entry.policies[:1])
    if not entry.on_policy:
        assert parameters["n_steps"].default == 1  # 1-step returns: SB3's plain ReplayBuffer
        assert parameters["train_freq"].default == entry.train_freq  # when the first update comes


@pytest.mark.parametrize("algo", list(ALGORITHMS))
def test_the_planner_refuses_the_action_spaces_sb3_refuses(algo):
    entry = algorithm(algo)
    model_class = getattr(importlib.import_module(entry.package), entry.class_name)
    for actions in ("box", "discrete", "multidiscrete", "multibinary"):
        env = TinyEnv(actions)
        try:
            model_class(entry.policies[0], env, device="cpu", _init_setup_model=False)
            sb3_accepts = True
        except AssertionError:
            sb3_accepts = False
        assert (entry.refusal(ActionSpace.of(env.action_space)) is None) == sb3_accepts, actions


def test_estimate_of_recurrent_ppo_on_hopper_is_the_default_model_to_the_byte(planner_cli):
    """``planner estimate --algo ppo_lstm --env Hopper-v5``: sb3-contrib's defaults (n_steps 128, an actor and a
    critic LSTM of 256 units, pi and vf MLPs of 64, 64) against the real RecurrentPPO after one update."""
    import json

    from sb3_contrib import RecurrentPPO

    r = planner_cli("estimate", "--algo", "ppo_lstm", "--env", "Hopper-v5", "--json")
    assert r.returncode == 0, r.stderr
    predicted = json.loads(r.stdout)
    model = RecurrentPPO("MlpLstmPolicy", "Hopper-v5", n_epochs=1, device="cpu", seed=0)
    model.learn(total_timesteps=model.n_steps)
    params, optimizer = model_and_optimizer_bytes(model)
    names = [c["name"] for c in predicted["components"]]
    assert names[:2] == ["lstm_actor", "lstm_critic"]
    assert (predicted["models_bytes"], predicted["optimizer_bytes"]) == (params, optimizer) == (2_369_564, 4_739_128)
    states = ("hidden_states_pi", "cell_states_pi", "hidden_states_vf", "cell_states_vf")
    real = {name: getattr(model.rollout_buffer, name).nbytes for name in (
        "observations", "actions", "rewards", "returns", "episode_starts", "values", "log_probs", "advantages",
        *states)}
    assert {f["name"]: f["bytes"] for f in predicted["fields"]} == real
    shapes = [getattr(model.rollout_buffer, name).shape for name in states]
    assert shapes == [(128, 1, 256)] * 4  # (n_steps x n_envs, layers, hidden): flattened by the update
    assert predicted["buffer_bytes"] == 540_160


def test_sac_with_discrete_actions_is_refused_naming_what_is_allowed():
    with pytest.raises(PlannerError) as error:
        RunSpec("sac", obs_dim=4, action_space=ActionSpace.discrete(3))
    assert str(error.value) == ("algo sac takes Box actions, got Discrete(3); "
                                "for Discrete actions use one of ppo, a2c, dqn, qrdqn, trpo, ppo_lstm")
    assert error.value.params == ("algo",)
    assert "\n" not in str(error.value)


def test_estimate_refuses_dqn_with_box_actions_in_one_line(planner_cli):
    r = planner_cli("estimate", "--algo", "dqn", "--obs-dim", "4", "--action-dim", "2")
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr.strip().splitlines() == [
        "planner estimate: error: --algo dqn takes Discrete actions, got Box(2); "
        "for Box actions use one of ppo, a2c, sac, td3, ddpg, tqc, crossq, trpo, ppo_lstm"]


def test_action_space_mismatch_is_refused():
    with pytest.raises(PlannerError, match="action_dim 2 disagrees with action_space Discrete"):
        RunSpec("dqn", 4, 2, action_space=ActionSpace.discrete(3))
