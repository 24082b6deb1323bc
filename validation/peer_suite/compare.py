"""The expected-differences list and the comparison of a peer-suite run with it.

The list (``expected.yaml`` beside this file) names the upstream tests that fail on the project's buffers
on purpose. Each entry maps a test id pattern (``<distribution>/<pytest node id>``; ``*`` matches any
characters, nothing else is special) to its ``reason``, one of the list's documented ``reasons``, and
``error``, a regular expression the test's one-line error must match (so a listed test that starts failing
for another cause is not hidden). A failure outside the list, a listed test that fails with another error,
a listed test that passes and, on a full run, an entry that matches no test: each fails the run.

>>> entries = parse_expected({"reasons": {"float32": "sampled observations are float32"},
...                           "expected": {"sb3/t.py::test_dtype[*]": {"reason": "float32", "error": "float32"}}})
>>> result = compare({"sb3/t.py::test_dtype[uint8]": {"outcome": "failed", "error": "dtype('float32') != uint8"},
...                   "sb3/t.py::test_add": {"outcome": "failed", "error": "IndexError: out of range"},
...                   "sb3/t.py::test_dtype[float32]": {"outcome": "passed", "error": ""}}, entries, full=True)
>>> len(result.passed), len(result.expected["float32"]), result.unexpected
(1, 1, [('sb3/t.py::test_add', 'IndexError: out of range')])
>>> result.stale
[('sb3/t.py::test_dtype[*]', 'sb3/t.py::test_dtype[float32] passes')]
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from planner.errors import PlannerError

EXPECTED_FILE = Path(__file__).with_name("expected.yaml")
FAILED = ("failed", "error")


@dataclass(frozen=True)
class Entry:
    """One expected difference: the tests it covers, why they fail, and the error they must fail with."""

    pattern: str
    reason: str
    error: str

    def covers(self, test_id: str) -> bool:
        return re.fullmatch(".*".join(map(re.escape, self.pattern.split("*"))), test_id) is not None

    def explains(self, error: str) -> bool:
        return re.search(self.error, error) is not None


@dataclass
class Comparison:
    """A run held against the list: every test lands in exactly one of passed, skipped, expected, unexpected."""

    passed: "list[str]" = field(default_factory=list)
    skipped: "list[str]" = field(default_factory=list)
    expected: "dict[str, list[str]]" = field(default_factory=dict)  # reason -> test ids
    unexpected: "list[tuple[str, str]]" = field(default_factory=list)  # (test id, one-line error)
    stale: "list[tuple[str, str]]" = field(default_factory=list)  # (entry pattern, why it is stale)

    @property
    def ok(self) -> bool:
        return not self.unexpected and not self.stale


def load_expected(path: "str | Path" = EXPECTED_FILE) -> "list[Entry]":
    """The entries of the YAML list at ``path``; a missing or malformed list is a :class:`PlannerError`."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise PlannerError(f"expected cannot read {path}: {err}".splitlines()[0], "expected") from err
    try:
        return parse_expected(data)
    except PlannerError as err:
        raise PlannerError(f"expected {path}: {err}", "expected") from err


def parse_expected(data: Any) -> "list[Entry]":
    """Entries from the list's parsed YAML (``reasons``: name -> text; ``expected``: pattern -> entry)."""
    if not isinstance(data, dict) or not isinstance(data.get("reasons"), dict) or set(data) - {"reasons", "expected"}:
        raise PlannerError("needs a 'reasons' mapping and an 'expected' mapping, nothing else")
    entries = []
    for pattern, entry in (data.get("expected") or {}).items():
        if not isinstance(entry, dict) or set(entry) != {"reason", "error"}:
            raise PlannerError(f"entry {pattern!r} needs exactly 'reason' and 'error'")
        if entry["reason"] not in data["reasons"]:
            raise PlannerError(f"entry {pattern!r}: reason {entry['reason']!r} is not one of {sorted(data['reasons'])}")
        try:
            re.compile(entry["error"])
        except (re.error, TypeError) as err:
            raise PlannerError(f"entry {pattern!r}: error is not a regular expression ({err})") from err
        entries.append(Entry(str(pattern), entry["reason"], entry["error"]))
    return entries


def compare(results: "dict[str, dict[str, str]]", entries: "list[Entry]", full: bool) -> Comparison:
    """Sort each test of ``results`` (test id -> outcome and one-line error) against ``entries``; ``full``:
    the whole selection ran, so an entry that matches no test is stale too."""
    out, used = Comparison(), set()
    for test_id, result in sorted(results.items()):
        entry = next((e for e in entries if e.covers(test_id)), None)
        if entry is not None:
            used.add(entry)
        outcome, error = result["outcome"], result["error"]
        if outcome in FAILED:
            if entry is not None and entry.explains(error):
                out.expected.setdefault(entry.reason, []).append(test_id)
            else:
                listed = "" if entry is None else f"[listed as {entry.reason}, but the error is not /{entry.error}/] "
                out.unexpected.append((test_id, listed + error))
        elif outcome == "passed":
            out.passed.append(test_id)
            if entry is not None:
                out.stale.append((entry.pattern, f"{test_id} passes"))
        else:
            out.skipped.append(test_id)
    if full:
        out.stale += [(e.pattern, "matches no test") for e in entries if e not in used]
    return out


def summary(result: Comparison, width: int = 160) -> str:
    """Counts, expected failures by reason, unexpected failures grouped by their one-line error, stale entries."""
    lines = [f"{len(result.passed)} passed, {sum(map(len, result.expected.values()))} expected failures, "
             f"{len(result.unexpected)} unexpected failures, {len(result.stale)} stale entries, "
             f"{len(result.skipped)} skipped"]
    lines += [f"  expected ({reason}): {len(tests)}" for reason, tests in sorted(result.expected.items())]
    if result.unexpected:
        lines.append("unexpected failures, by error:")
        by_error: "dict[str, list[str]]" = {}
        for test_id, error in result.unexpected:
            by_error.setdefault(error, []).append(test_id)
        for error, tests in sorted(by_error.items(), key=lambda item: -len(item[1])):
            lines.append(_clip(f"  {len(tests)} x {error}", width))
            lines += [f"      {test_id}" for test_id in tests]
    if result.stale:
        lines.append("stale entries (remove them from the list or find out why):")
        lines += [_clip(f"  {pattern}: {why}", width) for pattern, why in result.stale]
    return "\n".join(lines)


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else line[: width - 3] + "..."
