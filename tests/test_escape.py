"""Escape-coded rows at bit stride (cython_core.EscapeRows): every code back after any sequence of rewrites, the
compiled rules equal to the planner's, the same float bits as the uniform kernels, pickling, re-packing, trimming,
and a damaged side table refused."""

import pickle

import numpy as np
import pytest
from cython_core._escape import pool_slack as compiled_slack
from hypothesis import given, settings
from hypothesis import strategies as st

from cython_core import CodeLayout, EscapeLayout, EscapeRows, PackedRows
from cython_core.layout import ENTRY_CODE_BITS, block_rows, pool_slack, words_for


@pytest.fixture(params=["avx512vbmi", "avx2", "portable", "words"])
def read_path(request):
    """Each read path in turn (the next one down where this host lacks it), restored after the test."""
    from cython_core._escape import _read_path

    before = _read_path()
    yield _read_path(request.param)
    _read_path(before)


def test_the_compiled_rules_are_the_planners():
    assert all(compiled_slack(n) == pool_slack(n) for n in range(0, 70_000, 7))
    rows = EscapeRows(130, EscapeLayout(lo=[-3, 0], bits=[2, 3], decimals=0, clamp=127.0))
    rows.put_codes(np.array([[9, 100]]), [129])  # both escaped: row 129 is row 1 of block 2
    assert rows.words.size == words_for(130, 5) and rows.seg_len.size == -(-130 // block_rows(2)) == 3
    assert (rows.pool[rows.seg_start[2]] >> ENTRY_CODE_BITS) == 129 - 2 * block_rows(2)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(dim=st.integers(1, 40), n_rows=st.integers(1, 300), seed=st.integers(0, 2**16),
       spread=st.sampled_from([3, 40, 400]))
def test_every_code_comes_back_after_any_rewrites(dim, n_rows, seed, spread):
    """Random batches of distinct rows rewritten with codes inside and outside their ranges, the pool compacting
    and growing as it must: every row reads back its last codes (as codes and as values, on every read path),
    the side table holds exactly the escapes, each block's entries sorted by row."""
    from cython_core._escape import _read_path

    rng = np.random.default_rng(seed)
    layout = EscapeLayout(rng.integers(-20, 20, dim), rng.integers(1, 8, dim), 0, 127.0)
    rows, truth = EscapeRows(n_rows, layout), np.zeros((n_rows, dim), np.int64)
    rows.put_codes(truth, np.arange(n_rows))
    for _ in range(60):
        which = np.unique(rng.integers(0, n_rows, rng.integers(1, 6)))
        codes = rng.integers(-spread, spread + 1, (which.size, dim)).clip(-127, 127)
        rows.put_codes(codes, which)
        truth[which] = codes
    before = _read_path()
    try:
        for path in ("avx512vbmi", "avx2", "portable", "words"):
            _read_path(path)
            assert np.array_equal(rows.codes(np.arange(n_rows)), truth)
            assert rows.decode(np.arange(n_rows), np.empty((n_rows, dim), np.float64)).tobytes() == (
                truth * layout.inv_scale).tobytes()
    finally:
        _read_path(before)
    assert rows.live == int((~layout.holds(truth)).sum()) == int(rows.seg_len.sum())
    for b in range(rows.seg_len.size):
        segment = rows.pool[rows.seg_start[b]:rows.seg_start[b] + rows.seg_len[b]]
        assert (np.diff(segment >> ENTRY_CODE_BITS) >= 0).all()
    assert rows.pool_used <= rows.pool.size


def test_values_are_the_uniform_kernels_bit_for_bit_in_float32_and_float64(read_path):
    rng = np.random.default_rng(1)
    x = rng.normal(0, 30, (500, 7))
    x[::37, 3] = 1e6  # saturates
    layout = EscapeLayout.choose(np.rint(np.clip(x[:100], -127, 127) * 100).astype(np.int64), 2, 127.0)
    rows, uniform = EscapeRows(500, layout), PackedRows(500, CodeLayout.uniform(7, decimals=2, clamp=127.0))
    assert rows.encode(x, np.arange(500)) == uniform.encode(x, np.arange(500)) > 0
    index = rng.integers(0, 500, 256)
    for dtype in (np.float32, np.float64):
        got, want = np.empty((256, 7), dtype), np.empty((256, 7), dtype)
        rows.decode(index, got)
        uniform.decode(index, want)
        assert got.tobytes() == want.tobytes()


def test_a_uniform_layout_never_escapes_and_costs_its_width():
    rows = EscapeRows(1000, EscapeLayout.uniform(11, 2, 127.0))
    rows.encode(np.random.default_rng(2).uniform(-200, 200, (1000, 11)), np.arange(1000))
    assert rows.live == 0 and rows.words.nbytes == 8 * (-(-1000 * 165 // 64) + 1)


def test_pickle_repack_and_trim_keep_every_code():
    rng = np.random.default_rng(3)
    layout = EscapeLayout(np.full(5, -4), np.full(5, 3), 1, 127.0)
    rows = EscapeRows(400, layout)
    rows.put_codes(rng.integers(-30, 30, (400, 5)), np.arange(400))
    codes = rows.codes(np.arange(400))
    copy = pickle.loads(pickle.dumps(rows))
    assert np.array_equal(copy.codes(np.arange(400)), codes) and copy.live == rows.live
    wider = EscapeLayout.choose(codes, 1, 127.0)
    rows.repack(wider)
    assert rows.layout == wider and np.array_equal(rows.codes(np.arange(400)), codes)
    assert rows.pool.size == rows.pool_used  # sized to what it holds
    rows.repack(layout, held=np.arange(200))  # the rows not held are blank: their codes are lo
    assert np.array_equal(rows.codes(np.arange(200)), codes[:200])
    assert (rows.codes(np.arange(200, 400)) == layout.lo).all()
    rows.trim()
    assert np.array_equal(rows.codes(np.arange(200)), codes[:200])


def test_a_side_table_missing_an_entry_is_refused_not_misread(read_path):
    rows = EscapeRows(10, EscapeLayout(np.zeros(2, np.int64), np.full(2, 2), 0, 127.0))
    rows.put_codes(np.array([[50, 1]]), [4])
    rows.seg_len[0] = 0  # the escape in row 4 now points at nothing
    with pytest.raises(ValueError, match="lacks an entry"):
        rows.decode([4])
    assert rows.codes([3]).tolist() == [[0, 0]]


def test_bad_arguments_are_one_error_and_write_nothing():
    rows = EscapeRows(4, EscapeLayout.uniform(3, 1, 127.0))
    before = rows.words.copy()
    with pytest.raises(ValueError, match="non-finite|NaN"):
        rows.encode(np.array([[1.0, np.nan, 2.0]]), [0])
    with pytest.raises(IndexError):
        rows.encode(np.zeros((1, 3)), [4])
    with pytest.raises(ValueError, match="shape"):
        rows.encode(np.zeros((2, 3)), [0])
    with pytest.raises(ValueError, match="paper codes"):
        rows.put_codes(np.array([[0, 0, 5000]]), [0])
    assert np.array_equal(rows.words, before)
    with pytest.raises(ValueError, match="bits must be in 1..15"):
        EscapeLayout([0], [16], 2, 127.0)


def test_the_kernel_benchmarks_escape_section_runs_and_reports_its_ratio():
    from conftest import benchmark_module

    kernels = benchmark_module("kernels")
    fig = kernels.run_escape(n_rows=3000, dim=348, batch=256, repeats=5, seed=0)
    assert fig["escape_decode_vs_float32_take"] == fig["escape_decode_us"] / fig["escape_float32_take_us"]
    assert 6.0 < fig["escape_mean_bits"] < 7.0 and fig["escape_one_bit_dims"] == 40
    assert 0.009 < fig["escape_share"] < 0.015  # the default: a real calibrated Humanoid buffer's 1.2 %
    assert "EscapeRows.decode" in kernels.escape_report(fig)


def test_a_fill_row_by_row_leaves_no_holes_and_a_full_pool_compacts_in_place():
    """Rows written in order grow the block being written where it lies (the pool's last segment), so a fill uses
    the entries with their slack and no more; when rewrites leave holes and the pool runs out, it is compacted in
    the same array (a device-sized buffer has no room for a second pool), every code kept."""
    rng = np.random.default_rng(5)
    layout = EscapeLayout(np.full(8, -2), np.full(8, 3), 1, 127.0)  # 3 bits: codes -2..4, 5 and beyond escaped
    n = 4 * block_rows(8)
    codes = rng.integers(-6, 7, (n, 8))  # about half the values escaped
    escaped = int((~layout.holds(codes)).sum())
    rows = EscapeRows(n, layout, pool_capacity=int(escaped * 1.6))
    for r in range(n):
        rows.put_codes(codes[r:r + 1], [r])
    assert rows.pool_dead == 0 and rows.pool_used <= int(escaped * 1.125) + 4 and rows.live == escaped
    compactions = 0
    for k in range(12):  # a block's rows all escaped, then all inside: blocks move, leave holes, the pool compacts
        block = rng.integers(0, 4) * block_rows(8)
        again = np.arange(block, block + block_rows(8))
        codes[again] = 6 if k % 2 == 0 else 0
        pool, dead = rows.pool, rows.pool_dead
        rows.put_codes(codes[again], again)
        if rows.pool_dead < dead and rows.pool.size == pool.size:
            assert rows.pool is pool  # compacted where it was
            compactions += 1
    assert compactions >= 1
    assert np.array_equal(rows.codes(np.arange(n)), codes)


@pytest.mark.parametrize("decimals, clamp", [(2, 127.0), (5, 127.0), (5, 300.0), (0, 2.0**24 - 1), (8, 0.16)])
def test_every_read_path_gives_the_codes_values_on_wide_layouts(decimals, clamp):
    """Widths up to the uniform width (15 bits at m = 2; 25 at m = 5, b = 127, and at codes up to 2^24, where the
    AVX-512 read converts float32 values with float math; 26 at b = 300, where the 16-lane AVX-512 read does not
    apply and the next path reads), dimensions over several groups of 16 with a tail, rows at every bit phase,
    escapes in most rows: each path's float32 and float64 values are the codes' own."""
    from cython_core._escape import _read_path

    rng = np.random.default_rng(decimals + int(clamp))
    top = int(round(clamp * 10**decimals))
    widest = (2 * top).bit_length()
    before = _read_path()
    try:
        for dim in (1, 16, 37, 70):
            bits = rng.integers(1, widest + 1, dim)
            lo = np.where(bits < widest, rng.integers(-top, np.maximum(top - (1 << bits) + 2, 1 - top)), -top)
            layout = EscapeLayout(lo, bits, decimals, clamp)
            n = 67  # row_bits x 67 rows: every bit phase of a row's first byte
            inside = np.minimum(lo + rng.integers(0, 2**40, (n, dim)) % ((1 << bits) - 1), top)
            codes = np.where(rng.random((n, dim)) < 0.9, inside, rng.integers(-top, top + 1, (n, dim)))
            rows = EscapeRows(n, layout)
            rows.put_codes(codes, np.arange(n))
            idx = rng.integers(0, n, 200)
            for path in ("avx512vbmi", "avx2", "portable", "words"):
                _read_path(path)
                for dtype in (np.float32, np.float64):
                    got = rows.decode(idx, np.empty((idx.size, dim), dtype))
                    assert got.tobytes() == (codes[idx] * layout.inv_scale).astype(dtype).tobytes(), (path, dim)
    finally:
        _read_path(before)


def test_float_math_gives_the_float32_values_for_every_code_it_reads():
    """The AVX-512 read converts codes |c| <= 2^24 to float32 with float math where m <= 8 (two FMAs: c / 10^m
    correctly rounded); for every such code and m that is (float)(c * 10^-m) computed in double, bit for bit."""
    from cython_core._escape import FLOAT_SCALES, float_mismatches

    assert FLOAT_SCALES == tuple(10.0**m for m in range(9))
    assert [float_mismatches(scale) for scale in FLOAT_SCALES] == [0] * 9
    assert float_mismatches(1e12) > 0  # the check can fail: 10^12 is no float32


def test_no_read_path_reads_past_the_stream():
    """Rows whose words end where an inaccessible page begins: every path decodes the last rows, alone and in
    pairs, widths up to 25 bits over one to five groups of 16 (a read past the stream would crash the process)."""
    import ctypes
    import mmap

    from cython_core._escape import _read_path

    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    area = mmap.mmap(-1, 2 * page, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    base = ctypes.addressof(ctypes.c_char.from_buffer(area))
    assert libc.mprotect(ctypes.c_void_p(base + page), ctypes.c_size_t(page), 0) == 0  # PROT_NONE
    rng = np.random.default_rng(11)
    n = 9  # rows at several bit phases, the last one ending in the stream's last bytes
    before = _read_path()
    try:
        for dim in (1, 3, 5, 17, 37, 70):
            for widest in (1, 6, 25):
                layout = EscapeLayout(np.full(dim, -100), rng.integers(1, widest + 1, dim), 5, 127.0)
                codes = np.minimum(-100 + rng.integers(0, 1 << layout.bits, (n, dim)), layout.top)
                state = EscapeRows(n, layout)
                state.put_codes(codes, np.arange(n))
                state = state.state()
                words = np.frombuffer(area, np.uint64, state["words"].size, page - state["words"].nbytes)
                words[:] = state["words"]
                rows = EscapeRows._restore(*{**state, "words": words}.values())
                for path in ("avx512vbmi", "avx2", "portable", "words"):
                    _read_path(path)
                    for dtype in (np.float32, np.float64):
                        want = (codes * layout.inv_scale).astype(dtype)
                        got = rows.decode(np.arange(n)[::-1], np.empty((n, dim), dtype))
                        assert got.tobytes() == want[::-1].tobytes(), (path, dim, widest)
                        out, out_following = np.empty((n - 1, dim), dtype), np.empty((n - 1, dim), dtype)
                        rows.decode_pairs(np.arange(n - 1), np.arange(1, n), out, out_following)
                        assert out_following.tobytes() == want[1:].tobytes(), (path, dim, widest)
                del rows, words
    finally:
        _read_path(before)


def test_a_repack_holds_a_chunk_of_codes_not_every_rows():
    """A drift re-pack of a big store: every code kept, whether the rows held are a count or indices, and the
    transient memory is the new rows plus a chunk's codes (REPACK_ROWS rows), not 8 bytes a value of every row."""
    import tracemalloc

    from cython_core._escape import REPACK_ROWS

    rng = np.random.default_rng(5)
    n, dim = 24 * REPACK_ROWS + 7, 24
    layout = EscapeLayout(np.full(dim, -8), np.full(dim, 4), 1, 127.0)
    rows = EscapeRows(n, layout)
    codes = np.where(rng.random((n, dim)) < 0.97, rng.integers(-8, 6, (n, dim)), rng.integers(-300, 300, (n, dim)))
    rows.put_codes(codes, np.arange(n))
    wider = EscapeLayout(np.full(dim, -8), np.full(dim, 5), 1, 127.0)
    tracemalloc.start()
    rows.repack(wider, n - 5)  # a count: rows 0..n-6
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < codes.nbytes / 3  # every row's codes at once would be codes.nbytes
    assert np.array_equal(rows.codes(np.arange(n - 5)), codes[:n - 5])
    assert (rows.codes(np.arange(n - 5, n)) == wider.lo).all()
    rows.repack(layout, np.arange(0, n - 5, 3))  # indices
    assert np.array_equal(rows.codes(np.arange(0, n - 5, 3)), codes[:n - 5:3])
    with pytest.raises(ValueError, match="held must be a row count"):
        rows.repack(layout, n + 1)


def test_decode_pairs_is_two_decodes_on_every_read_path(read_path):
    """A sample's observations and next ones read a pair at a time: each row and the one after it (across block
    boundaries too), rows with and without escapes, and unrelated pairs, in float32 and float64, equal two
    decodes; mismatched arguments are refused."""
    rng = np.random.default_rng(9)
    dim, n = 37, 3 * block_rows(37) + 5
    layout = EscapeLayout(rng.integers(-20, 0, dim), rng.integers(1, 7, dim), 1, 127.0)
    rows = EscapeRows(n, layout)
    codes = np.where(rng.random((n, dim)) < 0.95, layout.lo + 1, rng.integers(-900, 900, (n, dim)))
    codes[::4] = layout.lo  # every fourth row holds no escape
    rows.put_codes(codes, np.arange(n))
    first = np.concatenate([np.arange(n - 1), rng.integers(0, n, 50)])
    following = np.concatenate([np.arange(1, n), rng.integers(0, n, 50)])
    for dtype in (np.float32, np.float64):
        out, out_following = np.empty((first.size, dim), dtype), np.empty((first.size, dim), dtype)
        rows.decode_pairs(first, following, out, out_following)
        assert out.tobytes() == (codes[first] * layout.inv_scale).astype(dtype).tobytes()
        assert out_following.tobytes() == (codes[following] * layout.inv_scale).astype(dtype).tobytes()
    with pytest.raises(ValueError, match="following must hold one row per index"):
        rows.decode_pairs(first, following[:-1], out, out_following)
    with pytest.raises(ValueError, match="out and out_following must be"):
        rows.decode_pairs(first, following, out, np.empty((first.size, dim), np.float32))
    with pytest.raises(IndexError):
        rows.decode_pairs(first, following + n, out, out_following)


@pytest.mark.parametrize("decimals, widest, f32", [(2, 15, True), (5, 8, True), (5, 25, False)])
def test_the_portable_group_read_at_every_phase_width_tail_and_batch_size(decimals, widest, f32):
    """The portable read (generic vectors: a float32 division where the layout allows it, else 64-bit lanes and
    the double product) gives the word-by-word read's bits: rows at every bit phase (the stream's last row too),
    every width up to the uniform one, dims that are not a multiple of 4 or 16, escapes, batches of 4 rows at a
    time with 0..3 more, float32 and float64."""
    from cython_core._escape import _f32_table, _read_path

    rng = np.random.default_rng(decimals * 100 + widest)
    top = int(round(127.0 * 10**decimals))
    before = _read_path()
    try:
        for dim in (1, 3, 5, 15, 17, 38):
            bits = np.resize(np.arange(1, widest + 1), dim)[rng.permutation(dim)]
            lo = -((np.int64(1) << bits) // 2) if widest < 25 else np.full(dim, -top)
            layout = EscapeLayout(lo, bits, decimals, 127.0)
            if dim >= 3:  # which read runs (one or two dimensions at m = 5 may allow the float32 one)
                assert (_f32_table(layout) is not None) == f32
            n = 8 * 3 + 1  # row_bits * n: every bit phase of a row's first byte
            span = (np.int64(1) << bits) - 1
            codes = np.where(rng.random((n, dim)) < 0.9, lo + rng.integers(0, 2**40, (n, dim)) % span,
                             rng.integers(-top, top + 1, (n, dim)))
            codes = np.clip(codes, -top, top)
            rows = EscapeRows(n, layout)
            rows.put_codes(codes, np.arange(n))
            for size in (1, 2, 3, 4, 5, 7, 8, 11, n):
                idx = np.concatenate([[n - 1], rng.integers(0, n, size - 1)])
                for dtype in (np.float32, np.float64):
                    want = (codes[idx] * layout.inv_scale).astype(dtype)
                    _read_path("portable")
                    got = rows.decode(idx, np.empty((size, dim), dtype))
                    _read_path("words")
                    assert got.tobytes() == want.tobytes() == rows.decode(idx, np.empty((size, dim), dtype)).tobytes()
    finally:
        _read_path(before)
