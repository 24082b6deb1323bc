"""The paper's published numbers as data, each recomputed by the analytical model and judged.

A claim holds ``ok`` when the computed value rounds or truncates to the paper's figure at the
paper's number of digits (or meets the stated bound, or is within 5 % of an "about" figure),
``near`` when it is within one unit of the last stated digit (every such claim carries a note
saying why), and ``paper slip`` where the paper's own arithmetic is off and the note says how.
"""

import math
from dataclasses import KW_ONLY, dataclass
from typing import Callable

from planner.defaults import CLAMP
from planner.envs import lookup_env
from planner.footprint import Footprint
from planner.paper import FIGURE2_ENVS, figure2_pair, haarnoja, miki
from planner.quantization import eq6_bits, exact_bits

GROUPS = ("eq6", "miki", "haarnoja", "figure2")
ABOUT = 0.05  # relative tolerance of an "about" (~) figure


@dataclass(frozen=True)
class Claim:
    group: str
    source: str
    quantity: str
    paper: float
    unit: str
    compute: Callable[[], float]
    _: KW_ONLY
    digits: int = 1  # decimals the paper states the figure with
    relation: str = "="  # "=", ">" (over), "<" (under), "~" (about), "slip" (known paper error)
    note: str = ""


@dataclass(frozen=True)
class Result:
    claim: Claim
    computed: float

    @property
    def deviation(self) -> float:
        return self.computed - self.claim.paper

    @property
    def verdict(self) -> str:
        c, unit = self.claim, 10.0**-self.claim.digits
        if c.relation == "slip":
            return "paper slip"
        if c.relation == ">":
            return "ok" if self.computed > c.paper else "MISMATCH"
        if c.relation == "<":
            return "ok" if self.computed < c.paper else "MISMATCH"
        if c.relation == "~":
            return "ok" if abs(self.deviation) <= ABOUT * abs(c.paper) else "MISMATCH"
        truncated = math.trunc(round(self.computed / unit, 6)) * unit
        if abs(self.deviation) <= unit / 2 + 1e-9 or abs(truncated - c.paper) <= 1e-9:
            return "ok"
        return "near" if abs(self.deviation) <= unit + 1e-9 else "MISMATCH"

    @property
    def within_tolerance(self) -> bool:
        return self.verdict in ("ok", "near")

    def as_dict(self) -> dict:
        c = self.claim
        return {"source": c.source, "quantity": c.quantity, "paper": c.paper, "computed": self.computed,
                "unit": c.unit, "relation": c.relation, "deviation": self.deviation, "verdict": self.verdict,
                "within_tolerance": self.within_tolerance, "note": c.note}


def _mb(n: float) -> float:
    return n / 1e6


def _pct(part: float, whole: float) -> float:
    return 100.0 * part / whole


def _shares(source: str, group: str, fp: Callable[[], Footprint], paper: "tuple[float, float, float]",
            digits: int, notes: "tuple[str, str, str]" = ("", "", "")) -> "list[Claim]":
    buffer_total, obs_buffer, obs_total = paper
    return [
        Claim(group, source, "buffer share of total", buffer_total, "%",
              lambda: _pct(fp().buffer_bytes, fp().total_bytes), digits=digits, note=notes[0]),
        Claim(group, source, "observations share of buffer", obs_buffer, "%",
              lambda: _pct(fp().observation_bytes, fp().buffer_bytes), digits=digits, note=notes[1]),
        Claim(group, source, "observations share of total", obs_total, "%",
              lambda: _pct(fp().observation_bytes, fp().total_bytes), digits=digits, note=notes[2]),
    ]


def _figure2_range(algo: str, pick: Callable) -> float:
    return pick(row[-1] for row in figure2_rows() if row[0] == algo)


def claims() -> "list[Claim]":
    """Every published number the planner reproduces."""
    humanoid = lookup_env("Humanoid-v3")
    sac_humanoid = lambda: figure2_pair("sac", humanoid.obs_dim, humanoid.action_dim)  # noqa: E731
    return [
        Claim("eq6", "Eq. 6", "bits at m=1, b=127", 12, "bits", lambda: eq6_bits(1, CLAMP), digits=0),
        Claim("eq6", "Eq. 6", "bits at m=2, b=127", 15, "bits", lambda: eq6_bits(2, CLAMP), digits=0),
        Claim("eq6", "Eq. 6", "exact level count width, m=1, b=127", 12, "bits",
              lambda: exact_bits(1, CLAMP), digits=0, note="2,541 levels"),
        Claim("eq6", "Eq. 6", "exact level count width, m=2, b=127", 15, "bits",
              lambda: exact_bits(2, CLAMP), digits=0, note="25,401 levels"),
        Claim("miki", "Miki et al.", "rollout buffer (s, a, r), float64", 27, "MB",
              lambda: _mb(miki().buffer_bytes), digits=0, relation=">",
              note="over 27 MB: (391 + 16 + 1) x 8 B x 8,300"),
        Claim("miki", "Miki et al.", "models (3 networks), float64", 1.3, "MB", lambda: _mb(miki().models_bytes),
              digits=1, note="162,388 params with the all-legs height encoder 208-80-60-96"),
        *_shares("Miki et al.", "miki", miki, (95, 96, 92), 0,
                 ("", "", "the arithmetic gives 91.4 %, which rounds to 91 %; the paper says 92 %")),
        Claim("haarnoja", "Haarnoja et al.", "models (policy + 2 Q), weights only, float64", 2.3, "MB",
              lambda: _mb(haarnoja().models_bytes), digits=1, note="291,328 weights"),
        Claim("haarnoja", "Haarnoja et al.", "replay buffer (s, a, r) at 1e5 transitions", 96.8, "MB",
              lambda: _mb(haarnoja().buffer_bytes), digits=1, note="121 x 8 B x 100,000"),
        Claim("haarnoja", "Haarnoja et al.", "replay buffer at the stated 1e6 transitions", 96.8, "MB",
              lambda: _mb(haarnoja(1_000_000).buffer_bytes), digits=1, relation="slip",
              note="the paper states 1e6, but 96.8 MB is 1e5 transitions: 1e6 gives 968 MB (a 10x slip)"),
        *_shares("Haarnoja et al.", "haarnoja", haarnoja, (97.7, 92.5, 90.4), 1,
                 ("97.65 % with exact model bytes; 97.68 % with the paper's rounded 2.3 MB",
                  "112 / 121 = 92.56 %: the paper truncates", "")),
        Claim("figure2", "Figure 2", "PPO reduction, smallest over 4 envs", 2.1, "x",
              lambda: _figure2_range("ppo", min), digits=1, note="Walker2d and HalfCheetah"),
        Claim("figure2", "Figure 2", "PPO reduction, largest over 4 envs", 4.2, "x",
              lambda: _figure2_range("ppo", max), digits=1, note="Humanoid"),
        Claim("figure2", "Figure 2", "SAC reduction, smallest over 4 envs", 2.6, "x",
              lambda: _figure2_range("sac", min), digits=1, note="Walker2d and HalfCheetah"),
        Claim("figure2", "Figure 2", "SAC reduction, largest over 4 envs", 3.9, "x",
              lambda: _figure2_range("sac", max), digits=1, note="Humanoid"),
        Claim("figure2", "Section V-B", "Humanoid SAC 1M baseline total", 3.0, "GB",
              lambda: sac_humanoid()[0].total_bytes / 1e9, digits=0, relation="~"),
        Claim("figure2", "Section V-B", "Humanoid SAC 1M quantized total", 750, "MB",
              lambda: _mb(sac_humanoid()[1].total_bytes), digits=0, relation="~",
              note="'just under 750 MB': the 15-bit observation array alone is 705 MB, the authors' uint16 one "
                   "752 MB"),
        Claim("figure2", "Section V-B", "Humanoid SAC 1M quantized observations (15 bits)", 750, "MB",
              lambda: _mb(sac_humanoid()[1].observation_bytes), digits=0, relation="<"),
    ]


def evaluate(groups: "tuple[str, ...]" = GROUPS) -> "list[Result]":
    """Compute every claim of the chosen groups."""
    return [Result(c, float(c.compute())) for c in claims() if c.group in groups]


def figure2_rows() -> "list[tuple]":
    """(algo, env, obs_dim, action_dim, baseline bytes, quantized bytes, ratio) for each bar pair of Figure 2."""
    rows = []
    for algo in ("ppo", "sac"):
        for env in FIGURE2_ENVS:
            dims = lookup_env(env)
            base, quant = figure2_pair(algo, dims.obs_dim, dims.action_dim)
            rows.append((algo, env, dims.obs_dim, dims.action_dim, base.total_bytes, quant.total_bytes,
                         base.total_bytes / quant.total_bytes))
    return rows


def eq6_differences(decimals=(0, 1, 2, 3), clamps=(1, 10, 100, 127, 128, 255, 256, 1000)) -> "list[tuple]":
    """(m, b, Eq. 6 bits, exact bits) for every grid point where the two disagree."""
    return [(m, b, eq6_bits(m, b), exact_bits(m, b)) for m in decimals for b in clamps
            if eq6_bits(m, b) != exact_bits(m, b)]
