"""The study summary's statistics on synthetic seeds' returns: a clear loss gives an interval below zero and the
loss verdict, equal arms give "no difference larger than D detected" with D > 0, the bootstrap is reproducible,
the detectable difference shrinks as seeds grow, and a side with one seed is "too few seeds"."""

import numpy as np
import pytest

from validation.study.summary import WINDOW, _storage_stats, bootstrap_interval, compare, detectable_difference


def returns(mean: float, seeds: int, spread: float = 20.0, seed: int = 1) -> "list[float]":
    """``seeds`` returns with the given mean and about the given std."""
    return list(np.random.default_rng(seed).normal(mean, spread, seeds))


def test_a_clear_loss_gives_an_interval_below_zero_and_the_loss_verdict():
    arm, base = returns(300.0, 6, seed=1), returns(500.0, 6, seed=2)
    result = compare(arm, base)
    assert result["ci_low"] <= result["effect"] <= result["ci_high"] < 0
    assert result["effect"] == pytest.approx(np.mean(arm) - np.mean(base))
    assert result["welch_p"] < 0.05
    assert result["verdict"] == (f"loss of {-result['effect']:.1f} (95 % CI {result['ci_low']:.1f} to "
                                 f"{result['ci_high']:.1f})")
    assert compare(base, arm)["verdict"].startswith("gain of ")


def test_equal_arms_give_no_difference_larger_than_the_detectable_one():
    arm, base = returns(400.0, 5, seed=3), returns(400.0, 5, seed=4)
    result = compare(arm, base)
    assert result["ci_low"] < 0 < result["ci_high"] and result["welch_p"] > 0.05
    assert result["detectable"] > 0
    assert result["verdict"] == f"no difference larger than {result['detectable']:.1f} detected"


def test_an_interval_that_welch_does_not_confirm_is_no_loss():
    """From 2 seeds a side the percentile interval spans just the differences between them: it can exclude 0
    where Welch's p, on 1-2 degrees of freedom, is far from 0.05; no loss is claimed then."""
    result = compare([250.0, 340.0], [400.0, 550.0])
    assert result["ci_high"] < 0 and result["welch_p"] > 0.05
    assert result["verdict"] == (f"no difference larger than {result['detectable']:.1f} detected (the interval "
                                 "excludes 0, Welch p does not)")


def test_the_bootstrap_is_reproducible():
    arm, base = returns(300.0, 4, seed=5), returns(350.0, 3, seed=6)
    assert bootstrap_interval(arm, base) == bootstrap_interval(list(arm), list(base))
    assert compare(arm, base) == compare(arm, base)
    assert bootstrap_interval(arm, base, seed=1) != bootstrap_interval(arm, base)  # the seed is what fixes it


def test_the_detectable_difference_shrinks_as_seeds_grow():
    def seeds(n: int) -> "list[float]":  # 90, 110, 90, ...: about the same std whatever n, only the counts change
        return [100.0 + (10.0 if i % 2 else -10.0) for i in range(n)]

    found = [detectable_difference(seeds(n), seeds(n)) for n in (2, 4, 6, 10, 20)]
    assert all(a > b for a, b in zip(found, found[1:])) and found[-1] > 0
    # with many seeds the t approximation nears the normal one: (z(0.975) + z(0.8)) * std * sqrt(2 / n)
    assert detectable_difference(seeds(200), seeds(200)) == pytest.approx(
        (1.959964 + 0.841621) * np.std(seeds(200), ddof=1) * np.sqrt(2 / 200), rel=0.01)


def test_one_seed_on_a_side_is_too_few_seeds():
    result = compare([300.0], returns(400.0, 3))
    assert result["verdict"] == "too few seeds"
    assert result["ci_low"] is result["ci_high"] is result["welch_p"] is result["detectable"] is None


def test_a_seeds_return_is_the_mean_of_its_last_evaluations():
    def trial(values: "list[float]") -> dict:
        evals = [{"step": 100 * i, "return_mean": v} for i, v in enumerate(values)]
        end = {"final_return": values[-1], "acting_ms_per_step": 1.0, "update_ms_per_step": 1.0,
               "ms_per_step": 2.0, "buffer_bytes": 10, "peak_rss_bytes": 10, "buffer_rows": 5}
        return {"evals": evals[::-1], "end": end}  # in any order

    stats = _storage_stats([trial([0.0, 50.0, 10.0, 20.0, 30.0]), trial([0.0, 40.0, 60.0, 80.0, 100.0])])
    assert WINDOW == 3 and stats["returns"] == [20.0, 80.0] and stats["return_mean"] == 50.0
    assert stats["window_steps"] == [200, 300, 400] and stats["final_returns"] == [30.0, 100.0]


def _trial(seed: int, curve: "list[float]") -> dict:
    evals = [{"step": 1000 * i, "return_mean": r, "returns": [r, r]} for i, r in enumerate(curve)]
    return {"config": {"seed": seed}, "evals": evals}


def test_calibrated_is_checked_seed_for_seed_against_packed():
    """The calibrated storage decodes the values packed does: the evidence study trains it once and checks its
    returns equal packed's, evaluation for evaluation; a single differing return is reported."""
    from validation.study.summary import _same_as_packed

    packed = [_trial(0, [1.0, 2.0, 3.0]), _trial(1, [1.0, 5.0, 6.0])]
    stats = {"seeds": 1, "effect": -102.8}
    _same_as_packed(stats, [_trial(0, [1.0, 2.0, 3.0])], packed)
    assert stats["identical_seeds"] == [0] and stats["differing_seeds"] == []
    assert stats["effect"] is None  # one seed against the baseline's mean is no effect: its returns are packed's
    assert stats["verdict"] == "returns identical to packed's, seed for seed (1 of 1)"
    _same_as_packed(stats, [_trial(1, [1.0, 5.0, 6.000001])], packed)
    assert stats["differing_seeds"] == [1] and stats["verdict"] == "returns differ from packed's (seeds [1])"


def test_the_evidence_study_names_each_precision_its_own_arm():
    """Packed at m + 1 is its own arm (and trial id), so the two precisions never share a file or a row."""
    from validation.study.grid import arm_order, trials
    from validation.study.spec import read_spec

    grid = trials(read_spec("evidence"))
    assert len({t.id for t in grid}) == len(grid) == 75
    arms = {(t.env, t.algo): set() for t in grid}
    for t in grid:
        arms[t.env, t.algo].add(t.arm)
    assert arms[("Hopper-v5", "sac")] == {"sb3", "float16", "packed", "packed-m3", "calibrated"}
    assert arms[("Walker2d-v5", "ppo")] == {"sb3", "float16", "packed", "packed-m2", "calibrated"}
    assert sorted(["packed-m3", "float16", "packed", "sb3"], key=arm_order) == ["sb3", "packed", "packed-m3",
                                                                                 "float16"]
    assert sum(t.arm == "calibrated" for t in grid) == 3 and all(t.seed == 0 for t in grid if t.arm == "calibrated")
