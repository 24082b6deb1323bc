"""Device profiles: every shipped one loads; malformed ones fail with one clear message."""

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from planner.errors import PlannerError
from planner.profiles import ROUTES, builtin_dir, builtin_names, load_all, load_profile

REQUIRED = [
    "jetson-nano", "jetson-nano-2gb", "jetson-orin-nano-8gb", "jetson-orin-nx-16gb", "jetson-agx-orin-64gb",
    "jetson-xavier-nx", "raspberry-pi-4-2gb", "raspberry-pi-4-8gb", "raspberry-pi-5-8gb", "raspberry-pi-zero-2w",
    "coral-dev-board", "intel-nuc-16gb", "paper-workstation", "crazyflie-2.1", "esp32-s3-psram",
]

GOOD = {
    "name": "my-robot", "description": "test robot", "class": "sbc", "arch": "aarch64",
    "total_memory": "4GB", "gpu_shares_memory": False, "os_reserve": "500MB", "runtime": "350MB",
    "margin": "100MB", "cpu": "4x A72", "gpu": None, "runs_python": True, "runs_torch": True,
    "source": ["measured by hand"],
}


def test_every_shipped_profile_loads_with_a_positive_budget():
    names = builtin_names()
    assert set(REQUIRED) <= set(names)
    for profile in load_all():
        budget = profile.budget()
        assert 0 < budget.available < budget.total
        assert profile.source and profile.name == Path(profile.path).stem


def test_sizes_with_units():
    p = load_profile("jetson-nano")
    assert p.total_memory == 4 * 2**30
    assert p.os_reserve == 1_500_000_000
    assert load_profile("crazyflie-2.1").total_memory == 192 * 1024


def test_budget_is_total_minus_reserve_runtime_margin():
    b = load_profile("jetson-nano").budget()
    assert b.available == 4 * 2**30 - 1_500_000_000 - 1_400_000_000 - 200_000_000


def test_microcontrollers_are_buffer_only():
    assert load_profile("crazyflie-2.1").buffer_only
    assert load_profile("esp32-s3-psram").buffer_only
    assert not load_profile("raspberry-pi-5-8gb").buffer_only


def _write(tmp_path, data, raw=None) -> str:
    path = tmp_path / "robot.yaml"
    path.write_text(raw if raw is not None else yaml.safe_dump(data))
    return str(path)


def test_a_users_profile_by_path(tmp_path):
    profile = load_profile(_write(tmp_path, GOOD))
    assert profile.budget().available == 4_000_000_000 - 950_000_000


@pytest.mark.parametrize("change, fragment", [
    ({"colour": "red"}, "unknown key 'colour'"),
    ({"total_memory": None}, "key 'total_memory': expected a size"),
    ({"total_memory": "4 parsecs"}, "key 'total_memory': expected a size"),
    ({"total_memory": "0GB"}, "key 'total_memory': expected a size > 0"),
    ({"total_memory": "-4GB"}, "key 'total_memory': expected a size"),
    ({"total_memory": 3072}, "key 'total_memory': expected a size with a unit such as 4GB or 512MiB; a bare number "
                             "has no unit (write 3072MB, 3072MiB or 3072B)"),
    ({"total_memory": "3072"}, "a bare number has no unit"),
    ({"runtime": 1.5}, "key 'runtime': expected a size with a unit such as 1.3GB; a bare number has no unit"),
    ({"os_reserve": "-1GB"}, "key 'os_reserve': expected a size"),
    ({"os_reserve": "5GB"}, "must be smaller than total_memory"),
    ({"runs_python": "yes"}, "key 'runs_python': expected true or false"),
    ({"gpu_shares_memory": 1}, "key 'gpu_shares_memory': expected true or false"),
    ({"class": "toaster"}, "key 'class': expected one of"),
    ({"arch": "sparc"}, "key 'arch': expected one of"),
    ({"source": []}, "key 'source': expected a non-empty list"),
    ({"source": "a text"}, "key 'source': expected a list of texts"),
    ({"runs_python": False, "runs_torch": True}, "key 'runs_torch'"),
    ({"total_memory": True}, "key 'total_memory': expected a size"),
    ({"total_memory": float("nan")}, "key 'total_memory': expected a size"),
    ({"total_memory": float("inf")}, "key 'total_memory': expected a size"),
    ({"total_memory": "1e400"}, "key 'total_memory': expected a size"),
    ({"total_memory": "1e400 GB"}, "key 'total_memory': expected a size"),
    ({"margin": 10**400}, "key 'margin': expected a size"),
    ({"route": "ubuntu"}, "key 'route': expected one of raspberry-pi-os, jetpack-6, jetpack-5, jetpack-4, mendel, "
                          "pip-cpu, pip-cuda, microcontroller, got 'ubuntu'"),
    ({"route": None}, "key 'route': expected one of"),
    ({"route": ["jetpack-6"]}, "key 'route': expected one of"),
    ({"route": "microcontroller"}, "key 'route': expected a route other than microcontroller, as runs_python is true"),
    ({"runs_python": False, "runs_torch": False, "route": "raspberry-pi-os"},
     "key 'route': expected microcontroller, as runs_python is false, got 'raspberry-pi-os'"),
    ({"arch": "x86_64", "route": "jetpack-6"}, "key 'route': expected a route for arch x86_64 (jetpack-6 is for "
                                               "aarch64), got 'jetpack-6'"),
])
def test_malformed_profiles_name_file_key_and_expectation(tmp_path, change, fragment):
    path = _write(tmp_path, {**GOOD, **change})
    with pytest.raises(PlannerError) as err:
        load_profile(path)
    message = str(err.value)
    assert path in message and fragment in message and "\n" not in message


@pytest.mark.parametrize("drop", ["name", "total_memory", "source", "runtime"])
def test_missing_keys(tmp_path, drop):
    data = {k: v for k, v in GOOD.items() if k != drop}
    with pytest.raises(PlannerError, match=f"missing key '{drop}'"):
        load_profile(_write(tmp_path, data))


@pytest.mark.parametrize("raw, fragment", [
    ("", "expected a mapping"),
    ("- a\n- b\n", "expected a mapping"),
    ("name: [unclosed\n", "not valid YAML"),
    ("name: a\n  bad: indent\n: x\n", "not valid YAML"),
])
def test_not_a_profile_at_all(tmp_path, raw, fragment):
    with pytest.raises(PlannerError, match=fragment):
        load_profile(_write(tmp_path, None, raw=raw))


@pytest.mark.parametrize("raw", ["total_memory: .nan\n", "total_memory: .inf\n", "total_memory: 1e400\n"])
def test_non_finite_sizes_in_yaml(tmp_path, raw):
    good = yaml.safe_dump({k: v for k, v in GOOD.items() if k != "total_memory"})
    path = _write(tmp_path, None, raw=good + raw)
    with pytest.raises(PlannerError) as err:
        load_profile(path)
    assert f"{path}: key 'total_memory': expected a size" in str(err.value)


def test_duplicate_keys_are_refused_naming_file_and_key(tmp_path):
    path = _write(tmp_path, None, raw=yaml.safe_dump(GOOD) + "margin: 1GB\n")
    with pytest.raises(PlannerError) as err:
        load_profile(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and "key 'margin' given twice" in message and "\n" not in message


def test_unknown_profile_name_missing_file_and_folder(tmp_path):
    with pytest.raises(PlannerError, match="unknown profile 'nope'"):
        load_profile("nope")
    with pytest.raises(PlannerError, match="not found"):
        load_profile("./does/not/exist.yaml")
    with pytest.raises(PlannerError, match="is a folder: expected a YAML file"):
        load_profile(str(tmp_path))


def test_profiles_cli(planner_cli, tmp_path):
    listed = planner_cli("profiles", "list")
    assert listed.returncode == 0 and all(name in listed.stdout for name in REQUIRED)
    shown = planner_cli("profiles", "show", "jetson-nano")
    assert "available for training" in shown.stdout and "sources:" in shown.stdout
    good = planner_cli("profiles", "check", _write(tmp_path, GOOD))
    assert good.returncode == 0 and ": ok" in good.stdout
    bad = planner_cli("profiles", "check", _write(tmp_path, {**GOOD, "margin": "lots"}))
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "key 'margin'" in bad.stderr


@pytest.mark.parametrize("raw, fragment", [
    (yaml.safe_dump(GOOD) + "runtime: 1GB\n", "key 'runtime' given twice"),
    (yaml.safe_dump({k: v for k, v in GOOD.items() if k != "margin"}) + "margin: .nan\n",
     "key 'margin': expected a size"),
    (yaml.safe_dump({k: v for k, v in GOOD.items() if k != "margin"}) + "margin: 1e400 GB\n",
     "key 'margin': expected a size"),
])
def test_profiles_check_cli_bad_file_is_one_line(planner_cli, tmp_path, raw, fragment):
    path = _write(tmp_path, None, raw=raw)
    r = planner_cli("profiles", "check", path)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert path in lines[0] and fragment in lines[0]


def test_profiles_check_tells_every_missing_and_bad_key_in_one_line(planner_cli, tmp_path):
    data = {k: v for k, v in GOOD.items() if k not in ("cpu", "runs_torch", "source")}
    path = _write(tmp_path, {**data, "total_memory": "4 parsecs", "colour": "red"})
    r = planner_cli("profiles", "check", path)
    assert r.returncode == 2 and r.stdout == "" and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for told in ("missing key 'cpu' (expected a text)", "missing key 'runs_torch' (expected true or false)",
                 "missing key 'source'", "key 'total_memory': expected a size", "unknown key 'colour'"):
        assert told in r.stderr, (told, r.stderr)


def test_a_profile_wrong_everywhere_is_one_bounded_message_naming_every_key(tmp_path):
    path = _write(tmp_path, {**{key: 12345 for key in GOOD if key != "cpu"}, **{f"extra{i}": i for i in range(99)}})
    with pytest.raises(PlannerError) as err:
        load_profile(path)
    message = str(err.value)
    assert len(message) < len(path) + 350 and "\n" not in message, message
    assert "missing key 'cpu' (expected a text)" in message and "unknown keys 'extra0', 'extra1'" in message
    assert all(re.search(rf"[ ']{key}\b", message) for key in GOOD), message

def test_shipped_profiles_are_plain_yaml_with_source_lines():
    for path in builtin_dir().glob("*.yaml"):
        text = path.read_text()
        assert "source:" in text, path
        assert textwrap.dedent(text) == text


SHIPPED_ROUTES = {
    "raspberry-pi-os": {"raspberry-pi-4-2gb", "raspberry-pi-4-8gb", "raspberry-pi-5-8gb", "raspberry-pi-zero-2w"},
    "jetpack-6": {"jetson-orin-nano-8gb", "jetson-orin-nx-16gb", "jetson-agx-orin-64gb"},
    "jetpack-5": {"jetson-xavier-nx"}, "jetpack-4": {"jetson-nano", "jetson-nano-2gb"}, "mendel": {"coral-dev-board"},
    "pip-cpu": {"intel-nuc-16gb"}, "pip-cuda": {"paper-workstation"},
    "microcontroller": {"crazyflie-2.1", "esp32-s3-psram"},
}


def test_every_shipped_profile_states_its_route():
    routes = {}
    for profile in load_all():
        assert profile.route_given, f"{profile.name}: no route: in its file"
        routes.setdefault(profile.route, set()).add(profile.name)
    assert routes == SHIPPED_ROUTES
    assert set(ROUTES) == set(SHIPPED_ROUTES)


def test_a_profile_without_route_gets_one_from_runs_python(tmp_path):
    profile = load_profile(_write(tmp_path, GOOD))
    assert (profile.route, profile.route_given) == ("pip-cpu", False)
    assert "default, the file names none" in profile.route_text and profile.as_dict()["route"] == "pip-cpu"
    mcu = load_profile(_write(tmp_path, {**GOOD, "runs_python": False, "runs_torch": False}))
    assert mcu.route == "microcontroller" and mcu.buffer_only
    given = load_profile(_write(tmp_path, {**GOOD, "route": "raspberry-pi-os"}))
    assert (given.route, given.route_given) == ("raspberry-pi-os", True)


def test_the_jetson_nano_does_not_promise_gpu_training_this_project_cannot_run():
    """JetPack 4 has Python 3.6: this project (Python >= 3.10) trains on the Nano's CPU only. The profile keeps the
    budget of a GPU training process and says so, and what runs instead."""
    nano = load_profile("jetson-nano")
    assert nano.route == "jetpack-4" and "training on the GPU" not in nano.description
    assert "budgeted for a GPU training process" in nano.description
    assert "cannot train on this GPU" in nano.notes and "container" in nano.notes and "calibrate" in nano.notes
    for name in ("jetson-xavier-nx", "jetson-nano-2gb"):
        assert "training on the GPU" not in load_profile(name).description


def test_profiles_show_tells_the_route(planner_cli, tmp_path):
    shown = planner_cli("profiles", "show", "jetson-nano")
    assert shown.returncode == 0
    line = next(line for line in shown.stdout.splitlines() if line.strip().startswith("route:"))
    assert "jetpack-4 (JetPack 4" in line and "Python 3.6" in line and "docs/device.md" in line
    assert '"route": "raspberry-pi-os"' in planner_cli("profiles", "show", "raspberry-pi-5-8gb", "--json").stdout
    bad = planner_cli("profiles", "check", _write(tmp_path, {**GOOD, "route": "windows"}))
    assert bad.returncode == 2 and bad.stdout == "" and len(bad.stderr.strip().splitlines()) == 1
    assert "key 'route': expected one of" in bad.stderr and "'windows'" in bad.stderr


@pytest.mark.parametrize("files, machine, route", [
    ({"etc/nv_tegra_release": "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref\n"}, "aarch64",
     "jetpack-4"),
    ({"etc/nv_tegra_release": "# R35 (release), REVISION: 4.1\n"}, "aarch64", "jetpack-5"),
    ({"etc/nv_tegra_release": "# R36 (release), REVISION: 4.0\n"}, "aarch64", "jetpack-6"),
    ({"etc/nv_tegra_release": "# R99 (release)\n"}, "aarch64", "pip-cpu"),
    ({"proc/device-tree/model": "Raspberry Pi 4 Model B Rev 1.4\0"}, "aarch64", "raspberry-pi-os"),
    ({"proc/device-tree/model": "Raspberry Pi 3 Model B Rev 1.2\0"}, "armv7l", "pip-cpu"),
    ({}, "x86_64", "pip-cpu"),
])
def test_calibrate_writes_the_route_of_the_board_it_runs_on(tmp_path, monkeypatch, files, machine, route):
    from validation.harness import calibrate
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.setattr(calibrate.platform, "machine", lambda: machine)
    assert calibrate.detect_route(tmp_path) == route
