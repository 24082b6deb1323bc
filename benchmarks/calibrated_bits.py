"""All-in bits per observation value of the calibrated buffer against uniform packing, float16 and the entropy.

    python benchmarks/sac_observations.py --env Hopper-v5 --steps 15000 --out runs/Hopper-v5.npz   # ~10 min
    python benchmarks/calibrated_bits.py --runs runs [--json]

Per env, the stream is the SAC run recorded in ``RUNS/<env>.npz`` when there is one (SB3's SAC, default
hyper-parameters, 5,000 random steps first), else 20,000 random-action steps (seed 0) whose episodes end as the
env ends them (terminated, or truncated at the time limit). The observation ranges are scanned
(``planner.obs_ranges.choose_ranges``, m = 2) from the stream's first quarter; then the whole stream is fed,
transition by transition, to real ``QuantizedReplayBuffer(obs_ranges=...)`` buffers holding every transition,
recalibrating as shipped (the widths chosen again from the rows as they fill) and not, and, in lockstep, to the
uniform m = 2 buffer: each episode end's next observation right after its add, and at the end every decoded
value, must be the uniform buffer's, bit for bit.

Columns, in bits per observation value of the main observation store (rows, the words' tail, the side table's
blocks and entries, as allocated; the episode-end store is reported apart): float16 (the planner's), uniform
15-bit packing as allocated, calibrated as shipped and with its scanned widths kept, and the entropy bound (the
mean over dimensions of the empirical entropy of the stream's codes: no code of one value at a time does better).
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np

ENVS = ("Walker2d-v5", "HalfCheetah-v5", "Hopper-v5", "Ant-v5", "Humanoid-v5")
RANDOM_STEPS = 20_000
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
    return random_stream(env_id, RANDOM_STEPS, seed=0), f"random actions, {RANDOM_STEPS:,} steps (seed 0)"


def random_stream(env_id: str, steps: int, seed: int) -> dict:
    """``steps`` random-action transitions with SB3's episode ends: ``dones`` when an episode ends (its next
    observation is the final one, then the env resets), ``timeouts`` when the time limit ended it."""
    import gymnasium as gym

    env = gym.make(env_id)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    out: "dict[str, list]" = {"observations": [], "next_observations": [], "dones": [], "timeouts": []}
    for _ in range(steps):
        next_obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        for key, value in zip(out, (obs, next_obs, terminated or truncated, truncated and not terminated)):
            out[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    env.close()
    return {key: np.array(values, dtype=np.float64) for key, values in out.items()}


def _one_stream(x: np.ndarray) -> dict:
    """Observations as one stream without episode ends: the next observation of row t is row t + 1."""
    n = len(x) - 1
    return {"observations": x[:n], "next_observations": x[1:], "dones": np.zeros(n), "timeouts": np.zeros(n)}


def bits(view, index) -> np.ndarray:
    return np.asarray(view[index]).view(np.uint32)


def feed(buffers: list, stream: dict) -> "tuple[list[float], list[int]]":
    """Add every transition of ``stream`` to each buffer in turn (one buffer of ``len(stream)`` rows or more:
    transition t is row t); returns the seconds each buffer's adds took and, per buffer, the episode ends whose
    next observation, read right after the add, differed from the first buffer's."""
    actions, rewards = np.zeros((1, buffers[0].action_dim), np.float32), np.zeros(1, np.float32)
    seconds, differing = [0.0] * len(buffers), [0] * len(buffers)
    for t, (obs, nxt, done, timeout) in enumerate(zip(stream["observations"], stream["next_observations"],
                                                      stream["dones"], stream["timeouts"])):
        for i, buf in enumerate(buffers):
            start = time.perf_counter()
            buf.add(obs[None], nxt[None], actions, rewards, np.array([done]), [{"TimeLimit.truncated": bool(timeout)}])
            seconds[i] += time.perf_counter() - start
        if done:
            want = bits(buffers[0].next_observations, t)
            for i, buf in enumerate(buffers):
                differing[i] += not np.array_equal(bits(buf.next_observations, t), want)
    return seconds, differing


def store_bits(breakdown: "dict[str, int]", store: str, values: int) -> float:
    """Bits per value of one observation store's arrays (``store`` and its ``store.*`` parts), as allocated."""
    return 8 * sum(v for k, v in breakdown.items() if k == store or k.startswith(store + ".")) / values


def planner_bits(storage: str, dim: int, rows: int) -> float:
    from planner.footprint import footprint
    from planner.quantization import Quantization
    from planner.runspec import RunSpec

    quant = Quantization.create(DECIMALS) if storage in ("packed", "just-round") else None
    spec = RunSpec("sac", dim, 1, buffer_size=rows, storage=storage, quant=quant)
    return 8 * next(f.bytes for f in footprint(spec).fields if f.name == "observations") / (rows * dim)


def measure(env_id: str, runs: "Path | None") -> dict:
    from gymnasium import spaces

    from planner.obs_ranges import choose_ranges, codes, entropy_bits
    from validation.buffers import QuantizedReplayBuffer

    stream, source = load_stream(env_id, runs)
    x = stream["observations"]
    rows, dim = x.shape
    scan = rows // 4
    ranges = choose_ranges(x[:scan], DECIMALS, source={"env": env_id, "observations": scan})
    space, action = spaces.Box(-np.inf, np.inf, (dim,), np.float64), spaces.Box(-1, 1, (1,), np.float32)
    result = {"env": env_id, "source": source, "dims": dim, "transitions": rows, "scanned": scan,
              "float16_bits": planner_bits("float16", dim, rows),
              "entropy_bits": float(np.mean([entropy_bits(c) for c in codes(x, DECIMALS).T]))}
    uniform = QuantizedReplayBuffer(rows, space, action, "cpu", decimals=DECIMALS)
    labels = {"calibrated": True, "scanned widths kept": False}
    buffers = [QuantizedReplayBuffer(rows, space, action, "cpu", obs_ranges=ranges, recalibrate=again)
               for again in labels.values()]
    seconds, differing = feed([uniform, *buffers], stream)
    want = [bits(view, slice(rows)) for view in (uniform.observations, uniform.next_observations)]
    result["episode_ends"] = int(np.count_nonzero(stream["dones"]))
    result["uniform"] = {"bits": store_bits(uniform.memory_breakdown(), "observations", rows * dim),
                         "add_us": 1e6 * seconds[0] / rows}
    for label, buf, add_seconds, ends_differing in zip(labels, buffers, seconds[1:], differing[1:]):
        stats = buf.quantization_stats()["observation"]
        breakdown = buf.memory_breakdown()
        got = [bits(view, slice(rows)) for view in (buf.observations, buf.next_observations)]
        terminal_rows = buf.terminal_observations.arrays[None].n_rows
        result[label] = {"bits": store_bits(breakdown, "observations", rows * dim),
                         "row_bits": stats["row_bits"] / dim, "entries_per_row": stats["entries_live"] / rows,
                         "terminal_bits": store_bits(breakdown, "terminal_observations", terminal_rows * dim),
                         "recalibrations": len(buf.drift.events), "add_us": 1e6 * add_seconds / rows,
                         "episode_ends_differing": ends_differing,
                         "identical_to_uniform": not ends_differing and all(np.array_equal(g, w)
                                                                            for g, w in zip(got, want))}
    return result


def table(results: "list[dict]") -> str:
    head = ("| env | dims | stream | float16 | uniform 15-bit | calibrated | its rows alone | entries per row | "
            "scanned widths kept | entropy bound | episode-end store (calibrated) | identical to uniform |\n|"
            + "---|" * 12)
    lines = [head]
    for r in results:
        c, kept = r["calibrated"], r["scanned widths kept"]
        lines.append(f"| {r['env']} | {r['dims']} | {r['source']} | {r['float16_bits']:.2f} | "
                     f"{r['uniform']['bits']:.2f} | **{c['bits']:.2f}** ({c['recalibrations']} recal.) | "
                     f"{c['row_bits']:.2f} | {c['entries_per_row']:.3f} | {kept['bits']:.2f} | "
                     f"{r['entropy_bits']:.2f} | {c['terminal_bits']:.2f} | "
                     f"{'yes' if c['identical_to_uniform'] and kept['identical_to_uniform'] else 'NO'} |")
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
