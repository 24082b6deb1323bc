# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled k-bit kernels: quantize+pack row by row, gather+unpack straight into float32 rows.

Rows lie at bit stride in one stream of 64-bit words (row r at bit r x D*k; one spare word at the end,
``cython_core.layout.words_for``), so a row costs exactly its D*k bits. Per row, quantize_pack turns
the D values into integer codes in a scratch row (no float temporary) and writes them into the stream,
keeping the bits of the rows either side; gather_unpack prefetches the cache lines of the row it will
decode 16 rows later and, for k <= 25, decodes it 16 values at a time on a CPU with AVX-512 VBMI
(``jr_unpack_row_vbmi``: one masked load and one byte permute per 16 codes) or 8 at a time with AVX2
(``jr_unpack_row_avx2``: two 16-byte loads and one byte shuffle per 8 codes). Elsewhere (and for k > 25) a
portable group read written with GCC / Clang generic vector extensions (``jr_unpack_row_vec``: SSE2 on baseline
x86-64, NEON on aarch64): each 64-bit lane takes a code where a load leaves it (two 16-byte loads per 8 codes
at k = 15 and 12, one 8-byte load per code otherwise), masks it into the mantissa of 2**52 and adds and
multiplies by per-bit-phase constants (no shifts). Compilers without vector extensions and big-endian hosts
read "scalar": codes extracted with 8-byte loads, then a float32 table of all 2**k values (uniform specs,
k <= 16, float32 out) or a conversion loop the compiler vectorizes. All give the same bits (``_read_path()``
names the read, and picks one in tests).

Bounds checks are off in this module: every index (``rows``, ``indices``) is validated against the
storage's row count once, before any loop, and every buffer's dtype, shape and contiguity is checked
against the spec. Arguments arrive through the buffer protocol (no memoryview objects: a call on
one row costs well under a microsecond).

Rounding is round half to even, as C ``rint`` in the default rounding mode (``numpy.round`` too).
Where ``rint`` is one instruction (SSE4.1 ``roundsd``, AArch64 ``frintx``) it is called; on baseline
x86-64 (portable builds) the same IEEE operation is done inline: ``(t + 1.5*2**52) - 1.5*2**52``
rounds ``t`` to the nearest integer, ties to even, exactly for ``|t| < 2**51`` (CodeLayout guarantees).
"""

import numpy as np

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release
from libc.math cimport isfinite, isinf
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc

from cython_core._support cimport *  # the shared C helpers and argument-buffer rules

from cython_core.errors import NonFiniteError

cdef extern from *:
    """
    #include <string.h>
    /* The codes of n values of a uniform spec (clipped to [lo, hi], rounded half to even as jr_round does,
       offset removed) and how many were outside: _quantize_row's uniform loop, compiled for AVX2 (4 values at
       once, chosen at run time on x86-64 CPUs that have it; -ffp-contract=off keeps the multiply and the add
       apart: the same codes). */
    #define JR_QUANT_BODY \
        Py_ssize_t j; double sat = 0.0; \
        for (j = 0; j < n; j++) { \
            double v = (double)x[j], s; int64_t b; \
            sat += (v < lo ? 1.0 : 0.0) + (v > hi ? 1.0 : 0.0); \
            v = v >= lo ? v : lo; v = v <= hi ? v : hi; \
            s = v * scale; s = s + 6755399441055744.0; \
            memcpy(&b, &s, 8); \
            codes[j] = (uint64_t)(b - INT64_C(0x4338000000000000) - offset); \
        } \
        return sat;
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    __attribute__((target("avx2"))) static double jr_quantize_f64_avx2(const double *x, Py_ssize_t n, double lo,
            double hi, double scale, int64_t offset, uint64_t *codes) { JR_QUANT_BODY }
    __attribute__((target("avx2"))) static double jr_quantize_f32_avx2(const float *x, Py_ssize_t n, double lo,
            double hi, double scale, int64_t offset, uint64_t *codes) { JR_QUANT_BODY }
    static int jr_has_avx2(void) { __builtin_cpu_init(); return __builtin_cpu_supports("avx2"); }
    #else
    static double jr_quantize_f64_avx2(const double *x, Py_ssize_t n, double lo, double hi, double scale,
            int64_t offset, uint64_t *codes) { return 0.0; }
    static double jr_quantize_f32_avx2(const float *x, Py_ssize_t n, double lo, double hi, double scale,
            int64_t offset, uint64_t *codes) { return 0.0; }
    static int jr_has_avx2(void) { return 0; }
    #endif
    """
    double jr_quantize_f64_avx2(const double *x, Py_ssize_t n, double lo, double hi, double scale, int64_t offset,
                                uint64_t *codes) nogil
    double jr_quantize_f32_avx2(const float *x, Py_ssize_t n, double lo, double hi, double scale, int64_t offset,
                                uint64_t *codes) nogil
    int jr_has_avx2()

cdef bint _quantize_avx2 = jr_has_avx2() != 0

cdef extern from *:
    """
    /* A row of n codes of `bits` (1..25) bits that starts at bit `phase` (0..7) of byte p, 16 dimensions at a time
       with AVX-512 VBMI: 16 codes span exactly 2 * bits bytes, so group g is one masked load from p + 2 * bits * g
       (the bytes its codes reach at this phase, nothing past the row's last byte), lane l's 4 bytes picked at bit
       l * bits + phase (vpermb), shifted and masked, then converted as _dequantize_row converts them
       (((double)(int32)(code ^ 2**31) + base) * inv, a separate add and multiply, no FMA: the same bits). base and
       inv are per dimension, or one value each (uniform). */
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    #include <immintrin.h>
    #define JR_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi")))
    #define JR_AVX2 __attribute__((target("avx2")))
    JR_VBMI static void jr_unpack_row_vbmi(const unsigned char *p, int phase, int bits, Py_ssize_t n,
            const double *base, const double *inv, int uniform, float *out32, double *out64) {
        const __m512i spread = _mm512_set_epi8(12, 12, 12, 12, 8, 8, 8, 8, 4, 4, 4, 4, 0, 0, 0, 0,
                                               12, 12, 12, 12, 8, 8, 8, 8, 4, 4, 4, 4, 0, 0, 0, 0,
                                               12, 12, 12, 12, 8, 8, 8, 8, 4, 4, 4, 4, 0, 0, 0, 0,
                                               12, 12, 12, 12, 8, 8, 8, 8, 4, 4, 4, 4, 0, 0, 0, 0);
        const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
        const __m512i bp = _mm512_add_epi32(_mm512_mullo_epi32(lane, _mm512_set1_epi32(bits)),
                                            _mm512_set1_epi32(phase));
        const __m512i idx = _mm512_add_epi8(_mm512_shuffle_epi8(_mm512_srli_epi32(bp, 3), spread),
                                            _mm512_set1_epi32(0x03020100));
        const __m512i shift = _mm512_and_si512(bp, _mm512_set1_epi32(7));
        const __m512i mask = _mm512_set1_epi32((int)((1u << bits) - 1)), sign = _mm512_set1_epi32((int)0x80000000u);
        const uint64_t whole = ((uint64_t)1 << ((phase + 16 * bits + 7) >> 3)) - 1;
        __m512d b0 = _mm512_set1_pd(base[0]), b1 = b0, i0 = _mm512_set1_pd(inv[0]), i1 = i0;
        Py_ssize_t first;
        for (first = 0; first < n; first += 16, p += 2 * bits) {
            Py_ssize_t left = n - first;
            __mmask16 lanes = left >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << left) - 1);
            uint64_t load = left >= 16 ? whole : ((uint64_t)1 << ((phase + left * bits + 7) >> 3)) - 1;
            __m512i v = _mm512_permutexvar_epi8(idx, _mm512_maskz_loadu_epi8(load, p));
            v = _mm512_xor_si512(_mm512_and_si512(_mm512_srlv_epi32(v, shift), mask), sign);
            if (!uniform) {
                b0 = _mm512_maskz_loadu_pd((__mmask8)lanes, base + first);
                b1 = _mm512_maskz_loadu_pd((__mmask8)(lanes >> 8), base + first + 8);
                i0 = _mm512_maskz_loadu_pd((__mmask8)lanes, inv + first);
                i1 = _mm512_maskz_loadu_pd((__mmask8)(lanes >> 8), inv + first + 8);
            }
            __m512d d0 = _mm512_mul_pd(_mm512_add_pd(_mm512_cvtepi32_pd(_mm512_castsi512_si256(v)), b0), i0);
            __m512d d1 = _mm512_mul_pd(_mm512_add_pd(_mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(v, 1)), b1), i1);
            if (out32) {
                __m512 f = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(d0)), _mm512_cvtpd_ps(d1), 1);
                _mm512_mask_storeu_ps(out32 + first, lanes, f);
            } else {
                _mm512_mask_storeu_pd(out64 + first, (__mmask8)lanes, d0);
                _mm512_mask_storeu_pd(out64 + first + 8, (__mmask8)(lanes >> 8), d1);
            }
        }
    }
    /* The same row 8 dimensions at a time with AVX2: 8 codes span exactly `bits` bytes; each 128-bit lane takes
       4 of them from its own 16-byte load (codes 0-3 from the group's first byte, 4-7 from the byte code 4 starts
       in), its 4-byte windows picked by a byte shuffle, then shifted, masked and converted as above. A group is
       read this way only while its loads end within 8 bytes past the row's last byte (inside the spare word);
       the others, code by code (4-byte loads). */
    JR_AVX2 static void jr_unpack_row_avx2(const unsigned char *p, int phase, int bits, Py_ssize_t n,
            const double *base, const double *inv, int uniform, float *out32, double *out64) {
        const int up = (phase + 4 * bits) >> 3;
        /* the last byte a group may start at: its second load then ends 8 bytes past the row's last byte */
        const Py_ssize_t reach = (phase + n * bits - 1) / 8 + 8 - 15 - up;
        const Py_ssize_t groups = reach < 0 ? 0 : reach / bits + 1 < n / 8 ? reach / bits + 1 : n / 8;
        const __m256i lane = _mm256_set_epi32(3, 2, 1, 0, 3, 2, 1, 0);
        const __m256i bp = _mm256_add_epi32(_mm256_mullo_epi32(lane, _mm256_set1_epi32(bits)),
                                            _mm256_set_epi32(phase + 4 * bits - 8 * up, phase + 4 * bits - 8 * up,
                                                             phase + 4 * bits - 8 * up, phase + 4 * bits - 8 * up,
                                                             phase, phase, phase, phase));
        const __m256i idx = _mm256_add_epi32(_mm256_mullo_epi32(_mm256_srli_epi32(bp, 3),
                                                                _mm256_set1_epi32(0x01010101)),
                                             _mm256_set1_epi32(0x03020100));
        const __m256i shift = _mm256_and_si256(bp, _mm256_set1_epi32(7));
        const __m256i mask = _mm256_set1_epi32((int)((1u << bits) - 1)), sign = _mm256_set1_epi32((int)0x80000000u);
        __m256d b0 = _mm256_set1_pd(base[0]), b1 = b0, i0 = _mm256_set1_pd(inv[0]), i1 = i0;
        Py_ssize_t j, g;
        for (g = 0, j = 0; g < groups; g++, j += 8) {
            const unsigned char *q = p + g * bits;
            __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)q)),
                                                _mm_loadu_si128((const __m128i *)(q + up)), 1);
            v = _mm256_shuffle_epi8(v, idx);
            v = _mm256_xor_si256(_mm256_and_si256(_mm256_srlv_epi32(v, shift), mask), sign);
            if (!uniform) {
                b0 = _mm256_loadu_pd(base + j); b1 = _mm256_loadu_pd(base + j + 4);
                i0 = _mm256_loadu_pd(inv + j); i1 = _mm256_loadu_pd(inv + j + 4);
            }
            __m256d d0 = _mm256_mul_pd(_mm256_add_pd(_mm256_cvtepi32_pd(_mm256_castsi256_si128(v)), b0), i0);
            __m256d d1 = _mm256_mul_pd(_mm256_add_pd(_mm256_cvtepi32_pd(_mm256_extracti128_si256(v, 1)), b1), i1);
            if (out32) {
                _mm256_storeu_ps(out32 + j, _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(d0)),
                                                                 _mm256_cvtpd_ps(d1), 1));
            } else {
                _mm256_storeu_pd(out64 + j, d0);
                _mm256_storeu_pd(out64 + j + 4, d1);
            }
        }
        for (; j < n; j++) {
            uint64_t bit = (uint64_t)phase + (uint64_t)j * bits;
            uint32_t w, code;
            double d;
            memcpy(&w, p + (bit >> 3), 4);
            code = (w >> (bit & 7)) & ((1u << bits) - 1);
            d = ((double)(int32_t)(code ^ 0x80000000u) + base[uniform ? 0 : j]) * inv[uniform ? 0 : j];
            if (out32) out32[j] = (float)d; else out64[j] = d;
        }
    }
    static int jr_unpack_has_vbmi(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512vbmi");
    }
    #else
    static void jr_unpack_row_vbmi(const unsigned char *p, int phase, int bits, Py_ssize_t n, const double *base,
            const double *inv, int uniform, float *out32, double *out64) {}
    #define jr_unpack_row_avx2 jr_unpack_row_vbmi
    static int jr_unpack_has_vbmi(void) { return 0; }
    #endif
    """
    void jr_unpack_row_vbmi(const unsigned char *p, int phase, int bits, Py_ssize_t n, const double *base,
                            const double *inv, int uniform, float *out32, double *out64) nogil
    void jr_unpack_row_avx2(const unsigned char *p, int phase, int bits, Py_ssize_t n, const double *base,
                            const double *inv, int uniform, float *out32, double *out64) nogil
    int jr_unpack_has_vbmi()

cdef extern from *:
    """
    /* The portable group read: GCC / Clang generic vector extensions (SSE2 on baseline x86-64, NEON on aarch64; no
       target attributes, no intrinsics), little-endian hosts. Each 64-bit lane holds one code at a bit s it already
       sits at in a load (no shift, so no per-lane variable shift): and-ed with its mask (m << s) and 2**52's exponent
       bits it is the double 2**52 + code * 2**s; adding C_s = offset * 2**s - 2**52 gives (code + offset) * 2**s and
       multiplying by inv * 2**-s gives the value. Every step is exact but the multiply, which rounds
       (code + offset) * inv as the other reads do (a power of two changes no rounding): the same bits.
       Per-dimension specs use offset -2**31, inv 1 (the lane is then (double)(int32)(code ^ 2**31), exactly), then
       ((that + base[j]) * inv[j]), a separate add and multiply (-ffp-contract=off). The masks, C_s and inv * 2**-s
       of each lane depend on the row's bit phase (0..7) only: jr_vec_phases computes them once per spec.
       A group of 8 codes spans exactly k bytes. k = 15 and 12: two 16-byte loads (at bytes 0 and 5, 0 and 4) hold
       all 8 codes at s + k <= 52; other widths: code i from an 8-byte load at byte i * k / 8 (s <= 14). The loads
       end at most 8 bytes past the group's last byte (the spare word keeps the last row's inside the stream);
       the row's last codes, two at a time from 8-byte loads at their first byte, the last odd one alone. */
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) \\
        && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && defined(__has_builtin)
    #if __has_builtin(__builtin_shufflevector) && __has_builtin(__builtin_convertvector)
    #define JR_VEC 1
    #endif
    #endif
    #ifndef JR_VEC
    #define JR_VEC 0
    #endif
    #define JR_PHASE_DOUBLES 384  /* 8 phases x (the groups' layout, the tail's) x 4 lane pairs x 3 x 2 lanes */
    #if JR_VEC
    typedef uint64_t jr_v2q __attribute__((vector_size(16)));
    typedef double jr_v2d __attribute__((vector_size(16)));
    typedef double jr_v4d __attribute__((vector_size(32)));
    typedef float jr_v2f __attribute__((vector_size(8)));
    typedef float jr_v4f __attribute__((vector_size(16)));
    #define JR_ALWAYS static inline __attribute__((always_inline))
    #define JR_TWO52 4503599627370496.0
    /* lane l of pair j of a group: code jr_code(bits, j, l), from the load at byte jr_byte(bits, j, l) */
    JR_ALWAYS int jr_code(int bits, int j, int l) {
        static const signed char c15[8] = {0, 5, 1, 4, 2, 6, 3, 7}, c12[8] = {0, 6, 1, 7, 2, 3, 4, 5};
        return bits == 15 ? c15[2 * j + l] : bits == 12 ? c12[2 * j + l] : 2 * j + l;
    }
    JR_ALWAYS int jr_byte(int bits, int j, int l) {
        static const signed char b15[8] = {0, 8, 0, 5, 0, 8, 5, 13}, b12[8] = {0, 8, 0, 8, 0, 4, 4, 4};
        return bits == 15 ? b15[2 * j + l] : bits == 12 ? b12[2 * j + l] : (jr_code(bits, j, l) * bits) >> 3;
    }
    /* ph[48 * phase + 24 * tail + 6 * pair + {0, 2, 4} + lane]: mask (bits), C_s, inv * 2**-s; offset = base52 +
       2**52. Returns 0 where inv * 2**-s is not exact (a subnormal): the spec is then read another way. */
    static int jr_vec_phases(int bits, double base52, double inv, double *ph) {
        const uint64_t m = ((uint64_t)1 << bits) - 1;
        int sh, t, j, l, exact = 1;
        for (sh = 0; sh < 8; sh++)
            for (t = 0; t < 2; t++)
                for (j = 0; j < 4; j++)
                    for (l = 0; l < 2; l++) {
                        int code = t ? 2 * j + l : jr_code(bits, j, l);
                        int s = sh + code * bits - 8 * (t ? (code * bits) >> 3 : jr_byte(bits, j, l));
                        double *c = ph + 48 * sh + 24 * t + 6 * j + l;
                        uint64_t mask = (m << s) | UINT64_C(0x4330000000000000);
                        memcpy(c, &mask, 8);
                        c[2] = ldexp(base52 + JR_TWO52, s) - JR_TWO52;
                        c[4] = ldexp(inv, -s);
                        exact &= ldexp(c[4], s) == inv;
                    }
        return exact;
    }
    JR_ALWAYS jr_v2d jr_vec_load2(const double *s) { jr_v2d v; memcpy(&v, s, 16); return v; }
    JR_ALWAYS void jr_vec_row(const unsigned char *p, int sh, int bits, Py_ssize_t n, const double *ph,
            const double *base, const double *inv, int uniform, float *out32, double *out64) {
        const jr_v2q magic = {UINT64_C(0x4330000000000000), UINT64_C(0x4330000000000000)};
        const double *c = ph + 48 * sh;
        const unsigned char *q = p;
        jr_v2q mk[4];
        jr_v2d ad[4], mu[4];
        Py_ssize_t j;
        int i;
        for (i = 0; i < 4; i++) {
            memcpy(&mk[i], c + 6 * i, 16); memcpy(&ad[i], c + 6 * i + 2, 16); memcpy(&mu[i], c + 6 * i + 4, 16);
        }
        for (j = 0; j + 8 <= n; j += 8, q += bits) {
            jr_v2q v[4];
            jr_v2d d[4], e[4];
            if (bits == 15 || bits == 12) {
                jr_v2q a, b;
                memcpy(&a, q, 16);
                memcpy(&b, q + (bits == 15 ? 5 : 4), 16);
                a |= magic;
                b |= magic;
                v[0] = a;
                v[1] = bits == 15 ? __builtin_shufflevector(a, b, 0, 2) : a;
                v[2] = bits == 15 ? a : __builtin_shufflevector(a, b, 0, 2);
                v[3] = bits == 15 ? b : __builtin_shufflevector(b, b, 0, 0);
            } else {
                for (i = 0; i < 4; i++) {
                    jr_v2q w = {jr_load64(q + jr_byte(bits, i, 0)), jr_load64(q + jr_byte(bits, i, 1))};
                    v[i] = w | magic;
                }
            }
            for (i = 0; i < 4; i++) d[i] = ((jr_v2d)(v[i] & mk[i]) + ad[i]) * mu[i];
            if (uniform && out32) {  /* converted, then put in order */
                jr_v4f fa = __builtin_convertvector(__builtin_shufflevector(d[0], d[1], 0, 1, 2, 3), jr_v4f);
                jr_v4f fb = __builtin_convertvector(__builtin_shufflevector(d[2], d[3], 0, 1, 2, 3), jr_v4f);
                jr_v4f lo = fa, hi = fb;
                if (bits == 15) {         /* fa = codes 0 5 1 4, fb = 2 6 3 7 */
                    lo = __builtin_shufflevector(fa, fb, 0, 2, 4, 6); hi = __builtin_shufflevector(fa, fb, 3, 1, 5, 7);
                } else if (bits == 12) {  /* fa = codes 0 6 1 7, fb = 2 3 4 5 */
                    lo = __builtin_shufflevector(fa, fb, 0, 2, 4, 5); hi = __builtin_shufflevector(fa, fb, 6, 7, 1, 3);
                }
                memcpy(out32 + j, &lo, 16);
                memcpy(out32 + j + 4, &hi, 16);
                continue;
            }
            e[0] = d[0]; e[1] = d[1]; e[2] = d[2]; e[3] = d[3];  /* in order */
            if (bits == 15) {         /* d = codes (0 5) (1 4) (2 6) (3 7) */
                e[0] = __builtin_shufflevector(d[0], d[1], 0, 2); e[1] = __builtin_shufflevector(d[2], d[3], 0, 2);
                e[2] = __builtin_shufflevector(d[1], d[0], 1, 3); e[3] = __builtin_shufflevector(d[2], d[3], 1, 3);
            } else if (bits == 12) {  /* d = codes (0 6) (1 7) (2 3) (4 5) */
                e[0] = __builtin_shufflevector(d[0], d[1], 0, 2); e[3] = __builtin_shufflevector(d[0], d[1], 1, 3);
                e[1] = d[2]; e[2] = d[3];
            }
            if (!uniform)
                for (i = 0; i < 4; i++) e[i] = (e[i] + jr_vec_load2(base + j + 2 * i)) * jr_vec_load2(inv + j + 2 * i);
            if (out32) {
                jr_v4f lo = __builtin_convertvector(__builtin_shufflevector(e[0], e[1], 0, 1, 2, 3), jr_v4f);
                jr_v4f hi = __builtin_convertvector(__builtin_shufflevector(e[2], e[3], 0, 1, 2, 3), jr_v4f);
                memcpy(out32 + j, &lo, 16);
                memcpy(out32 + j + 4, &hi, 16);
            } else {
                memcpy(out64 + j, e, 64);
            }
        }
        for (i = 0; j + 2 <= n; j += 2, i++) {  /* the last, partial group: its codes 2i, 2i + 1 */
            jr_v2q w = {jr_load64(q + ((2 * i * bits) >> 3)), jr_load64(q + (((2 * i + 1) * bits) >> 3))}, mt;
            jr_v2d at, ut, d;
            memcpy(&mt, c + 24 + 6 * i, 16); memcpy(&at, c + 24 + 6 * i + 2, 16); memcpy(&ut, c + 24 + 6 * i + 4, 16);
            d = ((jr_v2d)((w | magic) & mt) + at) * ut;
            if (!uniform) d = (d + jr_vec_load2(base + j)) * jr_vec_load2(inv + j);
            if (out32) {
                jr_v2f f = __builtin_convertvector(d, jr_v2f);
                memcpy(out32 + j, &f, 8);
            } else {
                memcpy(out64 + j, &d, 16);
            }
        }
        if (j < n) {  /* the last code, as the conversion loop converts it */
            uint64_t bit = (uint64_t)sh + (uint64_t)j * bits;
            uint32_t code = (uint32_t)((jr_load64(p + (bit >> 3)) >> (bit & 7)) & (((uint64_t)1 << bits) - 1));
            double d = ((double)(int32_t)(code ^ 0x80000000u) + base[uniform ? 0 : j]) * inv[uniform ? 0 : j];
            if (out32) out32[j] = (float)d; else out64[j] = d;
        }
    }
    /* one copy per (uniform, float32 / float64 out), with a constant width for k = 15 and 12 */
    #define JR_VEC_WIDTH(B) do { \\
        if (out32 && uniform) jr_vec_row(p, phase, B, n, ph, base, inv, 1, out32, NULL); \\
        else if (out32) jr_vec_row(p, phase, B, n, ph, base, inv, 0, out32, NULL); \\
        else if (uniform) jr_vec_row(p, phase, B, n, ph, base, inv, 1, NULL, out64); \\
        else jr_vec_row(p, phase, B, n, ph, base, inv, 0, NULL, out64); } while (0)
    static void jr_unpack_row_vec(const unsigned char *p, int phase, int bits, Py_ssize_t n, const double *ph,
            const double *base, const double *inv, int uniform, float *out32, double *out64) {
        switch (bits) {
        case 15: JR_VEC_WIDTH(15); break;
        case 12: JR_VEC_WIDTH(12); break;
        default: JR_VEC_WIDTH(bits); break;
        }
    }
    #else
    static int jr_vec_phases(int bits, double base52, double inv, double *ph) { return 0; }
    static void jr_unpack_row_vec(const unsigned char *p, int phase, int bits, Py_ssize_t n, const double *ph,
            const double *base, const double *inv, int uniform, float *out32, double *out64) {}
    #endif
    """
    bint JR_VEC
    int JR_PHASE_DOUBLES
    int jr_vec_phases(int bits, double base52, double inv, double *ph) nogil
    void jr_unpack_row_vec(const unsigned char *p, int phase, int bits, Py_ssize_t n, const double *ph,
                           const double *base, const double *inv, int uniform, float *out32, double *out64) nogil


ctypedef void (*row_read)(const unsigned char *p, int phase, int bits, Py_ssize_t n, const double *base,
                          const double *inv, int uniform, float *out32, double *out64) noexcept nogil

_PATHS = {"avx512vbmi": jr_unpack_has_vbmi() != 0, "avx2": jr_has_avx2() != 0, "portable": JR_VEC != 0,
          "scalar": True}
cdef bint _vbmi = _PATHS["avx512vbmi"]
cdef bint _avx2 = _PATHS["avx2"]
cdef bint _vec = _PATHS["portable"]


def _read_path(path=None) -> str:
    """The row read gather_unpack runs: "avx512vbmi" (16 codes at a time) or "avx2" (8 at a time) for widths <= 25
    bits, else "portable" (the generic-vector group read, every width; little-endian GCC / Clang builds) or "scalar"
    (8-byte loads per 8 codes, a table lookup or a conversion loop: other compilers, big-endian hosts). ``path``
    (tests) picks one, the next one down where this host lacks it."""
    global _vbmi, _avx2, _vec
    if path is not None:
        if path not in _PATHS:
            raise ValueError(f"path must be one of {list(_PATHS)}, got {path!r}")
        _vbmi = path == "avx512vbmi" and _PATHS["avx512vbmi"]
        _avx2 = path in ("avx512vbmi", "avx2") and _PATHS["avx2"]
        _vec = path != "scalar" and _PATHS["portable"]
    return "avx512vbmi" if _vbmi else "avx2" if _avx2 else "portable" if _vec else "scalar"


def _quantize_path(avx2=None) -> str:
    """The uniform quantize loop that runs: "avx2" or "portable"; ``avx2`` (tests) picks one (avx2 where the CPU
    has it)."""
    global _quantize_avx2
    if avx2 is not None:
        _quantize_avx2 = bool(avx2) and jr_has_avx2() != 0
    return "avx2" if _quantize_avx2 else "portable"

from cython_core.uniform import CodeLayout

cdef enum:
    PREFETCH_ROWS = 16   # rows ahead whose cache lines are requested while this row decodes
    TABLE_MAX_BITS = 16  # the scalar read decodes uniform specs up to this width to float32 by a table (<= 256 KiB)
    NOGIL_VALUES = 8192  # release the GIL only for calls at least this big (releasing costs ~0.1 us)

cdef double TWO_31 = 2147483648.0
cdef double TWO_52 = 4503599627370496.0


cdef class _Tables:
    """Contiguous per-dimension tables of one CodeLayout, cached on the spec (specs are immutable)."""
    cdef object _keep
    cdef const double* lo
    cdef const double* hi
    cdef const double* scale
    cdef const double* inv
    cdef const double* base     # offset + 2**31 as float64: decode adds it to (int32)(code - 2**31)
    cdef const int64_t* offset
    cdef Py_ssize_t dim, row_bits, groups
    cdef int bits
    cdef bint uniform, code_nonfinite
    cdef bint lanes_fit         # a code and its bit phase fit a 32-bit lane (bits <= 25): the SIMD reads apply
    cdef uint32_t nonfinite_code
    cdef float* table           # uniform specs, bits <= 16: the float32 value of every code (the scalar read's; made
                                # at its first use)
    cdef double* phases         # the portable read's constants per bit phase (jr_vec_phases); NULL: not this spec

    def __cinit__(self, spec):
        cdef const double[::1] lo = spec.lo, hi = spec.hi, scale = spec.scale, inv = spec.inv_scale
        cdef const int64_t[::1] offset = spec.offset
        base = spec.offset.astype(np.float64) + TWO_31  # exact: |offset| < 2**51
        cdef const double[::1] base_v = base
        self._keep = (spec.lo, spec.hi, spec.scale, spec.inv_scale, spec.offset, base)
        self.lo, self.hi, self.scale, self.inv = &lo[0], &hi[0], &scale[0], &inv[0]
        self.base, self.offset = &base_v[0], &offset[0]
        self.dim, self.row_bits, self.bits = spec.dim, spec.row_bits, spec.bits
        self.uniform = all(np.all(a == a[0]) for a in (spec.lo, spec.hi, spec.scale))
        self.lanes_fit = self.bits <= 25
        self.code_nonfinite = spec.nonfinite == "code"
        self.nonfinite_code = spec.nonfinite_code
        # Groups of 8 codes span exactly `bits` bytes, read with 8-byte loads (little-endian hosts only): a load
        # starts at most at the last code's byte, and the spare word keeps its 8 bytes inside the stream.
        self.groups = self.dim // 8 if JR_LITTLE_ENDIAN else 0
        self.table = NULL
        self.phases = NULL
        if JR_VEC:
            self.phases = <double*>malloc(JR_PHASE_DOUBLES * sizeof(double))
            if self.phases == NULL:
                raise MemoryError()
            # uniform: offset - 2**52 (exact) and inv; per dimension, offset -2**31 and inv 1: each lane is then
            # (double)(int32)(code ^ 2**31), to which the read adds base[j] and multiplies by inv[j]
            if not jr_vec_phases(self.bits, base[0] - (TWO_52 + TWO_31) if self.uniform else -(TWO_52 + TWO_31),
                                 self.inv[0] if self.uniform else 1.0, self.phases):
                free(self.phases)
                self.phases = NULL

    cdef int _make_table(self) except -1:
        """The float32 table of a uniform spec of at most TABLE_MAX_BITS bits, for the scalar read (at its first
        use: the other reads need none)."""
        if self.table == NULL and self.uniform and self.bits <= TABLE_MAX_BITS:
            self.table = <float*>malloc((<size_t>1 << self.bits) * sizeof(float))
            if self.table == NULL:
                raise MemoryError()
            _fill_table(self)
        return 0

    def __dealloc__(self):
        free(self.table)
        free(self.phases)


cdef _Tables _tables(spec):
    return <_Tables>_spec_tables(spec, CodeLayout, _Tables)


cdef inline Py_ssize_t _get_words(storage, Py_buffer* view, _Tables t, int flags) except -1:
    """A C-contiguous 1-D uint64 buffer of ``storage``; returns the rows it holds (its words but the spare one)."""
    if _try_buffer(storage, view, flags):
        if _kind(view) == U64 and view.ndim == 1 and view.shape[0] >= 1:
            return (view.shape[0] - 1) * 64 // t.row_bits
        PyBuffer_Release(view)
    raise ValueError("storage must be a writable C-contiguous 1-D uint64 array of at least one word (rows at bit "
                     f"stride, cython_core.layout.words_for), got {getattr(storage, 'dtype', type(storage).__name__)} "
                     f"{getattr(storage, 'shape', '')}")


cdef inline uint64_t _read(const uint64_t* w, uint64_t pos, int bits) noexcept nogil:
    """The ``bits`` (1..32) bits at bit ``pos`` of the stream."""
    return _read_words(w, pos, bits) & ((<uint64_t>1 << bits) - 1)


cdef inline Py_ssize_t _get_read(storage, indices, _Tables t, Py_buffer* sb, Py_buffer* ib, bint* have_s,
                                 bint* have_i) except -1:
    """The buffers of a read: ``storage`` and the 1-D ``indices`` into it, checked against the rows it holds;
    returns how many indices. ``have_s`` / ``have_i`` say which buffers the caller must release."""
    n_rows = _get_words(storage, sb, t, 0)
    have_s[0] = True
    have_i[0] = _get_indices(indices, ib, "indices") == 0
    if ib.ndim != 1:
        raise ValueError(f"indices must be 1-D, got shape {tuple(ib.shape[i] for i in range(ib.ndim))}")
    _check_indices(<const int64_t*>ib.buf, ib.shape[0], n_rows, "indices")
    return ib.shape[0]


# -- quantize + pack -------------------------------------------------------------------------------

ctypedef fused real_out:
    float
    double


cdef inline uint64_t _code(double v, double lo, double hi, double scale, int64_t offset) noexcept nogil:
    v = v if v >= lo else lo  # NaN -> lo here; replaced afterwards (code policy) or refused before
    v = v if v <= hi else hi
    return <uint64_t>(jr_round(v * scale) - offset)


cdef void _quantize_row(const real_in* x, _Tables t, uint64_t* codes, Py_ssize_t* counts) noexcept nogil:
    """Codes of one row; counts[0] += saturated, counts[1] += non-finite (stored as the code).
    Two values per step with a float64 count per lane: the form gcc vectorizes (SSE2 included);
    an integer count of float compares does not vectorize. Counts stay exact below 2**53."""
    cdef Py_ssize_t j, dim = t.dim, last = t.dim - 1
    cdef int64_t nonfinite = 0
    cdef double sat0 = 0.0, sat1 = 0.0, v, w, lo, hi, scale
    cdef int64_t offset
    if t.uniform and _quantize_avx2:
        if real_in is float:
            sat0 = jr_quantize_f32_avx2(x, dim, t.lo[0], t.hi[0], t.scale[0], t.offset[0], codes)
        else:
            sat0 = jr_quantize_f64_avx2(x, dim, t.lo[0], t.hi[0], t.scale[0], t.offset[0], codes)
    elif t.uniform:
        lo, hi, scale, offset = t.lo[0], t.hi[0], t.scale[0], t.offset[0]
        for j in range(0, last, 2):
            v, w = x[j], x[j + 1]
            sat0 += _outside(v, lo, hi)
            sat1 += _outside(w, lo, hi)
            codes[j] = _code(v, lo, hi, scale, offset)
            codes[j + 1] = _code(w, lo, hi, scale, offset)
    else:
        for j in range(0, last, 2):
            v, w = x[j], x[j + 1]
            sat0 += _outside(v, t.lo[j], t.hi[j])
            sat1 += _outside(w, t.lo[j + 1], t.hi[j + 1])
            codes[j] = _code(v, t.lo[j], t.hi[j], t.scale[j], t.offset[j])
            codes[j + 1] = _code(w, t.lo[j + 1], t.hi[j + 1], t.scale[j + 1], t.offset[j + 1])
    if dim % 2 and not (t.uniform and _quantize_avx2):
        sat0 += _outside(x[last], t.lo[last], t.hi[last])
        codes[last] = _code(x[last], t.lo[last], t.hi[last], t.scale[last], t.offset[last])
    if t.code_nonfinite:
        for j in range(dim):
            if not isfinite(x[j]):
                codes[j] = t.nonfinite_code
                nonfinite += 1
                sat0 -= isinf(x[j]) != 0  # +-inf compared above as out of range
    counts[0] += <Py_ssize_t>(sat0 + sat1)
    counts[1] += nonfinite


cdef void _pack_row(const uint64_t* codes, Py_ssize_t dim, int bits, uint64_t* words, uint64_t start) noexcept nogil:
    """``dim`` codes little-endian into the stream from bit ``start``, the bits before and after kept."""
    cdef Py_ssize_t j
    cdef int s = start & 63
    cdef uint64_t* first = words + (start >> 6)
    cdef BitWriter b = BitWriter(first, 0, s, (first[0] & ((<uint64_t>1 << s) - 1)) if s else 0)
    for j in range(dim):
        _put_bits(&b, codes[j], bits)
    if b.used:  # the last, partly filled word: the next row's bits above it stay
        b.row[b.w] = b.acc | (b.row[b.w] & (~<uint64_t>0 << b.used))


cdef bint _row_holds(const uint64_t* codes, Py_ssize_t dim, int bits, const uint64_t* words,
                     uint64_t start) noexcept nogil:
    cdef Py_ssize_t j
    for j in range(dim):
        if _read(words, start + j * bits, bits) != codes[j]:
            return False
    return True


cdef Py_ssize_t _encode(const real_in* x, Py_ssize_t n, const int64_t* rows, uint64_t* storage, _Tables t,
                        Py_ssize_t* counts, Py_ssize_t* first, int* held, uint32_t* out) noexcept nogil:
    """Encode n rows into ``storage``; or, given ``held``, compare each with its storage row instead (``held[0]``
    is cleared at the first difference; nothing is written); or, given ``out``, write the codes there (n, D) and
    leave storage alone. With the "error" policy and non-finite values, write nothing and return their count.
    Returns -1 when out of memory."""
    cdef Py_ssize_t i, j, bad = 0
    cdef uint64_t* codes
    if not t.code_nonfinite:
        bad = _find_nonfinite(x, n * t.dim, first)
        if bad:
            return bad
    codes = <uint64_t*>malloc(t.dim * sizeof(uint64_t))
    if codes == NULL:
        return -1
    for i in range(n):
        _quantize_row(x + i * t.dim, t, codes, counts)
        if out != NULL:
            for j in range(t.dim):
                out[i * t.dim + j] = <uint32_t>codes[j]
        elif held == NULL:
            _pack_row(codes, t.dim, t.bits, storage, <uint64_t>rows[i] * t.row_bits)
        elif held[0] and not _row_holds(codes, t.dim, t.bits, storage, <uint64_t>rows[i] * t.row_bits):
            held[0] = 0
    free(codes)
    return 0


cdef inline Py_ssize_t _get_x(x, Py_buffer* xb, _Tables t) except -1:
    """A float32 / float64 buffer of the values ``x`` ((n, D), or (D,) for one row; others converted to float64);
    returns n. Released again when the shape is wrong."""
    _get_values(x, xb, F32, F64, F64)
    if not ((xb.ndim == 1 and xb.shape[0] == t.dim) or (xb.ndim == 2 and xb.shape[1] == t.dim)):
        shape = tuple(xb.shape[i] for i in range(xb.ndim))
        PyBuffer_Release(xb)
        raise ValueError(f"x must have shape (n, {t.dim}) or ({t.dim},), got {shape}")
    return 1 if xb.ndim == 1 else xb.shape[0]


cdef int _check_encoded(Py_ssize_t bad, Py_ssize_t first, _Tables t) except -1:
    """Raise what :func:`_encode` returned: -1 out of memory, else the count of non-finite values refused (the
    first at flat position ``first``)."""
    if bad < 0:
        raise MemoryError()
    if bad:
        raise NonFiniteError(bad, first // t.dim, first % t.dim)
    return 0


cdef tuple _quantize(x, storage, rows, spec, bint match):
    cdef _Tables t = _tables(spec)
    cdef int held = 1
    cdef int* held_p = &held if match else NULL
    cdef Py_buffer xb, sb, rb
    cdef bint have_s = False, have_r = False
    cdef int64_t one_row
    cdef const int64_t* rows_p
    cdef Py_ssize_t n, n_rows, first = 0, bad = 0
    cdef Py_ssize_t counts[2]
    cdef Kind kind
    cdef bint big
    n = _get_x(x, &xb, t)
    try:
        n_rows = _get_words(storage, &sb, t, 0 if match else PyBUF_WRITABLE)
        have_s = True
        if type(rows) is int and 0 <= rows < n_rows:  # one row in range: no array (a bool is not a row)
            if n != 1:
                raise ValueError(f"rows must hold one index per row of x ({n}), got a single index")
            one_row = rows
            rows_p = &one_row
        else:
            have_r = _get_indices(rows, &rb, "rows") == 0
            if rb.ndim > 1 or (rb.shape[0] if rb.ndim else 1) != n:
                raise ValueError(f"rows must hold one index per row of x ({n}), got shape "
                                 f"{tuple(rb.shape[i] for i in range(rb.ndim))}")
            rows_p = <const int64_t*>rb.buf
        _check_indices(rows_p, n, n_rows, "rows")
        counts[0] = counts[1] = 0
        kind = _kind(&xb)
        big = n * t.dim >= NOGIL_VALUES
        if kind == F32 and big:
            with nogil:
                bad = _encode(<const float*>xb.buf, n, rows_p, <uint64_t*>sb.buf, t, counts, &first, held_p, NULL)
        elif kind == F32:
            bad = _encode(<const float*>xb.buf, n, rows_p, <uint64_t*>sb.buf, t, counts, &first, held_p, NULL)
        elif big:
            with nogil:
                bad = _encode(<const double*>xb.buf, n, rows_p, <uint64_t*>sb.buf, t, counts, &first, held_p, NULL)
        else:
            bad = _encode(<const double*>xb.buf, n, rows_p, <uint64_t*>sb.buf, t, counts, &first, held_p, NULL)
    finally:
        PyBuffer_Release(&xb)
        if have_s:
            PyBuffer_Release(&sb)
        if have_r:
            PyBuffer_Release(&rb)
    _check_encoded(bad, first, t)
    return (counts[0], counts[1], bool(held)) if match else (counts[0], counts[1])


def quantize_pack(x, storage, rows, spec) -> int:
    """Encode ``x`` (n, D) (or (D,)) into rows ``rows`` of ``storage``; return how many values saturated.

    x is float32 or float64 (anything else is converted to float64); ``rows`` is a sequence of n
    indices (or an int when n == 1). Non-finite values raise NonFiniteError with nothing written,
    unless the spec's ``nonfinite`` is "code": then they are stored as ``spec.nonfinite_code``.
    """
    return _quantize(x, storage, rows, spec, False)[0]


def quantize_pack_counts(x, storage, rows, spec) -> tuple:
    """Like :func:`quantize_pack`, returning ``(saturated, nonfinite_coded)``."""
    return _quantize(x, storage, rows, spec, False)


def quantize_match(x, storage, rows, spec) -> tuple:
    """Encode ``x`` as :func:`quantize_pack_counts` would, writing nothing (``storage`` may be read-only): returns
    ``(saturated, nonfinite_coded, held)``, ``held`` whether rows ``rows`` already hold exactly these words (what
    a buffer asks of an observation that should equal the next observation it stored). Non-finite values are
    refused alike."""
    return _quantize(x, storage, rows, spec, True)


cdef Py_ssize_t _encode_view(Py_buffer* xb, Py_ssize_t n, const int64_t* rows, uint64_t* storage, _Tables t,
                             Py_ssize_t* counts, Py_ssize_t* first, int* held) noexcept:
    """:func:`_encode` on a float32 or float64 buffer (rows to storage, or compared with them given ``held``)."""
    if _kind(xb) == F32:
        return _encode(<const float*>xb.buf, n, rows, storage, t, counts, first, held, NULL)
    return _encode(<const double*>xb.buf, n, rows, storage, t, counts, first, held, NULL)


def quantize_continue(obs, next_obs, storage, Py_ssize_t first, Py_ssize_t following, spec) -> tuple:
    """A replay buffer's usual add in one call: whether rows ``first``.. of ``storage`` hold ``obs`` (n, D) (as
    :func:`quantize_match` compares them) and, when they do, ``next_obs`` (n, D) encoded into rows
    ``following``.. (as :func:`quantize_pack_counts`). Nothing is written when the rows do not hold ``obs`` or a
    value is refused. Returns ``(saturated, held)``, ``saturated`` the values of ``obs`` clipped."""
    cdef _Tables t = _tables(spec)
    cdef Py_buffer xb, yb, sb
    cdef bint have_y = False, have_s = False
    cdef int held = 1
    cdef Py_ssize_t n, n_rows, i, at = 0, bad = 0
    cdef Py_ssize_t counts[2]
    cdef Py_ssize_t spare[2]
    cdef int64_t* rows = NULL
    n = _get_x(obs, &xb, t)
    try:
        if _get_x(next_obs, &yb, t) != n:
            PyBuffer_Release(&yb)
            raise ValueError(f"next_obs must have as many rows as obs ({n})")
        have_y = True
        n_rows = _get_words(storage, &sb, t, PyBUF_WRITABLE)
        have_s = True
        for name, row in (("first", first), ("following", following)):
            if row < 0 or row + n > n_rows:
                raise IndexError(f"{name} must be in 0..{n_rows - n} ({n} rows), got {row}")
        rows = <int64_t*>malloc(2 * n * sizeof(int64_t))
        if rows == NULL:
            raise MemoryError()
        for i in range(n):
            rows[i], rows[n + i] = first + i, following + i
        counts[0] = counts[1] = spare[0] = spare[1] = 0
        bad = _encode_view(&xb, n, rows, <uint64_t*>sb.buf, t, counts, &at, &held)
        if bad == 0 and held:
            bad = _encode_view(&yb, n, rows + n, <uint64_t*>sb.buf, t, spare, &at, NULL)
    finally:
        free(rows)
        PyBuffer_Release(&xb)
        if have_y:
            PyBuffer_Release(&yb)
        if have_s:
            PyBuffer_Release(&sb)
    _check_encoded(bad, at, t)
    return counts[0], bool(held)


# -- codes in and out ------------------------------------------------------------------------------

def quantize_codes(x, spec) -> tuple:
    """``(codes, saturated, nonfinite_coded)``: the codes of ``x`` (n, D) (or (D,)) as :func:`quantize_pack` would
    store them, uint32 (n, D), in no storage (a batch that goes to rows later, :func:`pack_codes`)."""
    cdef _Tables t = _tables(spec)
    cdef Py_buffer xb
    cdef Py_ssize_t n, bad, first = 0
    cdef Py_ssize_t counts[2]
    cdef uint32_t[:, ::1] out_v
    cdef uint32_t* out_p = NULL
    n = _get_x(x, &xb, t)
    try:
        out = np.empty((n, t.dim), dtype=np.uint32)
        out_v = out
        if n:
            out_p = &out_v[0, 0]
        counts[0] = counts[1] = 0
        if _kind(&xb) == F32:
            bad = _encode(<const float*>xb.buf, n, NULL, NULL, t, counts, &first, NULL, out_p)
        else:
            bad = _encode(<const double*>xb.buf, n, NULL, NULL, t, counts, &first, NULL, out_p)
    finally:
        PyBuffer_Release(&xb)
    _check_encoded(bad, first, t)
    return out, counts[0], counts[1]


def pack_codes(codes, storage, rows, spec) -> None:
    """Write ``codes`` (uint32 (n, D), each below 2**bits: :func:`quantize_codes` or :func:`unpack_codes` made them)
    into rows ``rows`` of ``storage``, keeping every other row's bits."""
    cdef _Tables t = _tables(spec)
    cdef Py_buffer sb, rb
    cdef bint have_s = False, have_r = False
    cdef Py_ssize_t n, i, j, n_rows
    cdef const uint32_t[:, ::1] c
    cdef uint64_t* row
    cdef uint64_t limit = <uint64_t>1 << t.bits
    arr = np.asarray(codes)
    if arr.dtype.kind not in "ui" or arr.ndim != 2 or arr.shape[1] != t.dim:
        raise ValueError(f"codes must be integers of shape (n, {t.dim}), got {arr.dtype} {arr.shape}")
    if arr.size and (arr.min() < 0 or arr.max() >= limit):
        bad = np.argwhere((arr < 0) | (arr >= limit))[0]
        raise ValueError(f"codes must be in 0..2**{t.bits} - 1, got {arr[tuple(bad)]} at row {bad[0]}, "
                         f"dimension {bad[1]}")
    c = np.ascontiguousarray(arr, dtype=np.uint32)
    n = c.shape[0]
    row = <uint64_t*>malloc((t.dim + 1) * sizeof(uint64_t))
    if row == NULL:
        raise MemoryError()
    try:
        n_rows = _get_words(storage, &sb, t, PyBUF_WRITABLE)
        have_s = True
        have_r = _get_indices(rows, &rb, "rows") == 0
        if (rb.shape[0] if rb.ndim else 1) != n or rb.ndim > 1:
            raise ValueError(f"rows must hold one index per row of codes ({n}), got shape "
                             f"{tuple(rb.shape[i] for i in range(rb.ndim))}")
        _check_indices(<const int64_t*>rb.buf, n, n_rows, "rows")
        for i in range(n):
            for j in range(t.dim):
                row[j] = c[i, j]
            _pack_row(row, t.dim, t.bits, <uint64_t*>sb.buf, <uint64_t>(<const int64_t*>rb.buf)[i] * t.row_bits)
    finally:
        free(row)
        if have_s:
            PyBuffer_Release(&sb)
        if have_r:
            PyBuffer_Release(&rb)


def unpack_codes(storage, indices, spec):
    """The codes rows ``indices`` of ``storage`` hold: uint32 (n, D)."""
    cdef _Tables t = _tables(spec)
    cdef Py_buffer sb, ib
    cdef bint have_s = False, have_i = False
    cdef Py_ssize_t n, i
    cdef uint32_t[:, ::1] out_v
    try:
        n = _get_read(storage, indices, t, &sb, &ib, &have_s, &have_i)
        out = np.empty((n, t.dim), dtype=np.uint32)
        out_v = out
        for i in range(n):
            _unpack_words(<const uint64_t*>sb.buf, <uint64_t>(<const int64_t*>ib.buf)[i] * t.row_bits, t.bits, 0,
                          t.dim, &out_v[i, 0])
    finally:
        if have_s:
            PyBuffer_Release(&sb)
        if have_i:
            PyBuffer_Release(&ib)
    return out


# -- gather + unpack -------------------------------------------------------------------------------

cdef inline void _two_words(const unsigned char* p, int sh, int bits, uint64_t* lo, uint64_t* mid) noexcept nogil:
    """A group of 8 codes of ``bits`` (8..15) bits that starts at bit ``sh`` (0..7) of byte ``p`` (8*bits + sh <= 127
    bits: two 8-byte loads, the second ending at most 16 - bits bytes past the group, inside the spare word): codes
    0-3 from the low bits of ``lo``, codes 4-7 from those of ``mid``."""
    cdef uint64_t a = jr_load64(p), b = jr_load64(p + 8)
    a = (a >> sh) | ((b << 1) << (63 - sh))  # no branch on sh; b << 64 would be undefined
    b >>= sh
    lo[0] = a
    mid[0] = (a >> (4 * bits)) | (b << (64 - 4 * bits))


cdef inline void _unpack_groups(const unsigned char* p, int sh, int bits, Py_ssize_t groups,
                                uint32_t* codes) noexcept nogil:
    """Codes of the first 8*groups values of a row that starts at bit ``sh`` (0..7) of byte ``p``: 8 codes span
    `bits` bytes, read with two 8-byte loads (8 <= bits <= 15) or one per code (at most 7 + 7 + 32 bits in). Inlined with
    a constant `bits`, every offset below is a constant."""
    cdef Py_ssize_t g
    cdef int i
    cdef uint64_t lo, mid, mask = (<uint64_t>1 << bits) - 1
    for g in range(groups):
        if 8 <= bits <= 15:
            _two_words(p, sh, bits, &lo, &mid)
            for i in range(4):
                codes[i] = <uint32_t>((lo >> (i * bits)) & mask)
                codes[i + 4] = <uint32_t>((mid >> (i * bits)) & mask)
        else:
            for i in range(8):
                codes[i] = <uint32_t>((jr_load64(p + ((i * bits) >> 3)) >> (((i * bits) & 7) + sh)) & mask)
        p += bits
        codes += 8


cdef inline void _unpack_words(const uint64_t* words, uint64_t start, int bits, Py_ssize_t first, Py_ssize_t stop,
                               uint32_t* codes) noexcept nogil:
    """Codes first..stop-1 of the row at bit ``start``, read word by word (the row's tail, and every code on
    big-endian hosts)."""
    cdef Py_ssize_t j
    for j in range(first, stop):
        codes[j] = <uint32_t>_read(words, start + j * bits, bits)


cdef inline void _unpack_row(const uint64_t* words, uint64_t start, _Tables t, uint32_t* codes) noexcept nogil:
    cdef const unsigned char* p = <const unsigned char*>words + (start >> 3)
    cdef int sh = start & 7
    if t.bits == 15:  # the paper's widths get constant offsets
        _unpack_groups(p, sh, 15, t.groups, codes)
    elif t.bits == 12:
        _unpack_groups(p, sh, 12, t.groups, codes)
    else:
        _unpack_groups(p, sh, t.bits, t.groups, codes)
    _unpack_words(words, start, t.bits, 8 * t.groups, t.dim, codes)


cdef inline void _dequantize_row(const uint32_t* codes, _Tables t, real_out* out) noexcept nogil:
    """value = (code + offset) * inv_scale in float64, computed as (code - 2**31) + (offset + 2**31):
    both sums are exact, and the int32 conversion vectorizes."""
    cdef Py_ssize_t j
    cdef double base, inv
    if t.uniform:
        base, inv = t.base[0], t.inv[0]
        for j in range(t.dim):
            out[j] = <real_out>((<double>(<int32_t>(codes[j] ^ 0x80000000u)) + base) * inv)
    else:
        for j in range(t.dim):
            out[j] = <real_out>((<double>(<int32_t>(codes[j] ^ 0x80000000u)) + t.base[j]) * t.inv[j])


cdef void _fill_table(_Tables t) noexcept:
    """table[c] = the float32 value of code c, by the very expression _dequantize_row evaluates."""
    cdef uint32_t c
    cdef double base = t.base[0], inv = t.inv[0]
    for c in range(<uint32_t>1 << t.bits):
        t.table[c] = <float>((<double>(<int32_t>(c ^ 0x80000000u)) + base) * inv)


cdef inline void _lookup_groups(const unsigned char* p, int sh, int bits, Py_ssize_t groups, const float* table,
                                float* out) noexcept nogil:
    """Unpack and look up the first 8*groups values (uniform specs, bits <= 16, float32 out), no scratch row."""
    cdef Py_ssize_t g
    cdef int i
    cdef uint64_t lo, mid, mask = (<uint64_t>1 << bits) - 1
    for g in range(groups):
        if 8 <= bits <= 15:
            _two_words(p, sh, bits, &lo, &mid)
            for i in range(4):
                out[i] = table[(lo >> (i * bits)) & mask]
                out[i + 4] = table[(mid >> (i * bits)) & mask]
        else:
            for i in range(8):
                out[i] = table[(jr_load64(p + ((i * bits) >> 3)) >> (((i * bits) & 7) + sh)) & mask]
        p += bits
        out += 8


cdef inline void _lookup_at(const unsigned char* p, int sh, int bits, Py_ssize_t groups, const float* table,
                            float* out) noexcept nogil:
    """:func:`_lookup_groups` with the row's bit offset ``sh`` a constant too: one copy per offset, every shift
    constant (inlined with a constant ``bits``)."""
    if sh == 0:
        _lookup_groups(p, 0, bits, groups, table, out)
    elif sh == 1:
        _lookup_groups(p, 1, bits, groups, table, out)
    elif sh == 2:
        _lookup_groups(p, 2, bits, groups, table, out)
    elif sh == 3:
        _lookup_groups(p, 3, bits, groups, table, out)
    elif sh == 4:
        _lookup_groups(p, 4, bits, groups, table, out)
    elif sh == 5:
        _lookup_groups(p, 5, bits, groups, table, out)
    elif sh == 6:
        _lookup_groups(p, 6, bits, groups, table, out)
    else:
        _lookup_groups(p, 7, bits, groups, table, out)


cdef inline void _lookup_row(const uint64_t* words, uint64_t start, _Tables t, uint32_t* codes,
                             float* out) noexcept nogil:
    cdef const unsigned char* p = <const unsigned char*>words + (start >> 3)
    cdef int sh = start & 7
    cdef Py_ssize_t j
    if t.bits == 15:
        _lookup_at(p, sh, 15, t.groups, t.table, out)
    elif t.bits == 12:
        _lookup_at(p, sh, 12, t.groups, t.table, out)
    else:
        _lookup_groups(p, sh, t.bits, t.groups, t.table, out)
    _unpack_words(words, start, t.bits, 8 * t.groups, t.dim, codes)
    for j in range(8 * t.groups, t.dim):
        out[j] = t.table[codes[j]]


cdef inline void _prefetch(const uint64_t* words, uint64_t start, Py_ssize_t row_bits) noexcept nogil:
    """Request every cache line of the row at bit ``start``."""
    cdef const char* p = <const char*>words + (start >> 3)
    cdef const char* last = <const char*>words + ((start + row_bits - 1) >> 3)
    while p <= last:
        JR_PREFETCH(p)
        p += 64
    JR_PREFETCH(last)


cdef inline bint _scalar_read(_Tables t) noexcept nogil:
    """Whether gather_unpack reads rows of ``t`` with the scalar read (no SIMD read for this width or host)."""
    return not ((t.lanes_fit and (_vbmi or _avx2)) or (_vec and t.phases != NULL))


cdef int _gather(const uint64_t* storage, const int64_t* idx, Py_ssize_t n, _Tables t,
                 real_out* out) noexcept nogil:
    cdef Py_ssize_t i, row_bits = t.row_bits
    cdef uint64_t start
    cdef row_read simd = NULL  # the AVX-512 VBMI or AVX2 row read for widths <= 25, where the host has one
    cdef bint vec = False      # else the portable group read, where this build has it
    cdef uint32_t* codes = <uint32_t*>malloc(t.dim * sizeof(uint32_t))
    if codes == NULL:
        return -1
    if t.lanes_fit and _vbmi:
        simd = jr_unpack_row_vbmi
    elif t.lanes_fit and _avx2:
        simd = jr_unpack_row_avx2
    else:
        vec = _vec and t.phases != NULL
    for i in range(min(n, PREFETCH_ROWS)):
        _prefetch(storage, <uint64_t>idx[i] * row_bits, row_bits)
    for i in range(n):
        if i + PREFETCH_ROWS < n:
            _prefetch(storage, <uint64_t>idx[i + PREFETCH_ROWS] * row_bits, row_bits)
        start = <uint64_t>idx[i] * row_bits
        if vec:
            if real_out is float:
                jr_unpack_row_vec(<const unsigned char*>storage + (start >> 3), start & 7, t.bits, t.dim, t.phases,
                                  t.base, t.inv, t.uniform, out + i * t.dim, NULL)
            else:
                jr_unpack_row_vec(<const unsigned char*>storage + (start >> 3), start & 7, t.bits, t.dim, t.phases,
                                  t.base, t.inv, t.uniform, NULL, out + i * t.dim)
            continue
        if simd != NULL:
            if real_out is float:
                simd(<const unsigned char*>storage + (start >> 3), start & 7, t.bits, t.dim, t.base, t.inv, t.uniform,
                     out + i * t.dim, NULL)
            else:
                simd(<const unsigned char*>storage + (start >> 3), start & 7, t.bits, t.dim, t.base, t.inv, t.uniform,
                     NULL, out + i * t.dim)
            continue
        if real_out is float:
            if t.table != NULL:
                _lookup_row(storage, start, t, codes, out + i * t.dim)
                continue
        _unpack_row(storage, start, t, codes)
        _dequantize_row(codes, t, out + i * t.dim)
    free(codes)
    return 0


def gather_unpack(storage, indices, spec, out) -> None:
    """Decode rows ``indices`` of ``storage`` into ``out`` (float32 or float64, C-contiguous, (n, D))."""
    cdef _Tables t = _tables(spec)
    cdef Py_buffer sb, ib, ob
    cdef bint have_s = False, have_i = False, have_o = False
    cdef Py_ssize_t n
    cdef Kind kind = OTHER
    cdef int status = 0
    cdef bint big
    try:
        n = _get_read(storage, indices, t, &sb, &ib, &have_s, &have_i)
        have_o = _try_buffer(out, &ob, PyBUF_WRITABLE)
        if have_o:
            kind = _kind(&ob)
        if kind not in (F32, F64) or ob.ndim != 2 or ob.shape[0] != n or ob.shape[1] != t.dim:
            raise ValueError(f"out must be a writable C-contiguous float32 array of shape ({n}, {t.dim}), "
                             f"got {getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
        if kind == F32 and _scalar_read(t):
            t._make_table()
        big = n * t.dim >= NOGIL_VALUES
        if kind == F32 and big:
            with nogil:
                status = _gather(<const uint64_t*>sb.buf, <const int64_t*>ib.buf, n, t, <float*>ob.buf)
        elif kind == F32:
            status = _gather(<const uint64_t*>sb.buf, <const int64_t*>ib.buf, n, t, <float*>ob.buf)
        elif big:
            with nogil:
                status = _gather(<const uint64_t*>sb.buf, <const int64_t*>ib.buf, n, t, <double*>ob.buf)
        else:
            status = _gather(<const uint64_t*>sb.buf, <const int64_t*>ib.buf, n, t, <double*>ob.buf)
    finally:
        if have_s:
            PyBuffer_Release(&sb)
        if have_i:
            PyBuffer_Release(&ib)
        if have_o:
            PyBuffer_Release(&ob)
    if status < 0:
        raise MemoryError()
