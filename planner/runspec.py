"""RunSpec: everything the analytical model needs to size one training run."""

from dataclasses import KW_ONLY, dataclass
from typing import Any, Callable

from planner.actions import ActionSpace
from planner.algorithms import ALGORITHMS, algorithm
from planner.defaults import default_buffer_size, is_on_policy
from planner.errors import PlannerError, quote
from planner.observations import ObsSpace
from planner.quantization import Quantization
from planner.units import MAX_COUNT

ALGOS = tuple(ALGORITHMS)
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "uint8": 1, "uint16": 2, "int8": 1,
               "int32": 4, "int64": 8}


@dataclass(frozen=True)
class RunSpec:
    """One training run: algorithm, dimensions, buffer capacity and the storage that holds the buffer.

    ``buffer_size`` is the replay capacity in transitions for off-policy algorithms (SB3: rows per env are
    ``buffer_size // n_envs``) and ``n_steps`` per env for on-policy ones (rows = n_steps * n_envs); None
    takes SB3's default. ``storage`` names an entry of :data:`planner.storages.STORAGES`.

    Actions: ``action_space`` (:class:`planner.actions.ActionSpace`), or Box(``action_dim``) of
    ``action_dtype`` (default float32) when None. Either way ``action_dim`` and ``action_dtype`` end up as
    the space's buffer columns and dtype, what the layouts read.

    Observations: ``obs_space`` (:class:`planner.observations.ObsSpace`: a Box of any shape and dtype, an
    image, a Dict), or a flat Box(``obs_dim``) of ``obs_dtype`` (default float64) when None. Either way
    ``obs_dim`` ends up as the values one env step stores (a Dict: all keys together) and ``obs_dtype`` as the
    dtype (a Dict's: its entries' dtypes joined by "/" where they differ). ``frame_stack``: SB3's
    ``VecFrameStack(n)`` around the env; :attr:`observation` is the space the model and its buffer see
    (stacked, then channels first as SB3's ``VecTransposeImage`` makes images). ``her``: the replay buffer
    is SB3's ``HerReplayBuffer`` (a goal-conditioned Dict: observation, achieved_goal, desired_goal).
``obs_ranges``: an :class:`planner.obs_ranges.ObservationRanges`, the per-dimension widths the ``calibrated`` storage
packs (the other storages ignore it).

    >>> spec = RunSpec("ppo", obs_space=ObsSpace.box((84, 84, 1), "uint8"), action_space=ActionSpace.discrete(4),
    ...                frame_stack=4)
    >>> spec.obs_dim, spec.obs_dtype, spec.observation, spec.obs_values
    (7056, 'uint8', Box(4, 84, 84; uint8), 28224)

    >>> RunSpec("sac", obs_dim=348, action_dim=17).buffer_size
    1000000
    >>> spec = RunSpec("dqn", obs_dim=4, action_space=ActionSpace.discrete(2))
    >>> spec.action_dim, spec.action_dtype, spec.buffer_size
    (1, 'int64', 1000000)
    """

    algo: str
    obs_dim: "int | None" = None
    action_dim: "int | None" = None
    buffer_size: "int | None" = None
    n_envs: int = 1
    _: KW_ONLY
    storage: str = "sb3"
    quant: "Quantization | None" = None
    net: "tuple[int, ...] | None" = None
    trunk: "tuple[int, ...] | None" = None  # on-policy: layers shared by policy and value (see sb3_models)
    param_dtype: str = "float32"
    optimizer: bool = True
    obs_dtype: "str | None" = None
    action_dtype: "str | None" = None
    terminal_capacity: "int | None" = None
    action_space: "ActionSpace | None" = None
    obs_space: "ObsSpace | None" = None
    frame_stack: int = 1
    her: bool = False
    obs_ranges: "Any | None" = None  # planner.obs_ranges.ObservationRanges: the calibrated storage's widths

    def __post_init__(self) -> None:
        entry = algorithm(self.algo)
        self._resolve_space("obs", box=lambda dim, dtype: ObsSpace.box((dim,), dtype), default_dtype="float64",
                            space_type=ObsSpace, dim_of=lambda space: space.values,
                            dtype_of=lambda space: space.dtype_name)
        self._resolve_space("action", box=ActionSpace.box, default_dtype="float32", space_type=ActionSpace,
                            dim_of=lambda space: space.dim, dtype_of=lambda space: space.dtype)
        if self.buffer_size is None:
            object.__setattr__(self, "buffer_size", default_buffer_size(self.algo))
        for name in ("obs_dim", "action_dim", "buffer_size", "n_envs", "frame_stack"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                param = self.size_param if name == "buffer_size" else name
                raise PlannerError(f"{param} must be a whole number >= 1, got {quote(value)}", param)
        for name in ("param_dtype", "obs_dtype", "action_dtype"):
            if (name != "obs_dtype" or self.obs_space.kind == "box") and getattr(self, name) not in DTYPE_BYTES:
                raise PlannerError(f"{name} must be one of {', '.join(DTYPE_BYTES)}, got {quote(getattr(self, name))}",
                                   name)
        for name in ("net", "trunk"):
            sizes = getattr(self, name)
            if sizes is not None and (not isinstance(sizes, tuple) or not sizes or any(
                    isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_COUNT
                    for size in sizes)):
                raise PlannerError(f"{name} must be hidden sizes, whole numbers in 1..2^53, got {quote(sizes)}", name)
        if self.terminal_capacity is not None and self.terminal_capacity < 1:
            raise PlannerError(f"terminal_capacity must be >= 1, got {quote(self.terminal_capacity)}",
                               "terminal_capacity")
        for error in (entry.refusal(self.action_space), entry.obs_refusal(self.observation), self._her_refusal()):
            if error is not None:
                raise error

    def _her_refusal(self) -> "PlannerError | None":
        if not self.her:
            return None
        if not self.is_replay:
            return PlannerError(f"her (HerReplayBuffer) is a replay buffer: not for {self.algo}'s rollouts", "her")
        if not self.obs_space.goal_conditioned:
            return PlannerError(f"her needs a Dict observation with observation, achieved_goal and desired_goal, got "
                                f"{self.obs_space}", "her", "obs_space")
        return None

    def _resolve_space(self, kind: str, *, box: "Callable[[int, str], Any]", default_dtype: str, space_type: type,
                       dim_of: "Callable[[Any], int]", dtype_of: "Callable[[Any], str]") -> None:
        """``{kind}_space`` from ``{kind}_dim``/``{kind}_dtype`` (a flat Box) or the reverse; refuse a disagreement.

        :param box: the flat Box of a dim and a dtype
        :param default_dtype: the Box's dtype when ``{kind}_dtype`` is None
        :param space_type: what ``{kind}_space`` must be
        :param dim_of: the space's ``{kind}_dim``
        :param dtype_of: the space's ``{kind}_dtype``
        """
        space, dim, dtype = (getattr(self, f"{kind}_{name}") for name in ("space", "dim", "dtype"))
        if space is None:
            if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
                raise PlannerError(f"{kind}_dim must be a whole number >= 1, got {quote(dim)}", f"{kind}_dim")
            space = box(dim, dtype or default_dtype)
        elif not isinstance(space, space_type):
            raise PlannerError(f"{kind}_space must be an {space_type.__name__}, got {quote(space)}", f"{kind}_space")
        else:
            for name, value in ((f"{kind}_dim", dim_of(space)), (f"{kind}_dtype", dtype_of(space))):
                if getattr(self, name) not in (None, value):
                    raise PlannerError(f"{name} {quote(getattr(self, name))} disagrees with {kind}_space {space} "
                                       f"({quote(value)}): give one of them", name, f"{kind}_space")
        object.__setattr__(self, f"{kind}_space", space)
        object.__setattr__(self, f"{kind}_dim", dim_of(space))
        object.__setattr__(self, f"{kind}_dtype", dtype_of(space))

    @property
    def observation(self) -> ObsSpace:
        """The observation space the model and its buffer see: stacked ``frame_stack`` times, images channels
        first (SB3's ``VecTransposeImage``)."""
        return self.obs_space.stacked(self.frame_stack).transposed()

    @property
    def obs_values(self) -> int:
        """Observation values one buffer row stores (``obs_dim`` times ``frame_stack``)."""
        return self.observation.values

    @property
    def is_replay(self) -> bool:
        return not is_on_policy(self.algo)

    @property
    def size_param(self) -> str:
        """What ``buffer_size`` means for this algorithm: the replay capacity, or n_steps per env."""
        return "buffer_size" if self.is_replay else "n_steps"

    @property
    def rows(self) -> int:
        """Rows each per-step field holds, all envs together (SB3's buffer_size semantics)."""
        if self.is_replay:
            return max(self.buffer_size // self.n_envs, 1) * self.n_envs
        return self.buffer_size * self.n_envs

    def as_dict(self) -> dict:
        quant = self.quant
        return {"algo": self.algo, "obs_dim": self.obs_dim, "action_dim": self.action_dim,
                "buffer_size": self.buffer_size, "n_envs": self.n_envs, "rows": self.rows, "storage": self.storage,
                "quant": None if quant is None else {"decimals": quant.decimals, "clamp": quant.clamp,
                                                     "bits": quant.bits, "rule": quant.rule},
                "net": None if self.net is None else list(self.net),
                "trunk": None if self.trunk is None else list(self.trunk), "param_dtype": self.param_dtype,
                "optimizer": self.optimizer, "obs_dtype": self.obs_dtype, "action_dtype": self.action_dtype,
                "action_space": self.action_space.as_dict(), "obs_space": self.obs_space.as_dict(),
                "frame_stack": self.frame_stack, "her": self.her,
                **({"obs_ranges": {"source": self.obs_ranges.source, **self.obs_ranges.summary()}}
                   if self.obs_ranges is not None and self.storage == "calibrated" else {})}


def run_size(algo: str, buffer_size: "int | None", n_steps: "int | None") -> int:
    """The size a run of ``algo`` takes: ``n_steps`` if on-policy, else ``buffer_size``; SB3's default if None."""
    size = n_steps if is_on_policy(algo) else buffer_size
    return default_buffer_size(algo) if size is None else size


def check_sizes(algos: "tuple[str, ...]", buffer_size: "int | None", n_steps: "int | None") -> None:
    """Refuse a size no algorithm of ``algos`` takes (a replay capacity for PPO alone, n_steps for SAC alone)."""
    if buffer_size is not None and all(is_on_policy(a) for a in algos):
        raise PlannerError(f"buffer_size is the replay capacity of off-policy algorithms; {', '.join(algos)} "
                           f"{'take' if len(algos) > 1 else 'takes'} n_steps (per env)", "buffer_size")
    if n_steps is not None and not any(is_on_policy(a) for a in algos):
        raise PlannerError(f"n_steps is the rollout length of on-policy algorithms; {', '.join(algos)} "
                           f"{'take' if len(algos) > 1 else 'takes'} buffer_size (the replay capacity)", "n_steps")
