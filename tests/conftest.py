"""Shared test helpers: run the installed ``planner`` command in a fresh process."""

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

PLANNER = Path(sys.executable).parent / "planner"


def run_planner(*args: str, timeout: float = 120, cwd: "str | None" = None) -> subprocess.CompletedProcess:
    """The installed ``planner`` console script in a fresh process, run outside the source tree
    (so the installed package, with its compiled core and shipped profiles, is what runs)."""
    return subprocess.run([str(PLANNER), *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd or tempfile.gettempdir())


@pytest.fixture
def planner_cli():
    return run_planner
