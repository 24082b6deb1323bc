"""Bits per observation value on five MuJoCo envs: SB3's default, float16, the authors' uint16, uniform packing
(m = 2), calibrated packing (m = 2) and the entropy bound; and, on real SAC runs, the exception rate over the run
with and without recalibration.

    python benchmarks/sac_observations.py --env Ant-v5 --steps 50000 --out runs/Ant-v5.npz   # per env, ~30 min
    python benchmarks/calibrated_bits.py --runs runs [--json]

Per env, the stream is the SAC run recorded in ``RUNS/<env>.npz`` when there is one (SB3's SAC, 5,000 random
steps first), else 10,000 random-action steps (seed 0, one stream without episode ends). The observation ranges are
scanned (``planner.obs_ranges.calibrate``, m = 2) from the stream's first 5,000 observations, as a user would scan
SAC's ``learning_starts``; then the whole stream is fed, transition by transition, to a real
``QuantizedReplayBuffer(obs_ranges=spec)`` holding every transition, and to the uniform m = 2 buffer, whose every
decoded value must be the same, bit for bit.

Columns: the observation bits a transition stores per observation value (``observation bytes per transition x 8
/ dims``): SB3 as is (observations and next observations in the env's float64), float16 and the authors' uint16
as the planner sizes them, uniform 15-bit packing (observations stored once, rows padded to 64-bit words), the
calibrated buffer as measured (rows, each row's exception index and the exception entries as allocated; "live":
only the entries in use), and the entropy bound (the mean over dimensions of the empirical entropy of the stream's
codes: no code of one value at a time does better).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

ENVS = ("Walker2d-v5", "HalfCheetah-v5", "Hopper-v5", "Ant-v5", "Humanoid-v5")
SCAN = 5_000
RANDOM_STEPS = 10_000
DECIMALS = 2


def load_stream(env_id: str, runs: "Path | None") -> "tuple[dict, str]":
    """Observations, next observations, dones and time limits of a recorded SAC run, or a random rollout."""
    path = runs / f"{env_id}.npz" if runs else None
    if path is not None and path.exists():
        data = np.load(path)
        source = f"SAC run, {int(data['steps']):,} steps (seed {int(data['seed'])})"
        if "next_observations" in data:
            return {k: data[k] for k in ("observations", "next_observations", "dones", "timeouts")}, source
        x = data["observations"]  # recorded without the rest: one stream, each next observation the following row
        return _one_stream(x), source + ", observations only"
    from validation.scan import rollout

    return _one_stream(rollout(env_id, RANDOM_STEPS + 1, seed=0)), f"random actions, {RANDOM_STEPS:,} steps (seed 0)"


def _one_stream(x: np.ndarray) -> dict:
    """Observations as one stream without episode ends: the next observation of row t is row t + 1."""
    n = len(x) - 1
    return {"observations": x[:n], "next_observations": x[1:], "dones": np.zeros(n), "timeouts": np.zeros(n)}


def feed(buf, stream: dict) -> float:
    """Add every transition of ``stream``; returns the seconds it took."""
    actions, rewards = np.zeros((1, buf.action_dim), np.float32), np.zeros(1, np.float32)
    start = time.perf_counter()
    for obs, nxt, done, timeout in zip(stream["observations"], stream["next_observations"], stream["dones"],
                                       stream["timeouts"]):
        buf.add(obs[None], nxt[None], actions, rewards, np.array([done]), [{"TimeLimit.truncated": bool(timeout)}])
    return time.perf_counter() - start


def observation_bits(breakdown: "dict[str, int]", live_entries: int, rows: int, dim: int) -> "tuple[float, float]":
    """Bits per value of the observation arrays (as allocated, and with only the live exception entries)."""
    observed = {k: v for k, v in breakdown.items() if k.startswith(("observations", "terminal_observations"))}
    allocated = sum(observed.values())
    exceptions = sum(v for k, v in observed.items() if k.endswith(".exceptions"))
    return allocated * 8 / (rows * dim), (allocated - exceptions + 16 * live_entries) * 8 / (rows * dim)


def planner_bits(storage: str, dim: int, rows: int) -> float:
    from planner.footprint import footprint
    from planner.quantization import Quantization
    from planner.runspec import RunSpec

    quant = Quantization.create(DECIMALS) if storage in ("packed", "just-round") else None
    spec = RunSpec("sac", dim, 1, buffer_size=rows, storage=storage, quant=quant)
    return footprint(spec).observation_bytes * 8 / (rows * dim)


def measure(env_id: str, runs: "Path | None") -> dict:
    from gymnasium import spaces

    from planner.defaults import RECALIBRATE_SHARE
    from planner.obs_ranges import choose_ranges, codes, entropy_bits
    from validation.buffers import QuantizedReplayBuffer

    stream, source = load_stream(env_id, runs)
    x = stream["observations"]
    rows, dim = x.shape
    spec = choose_ranges(x[:SCAN], DECIMALS, source={"env": env_id, "observations": SCAN})
    space, action = spaces.Box(-np.inf, np.inf, (dim,), np.float64), spaces.Box(-1, 1, (1,), np.float32)
    result = {"env": env_id, "source": source, "dims": dim, "transitions": rows,
              "spec_mean_bits": spec.mean_bits, "spec_exceptions_per_row": spec.exceptions_per_row,
              **{f"{name}_bits": planner_bits(name, dim, rows) for name in ("sb3", "float16", "just-round", "packed")},
              "entropy_bits": float(np.mean([entropy_bits(c) for c in codes(x, DECIMALS).T]))}
    uniform = QuantizedReplayBuffer(rows, space, action, "cpu", decimals=DECIMALS)
    feed(uniform, stream)
    want = [np.asarray(view[:rows]).view(np.uint32) for view in (uniform.observations, uniform.next_observations)]
    for label, recalibrate in (("calibrated", None), ("recalibrated", RECALIBRATE_SHARE)):
        buf = QuantizedReplayBuffer(rows, space, action, "cpu", obs_ranges=spec, recalibrate=recalibrate)
        seconds = feed(buf, stream)
        stats = buf.quantization_stats()["observation"]
        got = [np.asarray(view[:rows]).view(np.uint32) for view in (buf.observations, buf.next_observations)]
        allocated, live = observation_bits(buf.memory_breakdown(), stats["exceptions_live"], rows, dim)
        result[label] = {"bits": allocated, "bits_live": live, "outside_share": stats["outside_share"],
                         "exceptions_per_row": stats["outside_share"] * dim, "row_bits": stats["row_bits"],
                         "recalibrations": len(buf.drift.events), "add_us": 1e6 * seconds / rows,
                         "identical_to_uniform": all(np.array_equal(g, w) for g, w in zip(got, want))}
    return result


def table(results: "list[dict]") -> str:
    head = ("| env | dims | stream | SB3 as is | float16 | authors' uint16 | uniform 15-bit | calibrated "
            "(allocated / live) | with recalibrate | entropy bound | exceptions per row (share of values) | "
            "identical to uniform |\n|" + "---|" * 12)
    lines = [head]
    for r in results:
        c, rc = r["calibrated"], r["recalibrated"]
        lines.append(f"| {r['env']} | {r['dims']} | {r['source']} | {r['sb3_bits']:.1f} | {r['float16_bits']:.2f} | "
                     f"{r['just-round_bits']:.1f} | {r['packed_bits']:.2f} | {c['bits']:.2f} / {c['bits_live']:.2f} | "
                     f"{rc['bits']:.2f} ({rc['recalibrations']} recal.) | {r['entropy_bits']:.2f} | "
                     f"{c['exceptions_per_row']:.3f} ({100 * c['outside_share']:.3f} %) | "
                     f"{'yes' if c['identical_to_uniform'] and rc['identical_to_uniform'] else 'NO'} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, help="folder of recorded SAC runs (<env>.npz)")
    parser.add_argument("--env", action="append", help="envs to measure (default: all five)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [measure(env_id, args.runs) for env_id in (args.env or ENVS)]
    print(json.dumps(results, indent=2) if args.json else table(results))


if __name__ == "__main__":
    main()
