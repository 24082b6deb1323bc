"""The shipped profiles cite sources a user can check, explain their runtime figure, and give every size a unit.

Reads profiles/*.yaml directly (not through planner.profiles), so it checks the files as shipped.
"""

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PROFILES = sorted((ROOT / "profiles").glob("*.yaml"))
DOC = ROOT / "docs" / "profiles.md"
SIZE_KEYS = ("total_memory", "os_reserve", "runtime", "margin")
SIZE_WITH_UNIT = re.compile(r"^\s*[0-9]+(\.[0-9]+)?\s*[KMGT]i?B\s*$")
URL = re.compile(r"https://[A-Za-z0-9.-]+\.[a-z]{2,}/\S*")
TABLE_HEADER = "| process has loaded | RSS (MB) | + (MB) | peak RSS (MB) |"


def test_the_profiles_are_there():
    assert len(PROFILES) >= 15


@pytest.fixture(params=PROFILES, ids=lambda path: path.stem)
def profile(request) -> "tuple[Path, str, dict]":
    text = request.param.read_text()
    return request.param, text, yaml.safe_load(text)


def test_no_private_notes_cited(profile):
    path, text, _ = profile
    assert "facts.md" not in text.lower(), path.name


def test_sources_name_a_public_document_with_its_address(profile):
    path, _, data = profile
    sources = data.get("source")
    assert isinstance(sources, list) and sources, f"{path.name}: source must be a non-empty list"
    assert all(isinstance(line, str) and line.strip() for line in sources), path.name
    assert any(URL.search(line) for line in sources), f"{path.name}: no source gives a public https:// address"


def test_runtime_note_says_where_the_figure_comes_from(profile):
    path, _, data = profile
    note = data.get("runtime_note")
    assert isinstance(note, str) and "docs/profiles.md" in note, f"{path.name}: runtime_note must cite docs/profiles.md"


@pytest.mark.parametrize("key", SIZE_KEYS)
def test_every_size_carries_a_unit(profile, key):
    path, _, data = profile
    value = data[key]
    assert isinstance(value, str) and SIZE_WITH_UNIT.match(value), f"{path.name}: {key} = {value!r} has no unit"


def test_docs_hold_the_measured_table_and_every_profile():
    assert DOC.is_file()
    text = DOC.read_text()
    assert TABLE_HEADER in text
    assert "facts.md" not in text.lower()
    for path in PROFILES:
        assert f"`{path.stem}`" in text, f"docs/profiles.md does not say how {path.stem}'s runtime was derived"


def test_every_profile_states_its_install_route_and_device_md_tells_each(profile):
    """The route is written in each shipped file (not left to the loader's default), and docs/device.md says what
    a user installs for it and lists the profile under it."""
    path, _, data = profile
    assert isinstance(data.get("route"), str), f"{path.name}: no route: line"
    device = (ROOT / "docs" / "device.md").read_text()
    row = next((line for line in device.splitlines() if line.startswith(f"| `{data['route']}` |")), None)
    assert row is not None, f"docs/device.md has no row for route {data['route']}"
    assert f"`{path.stem}`" in row, f"docs/device.md's {data['route']} row does not list {path.stem}"
