"""What each study storage trains with: the planner's storage behind it, the buffer's rows and kwargs.

========== ========================================================================================
baseline     SB3's buffers as they are
float16      the quantized buffers holding float16 observations
packed       the quantized buffers, uniform codes at the study's m (the paper's layout)
calibrated   the quantized buffers with a per-dimension :class:`planner.obs_ranges.ObservationRanges`,
             calibrated on the run's own warm-up steps (random actions, the trial's seed)
recalibrated calibrated, and a dimension whose values fall outside its range in more than
             :data:`validation.buffers.obs_store.RECALIBRATE_SHARE` of the rows is widened as training goes
equal-memory SB3's buffers, their rows shrunk to the bytes the packed buffer takes (the paper's Figure 3)
========== ========================================================================================

Nothing here imports torch: the sizes come from the planner's footprint.
"""

from dataclasses import replace

from planner.defaults import CLAMP
from planner.fit import max_buffer_size
from planner.footprint import footprint
from validation.harness.runconfig import RunConfig

PLANNER_STORAGE = {"baseline": "sb3", "float16": "float16", "packed": "packed", "calibrated": "packed",
                   "recalibrated": "packed", "equal-memory": "sb3"}  # each study storage's planner storage
STORAGES = tuple(PLANNER_STORAGE)
CALIBRATED = ("calibrated", "recalibrated")  # the storages that scan the warm-up for observation ranges


def run_config(trial) -> RunConfig:
    """The validation harness's view of ``trial`` (a :class:`validation.study.grid.Trial`)."""
    return RunConfig(trial.env, trial.algo, PLANNER_STORAGE[trial.storage], trial.steps, trial.rows, trial.decimals,
                     CLAMP, trial.seed)


def shrunk_rows(env: str, algo: str, rows: int, decimals: int) -> int:
    """The rows of SB3's buffer that fit the bytes of the packed buffer of ``rows`` rows (the planner's
    prediction, exact to one row).

    >>> shrunk_rows("Hopper-v5", "sac", 1_000_000, 2), shrunk_rows("Humanoid-v5", "sac", 1_000_000, 2)
    (262500, 132856)
    """
    packed = RunConfig(env, algo, "packed", rows, rows, decimals).run_spec()
    plain = replace(packed, storage="sb3", quant=None)
    return max(2, max_buffer_size(plain, footprint(packed).buffer_bytes, buffer_only=True))


def buffer_arguments(trial, obs_ranges=None) -> dict:
    """The SB3 model's keyword arguments that give ``trial`` its buffer (class and kwargs): the one place that
    says what each storage trains with. The :data:`CALIBRATED` storages need ``obs_ranges``."""
    arguments = run_config(trial).buffer_arguments()
    if trial.storage in CALIBRATED:
        from validation.buffers.obs_store import RECALIBRATE_SHARE

        if obs_ranges is None:
            raise ValueError(f"the {trial.storage} storage needs the observation ranges of the warm-up steps")
        kind = next(key for key in arguments if key.endswith("_buffer_kwargs"))
        kwargs = {k: v for k, v in arguments[kind].items() if k not in ("decimals", "clamp")}  # the spec has m, b
        arguments[kind] = {**kwargs, "obs_ranges": obs_ranges,
                           "recalibrate": RECALIBRATE_SHARE if trial.storage == "recalibrated" else None}
    return arguments
