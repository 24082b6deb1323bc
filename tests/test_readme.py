"""The README is a front page: its two set-up commands are what CI runs, word for word; the output blocks of
the README and of docs/*.md are what the commands print; every docs page is linked from it and every relative
link resolves."""

import re
import shlex
import shutil
from pathlib import Path

import pytest

from validation.study.summary import summarize

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
SMALL_STUDY = ROOT / "docs" / "measurements" / "study-small"
EVIDENCE_STUDY = ROOT / "docs" / "measurements" / "study-evidence"
FRONT_PAGE_LINES = 300


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def setup_commands() -> "list[str]":
    """The bash blocks of the README's "Set up" section."""
    readme = README.read_text()
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


def marked_outputs() -> "list[tuple[str, str, str]]":
    """(page, command, output) for each block of README.md and docs/*.md introduced by
    ``<!-- output of: planner ... -->``."""
    return [(rel(page), command, output) for page in PAGES
            for command, output in re.findall(r"<!-- output of: (planner [^>]*?) -->\n```\n(.*?)```", page.read_text(),
                                              re.S)]


def test_the_pages_show_outputs_checked_below():
    shown = {(page, command) for page, command, _ in marked_outputs()}
    assert {("README.md", "planner fit --profile jetson-nano --env Ant-v3"),
            ("README.md", "planner reproduce figure2")} <= shown
    # the blocks the README showed before it became a front page, each still shown (and checked) somewhere
    assert {"planner fit --profile paper-workstation --env Humanoid-v5", "planner fit --all-profiles --env Humanoid-v3",
            "planner estimate --algo sac --env Humanoid-v5 --storage packed",
            "planner reproduce all"} <= {command for _, command in shown}


@pytest.mark.parametrize("page, command, shown", marked_outputs(),
                         ids=[f"{page}: {command}" for page, command, _ in marked_outputs()])
def test_output_blocks_match_what_the_commands_print(planner_cli, page, command, shown):
    done = planner_cli(*shlex.split(command)[1:])
    assert done.returncode in (0, 1), done.stderr
    printed = "\n".join(line.rstrip() for line in done.stdout.rstrip("\n").splitlines())
    assert printed == "\n".join(line.rstrip() for line in shown.rstrip("\n").splitlines())


def test_the_readme_validate_excerpt_is_from_the_measured_run():
    """The README's ``planner validate`` block is an excerpt of the run shown whole in docs/validate.md: its lines,
    in the same order."""
    excerpt = re.findall(r"<!-- excerpt of: docs/validate.md -->\n```\n(.*?)```", README.read_text(), re.S)
    assert len(excerpt) == 1
    lines = [line for line in excerpt[0].splitlines() if line.strip()]
    whole = (ROOT / "docs" / "validate.md").read_text().splitlines()
    positions = [whole.index(line) for line in lines]  # ValueError names a line the measured run lacks
    assert len(lines) >= 6 and positions == sorted(positions)


def section_rows(page: Path, heading: str) -> "list[str]":
    """The table rows (``| ...``) of the page's section that starts with ``heading``."""
    section = page.read_text().split(f"\n{heading}", 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("| ")]


@pytest.mark.parametrize("folder, heading, readme", [
    (SMALL_STUDY, "## Results: `small.yaml` here", False),
    (EVIDENCE_STUDY, "## Results: `evidence.yaml` here", True),
], ids=["small", "evidence"])
def test_a_study_shown_is_what_its_committed_trials_summarize(tmp_path, folder, heading, readme):
    """docs/study.md's two tables of a committed study (returns with effects and verdicts, Table I), and for the
    evidence study the README's returns table, are what ``planner study --summarize`` makes of the trials
    committed in its folder, every trial finished: each generated row is shown, and each row shown is generated
    (none written by hand)."""
    summary = summarize(shutil.copytree(folder, tmp_path / folder.name))
    assert summary["done"] == summary["trials"] and not summary["failed"] and not summary["unfinished"]
    rows = [line for line in summary["markdown"].splitlines() if line.startswith("| ")]
    storages = sum(len(cell["storages"]) for cell in summary["cells"])
    assert storages and len(rows) == 2 * (1 + storages)  # two tables: a header and one row per storage
    returns = rows[:1 + storages]
    assert "effect (95 % CI)" in returns[0] and "verdict" in returns[0] and "ms/step" in rows[1 + storages]
    assert section_rows(ROOT / "docs" / "study.md", heading) == rows
    if readme:
        assert section_rows(README, "## Does learning survive it?") == returns


def test_the_readme_is_a_front_page():
    lines = README.read_text().splitlines()
    assert len(lines) <= FRONT_PAGE_LINES, f"README.md has {len(lines)} lines; move detail into docs/"


def links(page: Path) -> "list[str]":
    """The targets of the page's markdown links and images, fenced code blocks left out."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return re.findall(r"\]\(([^)\s]+)\)", text)


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(ROOT / target.split("#", 1)[0]).resolve() for target in links(README)}
    assert DOCS and [rel(page) for page in DOCS if page.resolve() not in linked] == []


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_relative_link_resolves(page):
    relative = [target for target in links(page) if not re.match(r"[a-z][a-z0-9+.-]*:", target)]
    broken = [target for target in relative
              if not target.startswith("#") and not (page.parent / target.split("#", 1)[0]).exists()]
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=rel)
def test_every_page_says_its_units(page):
    """A page that gives sizes in a unit says what the unit is, in one form: ``MB = 10^6``, ``MiB = 2^20``, ..."""
    text = page.read_text()
    units = {"KB": "10^3", "MB": "10^6", "GB": "10^9", "KiB": "2^10", "MiB": "2^20", "GiB": "2^30"}
    unsaid = [f"{unit} = {meaning}" for unit, meaning in units.items()
              if re.search(rf"\d\s?{unit}\b", text) and f"{unit} = {meaning}" not in text]
    assert unsaid == [], f"{rel(page)} gives sizes without saying {', '.join(unsaid)} B"
