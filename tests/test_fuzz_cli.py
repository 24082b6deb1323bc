"""The CLI under hostile input: flags drawn from each command's own argparse parser, values huge, tiny,
negative, NaN, inf, unicode, empty, very long or holding newlines; every run ends with exit status 0 or 2,
and a failure is one line on stderr with no traceback.

The commands run in this process (``planner.cli.main(argv)``), thousands of times, in a scratch folder.
``validate``, ``profiles calibrate``, ``obs scan`` and ``study`` are not run: they train, measure or step environments
for minutes (validate's up-front checks are tested with validate, obs scan's in tests/test_obs_ranges.py, study's
in tests/test_study.py).
Every other command is, and a new command is fuzzed as soon as it exists.
Argument values hold no NUL character (no command line can) and random texts hold no "/" (so no file is
written outside the scratch folder); the curated values below hold the paths that matter, none of them a
place a file could be written outside the scratch folder (the tests may run as root).
"""

import argparse
import contextlib
import io
import os
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from planner.cli import UNCHECKED, build_parser, main
from planner.obs_ranges import choose_ranges
from planner.profiles import builtin_dir

NOT_RUN = {("validate",), ("profiles", "calibrate"), ("obs", "scan"), ("study",)}
EXAMPLES = 2_200
ZOO_SAC = Path(__file__).parent / "data" / "rl_zoo3_sac.yml"

HOSTILE = [
    "0", "-1", "-0", "1", "2", "3", "7", "64", "2048", "1e6", "1_000_000", "-5e5", "1.5", "0.1", "0x10", "1e-310",
    "5e-324", "1e308", "1e309", "-1e308", "1e400", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "9" * 330,
    "9" * 5000, "-" + "9" * 40, "9007199254740993", "18446744073709551616", "", " ", "  1  ", "1,", ",", "1,,2",
    "256,256", "0,0", "-1,64", "64,nan", "1e2,1e3", "٣", "١٢٣", "１２", "²", "½", "é", "日本", "\u202e1", "\u00a0",
    "\ufeff1", "a\nb", "1\n", "\n", "\t", "\r", "\x1b[31m", "\x7f", "x" * 300, "x" * 5000, "-", "--", "---x",
    "-h", "true", "null", "~", "[1]", "{a: 1}", "*a", "&a", "!!python/object:os.system", "\udcff",
    # paths: relative to the scratch folder, or somewhere nothing can be written
    "x.csv", "x.png", "out.yaml", "sub/x.csv", "sub/x.png", "no/such/dir/x.yaml", ".", "..", "./", "a" * 300 + ".csv",
    "a" * 300 + ".png", "a" * 300 + ".yaml", "a\nb.csv", "/proc/x.csv", "/sys/x.png", "/proc/1/x.yaml",
    "fifo.csv", "fifo.png", "big.yaml", "bomb.yaml", "deep.yaml", "keys.yaml", "good.yaml", "fifo.yaml", "bad.yml",
    "zoo.yml",
]
PLAUSIBLE = {
    "env": ["Ant-v3", "Humanoid-v5", "HalfCheetah-v4", "Pendulum-v1", "CartPole-v1", "Hopper-v5", "Nope-v0"],
    "profile": ["jetson-nano", "raspberry-pi-5-8gb", "crazyflie-2.1", "paper-workstation", "good.yaml"],
    "name": ["jetson-nano", "esp32-s3-psram", "good.yaml"],
    "file": ["good.yaml", str(builtin_dir() / "jetson-nano.yaml")],
    "ranges": ["ranges.yaml"],
    "hyperparams": ["zoo.yml"],
    "net": ["256,256", "64", "400,300"],
    "obs_dim": ["17", "348", "3"],
    "action_dim": ["6", "17", "1"],
}

# Random texts: any character but NUL (no argv holds one) and "/" (nothing written outside the scratch folder).
TEXTS = st.text(st.characters(blacklist_characters="\x00/", blacklist_categories=("Cs",)), max_size=12)
NUMBERS = st.one_of(st.integers(-10**40, 10**40).map(str), st.floats(allow_nan=True, allow_infinity=True).map(str),
                    st.floats(allow_nan=True, allow_infinity=True).map(repr))
HOSTILE_VALUES = st.one_of(st.sampled_from(HOSTILE), TEXTS, NUMBERS)


def leaf_parsers(parser: argparse.ArgumentParser, path: "tuple[str, ...]" = ()):
    """(command path, parser) of every command that runs something: ``estimate``, ``profiles show``..."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs and path:
        yield path, parser
    for action in subs:
        for name, sub in action.choices.items():
            yield from leaf_parsers(sub, (*path, name))


LEAVES = dict(leaf_parsers(build_parser()))
FUZZED = sorted(set(LEAVES) - NOT_RUN)


def _plausible(action: argparse.Action) -> "list[str]":
    good = list(action.choices) if action.choices else PLAUSIBLE.get(action.dest, [])
    if not good and action.type is not None and action.type.__name__ in ("count", "int", "float"):
        good = ["1", "4", "1e6", "2048", "1_000"]
    return good


@st.composite
def invocations(draw) -> "tuple[tuple[str, ...], list[str]]":
    """A command and its argv: plausible values (all, or all but one hostile), or hostile values throughout."""
    command = draw(st.sampled_from(FUZZED))
    parser = LEAVES[command]
    chaos = draw(st.integers(0, 3)) == 0
    skipped, forced = set(), set()
    if not chaos:  # one option of each exclusive group; --env or explicit dimensions
        for group in parser._mutually_exclusive_groups:
            members = {action.dest for action in group._group_actions}
            kept = draw(st.sampled_from(sorted(members)))
            skipped |= members - {kept}
            forced |= {kept} if group.required else set()
        if any(action.dest == "env" for action in parser._actions):
            by_env = draw(st.booleans())
            skipped |= {"obs_dim", "action_dim", "obs_dtype"} if by_env else {"env"}
            forced |= set() if by_env else {"obs_dim", "action_dim"}
    argv, values = list(command), []
    for action in parser._actions:
        if action.dest in skipped or (isinstance(action, argparse._HelpAction) and draw(st.integers(0, 99)) > 0):
            continue  # --help: now and then
        wanted = 10 if action.dest in forced else 9 if action.required or action.dest in ("env", "algo") else 2
        for _ in range(1 + (chaos and bool(action.option_strings) and draw(st.integers(0, 9)) == 0)):  # twice
            if action.option_strings and draw(st.integers(0, 9)) >= wanted:
                continue
            if action.option_strings:
                argv.append(draw(st.sampled_from(action.option_strings)))
            if action.nargs != 0:
                good = _plausible(action)
                values.append(len(argv))
                argv.append(draw(st.one_of(st.sampled_from(good), HOSTILE_VALUES) if chaos and good else
                                 st.sampled_from(good) if good else HOSTILE_VALUES))
    if values and not chaos and draw(st.integers(0, 3)) > 0:
        argv[draw(st.sampled_from(values))] = draw(HOSTILE_VALUES)
    if draw(st.integers(0, 19)) == 0:
        argv.insert(draw(st.integers(1, len(argv))), draw(HOSTILE_VALUES))  # a stray word
    return command, argv


def run_cli(argv: "list[str]") -> "tuple[int, str, str]":
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as done:
            code = done.code
    return code, out.getvalue(), err.getvalue()


def assert_clean(argv: "list[str]", code: object, err: str) -> None:
    assert code in (0, 2), (argv, code, err)
    assert "Traceback" not in err and UNCHECKED not in err, (argv, err)
    if code != 0:
        assert err.endswith("\n") and err.count("\n") == 1 and err.startswith("planner"), (argv, err)


GOOD_PROFILE = {
    "name": "my-robot", "description": "test robot", "class": "sbc", "arch": "aarch64", "total_memory": "4GB",
    "gpu_shares_memory": False, "os_reserve": "500MB", "runtime": "350MB", "margin": "100MB", "cpu": "4x A72",
    "gpu": None, "runs_python": True, "runs_torch": True, "source": ["measured by hand"],
}


def write_hostile_files(folder: Path) -> None:
    """The files the curated values name: good, oversized, alias bomb, deeply nested, 30,000 keys, a FIFO..."""
    (folder / "sub").mkdir()
    (folder / "good.yaml").write_text(yaml.safe_dump(GOOD_PROFILE))
    ranges = choose_ranges(np.random.default_rng(0).normal(0, 1, (500, 3)), 2, source={"env": "fuzz"})
    (folder / "ranges.yaml").write_text(yaml.safe_dump(ranges.as_dict()))
    (folder / "big.yaml").write_text("name: x\n" + "# padding\n" * 110_000)
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)]
    (folder / "bomb.yaml").write_text("\n".join(lines) + "\n")
    (folder / "deep.yaml").write_text("name: " + "[" * 1000 + "]" * 1000 + "\n")
    (folder / "keys.yaml").write_text("".join(f"key{i}: 1\n" for i in range(30_000)))
    (folder / "bad.yml").write_text("Humanoid-v5: [1, 2\n")
    (folder / "zoo.yml").write_text(ZOO_SAC.read_text())
    for name in ("fifo.yaml", "fifo.csv", "fifo.png"):
        os.mkfifo(folder / name)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    write_hostile_files(folder)
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield folder
    finally:
        os.chdir(before)


def test_every_command_but_the_slow_ones_is_fuzzed():
    assert set(LEAVES) - set(FUZZED) == NOT_RUN
    assert {("estimate",), ("fit",), ("reproduce",), ("profiles", "list"), ("profiles", "show"),
            ("profiles", "check")} <= set(FUZZED)


def test_the_cli_fuzzer_runs_thousands_of_hostile_invocations(scratch):
    seen: "dict[tuple, list[int]]" = {command: [] for command in FUZZED}
    started = time.perf_counter()

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(invocations())
    def one(invocation):
        command, argv = invocation
        code, _, err = run_cli(argv)
        assert_clean(argv, code, err)
        seen[command].append(code)

    one()
    elapsed = time.perf_counter() - started
    runs = sum(map(len, seen.values()))
    print(f"\nCLI fuzzer: {runs:,} invocations in {elapsed:.1f} s; "
          + ", ".join(f"{' '.join(c)} {len(v)} ({v.count(0)} exit 0)" for c, v in seen.items()))
    assert runs >= 2_000
    for command, codes in seen.items():  # every command was reached, and ran through now and then
        assert len(codes) >= 100 and codes.count(0) >= 1 and codes.count(2) >= 1, (command, len(codes))
