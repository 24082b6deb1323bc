"""The trials of a study: one per env x algorithm x arm x seed of each group, each with a stable id.

An arm is a storage of :data:`planner.storages.STORAGES`, or :data:`EQUAL_MEMORY`: SB3's buffer (``sb3``)
shrunk to the bytes of the packed buffer, the paper's Figure 3 (a group's ``equal_memory: true``).
"""

import json
import re
from dataclasses import KW_ONLY, asdict, dataclass, replace

from planner.errors import PlannerError
from planner.fit import max_buffer_size
from planner.footprint import footprint
from planner.storages import STORAGES
from validation.harness.runconfig import RunConfig
from validation.study.spec import StudySpec

BASELINE = "sb3"  # what every arm is compared with
EQUAL_MEMORY = "equal-memory"
ARMS = (*(name for name, entry in STORAGES.items() if entry.trainable), EQUAL_MEMORY)  # the tables' order


def shrunk_rows(env: str, algo: str, rows: int, decimals: int) -> int:
    """The rows of SB3's buffer that fit the bytes of the packed buffer of ``rows`` rows (the planner's
    prediction, exact to one row).

    >>> shrunk_rows("Hopper-v5", "sac", 1_000_000, 2), shrunk_rows("Humanoid-v5", "sac", 1_000_000, 2)
    (262500, 132856)
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
        """The storage, or :data:`EQUAL_MEMORY` for SB3's buffer shrunk to the packed one's bytes."""
        return EQUAL_MEMORY if self.equal_memory else self.storage

    @property
    def id(self) -> str:
        """Deterministic from (env, algo, arm, seed, steps), safe as a file name.

        >>> Trial("my_envs:Arm-v0", "sac", "packed", seed=3, steps=50_000, decimals=2, rows=10**6,
        ...       nominal_rows=10**6, learning_starts=100, eval_every=5000, eval_episodes=5, gpu=False).id
        'my_envs-Arm-v0_sac_packed_seed3_50000steps'
        """
        raw = f"{self.env}_{self.algo}_{self.arm}_seed{self.seed}_{self.steps}steps"
        return re.sub(r"[^A-Za-z0-9._-]", "-", raw)

    def run_config(self, obs_ranges: "dict | None" = None) -> RunConfig:
        """The validation harness's view of this trial (the calibrated storage's ranges: ``obs_ranges``)."""
        return RunConfig(self.env, self.algo, self.storage, steps=self.steps, buffer_size=self.rows,
                         decimals=self.decimals, seed=self.seed, obs_ranges=obs_ranges)

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


def trials(spec: StudySpec) -> "list[Trial]":
    """Every trial of ``spec`` in group order, each checked as the harness checks a run (PPO's steps cover a
    rollout, a buffer has 2 rows); a trial given twice is refused."""
    out, seen = [], {}
    for index, group in enumerate(spec.groups):
        where = f"study {spec.source}: groups[{index}]"
        for env in group.envs:
            for algo in group.algos:
                arms = [(name, False) for name in group.storages] + [(BASELINE, True)] * group.equal_memory
                for storage, equal_memory in arms:
                    nominal = group.rows(algo)
                    decimals = group.decimals_of(algo)
                    rows = shrunk_rows(env, algo, nominal, decimals) if equal_memory else nominal
                    for seed in group.seeds:
                        trial = Trial(env, algo, storage, seed=seed, steps=group.steps, decimals=decimals, rows=rows,
                                      nominal_rows=nominal, learning_starts=group.learning_starts,
                                      eval_every=group.eval_every, eval_episodes=group.eval_episodes, gpu=group.gpu,
                                      equal_memory=equal_memory)
                        try:
                            trial.run_config().check_trainable()
                        except PlannerError as exc:
                            raise PlannerError(f"{where}: {env} {algo} {storage}: {exc}", "spec") from None
                        if trial.id in seen:
                            raise PlannerError(f"{where}: trial {trial.id} is also in groups[{seen[trial.id]}]",
                                               "spec")
                        seen[trial.id] = index
                        out.append(trial)
    return out
