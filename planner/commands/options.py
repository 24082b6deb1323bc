"""Argument helpers shared by the subcommands: counts, sizes and the run options."""

import argparse

from planner.errors import PlannerError
from planner.units import parse_count


def count(text: str) -> int:
    """argparse type for ``1e6``, ``1_000_000``, ``200000``."""
    try:
        return parse_count(text)
    except PlannerError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_quant_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--decimals", "-m", type=int, help="decimal places kept (paper: m)")
    parser.add_argument("--clamp", "-b", type=float, default=127.0, help="symmetric clamp bound b (default 127)")
    parser.add_argument("--bits", type=int, help="bits per value (default: by --width-rule)")
    parser.add_argument("--width-rule", choices=("eq6", "exact"), default="eq6",
                        help="bit width by the paper's Eq. 6 or by the exact level count (default eq6)")
