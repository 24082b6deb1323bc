"""The ``planner`` command: estimate, reproduce, fit, profiles, obs, validate, study.

Every user error ends as one line on stderr and exit status 2. Library errors name the parameter
at fault; here each is said as the flag that set it. An OSError, OverflowError, RecursionError or
ValueError that no check caught first is a bug in a check: it still ends as one line and exit status 2,
asking for a report; other exceptions (AttributeError, TypeError, KeyError...) are bugs and surface as such.
Ctrl-C is one line and exit status 130.
"""

import argparse
import importlib
import sys

from planner.errors import PlannerError, tidy

COMMANDS = ("estimate", "reproduce", "fit", "profiles", "obs", "validate", "study")
DISTRIBUTION = "justround-planner"
UNCHECKED = "no input check caught this first: please report the command line"


REQUIRED = "the following arguments are required: "


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (what and where, and the choices of a missing argument that has
    them) and exit status 2."""

    def error(self, message: str) -> "None":
        if message.startswith(REQUIRED):
            choices = {argparse._get_action_name(a): a.choices for a in self._actions if a.choices}
            names = message[len(REQUIRED):].split(", ")
            message = REQUIRED + ", ".join(
                f"{name} (choose from {', '.join(map(repr, choices[name]))})" if name in choices else name
                for name in names)
        self.exit(2, f"{self.prog}: error: {tidy(message)}\n")


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(DISTRIBUTION)
    except PackageNotFoundError:
        return "unknown (running from a source checkout, not installed)"


class VersionAction(argparse.Action):
    """``--version``: looks the installed version up only when asked (the lookup costs start-up time)."""

    def __init__(self, option_strings: "list[str]", dest: str = argparse.SUPPRESS) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, help="print the version and exit")

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(f"{parser.prog} {package_version()}")
        parser.exit(0)


def _flags(parser: argparse.ArgumentParser, inherited: "dict[str, str]") -> None:
    """Record on every parser which flag sets each parameter (its longest option string)."""
    flags = dict(inherited)
    for action in parser._actions:
        if action.option_strings:
            flags[action.dest] = max(action.option_strings, key=len)
    parser.set_defaults(_flags=flags)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                _flags(sub, flags)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="planner", description="Will this RL training run fit in my robot's memory, and at which "
                                                "precision? Sizes: MB = 10^6 B, MiB = 2^20 B.")
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"planner.commands.{name}").register(sub)
    _flags(parser, {})
    return parser


def main(argv: "list[str] | None" = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except PlannerError as exc:
        print(f"planner {args.command}: error: {tidy(exc.for_flags(args._flags))}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        print(f"planner {args.command}: interrupted", file=sys.stderr)
        return 130
    except (OSError, OverflowError, RecursionError, ValueError) as exc:
        print(f"planner {args.command}: error: {tidy(f'{type(exc).__name__}: {exc}')} ({UNCHECKED})", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
