"""Benchmark the packing kernels against numpy, on the same data, in one run.

    python benchmarks/kernels.py            # 200,000 rows x 348 dims, 256-row batches, k = 15 and 12
    python benchmarks/kernels.py --json     # the same, as one JSON object

Every repetition has fresh random row indices, so sampled rows come cold from memory as in training
(a fixed index set measures the cache); all index arrays are drawn before any timing, and every method
gets the same ones. Each repetition times, in a rotating order, each method on its own array (so no
method warms the rows of another): two numpy float32 gathers, fancy index ``obs[idx]`` (allocates its
result) and ``np.take`` into a preallocated batch (on its own copy of the observations), the faster of
which is the memory-speed reference of the ratios; ``gather_unpack`` at k = 15 and k = 12 (this host's
read, then each other read path it has, ``GATHER_PATHS``, on its own copy of the rows); and the
authors' uint16 decode (1 sign bit, 7 integer bits, hundredths in the low byte) cast to float32 as a
training batch would be. Figures are medians over the repetitions; ratios compare medians of one run.

The calibrated section (:func:`run_escape`) times ``EscapeRows.decode`` on a Humanoid-like escape layout
(mean 6.5 bits per value, 40 of 348 dimensions 1 bit, widths 1..15, 1.2 % of values escaped: a real
Humanoid-v5 calibrated buffer's rate; ``--escape-share`` sets another) against
``np.take`` of the same rows' float32 values into a batch, the same way (each read path on its own copy of the
rows), and ``EscapeRows.encode`` of one row.
"""

import argparse
import json
import sys
import time
from typing import Callable

import numpy as np
from cython_core._escape import _read_path
from cython_core._kernels import _read_path as _gather_path

from cython_core import CodeLayout, EscapeLayout, EscapeRows, PackedRows, gather_unpack, quantize_pack

READ_PATHS = ("avx512vbmi", "avx2", "portable")  # the little-endian reads ("words": big-endian hosts)
GATHER_PATHS = ("avx512vbmi", "avx2", "portable", "scalar")  # gather_unpack's row reads


def _positive(text: str) -> int:
    try:
        value = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def uint16_encode(x: np.ndarray) -> np.ndarray:
    """The authors' storage: sign bit, 7 integer bits, hundredths in the low byte (clamp on |x|)."""
    a = np.round(np.clip(np.abs(x.astype(np.float64)), 0.0, 127.0), 2)
    whole = np.floor(a)
    hundredths = np.round((a - whole) * 100)
    return ((x < 0).astype(np.uint16) << 15) | (whole.astype(np.uint16) << 8) | hundredths.astype(np.uint16)


def uint16_decode(stored: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The authors' numpy decode of sampled rows, cast to float32 as a training batch would be."""
    n = stored[indices].astype(np.int64)
    whole = (n >> 8) & 0x7F
    hundredths = n & 0xFF
    sign = -2 * (n >> 15) + 1
    return (sign * (whole + hundredths / 100)).astype(np.float32)


def _median_us(samples: "list[int]") -> float:
    return float(np.median(samples)) / 1e3


def _time_rows(fn: Callable[[int], object], calls: int, repeats: int) -> float:
    """Median over ``repeats`` of the mean time per call of ``fn(i)``, i = 0..calls-1, in us."""
    runs = []
    for _ in range(repeats):
        start = time.perf_counter_ns()
        for i in range(calls):
            fn(i)
        runs.append((time.perf_counter_ns() - start) / calls)
    return float(np.median(runs)) / 1e3


def run(n_rows: int, dim: int, batch: int, repeats: int, seed: int, alone: bool = False) -> "dict[str, float]":
    """Build the data, time every method, return the figures (us) and ratios."""
    rng = np.random.default_rng(seed)
    obs = (rng.standard_normal((n_rows, dim), dtype=np.float32) * 20).astype(np.float32)
    obs[rng.random((n_rows, dim)) < 0.22] = 0.0  # ~22 % exact zeros, as contact forces in Humanoid
    packed = {}
    for bits, decimals in ((15, 2), (12, 1)):
        rows = PackedRows(n_rows, CodeLayout.uniform(dim, decimals=decimals, clamp=127.0))
        for start in range(0, n_rows, 8192):
            rows.encode(obs[start:start + 8192], np.arange(start, min(start + 8192, n_rows)))
        packed[bits] = rows
    stored16 = np.concatenate([uint16_encode(obs[s:s + 8192]) for s in range(0, n_rows, 8192)])
    out = np.empty((batch, dim), np.float32)
    obs_take, out_take = obs.copy(), np.empty((batch, dim), np.float32)  # rows just read from obs would be hot
    hot = rng.integers(0, n_rows, batch)
    methods: "dict[str, Callable[[np.ndarray], object]]" = {
        "float32_fancy": lambda idx: obs[idx],
        # into a preallocated batch, as gather_unpack writes (mode="clip": "raise" copies through a temporary)
        "float32_take": lambda idx: np.take(obs_take, idx, axis=0, out=out_take, mode="clip"),
        "k15": lambda idx: gather_unpack(packed[15].storage, idx, packed[15].layout, out),
        "k12": lambda idx: gather_unpack(packed[12].storage, idx, packed[12].layout, out),
        "uint16_decode": lambda idx: uint16_decode(stored16, idx),
        "k15_hot": lambda idx: gather_unpack(packed[15].storage, hot, packed[15].layout, out),
    }
    # k = 15 and 12 again on each other read path this host has (the default one is "k15", "k12"), each on its own
    # copy of the rows
    best = _gather_path()
    paths = {f"k{bits}_{path}": path for path in GATHER_PATHS if path != best and _has_path(path, _gather_path)
             for bits in (15, 12)}
    methods.update({name: _gather_copy(packed[int(name[1:3])], out) for name in paths})
    names = list(methods)
    draws = rng.integers(0, n_rows, (repeats, batch))  # fresh rows every repetition (cold), drawn before timing
    if alone:  # each method in its own loop: nothing else runs between its calls
        order = [(rep, name) for name in names for rep in range(repeats)]
    else:  # one loop, the order rotating from repetition to repetition
        order = [(rep, name) for rep in range(repeats) for name in names[rep % len(names):] + names[:rep % len(names)]]
    samples: "dict[str, list[int]]" = {name: [] for name in names}
    try:
        for rep, name in order:
            idx = draws[rep]
            _gather_path(paths.get(name, best))
            start = time.perf_counter_ns()
            methods[name](idx)
            samples[name].append(time.perf_counter_ns() - start)
    finally:
        _gather_path(best)
    med = {key: _median_us(values) for key, values in samples.items()}
    faster = min(("float32_fancy", "obs[idx]"), ("float32_take", "np.take"), key=lambda m: med[m[0]])
    med["float32_gather"] = med[faster[0]]  # the stricter reference
    spec15 = packed[15].layout
    row64 = list(obs[:64].astype(np.float64))  # the row views made before timing
    calls = 2000
    quantize_us = _time_rows(lambda i: quantize_pack(row64[i & 63], packed[15].storage, i, spec15), calls, 7)
    authors_us = _time_rows(lambda i: uint16_encode(row64[i & 63]), 300, 7)
    return {
        "rows": n_rows, "dim": dim, "batch": batch, "repeats": repeats, "alone": alone,
        "float32_gather_us": med["float32_gather"],
        "float32_gather_method": faster[1],
        "float32_fancy_gather_us": med["float32_fancy"],
        "float32_take_us": med["float32_take"],
        "gather_unpack_k15_us": med["k15"],
        "gather_unpack_k12_us": med["k12"],
        "gather_unpack_k15_hot_us": med["k15_hot"],
        "uint16_decode_us": med["uint16_decode"],
        "quantize_pack_row_us": quantize_us,
        "uint16_quantize_row_us": authors_us,
        "gather_unpack_vs_float32_gather": med["k15"] / med["float32_gather"],
        "gather_unpack_k12_vs_float32_gather": med["k12"] / med["float32_gather"],
        "gather_unpack_speedup_vs_uint16_decode": med["uint16_decode"] / med["k15"],
        "gather_path": best,
        **{f"gather_unpack_{name}_us": med[name] for name in paths},
        **{f"gather_unpack_{name}_vs_float32_gather": med[name] / med["float32_gather"] for name in paths},
        "storage_mib_k15": packed[15].nbytes / 2**20,
        "storage_mib_k12": packed[12].nbytes / 2**20,
        "float32_mib": obs.nbytes / 2**20,
    }


def _gather_copy(rows: PackedRows, out: np.ndarray) -> Callable[[np.ndarray], object]:
    """gather_unpack of ``rows`` into ``out`` from a copy of its storage (a method reading the same rows from the
    same array in a repetition would find them in cache)."""
    storage = rows.storage.copy()
    return lambda idx: gather_unpack(storage, idx, rows.layout, out)


def report(fig: "dict[str, float]") -> str:
    return "\n".join([
        f"benchmarks/kernels.py: {fig['rows']:,} rows x {fig['dim']} dims, batches of {fig['batch']} fresh rows, "
        f"medians of {fig['repeats']} repetitions" + (", each method alone" if fig["alone"] else ", interleaved"),
        f"  storage: float32 {fig['float32_mib']:.1f} MiB, k=15 {fig['storage_mib_k15']:.1f} MiB, "
        f"k=12 {fig['storage_mib_k12']:.1f} MiB",
        f"  float32 fancy-index obs[idx]  {fig['float32_fancy_gather_us']:8.1f} us   (numpy; allocates the batch)",
        f"  float32 np.take into a batch  {fig['float32_take_us']:8.1f} us   (numpy; preallocated batch)",
        f"  gather_unpack k=15            {fig['gather_unpack_k15_us']:8.1f} us   "
        f"{fig['gather_unpack_vs_float32_gather']:.2f}x the faster float32 gather, {fig['float32_gather_method']} "
        f"(target <= 3x, aim 2x; {fig['gather_path']} read)",
        f"  gather_unpack k=12            {fig['gather_unpack_k12_us']:8.1f} us   "
        f"{fig['gather_unpack_k12_vs_float32_gather']:.2f}x the faster float32 gather, {fig['float32_gather_method']}",
        *(f"{f'  gather_unpack k={bits}, {path}':<32}{fig[f'gather_unpack_k{bits}_{path}_us']:8.1f} us   "
          f"{fig[f'gather_unpack_k{bits}_{path}_vs_float32_gather']:.2f}x the faster float32 gather ({path} read)"
          for path in GATHER_PATHS for bits in (15, 12) if f"gather_unpack_k{bits}_{path}_us" in fig),
        f"  gather_unpack k=15, hot rows  {fig['gather_unpack_k15_hot_us']:8.1f} us   (same indices every time)",
        f"  authors' uint16 decode        {fig['uint16_decode_us']:8.1f} us   "
        f"gather_unpack k=15 is {fig['gather_unpack_speedup_vs_uint16_decode']:.1f}x faster (target >= 4x)",
        f"  quantize_pack, one row        {fig['quantize_pack_row_us']:8.2f} us   (target <= 2 us; float64 row)",
        f"  authors' quantize, one row    {fig['uint16_quantize_row_us']:8.2f} us",
    ])


ESCAPE_MEAN_BITS = 6.5  # Humanoid-v5 at m = 2, about as a scan chooses it
ESCAPE_ONE_BIT_SHARE = 40 / 348  # constant dimensions (1 bit: the value or the escape)
ESCAPE_MAX_BITS = 15
ESCAPE_SHARE = 0.012  # bench_buffers.py's calibrated Humanoid-v5 buffer: 845,566-881,477 entries, 200,000 x 348 values


def humanoid_like_layout(dim: int, seed: int) -> EscapeLayout:
    """Widths 1..15 with ~40/348 of them 1 and a mean of about 6.5 bits, each range about code 0."""
    rng = np.random.default_rng(seed)
    bits = rng.integers(2, ESCAPE_MAX_BITS, dim)
    bits[rng.permutation(dim)[: round(ESCAPE_ONE_BIT_SHARE * dim)]] = 1
    target = round(ESCAPE_MEAN_BITS * dim)
    while bits.sum() != target:  # nudge random widths until the mean is 6.5 bits
        j = rng.integers(0, dim)
        step = 1 if bits.sum() < target else -1
        if bits[j] > 1 and 2 <= bits[j] + step <= ESCAPE_MAX_BITS:
            bits[j] += step
    return EscapeLayout(-((1 << bits) // 2), bits, decimals=2, clamp=127.0)


def humanoid_like_codes(layout: EscapeLayout, n: int, rng: np.random.Generator,
                        share: float = ESCAPE_SHARE) -> np.ndarray:
    """Paper codes inside each dimension's range, a ``share`` of all values just outside it."""
    span = (1 << layout.bits) - 1  # the in-row values, below the escape
    codes = layout.lo + (rng.random((n, layout.dim)) * span).astype(np.int64)
    outside = rng.random((n, layout.dim)) < share
    return np.where(outside, layout.lo + span + rng.integers(0, 50, (n, layout.dim)), codes).clip(-layout.top,
                                                                                                  layout.top)


def run_escape(n_rows: int, dim: int, batch: int, repeats: int, seed: int,
               layout: "EscapeLayout | None" = None, share: float = ESCAPE_SHARE) -> "dict[str, float]":
    """Time EscapeRows.decode and np.take of the same rows as float32, interleaved, fresh rows every repetition;
    ``layout`` (e.g. a real scan's widths) replaces the Humanoid-like one of ``dim`` dims; a ``share`` of the
    values escaped."""
    rng = np.random.default_rng(seed + 1)
    layout = humanoid_like_layout(dim, seed) if layout is None else layout
    dim = layout.dim
    # the default read path ("escape") and each other one this host has, the path set before the clock starts
    best = _read_path()
    paths = {"escape": best, **{f"escape_{path}": path for path in READ_PATHS if path != best and _has_path(path)}}
    stores = {name: EscapeRows(n_rows, layout) for name in paths}  # each path its own rows: none warms another's
    obs = np.empty((n_rows, dim), np.float32)
    for start in range(0, n_rows, 8192):
        stop = min(start + 8192, n_rows)
        codes = humanoid_like_codes(layout, stop - start, rng, share)
        obs[start:stop] = codes * layout.inv_scale
        for store in stores.values():
            store.put_codes(codes, np.arange(start, stop))
    rows = stores["escape"]
    out, out_take = np.empty((batch, dim), np.float32), np.empty((batch, dim), np.float32)
    names = ["take", *paths]
    draws = rng.integers(0, n_rows, (repeats, batch))
    samples: "dict[str, list[int]]" = {name: [] for name in names}
    try:
        for rep in range(repeats):
            for name in names[rep % len(names):] + names[:rep % len(names)]:
                if name == "take":
                    start = time.perf_counter_ns()
                    np.take(obs, draws[rep], axis=0, out=out_take, mode="clip")
                else:
                    _read_path(paths[name])
                    start = time.perf_counter_ns()
                    stores[name].decode(draws[rep], out)
                samples[name].append(time.perf_counter_ns() - start)
        for name, path in paths.items():  # every path's decode is the float32 data, bit for bit (untimed)
            _read_path(path)
            assert np.array_equal(stores[name].decode(draws[-1], out), obs[draws[-1]])
    finally:
        _read_path(best)
    med = {key: _median_us(values) for key, values in samples.items()}
    row64 = list(obs[:64].astype(np.float64))
    encode_us = _time_rows(lambda i: rows.encode(row64[i & 63][None], i & 63), 2000, 7)
    return {
        "escape_rows": n_rows, "escape_dim": dim, "escape_mean_bits": layout.row_bits / dim,
        "escape_one_bit_dims": int((layout.bits == 1).sum()), "escape_share": rows.live / (n_rows * dim),
        "escape_float32_take_us": med["take"], "escape_decode_us": med["escape"],
        "escape_decode_vs_float32_take": med["escape"] / med["take"], "escape_encode_row_us": encode_us,
        "escape_storage_mib": rows.nbytes / 2**20, "escape_float32_mib": obs.nbytes / 2**20, "escape_path": best,
        **{f"{name}_decode_us": med[name] for name in paths if name != "escape"},
        **{f"{name}_decode_vs_float32_take": med[name] / med["take"] for name in paths if name != "escape"},
    }


def _has_path(path: str, hook: Callable[..., str] = _read_path) -> bool:
    """Whether this host runs read ``path`` of ``hook`` (the escape read's, or gather_unpack's ``_gather_path``;
    either picks the next one down where the host lacks it)."""
    before = hook()
    try:
        return hook(path) == path
    except ValueError:  # a build that has no such read (an older one)
        return False
    finally:
        hook(before)


def escape_report(fig: "dict[str, float]") -> str:
    return "\n".join([
        f"escape-coded rows: {fig['escape_rows']:,} rows x {fig['escape_dim']} dims, mean "
        f"{fig['escape_mean_bits']:.2f} bits, {fig['escape_one_bit_dims']} dims of 1 bit, "
        f"{100 * fig['escape_share']:.3f} % of values escaped",
        f"  storage: float32 {fig['escape_float32_mib']:.1f} MiB, escape-coded (rows + side table) "
        f"{fig['escape_storage_mib']:.1f} MiB",
        f"  float32 np.take into a batch  {fig['escape_float32_take_us']:8.1f} us   (numpy; the same rows)",
        f"  EscapeRows.decode             {fig['escape_decode_us']:8.1f} us   "
        f"{fig['escape_decode_vs_float32_take']:.2f}x the float32 np.take ({fig['escape_path']} read)",
        *(f"{'  EscapeRows.decode, ' + path + ' read':<32}{fig[f'escape_{path}_decode_us']:8.1f} us   "
          f"{fig[f'escape_{path}_decode_vs_float32_take']:.2f}x the float32 np.take"
          for path in READ_PATHS if f"escape_{path}_decode_us" in fig),
        f"  EscapeRows.encode, one row    {fig['escape_encode_row_us']:8.2f} us   (float64 row; pack + side table)",
    ])


def main(argv: "list[str] | None" = None) -> int:
    from planner.cli import Parser  # the project's one-line usage errors (this script only; the core never does)

    parser = Parser(prog="python benchmarks/kernels.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=_positive, default=200_000, help="rows in each buffer (default 200,000)")
    parser.add_argument("--dim", type=_positive, default=348, help="values per row (default 348, Humanoid-v5)")
    parser.add_argument("--batch", type=_positive, default=256, help="rows per sampled batch (default 256)")
    parser.add_argument("--repeats", type=_positive, default=300, help="repetitions, fresh indices each (default 300)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--alone", action="store_true",
                        help="time each method in its own loop instead of interleaving them in one")
    parser.add_argument("--obs-ranges", help="calibrated widths from these observation ranges (planner obs scan) "
                                           "instead of the Humanoid-like ones; values drawn in its ranges")
    parser.add_argument("--escape-share", type=float, default=ESCAPE_SHARE,
                        help=f"share of the escape-coded values outside their range (default {ESCAPE_SHARE})")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args(argv)
    escape_layout = None
    if args.obs_ranges:
        from planner.obs_ranges import load_ranges

        escape_layout = EscapeLayout.from_ranges(load_ranges(args.obs_ranges))
    figures = run(args.rows, args.dim, args.batch, args.repeats, args.seed, args.alone)
    if not 0.0 <= args.escape_share < 1.0:
        parser.error(f"--escape-share: expected a share in [0, 1), got {args.escape_share}")
    figures.update(run_escape(args.rows, args.dim, args.batch, args.repeats, args.seed, escape_layout,
                              args.escape_share))
    try:
        print(json.dumps(figures) if args.json else report(figures) + "\n" + escape_report(figures))
    except BrokenPipeError:  # e.g. piped into head
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
