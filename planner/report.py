"""Rendering a footprint for the terminal."""

from planner.footprint import Footprint
from planner.gpu import DevicePool
from planner.runspec import RunSpec
from planner.table import render
from planner.units import format_bytes


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def footprint_table(spec: RunSpec, fp: Footprint, unit: str = "MB") -> str:
    """Components and buffer fields with bytes, size in ``unit`` and shares of the total and of the buffer."""
    quant = f", {spec.quant.describe()}" if spec.quant else ""
    if spec.storage == "calibrated":
        quant = (f", m={spec.obs_ranges.decimals}, b={spec.obs_ranges.clamp:g}, calibrated widths "
                 f"({spec.obs_ranges.mean_bits:.2f} bits mean)")
    title = (f"{spec.algo.upper()}  obs {spec.obs_dim}  act {spec.action_dim}  "
             f"{'buffer' if spec.is_replay else 'n_steps'} {spec.buffer_size:,} x {spec.n_envs} env  "
             f"storage {spec.storage}{quant}  params {spec.param_dtype}")
    rows = [[c.group, c.name, f"{c.bytes:,}", format_bytes(c.bytes, unit), _pct(fp.share(c.bytes)), "-",
             f"{c.params:,} params"] for c in fp.components]
    rows += [["buffer", f.name, f"{f.bytes:,}", format_bytes(f.bytes, unit), _pct(fp.share(f.bytes)),
              _pct(fp.share(f.bytes, fp.buffer_bytes)), f"{f.rows:,} rows x {f.storage}"] for f in fp.fields]
    table = render(rows, ["part", "name", "bytes", unit, "% total", "% buffer", "storage"])
    summary = [["models", f"{fp.models_bytes:,}", format_bytes(fp.models_bytes, unit), _pct(fp.share(fp.models_bytes))],
               ["optimizer", f"{fp.optimizer_bytes:,}", format_bytes(fp.optimizer_bytes, unit),
                _pct(fp.share(fp.optimizer_bytes))],
               ["buffer", f"{fp.buffer_bytes:,}", format_bytes(fp.buffer_bytes, unit), _pct(fp.share(fp.buffer_bytes))],
               ["  observations", f"{fp.observation_bytes:,}", format_bytes(fp.observation_bytes, unit),
                _pct(fp.share(fp.observation_bytes))],
               ["total", f"{fp.total_bytes:,}", format_bytes(fp.total_bytes, unit), "100.0%"]]
    per_row = fp.buffer_bytes / spec.rows
    return "\n".join([title, "", table, "", render(summary, ["", "bytes", unit, "% total"]), "",
                      f"buffer bytes per transition: {per_row:,.2f} B   (MB = 10^6 B, MiB = 2^20 B)"])


def pool_table(pool: DevicePool, fp: Footprint, unit: str = "MB") -> str:
    """Where a CUDA run keeps what: the GPU pool (beyond the profile's gpu_runtime) and host RAM's buffer."""
    rows = [["GPU", "models (allocator blocks)", f"{pool.models_bytes:,}", format_bytes(pool.models_bytes, unit)],
            ["GPU", "optimizer state (allocator blocks)", f"{pool.optimizer_bytes:,}",
             format_bytes(pool.optimizer_bytes, unit)],
            ["GPU", "one update: batch, activations, gradients (upper estimate)", f"{pool.update_bytes:,}",
             format_bytes(pool.update_bytes, unit)],
            ["GPU", "total, beyond the CUDA context and libraries", f"{pool.total_bytes:,}",
             format_bytes(pool.total_bytes, unit)],
            ["host", "buffer (numpy arrays)", f"{fp.buffer_bytes:,}", format_bytes(fp.buffer_bytes, unit)]]
    return "on a CUDA device (--device cuda):\n" + render(rows, ["pool", "what", "bytes", unit])
