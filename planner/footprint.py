"""Footprint = models + optimizer state + buffer, broken down per component and per field (Eq. 1 and 3).

>>> fp = footprint(RunSpec("sac", obs_dim=348, action_dim=17, buffer_size=1_000_000, storage="sb3"))
>>> fp.buffer_bytes
5648000000
"""

from dataclasses import dataclass

from planner.algorithms import ADAM, Optimizer, algorithm
from planner.layouts import Field
from planner.networks import Network
from planner.runspec import DTYPE_BYTES, RunSpec
from planner.storages import buffer_fields


@dataclass(frozen=True)
class Component:
    """Model parameters, module buffers (group "model", named ``buffers(NET)``) or optimizer state of one network."""

    name: str
    group: str  # "model" | "optimizer"
    params: int
    bytes: int


@dataclass(frozen=True)
class Footprint:
    components: "tuple[Component, ...]"
    fields: "tuple[Field, ...]"

    @property
    def models_bytes(self) -> int:
        return sum(c.bytes for c in self.components if c.group == "model")

    @property
    def optimizer_bytes(self) -> int:
        return sum(c.bytes for c in self.components if c.group == "optimizer")

    @property
    def buffer_bytes(self) -> int:
        return sum(f.bytes for f in self.fields)

    @property
    def observation_bytes(self) -> int:
        return sum(f.bytes for f in self.fields if f.observation)

    @property
    def total_bytes(self) -> int:
        return self.models_bytes + self.optimizer_bytes + self.buffer_bytes

    def share(self, part: int, of: "int | None" = None) -> float:
        """``part`` as a fraction of ``of`` (default: the total)."""
        whole = self.total_bytes if of is None else of
        return part / whole if whole else 0.0

    def as_dict(self) -> dict:
        total, buffer = self.total_bytes, self.buffer_bytes
        return {
            "total_bytes": total,
            "models_bytes": self.models_bytes,
            "optimizer_bytes": self.optimizer_bytes,
            "buffer_bytes": buffer,
            "observation_bytes": self.observation_bytes,
            "components": [
                {"name": c.name, "group": c.group, "params": c.params, "bytes": c.bytes,
                 "share_of_total": self.share(c.bytes)} for c in self.components],
            "fields": [
                {"name": f.name, "rows": f.rows, "row_bytes": f.row_bytes, "bytes": f.bytes, "storage": f.storage,
                 "observation": f.observation, "share_of_buffer": self.share(f.bytes, buffer),
                 "share_of_total": self.share(f.bytes)} for f in self.fields],
        }


def model_components(networks: "tuple[Network, ...]", param_dtype: str, optimizer: bool,
                     optim: Optimizer = ADAM) -> "tuple[Component, ...]":
    """Parameters of each network, its module buffers (if any), then ``optim``'s state for each trained one
    (Adam: two moments; RMSprop: one square average; per-tensor step scalars left out, see
    :class:`planner.algorithms.Optimizer`)."""
    size = DTYPE_BYTES[param_dtype]
    models = tuple(Component(n.name, "model", n.params, n.params * size) for n in networks)
    buffers = tuple(Component(f"buffers({n.name})", "model", n.buffers, n.buffers * size)
                    for n in networks if n.buffers)
    states = tuple(Component(f"{optim.name}({n.name})", "optimizer", optim.tensors * n.params,
                             optim.tensors * n.params * size) for n in networks if optimizer and n.trained)
    return models + buffers + states


def footprint(spec: RunSpec) -> Footprint:
    """The predicted memory of ``spec``: the algorithm's networks plus the buffer ``spec.storage`` allocates."""
    entry = algorithm(spec.algo)
    networks = entry.networks(spec.observation, spec.action_space, spec.net, spec.trunk)
    return Footprint(model_components(networks, spec.param_dtype, spec.optimizer, entry.optimizer),
                     buffer_fields(spec))
