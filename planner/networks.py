"""Parameter counts of the networks a run trains: stable-baselines3 defaults and the paper's examples.

>>> sum(n.params for n in sb3_models("ppo", obs_dim=17, action_dim=6))
11085
"""

from dataclasses import dataclass

from planner.defaults import NETS
from planner.errors import PlannerError


@dataclass(frozen=True)
class Linear:
    n_in: int
    n_out: int
    bias: bool = True

    @property
    def params(self) -> int:
        return self.n_in * self.n_out + (self.n_out if self.bias else 0)


@dataclass(frozen=True)
class Network:
    """A named set of layers (plus free parameters such as log_std) and whether an optimizer updates it."""

    name: str
    layers: tuple = ()
    extra_params: int = 0
    trained: bool = True

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers) + self.extra_params


def mlp(sizes: "tuple[int, ...] | list[int]", bias: bool = True) -> tuple:
    """Linear layers joining consecutive sizes: (in, h1, ..., out)."""
    return tuple(Linear(a, b, bias) for a, b in zip(sizes, sizes[1:]))


def shared_trunk(n_in: int, trunk: "tuple[int, ...]", heads: "dict[str, tuple[int, ...]]",
                 bias: bool = True) -> "tuple[Network, ...]":
    """A trunk MLP (``n_in`` -> ``trunk`` sizes) computed once, whose output feeds every head MLP.

    The trunk's parameters count once, however many heads read it. SB3 before 1.8 wrote
    ``net_arch=[64, dict(pi=[64], vf=[64])]`` for one shared 64-unit layer, then separate pi and vf layers:

    >>> [(n.name, n.params) for n in shared_trunk(17, (64,), {"pi": (64,), "vf": (64,)})]
    [('shared_net', 1152), ('pi', 4160), ('vf', 4160)]
    """
    width = trunk[-1] if trunk else n_in
    return (Network("shared_net", mlp((n_in, *trunk), bias)),
            *(Network(name, mlp((width, *sizes), bias)) for name, sizes in heads.items()))


def parse_net(text: str, param: str = "net") -> "tuple[int, ...]":
    """``"256,256"`` -> (256, 256); errors name ``param``."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise PlannerError(f"{param} expects hidden sizes such as 256,256, got {text!r}", param) from None
    if not sizes or any(size < 1 for size in sizes):
        raise PlannerError(f"{param} sizes must be positive whole numbers, got {text!r}", param)
    return sizes


def sb3_models(algo: str, obs_dim: int, action_dim: int, net: "tuple[int, ...] | None" = None,
               trunk: "tuple[int, ...] | None" = None) -> "tuple[Network, ...]":
    """The networks stable-baselines3 builds for ``algo`` with an MlpPolicy (flatten features extractor).

    ``net``: hidden sizes of each MLP (default: SB3's). ``trunk`` (PPO only): hidden layers shared by the
    policy and value nets before their own ``net`` layers, as SB3 < 1.8's ``net_arch=[*trunk, dict(pi=net, vf=net)]``.
    """
    hidden = NETS.get(algo, ()) if net is None else tuple(net)
    if algo == "ppo":  # [shared trunk], separate pi and vf MLPs, action head, value head, state-independent log_std
        trunk = tuple(trunk or ())
        last = (obs_dim, *trunk, *hidden)[-1]
        shared, *separate = shared_trunk(obs_dim, trunk, {"policy_net": hidden, "value_net": hidden})
        return (
            *((shared,) if trunk else ()),
            *separate,
            Network("action_head", mlp((last, action_dim)), extra_params=action_dim),
            Network("value_head", mlp((last, 1))),
        )
    if trunk:
        raise PlannerError("trunk applies to ppo (policy and value read the same observation); "
                           f"{algo}'s critics also take the action", "trunk")
    q_in = obs_dim + action_dim
    if algo == "sac":  # actor latent + mean and log_std heads; two critics and their targets; log(alpha)
        actor = mlp((obs_dim, *hidden)) + mlp(((obs_dim, *hidden)[-1], action_dim)) * 2
        return (
            Network("actor", actor),
            Network("critics", mlp((q_in, *hidden, 1)) * 2),
            Network("critic_targets", mlp((q_in, *hidden, 1)) * 2, trained=False),
            Network("log_ent_coef", extra_params=1),
        )
    if algo == "td3":
        actor = mlp((obs_dim, *hidden, action_dim))
        return (
            Network("actor", actor),
            Network("actor_target", actor, trained=False),
            Network("critics", mlp((q_in, *hidden, 1)) * 2),
            Network("critic_targets", mlp((q_in, *hidden, 1)) * 2, trained=False),
        )
    raise PlannerError(f"algo must be one of {', '.join(NETS)}, got {algo!r}", "algo")


def miki_teacher() -> "tuple[Network, ...]":
    """Miki et al. 2022 teacher: all-legs height encoder, privileged encoder, main MLP (with biases)."""
    return (
        Network("height_encoder", mlp((208, 80, 60, 96))),
        Network("privileged_encoder", mlp((50, 64, 32, 24))),
        Network("main_mlp", mlp((133 + 96 + 24, 256, 160, 128, 16))),
    )


def haarnoja_minitaur() -> "tuple[Network, ...]":
    """Haarnoja et al. 2018 Minitaur SAC: policy 112-256-256-16 and two Q nets 120-256-256-1, weights only."""
    return (
        Network("policy", mlp((112, 256, 256, 16), bias=False)),
        Network("q_networks", mlp((120, 256, 256, 1), bias=False) * 2),
    )
