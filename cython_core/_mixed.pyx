# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled mixed-width kernels (see cython_core.mixed): pack rows with exceptions, gather + unpack with patches.

mixed_pack quantizes each row to paper codes c = rint(clip(x, -b, b) * 10^m) in a scratch row, then packs
c - lo[j] into bits[j] bits where it fits and emits an exception entry (row, j, c) where it does not (the
slot then holds 0). mixed_unpack reads each code of the first dimensions with one unaligned 8-byte load at
byte offset_j / 8, shifted by offset_j % 8 (a code of <= 32 bits plus 7 bits of shift fits in 64), into a
scratch row, then converts the row in a loop the compiler vectorizes (built twice: portable, and for AVX2,
chosen at run time); the last dimensions of a row, whose 8 bytes would run past the row, are read word by
word. On CPUs with AVX-512 VBMI (chosen at run time too) it instead decodes 16 dimensions of <= 25 bits at once
(a byte permute of the row's bytes, masked to the row, then per-lane shifts and masks) and the rest one by one. A row's exceptions are then patched in from the store's entries in use (``ExceptionStore.entries``, never its
free slots), walking from ``at[row]`` while the entry's row is that row, up to the last entry.

Values decode as ((double)(c - lo) + lo) * (1 / 10^m): the sum is exact, so this is (double)c * inv_scale,
the very value the uniform kernels give. Inputs are checked as in cython_core._kernels: every index against
the storage's rows before any loop, every buffer's dtype, shape and contiguity against the spec.

>>> import numpy as np
>>> from cython_core.mixed import MixedLayout
>>> spec = MixedLayout(lo=[-8, 0], bits=[4, 0], decimals=1, clamp=10.0)
>>> storage = np.zeros((3, spec.row_words), dtype=np.uint64)
>>> saturated, entries = mixed_pack(np.array([[0.3, 0.0], [-12.0, 0.1]]), storage, np.array([2, 0]), spec)
>>> saturated, entries.tolist(), storage[:, 0].tolist()  # row 0: -12.0 -> -100 (clamped) and 1 go to entries
(1, [(0, 0, -100), (0, 1, 1)], [0, 0, 11])
>>> at, table = np.array([0, -1, -1], dtype=np.int32), entries
>>> mixed_codes(storage, np.array([0, 2]), spec, at, table).tolist()
[[-100, 1], [3, 0]]
"""

import numpy as np

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcmp, memcpy, memset

from cython_core._support cimport *  # the shared C helpers and argument-buffer rules

from cython_core.errors import NonFiniteError
from cython_core.exceptions import EXCEPTION_DTYPE
from cython_core.mixed import MixedLayout

cdef extern from *:
    """
    #include <stdint.h>
    /* out[j] = (float or double)(((double)(int32)(code_j ^ 2**31) + base[j]) * inv), j < n, with
       code_j = (8 bytes at p + byte[j]) >> shift[j] & mask[j]: the decode of a row's first dimensions.
       The codes are extracted first (scalar integer work), then converted in a loop the compiler vectorizes
       (the int32 conversion and the add are exact; the multiply and the cast round to nearest). */
    #if defined(_MSC_VER)
    #define JR_RESTRICT __restrict
    #else
    #define JR_RESTRICT __restrict__
    #endif
    #define JR_DECODE_BODY \
        Py_ssize_t j; \
        for (j = 0; j < n; j++) \
            codes[j] = ((uint32_t)(jr_load64(p + byte[j]) >> shift[j]) & mask[j]) ^ 0x80000000u; \
        if (out32) { for (j = 0; j < n; j++) out32[j] = (float)(((double)(int32_t)codes[j] + base[j]) * inv); } \
        else { for (j = 0; j < n; j++) out64[j] = ((double)(int32_t)codes[j] + base[j]) * inv; }
    #define JR_DECODE_ARGS const unsigned char *p, const int32_t *JR_RESTRICT byte, \
        const uint32_t *JR_RESTRICT shift, const uint32_t *JR_RESTRICT mask, const double *JR_RESTRICT base, \
        double inv, Py_ssize_t n, uint32_t *JR_RESTRICT codes, float *JR_RESTRICT out32, double *JR_RESTRICT out64
    static void jr_decode(JR_DECODE_ARGS) {
        JR_DECODE_BODY
    }
    /* The same compiled for AVX2 (4 conversions at once), chosen at run time on x86-64 CPUs that have it: the
       build stays portable. */
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    __attribute__((target("avx2")))
    static void jr_decode_avx2(JR_DECODE_ARGS) {
        JR_DECODE_BODY
    }
    static int jr_has_avx2(void) { __builtin_cpu_init(); return __builtin_cpu_supports("avx2"); }
    #else
    #define jr_decode_avx2 jr_decode
    static int jr_has_avx2(void) { return 0; }
    #endif
    /* A group of up to 16 consecutive dimensions of <= 25 bits (a code and its shift fit in 4 bytes) for the
       AVX-512 VBMI decode: the row's 64 bytes from `win` (masked by `load` to the row's own bytes, so nothing
       past the row is read), lane l's 4 bytes picked by idx[4l..4l+3], shifted, masked, then converted as
       jr_decode does (separate add and multiply, no FMA): the same bits. `lanes` masks the stores. */
    typedef struct {
        uint8_t idx[64];
        uint32_t shift[16], mask[16];
        double base[16];
        uint64_t load;
        int32_t win, first;
        uint16_t lanes;
    } jr_group;
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    #include <immintrin.h>
    #define JR_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi")))
    JR_VBMI static CYTHON_INLINE void jr_convert_vbmi(const jr_group *g, __m512i v, __m512d inv,
                                                      float *out32, double *out64) {
        __m512d d0 = _mm512_cvtepi32_pd(_mm512_castsi512_si256(v));
        __m512d d1 = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(v, 1));
        d0 = _mm512_mul_pd(_mm512_add_pd(d0, _mm512_loadu_pd(g->base)), inv);
        d1 = _mm512_mul_pd(_mm512_add_pd(d1, _mm512_loadu_pd(g->base + 8)), inv);
        if (out32) {
            __m512 f = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(d0)), _mm512_cvtpd_ps(d1), 1);
            if (g->lanes == 0xFFFF) _mm512_storeu_ps(out32 + g->first, f);
            else _mm512_mask_storeu_ps(out32 + g->first, g->lanes, f);
        } else if (g->lanes == 0xFFFF) {
            _mm512_storeu_pd(out64 + g->first, d0);
            _mm512_storeu_pd(out64 + g->first + 8, d1);
        } else {
            _mm512_mask_storeu_pd(out64 + g->first, (__mmask8)g->lanes, d0);
            _mm512_mask_storeu_pd(out64 + g->first + 8, (__mmask8)(g->lanes >> 8), d1);
        }
    }
    /* Decode the n groups of a row at p into out32 (or out64, when out32 is NULL). */
    JR_VBMI static void jr_decode_vbmi(const unsigned char *p, const jr_group *g, Py_ssize_t n, double inv,
                                       float *out32, double *out64) {
        const __m512d vinv = _mm512_set1_pd(inv);
        const __m512i flip = _mm512_set1_epi32((int)0x80000000u);
        for (; n > 0; n--, g++) {
            __m512i w = _mm512_maskz_loadu_epi8(g->load, p + g->win);
            __m512i v = _mm512_permutexvar_epi8(_mm512_loadu_si512(g->idx), w);
            v = _mm512_and_si512(_mm512_srlv_epi32(v, _mm512_loadu_si512(g->shift)), _mm512_loadu_si512(g->mask));
            jr_convert_vbmi(g, _mm512_xor_si512(v, flip), vinv, out32, out64);
        }
    }
    static int jr_has_vbmi(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512vbmi");
    }
    #else
    static void jr_decode_vbmi(const unsigned char *p, const jr_group *g, Py_ssize_t n, double inv,
                               float *out32, double *out64) {}
    static int jr_has_vbmi(void) { return 0; }
    #endif
    """
    void jr_decode(const unsigned char *p, const int32_t *byte, const uint32_t *shift, const uint32_t *mask,
                   const double *base, double inv, Py_ssize_t n, uint32_t *codes, float *out32, double *out64) nogil
    void jr_decode_avx2(const unsigned char *p, const int32_t *byte, const uint32_t *shift, const uint32_t *mask,
                        const double *base, double inv, Py_ssize_t n, uint32_t *codes, float *out32,
                        double *out64) nogil
    int jr_has_avx2()
    ctypedef struct jr_group:
        unsigned char idx[64]
        uint32_t shift[16]
        uint32_t mask[16]
        double base[16]
        uint64_t load
        int32_t win, first
        uint16_t lanes
    void jr_decode_vbmi(const unsigned char *p, const jr_group *g, Py_ssize_t n, double inv, float *out32,
                        double *out64) nogil
    int jr_has_vbmi()

cdef bint _avx2 = jr_has_avx2() != 0
cdef bint _vbmi = jr_has_vbmi() != 0
_PATHS = {"avx512vbmi": jr_has_vbmi() != 0, "avx2": jr_has_avx2() != 0, "scalar": True}


def _simd(enabled=None) -> str:
    """The decode path that runs: "avx512vbmi", "avx2" or "scalar". ``enabled`` (tests) picks one: True the best
    the CPU has, False "scalar", or a path's name (the next one down where the CPU lacks it)."""
    global _avx2, _vbmi
    if enabled is not None:
        names = list(_PATHS)
        if enabled is True or enabled is False:
            enabled = names[0] if enabled else "scalar"
        if enabled not in _PATHS:
            raise ValueError(f"enabled must be True, False or one of {names}, got {enabled!r}")
        _vbmi = enabled == "avx512vbmi" and _PATHS["avx512vbmi"]
        _avx2 = enabled in ("avx512vbmi", "avx2") and _PATHS["avx2"]
    return "avx512vbmi" if _vbmi else "avx2" if _avx2 else "scalar"

cdef enum:
    PREFETCH_ROWS = 4    # rows ahead whose cache lines (and first exception entry) are requested meanwhile
    PREFETCH_AT = 8      # rows ahead whose ``at`` entry is requested (read PREFETCH_ROWS ahead)
    NOGIL_VALUES = 8192  # release the GIL only for calls at least this big (releasing costs ~0.1 us)
    SMALL_DISTINCT = 32  # rows checked for duplicates pairwise up to this many, by numpy beyond


cdef struct Entry:  # EXCEPTION_DTYPE, field for field (16 bytes, the padding zeroed)
    int64_t row
    uint16_t dim
    uint16_t pad
    int32_t code


cdef struct Entries:  # a growing array of entries (malloc'd; NULL until the first one)
    Entry* data
    Py_ssize_t n, cap


cdef struct Field:  # dimension j, for packing and for reading the row's last dimensions
    uint64_t mask   # 2**bits - 1
    int64_t lo
    int64_t offset  # bit offset in the row
    int32_t bits


cdef class _MixedTables:
    """Per-dimension tables of one MixedLayout, cached on the spec (specs are immutable). The unpack loop reads
    plain arrays: the byte and shift of each code's unaligned load, its mask, and lo + 2**31 as float64."""
    cdef Field* f
    cdef int32_t* byte    # offset // 8
    cdef uint32_t* shift  # offset % 8
    cdef uint32_t* mask   # 2**bits - 1 (bits <= 32)
    cdef double* base     # lo + 2**31 (exact: |lo| <= 2**40); decode adds it to (int32)(code - 2**31)
    cdef jr_group* groups  # the AVX-512 VBMI groups (64-byte aligned inside groups_raw)
    cdef void* groups_raw
    cdef int32_t* rest     # the dimensions in no group (a group of 16 with a width > 25), decoded one by one
    cdef Py_ssize_t dim, row_words, fast, n_groups, n_rest
    cdef double scale, inv, clamp
    cdef int64_t top

    def __cinit__(self, spec):
        cdef Py_ssize_t j
        self.dim, self.row_words = spec.dim, spec.row_words
        self.scale, self.inv, self.clamp, self.top = spec.scale, spec.inv_scale, spec.clamp, spec.top
        self.f = <Field*>malloc(self.dim * sizeof(Field))
        self.byte = <int32_t*>malloc(self.dim * sizeof(int32_t))
        self.shift = <uint32_t*>malloc(self.dim * sizeof(uint32_t))
        self.mask = <uint32_t*>malloc(self.dim * sizeof(uint32_t))
        self.base = <double*>malloc(self.dim * sizeof(double))
        if self.f == NULL or self.byte == NULL or self.shift == NULL or self.mask == NULL or self.base == NULL:
            raise MemoryError()
        row_bytes = self.row_words * 8
        self.fast = 0
        for j in range(self.dim):
            b, off, lo = int(spec.bits[j]), int(spec.offsets[j]), int(spec.lo[j])
            self.f[j].mask, self.f[j].lo, self.f[j].offset, self.f[j].bits = (1 << b) - 1, lo, off, b
            self.byte[j], self.shift[j], self.mask[j], self.base[j] = off >> 3, off & 7, (1 << b) - 1, lo + 2.0**31
            if JR_LITTLE_ENDIAN and (off >> 3) + 8 <= row_bytes:  # offsets grow: these dims are a prefix
                self.fast = j + 1
        self._group(spec, row_bytes)

    cdef int _group(self, spec, Py_ssize_t row_bytes) except -1:
        """Split the dimensions into runs of 16 (the last may be shorter): a run whose widths are all <= 25
        becomes a jr_group, the others' dimensions go to ``rest``."""
        cdef Py_ssize_t first, j, l, n = (self.dim + 15) // 16
        cdef jr_group* g
        self.groups_raw = malloc(n * sizeof(jr_group) + 64)
        self.rest = <int32_t*>malloc((self.dim + 1) * sizeof(int32_t))
        if self.groups_raw == NULL or self.rest == NULL:
            raise MemoryError()
        self.groups = <jr_group*>((<size_t>self.groups_raw + 63) & ~(<size_t>63))
        memset(self.groups, 0, n * sizeof(jr_group))
        for first in range(0, self.dim, 16):
            lanes = range(first, min(first + 16, self.dim))
            win = self.byte[first]
            if not (JR_LITTLE_ENDIAN and all(self.f[j].bits <= 25 and self.byte[j] - win + 3 < 64 for j in lanes)):
                for j in lanes:
                    self.rest[self.n_rest] = j
                    self.n_rest += 1
                continue
            g = self.groups + self.n_groups
            self.n_groups += 1
            g.win, g.first, g.lanes = win, first, (1 << len(lanes)) - 1
            g.load = 2**64 - 1 if row_bytes - win >= 64 else (1 << (row_bytes - win)) - 1
            for j in lanes:
                l = j - first
                for k in range(4):
                    g.idx[4 * l + k] = self.byte[j] - win + k
                g.shift[l], g.mask[l], g.base[l] = self.shift[j], self.mask[j], self.base[j]
        return 0

    def __dealloc__(self):
        free(self.groups_raw)
        free(self.rest)
        free(self.f)
        free(self.byte)
        free(self.shift)
        free(self.mask)
        free(self.base)


cdef _MixedTables _tables(spec):
    return <_MixedTables>_spec_tables(spec, MixedLayout, _MixedTables)


# -- argument buffers (the rules of cython_core._support) -------------------------------------------

cdef int _get_store(at, table, Py_ssize_t n_rows, Py_buffer* ab, Py_buffer* tb) except -1:
    """Buffers of the exception store's ``at`` (int32 (n_rows,)) and ``table`` (EXCEPTION_DTYPE, 1-D)."""
    if not (isinstance(at, np.ndarray) and at.dtype == np.int32 and at.shape == (n_rows,)
            and at.flags.c_contiguous):
        raise ValueError(f"at must be a C-contiguous int32 array of shape ({n_rows},) (one entry per storage row), "
                         f"got {getattr(at, 'dtype', type(at).__name__)} {getattr(at, 'shape', '')}")
    if not (isinstance(table, np.ndarray) and table.dtype == EXCEPTION_DTYPE and table.ndim == 1
            and table.flags.c_contiguous):
        raise ValueError(f"table must be a C-contiguous 1-D EXCEPTION_DTYPE array, got "
                         f"{getattr(table, 'dtype', type(table).__name__)} {getattr(table, 'shape', '')}")
    PyObject_GetBuffer(at, ab, PyBUF_C_CONTIGUOUS)
    try:
        PyObject_GetBuffer(table, tb, PyBUF_C_CONTIGUOUS)
    except BaseException:
        PyBuffer_Release(ab)
        raise
    return 0


cdef int _check_distinct(const int64_t* idx, Py_ssize_t n, rows_obj) except -1:
    """Rows written in one call must differ: each row's exceptions are one run of entries."""
    cdef Py_ssize_t i, k
    cdef bint dup = False
    if n <= SMALL_DISTINCT:
        for i in range(n):
            for k in range(i):
                dup = dup or idx[i] == idx[k]
    else:
        dup = np.unique(np.asarray(rows_obj)).size != n
    if dup:
        raise ValueError("rows must be distinct (each row is written once per call)")
    return 0


# -- pack ------------------------------------------------------------------------------------------

ctypedef fused out_t:
    float
    double
    int64_t


cdef inline int _push(Entries* ex, int64_t row, Py_ssize_t dim, int64_t code) noexcept nogil:
    cdef Entry* grown
    if ex.n == ex.cap:
        grown = <Entry*>realloc(ex.data, (64 if ex.cap == 0 else 2 * ex.cap) * sizeof(Entry))
        if grown == NULL:
            return -1
        ex.data = grown
        ex.cap = 64 if ex.cap == 0 else 2 * ex.cap
    ex.data[ex.n].row = row
    ex.data[ex.n].dim = <uint16_t>dim
    ex.data[ex.n].pad = 0
    ex.data[ex.n].code = <int32_t>code
    ex.n += 1
    return 0


cdef int _pack_row(const int64_t* codes, int64_t row_id, _MixedTables t, uint64_t* row,
                   Entries* ex) noexcept nogil:
    """Little-endian bit stream of codes - lo into whole words (padding zero); codes out of range -> entries."""
    cdef Py_ssize_t j
    cdef uint64_t s
    cdef BitWriter b = BitWriter(row, 0, 0, 0)
    for j in range(t.dim):
        s = <uint64_t>(codes[j] - t.f[j].lo)
        if s > t.f[j].mask:
            if _push(ex, row_id, j, codes[j]) < 0:
                return -1
            s = 0
        _put_bits(&b, s, t.f[j].bits)
    _end_bits(&b)
    return 0


cdef void _quantize_row(const real_in* x, _MixedTables t, int64_t* codes, Py_ssize_t* saturated) noexcept nogil:
    """Paper codes of one row (as cython_core._kernels computes them for CodeLayout.uniform)."""
    cdef Py_ssize_t j
    cdef double sat = 0.0, v, hi = t.clamp, lo = -t.clamp, scale = t.scale
    for j in range(t.dim):
        v = x[j]
        sat += _outside(v, lo, hi)
        v = v if v >= lo else lo
        v = v if v <= hi else hi
        codes[j] = jr_round(v * scale)
    saturated[0] += <Py_ssize_t>sat


cdef Py_ssize_t _encode(const real_in* x, Py_ssize_t n, const int64_t* rows, uint64_t* storage, _MixedTables t,
                        Py_ssize_t* saturated, Py_ssize_t* first, Entries* ex) noexcept nogil:
    """Encode n rows; with non-finite values write nothing and return their count; -1 when out of memory."""
    cdef Py_ssize_t i, bad = _find_nonfinite(x, n * t.dim, first)
    cdef int64_t* codes
    if bad:
        return bad
    codes = <int64_t*>malloc((t.dim + 1) * sizeof(int64_t))
    if codes == NULL:
        return -1
    for i in range(n):
        _quantize_row(x + i * t.dim, t, codes, saturated)
        if _pack_row(codes, rows[i], t, storage + rows[i] * t.row_words, ex) < 0:
            free(codes)
            return -1
    free(codes)
    return 0


cdef Py_ssize_t _encode_any(Kind kind, const void* x, Py_ssize_t n, const int64_t* rows, uint64_t* storage,
                            _MixedTables t, Py_ssize_t* saturated, Py_ssize_t* first, Entries* ex) noexcept nogil:
    if kind == F32:
        return _encode(<const float*>x, n, rows, storage, t, saturated, first, ex)
    return _encode(<const double*>x, n, rows, storage, t, saturated, first, ex)


cdef int _pack_codes(const int64_t* codes, Py_ssize_t n, const int64_t* rows, uint64_t* storage, _MixedTables t,
                     Entries* ex) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if _pack_row(codes + i * t.dim, rows[i], t, storage + rows[i] * t.row_words, ex) < 0:
            return -1
    return 0


cdef Py_ssize_t _first_out_of_grid(const int64_t* codes, Py_ssize_t count, int64_t top) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(count):
        if codes[i] < -top or codes[i] > top:
            return i
    return -1


_NO_ENTRIES = np.zeros(0, dtype=EXCEPTION_DTYPE)
_NO_ENTRIES.setflags(write=False)


cdef object _entries_array(Entries* ex):
    """The entries as a new EXCEPTION_DTYPE array (a shared read-only empty one when there are none)."""
    if ex.n == 0:
        return _NO_ENTRIES
    arr = np.empty(ex.n, dtype=EXCEPTION_DTYPE)
    cdef unsigned char[::1] raw = arr.view(np.uint8)
    memcpy(&raw[0], ex.data, ex.n * sizeof(Entry))
    return arr


cdef int _get_rows(rows, Py_ssize_t n, Py_ssize_t n_rows, Py_buffer* rb) except -1:
    _get_indices(rows, rb, "rows")
    try:
        if rb.ndim > 1 or (rb.shape[0] if rb.ndim else 1) != n:
            raise ValueError(f"rows must hold one index per row of x ({n}), got shape "
                             f"{tuple(rb.shape[i] for i in range(rb.ndim))}")
        _check_indices(<const int64_t*>rb.buf, n, n_rows, "rows")
        _check_distinct(<const int64_t*>rb.buf, n, rows)
    except BaseException:
        PyBuffer_Release(rb)
        raise
    return 0


cdef Py_ssize_t _rows_of(Py_buffer* xb, _MixedTables t, str name) except -1:
    if not ((xb.ndim == 1 and xb.shape[0] == t.dim) or (xb.ndim == 2 and xb.shape[1] == t.dim)):
        raise ValueError(f"{name} must have shape (n, {t.dim}) or ({t.dim},), "
                         f"got {tuple(xb.shape[i] for i in range(xb.ndim))}")
    return 1 if xb.ndim == 1 else xb.shape[0]


cdef struct Dest:  # where packed rows go: the storage and the rows' indices, with the buffers held
    Py_buffer storage, rows
    bint have_storage, have_rows


cdef int _open_dest(Dest* d, storage, rows, Py_ssize_t n, _MixedTables t, int flags) except -1:
    """Hold ``storage`` (``flags``: PyBUF_WRITABLE to write it) and ``rows`` (n distinct indices into it);
    _close_dest releases what is held."""
    d.have_storage = _get_storage(storage, &d.storage, t.row_words, flags) == 0
    d.have_rows = _get_rows(rows, n, d.storage.shape[0], &d.rows) == 0
    return 0


cdef void _close_dest(Dest* d, Entries* ex):
    free(ex.data)
    if d.have_storage:
        PyBuffer_Release(&d.storage)
    if d.have_rows:
        PyBuffer_Release(&d.rows)


def mixed_pack(x, storage, rows, spec) -> tuple:
    """Encode ``x`` (n, D) (or (D,)) into rows ``rows`` (n distinct indices) of ``storage``; return
    ``(saturated, entries)``: how many values were clamped at +-b, and the EXCEPTION_DTYPE entries
    (rows[i], j, code) of the codes out of their rows' ranges, in row-major order.

    x is float32 or float64 (anything else is converted to float64). Non-finite values raise NonFiniteError
    with nothing written.
    """
    cdef _MixedTables t = _tables(spec)
    cdef Py_buffer xb
    cdef Dest d = Dest(have_storage=False, have_rows=False)
    cdef Py_ssize_t n, first = 0, bad = 0, saturated = 0
    cdef Entries ex = Entries(NULL, 0, 0)
    cdef Kind kind
    _get_values(x, &xb, F32, F64, F64)
    try:
        n = _rows_of(&xb, t, "x")
        _open_dest(&d, storage, rows, n, t, PyBUF_WRITABLE)
        kind = _kind(&xb)
        if n * t.dim >= NOGIL_VALUES:
            with nogil:
                bad = _encode_any(kind, xb.buf, n, <const int64_t*>d.rows.buf, <uint64_t*>d.storage.buf, t,
                                  &saturated, &first, &ex)
        else:
            bad = _encode_any(kind, xb.buf, n, <const int64_t*>d.rows.buf, <uint64_t*>d.storage.buf, t,
                              &saturated, &first, &ex)
        if bad < 0:
            raise MemoryError()
        if bad:
            raise NonFiniteError(bad, first // t.dim, first % t.dim)
        return saturated, _entries_array(&ex)
    finally:
        PyBuffer_Release(&xb)
        _close_dest(&d, &ex)


cdef bint _holds(const uint64_t* storage, const int64_t* rows, Py_ssize_t n, const uint64_t* words,
                 const Entries* ex, const int32_t* at, const Entry* table, Py_ssize_t used,
                 Py_ssize_t row_words) noexcept nogil:
    """Whether storage rows ``rows`` hold ``words`` (n rows) and exactly the entries ``ex`` (row = position in
    ``rows``, in row order): each row's stored entries are one run of ``table`` from ``at[row]`` on."""
    cdef Py_ssize_t i, e = 0
    cdef int64_t k, r
    for i in range(n):
        r = rows[i]
        if memcmp(words + i * row_words, storage + r * row_words, row_words * sizeof(uint64_t)) != 0:
            return False
        k = at[r]
        while e < ex.n and ex.data[e].row == i:
            if k < 0 or k >= used or table[k].row != r or table[k].dim != ex.data[e].dim \
                    or table[k].code != ex.data[e].code:
                return False
            k += 1
            e += 1
        if 0 <= k < used and table[k].row == r:  # the row holds more entries than these
            return False
    return True


def mixed_match(x, storage, rows, spec, at, table) -> tuple:
    """Encode ``x`` as :func:`mixed_pack` would, writing nothing: returns ``(saturated, entries, held)``, the
    entries' ``row`` being the position in ``x`` (0..n-1), and ``held`` whether rows ``rows`` of ``storage``
    already hold exactly these words and exceptions (``at`` and ``table``: the rows' ExceptionStore's ``at`` and
    ``entries``). Non-finite values raise NonFiniteError."""
    cdef _MixedTables t = _tables(spec)
    cdef Py_buffer xb, ab, tb
    cdef Dest d = Dest(have_storage=False, have_rows=False)
    cdef bint have_store = False, held = False
    cdef Py_ssize_t n, i, first = 0, bad = 0, saturated = 0
    cdef Entries ex = Entries(NULL, 0, 0)
    cdef int64_t* positions = NULL
    cdef uint64_t* words = NULL
    _get_values(x, &xb, F32, F64, F64)
    try:
        n = _rows_of(&xb, t, "x")
        _open_dest(&d, storage, rows, n, t, 0)
        have_store = _get_store(at, table, d.storage.shape[0], &ab, &tb) == 0
        positions = <int64_t*>malloc(n * sizeof(int64_t) + n * t.row_words * sizeof(uint64_t) + 1)
        if positions == NULL:
            raise MemoryError()
        words = <uint64_t*>(positions + n)
        for i in range(n):
            positions[i] = i
        bad = _encode_any(_kind(&xb), xb.buf, n, positions, words, t, &saturated, &first, &ex)
        if bad < 0:
            raise MemoryError()
        if bad:
            raise NonFiniteError(bad, first // t.dim, first % t.dim)
        held = _holds(<const uint64_t*>d.storage.buf, <const int64_t*>d.rows.buf, n, words, &ex,
                      <const int32_t*>ab.buf, <const Entry*>tb.buf, tb.shape[0], t.row_words)
        return saturated, _entries_array(&ex), held
    finally:
        free(positions)
        PyBuffer_Release(&xb)
        if have_store:
            PyBuffer_Release(&ab)
            PyBuffer_Release(&tb)
        _close_dest(&d, &ex)


def mixed_pack_codes(codes, storage, rows, spec):
    """Pack paper codes ``codes`` (int64 (n, D) or (D,), each in -rint(b 10^m)..rint(b 10^m)) into rows
    ``rows`` of ``storage``; return the EXCEPTION_DTYPE entries of the codes out of their rows' ranges."""
    cdef _MixedTables t = _tables(spec)
    cdef Py_buffer cb
    cdef Dest d = Dest(have_storage=False, have_rows=False)
    cdef Py_ssize_t n, bad
    cdef int status = 0
    cdef Entries ex = Entries(NULL, 0, 0)
    if np.asarray(codes).dtype.kind not in "iu":
        raise ValueError(f"codes must be integers, got {np.asarray(codes).dtype}")
    _get_values(codes, &cb, I64, I64, I64)
    try:
        n = _rows_of(&cb, t, "codes")
        bad = _first_out_of_grid(<const int64_t*>cb.buf, n * t.dim, t.top)
        if bad >= 0:
            raise ValueError(f"codes must be paper codes in -{t.top}..{t.top}; codes[{bad // t.dim}, "
                             f"{bad % t.dim}] = {(<const int64_t*>cb.buf)[bad]} is not")
        _open_dest(&d, storage, rows, n, t, PyBUF_WRITABLE)
        if n * t.dim >= NOGIL_VALUES:
            with nogil:
                status = _pack_codes(<const int64_t*>cb.buf, n, <const int64_t*>d.rows.buf,
                                     <uint64_t*>d.storage.buf, t, &ex)
        else:
            status = _pack_codes(<const int64_t*>cb.buf, n, <const int64_t*>d.rows.buf, <uint64_t*>d.storage.buf,
                                 t, &ex)
        if status < 0:
            raise MemoryError()
        return _entries_array(&ex)
    finally:
        PyBuffer_Release(&cb)
        _close_dest(&d, &ex)


# -- gather + unpack -------------------------------------------------------------------------------

cdef inline uint32_t _code(const uint64_t* row, _MixedTables t, Py_ssize_t j) noexcept nogil:
    """Code j of a row less lo: one unaligned 8-byte load for the first dimensions, else word by word."""
    if j < t.fast:
        return <uint32_t>(jr_load64(<const unsigned char*>row + t.byte[j]) >> t.shift[j]) & t.mask[j]
    return (<uint32_t>_read_words(row, t.f[j].offset, t.f[j].bits) & t.mask[j]) if t.f[j].bits else 0


cdef inline void _unpack_row(const uint64_t* row, _MixedTables t, uint32_t* codes, out_t* out) noexcept nogil:
    """Decode one row: with AVX-512 VBMI its groups of 16 dimensions at once and the rest one by one; else the
    first dimensions with one unaligned 8-byte load per code (AVX2 where the CPU has it), the last ones (whose
    8 bytes would run past the row) word by word; int64 out: the codes."""
    cdef const unsigned char* p = <const unsigned char*>row
    cdef Py_ssize_t i, j, start = t.fast
    cdef double inv = t.inv
    if out_t is not int64_t and _vbmi:
        if out_t is float:
            jr_decode_vbmi(p, t.groups, t.n_groups, inv, out, NULL)
        else:
            jr_decode_vbmi(p, t.groups, t.n_groups, inv, NULL, out)
        for i in range(t.n_rest):
            j = t.rest[i]
            out[j] = <out_t>((<double>(<int32_t>(_code(row, t, j) ^ 0x80000000u)) + t.base[j]) * inv)
        return
    if out_t is float:
        if _avx2:
            jr_decode_avx2(p, t.byte, t.shift, t.mask, t.base, inv, t.fast, codes, out, NULL)
        else:
            jr_decode(p, t.byte, t.shift, t.mask, t.base, inv, t.fast, codes, out, NULL)
    elif out_t is double:
        if _avx2:
            jr_decode_avx2(p, t.byte, t.shift, t.mask, t.base, inv, t.fast, codes, NULL, out)
        else:
            jr_decode(p, t.byte, t.shift, t.mask, t.base, inv, t.fast, codes, NULL, out)
    else:
        start = 0
    for j in range(start, t.dim):
        if out_t is int64_t:
            out[j] = <int64_t>_code(row, t, j) + t.f[j].lo
        else:
            out[j] = <out_t>((<double>(<int32_t>(_code(row, t, j) ^ 0x80000000u)) + t.base[j]) * inv)


cdef int _gather(const uint64_t* storage, const int64_t* idx, Py_ssize_t n, _MixedTables t, const int32_t* at,
                 const Entry* table, Py_ssize_t n_table, out_t* out) noexcept nogil:
    """Decode n rows and patch their exceptions; -1: out of memory, -2: an entry's dim is out of range,
    -3: at points past table."""
    cdef Py_ssize_t i, row_words = t.row_words, dim = t.dim
    cdef int64_t r, k
    cdef out_t* o
    cdef uint32_t* codes = <uint32_t*>malloc((dim + 1) * sizeof(uint32_t))
    if codes == NULL:
        return -1
    for i in range(min(n, PREFETCH_AT)):
        JR_PREFETCH(at + idx[i])
    for i in range(min(n, PREFETCH_ROWS)):
        _prefetch_row(storage + idx[i] * row_words, row_words)
    for i in range(n):
        if i + PREFETCH_AT < n:
            JR_PREFETCH(at + idx[i + PREFETCH_AT])
        if i + PREFETCH_ROWS < n:
            _prefetch_row(storage + idx[i + PREFETCH_ROWS] * row_words, row_words)
            k = at[idx[i + PREFETCH_ROWS]]
            if 0 <= k < n_table:
                JR_PREFETCH(table + k)
        r = idx[i]
        o = out + i * dim
        _unpack_row(storage + r * row_words, t, codes, o)
        k = at[r]
        if k < 0:
            continue
        if k >= n_table:
            free(codes)
            return -3
        while k < n_table and table[k].row == r:
            if table[k].dim >= dim:
                free(codes)
                return -2
            if out_t is int64_t:
                o[table[k].dim] = table[k].code
            else:
                o[table[k].dim] = <out_t>(<double>table[k].code * t.inv)
            k += 1
    free(codes)
    return 0


cdef int _gather_any(Kind kind, const uint64_t* storage, const int64_t* idx, Py_ssize_t n, _MixedTables t,
                     const int32_t* at, const Entry* table, Py_ssize_t n_table, void* out) noexcept nogil:
    if kind == F32:
        return _gather(storage, idx, n, t, at, table, n_table, <float*>out)
    if kind == F64:
        return _gather(storage, idx, n, t, at, table, n_table, <double*>out)
    return _gather(storage, idx, n, t, at, table, n_table, <int64_t*>out)


cdef int _decode(storage, indices, _MixedTables t, at, table, out, bint codes) except -1:
    cdef Py_buffer sb, ib, ob, ab, tb
    cdef bint have_s = False, have_i = False, have_o = False, have_store = False
    cdef Py_ssize_t n
    cdef Kind kind = OTHER
    cdef int status = 0
    try:
        have_s = _get_storage(storage, &sb, t.row_words, 0) == 0
        have_i = _get_indices(indices, &ib, "indices") == 0
        if ib.ndim != 1:
            raise ValueError(f"indices must be 1-D, got shape {tuple(ib.shape[i] for i in range(ib.ndim))}")
        n = ib.shape[0]
        have_store = _get_store(at, table, sb.shape[0], &ab, &tb) == 0
        have_o = _try_buffer(out, &ob, PyBUF_WRITABLE)
        if have_o:
            kind = _kind(&ob)
        if ((kind != I64 if codes else kind not in (F32, F64)) or ob.ndim != 2 or ob.shape[0] != n
                or ob.shape[1] != t.dim):
            raise ValueError(f"out must be a writable C-contiguous float32 array of shape ({n}, {t.dim}), "
                             f"got {getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
        _check_indices(<const int64_t*>ib.buf, n, sb.shape[0], "indices")
        if n * t.dim >= NOGIL_VALUES:
            with nogil:
                status = _gather_any(kind, <const uint64_t*>sb.buf, <const int64_t*>ib.buf, n, t,
                                     <const int32_t*>ab.buf, <const Entry*>tb.buf, tb.shape[0], ob.buf)
        else:
            status = _gather_any(kind, <const uint64_t*>sb.buf, <const int64_t*>ib.buf, n, t,
                                 <const int32_t*>ab.buf, <const Entry*>tb.buf, tb.shape[0], ob.buf)
    finally:
        if have_s:
            PyBuffer_Release(&sb)
        if have_i:
            PyBuffer_Release(&ib)
        if have_o:
            PyBuffer_Release(&ob)
        if have_store:
            PyBuffer_Release(&ab)
            PyBuffer_Release(&tb)
    if status == -1:
        raise MemoryError()
    if status == -2:
        raise ValueError(f"table holds an entry whose dim is not in 0..{t.dim - 1}")
    if status == -3:
        raise ValueError("at points past the end of table")
    return 0


def mixed_unpack(storage, indices, spec, at, table, out) -> None:
    """Decode rows ``indices`` of ``storage`` into ``out`` (float32 or float64, C-contiguous, (n, D)), patching
    the exceptions of rows whose ``at[row] >= 0`` from ``table`` (an ExceptionStore's ``at`` and ``entries``:
    the walk ends at the end of ``table``, so it must hold the entries in use, not the free slots)."""
    _decode(storage, indices, _tables(spec), at, table, out, False)


def mixed_codes(storage, indices, spec, at, table):
    """The paper codes (int64 (n, D)) of rows ``indices`` of ``storage``, exceptions included (``at`` and
    ``table`` as :func:`mixed_unpack` takes them)."""
    cdef _MixedTables t = _tables(spec)
    out = np.empty((len(np.atleast_1d(indices)), t.dim), dtype=np.int64)
    _decode(storage, indices, t, at, table, out, True)
    return out


# -- the exception store's bookkeeping (ExceptionStore.put calls these) ------------------------------

_I32, _I64 = np.dtype(np.int32), np.dtype(np.int64)

cdef int _get_raw(obj, Py_buffer* view, int flags, dtype, str name) except -1:
    """A buffer of ``obj``, a C-contiguous 1-D numpy array of ``dtype``."""
    if not (isinstance(obj, np.ndarray) and obj.ndim == 1 and obj.dtype == dtype and obj.flags.c_contiguous):
        raise ValueError(f"{name} must be a C-contiguous 1-D {dtype} array, got "
                         f"{getattr(obj, 'dtype', type(obj).__name__)} {getattr(obj, 'shape', '')}")
    PyObject_GetBuffer(obj, view, flags | PyBUF_C_CONTIGUOUS)
    return 0


def _store_drop(at, table, Py_ssize_t used, rows) -> int:
    """Mark dead (row = -1) the entries of storage ``rows`` (int64) and set their ``at`` to -1; return how many
    entries died. ``at`` int32, ``table`` EXCEPTION_DTYPE, ``used`` the table's append pointer."""
    cdef Py_buffer ab, tb, rb
    cdef Py_ssize_t i, killed = 0, n_rows, n
    cdef int64_t r, k
    cdef int32_t* at_p
    cdef Entry* tab
    cdef const int64_t* rows_p
    _get_raw(at, &ab, PyBUF_WRITABLE, _I32, "at")
    try:
        _get_raw(table, &tb, PyBUF_WRITABLE, EXCEPTION_DTYPE, "table")
        try:
            _get_raw(rows, &rb, 0, _I64, "rows")
            at_p, tab, rows_p = <int32_t*>ab.buf, <Entry*>tb.buf, <const int64_t*>rb.buf
            n_rows, n = ab.shape[0], rb.shape[0]
            used = min(used, tb.shape[0])
            try:
                _check_indices(rows_p, n, n_rows, "rows")
                for i in range(n):
                    r = rows_p[i]
                    k = at_p[r]
                    if k < 0:
                        continue
                    while k < used and tab[k].row == r:
                        tab[k].row = -1
                        killed += 1
                        k += 1
                    at_p[r] = -1
            finally:
                PyBuffer_Release(&rb)
        finally:
            PyBuffer_Release(&tb)
    finally:
        PyBuffer_Release(&ab)
    return killed


def _store_append(at, table, Py_ssize_t used, entries, per_dim) -> None:
    """Copy ``entries`` (grouped by row) to ``table[used:]``, point ``at`` of each row at its first entry and
    count them in ``per_dim``; the caller made room and dropped the rows' old entries."""
    cdef Py_buffer ab, tb, eb, pb
    cdef Py_ssize_t k, m, n_rows, dim
    cdef int32_t* at_p
    cdef Entry* tab
    cdef const Entry* ent
    cdef int64_t* counts
    _get_raw(at, &ab, PyBUF_WRITABLE, _I32, "at")
    try:
        _get_raw(table, &tb, PyBUF_WRITABLE, EXCEPTION_DTYPE, "table")
        try:
            _get_raw(entries, &eb, 0, EXCEPTION_DTYPE, "entries")
            try:
                _get_raw(per_dim, &pb, PyBUF_WRITABLE, _I64, "per_dim")
                at_p, tab, ent, counts = <int32_t*>ab.buf, <Entry*>tb.buf, <const Entry*>eb.buf, <int64_t*>pb.buf
                n_rows, m, dim = ab.shape[0], eb.shape[0], pb.shape[0]
                try:
                    if used < 0 or used + m > tb.shape[0]:
                        raise ValueError(f"table has no room for {m} entries at {used}")
                    for k in range(m):
                        if <uint64_t>ent[k].row >= <uint64_t>n_rows or ent[k].dim >= dim:
                            raise ValueError(f"entries[{k}] = ({ent[k].row}, {ent[k].dim}, ...) is not a storage row "
                                             f"in 0..{n_rows - 1} and a dim in 0..{dim - 1}")
                    memcpy(tab + used, ent, m * sizeof(Entry))
                    for k in range(m):
                        if k == 0 or ent[k].row != ent[k - 1].row:
                            at_p[ent[k].row] = <int32_t>(used + k)
                        counts[ent[k].dim] += 1
                finally:
                    PyBuffer_Release(&pb)
            finally:
                PyBuffer_Release(&eb)
        finally:
            PyBuffer_Release(&tb)
    finally:
        PyBuffer_Release(&ab)


def _store_check(at, rows, entries, Py_ssize_t dim) -> None:
    """Refuse (ValueError / IndexError, nothing changed) ``rows`` (int64) that repeat or lie outside ``at``, and
    ``entries`` whose row is not among ``rows``, whose rows are not grouped, or whose dim is not below ``dim``.
    Marks the rows in ``at`` meanwhile (-2: being written, -3: its entries seen) and restores it."""
    cdef Py_buffer ab, rb, eb
    cdef Py_ssize_t i, k, n, m, n_rows
    cdef int32_t* at_p
    cdef const int64_t* rows_p
    cdef const Entry* ent
    cdef int32_t* saved
    cdef int64_t r
    message = None
    _get_raw(at, &ab, PyBUF_WRITABLE, _I32, "at")
    try:
        _get_raw(rows, &rb, 0, _I64, "rows")
        try:
            _get_raw(entries, &eb, 0, EXCEPTION_DTYPE, "entries")
            at_p, rows_p, ent = <int32_t*>ab.buf, <const int64_t*>rb.buf, <const Entry*>eb.buf
            n_rows, n, m = ab.shape[0], rb.shape[0], eb.shape[0]
            saved = NULL
            try:
                _check_indices(rows_p, n, n_rows, "rows")
                saved = <int32_t*>malloc((n + 1) * sizeof(int32_t))
                if saved == NULL:
                    n = 0
                    raise MemoryError()
                for i in range(n):
                    saved[i] = at_p[rows_p[i]]
                    if saved[i] == -2:
                        message = "rows must be distinct"
                        n = i  # restore only the rows marked so far
                        break
                    at_p[rows_p[i]] = -2
                for k in range(m if message is None else 0):
                    r = ent[k].row
                    if <uint64_t>r >= <uint64_t>n_rows or ent[k].dim >= dim:
                        message = (f"entries[{k}] must have a row in 0..{n_rows - 1} and a dim in 0..{dim - 1}, "
                                   f"got row {r}, dim {ent[k].dim}")
                        break
                    if k == 0 or r != ent[k - 1].row:
                        if at_p[r] == -3:
                            message = "entries must be grouped by row (each row's entries consecutive)"
                            break
                        if at_p[r] != -2:
                            message = f"entries must belong to rows being written; row {r} is not"
                            break
                        at_p[r] = -3
            finally:
                if saved != NULL:
                    for i in range(n):
                        at_p[rows_p[i]] = saved[i]
                free(saved)
                PyBuffer_Release(&eb)
        finally:
            PyBuffer_Release(&rb)
    finally:
        PyBuffer_Release(&ab)
    if message is not None:
        raise ValueError(message)
