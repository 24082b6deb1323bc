"""The README's two set-up commands are what CI runs, word for word; its output blocks are what the commands print."""

import re
import shlex
import shutil
from pathlib import Path

import pytest

from validation.study.summary import summarize

ROOT = Path(__file__).resolve().parents[1]
SMALL_STUDY = ROOT / "docs" / "measurements" / "study-small"


def setup_commands() -> "list[str]":
    """The bash blocks of the README's "Set up" section."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.S)]


def test_ci_runs_both_readme_setup_commands():
    commands = setup_commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("planner fit --profile jetson-nano --env Ant-v3")
    assert commands[1].startswith("pip install torch==2.13.0 && ") and commands[1].endswith("pytest -q")
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert command in ci, command


def marked_outputs() -> "list[tuple[str, str]]":
    """(command, output) for each README block introduced by ``<!-- output of: planner ... -->``."""
    readme = (ROOT / "README.md").read_text()
    return re.findall(r"<!-- output of: (planner [^>]*?) -->\n```\n(.*?)```", readme, re.S)


def test_the_readme_shows_outputs_checked_below():
    commands = [command for command, _ in marked_outputs()]
    assert len(commands) >= 4, commands
    assert "planner fit --profile jetson-nano --env Ant-v3" in commands


@pytest.mark.parametrize("command, shown", marked_outputs(), ids=[c for c, _ in marked_outputs()])
def test_readme_output_blocks_match_what_the_commands_print(planner_cli, command, shown):
    done = planner_cli(*shlex.split(command)[1:])
    assert done.returncode in (0, 1), done.stderr
    printed = "\n".join(line.rstrip() for line in done.stdout.rstrip("\n").splitlines())
    assert printed == "\n".join(line.rstrip() for line in shown.rstrip("\n").splitlines())


def test_the_readme_shows_the_small_study_as_its_committed_trials_summarize(tmp_path):
    """The README's small.yaml tables are what ``planner study --summarize`` makes of the trials committed in
    docs/measurements/study-small, every trial finished: no row is written by hand."""
    summary = summarize(shutil.copytree(SMALL_STUDY, tmp_path / "small"))
    assert summary["done"] == summary["trials"] and not summary["failed"] and not summary["unfinished"]
    readme = (ROOT / "README.md").read_text()
    rows = [line for line in summary["markdown"].splitlines() if line.startswith("| ")]
    storages = sum(len(cell["storages"]) for cell in summary["cells"])
    assert storages and len(rows) == 2 * (1 + storages)  # two tables: a header and one row per storage
    assert [row for row in rows if row not in readme] == []
