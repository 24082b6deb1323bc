"""The paper's worked examples, computed with the same footprint code as any other run.

>>> round(miki().buffer_bytes / 1e6, 2)
27.09
"""

from dataclasses import replace

from planner.defaults import CLAMP, PAPER_DECIMALS
from planner.footprint import Footprint, footprint, model_components
from planner.networks import haarnoja_minitaur, miki_teacher
from planner.quantization import Quantization
from planner.runspec import RunSpec
from planner.storages import buffer_fields

FIGURE2_ENVS = ("Walker2d-v3", "HalfCheetah-v3", "Ant-v3", "Humanoid-v3")


def miki() -> Footprint:
    """Miki et al. 2022 teacher (PPO): obs 391, act 16, 8,300 (s, a, r) in float64; weights float64."""
    spec = RunSpec("ppo", obs_dim=391, action_dim=16, buffer_size=8_300, storage="paper64")
    return Footprint(model_components(miki_teacher(), "float64", optimizer=False), buffer_fields(spec))


def haarnoja(transitions: int = 100_000) -> Footprint:
    """Haarnoja et al. 2018 Minitaur (SAC): obs 112, act 8, (s, a, r) in float64; weights only, float64."""
    spec = RunSpec("sac", obs_dim=112, action_dim=8, buffer_size=transitions, storage="paper64")
    return Footprint(model_components(haarnoja_minitaur(), "float64", optimizer=False), buffer_fields(spec))


def figure2_pair(algo: str, obs_dim: int, action_dim: int) -> "tuple[Footprint, Footprint]":
    """(baseline, quantized) under the ``figure2`` accounting with the paper's settings."""
    quant = Quantization.create(PAPER_DECIMALS[algo], CLAMP, rule="eq6")
    base = RunSpec(algo, obs_dim, action_dim, storage="figure2", optimizer=False)
    return footprint(base), footprint(replace(base, quant=quant))
