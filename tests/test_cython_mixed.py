"""Mixed-width rows: the compiled kernels against the numpy reference and the uniform kernels, bit for bit;
the exception store against a dict model; re-packing; refusals."""

import importlib.machinery
import pickle
import platform

import numpy as np
import pytest

import cython_core
from cython_core import (
    EXCEPTION_DTYPE,
    CodeLayout,
    ExceptionStore,
    MixedLayout,
    MixedRows,
    NonFiniteError,
    gather_unpack,
    mixed_codes,
    mixed_match,
    mixed_pack,
    mixed_pack_codes,
    mixed_unpack,
    quantize_pack,
)
from cython_core import mixed_reference as ref

MIXED_NAMES = ("mixed_pack", "mixed_pack_codes", "mixed_unpack", "mixed_codes", "mixed_match")


def random_spec(seed: int, dim: int, decimals: int = 2, clamp: float = 127.0, max_bits: int = 32) -> MixedLayout:
    """Widths 0..max_bits (some 0, some max_bits, the rest random), ranges anywhere on and off the grid."""
    rng = np.random.default_rng(seed)
    top = int(np.rint(clamp * 10.0**decimals))
    bits = rng.integers(0, max_bits + 1, dim)
    bits[rng.random(dim) < 0.15] = 0
    bits[rng.random(dim) < 0.1] = max_bits
    lo = rng.integers(-top - 50, top + 1, dim) - np.where(rng.random(dim) < 0.5, 0, (1 << bits) // 2)
    return MixedLayout(lo, bits, decimals, clamp)


def random_values(seed: int, spec: MixedLayout, n: int) -> np.ndarray:
    """Values inside the rows' ranges, anywhere inside the clamp, beyond the clamp, and on exact half steps."""
    rng = np.random.default_rng(seed)
    hi = np.minimum(spec.hi, spec.top)
    lo = np.maximum(spec.lo, -spec.top)
    kinds = rng.integers(0, 5, (n, spec.dim))
    inside = (lo + rng.random((n, spec.dim)) * np.maximum(hi - lo, 0)) / spec.scale
    anywhere = rng.uniform(-spec.clamp, spec.clamp, (n, spec.dim))
    beyond = np.sign(rng.random((n, spec.dim)) - 0.5) * (spec.clamp + rng.exponential(10.0, (n, spec.dim)))
    half = (np.floor(anywhere * spec.scale) + 0.5) / spec.scale
    x = np.where(kinds == 0, inside, anywhere)
    x = np.where(kinds == 1, np.where(lo <= hi, lo / spec.scale, 0.0), x)  # the range's own bottom
    x = np.where(kinds == 2, beyond, x)
    return np.where(kinds == 3, half, x)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def store_of(n_rows: int, spec: MixedLayout, rows: np.ndarray, entries: np.ndarray) -> ExceptionStore:
    store = ExceptionStore(n_rows, spec.dim)
    store.put(rows, entries)
    return store


# (seed, dim, max_bits): 32-bit codes at every offset, a single dimension, all-0-bit rows, the paper's widths
SPECS = [(1, 1, 32), (2, 7, 32), (3, 64, 32), (4, 200, 32), (5, 348, 15), (6, 33, 1), (7, 9, 0), (8, 1, 0),
         (9, 130, 8), (10, 5, 17)]


def test_public_names_are_the_compiled_kernels():
    import cython_core._mixed as kernels  # fails if the extension was not built

    assert kernels.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    for name in MIXED_NAMES:
        assert getattr(cython_core, name) is getattr(kernels, name)
        assert type(getattr(kernels, name)).__name__ == "cython_function_or_method"
    assert EXCEPTION_DTYPE.itemsize == 16 and EXCEPTION_DTYPE.names == ("row", "dim", "code")
    assert [EXCEPTION_DTYPE.fields[k][1] for k in ("row", "dim", "code")] == [0, 8, 12]


def test_spec_and_store_modules_load_without_the_extension():
    """MixedLayout (what a planner would read) and ExceptionStore import without loading cython_core._mixed."""
    import subprocess
    import sys
    import tempfile

    code = ("import sys, cython_core.mixed, cython_core.exceptions; "
            "cython_core.mixed.MixedLayout([0], [3], 2, 127.0); print('cython_core._mixed' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=tempfile.gettempdir())
    assert done.stdout.strip() == "False", done.stderr


@pytest.fixture(params=[True, "avx2", False], ids=["best", "avx2", "scalar"])
def simd(request):
    """Run with the best decode path the CPU has (AVX-512 VBMI, AVX2), with AVX2 and with the portable one."""
    import cython_core._mixed as kernels

    before = kernels._simd()
    yield kernels._simd(request.param)
    kernels._simd(before)


@pytest.mark.parametrize("seed, dim, max_bits", SPECS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernels_match_reference_bit_for_bit(seed, dim, max_bits, dtype, simd):
    spec = random_spec(seed, dim, max_bits=max_bits)
    if max_bits == 0:
        assert spec.row_words == 0
    n_rows, n = 40, 25
    rng = np.random.default_rng(seed)
    x = random_values(seed, spec, n).astype(dtype)
    rows = rng.permutation(n_rows)[:n]
    garbage = rng.integers(0, 2**63, (n_rows, spec.row_words), dtype=np.uint64)  # rows not written must stay
    got_storage, want_storage = garbage.copy(), garbage.copy()
    got_sat, got_entries = mixed_pack(x, got_storage, rows, spec)
    want_sat, want_entries = ref.mixed_pack(x, want_storage, rows, spec)
    assert got_sat == want_sat > 0
    assert same_bits(got_entries, want_entries) and same_bits(got_storage, want_storage)
    codes, _ = ref.paper_codes(x, spec)
    assert len(got_entries) == np.count_nonzero((codes < spec.lo) | (codes > spec.hi))
    if max_bits < 15:
        assert len(got_entries) > 0
    assert same_bits(mixed_pack_codes(codes, got_storage, rows, spec), want_entries)
    assert same_bits(got_storage, want_storage)
    store = store_of(n_rows, spec, rows, got_entries)
    indices = rng.integers(0, n_rows, 60)
    for out_dtype in (np.float32, np.float64):
        got, want = np.empty((60, dim), out_dtype), np.empty((60, dim), out_dtype)
        mixed_unpack(got_storage, indices, spec, store.at, store.entries, got)
        ref.mixed_unpack(want_storage, indices, spec, store.at, store.entries, want)
        assert same_bits(got, want)
    got_codes = mixed_codes(got_storage, indices, spec, store.at, store.entries)
    assert same_bits(got_codes, ref.mixed_codes(want_storage, indices, spec, store.at, store.entries))
    written = np.argsort(rows)  # storage row -> position in x
    back = mixed_codes(got_storage, np.sort(rows), spec, store.at, store.entries)
    assert np.array_equal(back, codes[written])  # every code comes back, in the row or as an exception


def cpu_flags() -> "set[str] | None":
    """The x86 CPU's flags from /proc/cpuinfo; None elsewhere (an aarch64 board lists "Features", and an aarch64
    process emulated by qemu-user reads the x86 host's flags, which its build cannot use)."""
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        with open("/proc/cpuinfo") as f:
            return set(next(line for line in f if line.startswith("flags")).split(":")[1].split())
    except (OSError, StopIteration):
        return None


def test_the_best_decode_path_is_the_widest_the_cpu_has():
    import cython_core._mixed as kernels

    before = kernels._simd()
    try:
        best = kernels._simd(True)
        flags = cpu_flags()
        if platform.machine() not in ("x86_64", "AMD64"):
            assert best == "scalar"  # the AVX2 and VBMI paths are compiled for x86-64 only
        elif flags is not None:
            vbmi = {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512vbmi"} <= flags
            assert best == ("avx512vbmi" if vbmi else "avx2" if "avx2" in flags else "scalar")
        assert kernels._simd(False) == "scalar" and kernels._simd("avx2") in ("avx2", "scalar")
        with pytest.raises(ValueError, match="enabled must be"):
            kernels._simd("sse")
    finally:
        kernels._simd(before)


# (seed, dim, max_bits): every group vectorizable (<= 25 bits), groups with 26..32-bit dims left to the scalar
# decode, a partial last group, narrow rows, all-0-bit rows
PATH_SPECS = [(20, 348, 25), (21, 348, 32), (22, 37, 25), (23, 17, 7), (24, 5, 0), (25, 200, 32), (26, 64, 1),
              (27, 130, 26), (28, 1, 25), (29, 16, 25)]


@pytest.mark.parametrize("seed, dim, max_bits", PATH_SPECS)
def test_every_decode_path_gives_the_same_bits_on_any_row(seed, dim, max_bits):
    """Random row words (every code value, at every bit offset) and random exceptions: each path the CPU has,
    float32 and float64, against the scalar path and the numpy reference."""
    import cython_core._mixed as kernels

    spec = random_spec(seed, dim, max_bits=max_bits)
    rng = np.random.default_rng(seed)
    n_rows = 50
    storage = rng.integers(0, 2**64, (n_rows, spec.row_words), dtype=np.uint64)
    rows = rng.permutation(n_rows)[:10]
    entries = np.zeros(20, EXCEPTION_DTYPE)
    entries["row"], entries["dim"] = np.repeat(rows, 2), rng.integers(0, dim, 20)
    entries["code"] = rng.integers(-spec.top, spec.top + 1, 20)
    store = store_of(n_rows, spec, rows, entries)
    indices = rng.integers(0, n_rows, 80)
    before = kernels._simd()
    try:
        for out_dtype in (np.float32, np.float64):
            want = np.empty((80, dim), out_dtype)
            ref.mixed_unpack(storage, indices, spec, store.at, store.entries, want)
            for path in ("scalar", "avx2", "avx512vbmi"):
                kernels._simd(path)
                got = np.full((80, dim), np.nan, out_dtype)
                mixed_unpack(storage, indices, spec, store.at, store.entries, got)
                assert same_bits(got, want), kernels._simd()
    finally:
        kernels._simd(before)


def test_decode_reads_nothing_past_the_storage():
    """Storage ending at a page followed by an inaccessible one: every path decodes its last rows (a read past
    them would crash the process)."""
    import ctypes
    import mmap

    import cython_core._mixed as kernels

    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    area = mmap.mmap(-1, 2 * page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(area))
    assert libc.mprotect(ctypes.c_void_p(base + page), ctypes.c_size_t(page), 0) == 0  # PROT_NONE
    before = kernels._simd()
    try:
        for seed, dim, max_bits in [(30, 348, 25), (31, 9, 3), (32, 40, 25), (33, 21, 16)]:
            spec = random_spec(seed, dim, max_bits=max_bits)
            n_rows = 3
            storage = np.frombuffer(area, np.uint64, n_rows * spec.row_words, page - n_rows * spec.row_bytes)
            storage = storage.reshape(n_rows, spec.row_words)
            storage[:] = np.random.default_rng(seed).integers(0, 2**64, storage.shape, dtype=np.uint64)
            store = ExceptionStore(n_rows, dim)
            want = np.empty((2, dim), np.float32)
            ref.mixed_unpack(storage, np.array([2, 1]), spec, store.at, store.entries, want)
            for path in ("scalar", "avx2", "avx512vbmi"):
                kernels._simd(path)
                got = np.empty((2, dim), np.float32)
                mixed_unpack(storage, np.array([2, 1]), spec, store.at, store.entries, got)
                assert same_bits(got, want)
            del storage
    finally:
        kernels._simd(before)


def test_hand_packed_row_straddles_words():
    """Widths 30, 0, 32, 5: the 32-bit code starts at bit 30 and straddles words 0 and 1."""
    spec = MixedLayout([0, 7, -5, 0], [30, 0, 32, 5], decimals=0, clamp=1000.0)
    assert (spec.row_bits, spec.row_words, spec.offsets.tolist()) == (67, 2, [0, 30, 30, 62])
    storage = np.zeros((1, 2), np.uint64)
    entries = mixed_pack_codes(np.array([[3, 7, 1000, 31]]), storage, [0], spec)
    assert len(entries) == 0
    stored = 3 | (1005 << 30) | (31 << 62)
    assert storage[0].tolist() == [stored & (2**64 - 1), stored >> 64]
    entries = mixed_pack_codes(np.array([[-1, 8, 1000, 32]]), storage, [0], spec)
    assert entries.tolist() == [(0, 0, -1), (0, 1, 8), (0, 3, 32)]
    assert storage[0].tolist() == [1005 << 30, 0]  # the exceptions' slots hold 0


@pytest.mark.parametrize("decimals, clamp", [(2, 127.0), (1, 127.0), (0, 5.0), (3, 10.0), (2, 0.5)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decode_equals_the_uniform_kernels_bit_for_bit(decimals, clamp, dtype, simd):
    dim, n = 348, 300
    spec = random_spec(decimals, dim, decimals, clamp, max_bits=12)
    rng = np.random.default_rng(decimals)
    x = random_values(7, spec, n)
    x[rng.random(x.shape) < 0.01] *= 1000.0  # outliers far beyond the clamp
    x = x.astype(dtype)
    rows = MixedRows(n, spec)
    rows.encode(x, np.arange(n))
    uniform = CodeLayout.uniform(dim, decimals=decimals, clamp=clamp)
    storage = np.zeros(uniform.words(n), np.uint64)
    saturated = quantize_pack(x, storage, np.arange(n), uniform)
    assert rows.saturated == saturated > 0 and rows.store.live > 0
    idx = rng.integers(0, n, 500)
    for out_dtype in (np.float32, np.float64):
        want = np.empty((500, dim), out_dtype)
        gather_unpack(storage, idx, uniform, want)
        assert same_bits(rows.decode(idx, out=np.empty((500, dim), out_dtype)), want)


def test_rows_count_their_bytes_and_reserve_exception_room():
    spec = random_spec(2, 30, max_bits=9)
    rows = MixedRows(100, spec, exception_capacity=64)
    assert rows.store.capacity == 64 and rows.n_rows == 100
    assert rows.nbytes == 100 * spec.row_bytes + 100 * 4 + 64 * 16


def test_a_uniform_mixed_spec_never_needs_exceptions():
    spec = MixedLayout.uniform(10, decimals=2, clamp=127.0)
    assert spec.bits.tolist() == [15] * 10 and spec.lo[0] == -12700 and spec.row_words == 3
    rows = MixedRows(5, spec)
    rows.encode(random_values(0, spec, 5), np.arange(5))
    assert rows.store.live == 0 and rows.store.capacity == 0


# -- the exception store -----------------------------------------------------------------------------

def entries_for(rng: np.random.Generator, rows: np.ndarray, dim: int) -> "tuple[np.ndarray, dict]":
    """Random entries for some of ``rows`` (grouped by row, distinct dims in a row) and the model's view."""
    model, chunks = {}, []
    for r in rows:
        k = int(rng.integers(0, 4)) if rng.random() < 0.5 else 0
        dims = np.sort(rng.choice(dim, size=min(k, dim), replace=False))
        e = np.zeros(len(dims), EXCEPTION_DTYPE)
        e["row"], e["dim"], e["code"] = r, dims, rng.integers(-2**31, 2**31, len(dims))
        model[int(r)] = [(int(d), int(c)) for d, c in zip(e["dim"], e["code"])]
        chunks.append(e)
    return np.concatenate(chunks), model


@pytest.mark.parametrize("seed", range(6))
def test_store_keeps_every_rows_entries_through_overwrites_compaction_and_growth(seed):
    rng = np.random.default_rng(seed)
    n_rows, dim = 50, 6
    store = ExceptionStore(n_rows, dim, capacity=int(rng.integers(0, 8)))
    model = {r: [] for r in range(n_rows)}
    put_dims = np.zeros(dim, np.int64)
    grew = compacted = 0
    for step in range(300):
        rows = rng.permutation(n_rows)[: int(rng.integers(0, 9))].astype(np.int64)
        entries, new = entries_for(rng, rows, dim) if rows.size else (np.zeros(0, EXCEPTION_DTYPE), {})
        capacity, used = store.capacity, store.used
        store.put(rows, entries)
        grew += store.capacity > capacity
        compacted += store.used < used + len(entries)
        model.update(new)
        put_dims += np.bincount(entries["dim"], minlength=dim)
        live = sum(len(v) for v in model.values())
        assert store.live == live and store.live_bytes == 16 * live and store.used <= store.capacity
        assert np.all(store.table["row"][store.used:] == -1)  # free slots never match a row
        assert store.capacity <= max(2 * live, 8, capacity)  # grows only as the live entries need
        if step % 10 == 0 or step == 299:
            everything = np.arange(n_rows)
            taken = store.take(everything)
            want = [(r, d, c) for r in range(n_rows) for d, c in model[r]]
            assert taken.tolist() == want
            assert np.array_equal(store.at >= 0, np.array([bool(model[r]) for r in range(n_rows)]))
            sample = rng.integers(0, n_rows, 7)
            assert store.take(sample).tolist() == [(i, d, c) for i, r in enumerate(sample) for d, c in model[r]]
    assert grew > 0 and compacted > 0
    assert np.array_equal(store.per_dim, put_dims)
    assert store.nbytes == n_rows * 4 + store.capacity * 16
    store.clear()
    assert store.live == 0 and len(store.take(np.arange(n_rows))) == 0 and np.all(store.at == -1)
    assert np.all(store.table["row"] == -1) and store.entries.size == 0


@pytest.mark.parametrize("seed, dim, max_bits", SPECS)
def test_match_encodes_as_pack_and_holds_exactly_when_the_rows_keep_these_codes(seed, dim, max_bits):
    spec = random_spec(seed, dim, max_bits=max_bits)
    rng = np.random.default_rng(seed)
    rows = MixedRows(12, spec)
    values = random_values(seed, spec, 40)
    for start in range(0, 40, 4):  # rows overwritten again and again: dead entries, runs moved by compaction
        rows.encode(values[start:start + 4], rng.permutation(12)[:4])
    outcomes = set()
    for trial in range(30):
        idx = rng.permutation(12)[:int(rng.integers(1, 4))].astype(np.int64)
        x = rows.decode(idx, np.empty((idx.size, dim)))  # the rows' own values ...
        if trial % 2:
            x[-1] = random_values(seed + trial, spec, 1)[0]  # ... or one row replaced
        words = np.zeros((idx.size, spec.row_words), np.uint64)
        want = mixed_pack(x, words, np.arange(idx.size), spec)
        saturated, entries, held = mixed_match(x, rows.storage, idx, spec, rows.store.at, rows.store.entries)
        assert saturated == want[0] and entries.tolist() == want[1].tolist()
        fresh = MixedRows(idx.size, spec)
        fresh.encode(x, np.arange(idx.size))
        assert held is np.array_equal(rows.codes(idx), fresh.codes(np.arange(idx.size)))  # codes equal, nothing else
        outcomes.add(held)
    assert outcomes == {True, False}
    with pytest.raises(NonFiniteError):
        mixed_match(np.full((1, dim), np.nan), rows.storage, np.array([0]), spec, rows.store.at, rows.store.entries)


def test_store_refuses_entries_it_cannot_keep_consistent():
    store = ExceptionStore(5, 3)
    e = np.array([(1, 0, 5), (2, 1, 6), (1, 2, 7)], dtype=EXCEPTION_DTYPE)
    with pytest.raises(ValueError, match="grouped by row"):
        store.put(np.array([1, 2]), e)
    with pytest.raises(ValueError, match="entries must belong to rows being written; row 2"):
        store.put(np.array([1]), e[:2])
    with pytest.raises(ValueError, match="rows must be distinct"):
        store.put(np.array([1, 1]), e[:1])
    with pytest.raises(ValueError, match="dim in 0..2"):
        store.put(np.array([1]), np.array([(1, 3, 0)], dtype=EXCEPTION_DTYPE))
    with pytest.raises(ValueError, match="EXCEPTION_DTYPE"):
        store.put(np.array([1]), np.zeros(1, [("row", "<i8")]))
    with pytest.raises(IndexError, match="rows must be in 0..4, got 5"):
        store.put(np.array([5]), np.array([(5, 0, 0)], dtype=EXCEPTION_DTYPE))
    assert store.live == 0 and store.rows_put == 0 and np.all(store.at == -1)
    store.put(np.array([3, 1]), np.array([(3, 0, 9), (1, 1, 8)], dtype=EXCEPTION_DTYPE))
    at, kept = store.at.copy(), store.take(np.arange(5))
    for rows, entries in ((np.array([1, 2]), e), (np.array([3, 4, 3]), e[:0]), (np.array([3]), e[:1])):
        with pytest.raises(ValueError):  # refused with nothing changed: the rows keep their entries
            store.put(rows, entries)
        assert np.array_equal(store.at, at) and same_bits(store.take(np.arange(5)), kept)
    for kwargs, name in (({"n_rows": -1, "dim": 3}, "n_rows"), ({"n_rows": 1, "dim": 0}, "dim"),
                         ({"n_rows": 1, "dim": 3, "capacity": 1.5}, "capacity")):
        with pytest.raises(ValueError, match=name):
            ExceptionStore(**kwargs)


def test_the_no_exception_put_is_cheap():
    store = ExceptionStore(200_000, 348, capacity=1024)
    store.put(np.array([5]), np.array([(5, 1, 1)], dtype=EXCEPTION_DTYPE))
    rows, empty = np.arange(16, dtype=np.int64) + 100, np.zeros(0, EXCEPTION_DTYPE)
    one = np.array([(107, 3, 7)], dtype=EXCEPTION_DTYPE)
    for entries in (empty, one):
        best = min(_timed(lambda: store.put(rows, entries)) for _ in range(200))
        assert best < 10e-6, best  # ~1-2 us checked, ~0.5-1.3 us trusted; generous for a shared machine
    assert store.rows_put == 1 + 400 * 16 and store.live == 2


def _timed(fn) -> float:
    import time

    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# -- re-packing, the spec --------------------------------------------------------------------------

@pytest.mark.parametrize("seed", range(4))
def test_repack_keeps_every_code(seed):
    rng = np.random.default_rng(seed)
    spec = random_spec(seed, 40, max_bits=6)
    rows = MixedRows(300, spec)
    written = rng.permutation(300)[:250]
    for chunk in np.array_split(written, 9):
        rows.encode(random_values(int(chunk[0]), spec, chunk.size), chunk)
    before = rows.codes(np.arange(300))
    live = rows.store.live
    assert live > 0
    narrower = random_spec(seed + 100, 40, max_bits=3)
    rows.repack(narrower)
    assert rows.spec == narrower and np.array_equal(rows.codes(np.arange(300)), before)
    wider = narrower.widen(before.min(axis=0), before.max(axis=0))
    assert np.all(wider.lo <= before.min(axis=0)) and np.all(wider.hi >= before.max(axis=0))
    rows.repack(wider)
    assert np.array_equal(rows.codes(np.arange(300)), before)
    assert rows.store.live == 0 and rows.store.rows_put == 0  # every code now sits in its row
    assert rows.nbytes == rows.storage.nbytes + rows.store.nbytes


def test_widen_covers_the_new_codes_and_keeps_dimensions_without_data():
    spec = MixedLayout([0, -10, 5], [3, 0, 2], decimals=1, clamp=100.0)
    wide = spec.widen([-4, 1, 9], [2, 0, 100])  # dim 1: lo > hi, no data
    assert wide.lo.tolist() == [-4, -10, 5] and wide.hi.tolist() >= [7, -10, 100]
    assert wide.bits.tolist() == [(7 + 4).bit_length(), 0, (100 - 5).bit_length()]
    assert spec.widen(spec.lo, spec.hi) == spec
    with pytest.raises(ValueError, match="codes_lo and codes_hi"):
        spec.widen([0, 0], [1, 1])


def test_spec_config_pickle_equality_and_derived_sizes():
    spec = random_spec(3, 50)
    assert MixedLayout.from_config(spec.get_config()) == spec and hash(MixedLayout.from_config(spec.get_config())) == \
        hash(spec)
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and "_kernel_tables" not in again.__dict__
    assert spec != MixedLayout(spec.lo, spec.bits, 3, spec.clamp)
    assert spec.row_bits == int(spec.bits.sum()) and spec.row_words == -(-spec.row_bits // 64)
    assert spec.row_bytes == 8 * spec.row_words and spec.offsets.tolist() == np.cumsum([0, *spec.bits[:-1]]).tolist()
    assert spec.scale == 100.0 and spec.inv_scale == 1.0 / 100.0
    with pytest.raises(ValueError):
        spec.lo[0] = 1  # read-only


def test_spec_from_a_scan_holds_its_ranges():
    from planner.obs_ranges import choose_ranges

    rng = np.random.default_rng(0)
    x = np.stack([rng.normal(0, 1, 3000), np.full(3000, 0.5), rng.normal(0, 3, 3000)], axis=1)
    x[::500, 2] = 120.0
    scan = choose_ranges(x, decimals=2)
    spec = MixedLayout.from_ranges(scan)
    assert spec.bits.tolist() == [d.bits for d in scan.dims]  # the legacy layout (files before format 5)
    rows = MixedRows(3000, spec)
    rows.encode(x, np.arange(3000))
    assert np.array_equal(rows.codes(np.arange(3000)), np.rint(x * 100).astype(np.int64))
    # a row holds lo..lo + 2**bits - 1, at least the scan's lo..hi: no more exceptions than the scan counted
    assert np.all(rows.store.per_dim <= np.rint([d.outside * 3000 for d in scan.dims]))
    assert rows.store.per_dim.sum() > 0 and rows.store.rows_put == 3000


@pytest.mark.parametrize("kwargs, message", [
    ({"lo": [0, 1], "bits": [3]}, "lo and bits must have the same length"),
    ({"lo": [0], "bits": [33]}, "bits must be in 0..32"),
    ({"lo": [0], "bits": [-1]}, "bits must be in 0..32"),
    ({"lo": [0.5], "bits": [3]}, "lo must hold whole numbers"),
    ({"lo": [2**41], "bits": [3]}, "lo must be within"),
    ({"lo": [], "bits": []}, "lo must be a non-empty 1-D array"),
    ({"decimals": 10}, "decimals must be a whole number in 0..9"),
    ({"decimals": 1.0}, "decimals must be"),
    ({"clamp": 0.0}, "clamp must be > 0"),
    ({"clamp": float("nan")}, "clamp must be > 0"),
    ({"clamp": 3e7}, r"clamp \* 10\*\*decimals < 2\*\*31"),
    ({"clamp": "1"}, "clamp must be a number"),
])
def test_invalid_specs_raise_one_clear_value_error(kwargs, message):
    args = {"lo": [0], "bits": [3], "decimals": 2, "clamp": 127.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        MixedLayout(**args)


# -- argument checks (both implementations refuse the same way, nothing written) --------------------

@pytest.mark.parametrize("impl", [cython_core, ref], ids=["compiled", "reference"])
def test_bad_arguments_are_refused(impl):
    spec = MixedLayout([0, -5, 3], [4, 0, 9], decimals=1, clamp=127.0)
    storage = np.zeros((5, 1), np.uint64)
    x = np.zeros((2, 3))
    with pytest.raises(IndexError, match="rows must be in 0..4, got 5"):
        impl.mixed_pack(x, storage, np.array([0, 5]), spec)
    with pytest.raises(ValueError, match="rows must be distinct"):
        impl.mixed_pack(x, storage, np.array([3, 3]), spec)
    with pytest.raises(ValueError, match="rows must be distinct"):
        impl.mixed_pack(np.zeros((40, 3)), np.zeros((50, 1), np.uint64), np.r_[np.arange(39), 0], spec)
    with pytest.raises(ValueError, match="one index per row"):
        impl.mixed_pack(x, storage, np.array([0]), spec)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 3\)"):
        impl.mixed_pack(np.zeros((2, 4)), storage, np.array([0, 1]), spec)
    with pytest.raises(TypeError, match="rows must be integers"):
        impl.mixed_pack(x, storage, np.array([0.0, 1.0]), spec)
    with pytest.raises(TypeError, match="spec must be a MixedLayout"):
        impl.mixed_pack(x, storage, np.array([0, 1]), CodeLayout.uniform(3, 1, 127.0))
    read_only = storage.copy()
    read_only.flags.writeable = False
    for bad in (storage.view(np.int64), np.zeros((5, 2), np.uint64), np.zeros((10, 1), np.uint64)[::2], read_only):
        with pytest.raises(ValueError, match=r"storage must be a writable C-contiguous uint64 array of shape"):
            impl.mixed_pack(x, bad, np.array([0, 1]), spec)
    nan = x.copy()
    nan[1, 2] = np.nan
    with pytest.raises(NonFiniteError, match=r"x\[1, 2\]"):
        impl.mixed_pack(nan, storage, np.array([0, 1]), spec)
    with pytest.raises(ValueError, match=r"codes must be paper codes in -1270..1270; codes\[1, 0\] = 1271"):
        impl.mixed_pack_codes(np.array([[0, 0, 0], [1271, 0, 0]]), storage, np.array([0, 1]), spec)
    with pytest.raises(ValueError, match="codes must be integers"):
        impl.mixed_pack_codes(np.zeros((2, 3)), storage, np.array([0, 1]), spec)
    assert not storage.any()
    at, table = np.full(5, -1, np.int32), np.zeros(0, EXCEPTION_DTYPE)
    out = np.empty((2, 3), np.float32)
    with pytest.raises(IndexError, match="indices must be in 0..4, got 5"):
        impl.mixed_unpack(storage, np.array([1, 5]), spec, at, table, out)
    with pytest.raises(ValueError, match=r"at must be a C-contiguous int32 array of shape \(5,\)"):
        impl.mixed_unpack(storage, np.array([1, 2]), spec, at.astype(np.int64), table, out)
    with pytest.raises(ValueError, match=r"at must be"):
        impl.mixed_codes(storage, np.array([1, 2]), spec, at[:4], table)
    with pytest.raises(ValueError, match="table must be a C-contiguous 1-D EXCEPTION_DTYPE array"):
        impl.mixed_codes(storage, np.array([1, 2]), spec, at, np.zeros(3, np.int64))
    for bad_out in (out[:1], out.astype(np.int32), np.empty((2, 4), np.float32)):
        with pytest.raises(ValueError, match="out must be"):
            impl.mixed_unpack(storage, np.array([1, 2]), spec, at, table, bad_out)
    impl.mixed_unpack(read_only, np.array([1, 2]), spec, at, table, out)  # reading needs no write access
    assert out.tolist() == [[0.0, -0.5, 0.30000001192092896]] * 2


def test_compiled_unpack_refuses_a_table_that_does_not_fit_at():
    spec = MixedLayout([0, 0], [4, 4], decimals=0, clamp=100.0)
    storage = np.zeros((3, 1), np.uint64)
    out = np.empty((1, 2), np.float32)
    for unpack in (mixed_unpack, ref.mixed_unpack):
        with pytest.raises(ValueError, match="at points past the end of table"):
            unpack(storage, [1], spec, np.array([-1, 4, -1], np.int32), np.zeros(2, EXCEPTION_DTYPE), out)
    with pytest.raises(ValueError, match="dim is not in 0..1"):
        mixed_unpack(storage, [1], spec, np.array([-1, 0, -1], np.int32),
                     np.array([(1, 2, 5)], EXCEPTION_DTYPE), out)


@pytest.mark.parametrize("out_dtype", [np.float32, np.float64])
def test_decoding_walks_only_the_entries_in_use(simd, out_dtype):
    """Free table slots made to continue the last row's run (as a zero-filled table continued row 0's): decode,
    codes and repack read the store's entries in use only, on every decode path and in the reference."""
    spec = random_spec(12, 9, max_bits=6)
    rows = MixedRows(6, spec, exception_capacity=256)
    rows.encode(random_values(12, spec, 6), np.arange(6))
    everything = np.arange(6)
    want_codes = rows.codes(everything)
    want = rows.decode(everything, np.empty((6, 9), out_dtype))
    store = rows.store
    assert 0 < store.used < store.capacity and store.entries.size == store.used
    free = store.table[store.used:]
    free["row"] = store.entries["row"][-1]
    free["dim"] = np.random.default_rng(0).integers(0, 9, free.size)
    free["code"] = 12345
    assert same_bits(rows.decode(everything, np.empty((6, 9), out_dtype)), want)
    assert same_bits(rows.codes(everything), want_codes)
    assert same_bits(ref.mixed_codes(rows.storage, everything, spec, store.at, store.entries), want_codes)
    rows.repack(spec.widen(want_codes.min(axis=0), want_codes.max(axis=0)))
    assert same_bits(rows.codes(everything), want_codes) and rows.store.live == 0


def test_big_calls_take_the_gil_free_path_and_still_match_the_reference():
    """100 x 348 values: past the size from which the kernels run without the GIL."""
    spec = random_spec(11, 348, max_bits=15)
    x = random_values(11, spec, 100)
    rows = np.arange(100)[::-1].copy()
    got, want = np.zeros((100, spec.row_words), np.uint64), np.zeros((100, spec.row_words), np.uint64)
    got_entries = mixed_pack(x, got, rows, spec)[1]
    assert same_bits(got_entries, ref.mixed_pack(x, want, rows, spec)[1]) and same_bits(got, want)
    store = store_of(100, spec, rows, got_entries)
    assert np.array_equal(mixed_codes(got, np.arange(100), spec, store.at, store.entries),
                          ref.mixed_codes(want, np.arange(100), spec, store.at, store.entries))


def test_mixed_rows_single_row_forms_and_empty_batches():
    spec = random_spec(5, 12, max_bits=10)
    rows = MixedRows(4, spec)
    x = random_values(1, spec, 1)
    rows.encode(x[0], 2)
    rows.encode(np.zeros((0, 12)), [])
    assert np.array_equal(rows.codes([2]), ref.paper_codes(x, spec)[0])
    assert rows.decode([]).shape == (0, 12) and rows.codes([]).shape == (0, 12)
    assert rows.store.rows_put == 1


def test_new_modules_are_collected_for_doctests():
    """tests/test_doctests.py runs every module pkgutil finds in cython_core: the new ones are among them."""
    import pkgutil

    found = {info.name for info in pkgutil.iter_modules(cython_core.__path__)}
    assert {"mixed", "exceptions", "mixed_reference", "_mixed"} <= found
