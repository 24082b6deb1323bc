"""Optional extras a command needs, checked before it starts anything (no import, no folder, no child)."""

import importlib.util

from planner.errors import PlannerError

# what training and stepping envs import (validate, profiles calibrate, obs scan), in the parent or its children
TRAIN_MODULES = ("torch", "stable_baselines3", "gymnasium", "mujoco", "matplotlib", "tqdm", "memray")


def missing(modules: "tuple[str, ...]") -> "list[str]":
    """The modules of ``modules`` that cannot be imported (looked up, not imported)."""
    out = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # a broken parent package, or a module set to None in sys.modules
            found = False
        if not found:
            out.append(name)
    return out


def require_train_extra(command: str, modules: "tuple[str, ...]" = TRAIN_MODULES) -> None:
    """Refuse, in one line, a command that trains when the ``[train]`` extra is not installed.

    >>> require_train_extra("planner validate", ("json",))
    >>> import sys; sys.modules["no_such_module_here"] = None
    >>> require_train_extra("planner validate", ("json", "no_such_module_here"))
    Traceback (most recent call last):
    ...
    planner.errors.PlannerError: planner validate needs the [train] extra, which is not installed \
(no_such_module_here not importable): pip install torch==2.13.0, then pip install "justround-planner[train]"
    """
    absent = missing(modules)
    if absent:
        raise PlannerError(f"{command} needs the [train] extra, which is not installed ({', '.join(absent)} not "
                           'importable): pip install torch==2.13.0, then pip install "justround-planner[train]"')
