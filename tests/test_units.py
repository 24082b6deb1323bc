"""Sizes and counts: units parsed exactly, nonsense and overflow refused with a PlannerError."""

import math

import pytest

from planner.errors import PlannerError
from planner.units import format_bytes, parse_count, parse_size


@pytest.mark.parametrize("text, expected", [
    ("3.5 GiB", 3_758_096_384), ("512MB", 512_000_000), ("4GB", 4_000_000_000), ("1.5GB", 1_500_000_000),
    ("512MiB", 512 * 2**20), ("192KiB", 192 * 1024), ("200 kb", 200_000), ("100", 100), ("2e3 B", 2_000),
    (4096, 4096), (1.5e9, 1_500_000_000), (0, 0), ("18446744073709551616", 2**64),
])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("value, fragment", [
    ("4 parsecs", "unknown size unit 'parsecs'"),
    ("lots", "expected a size"),
    ("-1GB", "expected a size"),
    ("", "expected a size"),
    (True, "expected a size"),
    (math.nan, "finite size"),
    (math.inf, "finite size"),
    (10**400, "finite size"),
    ("1e400", "finite size"),
    ("1e400 GB", "finite size"),
    ("1e300 TB", "finite size"),
    ("2e19", "at most 2^64"),
    (2**64 + 1, "at most 2^64"),
])
def test_parse_size_refuses_nonsense_and_overflow(value, fragment):
    with pytest.raises(PlannerError) as err:
        parse_size(value)
    assert fragment in str(err.value)


@pytest.mark.parametrize("text, expected", [
    ("1e6", 1_000_000), ("1_000_000", 1_000_000), ("200000", 200_000), ("2.048e3", 2048), (str(2**53), 2**53),
])
def test_parse_count(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize("text, fragment", [
    ("lots", "expected a whole number such as 1e6"),
    ("2.5", "expected a whole number, got '2.5'"),
    ("inf", "no larger than 2^53"),
    ("nan", "no larger than 2^53"),
    ("1e400", "no larger than 2^53"),
    ("1e300", "no larger than 2^53"),
    (str(2**53 + 2), "no larger than 2^53"),
])
def test_parse_count_refuses_nonsense_and_overflow(text, fragment):
    with pytest.raises(PlannerError) as err:
        parse_count(text)
    assert fragment in str(err.value)


def test_format_bytes_names_its_unit():
    assert format_bytes(27_091_200, "MB") == "27.09 MB"
    assert format_bytes(3 * 2**20, "MiB") == "3.00 MiB"
    assert format_bytes(1234, "B") == "1,234 B"
    with pytest.raises(PlannerError, match="unknown display unit"):
        format_bytes(1, "parsec")
