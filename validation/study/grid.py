"""The trials of a study: one per env x algorithm x arm x seed of each group, each with a stable id.

An arm is a storage of :data:`planner.storages.STORAGES`, or :data:`EQUAL_MEMORY`: SB3's buffer (``sb3``)
shrunk to the bytes of the packed buffer, the paper's Figure 3 (a group's ``equal_memory: true``).
"""

import json
import re
from dataclasses import KW_ONLY, asdict, dataclass, replace
from typing import NamedTuple

from planner.defaults import CLAMP, default_decimals, is_on_policy
from planner.envs import lookup_env, training_id
from planner.errors import PlannerError
from planner.fit import max_buffer_size
from planner.footprint import footprint
from planner.obs_ranges import DimRange, ObservationRanges
from planner.storages import STORAGES
from planner.units import format_bytes
from validation.harness.runconfig import RunConfig
from validation.study.spec import StudySpec

BASELINE = "sb3"  # what every arm is compared with
EQUAL_MEMORY = "equal-memory"
ARMS = (*(name for name, entry in STORAGES.items() if entry.trainable), EQUAL_MEMORY)  # the tables' order


def arm_name(storage: str, algo: str, decimals: int, equal_memory: bool = False) -> str:
    """The arm a trial belongs to: its storage, ``-mN`` added where the storage quantizes at an m other than the
    paper's for the algorithm, or :data:`EQUAL_MEMORY`.

    >>> arm_name("packed", "sac", 2), arm_name("packed", "sac", 3), arm_name("sb3", "ppo", 3)
    ('packed', 'packed-m3', 'sb3')
    """
    if equal_memory:
        return EQUAL_MEMORY
    if STORAGES[storage].quantized == "always" and decimals != default_decimals(algo):
        return f"{storage}-m{decimals}"
    return storage


def arm_order(arm: str) -> "tuple[int, str]":
    """Where ``arm`` goes in tables and plots: in :data:`ARMS` order, an ``-mN`` arm after its storage's."""
    base, _, _ = arm.partition("-m")
    return ARMS.index(arm if arm in ARMS else base), arm


def shrunk_rows(env: str, algo: str, rows: int, decimals: int) -> int:
    """The rows of SB3's buffer that fit the bytes of the packed buffer of ``rows`` rows (the planner's
    prediction, exact to one row).

    >>> shrunk_rows("Hopper-v5", "sac", 1_000_000, 2), shrunk_rows("Humanoid-v5", "sac", 1_000_000, 2)
    (245361, 132227)
    """
    packed = RunConfig(env, algo, "packed", steps=rows, buffer_size=rows, decimals=decimals).run_spec()
    plain = replace(packed, storage="sb3", quant=None)
    return max(2, max_buffer_size(plain, footprint(packed).buffer_bytes, buffer_only=True))


@dataclass(frozen=True)
class Trial:
    """One training run. ``rows``: the buffer's rows as trained (PPO's n_steps, SAC's replay capacity; the
    equal-memory arm's shrunk ones); ``nominal_rows``: before shrinking."""

    env: str
    algo: str
    storage: str
    _: KW_ONLY
    seed: int
    steps: int
    decimals: int
    rows: int
    nominal_rows: int
    learning_starts: int
    eval_every: int
    eval_episodes: int
    gpu: bool
    equal_memory: bool = False

    @property
    def arm(self) -> str:
        """:func:`arm_name` of this trial."""
        return arm_name(self.storage, self.algo, self.decimals, self.equal_memory)

    @property
    def id(self) -> str:
        """Deterministic from (env, algo, arm, seed, steps), safe as a file name (the arm says m where it is not
        the paper's).

        >>> Trial("my_envs:Arm-v0", "sac", "packed", seed=3, steps=50_000, decimals=2, rows=10**6,
        ...       nominal_rows=10**6, learning_starts=100, eval_every=5000, eval_episodes=5, gpu=False).id
        'my_envs-Arm-v0_sac_packed_seed3_50000steps'
        """
        raw = f"{self.env}_{self.algo}_{self.arm}_seed{self.seed}_{self.steps}steps"
        return re.sub(r"[^A-Za-z0-9._-]", "-", raw)

    def run_config(self, obs_ranges: "dict | None" = None) -> RunConfig:
        """The validation harness's view of this trial (the calibrated storage's ranges: ``obs_ranges``)."""
        return RunConfig(self.env, self.algo, self.storage, steps=self.steps, buffer_size=self.rows,
                         decimals=self.decimals, seed=self.seed, obs_ranges=obs_ranges,
                         device="cuda" if self.gpu else "cpu")

    @property
    def cell(self) -> "tuple[str, str]":
        return self.env, self.algo

    def record(self) -> dict:
        """The trial as its start record holds it."""
        return {**asdict(self), "id": self.id}

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Trial":
        return cls(**json.loads(text))


class Arm(NamedTuple):
    """One arm of a group (env x algorithm x storage, or equal memory), checked."""

    group: int  # the group's index in the spec
    trial: Trial  # at the group's first seed
    predicted: int  # bytes: predicted_bytes(trial)


def arms(spec: StudySpec) -> "list[Arm]":
    """Each arm of each group, in group order, checked once as the harness checks a run (the algorithm acts in the
    env's spaces, the storage holds its buffer, PPO's steps cover a rollout, a buffer has 2 rows) and sized."""
    out = []
    for index, group in enumerate(spec.groups):
        for env in group.envs:
            for algo in group.algos:
                nominal, decimals = group.rows(algo), group.decimals_of(algo)
                for storage, equal_memory in [(name, False) for name in group.storages] + \
                        [(BASELINE, True)] * group.equal_memory:
                    try:
                        RunConfig(env, algo, storage, steps=group.steps, buffer_size=nominal,
                                  decimals=decimals).check_trainable()
                        rows = shrunk_rows(env, algo, nominal, decimals) if equal_memory else nominal
                        trial = Trial(env, algo, storage, seed=group.seeds[0], steps=group.steps, decimals=decimals,
                                      rows=rows, nominal_rows=nominal, learning_starts=group.learning_starts,
                                      eval_every=group.eval_every, eval_episodes=group.eval_episodes, gpu=group.gpu,
                                      equal_memory=equal_memory)
                        out.append(Arm(index, trial, predicted_bytes(trial)))
                    except PlannerError as exc:
                        arm = arm_name(storage, algo, decimals, equal_memory)
                        raise PlannerError(f"study {spec.source}: groups[{index}]: {env} {algo} {arm}: {exc}",
                                           "spec") from None
    return out


def trials(spec: StudySpec, checked: "list[Arm] | None" = None) -> "list[Trial]":
    """Every trial of ``spec`` in group order, of its arms (``checked``, else :func:`arms`); a trial given twice is
    refused."""
    out, seen = [], {}
    for index, first, _ in arms(spec) if checked is None else checked:
        for seed in spec.groups[index].seeds:
            trial = replace(first, seed=seed)
            if trial.id in seen:
                raise PlannerError(f"study {spec.source}: groups[{index}]: trial {trial.id} is also in "
                                   f"groups[{seen[trial.id]}]", "spec")
            seen[trial.id] = index
            out.append(trial)
    return out


def predicted_bytes(trial: Trial) -> int:
    """The planner's footprint of ``trial`` (models, optimizer state, buffer); for the calibrated storage, whose
    observation ranges are scanned as the trial starts, the least it can be (every dimension 0 bits wide)."""
    ranges = None
    if trial.storage == "calibrated":
        narrowest = DimRange(0, 0, 0, 0.0, 0.0, 0.0)
        dims = lookup_env(training_id(trial.env)).obs_dim
        ranges = ObservationRanges(trial.decimals, CLAMP, (narrowest,) * dims).as_dict()
    return footprint(trial.run_config(ranges).run_spec()).total_bytes


def check_memory(spec: StudySpec, checked: "list[Arm]", memory: int, whose: str) -> None:
    """Refuse the first of the ``checked`` arms of ``spec`` whose predicted footprint exceeds ``memory`` bytes,
    ``whose`` memory that is (``this host's``), naming its group and its size."""
    for index, trial, need in checked:
        if need > memory:
            size = "n_steps" if is_on_policy(trial.algo) else "buffer_size"
            raise PlannerError(f"study {spec.source}: groups[{index}]: {trial.env} {trial.algo} {trial.arm}: {size} "
                               f"{trial.nominal_rows:,} needs {format_bytes(need)} (the planner's footprint), more "
                               f"than {whose} memory of {format_bytes(memory)}: give a smaller {size}", "spec")
