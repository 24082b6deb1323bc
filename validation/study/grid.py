"""The trials of a study: one per env x algorithm x storage x seed of each group, each with a stable id."""

import json
import re
from dataclasses import asdict, dataclass

from planner.errors import PlannerError
from validation.study.spec import StudySpec
from validation.study.storages import run_config, shrunk_rows


@dataclass(frozen=True)
class Trial:
    """One training run. ``rows``: the buffer's rows as trained (PPO's n_steps, SAC's replay capacity; the
    ``equal-memory`` storage's shrunk ones); ``nominal_rows``: before shrinking."""

    env: str
    algo: str
    storage: str
    seed: int
    steps: int
    decimals: int
    rows: int
    nominal_rows: int
    learning_starts: int
    eval_every: int
    eval_episodes: int
    gpu: bool

    @property
    def id(self) -> str:
        """Deterministic from (env, algo, storage, seed, steps), safe as a file name.

        >>> Trial("my_envs:Arm-v0", "sac", "packed", 3, 50_000, 2, 10**6, 10**6, 100, 5000, 5, False).id
        'my_envs-Arm-v0_sac_packed_seed3_50000steps'
        """
        raw = f"{self.env}_{self.algo}_{self.storage}_seed{self.seed}_{self.steps}steps"
        return re.sub(r"[^A-Za-z0-9._-]", "-", raw)

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
                for storage in group.storages:
                    nominal = group.rows(algo)
                    decimals = group.decimals_of(algo)
                    rows = shrunk_rows(env, algo, nominal, decimals) if storage == "equal-memory" else nominal
                    for seed in group.seeds:
                        trial = Trial(env, algo, storage, seed, group.steps, decimals, rows, nominal,
                                      group.learning_starts, group.eval_every, group.eval_episodes, group.gpu)
                        try:
                            run_config(trial).check_trainable()
                        except PlannerError as exc:
                            raise PlannerError(f"{where}: {env} {algo} {storage}: {exc}", "spec") from None
                        if trial.id in seen:
                            raise PlannerError(f"{where}: trial {trial.id} is also in groups[{seen[trial.id]}]",
                                               "spec")
                        seen[trial.id] = index
                        out.append(trial)
    return out
