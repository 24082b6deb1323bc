"""A study's YAML: groups of trials, each group a grid of envs x algorithms x storages x seeds.

Read through :mod:`planner.yamlio`'s bounded loader; every bad field is one :class:`PlannerError` naming the
file and the field (``groups[1].steps``). The format (docs/study.md)::

    name: small                  # optional
    eval_every: 10000            # evaluate every K environment steps (default: steps / 10)
    eval_episodes: 5             # episodes per evaluation, deterministic policy (default 5)
    gpu: false                   # ask for one GPU per trial (Ray schedules it; SB3 trains on cuda)
    groups:
      - envs: [Hopper-v5, Walker2d-v5]
        algos: [ppo]
        storages: [sb3, float16, packed, calibrated]   # planner storages (planner estimate --help)
        equal_memory: false      # also train sb3 shrunk to the packed buffer's bytes (the paper's Figure 3)
        seeds: 3                 # 3 means seeds 0, 1, 2; or a list of seeds
        steps: 200000
        decimals: 1              # optional: the paper's m of the algorithm
        n_steps: 2048            # optional, PPO's rollout (SB3's default); SAC takes buffer_size, learning_starts

Any key of the top level but ``name`` and ``groups`` may also be set per group.
"""

from dataclasses import dataclass
from pathlib import Path

from planner.defaults import default_buffer_size, default_decimals, is_on_policy
from planner.envs import lookup_env, training_id
from planner.errors import PlannerError, quote
from planner.storages import STORAGES
from planner.units import MAX_COUNT
from planner.yamlio import read_yaml

SHIPPED = Path(__file__).resolve().parent / "specs"  # paper.yaml, small.yaml, smoke.yaml
TRAINABLE = tuple(name for name, entry in STORAGES.items() if entry.trainable)
ALGOS = ("ppo", "sac")
SHARED = ("eval_every", "eval_episodes", "gpu")  # top level, or per group
GROUP_KEYS = ("envs", "algos", "storages", "equal_memory", "seeds", "steps", "decimals", "n_steps", "buffer_size",
              "learning_starts", *SHARED)
DEFAULT_EPISODES = 5
MAX_SEEDS = 10_000


@dataclass(frozen=True, kw_only=True)
class Group:
    """One grid of trials, its settings checked."""

    envs: "tuple[str, ...]"
    algos: "tuple[str, ...]"
    storages: "tuple[str, ...]"
    equal_memory: bool
    seeds: "tuple[int, ...]"
    steps: int
    decimals: "int | None"  # None: the paper's m of each algorithm
    n_steps: "int | None"
    buffer_size: "int | None"
    learning_starts: int
    eval_every: int
    eval_episodes: int
    gpu: bool

    def rows(self, algo: str) -> int:
        """The buffer's rows before any shrinking: PPO's n_steps, SAC's replay capacity (SB3's defaults)."""
        size = self.n_steps if is_on_policy(algo) else self.buffer_size
        return default_buffer_size(algo) if size is None else size

    def decimals_of(self, algo: str) -> int:
        return default_decimals(algo) if self.decimals is None else self.decimals

    @property
    def trial_count(self) -> int:
        """Its trials: envs x algorithms x arms (the storages, and equal memory) x seeds, counted, not built."""
        return len(self.envs) * len(self.algos) * (len(self.storages) + self.equal_memory) * len(self.seeds)


@dataclass(frozen=True)
class StudySpec:
    name: str
    groups: "tuple[Group, ...]"
    source: str  # the file as the user named it

    @property
    def trial_count(self) -> int:
        """Its trials, counted (a trial given in two groups, which the grid refuses, counts twice)."""
        return sum(group.trial_count for group in self.groups)


def resolve(path: str) -> Path:
    """``path`` as given, or a shipped study by name (``small`` or ``small.yaml``) when no such file exists."""
    given = Path(path)
    shipped = SHIPPED / (path if path.endswith(".yaml") else f"{path}.yaml")
    return shipped if not given.exists() and "/" not in path and shipped.is_file() else given


def read_spec(path: str) -> StudySpec:
    """The study in the YAML file ``path`` (or a shipped one by name), every field checked."""
    data = read_yaml(resolve(path), f"study {path}", "spec")
    where = f"study {path}"
    if not isinstance(data, dict):
        raise PlannerError(f"{where}: a study is a mapping with a groups list, got {type(data).__name__}", "spec")
    _no_unknown(data, ("name", "groups", *SHARED), where)
    name = data.get("name", Path(path).stem)
    if not isinstance(name, str) or not name:
        raise PlannerError(f"{where}: name must be a non-empty text, got {quote(name)}", "spec")
    groups = data.get("groups")
    if not isinstance(groups, list) or not groups:
        raise PlannerError(f"{where}: groups must be a non-empty list of mappings, got {quote(groups)}", "spec")
    top = {key: data[key] for key in SHARED if key in data}
    return StudySpec(name, tuple(_group(g, top, f"{where}: groups[{i}]") for i, g in enumerate(groups)), path)


def _group(data: object, top: dict, where: str) -> Group:
    if not isinstance(data, dict):
        raise PlannerError(f"{where} must be a mapping, got {quote(data)}", "spec")
    _no_unknown(data, GROUP_KEYS, where)
    for key in ("envs", "algos", "storages", "seeds", "steps"):
        if key not in data:
            raise PlannerError(f"{where}.{key} is missing (a group needs envs, algos, storages, seeds and steps)",
                               "spec")
    value = {**top, **data}
    envs = _names(value["envs"], f"{where}.envs", None)
    for env in envs:
        try:
            lookup_env(training_id(env))
        except PlannerError as exc:
            raise PlannerError(f"{where}.envs: {exc}", "spec") from None
    algos = _names(value["algos"], f"{where}.algos", ALGOS)
    storages = _names(value["storages"], f"{where}.storages", TRAINABLE)
    equal_memory = value.get("equal_memory", False)
    if not isinstance(equal_memory, bool):
        raise PlannerError(f"{where}.equal_memory must be true or false, got {quote(equal_memory)}", "spec")
    seeds = value["seeds"]
    if _whole(seeds):
        if not 1 <= seeds <= MAX_SEEDS:
            raise PlannerError(f"{where}.seeds must be a count 1..{MAX_SEEDS:,} or a list of seeds, got {seeds}",
                               "spec")
        seeds = tuple(range(seeds))
    elif isinstance(seeds, list) and seeds and all(_whole(s) and 0 <= s < 2**32 for s in seeds):
        if len(set(seeds)) != len(seeds):
            raise PlannerError(f"{where}.seeds lists a seed twice: {quote(seeds)}", "spec")
        seeds = tuple(seeds)
    else:
        raise PlannerError(f"{where}.seeds must be a count or a non-empty list of seeds 0..2^32-1, got "
                           f"{quote(seeds)}", "spec")
    steps = _count(value["steps"], f"{where}.steps", 1)
    decimals = value.get("decimals")
    if decimals is not None and not (_whole(decimals) and 0 <= decimals <= 9):
        raise PlannerError(f"{where}.decimals must be a whole number 0..9 (the paper's m), got {quote(decimals)}",
                           "spec")
    sizes = {key: _count(value[key], f"{where}.{key}", 2) if value.get(key) is not None else None
             for key in ("n_steps", "buffer_size")}
    if sizes["n_steps"] is not None and not any(is_on_policy(a) for a in algos):
        raise PlannerError(f"{where}.n_steps is PPO's rollout length; this group runs {', '.join(algos)} (give "
                           "buffer_size)", "spec")
    if sizes["buffer_size"] is not None and all(is_on_policy(a) for a in algos):
        raise PlannerError(f"{where}.buffer_size is SAC's replay capacity; this group runs {', '.join(algos)} (give "
                           "n_steps)", "spec")
    learning_starts = _count(value.get("learning_starts", 100), f"{where}.learning_starts", 1)
    every = _count(value["eval_every"], f"{where}.eval_every", 1) if "eval_every" in value else max(1, steps // 10)
    episodes = _count(value.get("eval_episodes", DEFAULT_EPISODES), f"{where}.eval_episodes", 1)
    gpu = value.get("gpu", False)
    if not isinstance(gpu, bool):
        raise PlannerError(f"{where}.gpu must be true or false, got {quote(gpu)}", "spec")
    return Group(envs=envs, algos=algos, storages=storages, equal_memory=equal_memory, seeds=seeds, steps=steps,
                 decimals=decimals, n_steps=sizes["n_steps"], buffer_size=sizes["buffer_size"],
                 learning_starts=learning_starts, eval_every=every, eval_episodes=episodes, gpu=gpu)


def _no_unknown(data: dict, known: "tuple[str, ...]", where: str) -> None:
    unknown = [key for key in data if key not in known]
    if unknown:
        raise PlannerError(f"{where}: unknown key {quote(unknown[0])} (known: {', '.join(known)})", "spec")


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _count(value: object, where: str, least: int) -> int:
    if not (_whole(value) and least <= value <= MAX_COUNT):
        raise PlannerError(f"{where} must be a whole number from {least} to 2^53, got {quote(value)}", "spec")
    return value


def _names(value: object, where: str, allowed: "tuple[str, ...] | None") -> "tuple[str, ...]":
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not items or not all(isinstance(v, str) and v for v in items):
        raise PlannerError(f"{where} must be a name or a non-empty list of names, got {quote(value)}", "spec")
    for item in items:
        if allowed is not None and item not in allowed:
            raise PlannerError(f"{where}: {quote(item)} is not one of {', '.join(allowed)}", "spec")
    if len(set(items)) != len(items):
        raise PlannerError(f"{where} names an entry twice: {quote(items)}", "spec")
    return tuple(items)
