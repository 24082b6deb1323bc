"""``python -m validation.peer_suite``: stable-baselines3's and sb3-contrib's own tests on the project's buffers.

Fetches the upstream ``tests/`` of the installed versions (:mod:`validation.peer_suite.upstream`), runs the
selected files with the buffer classes swapped for the project's (:mod:`validation.peer_suite.shim`) and
holds each test's outcome against the expected-differences list (:mod:`validation.peer_suite.compare`).
Exit status 0: every failure is listed and no entry is stale; 1: otherwise; 2: bad input.
Needs the ``train`` and ``test`` extras and sb3-contrib; the upstream tests need nothing more.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from planner.errors import PlannerError, quote
from validation.peer_suite.compare import EXPECTED_FILE, compare, load_expected, summary
from validation.peer_suite.upstream import DESELECTED, SELECTION, installed_version, upstream_tests

FLAGS = {"expected": "--expected", "only": "--only", "workdir": "--workdir"}


def default_workdir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "justround-planner" / "peer-suite"


def parse_args(argv: "list[str] | None") -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m validation.peer_suite", description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=default_workdir(),
                        help="where the upstream tests are kept (default: %(default)s)")
    parser.add_argument("--expected", type=Path, default=EXPECTED_FILE,
                        help="the expected-differences list (default: the one shipped with the package)")
    parser.add_argument("--only", action="append", metavar="DIST/tests/FILE.py",
                        help="run only this upstream file (repeatable), e.g. stable-baselines3/tests/test_buffers.py")
    parser.add_argument("-k", dest="keyword", help="pytest -k expression within the selected files")
    parser.add_argument("--results", type=Path, help="also write each test's outcome and error to this JSON file")
    return parser.parse_args(argv)


def selected_files(only: "list[str] | None") -> "dict[str, list[str]]":
    """Distribution -> upstream test files to run: :data:`SELECTION`, or the ``--only`` files."""
    if not only:
        return {dist: list(files) for dist, files in SELECTION.items()}
    chosen: "dict[str, list[str]]" = {}
    for item in only:
        dist, _, rest = item.partition("/")
        folder, _, name = rest.partition("/")
        if dist not in SELECTION or folder != "tests" or not name.endswith(".py"):
            raise PlannerError(f"only takes DIST/tests/FILE.py with DIST one of {sorted(SELECTION)}, got {quote(item)}",
                               "only")
        chosen.setdefault(dist, []).append(name)
    return chosen


def run_upstream(dist: str, folder: Path, files: "list[str]", keyword: "str | None") -> "tuple[dict, dict]":
    """Run ``files`` of ``folder/tests`` under the shim: (test id -> outcome and error, buffer swaps)."""
    missing = [name for name in files if not (folder / "tests" / name).is_file()]
    if missing:
        raise PlannerError(f"only: {dist} {folder.name.rsplit('-', 1)[-1]} has no tests/{missing[0]}", "only")
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.json"
        cmd = [sys.executable, "-m", "pytest", "-p", "validation.peer_suite.shim", "-p", "no:cacheprovider",
               "--peer-results", str(results), "-q", "--tb=no", "-o", "console_output_style=count",
               *(["-k", keyword] if keyword else []), *(f"--deselect={test}" for test in DESELECTED),
               *(f"tests/{name}" for name in files)]
        print(f"== {dist} {installed_version(dist)}: {' '.join(files)}", flush=True)
        code = subprocess.run(cmd, cwd=folder).returncode
        if code not in (0, 1, 5) or not results.is_file():  # 5: -k selected nothing
            raise PlannerError(f"pytest stopped with exit status {code} in {folder} (see its output above)")
        data = json.loads(results.read_text())
    return {f"{dist}/{nodeid}": outcome for nodeid, outcome in data["tests"].items()}, data["buffers"]


def main(argv: "list[str] | None" = None) -> int:
    args = parse_args(argv)
    try:
        entries = load_expected(args.expected)
        files = selected_files(args.only)
        folders = {dist: upstream_tests(dist, args.workdir) for dist in files}
        results, buffers = {}, {}
        for dist, names in files.items():
            outcomes, buffers = run_upstream(dist, folders[dist], names, args.keyword)
            results.update(outcomes)
    except PlannerError as err:
        print(f"peer_suite: error: {err.for_flags(FLAGS)}", file=sys.stderr)
        return 2
    if args.results:
        args.results.write_text(json.dumps(results, indent=1))
    result = compare(results, entries, full=not args.only and not args.keyword)
    print("buffers swapped in: " + ", ".join(f"{name} -> {cls}" for name, cls in buffers.items()))
    print(summary(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
