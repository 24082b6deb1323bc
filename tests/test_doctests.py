"""Every module's doctests run (the installed package's: the compiled core is there)."""

import doctest
import importlib
import pkgutil

import pytest

PACKAGES = ("planner", "planner.commands", "validation", "validation.buffers", "validation.harness",
            "validation.peer_suite", "validation.study", "cython_core")


def all_modules() -> "list[str]":
    names = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        names += [package] + [f"{package}.{info.name}" for info in pkgutil.iter_modules(module.__path__)
                              if not info.ispkg and info.name != "__main__"]
    return sorted(set(names))


def test_every_module_is_collected():
    modules = all_modules()
    assert {"planner.storages", "planner.defaults", "planner.fit", "planner.profiles", "validation.buffers.replay",
            "cython_core.uniform", "cython_core._kernels"} <= set(modules)


@pytest.mark.parametrize("name", all_modules())
def test_doctests(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctests failed in {name}"
