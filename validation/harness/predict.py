"""The simulator side of a validation: the planner's prediction of a run's memory over its steps.

Predicted RSS(step) = runtime + models + the buffer pages committed by then, and from the first
gradient update on also the optimizer state. The runtime has three levels: once the model is built;
once the policy has run forward passes (an on-policy algorithm from its first step; an off-policy one acts at
random until learning_starts); and once updates run (autograd buffers and kernels loaded on first use).
numpy commits pages lazily, so a replay buffer grows with the rows written (min(step, capacity));
a rollout buffer is full after its first n_steps. That holds for arrays glibc maps afresh: the
harness pins glibc's mmap threshold at ``MMAP_THRESHOLD`` (128 KiB), and smaller arrays come from the
heap, whose pages are usually resident already, so they are counted as committed from the start.
All three are calibrated (``validation.harness.calibrate``) by a short probe run: its RSS when the model is
built, just before the first update and at its peak, each minus the planner's figures for the probe.
"""

from dataclasses import dataclass

from planner.defaults import is_on_policy
from planner.footprint import Footprint, footprint
from validation.harness.runconfig import RunConfig

MMAP_THRESHOLD = 128 * 1024


@dataclass(frozen=True)
class Runtime:
    """What the process costs beyond models, optimizer state and buffer, in each phase of a run."""

    built_bytes: int  # imports, env, model construction
    acting_bytes: int  # plus the policy's forward passes
    training_bytes: int  # the peak once updates run: what a profile's ``runtime`` means

    def in_phase(self, phase: str) -> int:
        return {"built": self.built_bytes, "acting": self.acting_bytes, "training": self.training_bytes}[phase]


@dataclass(frozen=True)
class Prediction:
    config: RunConfig
    footprint: Footprint
    runtime: Runtime

    @property
    def peak_bytes(self) -> int:
        return self.rss_at(self.config.buffer_size, "training")

    @property
    def arrays(self) -> "list[tuple[int, bool]]":
        """(bytes, eager) of each array of the buffer: a stream's tail (field ``NAME.tail``) is part of NAME's."""
        arrays: "dict[str, tuple[int, bool]]" = {}
        for f in self.footprint.fields:
            name = f.name.removesuffix(".tail")
            size, eager = arrays.get(name, (0, f.eager))
            arrays[name] = (size + f.bytes, eager)
        return list(arrays.values())

    @property
    def lazy_bytes(self) -> int:
        """Buffer bytes committed row by row as the buffer fills."""
        return sum(size for size, eager in self.arrays if not eager and size >= MMAP_THRESHOLD)

    @property
    def heap_bytes(self) -> int:
        """Bytes of arrays written row by row but small enough to come from the heap, whose pages may be
        resident already or committed as the rows are written (counted as committed from the start)."""
        return sum(size for size, eager in self.arrays if not eager and size < MMAP_THRESHOLD)

    def rows_written(self, step: int) -> int:
        capacity = self.config.buffer_size
        if is_on_policy(self.config.algo):
            return capacity if step > 0 else 0
        return min(step, capacity)

    def buffer_committed(self, step: int) -> int:
        """Buffer bytes committed after ``step`` environment steps."""
        eager = self.footprint.buffer_bytes - self.lazy_bytes
        return int(eager + self.lazy_bytes * self.rows_written(step) / self.config.buffer_size)

    def phase_at(self, step: int) -> str:
        """"training" from the first update on, "acting" once the policy has chosen actions, else "built"."""
        if step >= self.config.first_update_step:
            return "training"
        return "acting" if is_on_policy(self.config.algo) and step > 0 else "built"

    def rss_at(self, step: int, phase: "str | None" = None) -> int:
        """Predicted RSS after ``step`` environment steps, in ``phase`` (default: ``phase_at(step)``)."""
        phase = phase or self.phase_at(step)
        optimizer = self.footprint.optimizer_bytes if phase == "training" else 0
        return self.runtime.in_phase(phase) + self.footprint.models_bytes + optimizer + self.buffer_committed(step)


def predict(config: RunConfig, runtime: Runtime) -> Prediction:
    return Prediction(config, footprint(config.run_spec()), runtime)
