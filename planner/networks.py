"""Parameter counts of the networks a run trains: stable-baselines3 defaults and the paper's examples.

>>> sum(n.params for n in sb3_models("ppo", obs_dim=17, action_dim=6))
11085
"""

from dataclasses import dataclass

from planner.actions import ActionSpace
from planner.errors import PlannerError, quote
from planner.observations import ObsSpace

NATURE_CNN_FEATURES = 512  # CnnPolicy's NatureCNN features_dim
COMBINED_CNN_FEATURES = 256  # MultiInputPolicy's CombinedExtractor cnn_output_dim


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
class Conv2d:
    """torch's Conv2d, no padding: a ``n_out x n_in x kernel x kernel`` weight and ``n_out`` biases; ``out_h`` x
    ``out_w`` is the output's spatial size (for the activations ``planner.gpu`` estimates).

    >>> Conv2d(4, 32, 8, 4).params
    8224
    """

    n_in: int
    n_out: int
    kernel: int
    stride: int = 1
    out_h: int = 1
    out_w: int = 1

    @property
    def params(self) -> int:
        return self.n_out * self.n_in * self.kernel * self.kernel + self.n_out

    @property
    def units(self) -> int:
        """Output values per sample."""
        return self.n_out * self.out_h * self.out_w

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
class LSTM:
    """torch's nn.LSTM: ``layers`` stacked layers of ``hidden`` units reading ``n_in`` features, each with
    four tensors: weight_ih (4h x in), weight_hh (4h x h), bias_ih and bias_hh (4h each); layers after the
    first read the one below (in = h). ``n_out`` is what the next layer reads (the top layer's output).

    >>> LSTM(17, 256).params, LSTM(17, 256).tensor_sizes
    (281600, (17408, 262144, 1024, 1024))
    >>> LSTM(4, 8, layers=2).params == 4 * 8 * (4 + 8) + 8 * 8 + 4 * 8 * (8 + 8) + 8 * 8
    True
    """

    n_in: int
    hidden: int
    layers: int = 1

    @property
    def tensor_sizes(self) -> "tuple[int, ...]":
        """Elements of each parameter tensor, layer by layer: weight_ih, weight_hh, bias_ih, bias_hh."""
        h = self.hidden
        return tuple(size for n_in in (self.n_in, *(h,) * (self.layers - 1))
                     for size in (4 * h * n_in, 4 * h * h, 4 * h, 4 * h))

    @property
    def params(self) -> int:
        return sum(self.tensor_sizes)

    @property
    def n_out(self) -> int:
        return self.hidden

    @property
    def units(self) -> int:
        """Values per sample and time step a backward pass keeps: per layer the four gates, the cell state and
        the output (6 h)."""
        return 6 * self.hidden * self.layers

    buffers = 0


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


def nature_cnn(space: ObsSpace, features_dim: int = NATURE_CNN_FEATURES) -> tuple:
    """SB3 2.9's NatureCNN on a channel-first image (C, H, W): conv 32 8x8/4, 64 4x4/2, 64 3x3/1 (no padding),
    flatten, Linear to ``features_dim``. The smallest image it takes is 36 x 36.

    >>> [layer.params for layer in nature_cnn(ObsSpace.box((3, 36, 36), "uint8"))]
    [6176, 32832, 36928, 33280]
    """
    channels, height, width = space.shape
    layers, n_in = [], channels
    for n_out, kernel, stride in ((32, 8, 4), (64, 4, 2), (64, 3, 1)):
        height, width = (height - kernel) // stride + 1, (width - kernel) // stride + 1
        if height < 1 or width < 1:
            raise PlannerError(f"NatureCNN needs images of at least 36 x 36 pixels, got {space}", "obs_space")
        layers.append(Conv2d(n_in, n_out, kernel, stride, height, width))
        n_in = n_out
    return (*layers, Linear(n_in * height * width, features_dim))


def features_extractor(space: ObsSpace) -> "tuple[str, tuple, int]":
    """SB3's features extractor for ``space`` as the model sees it (after VecFrameStack and VecTransposeImage):
    (class name, layers, features_dim). An image takes CnnPolicy's NatureCNN (512 features), a Dict
    MultiInputPolicy's CombinedExtractor (a NatureCNN of 256 features per image key with 1, 3 or 4 channels,
    the others flattened, Discrete one-hot), anything else MlpPolicy's FlattenExtractor (no parameters).

    >>> name, layers, features = features_extractor(ObsSpace.box((17,)))
    >>> name, layers, features
    ('FlattenExtractor', (), 17)
    """
    if space.image:
        return "NatureCNN", nature_cnn(space), NATURE_CNN_FEATURES
    if space.kind == "dict":
        layers, features = [], 0
        for _, entry in space.entries:
            if entry.image_with_channels():
                layers.extend(nature_cnn(entry, COMBINED_CNN_FEATURES))
                features += COMBINED_CNN_FEATURES
            else:
                features += entry.flat_dim
        return "CombinedExtractor", tuple(layers), features
    return "FlattenExtractor", (), space.flat_dim


def parse_net(text: str, param: str = "net") -> "tuple[int, ...]":
    """``"256,256"`` -> (256, 256); errors name ``param``."""
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise PlannerError(f"{param} expects hidden sizes such as 256,256, got {quote(text)}", param) from None
    if not sizes or any(size < 1 for size in sizes):
        raise PlannerError(f"{param} sizes must be positive whole numbers, got {quote(text)}", param)
    return sizes


def sb3_models(algo: str, obs_dim: "int | ObsSpace", action_dim: "int | None" = None,
               net: "tuple[int, ...] | None" = None, trunk: "tuple[int, ...] | None" = None,
               action_space: "ActionSpace | None" = None) -> "tuple[Network, ...]":
    """The networks stable-baselines3 / sb3-contrib build for ``algo`` with an MlpPolicy (flatten features
    extractor) on ``obs_dim`` values, or on an :class:`planner.observations.ObsSpace` as the model sees it
    (CnnPolicy on images, MultiInputPolicy on Dicts), from :data:`planner.algorithms.ALGORITHMS`.

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
