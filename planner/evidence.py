"""What the committed learning study measured: does packing at the paper's m cost learning, and which m recovers it?

``planner fit`` cites these records after its recommendation, one line per algorithm whose env family the study
trained. Each record is a storage's effect on the return against SB3's own buffer in the evidence study
(``validation/study/specs/evidence.yaml``, trials committed in :data:`STUDY`); ``tests/test_evidence.py`` checks
every figure against what ``planner study --summarize`` makes of those trials.

>>> note = learning_note("Hopper-v3", "sac", 2)
>>> note[:94]
'Learning, measured (docs/measurements/study-evidence, Hopper-v5 SAC, 6 seeds x 50,000 steps): '
>>> note[94:]
"packed m=2 changed the return by -16.7 (95 % CI -115.2 to +85.7) against SB3's 374.8: no loss ..."
"""

from dataclasses import KW_ONLY, dataclass

STUDY = "docs/measurements/study-evidence"
ALPHA = 0.05  # a loss or gain is claimed where the 95 % interval excludes 0 and Welch p < ALPHA (the study's rule)


def env_family(env_id: str) -> str:
    """The env without its version: a -v3 env is measured by its -v5 trials."""
    return env_id.split("-v", 1)[0]


@dataclass(frozen=True)
class Effect:
    """One storage's effect on the return of a task in :data:`STUDY` (the mean of each seed's last 3 evaluations).

    :param env_id: the env the study trained
    :param algo: the algorithm
    :param storage: the study's arm (``packed``, ``packed-m3``, ``float16``, ...)
    :param decimals: the arm's m, or None for a storage that does not round (float16)
    :param seeds: seeds per arm
    :param steps: environment steps per trial (PPO: whole rollouts, 98 x 2,048 for 200,000)
    :param baseline: SB3's own buffer's mean return
    :param effect: the arm's mean return minus the baseline's
    :param low: the effect's 95 % bootstrap interval, low end
    :param high: the effect's 95 % bootstrap interval, high end
    :param welch_p: Welch's t-test p
    """

    env_id: str
    algo: str
    storage: str
    decimals: "int | None"
    _: KW_ONLY
    seeds: int
    steps: int
    baseline: float
    effect: float
    low: float
    high: float
    welch_p: float

    @property
    def family(self) -> str:
        return env_family(self.env_id)

    @property
    def loss(self) -> bool:
        """A loss the study claims: the interval below 0 and Welch p < 0.05 (the summary's rule)."""
        return self.high < 0 and self.welch_p < ALPHA

    def describe(self) -> str:
        name = f"{self.storage.split('-m', 1)[0]} m={self.decimals}" if self.decimals is not None else self.storage
        return (f"{name} changed the return by {self.effect:+.1f} (95 % CI {self.low:+.1f} to {self.high:+.1f}) "
                f"against SB3's {self.baseline:.1f}")


EFFECTS = (
    Effect("Hopper-v5", "sac", "packed", 2, seeds=6, steps=50_000, baseline=374.8, effect=-16.7, low=-115.2,
           high=85.7, welch_p=0.771),
    Effect("Hopper-v5", "sac", "packed-m3", 3, seeds=6, steps=50_000, baseline=374.8, effect=478.7, low=15.6,
           high=1157.9, welch_p=0.215),
    Effect("Hopper-v5", "sac", "float16", None, seeds=6, steps=50_000, baseline=374.8, effect=71.7, low=-48.5,
           high=202.4, welch_p=0.336),
    Effect("Hopper-v5", "ppo", "packed", 1, seeds=6, steps=200_704, baseline=1286.7, effect=16.3, low=-806.3,
           high=814.4, welch_p=0.972),
    Effect("Hopper-v5", "ppo", "packed-m2", 2, seeds=6, steps=200_704, baseline=1286.7, effect=222.2, low=-575.3,
           high=980.7, welch_p=0.617),
    Effect("Hopper-v5", "ppo", "float16", None, seeds=6, steps=200_704, baseline=1286.7, effect=-192.8, low=-930.8,
           high=561.0, welch_p=0.651),
    Effect("Walker2d-v5", "ppo", "packed", 1, seeds=6, steps=200_704, baseline=436.0, effect=1.0, low=-28.6,
           high=26.3, welch_p=0.953),
    Effect("Walker2d-v5", "ppo", "packed-m2", 2, seeds=6, steps=200_704, baseline=436.0, effect=50.5, low=-51.7,
           high=131.9, welch_p=0.368),
    Effect("Walker2d-v5", "ppo", "float16", None, seeds=6, steps=200_704, baseline=436.0, effect=93.3, low=42.0,
           high=139.0, welch_p=0.009),
)


def measured(env_id: str, algo: str, effects: "tuple[Effect, ...]" = EFFECTS) -> "list[Effect]":
    """The study's arms for ``algo`` on ``env_id``'s family, in the study's order."""
    return [e for e in effects if e.family == env_family(env_id) and e.algo == algo]


def learning_note(env_id: str, algo: str, decimals: int, effects: "tuple[Effect, ...]" = EFFECTS) -> str:
    """One line on what the study found for packing ``algo`` on ``env_id`` at m = ``decimals``: no loss (and the
    largest loss its interval rules out), a loss and the measured precision that recovers it, or that the study
    did not train this env family, algorithm and m."""
    arms = measured(env_id, algo, effects)
    arm = next((e for e in arms if e.decimals == decimals), None)
    if arm is None:
        return f"Learning: {STUDY} did not train {algo.upper()} on {env_id.split('-v', 1)[0]} packed at m={decimals}."
    head = (f"Learning, measured ({STUDY}, {arm.env_id} {algo.upper()}, {arm.seeds} seeds x {arm.steps:,} steps): "
            f"{arm.describe()}")
    if not arm.loss:
        bound = max(0.0, -arm.low)
        return (f"{head}: no loss detected; one larger than {bound:.1f} ({100 * bound / abs(arm.baseline):.0f} % of "
                f"it) is ruled out.")
    recover = [e for e in arms if not e.loss and (e.decimals is None or e.decimals > decimals)]
    if not recover:
        return f"{head}: a loss, and no finer precision the study trained recovers it."
    best = recover[0]
    how = f"pack at m={best.decimals}" if best.decimals is not None else f"store {best.storage}"
    return f"{head}: a loss; {best.describe()}, no loss detected: {how}."
