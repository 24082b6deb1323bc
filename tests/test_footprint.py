import pytest

from cython_core.layout import words_for
from planner.envs import lookup_env
from planner.errors import PlannerError
from planner.footprint import footprint
from planner.layouts import terminal_capacity
from planner.networks import sb3_models, shared_trunk
from planner.quantization import Quantization
from planner.runspec import RunSpec
from planner.storages import buffer_fields


def test_sb3_replay_humanoid_v5_matches_sb3_measurement():
    """5,648 B per transition measured in SB3 2.9 on Humanoid-v5 (facts.md section 4)."""
    fp = footprint(RunSpec("sac", obs_dim=348, action_dim=17, buffer_size=1_000_000, storage="sb3"))
    assert fp.buffer_bytes == 5_648_000_000


@pytest.mark.parametrize("env, per_transition", [
    ("Walker2d-v5", 308), ("HalfCheetah-v5", 308), ("Ant-v5", 1_724), ("Humanoid-v5", 5_648), ("Humanoid-v4", 6_096)])
def test_sb3_replay_bytes_per_transition(env, per_transition):
    dims = lookup_env(env)
    fp = footprint(RunSpec("sac", dims.obs_dim, dims.action_dim, 10_000, storage="sb3"))
    assert fp.buffer_bytes == per_transition * 10_000


def test_sb3_optimize_memory_usage_drops_next_observations():
    spec = RunSpec("sac", 17, 6, 1000, storage="sb3-optimize")
    assert [f.name for f in buffer_fields(spec)] == ["observations", "actions", "rewards", "dones", "timeouts"]
    assert footprint(spec).buffer_bytes == 1000 * (17 * 8 + 6 * 4 + 12)


def test_sb3_replay_rows_follow_buffer_size_floor_division_by_n_envs():
    spec = RunSpec("sac", 17, 6, 1001, n_envs=4, storage="sb3")
    assert spec.rows == 250 * 4


def test_sb3_rollout_layout():
    spec = RunSpec("ppo", 17, 6, 2048, n_envs=2, storage="sb3")
    names = [f.name for f in buffer_fields(spec)]
    assert names == ["observations", "actions", "rewards", "returns", "episode_starts", "values", "log_probs",
                     "advantages"]
    assert footprint(spec).buffer_bytes == 2048 * 2 * (17 * 8 + 6 * 4 + 6 * 4)


def test_just_round_stores_uint16_observations_twice_for_replay():
    spec = RunSpec("sac", 376, 17, 1_000_000, storage="just-round", quant=Quantization.create(2))
    fields = {f.name: f.bytes for f in buffer_fields(spec)}
    assert fields["observations"] == fields["next_observations"] == 752_000_000


def test_packed_layout_counts_packed_rows_and_side_store():
    quant = Quantization.create(2)
    spec = RunSpec("sac", 348, 17, 200_000, storage="packed", quant=quant)
    fields = {f.name: f for f in buffer_fields(spec)}
    # rows at bit stride: 348 x 15 = 5,220 bits a row, no padding; the stream's tail is its spare word
    assert fields["observations"].bytes == 200_000 * 5220 // 8 == 130_500_000
    assert fields["observations"].bytes + fields["observations.tail"].bytes == words_for(200_000, 5220) * 8
    assert fields["observations.tail"].bytes == 8
    assert terminal_capacity(spec) == 3125
    assert fields["terminal_observations"].bytes == 3125 * 5220 // 8 + 1  # 2,039,062.5 B: whole bytes
    terminal = fields["terminal_observations"].bytes + fields["terminal_observations.tail"].bytes
    assert terminal == words_for(3125, 5220) * 8
    assert fields["terminal_slot"].bytes == 200_000 * 4
    assert fields["terminal_owner"].bytes == 3125 * 8


def test_packed_humanoid_replay_is_at_least_7_5x_smaller_than_sb3():
    quant = Quantization.create(2)
    sb3 = footprint(RunSpec("sac", 348, 17, 1_000_000, storage="sb3")).buffer_bytes
    ours = footprint(RunSpec("sac", 348, 17, 1_000_000, storage="packed", quant=quant)).buffer_bytes
    authors = footprint(RunSpec("sac", 348, 17, 1_000_000, storage="just-round", quant=quant)).buffer_bytes
    assert sb3 / ours >= 7.5
    assert authors / ours >= 1.9


def test_ppo_models_match_sb3_parameter_count():
    # SB3 2.9 PPO MlpPolicy on Walker2d: 11,085 parameters (pi/vf [64, 64], heads, log_std)
    assert sum(n.params for n in sb3_models("ppo", 17, 6)) == 11_085


def test_shared_trunk_is_counted_once():
    # SB3 < 1.8 net_arch=[128, dict(pi=[64], vf=[32])] on obs 17, by hand:
    trunk = 17 * 128 + 128  # 2,304
    pi = 128 * 64 + 64  # 8,256
    vf = 128 * 32 + 32  # 4,128
    nets = shared_trunk(17, (128,), {"pi": (64,), "vf": (32,)})
    assert [(n.name, n.params) for n in nets] == [("shared_net", trunk), ("pi", pi), ("vf", vf)]
    assert sum(n.params for n in nets) == 14_688
    no_bias = shared_trunk(17, (128,), {"pi": (64,), "vf": (32,)}, bias=False)
    assert sum(n.params for n in no_bias) == 17 * 128 + 128 * 64 + 128 * 32


def test_ppo_with_a_shared_trunk():
    # PPO, obs 17, action 6, trunk [64] then pi/vf [64]: 1,152 + 2 x 4,160 + (64*6 + 6 + 6 log_std) + 65
    spec = RunSpec("ppo", 17, 6, 2048, storage="sb3", net=(64,), trunk=(64,))
    fp = footprint(spec)
    params = {c.name: c.params for c in fp.components if c.group == "model"}
    assert params == {"shared_net": 1_152, "policy_net": 4_160, "value_net": 4_160, "action_head": 396,
                      "value_head": 65}
    assert sum(params.values()) == 9_933
    assert fp.models_bytes == 9_933 * 4 and fp.optimizer_bytes == 2 * 9_933 * 4
    # a trunk alone (SB3 < 1.8 net_arch=[64, 64], all shared): heads read the trunk's last layer
    shared_only = sb3_models("ppo", 17, 6, net=(), trunk=(64, 64))
    assert [n.name for n in shared_only] == ["shared_net", "policy_net", "value_net", "action_head", "value_head"]
    assert sum(n.params for n in shared_only) == 17 * 64 + 64 + 64 * 64 + 64 + 64 * 6 + 6 + 6 + 65
    assert sb3_models("ppo", 17, 6, trunk=()) == sb3_models("ppo", 17, 6)


def test_shared_trunk_is_refused_for_replay_algorithms():
    with pytest.raises(PlannerError, match="trunk applies to ppo"):
        footprint(RunSpec("sac", 17, 6, 100, storage="sb3", trunk=(64,)))


def test_sac_models_and_adam_state():
    fp = footprint(RunSpec("sac", 17, 6, 1000, storage="sb3"))
    names = {c.name: c for c in fp.components}
    assert names["actor"].params == 17 * 256 + 256 + 256 * 256 + 256 + 2 * (256 * 6 + 6)
    assert names["critic_targets"].params == names["critics"].params
    assert "adam(critic_targets)" not in names  # targets are Polyak-averaged, not optimized
    assert names["adam(critics)"].params == 2 * names["critics"].params
    assert fp.total_bytes == fp.models_bytes + fp.optimizer_bytes + fp.buffer_bytes


def test_shares_add_up():
    fp = footprint(RunSpec("ppo", 376, 17, 2048, storage="sb3"))
    d = fp.as_dict()
    assert sum(f["share_of_buffer"] for f in d["fields"]) == pytest.approx(1.0)
    assert (sum(c["share_of_total"] for c in d["components"])
            + sum(f["share_of_total"] for f in d["fields"])) == pytest.approx(1.0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(algo="dqn"), "algo"),
    (dict(obs_dim=-3), "obs_dim must be"),
    (dict(action_dim=0), "action_dim must be"),
    (dict(buffer_size=0), "buffer_size must be"),
    (dict(storage="zip"), "storage must be one of"),
    (dict(storage="packed"), "decimals"),
    (dict(algo="ppo", storage="sb3-optimize"), "replay"),
    (dict(param_dtype="float128"), "param_dtype must be one of"),
    (dict(quant=Quantization.create(2)), "storage sb3 does not quantize observations"),
    (dict(storage="paper64", quant=Quantization.create(2)), "storage paper64 does not quantize observations"),
    (dict(storage="sb3-optimize", quant=Quantization.create(2)), "storage sb3-optimize does not quantize observations"),
    (dict(algo="ppo", buffer_size=0), "n_steps must be"),
])
def test_bad_specs_raise_planner_error(kwargs, message):
    base = dict(algo="sac", obs_dim=17, action_dim=6, buffer_size=100, storage="sb3")
    with pytest.raises(PlannerError, match=message):
        footprint(RunSpec(**{**base, **kwargs}))
