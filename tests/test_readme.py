"""The README's two set-up commands are what CI runs, word for word."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
