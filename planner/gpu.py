"""What a run keeps on a discrete GPU, where SB3 puts models, optimizer state and each update's tensors
(the replay or rollout buffer stays in host RAM as numpy arrays; sampled batches are copied over).

- models and optimizer state: exact, as PyTorch's caching allocator holds them (each tensor rounded up
  to 512-byte blocks; measured to the byte on an H200, docs/measurements/gpu_pool_h200.jsonl);
- the update: the sampled batch as float32 plus the activations and gradients of the update, an
  upper estimate of ``batch_size x 4 B x (batch row values + 5 x the units of every trained layer)``
  (measured: 1.1x to 2.7x the real peak over the last allocation, never below; docs/profiles.md);
- the CUDA context, libraries and cuBLAS workspace: the profile's ``gpu_runtime``.

>>> pool = device_pool(RunSpec("sac", 348, 17))
>>> pool.models_bytes, pool.optimizer_bytes  # SAC on Humanoid-v5's dims: 3,214,848 B measured
(3214848, 3871744)
"""

from dataclasses import dataclass

from planner.algorithms import algorithm
from planner.networks import LSTM, BatchRenorm, Conv2d, Network, sb3_models
from planner.runspec import DTYPE_BYTES, RunSpec

ALLOCATOR_BLOCK = 512  # bytes: PyTorch's CUDA caching allocator rounds every tensor up to this
UPDATE_UNITS_FACTOR = 5  # activations and gradients per layer unit and sample: an upper estimate (measured 1.7-4.5)
COUNTER_BYTES = 8  # BatchRenorm's int64 step counter, one allocator block on the GPU


@dataclass(frozen=True)
class DevicePool:
    """Bytes a run holds on the GPU, beyond the profile's ``gpu_runtime``."""

    models_bytes: int
    optimizer_bytes: int
    update_bytes: int  # an estimate

    @property
    def total_bytes(self) -> int:
        return self.models_bytes + self.optimizer_bytes + self.update_bytes

    def as_dict(self) -> dict:
        return {"models_bytes": self.models_bytes, "optimizer_bytes": self.optimizer_bytes,
                "update_bytes_estimate": self.update_bytes, "total_bytes": self.total_bytes}


def _blocks(elements: int, itemsize: int) -> int:
    return -(-elements * itemsize // ALLOCATOR_BLOCK) * ALLOCATOR_BLOCK


def tensor_sizes(network: Network) -> "list[int]":
    """Elements of each parameter tensor: every layer's weight and bias (BatchRenorm: scale and bias; LSTM: four
    per stacked layer), then the free parameters."""
    sizes = [size for layer in network.layers
             for size in (layer.tensor_sizes if isinstance(layer, LSTM)
                          else (layer.n, layer.n) if isinstance(layer, BatchRenorm)
                          else (layer.params - layer.n_out, layer.n_out) if isinstance(layer, Conv2d)
                          else (layer.n_in * layer.n_out, layer.n_out if layer.bias else 0))]
    return [size for size in (*sizes, network.extra_params) if size]


def _buffer_blocks(network: Network, itemsize: int) -> int:
    """Module buffers on the GPU: BatchRenorm's running mean and variance, and its step counter."""
    return sum(2 * _blocks(layer.n, itemsize) + _blocks(1, COUNTER_BYTES)
               for layer in network.layers if isinstance(layer, BatchRenorm))


def _units(network: Network) -> int:
    return sum(layer.n if isinstance(layer, BatchRenorm) else layer.units if isinstance(layer, (Conv2d, LSTM))
               else layer.n_out for layer in network.layers)


def device_pool(spec: RunSpec, batch_size: "int | None" = None) -> DevicePool:
    """The GPU side of ``spec`` trained on a CUDA device (batch size: SB3's default for the algorithm; a
    whole rollout for A2C)."""
    algo = algorithm(spec.algo)
    networks = sb3_models(spec.algo, spec.observation, spec.action_dim, spec.net, spec.trunk, spec.action_space)
    itemsize = DTYPE_BYTES[spec.param_dtype]
    models = sum(_blocks(size, itemsize) for n in networks for size in tensor_sizes(n))
    models += sum(_buffer_blocks(n, itemsize) for n in networks)
    trained = [n for n in networks if n.trained] if spec.optimizer else []
    optimizer = algo.optimizer.tensors * sum(_blocks(size, itemsize) for n in trained for size in tensor_sizes(n))
    batch = (algo.batch_size or spec.rows) if batch_size is None else batch_size
    obs = spec.obs_values
    row_values = (2 * obs + spec.action_dim + 3) if spec.is_replay else (obs + spec.action_dim + 4)
    units = sum(_units(n) for n in trained)
    return DevicePool(models, optimizer, batch * 4 * (row_values + UPDATE_UNITS_FACTOR * units))
