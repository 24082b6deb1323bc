"""The algorithms: every stable-baselines3 / sb3-contrib algorithm the planner sizes, in one registry.

Each entry names the algorithm as rl-zoo3 does, says where its class lives, whether it is on-policy
(a rollout of n_steps per env) or keeps a replay buffer, which action spaces it takes, its optimizer,
SB3's default network sizes and buffer size (stable-baselines3 2.9.2 / sb3-contrib 2.9.2), and builds
the networks its MlpPolicy (RecurrentPPO, ``ppo_lstm``: MlpLstmPolicy, an actor and a critic LSTM before
the MLPs) holds on a flat observation. :data:`planner.runspec.ALGOS`, the CLI's ``--algo`` choices,
:func:`planner.defaults.default_buffer_size` and :func:`planner.footprint.footprint` all read
:data:`ALGORITHMS`.

>>> list(ALGORITHMS)
['ppo', 'a2c', 'sac', 'td3', 'ddpg', 'dqn', 'tqc', 'crossq', 'qrdqn', 'trpo', 'ppo_lstm']
>>> [a.name for a in ALGORITHMS.values() if "discrete" in a.actions]
['ppo', 'a2c', 'dqn', 'qrdqn', 'trpo', 'ppo_lstm']
>>> algorithm("a2c").buffer_size, algorithm("a2c").optimizer.name
(5, 'rmsprop')
>>> [(n.name, n.params) for n in algorithm("qrdqn").networks(4, ActionSpace.discrete(2))]
[('quantile_net', 30480), ('quantile_net_target', 30480)]
"""

from dataclasses import KW_ONLY, dataclass, replace
from typing import Callable

from planner.actions import KINDS, ActionSpace
from planner.errors import PlannerError, quote
from planner.networks import LSTM, BatchRenorm, Linear, Network, features_extractor, mlp, shared_trunk
from planner.observations import ObsSpace

ALL_ACTIONS = tuple(KINDS)
BOX = ("box",)
DISCRETE = ("discrete",)


@dataclass(frozen=True)
class Optimizer:
    """A torch optimizer and the state tensors it keeps per parameter, each of the parameter's shape.

    Only these count, as :func:`validation.harness.child.model_and_optimizer_bytes` counts the state tensors with
    dim > 0. torch also keeps a ``step`` per parameter tensor, a 0-dim scalar left out here: float32 (4 bytes),
    float64 (8 bytes) where torch's default dtype is float64, so at most 8 bytes per parameter tensor
    (a Linear layer with bias holds two tensors: a few hundred bytes for a whole SB3 model).
    """

    name: str
    torch_class: str
    states: "tuple[str, ...]"

    @property
    def tensors(self) -> int:
        """State tensors per parameter tensor, each the parameter's size."""
        return len(self.states)


ADAM = Optimizer("adam", "torch.optim.Adam", ("exp_avg", "exp_avg_sq"))
RMSPROP = Optimizer("rmsprop", "torch.optim.RMSprop", ("square_avg",))  # SB3's A2C: momentum 0, not centered


@dataclass(frozen=True)
class Algorithm:
    """One algorithm.

    :param name: rl-zoo3's name (``--algo``)
    :param package: "stable_baselines3" or "sb3_contrib"
    :param class_name: the class in ``package``
    :param on_policy: keeps a rollout of ``n_steps`` per env (else a replay buffer)
    :param actions: the action space kinds it takes (:data:`planner.actions.KINDS`)
    :param optimizer: the optimizer of every trained network (and of SAC-style entropy coefficients)
    :param net: the default hidden sizes of the policy (actor, Q-net) MLP, and of the others unless
        ``critic_net`` says otherwise
    :param critic_net: the default hidden sizes of the value / Q nets, where they differ from ``net``
    :param buffer_size: the default ``n_steps`` per env (on-policy) or replay capacity in transitions
    :param batch_size: the default minibatch of an update (0: the whole rollout, A2C)
    :param build: ``build(algorithm, obs_dim, action_space, pi, qf, trunk)``: the networks
    :param n_critics: Q networks (SAC, TD3, TQC, CrossQ: 2; DDPG: 1)
    :param n_quantiles: outputs per action of a distributional critic (TQC: 25 per critic; QR-DQN: 200)
    :param policy_optimized: the optimizer moves the policy (TRPO: no, a conjugate-gradient step does; its
        optimizer fits the value function only, so only the value path has optimizer state)
    :param targets: keeps Polyak-averaged target copies of its critics (CrossQ: no)
    :param batch_renorm: BatchRenorm before every Linear layer (CrossQ)
    :param entropy_coefficient: learns log(alpha), one parameter with its own Adam (SAC, TQC, CrossQ)
    :param cnn_net: the default hidden sizes behind CnnPolicy's NatureCNN, where they differ from ``net`` (SB3:
        none for PPO, A2C, TRPO, DQN, QR-DQN; 256, 256 for TD3 and DDPG)
    :param multi_input: has CnnPolicy and MultiInputPolicy (CrossQ: MlpPolicy only)
    :param lstm: hidden units of each LSTM of a recurrent policy (RecurrentPPO: 256, an actor and a critic
        LSTM between the features extractor and the MLPs; its rollout buffer keeps their hidden and cell
        states per step); 0: not recurrent
    :param lstm_layers: stacked layers of each LSTM
    :param train_freq: environment steps between updates of an off-policy algorithm (SB3: 1; DQN, QR-DQN: 4), so
        the first update comes after the first multiple of it past learning_starts
    """

    name: str
    package: str
    class_name: str
    on_policy: bool
    actions: "tuple[str, ...]"
    optimizer: Optimizer
    _: KW_ONLY
    net: "tuple[int, ...]"
    buffer_size: int
    batch_size: int
    build: Callable[..., "tuple[Network, ...]"]
    critic_net: "tuple[int, ...] | None" = None
    n_critics: int = 0
    n_quantiles: int = 0
    policy_optimized: bool = True
    targets: bool = True
    batch_renorm: bool = False
    entropy_coefficient: bool = False
    cnn_net: "tuple[int, ...] | None" = None
    multi_input: bool = True
    lstm: int = 0
    lstm_layers: int = 1
    train_freq: int = 1

    @property
    def import_path(self) -> str:
        """``package:Class``."""
        return f"{self.package}:{self.class_name}"

    @property
    def buffer_kind(self) -> str:
        """The buffer it trains with: "replay" (off-policy), "rollout" (on-policy) or "recurrent" (a recurrent
        policy's rollout, which sb3-contrib's RecurrentPPO builds itself: it takes no buffer class)."""
        return "replay" if not self.on_policy else "recurrent" if self.lstm else "rollout"

    @property
    def policies(self) -> "tuple[str, str, str]":
        """Its policy names for a flat observation, an image and a Dict (RecurrentPPO: ``...LstmPolicy``)."""
        suffix = "LstmPolicy" if self.lstm else "Policy"
        return tuple(f"{kind}{suffix}" for kind in ("Mlp", "Cnn", "MultiInput"))

    def refusal(self, action_space: ActionSpace) -> "PlannerError | None":
        """Why this algorithm cannot act in ``action_space`` (an error naming the algorithms that can), or None."""
        if action_space.kind in self.actions:
            return None
        kinds = [KINDS[k] for k in self.actions]
        takes = kinds[0] if len(kinds) == 1 else f"{', '.join(kinds[:-1])} or {kinds[-1]}"
        others = [a.name for a in ALGORITHMS.values() if action_space.kind in a.actions]
        return PlannerError(f"algo {self.name} takes {takes} actions, got {action_space}; for "
                            f"{KINDS[action_space.kind]} actions use one of {', '.join(others)}", "algo")

    def obs_refusal(self, space: ObsSpace) -> "PlannerError | None":
        """Why this algorithm has no policy for ``space`` (CrossQ: MlpPolicy only), or None."""
        if self.multi_input or space.flat or not (space.kind == "dict" or space.has_images):
            return None
        others = ", ".join(a.name for a in ALGORITHMS.values() if a.multi_input)
        return PlannerError(f"algo {self.name} has an MlpPolicy only (no CnnPolicy / MultiInputPolicy), got "
                            f"observations {space}; use one of {others}", "algo")

    def networks(self, obs: "int | ObsSpace", action_space: ActionSpace, net: "tuple[int, ...] | None" = None,
                 trunk: "tuple[int, ...] | None" = None) -> "tuple[Network, ...]":
        """The networks of its policy on ``obs`` (a flat observation's size, or the
        :class:`~planner.observations.ObsSpace` the model sees): MlpPolicy, CnnPolicy on an image,
        MultiInputPolicy on a Dict; ``net`` (every MLP's hidden sizes) replaces the defaults.

        The features extractor (:func:`planner.networks.features_extractor`) reads the observation and the
        MLPs read its features. On-policy algorithms share one extractor between policy and value
        (``share_features_extractor=True``); SAC, TQC, TD3, DDPG give the actor, the critic and every
        target its own (``share_features_extractor=False``), DQN and QR-DQN the Q net and its target:
        one network ``OWNER.features_extractor`` each, where the extractor has parameters.
        """
        space = ObsSpace.box((obs,), "float64") if isinstance(obs, int) else obs
        for error in (self.refusal(action_space), self.obs_refusal(space)):
            if error is not None:
                raise error
        if trunk and not self.on_policy:
            on_policy = ", ".join(a.name for a in ALGORITHMS.values() if a.on_policy)
            raise PlannerError(f"trunk applies to {on_policy} (a policy and a value net reading the same "
                               f"observation), not to {self.name}", "trunk")
        extractor, layers, features = features_extractor(space)
        cnn = extractor == "NatureCNN" and self.cnn_net is not None
        pi = (self.cnn_net if cnn else self.net) if net is None else tuple(net)
        qf = (self.cnn_net if cnn else (self.critic_net or self.net)) if net is None else tuple(net)
        networks = self.build(self, features, action_space, pi, qf, tuple(trunk or ()))
        if not layers:
            return networks
        return (*networks, *(Network(f"{owner}.features_extractor", layers, trained=trained)
                             for owner, trained in self.extractor_owners()))

    def extractor_owners(self) -> "tuple[tuple[str, bool], ...]":
        """(owner, trained) of each features extractor the policy holds (see :meth:`networks`).

        TRPO's shared extractor is not: it counts as the actor's (SB3's TRPO drops the value loss's gradients on
        every parameter outside the value path before its optimizer steps)."""
        if self.on_policy:
            return (("features_extractor", self.policy_optimized),)
        if self.build is q_networks:
            name = "quantile_net" if self.n_quantiles else "q_net"
            return ((name, True), (f"{name}_target", False))
        owners = (("actor", True),) + ((("actor_target", False),) if self.build is deterministic_actor_critic else ())
        return owners + (("critic", True),) + ((("critic_target", False),) if self.targets else ())


def actor_critic(algo: Algorithm, obs_dim: int, space: ActionSpace, pi: tuple, vf: tuple,
                 trunk: tuple) -> "tuple[Network, ...]":
    """PPO, A2C, TRPO (ActorCriticPolicy): [shared trunk], separate pi and vf MLPs, action head, value head.

    The action head: Box a Gaussian's means plus a state-independent log_std per action; Discrete,
    MultiDiscrete and MultiBinary one logit per choice.
    """
    last_pi, last_vf = (obs_dim, *trunk, *pi)[-1], (obs_dim, *trunk, *vf)[-1]
    shared, policy, value = shared_trunk(obs_dim, trunk, {"policy_net": pi, "value_net": vf})
    moved = algo.policy_optimized
    log_std = space.n if space.kind == "box" else 0
    return (
        *((shared,) if trunk else ()),
        replace(policy, trained=moved),
        value,
        Network("action_head", mlp((last_pi, space.n)), extra_params=log_std, trained=moved),
        Network("value_head", mlp((last_vf, 1))),
    )


def recurrent_actor_critic(algo: Algorithm, obs_dim: int, space: ActionSpace, pi: tuple, vf: tuple,
                           trunk: tuple) -> "tuple[Network, ...]":
    """RecurrentPPO (RecurrentActorCriticPolicy, sb3-contrib's defaults ``shared_lstm=False``,
    ``enable_critic_lstm=True``): an actor LSTM and a critic LSTM, each reading the features, then
    :func:`actor_critic`'s MLPs and heads reading the LSTMs' ``algo.lstm`` outputs.

    >>> [(n.name, n.params) for n in algorithm("ppo_lstm").networks(4, ActionSpace.discrete(2))]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('lstm_actor', 268288), ('lstm_critic', 268288), ('policy_net', 20608), ('value_net', 20608),
     ('action_head', 130), ('value_head', 65)]
    """
    lstm = LSTM(obs_dim, algo.lstm, algo.lstm_layers)
    return (Network("lstm_actor", (lstm,)), Network("lstm_critic", (lstm,)),
            *actor_critic(algo, algo.lstm, space, pi, vf, trunk))


def renorm_mlp(sizes: tuple) -> tuple:
    """CrossQ's MLP: a BatchRenorm over each Linear layer's input, then the layer."""
    return tuple(layer for a, b in zip(sizes, sizes[1:]) for layer in (BatchRenorm(a), Linear(a, b)))


def soft_actor_critic(algo: Algorithm, obs_dim: int, space: ActionSpace, pi: tuple, qf: tuple,
                      trunk: tuple) -> "tuple[Network, ...]":
    """SAC, TQC, CrossQ: a squashed Gaussian actor (latent MLP, mean and log_std heads), ``n_critics`` Q nets
    (TQC: ``n_quantiles`` outputs each), their targets (not CrossQ), and log(alpha).

    CrossQ renormalizes every Linear layer's input, and the actor's latent once more before its heads.
    """
    last = (obs_dim, *pi)[-1]
    q_sizes = (obs_dim + space.dim, *qf, algo.n_quantiles or 1)
    if algo.batch_renorm:
        latent = renorm_mlp((obs_dim, *pi)) + ((BatchRenorm(last),) if pi else ())
        critic = renorm_mlp(q_sizes)
    else:
        latent, critic = mlp((obs_dim, *pi)), mlp(q_sizes)
    critics = critic * algo.n_critics
    return (
        Network("actor", latent + mlp((last, space.n)) * 2),
        Network("critics", critics),
        *((Network("critic_targets", critics, trained=False),) if algo.targets else ()),
        *((Network("log_ent_coef", extra_params=1),) if algo.entropy_coefficient else ()),
    )


def deterministic_actor_critic(algo: Algorithm, obs_dim: int, space: ActionSpace, pi: tuple, qf: tuple,
                               trunk: tuple) -> "tuple[Network, ...]":
    """TD3, DDPG: a deterministic actor and its target, ``n_critics`` Q nets and their targets."""
    actor = mlp((obs_dim, *pi, space.n))
    critics = mlp((obs_dim + space.dim, *qf, 1)) * algo.n_critics
    return (
        Network("actor", actor),
        Network("actor_target", actor, trained=False),
        Network("critics", critics),
        Network("critic_targets", critics, trained=False),
    )


def q_networks(algo: Algorithm, obs_dim: int, space: ActionSpace, pi: tuple, qf: tuple,
               trunk: tuple) -> "tuple[Network, ...]":
    """DQN, QR-DQN: a Q net (one output per action, QR-DQN ``n_quantiles`` per action) and its target."""
    name = "quantile_net" if algo.n_quantiles else "q_net"
    layers = mlp((obs_dim, *pi, space.n * (algo.n_quantiles or 1)))
    return Network(name, layers), Network(f"{name}_target", layers, trained=False)


ALGORITHMS = {a.name: a for a in (
    Algorithm("ppo", "stable_baselines3", "PPO", True, ALL_ACTIONS, ADAM, net=(64, 64), buffer_size=2048,
              batch_size=64, build=actor_critic, cnn_net=()),
    Algorithm("a2c", "stable_baselines3", "A2C", True, ALL_ACTIONS, RMSPROP, net=(64, 64), buffer_size=5,
              batch_size=0, build=actor_critic, cnn_net=()),
    Algorithm("sac", "stable_baselines3", "SAC", False, BOX, ADAM, net=(256, 256), buffer_size=1_000_000,
              batch_size=256, build=soft_actor_critic, n_critics=2, entropy_coefficient=True),
    Algorithm("td3", "stable_baselines3", "TD3", False, BOX, ADAM, net=(400, 300), buffer_size=1_000_000,
              batch_size=256, build=deterministic_actor_critic, n_critics=2, cnn_net=(256, 256)),
    Algorithm("ddpg", "stable_baselines3", "DDPG", False, BOX, ADAM, net=(400, 300), buffer_size=1_000_000,
              batch_size=256, build=deterministic_actor_critic, n_critics=1, cnn_net=(256, 256)),
    Algorithm("dqn", "stable_baselines3", "DQN", False, DISCRETE, ADAM, net=(64, 64), buffer_size=1_000_000,
              batch_size=32, build=q_networks, cnn_net=(), train_freq=4),
    Algorithm("tqc", "sb3_contrib", "TQC", False, BOX, ADAM, net=(256, 256), buffer_size=1_000_000,
              batch_size=256, build=soft_actor_critic, n_critics=2, n_quantiles=25, entropy_coefficient=True),
    Algorithm("crossq", "sb3_contrib", "CrossQ", False, BOX, ADAM, net=(256, 256), buffer_size=1_000_000,
              batch_size=256, build=soft_actor_critic, critic_net=(1024, 1024), n_critics=2, targets=False,
              batch_renorm=True, entropy_coefficient=True, multi_input=False),
    Algorithm("qrdqn", "sb3_contrib", "QRDQN", False, DISCRETE, ADAM, net=(64, 64), buffer_size=1_000_000,
              batch_size=32, build=q_networks, n_quantiles=200, cnn_net=(), train_freq=4),
    Algorithm("trpo", "sb3_contrib", "TRPO", True, ALL_ACTIONS, ADAM, net=(64, 64), buffer_size=2048,
              batch_size=128, build=actor_critic, policy_optimized=False, cnn_net=()),
    Algorithm("ppo_lstm", "sb3_contrib", "RecurrentPPO", True, ALL_ACTIONS, ADAM, net=(64, 64), buffer_size=128,
              batch_size=128, build=recurrent_actor_critic, cnn_net=(), lstm=256),
)}


def algorithm(name: str) -> Algorithm:
    """The registry entry ``name``; an unknown name is refused with the known ones."""
    if name not in ALGORITHMS:
        raise PlannerError(f"algo must be one of {', '.join(ALGORITHMS)}, got {quote(name)}", "algo")
    return ALGORITHMS[name]
