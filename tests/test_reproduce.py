"""Every published number of the paper, recomputed (not just 'it runs')."""

import json

import pytest

from planner.paper import haarnoja, miki
from planner.reproduce import Claim, Result, eq6_differences, evaluate, figure2_rows


def _computed(quantity_prefix: str) -> float:
    matches = [r for r in evaluate() if r.claim.quantity.startswith(quantity_prefix)]
    assert len(matches) == 1, quantity_prefix
    return matches[0].computed


def test_miki_numbers():
    fp = miki()
    assert fp.buffer_bytes == (391 + 16 + 1) * 8 * 8300 == 27_091_200
    assert sum(c.params for c in fp.components) == 162_388
    assert round(fp.models_bytes / 1e6, 1) == 1.3
    assert round(100 * fp.buffer_bytes / fp.total_bytes) == 95
    assert round(100 * fp.observation_bytes / fp.buffer_bytes) == 96
    assert round(100 * fp.observation_bytes / fp.total_bytes, 1) == 91.4  # paper says 92


def test_haarnoja_numbers_and_the_10x_slip():
    fp = haarnoja()
    assert sum(c.params for c in fp.components) == 291_328
    assert round(fp.models_bytes / 1e6, 1) == 2.3
    assert fp.buffer_bytes == 96_800_000
    assert haarnoja(1_000_000).buffer_bytes == 968_000_000
    assert abs(100 * fp.buffer_bytes / fp.total_bytes - 97.7) < 0.1
    assert abs(100 * fp.observation_bytes / fp.buffer_bytes - 92.5) < 0.1
    assert round(100 * fp.observation_bytes / fp.total_bytes, 1) == 90.4


def test_figure2_ranges_round_to_the_paper():
    assert round(_computed("PPO reduction, smallest"), 1) == 2.1
    assert round(_computed("PPO reduction, largest"), 1) == 4.2
    assert round(_computed("SAC reduction, smallest"), 1) == 2.6
    assert round(_computed("SAC reduction, largest"), 1) == 3.9
    ratios = {(algo, env): ratio for algo, env, *_, ratio in figure2_rows()}
    assert ratios[("sac", "Humanoid-v3")] == pytest.approx(3.936, abs=1e-3)
    assert ratios[("ppo", "Walker2d-v3")] == ratios[("ppo", "HalfCheetah-v3")]


def test_humanoid_sac_3gb_to_about_750mb():
    assert round(_computed("Humanoid SAC 1M baseline total")) == 3
    assert abs(_computed("Humanoid SAC 1M quantized total") - 750) / 750 < 0.05
    assert _computed("Humanoid SAC 1M quantized observations") == 705.0


def test_eq6_differences_listed():
    diffs = eq6_differences()
    assert (1, 100, 12, 11) in diffs
    assert (0, 128, 8, 9) in diffs
    assert all(b != 127 for _, b, _, _ in diffs)


def test_every_claim_has_a_verdict_and_none_mismatch():
    verdicts = {r.claim.quantity: r.verdict for r in evaluate()}
    assert "MISMATCH" not in verdicts.values()
    assert verdicts["replay buffer at the stated 1e6 transitions"] == "paper slip"


def test_share_verdicts_and_notes_exactly():
    rows = {(r.claim.source, r.claim.quantity): (r.verdict, r.claim.note) for r in evaluate(("miki", "haarnoja"))}
    assert rows[("Haarnoja et al.", "buffer share of total")] == (
        "near", "97.65 % with exact model bytes; 97.68 % with the paper's rounded 2.3 MB")
    assert rows[("Haarnoja et al.", "observations share of buffer")] == (
        "ok", "112 / 121 = 92.56 %: the paper truncates")
    assert rows[("Haarnoja et al.", "observations share of total")] == ("ok", "")
    assert rows[("Miki et al.", "buffer share of total")] == ("ok", "")
    assert rows[("Miki et al.", "observations share of buffer")] == ("ok", "")
    assert rows[("Miki et al.", "observations share of total")] == (
        "near", "the arithmetic gives 91.4 %, which rounds to 91 %; the paper says 92 %")


def test_every_near_verdict_says_why():
    near = [r for r in evaluate() if r.verdict == "near"]
    assert len(near) == 2
    assert all(r.claim.note for r in near)


def test_verdict_rule_rounds_or_truncates_at_the_stated_digits():
    def verdict(paper: float, computed: float, digits: int = 1) -> str:
        return Result(Claim("t", "t", "t", paper, "%", lambda: computed, digits=digits), computed).verdict

    assert verdict(92.5, 92.56) == "ok"  # truncates
    assert verdict(92.6, 92.56) == "ok"  # rounds
    assert verdict(97.7, 97.649) == "near"  # neither: 97.6 either way
    assert verdict(92, 92.9, 0) == "ok" and verdict(92, 91.45, 0) == "near"
    assert verdict(92.5, 92.4) == "near" and verdict(92.5, 92.3) == "MISMATCH"


def test_reproduce_cli_json(planner_cli):
    result = planner_cli("reproduce", "all", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    rows = data["claims"]
    assert {"source", "quantity", "paper", "computed", "unit", "within_tolerance"} <= set(rows[0])
    assert any(r["source"] == "Miki et al." and r["computed"] == pytest.approx(27.0912) for r in rows)
    # every per-env Figure 2 row the text table shows, with the same numbers
    assert [(r["algo"], r["env"], r["obs_dim"], r["action_dim"], r["baseline_bytes"], r["quantized_bytes"],
             pytest.approx(r["reduction"])) for r in data["figure2"]] == [tuple(row) for row in figure2_rows()]
    assert len(data["figure2"]) == 8
    assert {"decimals": 1, "clamp": 100, "eq6_bits": 12, "exact_bits": 11} in data["eq6_differences"]


@pytest.mark.parametrize("target", ["eq6", "miki", "haarnoja", "figure2"])
def test_reproduce_cli_each_target(planner_cli, target):
    result = planner_cli("reproduce", target)
    assert result.returncode == 0, result.stderr
    assert "verdict" in result.stdout
