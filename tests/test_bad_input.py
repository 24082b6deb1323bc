"""Hostile input, one finding at a time: each ends as one short line and exit status 2 (or one PlannerError),
fast and small, and output files are written whole by one writer that never follows a symlink."""

import ast
import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from test_fuzz_cli import GOOD_PROFILE, run_cli

from planner.errors import PlannerError, quote
from planner.hyperparams import load_file
from planner.hyperparams import settings as settings_of
from planner.output import check_output_path, write_atomic
from planner.profiles import load_profile
from planner.yamlio import MAX_DEPTH, parse_yaml

BOMB = "\n".join(['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
                 + [f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(8)]) + "\n"
LONG = "a" * 300  # one name longer than any file system takes (255 bytes)


def one_line_exit_2(code: int, err: str, *fragments: str) -> None:
    assert code == 2 and err.endswith("\n") and err.count("\n") == 1, (code, err)
    assert "Traceback" not in err and len(err) < 600, err
    for fragment in fragments:
        assert fragment in err, err


def good_profile(**change) -> str:
    return yaml.safe_dump({**GOOD_PROFILE, **change})


# -- bounded YAML -----------------------------------------------------------------------------------------

MEASURE = """
import json, re, sys, time
from pathlib import Path
from planner.errors import PlannerError
from planner.{module} import {loader}


def peak_mib():  # VmHWM: this process's peak RSS (unlike ru_maxrss, not inherited from the forking parent)
    return int(re.search(r"VmHWM:\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1)) / 1024


before = peak_mib()
start = time.perf_counter()
try:
    {loader}(sys.argv[1])
    message = None
except PlannerError as error:
    message = str(error)
print(json.dumps({{"seconds": time.perf_counter() - start, "message": message, "rss_mb": peak_mib(),
                  "rss_growth_mb": peak_mib() - before}}))
"""


def measured(module: str, loader: str, path: Path) -> dict:
    """Load ``path`` in a fresh process: seconds, peak RSS in MiB (2^20 B) and the message."""
    done = subprocess.run([sys.executable, "-c", MEASURE.format(module=module, loader=loader), str(path)],
                          capture_output=True, text=True, timeout=120, cwd=path.parent)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("module, loader, fragment", [
    ("profiles", "load_profile", "anchors (&name) and aliases (*name) are not read here"),
    ("hyperparams", "load_file", "aliases expand to more than 100,000 values"),  # rl-zoo3 files may merge anchors
])
def test_an_alias_bomb_is_refused_in_under_a_second_and_100_mib(tmp_path, module, loader, fragment):
    path = tmp_path / "bomb.yaml"
    path.write_text(BOMB)  # 9^9 = 387,420,489 strings once expanded
    result = measured(module, loader, path)
    print(f"\nalias bomb via {module}: {result['seconds'] * 1000:.1f} ms, peak RSS {result['rss_mb']:.1f} MiB "
          f"(+{result['rss_growth_mb']:.1f} MiB while loading)")
    assert result["message"] and fragment in result["message"] and "line" in result["message"]
    assert result["seconds"] < 1.0 and result["rss_mb"] < 100 and result["rss_growth_mb"] < 5


def test_thirty_thousand_unknown_keys_are_refused_in_linear_time(tmp_path):
    path = tmp_path / "keys.yaml"
    path.write_text(good_profile() + "".join(f"key{i}: {i}\n" for i in range(30_000)))
    result = measured("profiles", "load_profile", path)
    print(f"\n30,000 unknown keys: refused in {result['seconds']:.2f} s")
    assert "unknown key 'key0'" in result["message"] and result["seconds"] < 5  # 17 s when it was quadratic


def test_a_key_given_twice_among_thirty_thousand_is_found_in_linear_time(tmp_path):
    path = tmp_path / "twice.yaml"
    path.write_text("".join(f"key{i}: {i}\n" for i in range(30_000)) + "key7: again\n")
    result = measured("profiles", "load_profile", path)
    print(f"\n30,000 keys, one given twice: refused in {result['seconds']:.2f} s")
    assert "key 'key7' given twice (first at line 8)" in result["message"] and result["seconds"] < 5


@pytest.mark.parametrize("text, fragment", [
    ("name: " + "9" * 5000 + "\n", "an integer of 5,000 digits (at most 4,300 are read)"),
    ("name: " + "[" * 100 + "]" * 100 + "\n", f"nested more than {MAX_DEPTH} levels deep"),
    ("name: " + "[" * 1000 + "]" * 1000 + "\n", "nest"),  # libyaml, where PyYAML has it, stops first
    ("name: 'a\x07b'\n", "characters are not allowed"),
    ("name: x\n" + "# padding\n" * 110_000, "bytes; files over 1,000,000 bytes are refused"),
    ("a: &x [*x]\n", "anchors (&name) and aliases (*name) are not read here"),
    ("? [a, b]\n: 1\n", "found unhashable key"),
    ("name: !!python/object/apply:os.system [ls]\n", "could not determine a constructor"),
])
def test_hostile_yaml_is_one_line(tmp_path, text, fragment):
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    with pytest.raises(PlannerError) as caught:
        load_profile(str(path))
    message = str(caught.value)
    assert fragment in message and message.startswith(f"{path}: ") and message.isprintable(), message
    code, _, err = run_cli(["profiles", "check", str(path)])
    one_line_exit_2(code, err, fragment)


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as handle:
        handle.truncate(10**12)  # a sparse terabyte: reading it would never end
    with pytest.raises(PlannerError, match="1,000,000,000,000 bytes; files over 1,000,000 bytes are refused"):
        load_profile(str(path))


def test_a_fifo_is_refused_at_once_not_waited_on(tmp_path):
    import os

    os.mkfifo(tmp_path / "pipe.yaml")
    with pytest.raises(PlannerError, match="pipe.yaml: not a regular file"):
        load_profile(str(tmp_path / "pipe.yaml"))


@pytest.mark.parametrize("value, start", [
    ("x" * 10_000, "'xxxxxxxxxxxxxxxxxxxx"),
    ("line one\nline two\x1b[31m", "'line one\\nline two\\x1b[31m'"),
    ("9" * 4000, "'99999999999999999999"),
])
def test_a_value_is_quoted_on_one_line_in_at_most_80_characters(tmp_path, value, start):
    path = tmp_path / "robot.yaml"
    path.write_text(good_profile(arch=value))
    with pytest.raises(PlannerError) as caught:
        load_profile(str(path))
    message = str(caught.value)
    shown = message.split("arm-cortex-m4, got ", 1)[1]
    assert shown.startswith(start) and shown.endswith("'") and len(shown) <= 80 and message.isprintable()


def test_a_huge_integer_value_is_named_not_printed(tmp_path):
    path = tmp_path / "robot.yaml"
    path.write_text(good_profile().replace("runs_torch: true", "runs_torch: " + "9" * 4000))
    with pytest.raises(PlannerError, match="key 'runs_torch': expected true or false, got an integer of 4,000 digits"):
        load_profile(str(path))
    assert quote(-(10**5000)) == "a negative integer of about 5,001 digits"


def test_rl_zoo3_merges_still_load_within_the_bounds():
    data = load_file(Path(__file__).parent / "data" / "rl_zoo3_sac.yml")
    assert data["Humanoid-v4"]["learning_starts"] == data["HalfCheetah-v4"]["learning_starts"] == 10_000
    assert data["Humanoid-v4"]["n_timesteps"] == 2e6  # a merged key overridden, as YAML's merge says
    assert parse_yaml("d: &d {x: 1, y: 2}\ne:\n  <<: *d\n  x: 3\n", "f", aliases=True)["e"] == {"x": 3, "y": 2}
    with pytest.raises(PlannerError, match="key 'x' given twice"):
        parse_yaml("e:\n  x: 1\n  x: 2\n", "f", aliases=True)


@pytest.mark.parametrize("policy_kwargs, fragment", [
    ("-" * 5000 + "1", "policy_kwargs: nested too deeply to read"),  # a RecursionError in ast.parse before
    ("a." * 3000 + "b", "policy_kwargs: nested too deeply to read"),
    ("dict(net_arch=[" + "9" * 400 + "])", "layer sizes (at most 2^53), got [an integer of 400 digits]"),
    ("dict(net_arch=[" + "9" * 5000 + "])", "policy_kwargs: "),
    ("dict(a=" * 300 + "1" + ")" * 300, "not a Python expression (too many nested parentheses)"),
])
def test_hostile_policy_kwargs_in_a_hyperparams_file_are_one_line(tmp_path, monkeypatch, policy_kwargs, fragment):
    monkeypatch.chdir(tmp_path)
    Path("h.yml").write_text(yaml.safe_dump({"Humanoid-v5": {"buffer_size": 1000, "policy_kwargs": policy_kwargs}}))
    code, _, err = run_cli(["estimate", "--algo", "sac", "--env", "Humanoid-v5", "--hyperparams", "h.yml"])
    one_line_exit_2(code, err, "--hyperparams h.yml [Humanoid-v5]", fragment)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(st.text(st.sampled_from(list("dict(net_arch=[pi,qf,vf])n_critics{}:'\"0123456789-.e+*/ \\")), max_size=120)
       | st.sampled_from(["dict(net_arch=[64, 64])", "dict(net_arch=dict(pi=[64], qf=[64]))"]).map(
           lambda text: text.replace("64", "9" * 5000)))
def test_any_policy_kwargs_text_is_a_dict_or_one_planner_error(text):
    try:
        found = settings_of("sac", {"policy_kwargs": text})
    except PlannerError as error:
        assert "\n" not in str(error) and len(str(error)) < 400, str(error)
    else:
        assert found.net is None or all(1 <= size <= 2**53 for size in found.net)


# -- the CLI: OSError, OverflowError, ValueError, RecursionError reachable from a flag ---------------------

@pytest.mark.parametrize("argv, fragments", [
    (["fit", "--profile", LONG + ".yaml", "--env", "Ant-v3"], ["--profile", "File name too long"]),
    (["fit", "--profile", LONG, "--env", "Ant-v3"], ["--profile", "File name too long"]),
    (["fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--csv", LONG + ".csv"], ["--csv", "File name too long"]),
    (["fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--plot", LONG + ".png"], ["--plot", "too long"]),
    (["profiles", "check", LONG + ".yaml"], ["File name too long"]),
    (["profiles", "show", LONG], ["File name too long"]),
    (["estimate", "--algo", "sac", "--env", "Humanoid-v4", "--hyperparams", LONG + ".yml"], ["--hyperparams"]),
    (["estimate", "--algo", "sac", "--env", "Ant-v3", "--clamp", "1e308"], ["--clamp", "more than 32 bits"]),
    (["fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--clamp", "1e308"], ["--clamp"]),
    (["estimate", "--algo", "sac", "--env", "Ant-v3", "--net", "9" * 330], ["--net", "whole numbers in 1..2^53"]),
    (["fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--net", "9" * 330], ["--net", "1..2^53"]),
    (["fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--csv", "/sys/x.csv"], ["--csv", "cannot write there"]),
    (["estimate", "--algo", "sac", "--env", "Ant-v3", "--decimals", "9" * 5000], ["--decimals", "..."]),
    (["estimate", "--algo", "sac", "--env", "Ant\nv3"], ["--env", "Ant\\nv3"]),
])
def test_tracebacks_found_by_hand_are_one_line_in_a_real_process(planner_cli, argv, fragments):
    done = planner_cli(*argv)
    one_line_exit_2(done.returncode, done.stderr, *fragments)


def test_calibrate_refuses_an_unwritable_out_before_measuring_anything(planner_cli):
    done = planner_cli("profiles", "calibrate", "--out", "/sys/x.yaml", timeout=30)
    one_line_exit_2(done.returncode, done.stderr, "--out /sys/x.yaml: cannot write there")


def test_calibrate_writes_a_file_stem_yaml_would_misread_as_a_quoted_name(tmp_path, monkeypatch):
    """``--out '[x.yaml'``: the profile's name is the stem "[x", which plain YAML would read as an open list."""
    import validation.harness.calibrate as calibrate
    from validation.harness.predict import Runtime

    monkeypatch.setattr(calibrate, "measure_runtime", lambda config, run_dir: (Runtime(0, 0, 300_000_000), {}))
    written = calibrate.calibrate(tmp_path / "[x.yaml")
    assert load_profile(str(written)).name == "[x"


def test_the_last_resort_catch_is_one_line_and_lets_programming_errors_through(monkeypatch):
    import planner.commands.reproduce as reproduce

    for error in (OverflowError("int too large"), RecursionError("too deep"), OSError(28, "No space left")):
        monkeypatch.setattr(reproduce, "evaluate", lambda groups, error=error: (_ for _ in ()).throw(error))
        code, _, err = run_cli(["reproduce", "eq6"])
        one_line_exit_2(code, err, type(error).__name__, "please report")
    monkeypatch.setattr(reproduce, "evaluate", lambda groups: (_ for _ in ()).throw(KeyboardInterrupt()))
    code, _, err = run_cli(["reproduce", "eq6"])
    assert (code, err) == (130, "planner reproduce: interrupted\n")
    monkeypatch.setattr(reproduce, "evaluate", lambda groups: None.claims)
    with pytest.raises(AttributeError):
        run_cli(["reproduce", "eq6"])


# -- output files: one writer --------------------------------------------------------------------------------

def test_a_symlink_at_the_output_path_is_replaced_never_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "out.csv").symlink_to(victim)
    write_atomic(tmp_path / "out.csv", b"a,b\n", "csv")
    assert victim.read_text() == "precious" and not (tmp_path / "out.csv").is_symlink()
    assert (tmp_path / "out.csv").read_bytes() == b"a,b\n" and sorted(p.name for p in tmp_path.iterdir()) == [
        "out.csv", "victim.txt"]


def test_a_device_or_pipe_at_the_output_path_is_refused_not_replaced(tmp_path):
    """``--csv /dev/null`` run as root would have renamed a regular file over the device."""
    import os

    os.mkfifo(tmp_path / "pipe.csv")
    (tmp_path / "null.csv").symlink_to("/dev/null")
    for name in ("pipe.csv", "null.csv"):
        with pytest.raises(PlannerError, match=f"csv {tmp_path / name}: not a regular file"):
            check_output_path(tmp_path / name, "csv")
        with pytest.raises(PlannerError, match="not a regular file"):
            write_atomic(tmp_path / name, b"x", "csv")
    assert (tmp_path / "pipe.csv").is_fifo() and os.path.realpath(tmp_path / "null.csv") == "/dev/null"
    code, _, err = run_cli(["fit", "--profile", "jetson-nano", "--env", "Ant-v3", "--csv", str(tmp_path / "pipe.csv")])
    one_line_exit_2(code, err, "--csv", "not a regular file")


def test_concurrent_writers_never_tear_a_file(tmp_path):
    path = tmp_path / "report.json"
    write_atomic(path, json.dumps({"writer": -1, "pad": "x" * 100_000}).encode(), "out")
    stop, torn, reads = threading.Event(), [], [0]

    def write(writer: int) -> None:
        for _ in range(40):
            write_atomic(path, json.dumps({"writer": writer, "pad": "x" * 100_000}).encode(), "out")

    def read() -> None:
        while not stop.is_set():
            try:
                json.loads(path.read_bytes())
            except ValueError:
                torn.append(1)
            reads[0] += 1

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()
    assert torn == [] and reads[0] > 0 and [p.name for p in tmp_path.iterdir()] == ["report.json"]


def direct_writes(source: str) -> "list[str]":
    """Calls in ``source`` that write a file themselves: ``write_text``/``write_bytes``, ``open`` in a
    writing mode, ``savefig`` to anything but an in-memory buffer named ``png`` or ``buffer``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = getattr(node.func, "attr", getattr(node.func, "id", ""))
        modes = [arg.value for arg in node.args[1:2] if isinstance(arg, ast.Constant)]
        modes += [kw.value.value for kw in node.keywords if kw.arg == "mode" and isinstance(kw.value, ast.Constant)]
        to_buffer = bool(node.args) and isinstance(node.args[0], ast.Name) and node.args[0].id in ("png", "buffer")
        if (name in ("write_text", "write_bytes") or (name == "open" and any(set(str(m)) & set("wax+") for m in modes))
                or (name == "savefig" and not to_buffer)):
            found.append(f"{node.lineno} {name}")
    return found


def test_every_output_file_of_the_planner_goes_through_write_atomic():
    """No module of planner/ (nor calibrate) writes a file itself: output goes through
    planner.output.write_atomic (whose own os.fdopen of the temporary file is the one write)."""
    root = Path(__file__).resolve().parents[1]
    calibrate = root / "validation" / "harness" / "calibrate.py"
    offenders = [f"{path.relative_to(root)}:{line}"
                 for path in [*sorted((root / "planner").rglob("*.py")), calibrate]
                 for line in direct_writes(path.read_text())]
    assert offenders == []
    assert direct_writes("open(p, 'w')\nPath(p).write_text('x')\nfig.savefig(path)\nopen(p, mode='ab')\n"
                         "open(p)\nfig.savefig(png, format='png')\n") == ["1 open", "2 write_text", "3 savefig",
                                                                           "4 open"]
