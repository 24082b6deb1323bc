"""``planner profiles {list,show,check,calibrate}``: the device profiles and their budgets."""

import argparse
import json

from planner.extras import require_train_extra
from planner.profiles import builtin_names, load_all, load_profile
from planner.table import render
from planner.units import auto_unit, format_bytes


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("profiles", help="list, show, check or calibrate device profiles",
                       description="Device profiles: what memory a device leaves for training (docs/profiles.md).")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION", parser_class=type(p))
    listing = actions.add_parser("list", help="the shipped profiles with their budgets")
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    show = actions.add_parser("show", help="one profile in full, with its budget breakdown")
    show.add_argument("name", help=f"one of {', '.join(builtin_names())}, or a YAML path")
    show.add_argument("--json", action="store_true", help="print JSON instead of text")
    check = actions.add_parser("check", help="check a profile file against the schema")
    check.add_argument("file", help="the profile's YAML file")
    calibrate = actions.add_parser("calibrate", help="measure this machine's runtime and write a profile")
    calibrate.add_argument("--out", required=True, help="YAML file to write (sizes with units)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        profiles = load_all()
        if args.json:
            print(json.dumps([p.as_dict() for p in profiles], indent=2))
            return 0
        rows = [[p.name, p.device_class, format_bytes(p.total_memory, "MB"), format_bytes(p.budget().available, "MB"),
                 "yes" if p.runs_torch else "no (buffer only)", p.description] for p in profiles]
        print(render(rows, ["profile", "class", "total", "for training", "torch", "description"]))
        print("\nMB = 10^6 B. Budget = total - OS reserve - runtime - safety margin: `planner profiles show NAME`.")
        return 0
    if args.action == "calibrate":
        require_train_extra("planner profiles calibrate")
        from validation.harness.calibrate import calibrate
        path = calibrate(args.out)
        print(f"wrote {path}: check it with `planner profiles check {path}`, use it with `--profile {path}`")
        return 0
    profile = load_profile(args.name if args.action == "show" else args.file)
    if args.action == "show" and args.json:
        print(json.dumps(profile.as_dict(), indent=2))
        return 0
    unit = auto_unit(profile.total_memory)
    if args.action == "check":
        print(f"{profile.path}: ok ({profile.name}, {format_bytes(profile.budget().available, unit)} for training)")
        return 0
    print(f"{profile.name}: {profile.description}")
    for label, value in (("class", profile.device_class), ("arch", profile.arch), ("cpu", profile.cpu),
                         ("gpu", profile.gpu or "none"), ("GPU shares memory", profile.gpu_shares_memory),
                         ("runs Python / torch", f"{profile.runs_python} / {profile.runs_torch}"),
                         ("route", f"{profile.route_text}; docs/device.md"),
                         ("runtime", profile.runtime_note), ("notes", profile.notes), ("file", profile.path)):
        if value != "":
            print(f"  {label}: {value}")
    print()
    print(render(profile.budget().rows(unit), ["budget", unit]))
    print("\nsources:")
    for line in profile.source:
        print(f"  - {line}")
    return 0
