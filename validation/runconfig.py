"""RunConfig: one validation run (baseline or quantized), as passed to the child process in JSON."""

import json
from dataclasses import asdict, dataclass

from planner.envs import lookup_env, training_id
from planner.quantization import QuantSpec
from planner.runspec import RunSpec

STORAGES = ("baseline", "quantized")


@dataclass(frozen=True)
class RunConfig:
    """What to train and how to store it; ``buffer_size`` is the replay capacity (SAC) or n_steps (PPO).

    ``steps`` = 0 builds the model and buffer and stops (with ``memray``: the construction is traced).
    """

    env_id: str
    algo: str
    storage: str
    steps: int
    buffer_size: int
    decimals: int
    clamp: float = 127.0
    seed: int = 0
    fill: bool = False
    memray: bool = False
    sample_ms: float = 20.0

    @property
    def name(self) -> str:
        return f"{self.algo}-{self.storage}"

    @property
    def learning_starts(self) -> int:
        """SAC's learning_starts: the whole buffer with ``fill``, else 100 steps."""
        return self.buffer_size if self.fill else 100

    @property
    def first_update_step(self) -> int:
        """The environment step after which the first gradient update runs."""
        return self.learning_starts + 1 if self.algo == "sac" else self.buffer_size

    def quant(self) -> QuantSpec:
        """The width the buffers use: the exact level count (equal to Eq. 6 at b = 127)."""
        return QuantSpec.create(self.decimals, self.clamp, rule="exact")

    def run_spec(self) -> RunSpec:
        """The planner's view of this run: SB3 as is, or our packed layout, on the env it trains on."""
        dims = lookup_env(training_id(self.env_id))
        layout = "sb3" if self.storage == "baseline" else "packed"
        return RunSpec(self.algo, dims.obs_dim, dims.action_dim, self.buffer_size, layout=layout,
                       quant=self.quant() if self.storage == "quantized" else None,
                       obs_dtype=dims.obs_dtype, action_dtype=dims.action_dtype)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls(**json.loads(text))
