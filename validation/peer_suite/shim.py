"""pytest plugin (``-p validation.peer_suite.shim``): upstream SB3 / sb3-contrib tests on the project's buffers.

SB3's buffer names are swapped for the project's classes (:func:`project_classes`) in two places, each
only while it runs: the import of each test module (so ``from stable_baselines3.common.buffers import
ReplayBuffer`` gives ours) and the algorithms' ``_setup_model`` (so the default buffer is ours). The swap
never lasts: SB3's own ``DictReplayBuffer`` calls ``super(ReplayBuffer, self)`` through its module's name,
so a lasting swap would break SB3's Dict and HER buffers, which the upstream tests also use directly.
A space the project's buffers refuse fails its test; nothing falls back to SB3's buffer.
Each test's outcome (and its error, one line) goes to the JSON file named by ``--peer-results``.
"""

import importlib
import json
import sys
from contextlib import ExitStack, contextmanager
from types import ModuleType

import pytest

SB3_BUFFERS = ("ReplayBuffer", "DictReplayBuffer", "NStepReplayBuffer", "RolloutBuffer", "DictRolloutBuffer",
               "HerReplayBuffer")
# Where the project exports no class of that name, SB3's name maps to a subclass of this one.
FALLBACK = {"DictReplayBuffer": "QuantizedReplayBuffer", "NStepReplayBuffer": "QuantizedReplayBuffer",
            "DictRolloutBuffer": "QuantizedRolloutBuffer"}
# Modules the test files import buffer names from, swapped while a test module is imported.
IMPORT_HOMES = ("stable_baselines3.common.buffers", "stable_baselines3", "stable_baselines3.her",
                "stable_baselines3.her.her_replay_buffer")


def project_classes() -> "dict[str, type]":
    """SB3 buffer name -> the project's class: ``validation.buffers.Quantized<Name>`` where exported, else a
    subclass of the :data:`FALLBACK` class under that name (so the upstream tests' tables keyed by class stay
    distinct). ``HerReplayBuffer`` is swapped only when the project exports ``QuantizedHerReplayBuffer``."""
    ours = importlib.import_module("validation.buffers")
    classes = {}
    for name in SB3_BUFFERS:
        own = getattr(ours, "Quantized" + name, None)
        if own is None and name in FALLBACK:
            base = getattr(ours, FALLBACK[name])
            own = type("Quantized" + name, (base,), {"__module__": __name__,
                                                     "__doc__": f"{base.__name__} under SB3's name {name}."})
            setattr(sys.modules[__name__], own.__name__, own)  # picklable: save_replay_buffer pickles it
        if own is not None:
            classes[name] = own
    return classes


@contextmanager
def swapped(module: ModuleType, classes: "dict[str, type]"):
    """``module``'s globals named in ``classes`` replaced by them for the duration of the block."""
    saved = {name: module.__dict__[name] for name in classes if name in module.__dict__}
    module.__dict__.update({name: classes[name] for name in saved})
    try:
        yield
    finally:
        module.__dict__.update(saved)


def _swap_during_setup(algorithm: type, classes: "dict[str, type]") -> None:
    """Wrap ``algorithm._setup_model`` so that its default buffer class is the project's."""
    module, setup = sys.modules[algorithm.__module__], algorithm._setup_model

    def _setup_model(self) -> None:
        with swapped(module, classes):
            setup(self)

    algorithm._setup_model = _setup_model


def one_line(report: "pytest.TestReport | pytest.CollectReport") -> str:
    """The error of a failed report on one line (pytest's crash message, else the last line of its repr)."""
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr).strip().splitlines()[-1]
    return " ".join(text.split())


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--peer-results", required=True, help="JSON file for each test's outcome")


def pytest_configure(config: pytest.Config) -> None:
    import sb3_contrib  # noqa: F401  (its buffers subclass SB3's: define them before any swap, not during one)
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
    from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm

    classes = project_classes()
    for algorithm in (OffPolicyAlgorithm, OnPolicyAlgorithm):
        _swap_during_setup(algorithm, classes)
    config.pluginmanager.register(PeerRun(classes, config.getoption("--peer-results")), "peer-run")


class PeerRun:
    """Swaps the buffer names while test modules are imported and records each test's outcome."""

    def __init__(self, classes: "dict[str, type]", results_path: str) -> None:
        self.classes, self.results_path = classes, results_path
        self.outcomes: "dict[str, dict[str, str]]" = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector: pytest.Collector):
        if not isinstance(collector, pytest.Module):
            return (yield)
        with ExitStack() as stack:
            for home in IMPORT_HOMES:
                stack.enter_context(swapped(importlib.import_module(home), self.classes))
            return (yield)

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            self._record(report, "error")

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.failed:
            self._record(report, "failed" if report.when == "call" else "error")
        elif report.when == "call" or report.skipped:
            self._record(report, "xfailed" if report.skipped and hasattr(report, "wasxfail") else report.outcome)

    def _record(self, report: "pytest.TestReport | pytest.CollectReport", outcome: str) -> None:
        if self.outcomes.get(report.nodeid, {}).get("outcome") in ("failed", "error"):
            return  # a teardown error after a failed call keeps the call's error
        error = one_line(report) if outcome in ("failed", "error") else ""
        self.outcomes[report.nodeid] = {"outcome": outcome, "error": error}

    def pytest_sessionfinish(self) -> None:
        buffers = {name: f"{cls.__module__}.{cls.__qualname__}" for name, cls in self.classes.items()}
        with open(self.results_path, "w") as out:
            json.dump({"buffers": buffers, "tests": self.outcomes}, out, indent=1)
