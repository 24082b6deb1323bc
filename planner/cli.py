"""The ``planner`` command: estimate, reproduce, fit, profiles, validate.

Every user error ends as one line on stderr and exit status 2.
"""

import argparse
import importlib
import sys

from planner.errors import PlannerError

COMMANDS = ("estimate", "reproduce", "fit", "profiles", "validate")


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what and where) and exit status 2."""

    def error(self, message: str) -> "None":
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="planner", description="Will this RL training run fit in my robot's memory?")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"planner.commands.{name}").register(sub)
    return parser


def main(argv: "list[str] | None" = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except PlannerError as exc:
        print(f"planner {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
