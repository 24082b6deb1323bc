import pytest

from planner.errors import PlannerError
from planner.quantization import Quantization, eq6_bits, exact_bits, levels


@pytest.mark.parametrize("m, bits", [(1, 12), (2, 15)])
def test_eq6_matches_paper_at_b127(m, bits):
    assert eq6_bits(m, 127) == bits
    assert exact_bits(m, 127) == bits


def test_eq6_overcounts_b100_m1():
    assert eq6_bits(1, 100) == 12
    assert exact_bits(1, 100) == 11


def test_eq6_undercounts_power_of_two_clamp():
    assert levels(0, 128) == 257
    assert eq6_bits(0, 128) == 8
    assert exact_bits(0, 128) == 9


def test_eq6_width_refused_when_it_cannot_hold_the_levels():
    with pytest.raises(PlannerError, match="need 9"):
        Quantization.create(0, 128, rule="eq6")
    assert Quantization.create(0, 128).bits == 9  # the default width: the exact level count


def test_the_default_width_is_what_the_packed_buffers_allocate():
    from cython_core import CodeLayout

    for m, b in ((1, 100), (2, 127), (0, 128), (3, 10)):
        assert Quantization.create(m, b).bits == CodeLayout.uniform(4, decimals=m, clamp=b).bits


def test_explicit_bits_are_checked():
    assert Quantization.create(2, 127, bits=16).bits == 16
    with pytest.raises(PlannerError, match="needs >= 15"):
        Quantization.create(2, 127, bits=14)


@pytest.mark.parametrize("kwargs, message", [
    (dict(decimals=-1), "decimals"),
    (dict(decimals=1.5), "decimals"),
    (dict(decimals=1, clamp=0), "clamp"),
    (dict(decimals=1, clamp=-3), "clamp"),
    (dict(decimals=1, clamp=float("inf")), "clamp"),
    (dict(decimals=2, bits=40), "bits"),
    (dict(decimals=2, bits=0), "bits"),
    (dict(decimals=9, clamp=1e6), "needs more than 32 bits"),
    (dict(decimals=2, clamp=1e308), "needs more than 32 bits"),
    (dict(decimals=16), "decimals must be a whole number in 0..15"),
    (dict(decimals=2, clamp=1e-9), "smaller than one quantization step"),
    (dict(decimals=1, clamp=0.09), "smaller than one quantization step"),
])
def test_nonsense_specs_are_rejected(kwargs, message):
    with pytest.raises(PlannerError, match=message):
        Quantization.create(**kwargs)


def test_clamp_of_exactly_one_step_is_accepted():
    assert levels(2, 0.01) == 3
    assert Quantization.create(1, 0.1, rule="exact").bits == 2
