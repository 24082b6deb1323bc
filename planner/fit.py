"""Does a training run fit a device's budget, with which storage, and how large a buffer could it hold?

>>> from planner.profiles import load_profile
>>> result = fit(load_profile("jetson-nano"), obs_dim=111, action_dim=8)
>>> [row.storage for row in result.rows if row.algo == "sac"][:2]
['sb3', 'sb3-optimize']
"""

from dataclasses import dataclass, replace

from planner.footprint import Footprint, footprint
from planner.paper import PAPER_DECIMALS
from planner.profiles import DeviceProfile
from planner.quantization import QuantSpec, eq6_bits
from planner.runspec import DEFAULT_BUFFER, RunSpec
from planner.units import auto_unit, format_bytes

MAX_SEARCH = 2**48


@dataclass(frozen=True)
class StorageOption:
    key: str
    label: str
    layout: str
    quant: "QuantSpec | None" = None


@dataclass(frozen=True)
class FitRow:
    algo: str
    option: StorageOption
    spec: RunSpec
    footprint: Footprint
    predicted_bytes: int
    budget_bytes: int
    max_buffer_size: int

    @property
    def storage(self) -> str:
        return self.option.key

    @property
    def fits(self) -> bool:
        return self.predicted_bytes <= self.budget_bytes

    @property
    def headroom_bytes(self) -> int:
        return self.budget_bytes - self.predicted_bytes

    def as_dict(self) -> dict:
        quant = self.option.quant
        return {"algo": self.algo, "storage": self.storage, "label": self.option.label, "layout": self.option.layout,
                "bits": quant.bits if quant else None, "decimals": quant.decimals if quant else None,
                "buffer_size": self.spec.buffer_size, "predicted_bytes": self.predicted_bytes,
                "models_bytes": self.footprint.models_bytes + self.footprint.optimizer_bytes,
                "buffer_bytes": self.footprint.buffer_bytes, "fits": self.fits,
                "headroom_bytes": self.headroom_bytes, "max_buffer_size": self.max_buffer_size}


@dataclass(frozen=True)
class FitResult:
    profile: DeviceProfile
    obs_dim: int
    action_dim: int
    rows: "tuple[FitRow, ...]"

    @property
    def budget_bytes(self) -> int:
        return self.profile.budget().available


def storage_options(algo: str, decimals: "int | None" = None, clamp: float = 127.0) -> "list[StorageOption]":
    """SB3 as is, SB3 with optimize_memory_usage (replay), the authors' uint16, packed (Eq. 6) and packed (exact)."""
    m = PAPER_DECIMALS[algo] if decimals is None else decimals
    exact = QuantSpec.create(m, clamp, rule="exact")
    options = [StorageOption("sb3", "stable-baselines3 as is (float64 obs)", "sb3")]
    if algo != "ppo":
        options.append(StorageOption("sb3-optimize", "SB3 optimize_memory_usage (timeouts become terminal)", "sb3-optimize"))
    if m <= 2 and clamp <= 127:
        options.append(StorageOption("just-round", f"authors' uint16 (m={m})", "just-round", exact))
    if eq6_bits(m, clamp) >= exact.bits:  # Eq. 6 undercounts for some clamps: no such row then
        eq6 = QuantSpec.create(m, clamp)
        options.append(StorageOption("packed", f"packed {eq6.bits}-bit, Eq. 6 (m={m}, b={clamp:g})", "packed", eq6))
    options.append(StorageOption("packed-exact", f"packed {exact.bits}-bit, exact levels (m={m}, b={clamp:g})",
                                 "packed", exact))
    return options


def predicted_bytes(spec: RunSpec, buffer_only: bool) -> "tuple[int, Footprint]":
    """Total bytes of ``spec`` (the buffer alone where the device runs no Python)."""
    fp = footprint(spec)
    return (fp.buffer_bytes if buffer_only else fp.total_bytes), fp


def max_buffer_size(spec: RunSpec, budget: int, buffer_only: bool) -> int:
    """The largest buffer_size whose prediction fits ``budget`` (0 if not even one transition fits).

    Exact to one transition: predicted(result) <= budget < predicted(result + 1).
    """
    def fits(size: int) -> bool:
        return predicted_bytes(replace(spec, buffer_size=size), buffer_only)[0] <= budget

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


def fit(profile: DeviceProfile, obs_dim: int, action_dim: int, algos: "tuple[str, ...]" = ("ppo", "sac"),
        buffer_size: "int | None" = None, n_steps: "int | None" = None, net: "tuple[int, ...] | None" = None,
        decimals: "int | None" = None, clamp: float = 127.0, n_envs: int = 1) -> FitResult:
    """One row per (algorithm, storage option) against the profile's budget; a repeated algorithm counts once."""
    budget = profile.budget().available
    rows = []
    for algo in dict.fromkeys(algos):
        size = n_steps if algo == "ppo" else buffer_size
        size = DEFAULT_BUFFER[algo] if size is None else size
        for option in storage_options(algo, decimals, clamp):
            spec = RunSpec(algo, obs_dim, action_dim, size, n_envs=n_envs, layout=option.layout,
                           quant=option.quant, net=net)
            total, fp = predicted_bytes(spec, profile.buffer_only)
            rows.append(FitRow(algo, option, spec, fp, total, budget, max_buffer_size(spec, budget, profile.buffer_only)))
    return FitResult(profile, obs_dim, action_dim, tuple(rows))


def best_row(rows: "list[FitRow]") -> "FitRow | None":
    """The least intrusive option that fits: rows are ordered from 'as is' to 'most compressed'."""
    return next((row for row in rows if row.fits), None)


def _size(n: int) -> str:
    return format_bytes(n, auto_unit(abs(n)))


def recommendation(result: FitResult) -> str:
    """One sentence per algorithm: what to run, with how much headroom, or what to shrink."""
    budget = _size(result.budget_bytes)
    sentences = []
    for algo in dict.fromkeys(row.algo for row in result.rows):
        rows = [row for row in result.rows if row.algo == algo]
        size_name = "an n_steps" if algo == "ppo" else "a buffer"
        best, base, packed = best_row(rows), rows[0], rows[-1]
        if best is base:
            sentences.append(f"{algo.upper()} fits as is ({_size(base.predicted_bytes)} of {budget}, "
                             f"{_size(base.headroom_bytes)} headroom).")
        elif best is not None:
            sentence = (f"{algo.upper()} with SB3's storage needs {_size(base.predicted_bytes)} and does not fit "
                        f"{budget}; {best.option.label} fits: {_size(best.predicted_bytes)}, "
                        f"{_size(best.headroom_bytes)} headroom, room for {size_name} of up to {best.max_buffer_size:,}")
            if best is not packed:
                sentence += (f"; {packed.option.label} leaves {_size(packed.headroom_bytes)} "
                             f"(up to {packed.max_buffer_size:,})")
            sentences.append(sentence + ".")
        else:
            top = max(rows, key=lambda row: row.max_buffer_size)
            if top.max_buffer_size == 0:
                sentences.append(f"{algo.upper()} does not fit at any size: the networks alone exceed the {budget} budget.")
            else:
                sentences.append(
                    f"{algo.upper()} does not fit with {size_name} of {base.spec.buffer_size:,} in any storage; "
                    f"with {top.option.label}, {size_name} of up to {top.max_buffer_size:,} fits "
                    f"(SB3 as is: {base.max_buffer_size:,}).")
    if result.profile.buffer_only:
        sentences.append("This is a microcontroller profile with no Python runtime: figures are for the buffer alone "
                         "(networks and optimizer would have to live elsewhere).")
    return " ".join(sentences)
