"""Device profiles: YAML files saying what memory a device leaves for training.

A profile states the device's total memory, what the OS keeps, what the training runtime itself
costs (Python + numpy + torch + simulator, plus the CUDA context where a GPU shares the memory)
and a safety margin; the budget for models, optimizer state and buffer is what remains.

>>> profile = load_profile("jetson-nano")
>>> profile.budget().available == profile.total_memory - profile.os_reserve - profile.runtime - profile.margin
True
"""

import importlib.resources
import re
from dataclasses import dataclass
from pathlib import Path

from planner.errors import PlannerError, quote
from planner.units import format_bytes, parse_size
from planner.yamlio import read_yaml

CLASSES = ("workstation", "mini-pc", "embedded-gpu", "sbc", "microcontroller")
ARCHES = ("x86_64", "aarch64", "armv7l", "xtensa", "arm-cortex-m4")
# The install route a profile's figures assume (docs/device.md): the OS image, the Python, the torch wheel and
# where training runs. name: (the arches it exists for, or None for any; whether Python runs on the board; in words)
ROUTES = {
    "raspberry-pi-os": (("aarch64",), True, "Raspberry Pi OS Bookworm 64-bit: Python 3.11, PyPI's aarch64 wheels, "
                        "CPU training"),
    "jetpack-6": (("aarch64",), True, "JetPack 6 (Ubuntu 22.04): Python 3.10, NVIDIA's torch wheels, GPU training"),
    "jetpack-5": (("aarch64",), True, "JetPack 5 (Ubuntu 20.04, Python 3.8): NVIDIA's GPU torch wheels are for "
                  "Python 3.8, this project needs >= 3.10; it trains on the CPU in a Python 3.11 container"),
    "jetpack-4": (("aarch64",), True, "JetPack 4 (Ubuntu 18.04, Python 3.6, CUDA 10.2): no GPU torch for this "
                  "project; plan on another machine, train on the CPU in a Python 3.11 container"),
    "mendel": (("aarch64",), True, "Mendel Linux 5 (Debian 10, Python 3.7): a Python >= 3.10 built on the board, "
               "PyPI's aarch64 wheels, CPU training"),
    "pip-cpu": (None, True, "Linux with Python >= 3.10 and PyPI's wheels (x86-64: torch==2.13.0, the CPU build), "
                "CPU training"),
    "pip-cuda": (("x86_64", "aarch64"), True, "Linux with Python >= 3.10 and a CUDA torch wheel matching the GPU, "
                 "GPU training"),
    "microcontroller": (None, False, "no Python on the board: the planner runs on another machine; buffer only"),
}
DEFAULT_ROUTE = {True: "pip-cpu", False: "microcontroller"}  # a profile without `route`, by runs_python
SIZE_KEYS = ("total_memory", "os_reserve", "runtime", "margin")
GPU_KEYS = ("gpu_memory", "gpu_runtime")  # a discrete GPU: its own memory, and what a CUDA process holds there
BARE_NUMBER = re.compile(r"^\s*[0-9.eE+-]+\s*$")
# key: (expected type(s), what the message says, required)
SCHEMA = {
    "name": (str, "a text", True),
    "description": (str, "a text", True),
    "class": (str, f"one of {', '.join(CLASSES)}", True),
    "arch": (str, f"one of {', '.join(ARCHES)}", True),
    "total_memory": ((int, float, str), "a size with a unit such as 4GB or 512MiB", True),
    "gpu_shares_memory": (bool, "true or false", True),
    "os_reserve": ((int, float, str), "a size with a unit such as 1.5GB", True),
    "runtime": ((int, float, str), "a size with a unit such as 1.3GB", True),
    "margin": ((int, float, str), "a size with a unit such as 200MB", True),
    "gpu_memory": ((int, float, str), "a size with a unit such as 11GiB (a discrete GPU's own memory)", False),
    "gpu_runtime": ((int, float, str), "a size with a unit such as 900MB (CUDA context, libraries, workspace)",
                    False),
    "cpu": (str, "a text", True),
    "gpu": ((str, type(None)), "a text or null", False),
    "runs_python": (bool, "true or false", True),
    "runs_torch": (bool, "true or false", True),
    "route": (str, f"one of {', '.join(ROUTES)}", False),
    "runtime_note": (str, "a text", False),
    "notes": (str, "a text", False),
    "source": (list, "a list of texts", True),
}


@dataclass(frozen=True)
class Budget:
    """Where a device's memory goes; ``available`` is what training may use."""

    total: int
    os_reserve: int
    runtime: int
    margin: int

    @property
    def available(self) -> int:
        return self.total - self.os_reserve - self.runtime - self.margin

    def as_dict(self) -> dict:
        return {"total_bytes": self.total, "os_reserve_bytes": self.os_reserve, "runtime_bytes": self.runtime,
                "margin_bytes": self.margin, "available_bytes": self.available}

    def rows(self, unit: str = "MB", runtime: str = "runtime") -> "list[list[str]]":
        """The breakdown, one row per term (terms that are 0 and not the total are left out)."""
        return [[name, format_bytes(value, unit)] for name, value in (
            ("total memory", self.total), ("- OS reserve", self.os_reserve), (f"- {runtime}", self.runtime),
            ("- safety margin", self.margin), ("= available for training", self.available))
            if value or name.startswith(("total", "="))]


@dataclass(frozen=True, kw_only=True)
class DeviceProfile:
    name: str
    description: str
    device_class: str
    arch: str
    total_memory: int
    gpu_shares_memory: bool
    os_reserve: int
    runtime: int
    margin: int
    cpu: str
    gpu: "str | None"
    runs_python: bool
    runs_torch: bool
    source: "tuple[str, ...]"
    runtime_note: str = ""
    notes: str = ""
    path: str = ""
    gpu_memory: "int | None" = None
    gpu_runtime: "int | None" = None
    route: str = "pip-cpu"
    route_given: bool = True  # False: the file names no route and it was defaulted from runs_python

    @property
    def route_text(self) -> str:
        """The route in words, e.g. for ``planner profiles show``."""
        return f"{self.route} ({ROUTES[self.route][2]}{'' if self.route_given else '; default, the file names none'})"

    def budget(self) -> Budget:
        """Host memory: all of it where the GPU shares it; else the buffer's, with models on the GPU."""
        return Budget(self.total_memory, self.os_reserve, self.runtime, self.margin)

    def gpu_budget(self) -> "Budget | None":
        """A discrete GPU's own memory (models, optimizer state, the update), or None for one pool."""
        if self.gpu_memory is None:
            return None
        return Budget(self.gpu_memory, 0, self.gpu_runtime or 0, 0)

    @property
    def buffer_only(self) -> bool:
        """No Python runtime: the device can hold a buffer, not train networks with torch."""
        return not self.runs_python

    def as_dict(self) -> dict:
        """Every key of the profile, with its budget in bytes (what every JSON output says of a profile)."""
        return {"name": self.name, "description": self.description, "class": self.device_class, "arch": self.arch,
                **self.budget().as_dict(), "gpu_shares_memory": self.gpu_shares_memory, "cpu": self.cpu,
                "gpu": self.gpu, "runs_python": self.runs_python, "runs_torch": self.runs_torch,
                "route": self.route, "route_given": self.route_given, "buffer_only": self.buffer_only,
                "gpu_pool": None if self.gpu_budget() is None else self.gpu_budget().as_dict(),
                "runtime_note": self.runtime_note, "notes": self.notes,
                "source": list(self.source), "path": self.path}


def builtin_dir() -> Path:
    """The folder of the shipped profiles: ``profiles/`` beside ``planner/`` in a source checkout (so a second
    checkout, or a worktree, reads its own even where another one is installed in editable mode), else package
    ``planner.builtin_profiles`` when installed."""
    checkout = Path(__file__).resolve().parent.parent
    if (checkout / "pyproject.toml").is_file() and (checkout / "profiles").is_dir():
        return checkout / "profiles"
    try:
        return Path(str(importlib.resources.files("planner.builtin_profiles")))
    except ModuleNotFoundError:
        return checkout / "profiles"


def builtin_names() -> "list[str]":
    return sorted(p.stem for p in builtin_dir().glob("*.yaml"))


def resolve(name_or_path: str) -> Path:
    """A shipped profile by name, or a YAML file by path."""
    try:
        candidate = builtin_dir() / f"{name_or_path}.yaml"
        if "/" not in name_or_path and candidate.is_file():
            return candidate
        path = Path(name_or_path)
        if path.is_dir():
            raise PlannerError(f"profile {name_or_path} is a folder: expected a YAML file or a shipped profile name")
        if path.suffix in (".yaml", ".yml") or path.exists() or "/" in name_or_path:
            if not path.exists():
                raise PlannerError(f"profile file {name_or_path} not found")
            return path
    except OSError as exc:  # a name too long for the file system, a folder without access...
        raise PlannerError(f"profile {quote(name_or_path)}: cannot be looked up ({exc.strerror or exc})",
                           "profile") from None
    raise PlannerError(f"unknown profile {quote(name_or_path)}: shipped profiles are {', '.join(builtin_names())} "
                       "(or give a path to a YAML file)")


def load_profile(name_or_path: str) -> DeviceProfile:
    """Load and check a profile; any problem is one PlannerError naming the file, the key and what was expected."""
    path = resolve(name_or_path)
    return parse_profile(read_yaml(path, str(path)), str(path))


MESSAGE_CHARS = 280  # a refusal tells its problems in full up to about this length; the rest it names by key
FOLDED = {"missing": ("missing key", "missing keys"), "bad": ("bad value at key", "bad values at keys"),
          "unknown": ("unknown key", "unknown keys")}  # a kind of problem named by key only: one, several


def _expected(key: str, what: str, value: object) -> str:
    return f"key '{key}': expected {what}, got {quote(value)}"


def _fail(path: str, key: str, what: str, value: object) -> PlannerError:
    return PlannerError(f"{path}: {_expected(key, what, value)}")


def _refusal(path: str, problems: "list[tuple[str, str, str]]") -> PlannerError:
    """One error for all ``(kind, key, text)`` problems: the first and as many more as fit in MESSAGE_CHARS told
    in full, then the keys of the others by kind (unknown keys, which the user names, as a bounded list)."""
    def message(told: int) -> str:
        parts = [text for _, _, text in problems[:told]]
        for kind, labels in FOLDED.items():
            keys = [key for k, key, _ in problems[told:] if k == kind]
            if keys:
                named = quote(keys, 60)[1:-1] if kind == "unknown" else ", ".join(keys)
                parts.append(f"{labels[len(keys) > 1]} {named}")
        return f"{path}: {'; '.join(parts)}"

    best = message(1)
    for told in range(2, len(problems) + 1):
        candidate = message(told)
        if len(candidate) > len(path) + MESSAGE_CHARS:
            break
        best = candidate
    return PlannerError(best)


def _value_problem(key: str, value: object) -> "str | None":
    """What is wrong with ``value`` at ``key`` on its own (its type, its choices, its size), or None."""
    types, what, _ = SCHEMA[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in _as_tuple(types)):
        return _expected(key, what, value)
    if (key == "class" and value not in CLASSES) or (key == "arch" and value not in ARCHES) or (
            key == "route" and value not in ROUTES):
        return _expected(key, what, value)
    if key == "source" and (not value or not all(isinstance(s, str) and s.strip() for s in value)):
        return _expected(key, "a non-empty list of texts", value)
    if key in SIZE_KEYS or key in GPU_KEYS:
        try:
            size = parse_size(value)
        except PlannerError:
            return _expected(key, what, value)
        if size and (isinstance(value, (int, float)) or BARE_NUMBER.match(value)):
            return _expected(key, f"{what}; a bare number has no unit (write {value}MB, {value}MiB or {value}B)",
                             value)
        if key == "total_memory" and size <= 0:
            return _expected(key, "a size > 0", value)
        if size < 0:
            return _expected(key, "a size >= 0", value)
    return None


def parse_profile(data: object, path: str = "<profile>") -> DeviceProfile:
    """Check ``data`` (a parsed YAML mapping) against the schema and build the profile; every unknown, missing or
    bad key is told in one error, then the checks across keys."""
    if not isinstance(data, dict):
        raise PlannerError(f"{path}: expected a mapping of keys ({', '.join(SCHEMA)}), got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - set(SCHEMA))
    problems = [("missing", key, f"missing key '{key}' (expected {what})")
                for key, (_, what, required) in SCHEMA.items() if required and key not in data]
    problems += [("bad", key, problem) for key, value in data.items()
                 if key in SCHEMA and (problem := _value_problem(key, value))]
    problems += [("unknown", key, f"unknown key {quote(key)}" + (f" (allowed: {', '.join(SCHEMA)})" if i == 0 else ""))
                 for i, key in enumerate(unknown)]
    if problems:
        raise _refusal(path, problems)
    sizes = {key: parse_size(data[key]) for key in (*SIZE_KEYS, *GPU_KEYS) if key in data}
    reserved = sizes["os_reserve"] + sizes["runtime"] + sizes["margin"]
    if reserved >= sizes["total_memory"]:
        raise PlannerError(f"{path}: key 'os_reserve': os_reserve + runtime + margin ({format_bytes(reserved)}) "
                           f"must be smaller than total_memory ({format_bytes(sizes['total_memory'])})")
    if data["runs_torch"] and not data["runs_python"]:
        raise _fail(path, "runs_torch", "false when runs_python is false", data["runs_torch"])
    route = data.get("route", DEFAULT_ROUTE[data["runs_python"]])
    arches, python, _ = ROUTES[route]
    if python != data["runs_python"]:
        what = "a route other than microcontroller, as runs_python is true" if python is False else \
            "microcontroller, as runs_python is false"
        raise _fail(path, "route", what, route)
    if arches and data["arch"] not in arches:
        raise _fail(path, "route", f"a route for arch {data['arch']} ({route} is for {', '.join(arches)})", route)
    if ("gpu_memory" in data) != ("gpu_runtime" in data):
        given, other = ("gpu_memory", "gpu_runtime") if "gpu_memory" in data else ("gpu_runtime", "gpu_memory")
        raise PlannerError(f"{path}: key '{given}': a discrete GPU's pool needs both gpu_memory and gpu_runtime; "
                           f"add '{other}'")
    if "gpu_memory" in data:
        if data["gpu_shares_memory"]:
            raise _fail(path, "gpu_memory", "no gpu_memory where gpu_shares_memory is true (one pool: total_memory)",
                        data["gpu_memory"])
        if sizes["gpu_runtime"] >= sizes["gpu_memory"]:
            raise _fail(path, "gpu_runtime", "a size smaller than gpu_memory", data["gpu_runtime"])
    return DeviceProfile(
        name=data["name"], description=data["description"], device_class=data["class"], arch=data["arch"],
        total_memory=sizes["total_memory"], gpu_shares_memory=data["gpu_shares_memory"],
        os_reserve=sizes["os_reserve"], runtime=sizes["runtime"], margin=sizes["margin"], cpu=data["cpu"],
        gpu=data.get("gpu"), runs_python=data["runs_python"], runs_torch=data["runs_torch"],
        source=tuple(data["source"]), runtime_note=data.get("runtime_note", ""), notes=data.get("notes", ""),
        path=path, gpu_memory=sizes.get("gpu_memory"), gpu_runtime=sizes.get("gpu_runtime"), route=route,
        route_given="route" in data)


def _as_tuple(types: "type | tuple") -> tuple:
    return types if isinstance(types, tuple) else (types,)


def load_all() -> "list[DeviceProfile]":
    return [load_profile(name) for name in builtin_names()]
