"""The simulator side of a validation: the planner's prediction of a run's memory over its steps.

Predicted RSS(step) = runtime + models + optimizer state + the buffer pages committed by then.
numpy commits pages lazily, so a replay buffer grows with the rows written (min(step, capacity));
a rollout buffer is full after its first n_steps. That holds for arrays glibc maps afresh: the
harness pins glibc's mmap threshold at ``MMAP_THRESHOLD`` (128 KiB), and smaller arrays come from the
heap, whose pages are usually resident already, so they are counted as committed from the start. ``runtime`` is the calibrated figure
(``validation.calibrate``): a short probe run's peak RSS minus its own models, optimizer and buffer.
"""

from dataclasses import dataclass

from planner.footprint import Footprint, footprint
from validation.runconfig import RunConfig

MMAP_THRESHOLD = 128 * 1024


@dataclass(frozen=True)
class Prediction:
    config: RunConfig
    footprint: Footprint
    runtime_bytes: int

    @property
    def fixed_bytes(self) -> int:
        """Runtime + models + optimizer: present from the first update on."""
        fp = self.footprint
        return self.runtime_bytes + fp.models_bytes + fp.optimizer_bytes

    @property
    def peak_bytes(self) -> int:
        return self.fixed_bytes + self.footprint.buffer_bytes

    @property
    def lazy_bytes(self) -> int:
        """Buffer bytes committed row by row as the buffer fills."""
        return sum(f.bytes for f in self.footprint.fields if not f.eager and f.bytes >= MMAP_THRESHOLD)

    def rows_written(self, step: int) -> int:
        capacity = self.config.buffer_size
        return min(step, capacity) if self.config.algo != "ppo" else (capacity if step > 0 else 0)

    def buffer_committed(self, step: int) -> int:
        """Buffer bytes committed after ``step`` environment steps."""
        eager = self.footprint.buffer_bytes - self.lazy_bytes
        return int(eager + self.lazy_bytes * self.rows_written(step) / self.config.buffer_size)

    def rss_at(self, step: int) -> int:
        """Predicted RSS after ``step`` environment steps."""
        return self.fixed_bytes + self.buffer_committed(step)


def predict(config: RunConfig, runtime_bytes: int) -> Prediction:
    return Prediction(config, footprint(config.run_spec()), runtime_bytes)
