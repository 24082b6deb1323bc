"""Device profiles under mutation: the shipped profiles with keys deleted or given twice, values swapped for
hostile ones (aliases, huge integers, deep nesting, control characters, long texts), the file truncated or
with bytes inserted; loading one either succeeds or fails with one PlannerError line that quotes no value at
length, through the loader and through ``planner profiles check``."""

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_cli import assert_clean, run_cli

from planner.errors import PlannerError
from planner.profiles import ROUTES, builtin_dir, load_profile
from planner.yamlio import MAX_BYTES

SHIPPED = {path.name: path.read_text() for path in sorted(builtin_dir().glob("*.yaml"))}
HOSTILE_VALUES = [
    "", "~", "null", "true", "0", "-1", "1e400", ".nan", "-.inf", "9" * 5000, "9" * 400, "0x" + "f" * 300,
    "0b" + "1" * 5000, "1:30:00", "[" * 500 + "]" * 500, "{a: " * 80 + "1" + "}" * 80, "&a 1", "*a", "&a [*a]",
    "!!python/object/apply:os.system [ls]", "!!binary aGVsbG8=", "!!set {a, b}", "!!omap [{a: 1}]", "'x\ty'",
    '"a\\nb\\u0000c"', "x" * 3000, "'" + "y" * 3000 + "'", "|\n  line one\n  line two", "\u202e4GB", "4 GB", "4gb",
    "1e-310 GB", "1e308 GiB", "4GB # comment", "[4GB]", "{a: 1}", "2025-01-01", "? complex", "@reserved", "%TAG",
    "microcontroller", "jetpack-6", "pip-cuda", "x86_64", "false",
]
INSERTED = [b"\x00", b"\xff\xfe", b"\t", b"\x1b[31m", b"\r", b"\n  ", b": ", b"- ", b"&a ", b"*a", b"---\n",
            b"...\n", b"\xef\xbb\xbf", b"#", b"'", b'"', b"{", b"[", "é".encode(), "\u2028".encode()]


@st.composite
def mutated_profiles(draw) -> bytes:
    lines = SHIPPED[draw(st.sampled_from(sorted(SHIPPED)))].splitlines(keepends=True)
    keyed = [i for i, line in enumerate(lines) if line[:1].isalpha() and ":" in line]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["delete", "twice", "value", "value", "unknown", "bomb"]))
        i = draw(st.sampled_from(keyed)) if keyed else 0
        if kind == "delete" and lines:
            del lines[i]
            keyed = [i for i, line in enumerate(lines) if line[:1].isalpha() and ":" in line]
        elif kind == "twice" and lines:
            lines.append(lines[i])
        elif kind == "value" and lines:
            key = lines[i].split(":", 1)[0]
            lines[i] = f"{key}: {draw(st.sampled_from(HOSTILE_VALUES) | st.text(max_size=30))}\n"
        elif kind == "unknown":
            lines += [f"extra_{n}: {n}\n" for n in range(draw(st.integers(1, 200)))]
        elif kind == "bomb":
            lines += ['lol0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]\n']
            lines += [f"lol{n}: &l{n} [{', '.join([f'*l{n - 1}'] * 9)}]\n" for n in range(1, 9)]
    data = "".join(lines).encode()
    cut = draw(st.sampled_from(["whole", "whole", "truncate", "insert"]))
    where = draw(st.integers(0, len(data)))
    if cut == "truncate":
        data = data[:where]
    elif cut == "insert":
        data = data[:where] + draw(st.sampled_from(INSERTED) | st.binary(max_size=8)) + data[where:]
    return data


@pytest.fixture(scope="module")
def profile_file(tmp_path_factory):
    return tmp_path_factory.mktemp("mutants") / "mutant.yaml"


def test_mutated_profiles_load_or_fail_with_one_short_line(profile_file):
    counts = {"loaded": 0, "refused": 0}
    started = time.perf_counter()

    @settings(max_examples=600, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(mutated_profiles(), st.integers(0, 4))
    def one(data, via_cli):
        profile_file.write_bytes(data)
        if via_cli == 0:  # one run in five through `planner profiles check FILE`
            code, out, err = run_cli(["profiles", "check", str(profile_file)])
            assert_clean(["profiles", "check", "<mutant>"], code, err)
            assert len(err) < 400, err
            counts["loaded" if code == 0 else "refused"] += 1
            return
        try:
            profile = load_profile(str(profile_file))
        except PlannerError as error:
            message = str(error)
            assert "\n" not in message and message.isprintable() and len(message) < 400, message
            counts["refused"] += 1
        else:
            assert profile.budget().available > 0
            counts["loaded"] += 1

    one()
    elapsed = time.perf_counter() - started
    print(f"\nprofile fuzzer: {sum(counts.values())} mutants ({counts}) in {elapsed:.1f} s")
    assert sum(counts.values()) >= 500 and counts["loaded"] >= 10 and counts["refused"] >= 300


def test_the_shipped_profiles_are_far_below_the_size_cap():
    assert max(len(text.encode()) for text in SHIPPED.values()) < MAX_BYTES // 100


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_every_route_on_every_shipped_profile_loads_or_is_refused_naming_route(tmp_path, route):
    """A route that does not suit the profile (a microcontroller route for a board that runs Python, a JetPack route
    for an x86-64 box) is one line naming the key; any other loads with the budget unchanged."""
    for name, text in SHIPPED.items():
        lines = [f"route: {route}" if line.startswith("route:") else line for line in text.splitlines()]
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        try:
            profile = load_profile(str(path))
        except PlannerError as error:
            message = str(error)
            assert message.startswith(f"{path}: key 'route': expected ") and "\n" not in message, message
        else:
            assert profile.route == route
            assert profile.budget() == load_profile(str(builtin_dir() / name)).budget()
