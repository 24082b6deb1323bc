"""Does a training run fit a device's budget, with which storage, and how large a buffer could it hold?

>>> from planner.profiles import load_profile
>>> result = fit(load_profile("jetson-nano"), obs_dim=111, action_dim=8, env_id="Ant-v3")
>>> [row.storage.name for row in result.rows if row.algo == "sac"]
['sb3', 'sb3-optimize', 'just-round', 'packed']
"""

from dataclasses import dataclass, replace

from planner.defaults import CLAMP, FIT_ALGOS, default_decimals
from planner.footprint import Footprint, footprint
from planner.profiles import DeviceProfile
from planner.quantization import QuantSpec
from planner.runspec import RunSpec, check_sizes, run_size
from planner.storages import STORAGES, Storage
from planner.units import auto_unit, format_bytes

MAX_SEARCH = 2**48


@dataclass(frozen=True)
class FitRow:
    """One algorithm in one storage on one device: predicted bytes against the budget."""

    algo: str
    storage: Storage
    spec: RunSpec
    footprint: Footprint
    budget_bytes: int
    max_buffer_size: int
    buffer_only: bool

    @property
    def label(self) -> str:
        return self.storage.label(self.spec, self.buffer_only)

    @property
    def predicted_bytes(self) -> int:
        """What the device must hold: everything, or the buffer alone where no Python runs."""
        return self.footprint.buffer_bytes if self.buffer_only else self.footprint.total_bytes

    @property
    def fits(self) -> bool:
        return self.predicted_bytes <= self.budget_bytes

    @property
    def headroom_bytes(self) -> int:
        return self.budget_bytes - self.predicted_bytes

    def as_dict(self) -> dict:
        quant = self.spec.quant
        return {"algo": self.algo, "storage": self.storage.name, "label": self.label,
                "bits": quant.bits if quant else None, "decimals": quant.decimals if quant else None,
                "size_param": self.spec.size_param, "buffer_size": self.spec.buffer_size, "n_envs": self.spec.n_envs,
                "obs_dtype": self.spec.obs_dtype, "predicted_bytes": self.predicted_bytes,
                "models_bytes": (None if self.buffer_only
                                 else self.footprint.models_bytes + self.footprint.optimizer_bytes),
                "buffer_bytes": self.footprint.buffer_bytes, "fits": self.fits,
                "headroom_bytes": self.headroom_bytes, "max_buffer_size": self.max_buffer_size}


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

    Exact to one transition: predicted(result) <= budget < predicted(result + 1).
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


def fit(profile: DeviceProfile, obs_dim: int, action_dim: int, algos: "tuple[str, ...]" = FIT_ALGOS,
        buffer_size: "int | None" = None, n_steps: "int | None" = None, net: "tuple[int, ...] | None" = None,
        decimals: "int | None" = None, clamp: float = CLAMP, n_envs: int = 1, env_id: str = "custom",
        obs_dtype: str = "float64", action_dtype: str = "float32") -> FitResult:
    """One row per (algorithm, storage that can hold it) against the profile's budget.

    ``buffer_size`` is the replay capacity of off-policy algorithms and ``n_steps`` the rollout
    length of on-policy ones (None: SB3's defaults); ``decimals`` None takes the paper's m per
    algorithm. A repeated algorithm counts once.
    """
    algos = tuple(dict.fromkeys(algos))
    check_sizes(algos, buffer_size, n_steps)
    budget = profile.budget().available
    rows = []
    for algo in algos:
        quant = QuantSpec.create(default_decimals(algo) if decimals is None else decimals, clamp)
        base = RunSpec(algo, obs_dim, action_dim, run_size(algo, buffer_size, n_steps), n_envs=n_envs, net=net,
                       obs_dtype=obs_dtype, action_dtype=action_dtype)
        for entry in STORAGES.values():
            spec = replace(base, storage=entry.name, quant=None if entry.quantized == "never" else quant)
            if entry.in_fit and entry.refusal(spec) is None:
                rows.append(FitRow(algo, entry, spec, footprint(spec), budget,
                                   max_buffer_size(spec, budget, profile.buffer_only), profile.buffer_only))
    return FitResult(profile, env_id, obs_dim, action_dim, tuple(rows))


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
        best, base, packed = best_row(rows), rows[0], rows[-1]
        if best is base:
            how = f"in {base.label}" if buffer_only else "as is"
            sentences.append(f"{what} fits {how} ({_size(base.predicted_bytes)} of {budget}, "
                             f"{_size(base.headroom_bytes)} headroom).")
        elif best is not None:
            sentence = (f"{what} in {base.label} needs {_size(base.predicted_bytes)} and does not fit {budget}; "
                        f"{best.label} fits: {_size(best.predicted_bytes)}, {_size(best.headroom_bytes)} headroom, "
                        f"room for {size_name} of up to {best.max_buffer_size:,}")
            if best is not packed:
                sentence += f"; {packed.label} leaves {_size(packed.headroom_bytes)} (up to {packed.max_buffer_size:,})"
            sentences.append(sentence + ".")
        else:
            top = max(rows, key=lambda row: row.max_buffer_size)
            if top.max_buffer_size == 0:
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
