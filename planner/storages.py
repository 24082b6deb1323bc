"""The storages: every way a buffer can hold a run's transitions, in one registry.

Each entry names a storage, says how tables and plots label it, which fields it allocates (a
function of :mod:`planner.layouts`), whether it quantizes observations, and which buffer classes
implement it for training. ``planner estimate``, ``planner fit``, ``planner validate``, ``planner study``
and the validation harness all read :data:`STORAGES`; adding a storage is one entry here plus its fields
function and its buffer classes (docs/storages.md shows one). The buffer classes are named as
"module:Class" so that the planner imports no torch; tests/test_storages.py imports every one of them.

>>> [s.name for s in STORAGES.values() if s.in_fit]
['sb3', 'sb3-optimize', 'just-round', 'packed', 'calibrated', 'float16', 'bfloat16']
>>> from planner.quantization import Quantization
>>> storage("packed").label(RunSpec("sac", 17, 6, quant=Quantization.create(2)))
'packed 15-bit, m=2, b=127'
"""

from dataclasses import KW_ONLY, dataclass, field
from typing import Callable

from planner.algorithms import algorithm
from planner.errors import PlannerError, quote
from planner.layouts import (
    Field,
    calibrated_limits,
    figure2_fields,
    half_limits,
    just_round_fields,
    just_round_limits,
    packed_fields,
    paper64_fields,
    sb3_fields,
    sb3_optimize_limits,
)
from planner.runspec import RunSpec

SB3_BUFFERS = {"replay": "stable_baselines3.common.buffers:ReplayBuffer",
               "rollout": "stable_baselines3.common.buffers:RolloutBuffer",
               "recurrent": "sb3_contrib.common.recurrent.buffers:RecurrentRolloutBuffer"}
BUFFER_KINDS = {"replay": "replay buffer", "rollout": "rollout buffer",
                "recurrent": "recurrent rollout buffer (sb3-contrib's RecurrentPPO builds its own "
                             "RecurrentRolloutBuffer and takes no buffer class)"}
PACKED_BUFFERS = {"replay": "validation.buffers:QuantizedReplayBuffer",
                  "rollout": "validation.buffers:QuantizedRolloutBuffer"}


@dataclass(frozen=True)
class Storage:
    """One way to store a buffer.

    :param name: the id used on the command line, in JSON and in run names
    :param title: the label in tables and plots, formatted with the run's ``obs_dtype``, ``bits``,
        ``decimals`` and ``clamp``
    :param buffer_title: the label where only the buffer lives on the device (a microcontroller)
    :param fields: the fields it allocates for a :class:`~planner.runspec.RunSpec`
    :param quantized: "never", "always" (needs a quantization) or "optional"
    :param replay_only: holds replay buffers only (off-policy algorithms)
    :param in_fit: one of the rows ``planner fit`` compares
    :param buffers: "module:Class" of the SB3 buffer that implements it, per buffer kind
        (:attr:`planner.algorithms.Algorithm.buffer_kind`: "replay", "rollout", "recurrent"); empty if no class
        trains with it
    :param buffer_kwargs: keyword arguments that buffer class takes besides the quantization's (the calibrated
        storage's buffers also take the run's ``obs_ranges``)
    :param limits: why it cannot hold a run beyond the checks above (a message), or None
    :param plain_title: the label when the observations hold no floats to quantize (images, integers)
    """

    name: str
    title: str
    buffer_title: str
    fields: Callable[[RunSpec], "tuple[Field, ...]"]
    _: KW_ONLY
    quantized: str = "never"
    replay_only: bool = False
    in_fit: bool = False
    buffers: "dict[str, str]" = field(default_factory=dict)
    buffer_kwargs: "dict[str, object]" = field(default_factory=dict)
    limits: Callable[[RunSpec], "str | None"] = lambda spec: None
    plain_title: str = ""

    def _values(self, spec: RunSpec) -> dict:
        quant = spec.quant
        return {"obs_dtype": spec.obs_dtype, "bits": quant.bits if quant else None,
                "decimals": quant.decimals if quant else None, "clamp": quant.clamp if quant else None,
                "mean_bits": spec.obs_ranges.mean_bits if spec.obs_ranges else None}

    def label(self, spec: RunSpec, buffer_only: bool = False) -> str:
        """What tables and plots call this storage for ``spec`` (on a buffer-only device: the buffer's layout)."""
        plain = self.plain_title and not spec.observation.has_floats
        title = self.plain_title if plain else self.buffer_title if buffer_only else self.title
        return title.format(**self._values(spec))

    @property
    def trainable(self) -> bool:
        """A buffer class implements it: ``planner validate`` can train with it."""
        return bool(self.buffers)

    def _replay_only(self, algo: str) -> PlannerError:
        return PlannerError(f"storage {self.name} holds replay buffers (off-policy algorithms), not {algo}'s rollout "
                            "buffer", "storage")

    def training_refusal(self, algo: str) -> "PlannerError | None":
        """Why no buffer class of this storage trains ``algo`` (an error naming the storages that do), or None."""
        kind = algorithm(algo).buffer_kind
        if kind in self.buffers:
            return None
        if self.replay_only and kind != "replay":
            return self._replay_only(algo)
        others = [name for name, entry in STORAGES.items() if kind in entry.buffers]
        trains = f"storage {others[0]} only" if len(others) == 1 else f"storages {', '.join(others)}"
        return PlannerError(f"storage {self.name} has no buffer class for {algo}'s {BUFFER_KINDS[kind]}; {algo} trains "
                            f"with {trains}", "storage")

    def refusal(self, spec: RunSpec) -> "PlannerError | None":
        """Why this storage cannot hold ``spec`` (an error naming what is allowed), or None."""
        if self.replay_only and not spec.is_replay:
            return self._replay_only(spec.algo)
        if self.quantized == "always" and spec.quant is None:
            return PlannerError(f"storage {self.name} stores quantized observations: give decimals (and clamp, bits)",
                                "decimals", "clamp", "bits")
        if self.quantized == "never" and spec.quant is not None:
            quantizing = ", ".join(s.name for s in STORAGES.values() if s.quantized != "never")
            return PlannerError(f"storage {self.name} does not quantize observations: drop decimals, clamp and bits, "
                                f"or use one of {quantizing}", "decimals", "clamp", "bits")
        reason = self.limits(spec)
        return None if reason is None else PlannerError(f"storage {self.name} {reason}", "storage")


STORAGES = {s.name: s for s in (
    Storage("paper64", "the paper's accounting: (s, a, r) in float64", "(s, a, r) in float64", paper64_fields),
    Storage("sb3", "SB3 as is, {obs_dtype} obs", "{obs_dtype} obs, unpacked", sb3_fields,
            in_fit=True, buffers=SB3_BUFFERS),
    Storage("sb3-optimize", "SB3 optimize_memory_usage (timeouts become terminal)",
            "{obs_dtype} obs stored once", lambda spec: sb3_fields(spec, optimize_memory_usage=True),
            replay_only=True, in_fit=True, limits=sb3_optimize_limits,
            buffers={"replay": SB3_BUFFERS["replay"]},
            buffer_kwargs={"optimize_memory_usage": True, "handle_timeout_termination": False}),
    Storage("just-round", "authors' uint16, m={decimals}", "uint16 codes, m={decimals}", just_round_fields,
            quantized="always", in_fit=True, limits=just_round_limits),
    Storage("packed", "packed {bits}-bit, m={decimals}, b={clamp:g}", "{bits}-bit packed codes, m={decimals}",
            packed_fields, quantized="always", in_fit=True, buffers=PACKED_BUFFERS,
            plain_title="packed: {obs_dtype} obs stored once (no floats to quantize)"),
    Storage("calibrated", "calibrated {mean_bits:.1f} bits mean, m={decimals} (+ exceptions)",
            "calibrated widths ({mean_bits:.1f} bits mean), m={decimals}",
            lambda spec: packed_fields(spec, calibrated=True), quantized="always", in_fit=True,
            limits=calibrated_limits, buffers=PACKED_BUFFERS),
    *(Storage(half, f"{half} obs stored once", f"{half} obs stored once",
              lambda spec, half=half: packed_fields(spec, half), in_fit=True, buffers=PACKED_BUFFERS,
              buffer_kwargs={"dtype": half}, limits=lambda spec, half=half: half_limits(spec, half))
      for half in ("float16", "bfloat16")),
    Storage("figure2", "the paper's Figure 2 accounting", "Figure 2 accounting", figure2_fields,
            quantized="optional"),
)}


def storage(name: str) -> Storage:
    """The registry entry ``name``; an unknown name is refused with the known ones."""
    if name not in STORAGES:
        raise PlannerError(f"storage must be one of {', '.join(STORAGES)}, got {quote(name)}", "storage")
    return STORAGES[name]


def buffer_fields(spec: RunSpec) -> "tuple[Field, ...]":
    """The fields the buffer of ``spec`` allocates in ``spec.storage``."""
    entry = storage(spec.storage)
    error = entry.refusal(spec)
    if error is not None:
        raise error
    return entry.fields(spec)
