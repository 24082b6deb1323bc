"""RunSpec: everything the analytical model needs to size one training run."""

from dataclasses import dataclass

from planner.errors import PlannerError
from planner.quantization import QuantSpec

ALGOS = ("ppo", "sac", "td3")
DEFAULT_BUFFER = {"ppo": 2048, "sac": 1_000_000, "td3": 1_000_000}  # SB3's n_steps and replay capacity
DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8, "uint8": 1, "uint16": 2, "int32": 4, "int64": 8}


@dataclass(frozen=True)
class RunSpec:
    """One training run: algorithm, dimensions, buffer capacity and how the buffer stores its fields.

    ``buffer_size`` is the replay capacity in transitions for SAC/TD3 (SB3: rows per env are
    ``buffer_size // n_envs``) and ``n_steps`` per env for PPO (rows = n_steps * n_envs).

    >>> RunSpec("sac", obs_dim=348, action_dim=17, buffer_size=1_000_000).is_replay
    True
    """

    algo: str
    obs_dim: int
    action_dim: int
    buffer_size: int
    n_envs: int = 1
    layout: str = "sb3"
    quant: "QuantSpec | None" = None
    net: "tuple[int, ...] | None" = None
    trunk: "tuple[int, ...] | None" = None  # PPO: hidden layers shared by policy and value (see sb3_models)
    param_dtype: str = "float32"
    optimizer: bool = True
    obs_dtype: str = "float64"
    action_dtype: str = "float32"
    terminal_capacity: "int | None" = None

    def __post_init__(self) -> None:
        if self.algo not in ALGOS:
            raise PlannerError(f"unknown algo {self.algo!r} (expected one of {', '.join(ALGOS)})")
        for name in ("obs_dim", "action_dim", "buffer_size", "n_envs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                label = "buffer-size (n-steps for ppo)" if name == "buffer_size" and self.algo == "ppo" else name
                raise PlannerError(f"{label.replace('_', '-')} must be a whole number >= 1, got {value!r}")
        for name in ("param_dtype", "obs_dtype", "action_dtype"):
            if getattr(self, name) not in DTYPE_BYTES:
                raise PlannerError(f"unknown {name.replace('_', '-')} {getattr(self, name)!r} "
                                   f"(expected one of {', '.join(DTYPE_BYTES)})")
        if self.terminal_capacity is not None and self.terminal_capacity < 1:
            raise PlannerError(f"terminal-capacity must be >= 1, got {self.terminal_capacity!r}")

    @property
    def is_replay(self) -> bool:
        return self.algo in ("sac", "td3")

    @property
    def rows(self) -> int:
        """Rows each per-step field holds, all envs together (SB3's buffer_size semantics)."""
        if self.is_replay:
            return max(self.buffer_size // self.n_envs, 1) * self.n_envs
        return self.buffer_size * self.n_envs
