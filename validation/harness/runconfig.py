"""RunConfig: one validation run in one storage, as passed to the child process in JSON."""

import importlib
import json
from dataclasses import KW_ONLY, asdict, dataclass

from planner.algorithms import algorithm
from planner.defaults import CLAMP, is_on_policy
from planner.envs import lookup_env, training_id
from planner.errors import PlannerError
from planner.obs_ranges import ObservationRanges
from planner.quantization import Quantization
from planner.runspec import RunSpec
from planner.storages import storage


@dataclass(frozen=True)
class RunConfig:
    """What to train and how to store it; ``storage`` names an entry of :data:`planner.storages.STORAGES`
    that a buffer class implements for ``algo``'s buffer; ``buffer_size`` is the replay capacity (off-policy) or
    n_steps (on-policy).

    ``steps`` = 0 builds the model and buffer and stops (with ``memray``: the construction is traced);
    ``device``: where the model trains ("cpu" or "cuda").
    ``fill_pool``: with ``fill``, the replay buffer is written full before ``learn()`` from this many real env
    transitions, recorded once acting at random as the observation-ranges scan does (seed 0: the calibrated storage's
    scanned ranges come from the same stream) and written in a loop through the buffer's ``add()`` (microseconds a
    row, where acting costs a few hundred); 0: ``learn()`` acts one env step per row.
    ``obs_ranges``: the calibrated storage's :class:`~planner.obs_ranges.ObservationRanges` as a dict
    (:meth:`~planner.obs_ranges.ObservationRanges.as_dict`, so that the config travels as JSON); its m and b are
    the run's.
    """

    env_id: str
    algo: str
    storage: str
    _: KW_ONLY
    steps: int
    buffer_size: int
    decimals: int
    clamp: float = CLAMP
    seed: int = 0
    fill: bool = False
    fill_pool: int = 0
    memray: bool = False
    sample_ms: float = 20.0
    obs_ranges: "dict | None" = None
    device: str = "cpu"  # where torch trains: "cpu" or "cuda"
    tag: str = ""  # tells apart runs of one storage (the boundary experiment's sizes): the end of ``name``

    def __post_init__(self) -> None:
        if not storage(self.storage).trainable:
            raise ValueError(f"storage {self.storage} has no buffer class to train with")
        if self.obs_ranges is not None and self.storage != "calibrated":
            raise PlannerError(f"obs_ranges are the calibrated storage's, not {self.storage}'s", "obs_ranges")

    @property
    def ranges(self) -> "ObservationRanges | None":
        """The calibrated storage's observation ranges, read back from :attr:`obs_ranges`."""
        return None if self.obs_ranges is None else ObservationRanges.from_dict(self.obs_ranges, "obs_ranges")

    @property
    def name(self) -> str:
        return f"{self.algo}-{self.storage}" + (f"-{self.tag}" if self.tag else "")

    @property
    def learning_starts(self) -> int:
        """An off-policy algorithm's learning_starts: the whole buffer with ``fill`` (none when the pool filled it
        before ``learn()``), else SB3's 100 steps."""
        if self.fill:
            return 0 if self.fill_pool else self.buffer_size
        return 100

    @property
    def total_steps(self) -> int:
        """Environment steps of the run: the fill (with ``fill_pool``, rows written), then ``steps`` (on-policy
        algorithms round up to whole rollouts)."""
        return self.buffer_size + self.steps if (self.fill and not is_on_policy(self.algo)) else self.steps

    @property
    def pool_rows(self) -> int:
        """Rows a pool writes before ``learn()`` (``fill`` with ``fill_pool``: the whole buffer), counted as steps."""
        return self.buffer_size if (self.fill and self.fill_pool) else 0

    @property
    def learn_steps(self) -> int:
        """What ``learn()`` is asked for: :attr:`total_steps` less :attr:`pool_rows`."""
        return self.total_steps - self.pool_rows

    @property
    def first_update_step(self) -> int:
        """The environment step after which the first gradient update runs: the end of the first rollout, or the
        first multiple of the algorithm's train_freq past learning_starts (SB3 collects train_freq steps at a time,
        then updates once it has more than learning_starts)."""
        entry = algorithm(self.algo)
        if entry.on_policy:
            return self.buffer_size
        return self.pool_rows + entry.train_freq * (self.learning_starts // entry.train_freq + 1)

    def check_trainable(self) -> None:
        """Refuse what the child would refuse or silently change: a storage with no buffer class for the algorithm's
        buffer, fewer than 2 rows (SB3 needs 2 per env), on-policy steps below n_steps (whole rollouts are trained),
        ``fill`` with an on-policy algorithm (its rollout fills anyway), a ``fill_pool`` without ``fill`` or
        negative."""
        error = storage(self.storage).training_refusal(self.algo)
        if error is not None:
            raise error
        size = "n_steps" if is_on_policy(self.algo) else "buffer_size"
        if self.buffer_size < 2:
            raise PlannerError(f"{size} {self.buffer_size} is below 2: SB3's {self.algo} buffer needs at least 2 rows "
                               "per env (1 env here)", size)
        if is_on_policy(self.algo) and self.steps < self.buffer_size:
            raise PlannerError(f"steps {self.steps:,} is below n_steps {self.buffer_size:,}: {self.algo} trains whole "
                               f"rollouts, so it would train {self.buffer_size:,} steps; ask for at least that many "
                               "steps, or a shorter rollout", "steps", "n_steps")
        if is_on_policy(self.algo) and self.fill:
            raise PlannerError(f"fill fills an off-policy replay buffer before training; {self.algo} fills its rollout "
                               "buffer every n_steps anyway", "fill")
        if self.fill_pool and not self.fill:
            raise PlannerError(f"fill_pool {self.fill_pool:,} fills the buffer only with fill", "fill_pool", "fill")
        if self.fill_pool < 0:
            raise PlannerError(f"fill_pool must be at least 0, got {self.fill_pool:,}", "fill_pool")

    def run_spec(self) -> RunSpec:
        """The planner's view of this run, on the env it trains on, with the env's spaces (so an algorithm that
        cannot act in them is refused here, as ``planner fit`` refuses it)."""
        dims = lookup_env(training_id(self.env_id))
        quantized = storage(self.storage).quantized != "never"
        ranges = self.ranges
        if ranges is not None:
            ranges.check_fits(dims.obs_dim, f"observations of {self.env_id}")
        return RunSpec(self.algo, dims.obs_dim, dims.action_dim, self.buffer_size, storage=self.storage,
                       quant=Quantization.create(self.decimals, self.clamp) if quantized else None,
                       obs_dtype=dims.obs_dtype, action_dtype=dims.action_dtype, action_space=dims.action_space,
                       obs_space=dims.obs_space, obs_ranges=ranges)

    def buffer_arguments(self) -> dict:
        """The keyword arguments that give an SB3 model this run's buffer (class and its kwargs); none for a recurrent
        rollout, whose class RecurrentPPO builds itself (the only one the registry names for it)."""
        entry, kind = storage(self.storage), algorithm(self.algo).buffer_kind
        error = entry.training_refusal(self.algo)
        if error is not None:
            raise error
        if kind == "recurrent":
            return {}
        module, name = entry.buffers[kind].split(":")
        kwargs = dict(entry.buffer_kwargs)
        if self.storage == "calibrated" and self.obs_ranges is None:
            raise PlannerError("the calibrated storage needs observation ranges (planner obs scan)", "obs_ranges")
        if self.obs_ranges is not None:  # the ranges carry m and b
            kwargs.update(obs_ranges=self.ranges)
        elif entry.quantized != "never":
            kwargs.update(decimals=self.decimals, clamp=self.clamp)
        arguments = {f"{kind}_buffer_class": getattr(importlib.import_module(module), name)}
        if "optimize_memory_usage" in kwargs:  # SB3 passes the model's own flag to the buffer
            arguments["optimize_memory_usage"] = kwargs.pop("optimize_memory_usage")
        arguments[f"{kind}_buffer_kwargs"] = kwargs
        return arguments

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "RunConfig":
        return cls(**json.loads(text))
