"""What the compiled kernels (_kernels, _mixed, _escape) share: C helpers, the argument-buffer rules, small loops.

Every function here is ``inline``: each extension compiles its own copy, nothing is called across modules.
"""

from cpython.buffer cimport PyBUF_C_CONTIGUOUS, PyBUF_FORMAT, PyBuffer_Release, PyObject_GetBuffer
from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint64_t

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

cdef enum Kind:
    OTHER, F32, F64, I64, U64

ctypedef fused real_in:
    float
    double


cdef inline Kind _kind(Py_buffer* view) noexcept:
    """The element type of a native-endian buffer, from its struct format."""
    cdef const char* f = view.format
    if f == NULL:  # unsigned bytes
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


cdef inline bint _try_buffer(obj, Py_buffer* view, int flags):
    """Get a C-contiguous buffer of ``obj``; False (error cleared) when it has none."""
    try:
        PyObject_GetBuffer(obj, view, flags | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    except (TypeError, ValueError, BufferError):
        return False
    return True


cdef inline int _get_values(obj, Py_buffer* view, Kind one, Kind other, Kind want) except -1:
    """A C-contiguous buffer of ``obj`` with element type ``one`` or ``other``, else converted (a copy) to
    ``want`` (F64 or I64)."""
    import numpy as np

    if _try_buffer(obj, view, 0):
        if _kind(view) == one or _kind(view) == other:
            return 0
        PyBuffer_Release(view)
    dtype = np.float64 if want == F64 else np.int64
    PyObject_GetBuffer(np.ascontiguousarray(obj, dtype=dtype), view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    return 0


cdef inline object _spec_tables(spec, kind, make):
    """The kernel tables of ``spec`` (an immutable ``kind``), built by ``make(spec)`` once and cached on the spec:
    a frozen dataclass, whose ``__dict__`` the cache bypasses ``__setattr__`` through; ``__reduce__`` drops it."""
    if not isinstance(spec, kind):
        raise TypeError(f"spec must be a {kind.__name__}, got {type(spec).__name__}")
    cdef dict cache = spec.__dict__
    tables = cache.get("_kernel_tables")
    if tables is None:
        tables = cache["_kernel_tables"] = make(spec)
    return tables


cdef inline int _get_storage(storage, Py_buffer* view, Py_ssize_t row_words, int flags) except -1:
    """A C-contiguous buffer of ``storage``: uint64, (n_rows, row_words)."""
    if _try_buffer(storage, view, flags):
        if _kind(view) == U64 and view.ndim == 2 and view.shape[1] == row_words:
            return 0
        PyBuffer_Release(view)
    raise ValueError(f"storage must be a writable C-contiguous uint64 array of shape (n_rows, {row_words}), "
                     f"got {getattr(storage, 'dtype', type(storage).__name__)} {getattr(storage, 'shape', '')}")


cdef inline int _get_indices(obj, Py_buffer* view, str name) except -1:
    """A C-contiguous int64 buffer of the indices ``obj``; other integers are converted, the rest refused."""
    from cython_core.indices import as_indices

    if _try_buffer(obj, view, 0):
        if _kind(view) == I64:
            return 0
        PyBuffer_Release(view)
    PyObject_GetBuffer(as_indices(obj, name), view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT)
    return 0


cdef inline int _check_indices(const int64_t* idx, Py_ssize_t n, Py_ssize_t n_rows, str name) except -1:
    cdef Py_ssize_t i
    cdef uint64_t limit = <uint64_t>n_rows
    for i in range(n):
        if <uint64_t>idx[i] >= limit:  # negative indices wrap to huge values
            raise IndexError(f"{name} must be in 0..{n_rows - 1}, got {idx[i]}")
    return 0


cdef inline Py_ssize_t _find_nonfinite(const real_in* x, Py_ssize_t count, Py_ssize_t* first) noexcept nogil:
    """How many of x[0..count) are NaN or +-inf, and the first one's position.
    A float64 is non-finite iff its exponent bits are all ones; adding 1 to the exponent field then
    carries into the sign bit. Integer and/add/or reductions vectorize (SSE2 too)."""
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


cdef inline double _outside(double v, double lo, double hi) noexcept nogil:
    return (1.0 if v < lo else 0.0) + (1.0 if v > hi else 0.0)


cdef inline void _prefetch_row(const uint64_t* row, Py_ssize_t row_words) noexcept nogil:
    """Request every cache line of a row of ``row_words`` words (none for an empty row)."""
    cdef const char* p = <const char*>row
    cdef const char* end = <const char*>(row + row_words)
    while p < end:
        JR_PREFETCH(p)
        p += 64
    if row_words:
        JR_PREFETCH(end - 1)


cdef inline uint64_t _read_words(const uint64_t* words, uint64_t pos, int bits) noexcept nogil:
    """The ``bits`` (1..64) bits at bit ``pos`` of a little-endian stream of words (they may straddle two words),
    unmasked: the bits above them are the stream's next ones."""
    cdef uint64_t w = pos >> 6
    cdef int s = pos & 63
    cdef uint64_t v = words[w] >> s
    if s and s + bits > 64:
        v |= words[w + 1] << (64 - s)
    return v


cdef struct BitWriter:  # a little-endian bit stream filling a row's words (start: row, 0, 0, 0)
    uint64_t* row
    Py_ssize_t w
    int used
    uint64_t acc


cdef inline void _put_bits(BitWriter* b, uint64_t c, int bits) noexcept nogil:
    """Append the ``bits`` (0..63) low bits of ``c``, whose higher bits are zero."""
    b.acc |= c << b.used
    b.used += bits
    if b.used >= 64:  # the word is full; the code's top `used` bits start the next one
        b.row[b.w] = b.acc
        b.w += 1
        b.used -= 64
        b.acc = (c >> (bits - b.used)) if b.used else 0


cdef inline void _end_bits(BitWriter* b) noexcept nogil:
    """Write the last, partly filled word (its padding bits zero)."""
    if b.used:
        b.row[b.w] = b.acc
