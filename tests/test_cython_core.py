"""The compiled packing kernels against the numpy reference, bit for bit, plus error bounds and policies.

Rows lie at bit stride in one 1-D stream of uint64 words: row r at bits [r x row_bits, (r + 1) x row_bits) of the
little-endian stream, plus one spare word (``spec.words(n_rows)``). A write keeps every other bit of the stream,
the neighbouring rows' bits in the words it shares with them included: the tests fill the stream with random
garbage and check every bit outside the written rows."""

import importlib.machinery
import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import cython_core
from cython_core import CodeLayout, NonFiniteError, PackedRows, gather_unpack, quantize_match, quantize_pack
from cython_core import reference as ref
from cython_core.layout import words_for

PROPERTY = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
STORAGE_MESSAGE = "storage must be a writable C-contiguous 1-D uint64 array of at least one word"


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


def code_spec(dim: int, bits: int) -> CodeLayout:
    """A spec whose codes are every value 0..2**bits - 1 (lo 0, scale 1)."""
    return CodeLayout.per_dim(np.zeros(dim), np.full(dim, 2.0**bits - 1), np.ones(dim), bits=bits)


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


def garbage_words(rng: np.random.Generator, n_words: int) -> np.ndarray:
    """A stream of ``n_words`` random words (every bit 0 or 1 at random)."""
    return rng.integers(0, 2**64, n_words, dtype=np.uint64, endpoint=False)


def held_rows(storage: np.ndarray, spec: CodeLayout) -> int:
    """The rows a stream holds, as the kernels count them: its bits but the spare word's, over row_bits."""
    return (storage.size - 1) * 64 // spec.row_bits


def stream_bits(storage: np.ndarray) -> np.ndarray:
    """Bit i of the little-endian stream at [i]."""
    return np.unpackbits(storage.view(np.uint8), bitorder="little").astype(bool)


def rows_mask(n_words: int, rows, row_bits: int) -> np.ndarray:
    """True on the stream's bits of rows ``rows`` (row r: bits [r x row_bits, (r + 1) x row_bits))."""
    mask = np.zeros(n_words * 64, bool)
    for r in np.atleast_1d(rows):
        mask[int(r) * row_bits:(int(r) + 1) * row_bits] = True
    return mask


def assert_only_rows_changed(before: np.ndarray, after: np.ndarray, rows, spec: CodeLayout) -> None:
    """Every bit of ``after`` outside rows ``rows`` is ``before``'s: the other rows, the bits of the neighbouring
    rows in the words the written rows share with them, the last word's unused bits and the spare word."""
    keep = ~rows_mask(before.size, rows, spec.row_bits)
    changed = np.flatnonzero(stream_bits(before)[keep] != stream_bits(after)[keep])
    assert changed.size == 0, f"bit {np.flatnonzero(keep)[changed[0]]} outside the written rows changed"


def python_codes(storage: np.ndarray, row: int, spec: CodeLayout) -> "list[int]":
    """The codes of row ``row``, word by word with Python ints: code j at bit row x row_bits + j x bits."""
    codes = []
    for j in range(spec.dim):
        word, shift = divmod(row * spec.row_bits + j * spec.bits, 64)
        value = int(storage[word]) >> shift
        if shift + spec.bits > 64:
            value |= int(storage[word + 1]) << (64 - shift)
        codes.append(value & (2**spec.bits - 1))
    return codes


# -- the compiled extension is what runs ----------------------------------------------------------

def test_public_functions_are_the_compiled_kernels():
    import cython_core._kernels as kernels  # fails if the extension was not built

    assert kernels.__file__.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
    for name in ("quantize_pack", "gather_unpack", "quantize_pack_counts", "quantize_match", "quantize_continue",
                 "quantize_codes", "pack_codes", "unpack_codes"):
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
    garbage = garbage_words(rng, spec.words(n + 3))
    n_rows = held_rows(garbage, spec)
    assert n_rows >= n + 3
    rows = rng.permutation(n + 3)[:n]  # neighbours often: rows that share words with written ones
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
    assert same_bits(got, want)
    assert_only_rows_changed(garbage, got, rows, spec)  # neighbours' bits in shared words, tail and spare kept
    assert np.array_equal(ref.unpack_codes(got, rows, spec), ref.encode_codes(x, spec)[0])
    indices = rng.integers(0, n_rows, 2 * n + 1)  # written rows and garbage ones, up to the last the stream holds
    indices[0], indices[1:n + 1] = n_rows - 1, rows
    for out_dtype in (np.float32, np.float64):
        out, expected = np.empty((indices.size, dim), out_dtype), np.empty((indices.size, dim), out_dtype)
        gather_unpack(got, indices, spec, out)
        ref.gather_unpack(got, indices, spec, expected)
        assert same_bits(out, expected)


@PROPERTY
@edge_examples(())
@given(specs)
def test_a_code_lives_at_its_bit_of_the_stream(spec_args):
    """Both implementations put code j of row r at bit r x row_bits + j x bits of the little-endian stream (a
    direct word-by-word formula reads it back), and read back what they wrote."""
    seed, bits, dim, uniform = spec_args
    spec = make_spec(seed, bits, dim, uniform)
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 2**bits, (3, dim), dtype=np.uint64)
    garbage = garbage_words(rng, spec.words(4))
    rows = rng.permutation(4)[:3]
    for pack in (cython_core.pack_codes, ref.pack_codes):
        storage = garbage.copy()
        pack(codes.astype(np.uint32), storage, rows, spec)
        for i, r in enumerate(rows):
            assert python_codes(storage, int(r), spec) == codes[i].tolist()
        assert_only_rows_changed(garbage, storage, rows, spec)
        assert np.array_equal(ref.unpack_codes(storage, rows, spec), codes)
        assert np.array_equal(cython_core.unpack_codes(storage, rows, spec), codes)


def test_hand_packed_words():
    spec = CodeLayout.per_dim(np.zeros(3), np.full(3, 2.0**24 - 1), np.ones(3), bits=24)  # 72-bit rows
    x = np.array([0xABCDEF, 0x123456, 0x789ABC], float)
    storage = np.zeros(spec.words(2), np.uint64)
    assert storage.size == 4  # 144 bits in 3 words, + the spare one
    quantize_pack(x, storage, 1, spec)
    # row 1 starts at bit 72 = bit 8 of word 1: its low 56 bits end word 1, its high 16 bits start word 2
    assert storage.tolist() == [0, 0xBC123456_ABCDEF_00, 0x789A, 0]
    quantize_pack(x, storage, 0, spec)
    # code 2 of row 0 straddles: its low 16 bits end word 0, its high 8 bits start word 1, below row 1's bits
    assert storage.tolist() == [0x9ABC_123456_ABCDEF, 0xBC123456_ABCDEF_78, 0x789A, 0]
    ones = np.full(spec.words(2), 2**64 - 1, np.uint64)
    quantize_pack(x, ones, 0, spec)  # row 1's bits in word 1 (all ones) are kept
    assert ones.tolist() == [0x9ABC_123456_ABCDEF, 0xFFFFFFFF_FFFFFF_78, 2**64 - 1, 2**64 - 1]
    spec32 = CodeLayout.per_dim(np.zeros(3), np.full(3, 2.0**32 - 1), np.ones(3), bits=32)  # 96-bit rows
    storage = np.zeros(spec32.words(2), np.uint64)
    quantize_pack(np.array([[2.0**32 - 1, 1.0, 7.0], [1.0, 2.0, 3.0]]), storage, [0, 1], spec32)
    assert storage.tolist() == [0x1_FFFFFFFF, 0x1_00000007, 0x3_00000002, 0]
    out = np.empty((2, 3), np.float64)
    gather_unpack(storage, np.array([0, 1]), spec32, out)
    assert out.tolist() == [[2.0**32 - 1, 1.0, 7.0], [1.0, 2.0, 3.0]]


@PROPERTY
@edge_examples((3, "code"), (2, "error"))
@given(specs, st.integers(1, 6), policies)
def test_codes_round_trip_through_pack_codes_and_unpack_codes_as_the_reference(spec_args, n, policy):
    """quantize_codes gives the reference's codes and counts; pack_codes writes them as the reference does (and as
    quantize_pack writes the values), keeping every other bit; unpack_codes and PackedRows read them back."""
    seed, bits, dim, uniform = spec_args
    spec = make_spec(seed, bits, dim, uniform, policy)
    x = make_values(seed + 1, spec, n, nonfinite=policy == "code")
    codes, saturated, coded = cython_core.quantize_codes(x, spec)
    want_codes, want_saturated = ref.encode_codes(x, spec)
    assert codes.dtype == np.uint32 and codes.shape == (n, dim) and codes.flags.c_contiguous
    assert np.array_equal(codes, want_codes)
    assert (saturated, coded) == (want_saturated, int(np.count_nonzero(~np.isfinite(x))))
    rng = np.random.default_rng(seed + 2)
    garbage = garbage_words(rng, spec.words(n + 2))
    rows = rng.permutation(n + 2)[:n]
    got, want, quantized = garbage.copy(), garbage.copy(), garbage.copy()
    cython_core.pack_codes(codes, got, rows, spec)
    ref.pack_codes(want_codes, want, rows, spec)
    assert cython_core.quantize_pack_counts(x, quantized, rows, spec) == (saturated, coded)
    assert same_bits(got, want) and same_bits(got, quantized)
    assert_only_rows_changed(garbage, got, rows, spec)
    indices = rng.integers(0, held_rows(got, spec), 2 * n + 1)
    unpacked = cython_core.unpack_codes(got, indices, spec)
    assert unpacked.dtype == np.uint32 and unpacked.shape == (indices.size, dim)
    assert np.array_equal(unpacked, ref.unpack_codes(got, indices, spec))
    assert np.array_equal(cython_core.unpack_codes(got, rows, spec), codes)
    packed = PackedRows(n + 2, spec)
    packed.storage[:] = garbage
    packed.put_codes(codes, rows)
    assert same_bits(packed.storage, got)
    assert same_bits(packed.codes(rows), codes)
    assert same_bits(packed.decode(rows), ref.decode_codes(want_codes, spec, np.float32))


def old_word_rows(codes: np.ndarray, bits: int) -> np.ndarray:
    """Rows as buffers saved before format 6 hold them (Python ints, no packbits): each row's codes little-endian
    from bit 0 of its own ceil(row_bits / 64) words, the rest of its last word zero."""
    n, dim = codes.shape
    row_words = -(-dim * bits // 64)
    words = np.zeros((n, row_words), np.uint64)
    for r in range(n):
        value = sum(int(c) << (j * bits) for j, c in enumerate(codes[r]))
        words[r] = [(value >> (64 * w)) & (2**64 - 1) for w in range(row_words)]
    return words


def bit_stride_stream(codes: np.ndarray, bits: int) -> np.ndarray:
    """The same rows at bit stride (Python ints): row r at bit r x row_bits, then the spare word."""
    n, dim = codes.shape
    row_bits = dim * bits
    value = 0
    for r in range(n):
        value |= sum(int(c) << (r * row_bits + j * bits) for j, c in enumerate(codes[r]))
    return np.frombuffer(value.to_bytes(words_for(n, row_bits) * 8, "little"), "<u8").astype(np.uint64)


@pytest.mark.parametrize("dim, bits, n", [(3, 5, 4100), (11, 15, 4099), (348, 15, 9), (1, 1, 130), (7, 32, 9),
                                          (64, 1, 5), (4, 16, 3), (1, 32, 0)])
def test_from_word_rows_converts_old_word_padded_rows_bit_for_bit(dim, bits, n):
    """Old word-padded rows (the chunks of 4096 rows included) come out at bit stride, bit for bit."""
    spec = code_spec(dim, bits)
    codes = np.random.default_rng(dim * bits + n).integers(0, 2**bits, (n, dim), dtype=np.uint64)
    rows = PackedRows.from_word_rows(old_word_rows(codes, bits), spec)
    assert rows.n_rows == n and rows.layout == spec
    assert same_bits(rows.storage, bit_stride_stream(codes, bits))
    assert rows.storage.shape == (spec.words(n),) and rows.storage.flags.c_contiguous
    assert np.array_equal(rows.codes(np.arange(n)), codes)
    assert same_bits(rows.decode(np.arange(n)), ref.decode_codes(codes, spec, np.float32))


def test_from_word_rows_refuses_what_is_not_word_padded_rows():
    spec = code_spec(5, 15)  # 75 bits: 2 words a row
    for bad in (np.zeros((3, 1), np.uint64), np.zeros((3, 2), np.int64), np.zeros(6, np.uint64)):
        with pytest.raises(ValueError, match=r"words must be uint64 \(n_rows, >= 2\)"):
            PackedRows.from_word_rows(bad, spec)
    assert PackedRows.from_word_rows(np.zeros((3, 3), np.uint64), spec).n_rows == 3  # wider rows are fine


# -- what the codes mean --------------------------------------------------------------------------

@PROPERTY
@edge_examples((3,))
@given(specs, st.integers(1, 4))
def test_error_at_most_half_a_step_inside_the_clamp(spec_args, n):
    seed, bits, dim, uniform = spec_args
    spec = make_spec(seed, bits, dim, uniform, nonfinite="error")
    x = make_values(seed + 1, spec, n, nonfinite=False)
    storage = np.zeros(spec.words(n), np.uint64)
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
    storage = np.zeros(spec.words(1), np.uint64)
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
    assert cython_core.quantize_codes(x, spec)[1] == expected
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
    storage = np.full(spec.words(4), 12345, np.uint64)
    for impl in (cython_core, ref):
        with pytest.raises(NonFiniteError, match=r"2 non-finite .* x\[1, 3\]") as info:
            impl.quantize_pack(x, storage, np.array([0, 1, 2]), spec)
        assert (info.value.count, info.value.row, info.value.dim) == (2, 1, 3)
        assert isinstance(info.value, ValueError)
        assert np.all(storage == 12345)
    for encode in (cython_core.quantize_codes, ref.encode_codes):
        with pytest.raises(NonFiniteError, match=r"2 non-finite .* x\[1, 3\]") as info:
            encode(x, spec)
        assert (info.value.count, info.value.row, info.value.dim) == (2, 1, 3)


@PROPERTY
@edge_examples((3, "code"), (2, "error"))
@given(specs, st.integers(1, 5), policies)
def test_match_counts_as_pack_and_holds_only_the_rows_pack_wrote(spec_args, n, policy):
    spec = make_spec(*spec_args, nonfinite=policy)
    x = make_values(spec_args[0], spec, n, nonfinite=policy == "code")
    storage = garbage_words(np.random.default_rng(spec_args[0]), spec.words(n + 2))  # neighbours' bits: garbage
    rows = np.arange(1, n + 1)
    counts = cython_core.quantize_pack_counts(x, storage, rows, spec)
    storage.flags.writeable = False  # match writes nothing
    assert cython_core.quantize_match(x, storage, rows, spec) == (*counts, True)
    shifted = cython_core.quantize_match(x, storage, rows - 1, spec)[2]  # row 0 is garbage, the others x's rows
    assert shifted == np.array_equal(ref.unpack_codes(storage, rows - 1, spec), ref.unpack_codes(storage, rows, spec))
    other = x.copy()
    other[-1, 0] = spec.hi[0] if x[-1, 0] != spec.hi[0] else spec.lo[0]
    same = cython_core.quantize_match(other, storage, rows, spec)[2]
    assert same == np.array_equal(ref.encode_codes(other, spec)[0], ref.encode_codes(x, spec)[0])
    flipped = storage.copy()  # one bit of the last row's last code flipped: no longer held
    bit = rows[-1] * spec.row_bits + spec.row_bits - 1
    flipped[bit // 64] ^= np.uint64(1) << np.uint64(bit % 64)
    assert cython_core.quantize_match(x, flipped, rows, spec)[2] is False


@PROPERTY
@edge_examples((2, np.float32, "code"), (4, np.float64, "error"))
@given(specs, st.integers(1, 5), st.sampled_from([np.float32, np.float64]), policies)
def test_quantize_continue_is_match_then_pack_and_writes_nothing_unless_held(spec_args, n, dtype, policy):
    """One call of the usual replay add: rows ``first``.. hold ``obs``, so ``next_obs`` goes into rows
    ``following``..; where they do not, or a value is refused, the storage is left as it was."""
    spec = make_spec(*spec_args, nonfinite=policy)
    obs = make_values(spec_args[0], spec, n, nonfinite=policy == "code").astype(dtype)
    following = make_values(spec_args[0] + 1, spec, n, nonfinite=policy == "code").astype(dtype)
    storage = garbage_words(np.random.default_rng(spec_args[0]), spec.words(2 * n + 2))
    cython_core.quantize_pack_counts(obs, storage, np.arange(1, n + 1), spec)
    before = storage.copy()
    if not np.array_equal(ref.encode_codes(following, spec)[0], ref.encode_codes(obs, spec)[0]):
        assert cython_core.quantize_continue(following, following, storage, 1, n + 1, spec)[1] is False
        assert same_bits(storage, before)  # not held: nothing written
    if policy == "error":
        refused = following.copy()
        refused[-1, -1] = np.nan
        with pytest.raises(NonFiniteError):
            cython_core.quantize_continue(obs, refused, storage, 1, n + 1, spec)
        assert same_bits(storage, before)
    want = before.copy()
    cython_core.quantize_pack_counts(following, want, np.arange(n + 1, 2 * n + 1), spec)
    saturated = cython_core.quantize_match(obs, storage, np.arange(1, n + 1), spec)[0]
    assert cython_core.quantize_continue(obs, following, storage, 1, n + 1, spec) == (saturated, True)
    assert same_bits(storage, want)


@PROPERTY
@edge_examples((2, np.float64, "code"), (4, np.float32, "error"))
@given(specs, st.integers(1, 6), st.sampled_from([np.float32, np.float64]), policies)
def test_the_avx2_quantize_loop_gives_the_portable_codes(spec_args, n, dtype, policy):
    """Uniform specs quantize through a loop compiled for AVX2 where the CPU has it: the same codes and counts as
    the portable loop, halves, bounds, saturation and non-finite values included."""
    from cython_core._kernels import _quantize_path

    seed, bits, dim, _ = spec_args
    spec = make_spec(seed, bits, dim, True, nonfinite=policy)
    x = make_values(seed + 1, spec, n, nonfinite=policy == "code").astype(dtype)
    before = _quantize_path()
    try:
        results = []
        for avx2 in (False, True):
            _quantize_path(avx2)
            codes, saturated, coded = cython_core.quantize_codes(x, spec)
            results.append((codes.tobytes(), saturated, coded))
    finally:
        _quantize_path(before == "avx2")
    assert results[0] == results[1]
    assert np.array_equal(np.frombuffer(results[0][0], np.uint32).reshape(n, dim), ref.encode_codes(x, spec)[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_match_refuses_nonfinite_values_as_pack_does(dtype):
    spec = CodeLayout.uniform(5, decimals=2, clamp=127.0)
    x = np.zeros((2, 5), dtype)
    x[1, 3] = np.nan
    with pytest.raises(NonFiniteError, match=r"1 non-finite .* x\[1, 3\]"):
        quantize_match(x, np.zeros(spec.words(4), np.uint64), np.array([0, 1]), spec)


def test_nonfinite_code_policy_stores_the_code_and_does_not_count_saturation():
    spec = CodeLayout.uniform(4, decimals=0, clamp=10.0, nonfinite="code", nonfinite_code=31)
    storage = np.zeros(spec.words(1), np.uint64)
    saturated, coded = cython_core.quantize_pack_counts(np.array([np.nan, np.inf, -np.inf, 99.0]), storage, 0, spec)
    assert (saturated, coded) == (1, 3)
    codes = ref.unpack_codes(storage, np.array([0]), spec)
    assert codes.tolist() == [[31, 31, 31, 20]]
    assert ref.decode_codes(codes, spec, np.float64).tolist() == [[21.0, 21.0, 21.0, 10.0]]
    assert cython_core.quantize_codes(np.array([np.nan, np.inf, -np.inf, 99.0]), spec)[0].tolist() == [[31, 31, 31,
                                                                                                          20]]


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
    gather_unpack(np.zeros(spec.words(1), np.uint64), np.array([0]), spec, out)  # caches kernel tables
    clone = pickle.loads(pickle.dumps(spec))
    assert clone == spec and hash(clone) == hash(spec)
    with pytest.raises(ValueError):
        spec.lo[0] = 1.0


@pytest.mark.parametrize("dim, decimals", [(348, 2), (348, 1), (17, 1), (376, 2), (1, 0)])
def test_storage_bytes_match_layout_and_planner(dim, decimals):
    import cython_core.layout as layout
    from planner.layouts import packed_rows_fields

    spec = CodeLayout.uniform(dim, decimals=decimals, clamp=127.0)
    rows = PackedRows(1000, spec)
    fields = packed_rows_fields("obs", 1000, dim, spec.bits)
    assert spec.row_bits == dim * spec.bits
    assert spec.words(1000) == words_for(1000, spec.row_bits) == -(-1000 * spec.row_bits // 64) + 1
    assert rows.nbytes == spec.words(1000) * 8 == sum(f.bytes for f in fields)
    assert [f.name for f in fields] == ["obs", "obs.tail"]
    assert (fields[0].rows, fields[0].row_bits, fields[0].bytes) == (1000, spec.row_bits, -(-1000 * spec.row_bits // 8))
    assert all(f.eager for f in packed_rows_fields("obs", 1000, dim, spec.bits, eager=True))
    assert rows.storage.dtype == np.uint64 and rows.storage.flags.c_contiguous
    assert rows.storage.shape == (spec.words(1000),) and rows.n_rows == 1000 and held_rows(rows.storage, spec) >= 1000
    assert not any(hasattr(spec, name) for name in ("row_words", "row_bytes", "padding_bits"))
    assert not hasattr(rows, "padding_bytes")
    assert not any(hasattr(layout, f"packed_row_{name}") for name in ("bytes", "words", "padding_bits"))
    if (dim, decimals) == (348, 2):  # Humanoid: 1000 rows of 348 x 15 = 5220 bits in 81,563 words + the spare one
        assert (spec.row_bits, spec.words(1000), rows.nbytes, fields[1].bytes) == (5220, 81_564, 652_512, 12)


@PROPERTY
@edge_examples((3,))
@given(specs, st.integers(1, 5))
def test_the_unused_tail_bits_and_the_spare_word_stay_zero_after_writes_to_the_last_row(spec_args, n):
    """All-ones codes in every row, then values in the last row: the bits past the last row stay zero."""
    seed, bits, dim, uniform = spec_args
    spec = make_spec(seed, bits, dim, uniform)
    rows = PackedRows(n, spec)
    end = n * spec.row_bits
    rows.put_codes(np.full((n, dim), 2**bits - 1, np.uint32), np.arange(n))
    assert stream_bits(rows.storage)[:end].all() and not stream_bits(rows.storage)[end:].any()
    rows.encode(make_values(seed + 1, spec, 1, nonfinite=True), n - 1)
    rows.put_codes(cython_core.quantize_codes(make_values(seed + 2, spec, 1, nonfinite=True), spec)[0], [n - 1])
    assert stream_bits(rows.storage)[:(n - 1) * spec.row_bits].all()
    assert not stream_bits(rows.storage)[end:].any() and rows.storage[-1] == 0


def test_packed_rows_refuse_a_row_the_spare_bits_could_hold_the_kernels_count_it():
    """A stream of 3 one-bit rows is 2 words: the kernels see 64 rows in it; PackedRows holds its 3."""
    spec = CodeLayout.per_dim([0.0], [1.0], [1.0])
    rows = PackedRows(3, spec)
    assert (spec.row_bits, rows.storage.size, held_rows(rows.storage, spec)) == (1, 2, 64)
    for call in (lambda: rows.encode(np.ones(1), 3), lambda: rows.match(np.ones(1), [3]),
                 lambda: rows.put_codes(np.ones((1, 1), np.uint32), [3])):
        with pytest.raises(IndexError, match="rows must be in 0..2, got 3"):
            call()
    for call in (lambda: rows.decode([3]), lambda: rows.codes([3])):
        with pytest.raises(IndexError, match="indices must be in 0..2, got 3"):
            call()
    assert not rows.storage.any()
    quantize_pack(np.ones(1), rows.storage, 63, spec)  # the kernels: any row that fits the stream
    assert rows.storage.tolist() == [2**63, 0]
    with pytest.raises(IndexError, match="rows must be in 0..63, got 64"):
        quantize_pack(np.ones(1), rows.storage, 64, spec)


# -- argument checks (both implementations refuse the same way, nothing out of bounds) -----------

@pytest.mark.parametrize("impl", [cython_core, ref], ids=["compiled", "reference"])
def test_bad_arguments_are_refused(impl):
    spec = CodeLayout.uniform(6, decimals=1, clamp=127.0)  # 6 x 12 bits: 72-bit rows
    storage = np.zeros(spec.words(5), np.uint64)
    assert (storage.size, held_rows(storage, spec)) == (7, 5)  # 384 bits before the spare word: 5 rows, not 6
    x = np.zeros((2, 6))
    with pytest.raises(IndexError, match="rows must be in 0..4, got 5"):
        impl.quantize_pack(x, storage, np.array([0, 5]), spec)
    with pytest.raises(IndexError, match="rows must be in 0..3, got 4"):  # the rows come from the length
        impl.quantize_pack(x, storage[:-1].copy(), np.array([0, 4]), spec)
    with pytest.raises(IndexError, match="got -1"):
        impl.quantize_pack(x, storage, np.array([-1, 0]), spec)
    with pytest.raises(ValueError, match="one index per row"):
        impl.quantize_pack(x, storage, np.array([0]), spec)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 6\)"):
        impl.quantize_pack(np.zeros((2, 7)), storage, np.array([0, 1]), spec)
    read_only = storage.copy()
    read_only.flags.writeable = False
    strided = np.zeros(2 * storage.size, np.uint64)[::2]  # every other word: the right length, not contiguous
    word_rows = np.zeros((5, 2), np.uint64)  # the old word-padded rows: 2-D is refused
    empty = np.zeros(0, np.uint64)  # not even the spare word
    for bad in (storage.view(np.int64), word_rows, strided, empty, storage.tolist(), read_only):
        with pytest.raises(ValueError, match=STORAGE_MESSAGE):
            impl.quantize_pack(x, bad, np.array([0, 1]), spec)
    out = np.empty((2, 6), np.float32)
    for bad in (storage.view(np.int64), word_rows, strided, empty):
        with pytest.raises(ValueError, match=STORAGE_MESSAGE):
            impl.gather_unpack(bad, np.array([1, 2]), spec, out)
    assert not strided.base.any() and not word_rows.any()
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


def test_codes_kernels_refuse_bad_arguments_and_write_nothing():
    spec = CodeLayout.uniform(6, decimals=1, clamp=127.0)  # 12 bits
    storage = garbage_words(np.random.default_rng(0), spec.words(5))
    before = storage.copy()
    codes = np.full((2, 6), 7, np.uint32)
    read_only = storage.copy()
    read_only.flags.writeable = False
    for bad in (storage.reshape(7, 1), np.zeros((5, 2), np.uint64), np.zeros(14, np.uint64)[::2],
                np.zeros(0, np.uint64), storage.view(np.int64), read_only):
        with pytest.raises(ValueError, match=STORAGE_MESSAGE):
            cython_core.pack_codes(codes, bad, [0, 1], spec)
        if bad is not read_only:
            with pytest.raises(ValueError, match=STORAGE_MESSAGE):
                cython_core.unpack_codes(bad, [0, 1], spec)
    assert np.array_equal(cython_core.unpack_codes(read_only, [4, 0], spec), ref.unpack_codes(storage, np.array([4, 0]),
                                                                                               spec))
    with pytest.raises(IndexError, match="rows must be in 0..4, got 5"):
        cython_core.pack_codes(codes, storage, [0, 5], spec)
    with pytest.raises(IndexError, match="indices must be in 0..4, got -1"):
        cython_core.unpack_codes(storage, [0, -1], spec)
    with pytest.raises(ValueError, match="one index per row of codes"):
        cython_core.pack_codes(codes, storage, [0], spec)
    with pytest.raises(ValueError, match=r"codes must be integers of shape \(n, 6\), got uint32 \(2, 5\)"):
        cython_core.pack_codes(np.zeros((2, 5), np.uint32), storage, [0, 1], spec)
    with pytest.raises(ValueError, match=r"codes must be integers of shape \(n, 6\), got float64"):
        cython_core.pack_codes(codes.astype(np.float64), storage, [0, 1], spec)
    negative = codes.astype(np.int64)
    negative[0, 2] = -1
    with pytest.raises(ValueError, match=r"codes must be in 0..2\*\*12 - 1, got -1 at row 0, dimension 2"):
        cython_core.pack_codes(negative, storage, [0, 1], spec)
    with pytest.raises(ValueError, match=r"codes must be in 0..2\*\*12 - 1, got 42949673\d\d at row 0, dimension 0"):
        cython_core.pack_codes(codes.astype(np.uint64) + np.uint64(2**32), storage, [0, 1], spec)
    too_wide = codes.copy()
    too_wide[1, 4] = 2**12
    with pytest.raises(ValueError, match=r"codes must be in 0..2\*\*12 - 1, got 4096 at row 1, dimension 4"):
        cython_core.pack_codes(too_wide, storage, [0, 1], spec)
    with pytest.raises(TypeError, match="rows must be integers, got float64"):
        cython_core.pack_codes(codes, storage, [0.0, 1.0], spec)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 6\)"):
        cython_core.quantize_codes(np.zeros((2, 7)), spec)
    assert same_bits(storage, before)
    assert cython_core.quantize_codes(np.zeros(6), spec)[0].shape == (1, 6)  # one row as (D,)


def test_compiled_gather_refuses_an_out_it_cannot_write_in_place():
    """The kernel writes ``out`` through its buffer, so a strided, transposed or read-only ``out`` is refused
    and left as it was. (The numpy reference assigns ``out[...] = ...``: it accepts a strided ``out``.)"""
    spec = CodeLayout.uniform(6, decimals=1, clamp=127.0)
    storage = np.zeros(spec.words(5), np.uint64)
    wide = np.full((2, 12), 7.0, np.float32)
    read_only = np.full((2, 6), 7.0, np.float32)
    read_only.flags.writeable = False
    for out in (wide[:, ::2], np.full((6, 2), 7.0, np.float32).T, read_only):
        with pytest.raises(ValueError, match=r"out must be a writable C-contiguous float32 array of shape \(2, 6\)"):
            gather_unpack(storage, np.array([1, 2]), spec, out)
        assert np.all(out == 7.0)


def test_single_row_forms_and_empty_batches():
    spec = CodeLayout.uniform(3, decimals=2, clamp=127.0)
    storage = np.zeros(spec.words(4), np.uint64)
    assert quantize_pack(np.array([1.0, 2.0, 300.0], np.float32), storage, 2, spec) == 1
    assert quantize_pack(np.array([1.0, 2.0, 300.0]), storage, [3], spec) == 1
    assert quantize_pack(np.zeros((0, 3)), storage, np.zeros(0, np.int64), spec) == 0
    cython_core.pack_codes(np.zeros((0, 3), np.uint32), storage, np.zeros(0, np.int64), spec)
    codes = ref.unpack_codes(storage, np.arange(4), spec)
    assert codes[2].any() and np.array_equal(codes[2], codes[3]) and not codes[:2].any()
    assert not stream_bits(storage)[:2 * spec.row_bits].any() and not stream_bits(storage)[4 * spec.row_bits:].any()
    gather_unpack(storage, np.zeros(0, np.int64), spec, np.empty((0, 3), np.float32))
    assert cython_core.unpack_codes(storage, np.zeros(0, np.int64), spec).shape == (0, 3)
    assert cython_core.quantize_codes(np.zeros((0, 3)), spec)[0].shape == (0, 3)
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
        garbage = garbage_words(np.random.default_rng(bits), spec.words(64))
        got, want = garbage.copy(), garbage.copy()
        rows = np.random.default_rng(bits).permutation(64)[:40]
        assert quantize_pack(x.astype(dtype), got, rows, spec) == ref.quantize_pack(x.astype(dtype), want, rows, spec)
        assert same_bits(got, want)
        assert_only_rows_changed(garbage, got, rows, spec)
        indices = np.random.default_rng(1).integers(0, 64, 300)
        out, expected = np.empty((300, 348), np.float32), np.empty((300, 348), np.float32)
        gather_unpack(got, indices, spec, out)
        ref.gather_unpack(got, indices, spec, expected)
        assert same_bits(out, expected)


GATHER_PATHS = ("avx512vbmi", "avx2", "portable", "scalar")


@pytest.fixture(params=GATHER_PATHS)
def gather_path(request):
    """gather_unpack's row read set to each path (the next one down where this host lacks it), restored
    afterwards."""
    from cython_core._kernels import _read_path

    before = _read_path()
    yield _read_path(request.param)
    _read_path(before)


@pytest.mark.parametrize("bits", range(1, 33))
def test_every_read_path_decodes_every_width_and_bit_phase_as_the_reference(gather_path, bits):
    """gather_unpack on each read path (avx512vbmi and avx2 up to 25 bits, portable and scalar every width) against
    the reference, bit for bit: dims 1..70 and 348, uniform and per-dimension specs, 9 rows in a row (a row starts
    at every bit phase its stride reaches) and the last row the stream holds, float32 and float64 out."""
    for dim in [*range(1, 71), 348]:
        for uniform in (True, False):
            spec = make_spec(1000 * bits + dim, bits, dim, uniform)
            rng = np.random.default_rng(dim)
            storage = garbage_words(rng, spec.words(10) + int(rng.integers(0, 2)))
            indices = np.array([*range(9), held_rows(storage, spec) - 1, 3])
            for dtype in (np.float32, np.float64):
                out, want = np.full((11, dim), np.nan, dtype), np.empty((11, dim), dtype)
                gather_unpack(storage, indices, spec, out)
                ref.gather_unpack(storage, indices, spec, want)
                assert same_bits(out, want), (gather_path, dim, uniform, dtype)


def test_gather_reads_nothing_past_the_storage(gather_path):
    """Storage ending at a page followed by an inaccessible one: every path decodes the last row the stream holds
    (a read past the spare word would crash the process), every width; dims 8, 16 and 64 end rows of some widths on
    a word (the group loads' tightest case: the row's last group ends just before the spare word)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    area = mmap.mmap(-1, 2 * page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(area))
    assert libc.mprotect(ctypes.c_void_p(base + page), ctypes.c_size_t(page), 0) == 0  # PROT_NONE
    for bits in range(1, 33):
        for dim in (1, 3, 8, 16, 17, 64, 348):
            for uniform in (True, False):
                spec = make_spec(bits + dim, bits, dim, uniform)
                words = spec.words(2)
                storage = np.frombuffer(area, np.uint64, words, page - 8 * words)
                storage[:] = garbage_words(np.random.default_rng(bits), words)
                last = np.array([held_rows(storage, spec) - 1])
                for dtype in (np.float32, np.float64):
                    out, want = np.empty((1, dim), dtype), np.empty((1, dim), dtype)
                    gather_unpack(storage, last, spec, out)
                    ref.gather_unpack(storage, last, spec, want)
                    assert same_bits(out, want)
                del storage


def test_tiny_steps_decode_as_the_reference(gather_path):
    """Scales near the float64 range's top (inv_scale ~1e-305): the portable read's per-lane constants inv * 2**-s
    would be subnormal (inexact) there, so such a spec is read another way; every path, the reference's bits."""
    for scale in (1e300, 1e305, 1e307):
        for bits in (10, 12, 15):
            for dim in (9, 348):
                spec = CodeLayout.per_dim(np.zeros(dim), np.full(dim, (2**bits - 2) / scale), np.full(dim, scale),
                                          bits=bits)
                storage = garbage_words(np.random.default_rng(bits), spec.words(10))
                for dtype in (np.float32, np.float64):
                    out, want = np.empty((10, dim), dtype), np.empty((10, dim), dtype)
                    gather_unpack(storage, np.arange(10), spec, out)
                    ref.gather_unpack(storage, np.arange(10), spec, want)
                    assert same_bits(out, want), (scale, bits, dim, dtype)


def test_read_path_refuses_an_unknown_path():
    from cython_core._kernels import _read_path

    with pytest.raises(ValueError, match="path must be one of"):
        _read_path("words")


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
    storage = np.empty(spec.words(n), np.uint64)
    last = n * spec.row_bits // 64 - 1  # the last word wholly inside the last row (the spare word follows)
    assert (n - 1) * spec.row_bits <= 64 * last and last == storage.size - 2
    out = np.empty((n, 348), np.float32)
    blank = np.uint64(2**64 - 1)  # no row of zeros packs to these words

    def quantize_halfway():
        first, final = storage[[0, last]]
        return first != blank and final == blank

    def gather_halfway():
        first, final = out[[0, -1], [0, -1]]
        return first == 0.0 and np.isnan(final)

    assert seen_halfway(lambda: storage.fill(blank), lambda: quantize_pack(x, storage, rows, spec), quantize_halfway)
    assert storage[last] != blank and storage[-1] == blank  # the spare word is kept as it was
    assert seen_halfway(lambda: out.fill(np.nan), lambda: gather_unpack(storage, rows, spec, out), gather_halfway)
    assert not np.isnan(out).any() and np.all(out == 0.0)


def test_non_contiguous_and_other_dtype_inputs_are_converted():
    spec = CodeLayout.uniform(5, decimals=1, clamp=10.0)
    wide = np.arange(30, dtype=np.int32).reshape(3, 10) - 12
    a, b = np.zeros(spec.words(3), np.uint64), np.zeros(spec.words(3), np.uint64)
    quantize_pack(wide[:, ::2], a, [2, 0, 1], spec)  # strided int32 view
    ref.quantize_pack(np.ascontiguousarray(wide[:, ::2], dtype=np.float64), b, [2, 0, 1], spec)
    assert same_bits(a, b)
    out = np.empty((3, 5), np.float32)
    gather_unpack(a, np.array([0, 1, 2, 2])[::-1][1:], spec, out)  # strided index view: [2, 1, 0]
    assert np.array_equal(out, np.clip(wide[:, ::2], -10, 10)[[0, 2, 1]].astype(np.float32))
    c = np.zeros(spec.words(3), np.uint64)
    codes = cython_core.quantize_codes(wide[:, ::2], spec)[0]
    cython_core.pack_codes(codes.astype(np.int64)[:, ::-1][:, ::-1], c, np.array([2, 0, 1, 1])[:3], spec)
    assert same_bits(a, c)  # codes of another integer dtype, a strided view, converted


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
    """A single Python int, a numpy scalar, a list or an array, in the compiled kernels, the reference and
    PackedRows alike: the same refusal, and nothing written."""
    spec = CodeLayout.uniform(3, decimals=1, clamp=1.0)  # 3 x 5 bits: 4 rows in the first word
    assert held_rows(np.zeros(spec.words(4), np.uint64), spec) == 4
    for write in (cython_core.quantize_pack, ref.quantize_pack,
                  lambda x, storage, rows, spec: cython_core.pack_codes(np.ones((1, 3), np.uint32), storage, rows,
                                                                        spec),
                  lambda x, storage, rows, spec: PackedRows(4, spec).encode(x, rows),
                  lambda x, storage, rows, spec: PackedRows(4, spec).put_codes(np.ones((1, 3), np.uint32), rows)):
        storage = np.zeros(spec.words(4), np.uint64)
        with pytest.raises(error, match=message):
            write(np.ones(3), storage, rows, spec)
        assert not storage.any()
    reads = (lambda storage, rows, spec: cython_core.gather_unpack(storage, rows, spec, np.empty((1, 3), np.float32)),
             lambda storage, rows, spec: ref.gather_unpack(storage, rows, spec, np.empty((1, 3), np.float32)),
             cython_core.unpack_codes, lambda storage, rows, spec: PackedRows(4, spec).codes(rows))
    for read in reads:
        with pytest.raises(error, match=message.replace("rows", "indices")):
            read(np.zeros(spec.words(4), np.uint64), np.atleast_1d(rows), spec)


def test_a_single_int_row_in_range_is_written_by_both_implementations():
    spec = CodeLayout.uniform(3, decimals=1, clamp=1.0)
    written = []
    for impl in (cython_core, ref):
        storage = np.zeros(spec.words(4), np.uint64)
        impl.quantize_pack(np.ones(3), storage, 3, spec)
        written.append(storage)
    bits = stream_bits(written[0])
    assert bits[3 * spec.row_bits:4 * spec.row_bits].any() and not bits[:3 * spec.row_bits].any()
    assert not bits[4 * spec.row_bits:].any() and np.array_equal(*written)


@pytest.mark.parametrize("scale", [1e-310, 5e-324, 0.0, -1.0, float("nan"), float("inf")])
def test_scales_that_are_not_finite_positive_with_a_finite_inverse_are_refused(scale):
    with pytest.raises(ValueError, match="scale"):
        CodeLayout.per_dim(lo=[-1.0], hi=[1.0], scale=[scale])
