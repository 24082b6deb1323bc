"""Does a training run fit a device's budget, with which storage, and how large a buffer could it hold?

>>> from planner.profiles import load_profile
>>> result = fit(load_profile("jetson-nano"), obs_dim=111, action_dim=8, env_id="Ant-v3")
>>> [row.storage.name for row in result.rows if row.algo == "sac"]
['sb3', 'sb3-optimize', 'just-round', 'packed', 'float16', 'bfloat16']
"""

from dataclasses import dataclass, replace
from typing import Any

from planner.actions import ActionSpace
from planner.algorithms import ALGORITHMS, algorithm
from planner.defaults import CLAMP, FIT_ALGOS, default_decimals
from planner.footprint import Footprint, footprint
from planner.gpu import DevicePool, device_pool
from planner.observations import ObsSpace
from planner.profiles import DeviceProfile
from planner.quantization import Quantization
from planner.runspec import RunSpec, check_sizes, run_size
from planner.storages import STORAGES, Storage
from planner.units import auto_unit, format_bytes

MAX_SEARCH = 2**48


@dataclass(frozen=True, kw_only=True)
class FitRow:
    """One algorithm in one storage on one device: predicted bytes against the budget."""

    algo: str
    storage: Storage
    spec: RunSpec
    footprint: Footprint
    budget_bytes: int
    max_buffer_size: int
    buffer_only: bool
    gpu: "DevicePool | None" = None  # a discrete GPU's pool: models, optimizer state, the update
    gpu_budget_bytes: "int | None" = None

    @property
    def label(self) -> str:
        return self.storage.label(self.spec, self.buffer_only)

    @property
    def predicted_bytes(self) -> int:
        """What host memory must hold: everything; the buffer alone where no Python runs or a discrete GPU
        holds the networks."""
        return self.footprint.buffer_bytes if (self.buffer_only or self.gpu) else self.footprint.total_bytes

    @property
    def fits_gpu(self) -> bool:
        return self.gpu is None or self.gpu.total_bytes <= self.gpu_budget_bytes

    @property
    def failing_pools(self) -> "list[str]":
        """The memory pools this row does not fit: "host" and/or "GPU"."""
        return [pool for pool, ok in (("host", self.predicted_bytes <= self.budget_bytes), ("GPU", self.fits_gpu))
                if not ok]

    @property
    def fits(self) -> bool:
        return not self.failing_pools

    @property
    def headroom_bytes(self) -> int:
        return self.budget_bytes - self.predicted_bytes

    @property
    def gpu_headroom_bytes(self) -> "int | None":
        return None if self.gpu is None else self.gpu_budget_bytes - self.gpu.total_bytes

    def as_dict(self) -> dict:
        quant, calibrated = self.spec.quant, self.storage.name == "calibrated"
        return {"algo": self.algo, "storage": self.storage.name, "label": self.label,
                "bits": quant.bits if quant and not calibrated else None,
                "decimals": quant.decimals if quant else None,
                **({"mean_bits": self.spec.obs_ranges.mean_bits} if calibrated else {}),
                "size_param": self.spec.size_param, "buffer_size": self.spec.buffer_size, "n_envs": self.spec.n_envs,
                "obs_dtype": self.spec.obs_dtype, "predicted_bytes": self.predicted_bytes,
                "models_bytes": (None if self.buffer_only
                                 else self.footprint.models_bytes + self.footprint.optimizer_bytes),
                "buffer_bytes": self.footprint.buffer_bytes, "fits": self.fits, "failing_pools": self.failing_pools,
                "headroom_bytes": self.headroom_bytes, "max_buffer_size": self.max_buffer_size,
                "gpu": None if self.gpu is None else {**self.gpu.as_dict(), "budget_bytes": self.gpu_budget_bytes,
                                                      "headroom_bytes": self.gpu_headroom_bytes}}


@dataclass(frozen=True)
class FitResult:
    profile: DeviceProfile
    env_id: str
    obs_dim: int
    action_dim: int
    rows: "tuple[FitRow, ...]"

    @property
    def budget_bytes(self) -> int:
        return self.profile.budget().available

    def by_algo(self) -> "dict[str, list[FitRow]]":
        """The rows of each algorithm, in the order compared (least intrusive storage first)."""
        out: "dict[str, list[FitRow]]" = {}
        for row in self.rows:
            out.setdefault(row.algo, []).append(row)
        return out


def max_buffer_size(spec: RunSpec, budget: int, buffer_only: bool) -> int:
    """The largest buffer_size whose prediction fits ``budget`` (0 if not even one transition fits).

    ``buffer_only``: the budget holds the buffer alone (a microcontroller, or host RAM beside a discrete
    GPU). Exact to one transition: predicted(result) <= budget < predicted(result + 1).
    """
    def fits(size: int) -> bool:
        fp = footprint(replace(spec, buffer_size=size))
        return (fp.buffer_bytes if buffer_only else fp.total_bytes) <= budget

    if not fits(1):
        return 0
    low, high = 1, 2
    while fits(high):
        low, high = high, high * 2
        if high > MAX_SEARCH:
            return MAX_SEARCH
    while high - low > 1:  # invariant: fits(low), not fits(high)
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    return low


def fit(profile: DeviceProfile, obs_dim: int, action_dim: int, algos: "tuple[str, ...]" = FIT_ALGOS, *,
        buffer_size: "int | None" = None, n_steps: "int | None" = None, net: "tuple[int, ...] | None" = None,
        decimals: "int | None" = None, clamp: float = CLAMP, n_envs: int = 1, env_id: str = "custom",
        obs_dtype: str = "float64", action_dtype: str = "float32",
        action_space: "ActionSpace | None" = None, obs_space: "ObsSpace | None" = None, frame_stack: int = 1,
        her: bool = False, scans: "tuple[Any, ...]" = ()) -> FitResult:
    """One row per (algorithm, storage that can hold it) against the profile's budget; a repeated algorithm counts
    once.

    :param buffer_size: the replay capacity of the off-policy algorithms (None: SB3's default)
    :param n_steps: the rollout length per env of the on-policy ones (None: SB3's default)
    :param net: hidden sizes (None: SB3's per algorithm)
    :param decimals: m (None: the paper's per algorithm, :func:`planner.defaults.default_decimals`)
    :param clamp: b
    :param n_envs: envs stepped together
    :param env_id: the env the result names
    :param obs_dtype: the dtype of the flat Box(``obs_dim``) observations
    :param action_dtype: the dtype of the Box(``action_dim``) actions
    :param action_space: the actions instead of Box(``action_dim``)
    :param obs_space: the observations (an image, a Dict) instead of the flat Box; storages that cannot hold them
        (the quantized ones on anything but a float Box, sb3-optimize on a Dict) give no row
    :param frame_stack: SB3's ``VecFrameStack(n)``
    :param her: the off-policy algorithms keep a HerReplayBuffer (the on-policy ones their rollout)
    :param scans: :class:`planner.obs_ranges.ObservationRanges` that add the calibrated row: per algorithm those at
        its m, or the only ones given (at their own m)
    """
    algos = tuple(dict.fromkeys(algos))
    check_sizes(algos, buffer_size, n_steps)
    budget, gpu_budget = profile.budget().available, profile.gpu_budget()
    host_buffer_only = profile.buffer_only or gpu_budget is not None
    rows = []
    for algo in algos:
        quant = Quantization.create(default_decimals(algo) if decimals is None else decimals, clamp)
        box = action_space is None
        flat = obs_space is None
        base = RunSpec(algo, obs_dim if flat else None, action_dim if box else None,
                       run_size(algo, buffer_size, n_steps), n_envs=n_envs, net=net,
                       obs_dtype=obs_dtype if flat else None, action_dtype=action_dtype if box else None,
                       action_space=action_space, obs_space=obs_space, frame_stack=frame_stack,
                       her=her and not algorithm(algo).on_policy)
        obs_ranges = _ranges_for(scans, quant.decimals)
        for entry in STORAGES.values():
            spec = replace(base, storage=entry.name, quant=None if entry.quantized == "never" else quant)
            if entry.name == "calibrated" and obs_ranges is not None:
                quant = Quantization.create(obs_ranges.decimals, obs_ranges.clamp)
                spec = replace(spec, obs_ranges=obs_ranges, quant=quant)
            if entry.in_fit and entry.refusal(spec) is None:
                gpu = None if gpu_budget is None else device_pool(spec)
                largest = max_buffer_size(spec, budget, host_buffer_only)
                row = FitRow(algo=algo, storage=entry, spec=spec, footprint=footprint(spec), budget_bytes=budget,
                             max_buffer_size=largest, buffer_only=profile.buffer_only, gpu=gpu,
                             gpu_budget_bytes=None if gpu_budget is None else gpu_budget.available)
                rows.append(row if row.fits_gpu else replace(row, max_buffer_size=0))  # no size helps the GPU
    return FitResult(profile, env_id, obs_dim, action_dim, tuple(rows))


def _ranges_for(scans: "tuple[Any, ...]", decimals: int) -> Any:
    """The observation ranges at m = ``decimals``; else the only one given; else None."""
    at_m = [ranges for ranges in scans if ranges.decimals == decimals]
    return at_m[0] if at_m else scans[0] if len(scans) == 1 else None


def default_algos(action_space: "ActionSpace | None") -> "tuple[str, ...]":
    """What ``fit`` compares unless told: the paper's PPO and SAC, each replaced where it cannot act in
    ``action_space`` by the first algorithm of the same kind (on- or off-policy) that can (DQN for Discrete).

    >>> default_algos(None), default_algos(ActionSpace.discrete(2))
    (('ppo', 'sac'), ('ppo', 'dqn'))
    """
    space = action_space or ActionSpace.box(1)
    chosen = []
    for name in FIT_ALGOS:
        kind = algorithm(name).on_policy
        fallback = (a.name for a in ALGORITHMS.values() if a.on_policy == kind and a.refusal(space) is None)
        chosen.append(name if algorithm(name).refusal(space) is None else next(fallback))
    return tuple(dict.fromkeys(chosen))


def best_row(rows: "list[FitRow]") -> "FitRow | None":
    """The least intrusive option that fits: rows are ordered from 'as is' to 'most compressed'."""
    return next((row for row in rows if row.fits), None)


def _size(n: int) -> str:
    return format_bytes(n, auto_unit(abs(n)))


def recommendation(result: FitResult) -> str:
    """One sentence per algorithm: what to run, with how much headroom, or what to shrink."""
    budget = _size(result.budget_bytes)
    buffer_only = result.profile.buffer_only
    sentences = []
    for algo, rows in result.by_algo().items():
        size_name = f"{'an n_steps' if rows[0].spec.size_param == 'n_steps' else 'a buffer'}"
        what = f"{algo.upper()}'s buffer" if buffer_only else algo.upper()
        best, base = best_row(rows), rows[0]
        packed = max(rows, key=lambda row: row.max_buffer_size)  # the most compact storage
        if best is base:
            how = f"in {base.label}" if buffer_only else "as is"
            gpu = f"; GPU {_size(base.gpu.total_bytes)} of {_size(base.gpu_budget_bytes)}" if base.gpu else ""
            sentences.append(f"{what} fits {how} ({'host RAM ' if gpu else ''}{_size(base.predicted_bytes)} of "
                             f"{budget}, {_size(base.headroom_bytes)} headroom{gpu}).")
        elif best is not None:
            sentence = (f"{what} in {base.label} needs {_size(base.predicted_bytes)} and does not fit {budget}; "
                        f"{best.label} fits: {_size(best.predicted_bytes)}, {_size(best.headroom_bytes)} headroom, "
                        f"room for {size_name} of up to {best.max_buffer_size:,}")
            if best is not packed:
                sentence += f"; {packed.label} leaves {_size(packed.headroom_bytes)} (up to {packed.max_buffer_size:,})"
            sentences.append(sentence + ".")
        else:
            top = max(rows, key=lambda row: row.max_buffer_size)
            if not base.fits_gpu:
                sentences.append(f"{what} does not fit the GPU at any buffer size: models, optimizer state and "
                                 f"the update need {_size(base.gpu.total_bytes)} (an estimate for the update) of "
                                 f"the {_size(base.gpu_budget_bytes)} the GPU leaves"
                                 f"{' (host RAM too small as well)' if 'host' in base.failing_pools else ''}.")
            elif top.max_buffer_size == 0:
                alone = "one transition alone exceeds" if buffer_only else "the networks alone exceed"
                sentences.append(f"{what} does not fit at any size: {alone} the {budget} budget.")
            else:
                sentences.append(
                    f"{what} does not fit with {size_name} of {base.spec.buffer_size:,} in any storage; "
                    f"in {top.label}, {size_name} of up to {top.max_buffer_size:,} fits "
                    f"({base.label}: {base.max_buffer_size:,}).")
    if buffer_only:
        sentences.append("This is a microcontroller profile with no Python runtime: figures are for the buffer alone "
                         "(networks and optimizer would have to live elsewhere).")
    return " ".join(sentences)
