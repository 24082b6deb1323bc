"""Parameter counts of the networks a run trains: stable-baselines3 defaults and the paper's examples.

>>> sum(n.params for n in sb3_models("ppo", obs_dim=17, action_dim=6))
11085
"""

from dataclasses import dataclass

from planner.actions import ActionSpace
from planner.errors import PlannerError


@dataclass(frozen=True)
class Linear:
    n_in: int
    n_out: int
    bias: bool = True

    @property
    def params(self) -> int:
        return self.n_in * self.n_out + (self.n_out if self.bias else 0)

    buffers = 0


@dataclass(frozen=True)
class BatchRenorm:
    """sb3-contrib's BatchRenorm1d over ``n`` features: parameters scale and bias, module buffers ``ra_mean``
    and ``ra_var`` (running statistics: no gradient, no optimizer state). Its ``steps`` counter, an int64
    scalar (8 bytes), is left out, as the optimizers' step scalars are.

    >>> BatchRenorm(256).params, BatchRenorm(256).buffers
    (512, 512)
    """

    n: int

    @property
    def params(self) -> int:
        return 2 * self.n

    @property
    def buffers(self) -> int:
        return 2 * self.n


@dataclass(frozen=True)
class Network:
    """A named set of layers (plus free parameters such as log_std) and whether an optimizer keeps state for it.

    ``trained`` is False for target networks (Polyak-averaged copies) and for parameters moved without an
    optimizer (TRPO's policy: a conjugate-gradient step and line search). ``buffers``: elements of module
    buffers (BatchRenorm statistics), stored at the parameters' dtype, counted into the model's bytes.
    """

    name: str
    layers: tuple = ()
    extra_params: int = 0
    trained: bool = True

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers) + self.extra_params

    @property
    def buffers(self) -> int:
        return sum(layer.buffers for layer in self.layers)


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


def sb3_models(algo: str, obs_dim: int, action_dim: "int | None" = None, net: "tuple[int, ...] | None" = None,
               trunk: "tuple[int, ...] | None" = None,
               action_space: "ActionSpace | None" = None) -> "tuple[Network, ...]":
    """The networks stable-baselines3 / sb3-contrib build for ``algo`` with an MlpPolicy (flatten features
    extractor), from :data:`planner.algorithms.ALGORITHMS`.

    ``action_space`` (a :class:`planner.actions.ActionSpace`; default Box(``action_dim``)). ``net``: hidden
    sizes of each MLP (default: SB3's). ``trunk`` (on-policy only): hidden layers shared by the policy and
    value nets before their own ``net`` layers, as SB3 < 1.8's ``net_arch=[*trunk, dict(pi=net, vf=net)]``.

    >>> [(n.name, n.params) for n in sb3_models("dqn", 4, action_space=ActionSpace.discrete(2))]
    [('q_net', 4610), ('q_net_target', 4610)]
    """
    from planner.algorithms import algorithm

    entry = algorithm(algo)
    if action_space is None:
        action_space = ActionSpace.box(action_dim)
    return entry.networks(obs_dim, action_space, net, trunk)


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
