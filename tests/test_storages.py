"""The storage registry: one entry per storage, read by estimate, fit and validate; every trainable entry's
buffer class allocates exactly the fields the planner predicts, in a real SB3 model."""

import importlib

import pytest

from planner.cli import build_parser
from planner.defaults import is_on_policy
from planner.errors import PlannerError
from planner.footprint import footprint
from planner.obs_ranges import choose_ranges
from planner.storages import STORAGES, storage
from validation.harness.measure import buffer_bytes
from validation.harness.runconfig import RunConfig
from validation.scan import rollout

TRAINABLE = [name for name, entry in STORAGES.items() if entry.trainable]


def _choices(command: str, flag: str) -> "tuple[str, ...]":
    parser = next(a for a in build_parser()._actions if a.dest == "command").choices[command]
    return tuple(next(a for a in parser._actions if flag in a.option_strings).choices)


def test_the_commands_offer_the_registry_entries():
    assert _choices("estimate", "--storage") == tuple(STORAGES)
    assert _choices("validate", "--storage") == tuple(TRAINABLE)
    assert TRAINABLE == ["sb3", "sb3-optimize", "packed", "calibrated", "float16", "bfloat16"]


def test_every_storage_fit_compares_trains_but_the_authors_reference_layout():
    untrained = [name for name, entry in STORAGES.items() if entry.in_fit and not entry.trainable]
    assert untrained == ["just-round"]  # the authors' uint16 rows: an accounting of their code, not a buffer here


@pytest.mark.parametrize("name", TRAINABLE)
def test_the_registry_names_buffer_classes_that_import(name):
    from stable_baselines3.common.buffers import BaseBuffer

    for kind, target in STORAGES[name].buffers.items():
        module, attribute = target.split(":")
        cls = getattr(importlib.import_module(module), attribute)
        assert issubclass(cls, BaseBuffer) and kind in cls.__name__.lower()


def test_unknown_storage_names_the_known_ones():
    with pytest.raises(PlannerError, match="storage must be one of paper64, sb3, sb3-optimize"):
        storage("zip")


CASES = [(name, algo) for name in TRAINABLE for algo in ("sac", "ppo")
         if not (STORAGES[name].replay_only and is_on_policy(algo))]  # replay-only storages hold no rollout


@pytest.mark.parametrize("name, algo", CASES)
def test_the_buffer_class_allocates_what_the_planner_predicts(name, algo):
    from stable_baselines3 import PPO, SAC

    ranges = choose_ranges(rollout("Hopper-v5", 500, 0), 2).as_dict() if name == "calibrated" else None
    config = RunConfig("Hopper-v5", algo, name, steps=0, buffer_size=512, decimals=2, obs_ranges=ranges)
    model_class = PPO if is_on_policy(algo) else SAC
    size = {"n_steps": 512} if is_on_policy(algo) else {"buffer_size": 512}
    model = model_class("MlpPolicy", "Hopper-v5", device="cpu", **size, **config.buffer_arguments())
    buffer = model.rollout_buffer if is_on_policy(algo) else model.replay_buffer
    assert buffer_bytes(buffer) == footprint(config.run_spec()).buffer_bytes


def test_the_docs_list_the_storages_validate_offers():
    from pathlib import Path

    text = " ".join((Path(__file__).resolve().parents[1] / "docs" / "validate.md").read_text().split())
    listed = text.split("storages a buffer class implements:", 1)[1].split(";", 1)[0]
    assert tuple(name.strip(" `") for name in listed.split(",")) == _choices("validate", "--storage")
