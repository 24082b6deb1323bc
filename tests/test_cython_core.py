"""The compiled packing kernels against the numpy reference, bit for bit, plus error bounds and policies."""

import importlib.machinery
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import cython_core
from cython_core import CodeLayout, NonFiniteError, PackedRows, gather_unpack, quantize_match, quantize_pack
from cython_core import reference as ref

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_spec(seed: int, bits: int, dim: int, uniform: bool, nonfinite: str = "code") -> CodeLayout:
    """A spec of width ``bits`` over ``dim`` dimensions whose levels fit (per-dimension or uniform)."""
    rng = np.random.default_rng(seed)
    size = 1 if uniform else dim
    scale = np.where(rng.random(size) < 0.5, 10.0 ** rng.integers(0, 4, size), rng.uniform(0.01, 1000.0, size))
    span = rng.integers(1, max(1, 2**bits - 2), size, endpoint=True)  # codes between lo and hi
    lo = rng.uniform(-1000.0, 1000.0, size) * rng.choice([0.0, 1e-3, 1.0], size)
    hi = lo + span / scale
    lo, hi, scale = (np.broadcast_to(a, dim) for a in (lo, hi, scale))
    tight = CodeLayout.per_dim(lo, hi, scale).bits
    code = int(rng.integers(0, 2 ** max(bits, tight)))
    return CodeLayout.per_dim(lo, hi, scale, bits=max(bits, tight), nonfinite=nonfinite, nonfinite_code=code)


def make_values(seed: int, spec: CodeLayout, n: int, nonfinite: bool) -> np.ndarray:
    """In-range values, exact bounds, exact half steps, out-of-range values and (optionally) NaN/inf."""
    rng = np.random.default_rng(seed)
    lo, hi, scale = spec.lo, spec.hi, spec.scale
    width = hi - lo
    kinds = rng.integers(0, 6 if nonfinite else 5, (n, spec.dim))
    x = lo + rng.random((n, spec.dim)) * width  # kind 0: inside the clamp
    x = np.where(kinds == 1, np.where(rng.random((n, spec.dim)) < 0.5, lo, hi), x)
    half = (np.floor(x * scale) + 0.5) / scale
    x = np.where((kinds == 2) & (half >= lo) & (half <= hi), half, x)
    x = np.where(kinds == 3, lo - rng.exponential(1.0, (n, spec.dim)) * width, x)
    x = np.where(kinds == 4, hi + rng.exponential(1.0, (n, spec.dim)) * width, x)
    x = np.where(kinds == 5, rng.choice([np.nan, np.inf, -np.inf], (n, spec.dim)), x)
    return x


specs = st.tuples(st.integers(0, 2**32 - 1), st.integers(1, 32), st.integers(1, 400), st.booleans())
policies = st.sampled_from(["error", "code"])

# (seed, bits, dim, uniform) run on every run, whatever hypothesis draws: the corners k = 1 at D = 1 and k = 32 at
# D = 400; the paper's k = 12 and 15 (the benchmark's unpack and table paths), uniform and per dimension, at D
# around the 8-code groups, at Humanoid's 348 and at 400; and every k from 1 to 32 once.
EDGE_SPECS = ([(1, 1, 1, True), (2, 32, 400, True), (3, 32, 400, False)]
              + [(dim, bits, dim, uniform) for bits in (12, 15) for uniform in (True, False)
                 for dim in (1, 7, 8, 9, 343, 348, 400)]
              + [(bits, bits, 12 * bits + 1, bits % 2 == 0) for bits in range(1, 33)])


def edge_examples(*rests: tuple):
    """``@example(spec_args, *rest)`` for every EDGE_SPECS entry and every ``rest`` in ``rests``."""
    def decorate(test):
        for spec_args in EDGE_SPECS:
            for rest in rests:
                test = example(spec_args, *rest)(test)
        return test
    return decorate


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# -- the compiled extension is what runs ----------------------------------------------------------

def test_public_functions_are_the_compiled_kernels():
    import cython_core._kernels as kernels  # fails if the extension was not built

    assert kernels.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    for name in ("quantize_pack", "gather_unpack", "quantize_pack_counts", "quantize_match"):
        assert getattr(cython_core, name) is getattr(kernels, name)
        assert type(getattr(kernels, name)).__name__ == "cython_function_or_method"


def test_layout_import_does_not_load_the_extension():
    """The planner imports cython_core.layout: that must not need (or load) the compiled kernels."""
    import subprocess
    import sys
    import tempfile

    code = "import sys, cython_core.layout; print('cython_core._kernels' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          cwd=tempfile.gettempdir())
    assert done.stdout.strip() == "False", done.stderr


def test_edge_examples_are_the_widths_and_sizes_they_stand_for():
    """make_spec widens k when the drawn levels do not fit: the fixed examples must not be widened."""
    for seed, bits, dim, uniform in EDGE_SPECS:
        spec = make_spec(seed, bits, dim, uniform)
        assert (spec.bits, spec.dim) == (bits, dim)
        assert bool(np.all(spec.scale == spec.scale[0]) and np.all(spec.lo == spec.lo[0])) == (uniform or dim == 1)


# -- bit-for-bit agreement with the reference -----------------------------------------------------

@PROPERTY
@edge_examples((3, np.float32, True, "code"), (2, np.float64, False, "error"), (2, np.float64, True, "error"))
@given(specs, st.integers(1, 6), st.sampled_from([np.float32, np.float64]), st.booleans(), policies)
def test_kernels_match_reference_bit_for_bit(spec_args, n, dtype, with_nonfinite, policy):
    seed, bits, dim, uniform = spec_args
    spec = make_spec(seed, bits, dim, uniform, policy)
    x = make_values(seed + 1, spec, n, with_nonfinite).astype(dtype)
    rng = np.random.default_rng(seed + 2)
    garbage = rng.integers(0, 2**64, (n + 3, spec.row_words), dtype=np.uint64, endpoint=False)
    rows = rng.permutation(n + 3)[:n]
    bad = np.argwhere(~np.isfinite(x))
    if policy == "error" and bad.size:  # refused by both, naming the count and the first position
        count, (row, col) = len(bad), bad[0]
        message = rf"^{count} non-finite .* x\[{row}, {col}\]; nothing was written"
        for quantize in (cython_core.quantize_pack_counts, ref.quantize_pack):
            untouched = garbage.copy()
            with pytest.raises(NonFiniteError, match=message) as info:
                quantize(x, untouched, rows, spec)
            assert (info.value.count, info.value.row, info.value.dim) == (count, row, col)
            assert same_bits(untouched, garbage)
        return
    got, want = garbage.copy(), garbage.copy()
    counts = cython_core.quantize_pack_counts(x, got, rows, spec)
    assert counts[0] == ref.quantize_pack(x, want, rows, spec)
    assert counts[1] == int(np.count_nonzero(~np.isfinite(x)))
    assert same_bits(got, want)  # whole rows written, padding bits zero, other rows untouched
    indices = rng.integers(0, n + 3, 2 * n + 1)
    for out_dtype in (np.float32, np.float64):
        out, expected = np.empty((indices.size, dim), out_dtype), np.empty((indices.size, dim), out_dtype)
        gather_unpack(got, indices, spec, out)
        ref.gather_unpack(got, indices, spec, expected)
        assert same_bits(out, expected)


@PROPERTY
@edge_examples(())
@given(specs)
def test_reference_layout_is_little_endian_words(spec_args):
    """The reference (packbits) and a direct word-by-word formula agree on where each code lives."""
    seed, bits, dim, _ = spec_args
    codes = np.random.default_rng(seed).integers(0, 2**bits, (2, dim), dtype=np.uint64)
    words = ref.pack_codes(codes, bits, -(-dim * bits // 64))
    for j in range(dim):
        pos = j * bits
        word, shift = divmod(pos, 64)
        value = int(words[0, word]) >> shift
        if shift + bits > 64:
            value |= int(words[0, word + 1]) << (64 - shift)
        assert value & (2**bits - 1) == int(codes[0, j])
    assert np.array_equal(ref.unpack_codes(words, dim, bits), codes)


def test_hand_packed_words():
    spec = CodeLayout.per_dim(np.zeros(3), np.full(3, 2.0**24 - 1), np.ones(3), bits=24)
    storage = np.zeros((1, spec.row_words), np.uint64)
    quantize_pack(np.array([0xABCDEF, 0x123456, 0x789ABC], float), storage, 0, spec)
    # code 2 straddles: its low 16 bits end word 0, its high 8 bits start word 1
    assert storage[0].tolist() == [0x9ABC_123456_ABCDEF, 0x78]
    spec32 = CodeLayout.per_dim(np.zeros(3), np.full(3, 2.0**32 - 1), np.ones(3), bits=32)
    storage = np.zeros((1, 2), np.uint64)
    quantize_pack(np.array([2.0**32 - 1, 1.0, 7.0]), storage, 0, spec32)
    assert storage[0].tolist() == [0x1_FFFFFFFF, 7]
    out = np.empty((1, 3), np.float64)
    gather_unpack(storage, np.array([0]), spec32, out)
    assert out.tolist() == [[2.0**32 - 1, 1.0, 7.0]]


# -- what the codes mean --------------------------------------------------------------------------

@PROPERTY
@edge_examples((3,))
@given(specs, st.integers(1, 4))
def test_error_at_most_half_a_step_inside_the_clamp(spec_args, n):
    seed, bits, dim, uniform = spec_args
    spec = make_spec(seed, bits, dim, uniform, nonfinite="error")
    x = make_values(seed + 1, spec, n, nonfinite=False)
    storage = np.zeros((n, spec.row_words), np.uint64)
    quantize_pack(x, storage, np.arange(n), spec)
    clamped = np.clip(x, spec.lo, spec.hi)
    out64 = np.empty_like(x)
    gather_unpack(storage, np.arange(n), spec, out64)
    magnitude = np.maximum(np.abs(spec.lo), np.abs(spec.hi))
    slack = 8 * np.finfo(np.float64).eps * (magnitude + 1 / spec.scale)  # float64 products, reciprocal
    assert np.all(np.abs(out64 - clamped) <= 0.5 / spec.scale + slack)
    out32 = np.empty(x.shape, np.float32)
    gather_unpack(storage, np.arange(n), spec, out32)
    assert np.all(out32 == out64.astype(np.float32))  # float32 is the float64 value, rounded once


def test_rounds_half_to_even_like_numpy_round():
    spec = CodeLayout.uniform(200, decimals=1, clamp=127.0)
    x = np.concatenate([np.arange(-50, 50) + 0.25, np.arange(-50, 50) + 0.75])  # x * 10 is an exact half
    storage = np.zeros((1, spec.row_words), np.uint64)
    quantize_pack(x, storage, 0, spec)
    out = np.empty((1, 200), np.float64)
    gather_unpack(storage, np.array([0]), spec, out)
    assert np.array_equal(np.rint(out[0] * 10), np.round(x * 10))  # ties to even: 0.25 -> 0.2, 0.75 -> 0.8
    assert out[0, 50] == pytest.approx(0.2) and out[0, 150] == pytest.approx(0.8)


@PROPERTY
@edge_examples((3, "code"), (2, "error"))
@given(specs, st.integers(1, 5), policies)
def test_saturation_is_counted_exactly(spec_args, n, policy):
    seed, bits, dim, uniform = spec_args
    spec = make_spec(seed, bits, dim, uniform, policy)
    x = make_values(seed + 1, spec, n, nonfinite=policy == "code")  # "error" refuses NaN/inf (tested above)
    finite = np.isfinite(x)
    expected = int(np.count_nonzero(finite & ((x < spec.lo) | (x > spec.hi))))
    assert ref.encode_codes(x, spec)[1] == expected
    rows = PackedRows(n, spec)
    assert rows.encode(x, np.arange(n)) == expected
    assert rows.encode(x, np.arange(n)) == expected
    assert rows.saturated == 2 * expected
    assert rows.nonfinite_coded == 2 * int(np.count_nonzero(~finite))


# -- NaN / inf -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nonfinite_raises_names_count_and_first_position_and_writes_nothing(dtype, bad):
    spec = CodeLayout.uniform(5, decimals=2, clamp=127.0)
    x = np.zeros((3, 5), dtype)
    x[1, 3] = x[2, 0] = bad
    storage = np.full((4, spec.row_words), 12345, np.uint64)
    for impl in (cython_core, ref):
        with pytest.raises(NonFiniteError, match=r"2 non-finite .* x\[1, 3\]") as info:
            impl.quantize_pack(x, storage, np.array([0, 1, 2]), spec)
        assert (info.value.count, info.value.row, info.value.dim) == (2, 1, 3)
        assert isinstance(info.value, ValueError)
        assert np.all(storage == 12345)


@PROPERTY
@edge_examples((3, "code"), (2, "error"))
@given(specs, st.integers(1, 5), policies)
def test_match_counts_as_pack_and_holds_only_the_rows_pack_wrote(spec_args, n, policy):
    spec = make_spec(*spec_args, nonfinite=policy)
    x = make_values(spec_args[0], spec, n, nonfinite=policy == "code")
    storage = np.zeros((n + 2, spec.row_words), np.uint64)
    rows = np.arange(1, n + 1)
    counts = cython_core.quantize_pack_counts(x, storage, rows, spec)
    storage.flags.writeable = False  # match writes nothing
    assert cython_core.quantize_match(x, storage, rows, spec) == (*counts, True)
    shifted = cython_core.quantize_match(x, storage, rows - 1, spec)[2]  # row 0 is zeros, the others x's rows
    assert shifted is np.array_equal(storage[rows - 1], storage[rows])
    other = x.copy()
    other[-1, 0] = spec.hi[0] if x[-1, 0] != spec.hi[0] else spec.lo[0]
    same = cython_core.quantize_match(other, storage, rows, spec)[2]
    assert same == np.array_equal(ref.encode_codes(other, spec)[0], ref.encode_codes(x, spec)[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_match_refuses_nonfinite_values_as_pack_does(dtype):
    spec = CodeLayout.uniform(5, decimals=2, clamp=127.0)
    x = np.zeros((2, 5), dtype)
    x[1, 3] = np.nan
    with pytest.raises(NonFiniteError, match=r"1 non-finite .* x\[1, 3\]"):
        quantize_match(x, np.zeros((4, spec.row_words), np.uint64), np.array([0, 1]), spec)


def test_nonfinite_code_policy_stores_the_code_and_does_not_count_saturation():
    spec = CodeLayout.uniform(4, decimals=0, clamp=10.0, nonfinite="code", nonfinite_code=31)
    storage = np.zeros((1, spec.row_words), np.uint64)
    saturated, coded = cython_core.quantize_pack_counts(np.array([np.nan, np.inf, -np.inf, 99.0]), storage, 0, spec)
    assert (saturated, coded) == (1, 3)
    codes = ref.unpack_codes(storage, 4, spec.bits)
    assert codes.tolist() == [[31, 31, 31, 20]]
    assert ref.decode_codes(codes, spec, np.float64).tolist() == [[21.0, 21.0, 21.0, 10.0]]


# -- specs -----------------------------------------------------------------------------------------

def test_uniform_spec_widths_match_the_paper():
    assert CodeLayout.uniform(348, decimals=2, clamp=127.0).bits == 15
    assert CodeLayout.uniform(348, decimals=1, clamp=127.0).bits == 12
    assert CodeLayout.uniform(17, decimals=1, clamp=100.0).bits == 11
    assert CodeLayout.uniform(17, decimals=0, clamp=128.0).levels == 257


@pytest.mark.parametrize("kwargs, message", [
    (dict(lo=[0.0, 1.0], hi=[1.0, 1.0], scale=[1.0, 1.0]), "lo must be < hi"),
    (dict(lo=[0.0], hi=[1.0], scale=[0.0]), "scale must be > 0"),
    (dict(lo=[0.0], hi=[1.0], scale=[1.0], bits=0), "bits must be"),
    (dict(lo=[0.0], hi=[1.0], scale=[1.0], bits=33), "bits must be"),
    (dict(lo=[0.0], hi=[100.0], scale=[1.0], bits=6), "cannot hold the 101 levels"),
    (dict(lo=[0.0], hi=[np.nan], scale=[1.0]), "hi must be finite"),
    (dict(lo=[0.0, 0.0], hi=[1.0], scale=[1.0]), "same length"),
    (dict(lo=[0.0], hi=[1e20], scale=[1.0]), "2\\*\\*51"),
    (dict(lo=[0.0], hi=[1.0], scale=[1.0], nonfinite="zero"), "nonfinite must be"),
    (dict(lo=[0.0], hi=[1.0], scale=[1.0], bits=2, nonfinite="code", nonfinite_code=4), "nonfinite_code"),
])
def test_invalid_specs_raise_one_clear_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CodeLayout.per_dim(**kwargs)


def test_spec_config_and_pickle_round_trip_and_is_immutable():
    import pickle

    spec = make_spec(7, 13, 9, uniform=False)
    assert CodeLayout.from_config(spec.get_config()) == spec
    uniform = CodeLayout.uniform(348, decimals=1, clamp=127.0)
    assert uniform.get_config()["lo"] == -127.0
    assert CodeLayout.from_config(uniform.get_config()) == uniform
    out = np.empty((1, 9), np.float32)
    gather_unpack(np.zeros((1, spec.row_words), np.uint64), np.array([0]), spec, out)  # caches kernel tables
    clone = pickle.loads(pickle.dumps(spec))
    assert clone == spec and hash(clone) == hash(spec)
    with pytest.raises(ValueError):
        spec.lo[0] = 1.0


@pytest.mark.parametrize("dim, decimals", [(348, 2), (348, 1), (17, 1), (376, 2), (1, 0)])
def test_storage_bytes_match_layout_and_planner(dim, decimals):
    from cython_core.layout import packed_row_bytes
    from planner.layouts import packed_field

    spec = CodeLayout.uniform(dim, decimals=decimals, clamp=127.0)
    rows = PackedRows(1000, spec)
    assert rows.nbytes == 1000 * packed_row_bytes(dim, spec.bits) == packed_field("obs", 1000, dim, spec.bits).bytes
    assert rows.padding_bytes == 1000 * spec.padding_bits / 8
    assert rows.storage.dtype == np.uint64 and rows.storage.flags.c_contiguous
    if (dim, decimals) == (348, 2):
        assert (rows.nbytes, spec.padding_bits) == (656_000, 28)


# -- argument checks (both implementations refuse the same way, nothing out of bounds) -----------

@pytest.mark.parametrize("impl", [cython_core, ref], ids=["compiled", "reference"])
def test_bad_arguments_are_refused(impl):
    spec = CodeLayout.uniform(6, decimals=1, clamp=127.0)
    storage = np.zeros((5, spec.row_words), np.uint64)
    x = np.zeros((2, 6))
    with pytest.raises(IndexError, match="rows must be in 0..4, got 5"):
        impl.quantize_pack(x, storage, np.array([0, 5]), spec)
    with pytest.raises(IndexError, match="got -1"):
        impl.quantize_pack(x, storage, np.array([-1, 0]), spec)
    with pytest.raises(ValueError, match="one index per row"):
        impl.quantize_pack(x, storage, np.array([0]), spec)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 6\)"):
        impl.quantize_pack(np.zeros((2, 7)), storage, np.array([0, 1]), spec)
    read_only = storage.copy()
    read_only.flags.writeable = False
    strided = np.zeros((10, spec.row_words), np.uint64)[::2]  # every other row: the right shape, not contiguous
    wide = np.zeros((5, spec.row_words + 1), np.uint64)
    for bad in (storage.view(np.int64), wide, strided, read_only):
        with pytest.raises(ValueError, match="storage must be a writable C-contiguous uint64"):
            impl.quantize_pack(x, bad, np.array([0, 1]), spec)
    out = np.empty((2, 6), np.float32)
    for bad in (wide, strided):
        with pytest.raises(ValueError, match=r"storage must be .* uint64 array of shape \(n_rows, 2\)"):
            impl.gather_unpack(bad, np.array([1, 2]), spec, out)
    assert not strided.base.any() and not wide.any()
    impl.gather_unpack(read_only, np.array([1, 2]), spec, out)  # reading needs no write access
    assert np.all(out == -127.0)  # code 0 is lo
    with pytest.raises(IndexError, match="indices must be in 0..4, got 5"):
        impl.gather_unpack(storage, np.array([1, 5]), spec, out)
    with pytest.raises(ValueError, match="out must be"):
        impl.gather_unpack(storage, np.array([1, 2, 3]), spec, out)
    with pytest.raises(ValueError, match="out must be"):
        impl.gather_unpack(storage, np.array([1, 2]), spec, out.astype(np.int32))
    before = storage.copy()
    for floats in (np.array([0.0, 1.7]), [0, 1.7]):  # floats would truncate silently: 1.7 -> row 1
        with pytest.raises(TypeError, match="rows must be integers, got float64"):
            impl.quantize_pack(x + 1, storage, floats, spec)
        with pytest.raises(TypeError, match="indices must be integers, got float64"):
            impl.gather_unpack(storage, floats, spec, out)
    with pytest.raises(TypeError, match="indices must be integers, got bool"):
        impl.gather_unpack(storage, np.array([True, False]), spec, out)
    assert np.array_equal(storage, before)
    impl.quantize_pack(x, storage, np.array([3, 4], dtype=np.int32), spec)  # any integer dtype is fine


def test_compiled_gather_refuses_an_out_it_cannot_write_in_place():
    """The kernel writes ``out`` through its buffer, so a strided, transposed or read-only ``out`` is refused
    and left as it was. (The numpy reference assigns ``out[...] = ...``: it accepts a strided ``out``.)"""
    spec = CodeLayout.uniform(6, decimals=1, clamp=127.0)
    storage = np.zeros((5, spec.row_words), np.uint64)
    wide = np.full((2, 12), 7.0, np.float32)
    read_only = np.full((2, 6), 7.0, np.float32)
    read_only.flags.writeable = False
    for out in (wide[:, ::2], np.full((6, 2), 7.0, np.float32).T, read_only):
        with pytest.raises(ValueError, match=r"out must be a writable C-contiguous float32 array of shape \(2, 6\)"):
            gather_unpack(storage, np.array([1, 2]), spec, out)
        assert np.all(out == 7.0)


def test_single_row_forms_and_empty_batches():
    spec = CodeLayout.uniform(3, decimals=2, clamp=127.0)
    storage = np.zeros((4, spec.row_words), np.uint64)
    assert quantize_pack(np.array([1.0, 2.0, 300.0], np.float32), storage, 2, spec) == 1
    assert quantize_pack(np.array([1.0, 2.0, 300.0]), storage, [3], spec) == 1
    assert quantize_pack(np.zeros((0, 3)), storage, np.zeros(0, np.int64), spec) == 0
    assert np.array_equal(storage[2], storage[3])
    gather_unpack(storage, np.zeros(0, np.int64), spec, np.empty((0, 3), np.float32))
    assert PackedRows(4, spec).decode([]).shape == (0, 3)


def test_gather_writes_into_a_torch_tensor_without_copy():
    import torch

    spec = CodeLayout.uniform(348, decimals=2, clamp=127.0)
    rows = PackedRows(50, spec)
    x = np.random.default_rng(0).normal(0, 30, (50, 348))
    rows.encode(x, np.arange(50))
    batch = torch.empty((8, 348), dtype=torch.float32)
    indices = np.array([3, 1, 4, 1, 5, 9, 2, 6])
    gather_unpack(rows.storage, indices, spec, batch.numpy())
    assert np.array_equal(batch.numpy(), rows.decode(indices))
    assert np.allclose(batch.numpy(), np.round(x[indices], 2), atol=0.005 + 1e-5)


@pytest.mark.parametrize("bits, uniform", [(15, True), (12, True), (7, False), (32, False)])
def test_big_blocks_release_the_gil_and_still_match_the_reference(bits, uniform):
    """Calls of >= 8192 values take the nogil branch; results stay bit for bit the reference's."""
    spec = make_spec(bits, bits, 348, uniform)
    x = make_values(bits + 1, spec, 40, nonfinite=True)
    for dtype in (np.float32, np.float64):
        got = np.zeros((64, spec.row_words), np.uint64)
        want = got.copy()
        rows = np.random.default_rng(bits).permutation(64)[:40]
        assert quantize_pack(x.astype(dtype), got, rows, spec) == ref.quantize_pack(x.astype(dtype), want, rows, spec)
        assert same_bits(got, want)
        indices = np.random.default_rng(1).integers(0, 64, 300)
        out, expected = np.empty((300, 348), np.float32), np.empty((300, 348), np.float32)
        gather_unpack(got, indices, spec, out)
        ref.gather_unpack(got, indices, spec, expected)
        assert same_bits(out, expected)


def seen_halfway(reset, call, halfway, attempts: int = 50) -> bool:
    """Whether a second Python thread, polling ``halfway()`` (one numpy read of the first and the last value the
    call writes), ever catches ``call()`` with its first value written and its last not yet. While a call holds
    the GIL no other Python code runs, so it never can; a call that releases it is caught unless the OS never
    schedules the poller during the call, hence a few attempts (the first one succeeds in practice)."""
    seen, stop = threading.Event(), threading.Event()

    def poll():
        while not (stop.is_set() or seen.is_set()):
            if halfway():
                seen.set()

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    try:
        for _ in range(attempts):
            reset()  # forward fills: never "first written, last not" on their own
            call()
            if seen.is_set():
                return True
    finally:
        stop.set()
        poller.join()
    return False


def test_big_calls_let_other_python_threads_run_meanwhile():
    spec = CodeLayout.uniform(348, decimals=2, clamp=127.0)
    n = 8192  # ~5 ms per quantize_pack call, rows written in order
    x, rows = np.zeros((n, 348), np.float32), np.arange(n)
    storage = np.empty((n, spec.row_words), np.uint64)
    out = np.empty((n, 348), np.float32)
    blank = np.uint64(2**64 - 1)  # no row of zeros packs to this first word

    def quantize_halfway():
        first, last = storage[[0, -1], 0]
        return first != blank and last == blank

    def gather_halfway():
        first, last = out[[0, -1], [0, -1]]
        return first == 0.0 and np.isnan(last)

    assert seen_halfway(lambda: storage.fill(blank), lambda: quantize_pack(x, storage, rows, spec), quantize_halfway)
    assert seen_halfway(lambda: out.fill(np.nan), lambda: gather_unpack(storage, rows, spec, out), gather_halfway)
    assert not np.isnan(out).any() and np.all(out == 0.0)


def test_non_contiguous_and_other_dtype_inputs_are_converted():
    spec = CodeLayout.uniform(5, decimals=1, clamp=10.0)
    wide = np.arange(30, dtype=np.int32).reshape(3, 10) - 12
    a, b = np.zeros((3, spec.row_words), np.uint64), np.zeros((3, spec.row_words), np.uint64)
    quantize_pack(wide[:, ::2], a, [2, 0, 1], spec)  # strided int32 view
    ref.quantize_pack(np.ascontiguousarray(wide[:, ::2], dtype=np.float64), b, [2, 0, 1], spec)
    assert same_bits(a, b)
    out = np.empty((3, 5), np.float32)
    gather_unpack(a, np.array([0, 1, 2, 2])[::-1][1:], spec, out)  # strided index view: [2, 1, 0]
    assert np.array_equal(out, np.clip(wide[:, ::2], -10, 10)[[0, 2, 1]].astype(np.float32))


@pytest.mark.parametrize("module", ["cython_core", "cython_core.uniform", "cython_core.reference",
                                    "cython_core.storage", "cython_core.layout"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_a_scale_whose_inverse_overflows_is_refused_when_the_spec_is_built():
    with pytest.raises(ValueError, match="finite inverse.*dimension 1"):
        CodeLayout.per_dim(lo=[-1.0, -1.0], hi=[1.0, 1.0], scale=[10.0, 1e-310])


@pytest.mark.parametrize("indices", [np.array([1.0]), [1.7], True, np.array([True])])
def test_packed_rows_decode_refuses_float_and_bool_indices_as_gather_unpack_does(indices):
    rows = PackedRows(4, CodeLayout.uniform(3, decimals=1, clamp=1.0))
    with pytest.raises(TypeError, match="indices must be integers"):
        rows.decode(indices)


@pytest.mark.parametrize("rows, error, message", [
    (True, TypeError, "rows must be integers, got bool"),  # not row 1
    (np.True_, TypeError, "rows must be integers, got bool"),
    ([True], TypeError, "rows must be integers, got bool"),
    (1.0, TypeError, "rows must be integers, got float64"),
    (-1, IndexError, r"rows must be in 0..3, got -1"),
    (4, IndexError, r"rows must be in 0..3, got 4"),
    (2**63, IndexError, "rows must be row numbers, got an integer beyond int64"),
    (2**70, IndexError, "rows must be row numbers, got an integer beyond int64"),
    (np.array([2**64 - 1], dtype=np.uint64), IndexError, "rows must be row numbers, got an integer beyond int64"),
])
def test_every_row_index_path_takes_the_same_integer_check(rows, error, message):
    """A single Python int, a numpy scalar, a list or an array, in the compiled kernel, the reference and
    PackedRows alike: the same refusal, and nothing written."""
    spec = CodeLayout.uniform(3, decimals=1, clamp=1.0)
    for write in (cython_core.quantize_pack, ref.quantize_pack,
                  lambda x, storage, rows, spec: PackedRows(4, spec).encode(x, rows)):
        storage = np.zeros((4, spec.row_words), np.uint64)
        with pytest.raises(error, match=message):
            write(np.ones(3), storage, rows, spec)
        assert not storage.any()
    for read in (cython_core.gather_unpack, ref.gather_unpack):
        with pytest.raises(error, match=message.replace("rows", "indices")):
            read(np.zeros((4, spec.row_words), np.uint64), np.atleast_1d(rows), spec, np.empty((1, 3), np.float32))


def test_a_single_int_row_in_range_is_written_by_both_implementations():
    spec = CodeLayout.uniform(3, decimals=1, clamp=1.0)
    written = []
    for impl in (cython_core, ref):
        storage = np.zeros((4, spec.row_words), np.uint64)
        impl.quantize_pack(np.ones(3), storage, 3, spec)
        written.append(storage)
    assert written[0][3].any() and not written[0][:3].any() and np.array_equal(*written)


@pytest.mark.parametrize("scale", [1e-310, 5e-324, 0.0, -1.0, float("nan"), float("inf")])
def test_scales_that_are_not_finite_positive_with_a_finite_inverse_are_refused(scale):
    with pytest.raises(ValueError, match="scale"):
        CodeLayout.per_dim(lo=[-1.0], hi=[1.0], scale=[scale])
