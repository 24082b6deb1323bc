# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled mixed-width kernels (see cython_core.mixed): pack rows with exceptions, gather + unpack with patches.

mixed_pack quantizes each row to paper codes c = rint(clip(x, -b, b) * 10^m) in a scratch row, then packs
c - lo[j] into bits[j] bits where it fits and emits an exception entry (row, j, c) where it does not (the
slot then holds 0). mixed_unpack reads each code of the first dimensions with one unaligned 8-byte load at
byte offset_j / 8, shifted by offset_j % 8 (a code of <= 32 bits plus 7 bits of shift fits in 64); the last
dimensions of a row, whose 8 bytes would run past the row, are read word by word. A row's exceptions are
then patched in from the store's table, walking from ``at[row]`` while the entry's row is that row.

Values decode as ((double)(c - lo) + lo) * (1 / 10^m): the sum is exact, so this is (double)c * inv_scale,
the very value the uniform kernels give. Inputs are checked as in cython_core._kernels: every index against
the storage's rows before any loop, every buffer's dtype, shape and contiguity against the spec.

>>> import numpy as np
>>> from cython_core.mixed import MixedSpec
>>> spec = MixedSpec(lo=[-8, 0], bits=[4, 0], decimals=1, clamp=10.0)
>>> storage = np.zeros((3, spec.row_words), dtype=np.uint64)
>>> saturated, entries = mixed_pack(np.array([[0.3, 0.0], [-12.0, 0.1]]), storage, np.array([2, 0]), spec)
>>> saturated, entries.tolist(), storage[:, 0].tolist()  # row 0: -12.0 -> -100 (clamped) and 1 go to entries
(1, [(0, 0, -100), (0, 1, 1)], [0, 0, 11])
>>> at, table = np.array([0, -1, -1], dtype=np.int32), entries
>>> mixed_codes(storage, np.array([0, 2]), spec, at, table).tolist()
[[-100, 1], [3, 0]]
"""

import numpy as np

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from libc.math cimport isfinite
from libc.stdint cimport int32_t, int64_t, uint16_t, uint64_t
from libc.stdlib cimport free, malloc, realloc
from libc.string cimport memcpy

from cython_core.errors import NonFiniteError
from cython_core.exceptions import EXCEPTION_DTYPE
from cython_core.indices import as_indices
from cython_core.mixed import MixedSpec

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    #include <string.h>
    #if defined(__GNUC__) || defined(__clang__)
    #define JR_PREFETCH(p) __builtin_prefetch((const void *)(p), 0, 3)
    #else
    #define JR_PREFETCH(p) ((void)0)
    #endif
    #if (defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__) || defined(_M_X64) \\
        || defined(_M_IX86) || defined(_M_ARM64)
    #define JR_LITTLE_ENDIAN 1
    #else
    #define JR_LITTLE_ENDIAN 0
    #endif
    static CYTHON_INLINE uint64_t jr_load64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }
    static CYTHON_INLINE uint64_t jr_bits(double d) { uint64_t v; memcpy(&v, &d, 8); return v; }
    /* rint(t) as an integer, round half to even in the default rounding mode; |t| < 2**51. */
    #if defined(__SSE4_1__) || defined(__aarch64__) || defined(_M_ARM64)
    static CYTHON_INLINE int64_t jr_round(double t) { return (int64_t)rint(t); }
    #else
    static CYTHON_INLINE int64_t jr_round(double t) {
        double s = t + 6755399441055744.0;  /* 1.5 * 2**52: the sum's ulp is 1, so the add rounds t */
        int64_t bits; memcpy(&bits, &s, 8);
        return bits - INT64_C(0x4338000000000000);
    }
    #endif
    """
    void JR_PREFETCH(const void *p) nogil
    bint JR_LITTLE_ENDIAN
    uint64_t jr_load64(const unsigned char *p) nogil
    uint64_t jr_bits(double d) nogil
    int64_t jr_round(double t) nogil

cdef enum:
    PREFETCH_ROWS = 4    # rows ahead whose cache lines (and ``at`` entry) are requested while this row decodes
    NOGIL_VALUES = 8192  # release the GIL only for calls at least this big (releasing costs ~0.1 us)
    SMALL_DISTINCT = 32  # rows checked for duplicates pairwise up to this many, by numpy beyond

cdef enum Kind:
    OTHER, F32, F64, I64, U64


cdef struct Entry:  # EXCEPTION_DTYPE, field for field (16 bytes, the padding zeroed)
    int64_t row
    uint16_t dim
    uint16_t pad
    int32_t code


cdef struct Entries:  # a growing array of entries (malloc'd; NULL until the first one)
    Entry* data
    Py_ssize_t n, cap


cdef struct Field:  # where dimension j sits in a row
    uint64_t mask   # 2**bits - 1
    double lo       # lo[j] as float64 (exact: |lo| <= 2**40)
    int64_t lo_i
    int64_t offset  # bit offset in the row
    int32_t byte    # offset // 8: the unaligned load's byte
    int32_t shift   # offset % 8
    int32_t bits


cdef class _MixedTables:
    """Per-dimension fields of one MixedSpec, cached on the spec (specs are immutable)."""
    cdef Field* f
    cdef Py_ssize_t dim, row_words, fast
    cdef double scale, inv, clamp
    cdef int64_t top

    def __cinit__(self, spec):
        cdef Py_ssize_t j
        self.dim, self.row_words = spec.dim, spec.row_words
        self.scale, self.inv, self.clamp, self.top = spec.scale, spec.inv_scale, spec.clamp, spec.top
        self.f = <Field*>malloc(self.dim * sizeof(Field))
        if self.f == NULL:
            raise MemoryError()
        row_bytes = self.row_words * 8
        self.fast = 0
        for j in range(self.dim):
            b, off, lo = int(spec.bits[j]), int(spec.offsets[j]), int(spec.lo[j])
            self.f[j].mask = (1 << b) - 1
            self.f[j].lo, self.f[j].lo_i = lo, lo
            self.f[j].offset, self.f[j].byte, self.f[j].shift, self.f[j].bits = off, off >> 3, off & 7, b
            if JR_LITTLE_ENDIAN and (off >> 3) + 8 <= row_bytes:  # offsets grow: these dims are a prefix
                self.fast = j + 1

    def __dealloc__(self):
        free(self.f)


cdef _MixedTables _tables(spec):
    if not isinstance(spec, MixedSpec):
        raise TypeError(f"spec must be a MixedSpec, got {type(spec).__name__}")
    cdef dict cache = spec.__dict__  # frozen dataclass: the cache bypasses __setattr__, __reduce__ drops it
    t = cache.get("_kernel_tables")
    if t is None:
        t = cache["_kernel_tables"] = _MixedTables(spec)
    return <_MixedTables>t


# -- argument buffers (the same rules as cython_core._kernels) ------------------------------------

cdef Kind _kind(Py_buffer* view) noexcept:
    """The element type of a native-endian buffer, from its struct format."""
    cdef const char* f = view.format
    if f == NULL:
        return OTHER
    if f[0] == b'@' or f[0] == b'=' or (f[0] == b'<' and JR_LITTLE_ENDIAN):
        f += 1
    if f[0] == 0 or f[1] != 0:
        return OTHER
    if f[0] == b'f' and view.itemsize == 4:
        return F32
    if f[0] == b'd' and view.itemsize == 8:
        return F64
    if (f[0] == b'l' or f[0] == b'q') and view.itemsize == 8:
        return I64
    if (f[0] == b'L' or f[0] == b'Q') and view.itemsize == 8:
        return U64
    return OTHER


cdef bint _try_buffer(obj, Py_buffer* view, int flags):
    """Get a C-contiguous buffer of ``obj``; False (error cleared) when it has none."""
    try:
        PyObject_GetBuffer(obj, view, flags | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except (TypeError, ValueError, BufferError):
        return False
    return True


cdef int _get_values(obj, Py_buffer* view, Kind* kinds, dtype, Kind want) except -1:
    """A C-contiguous buffer of ``obj`` whose element type is one of ``kinds`` (two), else converted to ``want``."""
    if _try_buffer(obj, view, 0):
        if _kind(view) == kinds[0] or _kind(view) == kinds[1]:
            return 0
        PyBuffer_Release(view)
    PyObject_GetBuffer(np.ascontiguousarray(obj, dtype=dtype), view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    return 0


cdef int _get_indices(obj, Py_buffer* view, str name) except -1:
    """A C-contiguous int64 buffer of the indices ``obj``; other integers are converted, the rest refused."""
    if _try_buffer(obj, view, 0):
        if _kind(view) == I64:
            return 0
        PyBuffer_Release(view)
    PyObject_GetBuffer(as_indices(obj, name), view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    return 0


cdef int _get_storage(storage, Py_buffer* view, _MixedTables t, int flags) except -1:
    if _try_buffer(storage, view, flags):
        if _kind(view) == U64 and view.ndim == 2 and view.shape[1] == t.row_words:
            return 0
        PyBuffer_Release(view)
    raise ValueError(f"storage must be a writable C-contiguous uint64 array of shape (n_rows, {t.row_words}), "
                     f"got {getattr(storage, 'dtype', type(storage).__name__)} {getattr(storage, 'shape', '')}")


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


cdef int _check_indices(const int64_t* idx, Py_ssize_t n, Py_ssize_t n_rows, str name) except -1:
    cdef Py_ssize_t i
    cdef uint64_t limit = <uint64_t>n_rows
    for i in range(n):
        if <uint64_t>idx[i] >= limit:  # negative indices wrap to huge values
            raise IndexError(f"{name} must be in 0..{n_rows - 1}, got {idx[i]}")
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

ctypedef fused real_in:
    float
    double

ctypedef fused out_t:
    float
    double
    int64_t


cdef Py_ssize_t _find_nonfinite(const real_in* x, Py_ssize_t count, Py_ssize_t* first) noexcept nogil:
    """How many of x[0..count) are NaN or +-inf, and the first one's position (an exponent carry test first)."""
    cdef Py_ssize_t i, bad = 0
    cdef uint64_t carry = 0
    for i in range(count):
        carry |= (jr_bits(x[i]) & 0x7FF0000000000000ULL) + 0x0010000000000000ULL
    if not (carry >> 63):
        return 0
    for i in range(count):
        if not isfinite(x[i]):
            if bad == 0:
                first[0] = i
            bad += 1
    return bad


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
    cdef Py_ssize_t j, w = 0
    cdef int used = 0, b
    cdef uint64_t acc = 0, s
    for j in range(t.dim):
        s = <uint64_t>(codes[j] - t.f[j].lo_i)
        if s > t.f[j].mask:
            if _push(ex, row_id, j, codes[j]) < 0:
                return -1
            s = 0
        b = t.f[j].bits
        acc |= s << used
        used += b
        if used >= 64:  # the word is full; the code's top `used` bits start the next one
            row[w] = acc
            w += 1
            used -= 64
            acc = (s >> (b - used)) if used else 0
    if used:
        row[w] = acc
    return 0


cdef inline double _outside(double v, double lo, double hi) noexcept nogil:
    return (1.0 if v < lo else 0.0) + (1.0 if v > hi else 0.0)


cdef void _quantize_row(const real_in* x, _MixedTables t, int64_t* codes, Py_ssize_t* saturated) noexcept nogil:
    """Paper codes of one row (as cython_core._kernels computes them for CodeSpec.uniform)."""
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


cdef Kind _REALS[2]
_REALS[0], _REALS[1] = F32, F64
cdef Kind _INTS[2]
_INTS[0], _INTS[1] = I64, I64


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


def mixed_pack(x, storage, rows, spec) -> tuple:
    """Encode ``x`` (n, D) (or (D,)) into rows ``rows`` (n distinct indices) of ``storage``; return
    ``(saturated, entries)``: how many values were clamped at +-b, and the EXCEPTION_DTYPE entries
    (rows[i], j, code) of the codes out of their rows' ranges, in row-major order.

    x is float32 or float64 (anything else is converted to float64). Non-finite values raise NonFiniteError
    with nothing written.
    """
    cdef _MixedTables t = _tables(spec)
    cdef Py_buffer xb, sb, rb
    cdef bint have_s = False, have_r = False
    cdef Py_ssize_t n, first = 0, bad = 0, saturated = 0
    cdef Entries ex
    cdef Kind kind
    ex.data, ex.n, ex.cap = NULL, 0, 0
    _get_values(x, &xb, _REALS, np.float64, F64)
    try:
        n = _rows_of(&xb, t, "x")
        have_s = _get_storage(storage, &sb, t, PyBUF_WRITABLE) == 0
        have_r = _get_rows(rows, n, sb.shape[0], &rb) == 0
        kind = _kind(&xb)
        if n * t.dim >= NOGIL_VALUES:
            with nogil:
                bad = _encode_any(kind, xb.buf, n, <const int64_t*>rb.buf, <uint64_t*>sb.buf, t,
                                  &saturated, &first, &ex)
        else:
            bad = _encode_any(kind, xb.buf, n, <const int64_t*>rb.buf, <uint64_t*>sb.buf, t,
                              &saturated, &first, &ex)
        if bad < 0:
            raise MemoryError()
        if bad:
            raise NonFiniteError(bad, first // t.dim, first % t.dim)
        return saturated, _entries_array(&ex)
    finally:
        free(ex.data)
        PyBuffer_Release(&xb)
        if have_s:
            PyBuffer_Release(&sb)
        if have_r:
            PyBuffer_Release(&rb)


def mixed_pack_codes(codes, storage, rows, spec):
    """Pack paper codes ``codes`` (int64 (n, D) or (D,), each in -rint(b 10^m)..rint(b 10^m)) into rows
    ``rows`` of ``storage``; return the EXCEPTION_DTYPE entries of the codes out of their rows' ranges."""
    cdef _MixedTables t = _tables(spec)
    cdef Py_buffer cb, sb, rb
    cdef bint have_s = False, have_r = False
    cdef Py_ssize_t n, bad
    cdef int status = 0
    cdef Entries ex
    ex.data, ex.n, ex.cap = NULL, 0, 0
    if np.asarray(codes).dtype.kind not in "iu":
        raise ValueError(f"codes must be integers, got {np.asarray(codes).dtype}")
    _get_values(codes, &cb, _INTS, np.int64, I64)
    try:
        n = _rows_of(&cb, t, "codes")
        bad = _first_out_of_grid(<const int64_t*>cb.buf, n * t.dim, t.top)
        if bad >= 0:
            raise ValueError(f"codes must be paper codes in -{t.top}..{t.top}; codes[{bad // t.dim}, "
                             f"{bad % t.dim}] = {(<const int64_t*>cb.buf)[bad]} is not")
        have_s = _get_storage(storage, &sb, t, PyBUF_WRITABLE) == 0
        have_r = _get_rows(rows, n, sb.shape[0], &rb) == 0
        if n * t.dim >= NOGIL_VALUES:
            with nogil:
                status = _pack_codes(<const int64_t*>cb.buf, n, <const int64_t*>rb.buf, <uint64_t*>sb.buf, t, &ex)
        else:
            status = _pack_codes(<const int64_t*>cb.buf, n, <const int64_t*>rb.buf, <uint64_t*>sb.buf, t, &ex)
        if status < 0:
            raise MemoryError()
        return _entries_array(&ex)
    finally:
        free(ex.data)
        PyBuffer_Release(&cb)
        if have_s:
            PyBuffer_Release(&sb)
        if have_r:
            PyBuffer_Release(&rb)


# -- gather + unpack -------------------------------------------------------------------------------

cdef inline uint64_t _read_words(const uint64_t* row, int64_t offset, int bits) noexcept nogil:
    """The ``bits`` >= 1 bits at ``offset`` read word by word (may straddle two words), unmasked."""
    cdef int64_t w = offset >> 6
    cdef int s = offset & 63
    cdef uint64_t v = row[w] >> s
    if s + bits > 64:
        v |= row[w + 1] << (64 - s)
    return v


cdef inline void _unpack_row(const uint64_t* row, _MixedTables t, out_t* out) noexcept nogil:
    cdef const unsigned char* p = <const unsigned char*>row
    cdef const Field* f = t.f
    cdef Py_ssize_t j
    cdef uint64_t c
    cdef double inv = t.inv
    for j in range(t.fast):
        c = (jr_load64(p + f[j].byte) >> f[j].shift) & f[j].mask
        if out_t is int64_t:
            out[j] = <int64_t>c + f[j].lo_i
        else:
            out[j] = <out_t>((<double><int64_t>c + f[j].lo) * inv)
    for j in range(t.fast, t.dim):
        c = (_read_words(row, f[j].offset, f[j].bits) & f[j].mask) if f[j].bits else 0
        if out_t is int64_t:
            out[j] = <int64_t>c + f[j].lo_i
        else:
            out[j] = <out_t>((<double><int64_t>c + f[j].lo) * inv)


cdef inline void _prefetch_row(const uint64_t* row, Py_ssize_t row_words) noexcept nogil:
    cdef const char* p = <const char*>row
    cdef const char* end = <const char*>(row + row_words)
    while p < end:
        JR_PREFETCH(p)
        p += 64
    if row_words:
        JR_PREFETCH(end - 1)


cdef int _gather(const uint64_t* storage, const int64_t* idx, Py_ssize_t n, _MixedTables t, const int32_t* at,
                 const Entry* table, Py_ssize_t n_table, out_t* out) noexcept nogil:
    """Decode n rows and patch their exceptions; -2: an entry's dim is out of range, -3: at points past table."""
    cdef Py_ssize_t i, row_words = t.row_words, dim = t.dim
    cdef int64_t r, k
    cdef out_t* o
    for i in range(min(n, PREFETCH_ROWS)):
        _prefetch_row(storage + idx[i] * row_words, row_words)
    for i in range(n):
        if i + PREFETCH_ROWS < n:
            _prefetch_row(storage + idx[i + PREFETCH_ROWS] * row_words, row_words)
            JR_PREFETCH(at + idx[i + PREFETCH_ROWS])
        r = idx[i]
        o = out + i * dim
        _unpack_row(storage + r * row_words, t, o)
        k = at[r]
        if k < 0:
            continue
        if k >= n_table:
            return -3
        while k < n_table and table[k].row == r:
            if table[k].dim >= dim:
                return -2
            if out_t is int64_t:
                o[table[k].dim] = table[k].code
            else:
                o[table[k].dim] = <out_t>(<double>table[k].code * t.inv)
            k += 1
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
        have_s = _get_storage(storage, &sb, t, 0) == 0
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
    if status == -2:
        raise ValueError(f"table holds an entry whose dim is not in 0..{t.dim - 1}")
    if status == -3:
        raise ValueError("at points past the end of table")
    return 0


def mixed_unpack(storage, indices, spec, at, table, out) -> None:
    """Decode rows ``indices`` of ``storage`` into ``out`` (float32 or float64, C-contiguous, (n, D)), patching
    the exceptions of rows whose ``at[row] >= 0`` from ``table`` (an ExceptionStore's ``at`` and ``table``)."""
    _decode(storage, indices, _tables(spec), at, table, out, False)


def mixed_codes(storage, indices, spec, at, table):
    """The paper codes (int64 (n, D)) of rows ``indices`` of ``storage``, exceptions included."""
    cdef _MixedTables t = _tables(spec)
    out = np.empty((len(np.atleast_1d(indices)), t.dim), dtype=np.int64)
    _decode(storage, indices, t, at, table, out, True)
    return out
