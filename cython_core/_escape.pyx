# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""Compiled escape-coded rows at bit stride (:class:`EscapeRows`; the layout is :class:`cython_core.escape.EscapeLayout`).

Row r of ``n_rows`` occupies bits [r * row_bits, (r + 1) * row_bits) of one little-endian stream of 64-bit
words (``words``, one spare word at the end), no padding between rows. Dimension j holds ``code - lo[j]`` in
``bits[j]`` bits when that is below ``2**bits[j] - 1``; else the row holds that top value, the escape, and the
exact code goes to the side table: rows are grouped in blocks of ``block_rows``; block b's entries are the
``seg_len[b]`` uint32 of ``pool`` from ``seg_start[b]`` (room for ``seg_cap[b]``), each
``(row in block) << 26 | (code + top)``, sorted by row (a read finds a row's run by binary search), a row's
entries in dimension order. Rewriting a row replaces its run in place; a block out of room grows where it is if it is
the pool's last segment (the block a fill is writing: no holes left), else moves to the pool's end with an eighth's
slack; a full pool is compacted in place, and grown by a quarter (a new pool) only if the live entries need it.

Every write, and every read on a big-endian host, goes through whole words: a code is read from at most two
words, a row of B bits touches at most ceil(B / 64) + 1. On a little-endian host a read loads 8 bytes at each
code's own byte offset (no code waits on the one before): values (widths <= 25 bits) 16 codes at a time, on a CPU
with AVX-512 VBMI (one masked load and one byte permute per group), or with AVX2 (two 16-byte windows and one
in-lane byte shuffle per 8 codes), or else with the compiler's generic vectors (SSE2, NEON: each lane loaded at
its code's byte, shifted by the row's phase, masked, and converted through the float's exponent bits, no per-lane
shift; 4 rows at a time), and codes, or wider values, a code at a time. Grouped reads take rows in chunks: the
chunk's rows first, then the first side-table entry of each row that escaped, all searched at once (their cache
misses overlap), then the escapes patched. Decoding gives ``(double)code * (1 / 10^m)``, cast to the out dtype:
the same bits as the uniform kernels give for the same input (float32 values where float math gives those bits:
see ``FLOAT_SCALES``).
"""

import sys

import numpy as np

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release
from libc.stdint cimport int32_t, int64_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memmove, memset

from cython_core._support cimport *  # the shared C helpers and argument-buffer rules

from cython_core.errors import NonFiniteError
from cython_core.escape import EscapeLayout
from cython_core.layout import block_rows, words_for

cdef enum:
    PREFETCH_ROWS = 4
    NEAR_ENTRIES = 64  # entries about a row's share of its block that a search reads first (_lower_bound_near)
    CHUNK_ROWS = 256  # rows a read takes before it searches their first entries and patches them (_read_rows)
    NOGIL_VALUES = 8192
    ENTRY_CODE_BITS = 26  # cython_core.layout.ENTRY_CODE_BITS (tests/test_escape.py checks they agree)
    MAX_SEGMENT = 65535   # seg_cap is uint16

cdef extern from *:
    """
    #include <math.h>
    #include <stdint.h>
    /* A row as though nothing escaped, little-endian hosts: code j = (8 bytes at p + (phase + offs[j]) / 8)
       >> ((phase + offs[j]) % 8) & esc[j] (scalar integer work), then values = ((double)code + lo[j]) * inv in a
       loop the compiler vectorizes (the conversion and the add are exact, as (double)(code + lo) is; the multiply
       and the cast round to nearest): the bits the word-by-word read gives. Returns whether a code escaped. */
    #define JR_ESC_BODY \
        Py_ssize_t j; uint32_t escaped = 0; \
        for (j = 0; j < n; j++) { \
            uint64_t bit = phase + (uint64_t)offs[j]; \
            uint32_t v = (uint32_t)(jr_load64(p + (bit >> 3)) >> (bit & 7)) & esc[j]; \
            escaped |= v == esc[j]; \
            codes[j] = v; \
        } \
        if (out32) { for (j = 0; j < n; j++) out32[j] = (float)(((double)codes[j] + lo[j]) * inv); } \
        else if (out64) { for (j = 0; j < n; j++) out64[j] = ((double)codes[j] + lo[j]) * inv; } \
        return escaped != 0;
    #define JR_ESC_ARGS const unsigned char *p, uint64_t phase, const int64_t *__restrict__ offs, \
        const uint32_t *__restrict__ esc, const double *__restrict__ lo, double inv, Py_ssize_t n, \
        uint32_t *__restrict__ codes, float *__restrict__ out32, double *__restrict__ out64
    static int jr_escape_row(JR_ESC_ARGS) { JR_ESC_BODY }
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    __attribute__((target("avx2"))) static int jr_escape_row_avx2(JR_ESC_ARGS) { JR_ESC_BODY }
    static int jr_escape_has_avx2(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    #else
    #define jr_escape_row_avx2 jr_escape_row
    static int jr_escape_has_avx2(void) { return 0; }
    #endif
    /* The float32 read's rule (jr_escape_row_vbmi): q = c * (float)inv, then q + (c - q * scale) * (float)inv,
       each step an FMA; how many paper codes |c| <= 2^24 it gives other bits than (float)((double)c * inv). */
    static int64_t jr_float_mismatches(double scale, double inv) {
        const float s = (float)scale, i = (float)inv;
        int64_t c, bad = 0;
        for (c = -(INT64_C(1) << 24); c <= (INT64_C(1) << 24); c++) {
            float cf = (float)c, q = cf * i;
            bad += fmaf(fmaf(-q, s, cf), i, q) != (float)((double)c * inv);
        }
        return bad;
    }
    /* Lower bounds in sorted uint32 runs, many at once: run i starts at cur[i] and holds len[i] >= 1 entries; on
       return cur[i] points at its first entry >= key[i] (one past its last if none). Binary searches without a
       branch on the data, a step of every search in turn: the loads of one step do not wait on one another, so
       their cache misses overlap (one search alone waits on each of its loads in turn). */
    static void jr_lower_bounds(const uint32_t **cur, uint32_t *len, const uint32_t *key, Py_ssize_t count) {
        uint32_t widest = 0, half;
        Py_ssize_t i;
        for (i = 0; i < count; i++) widest = len[i] > widest ? len[i] : widest;
        for (; widest > 1; widest -= widest >> 1) {
            for (i = 0; i < count; i++) {
                half = len[i] >> 1;
                cur[i] += half & (0u - (uint32_t)(cur[i][half] < key[i]));
                len[i] -= half;
            }
        }
        for (i = 0; i < count; i++) cur[i] += cur[i][0] < key[i];
    }
    /* The lowest set bit of m (m != 0). */
    #if defined(__GNUC__) || defined(__clang__)
    #define jr_ctz64(m) __builtin_ctzll(m)
    #else
    static int jr_ctz64(uint64_t m) { int n = 0; while (!(m & 1u)) { m >>= 1; n++; } return n; }
    #endif
    /* The same row 16 dimensions at a time with AVX-512 VBMI: group g's bytes from p + win[g] (masked by load[g]
       to the bytes its codes can reach at any phase: nothing past the stream's spare word), lane l's 4 bytes picked
       at bit bitpos[16g + l] + phase (vpermb), shifted and masked by esc, then converted as JR_ESC_BODY converts
       them (separate add and multiply, no FMA: the same bits); escaped[g]: the group's lanes that hold their
       escape. bitpos, esc and lo are padded to whole groups. Returns whether a code escaped. */
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
    #include <immintrin.h>
    #include <string.h>
    #define JR_ESC_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vbmi")))
    #define JR_ESC_AVX2 __attribute__((target("avx2,fma")))
    JR_ESC_VBMI static int jr_escape_row_vbmi(const unsigned char *p, uint64_t phase, Py_ssize_t n,
            const int32_t *bitpos, const int32_t *win, const uint64_t *load, const uint32_t *esc,
            const double *lo, const int32_t *lo32, double inv, float scale32, uint16_t *escaped, float *out32,
            double *out64) {
        const __m512i vphase = _mm512_set1_epi32((int)phase), seven = _mm512_set1_epi32(7);
        const __m512i spread = _mm512_set_epi8(12, 12, 12, 12, 8, 8, 8, 8, 4, 4, 4, 4, 0, 0, 0, 0,
                                               12, 12, 12, 12, 8, 8, 8, 8, 4, 4, 4, 4, 0, 0, 0, 0,
                                               12, 12, 12, 12, 8, 8, 8, 8, 4, 4, 4, 4, 0, 0, 0, 0,
                                               12, 12, 12, 12, 8, 8, 8, 8, 4, 4, 4, 4, 0, 0, 0, 0);
        const __m512i step = _mm512_set1_epi32(0x03020100);
        const __m512d vinv = _mm512_set1_pd(inv);
        const __m512 vscale32 = _mm512_set1_ps(scale32), vinv32 = _mm512_set1_ps((float)inv);
        __mmask16 any = 0, lanes, hit;
        Py_ssize_t g, first;
        for (g = 0, first = 0; first < n; g++, first += 16) {
            lanes = n - first >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - first)) - 1);
            __m512i bp = _mm512_add_epi32(_mm512_loadu_si512(bitpos + first), vphase);
            __m512i idx = _mm512_add_epi8(_mm512_shuffle_epi8(_mm512_srli_epi32(bp, 3), spread), step);
            __m512i v = _mm512_permutexvar_epi8(idx, _mm512_maskz_loadu_epi8(load[g], p + win[g]));
            __m512i e = _mm512_loadu_si512(esc + first);
            v = _mm512_and_si512(_mm512_srlv_epi32(v, _mm512_and_si512(bp, seven)), e);
            hit = _mm512_mask_cmpeq_epi32_mask(lanes, v, e);
            escaped[g] = hit;
            any |= hit;
            if (out32 && scale32 > 0.0f) {  /* the paper code in float, divided by 10^m correctly rounded */
                __m512 c = _mm512_cvtepi32_ps(_mm512_add_epi32(v, _mm512_loadu_si512(lo32 + first)));
                __m512 q = _mm512_mul_ps(c, vinv32);
                __m512 f = _mm512_fmadd_ps(_mm512_fnmadd_ps(q, vscale32, c), vinv32, q);
                if (lanes == 0xFFFF) _mm512_storeu_ps(out32 + first, f);
                else _mm512_mask_storeu_ps(out32 + first, lanes, f);
                continue;
            }
            __m512d d0 = _mm512_cvtepi32_pd(_mm512_castsi512_si256(v));
            __m512d d1 = _mm512_cvtepi32_pd(_mm512_extracti64x4_epi64(v, 1));
            d0 = _mm512_mul_pd(_mm512_add_pd(d0, _mm512_loadu_pd(lo + first)), vinv);
            d1 = _mm512_mul_pd(_mm512_add_pd(d1, _mm512_loadu_pd(lo + first + 8)), vinv);
            if (out32) {
                __m512 f = _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvtpd_ps(d0)), _mm512_cvtpd_ps(d1), 1);
                if (lanes == 0xFFFF) _mm512_storeu_ps(out32 + first, f);  /* a masked store costs more */
                else _mm512_mask_storeu_ps(out32 + first, lanes, f);
            } else {
                _mm512_mask_storeu_pd(out64 + first, (__mmask8)lanes, d0);
                _mm512_mask_storeu_pd(out64 + first + 8, (__mmask8)(lanes >> 8), d1);
            }
        }
        return any != 0;
    }
    static int jr_escape_has_vbmi(void) {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
            && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")
            && __builtin_cpu_supports("avx512vbmi");
    }
    /* The same with AVX2, 4 codes per 128-bit lane (vpshufb picks within a lane): subgroup s of 4 dimensions reads
       the 16 bytes at p + win[s] (every pick of its codes at any phase lies inside them: widths <= 25), lane l's
       4 bytes picked at bit bitpos[l] + phase; two subgroups a vector, two vectors a group of 16 (escaped[g]
       as above). avail: the stream's bytes from p; a group whose windows pass it (the stream's last rows) reads
       a zero-padded copy of its bytes. */
    JR_ESC_AVX2 static int jr_escape_row_pshufb(const unsigned char *p, uint64_t phase, Py_ssize_t avail,
            Py_ssize_t n, const int32_t *bitpos, const int32_t *win, const uint32_t *esc, const double *lo,
            const int32_t *lo32, double inv, float scale32, uint16_t *escaped, float *out32, double *out64) {
        const __m256 vscale32 = _mm256_set1_ps(scale32), vinv32 = _mm256_set1_ps((float)inv);
        const __m256i vphase = _mm256_set1_epi32((int)phase), seven = _mm256_set1_epi32(7);
        const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12,
                                                0, 0, 0, 0, 4, 4, 4, 4, 8, 8, 8, 8, 12, 12, 12, 12);
        const __m256i step = _mm256_set1_epi32(0x03020100);
        const __m256d vinv = _mm256_set1_pd(inv);
        unsigned char near_end[64];  /* a group's last window starts <= 38 bytes after its first (12 x 25 bits) */
        uint32_t any = 0, hit;
        Py_ssize_t g, first, k, left, at, from;
        for (g = 0, first = 0; first < n; g++, first += 16) {
            const int32_t *w = win + 4 * g;
            const unsigned char *q = p;
            from = 0;
            if (w[3] + 16 > avail) {
                memset(near_end, 0, sizeof near_end);
                memcpy(near_end, p + w[0], (size_t)(avail - w[0]));
                q = near_end;
                from = w[0];
            }
            hit = 0;
            for (k = 0; k < 2 && (left = n - first - 8 * k) > 0; k++) {
                at = first + 8 * k;
                __m256i bp = _mm256_add_epi32(_mm256_loadu_si256((const __m256i *)(bitpos + at)), vphase);
                __m256i idx = _mm256_add_epi8(_mm256_shuffle_epi8(_mm256_srli_epi32(bp, 3), spread), step);
                __m256i v = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(q + w[2 * k] - from))),
                    _mm_loadu_si128((const __m128i *)(q + w[2 * k + 1] - from)), 1);
                __m256i e = _mm256_loadu_si256((const __m256i *)(esc + at));
                v = _mm256_and_si256(_mm256_srlv_epi32(_mm256_shuffle_epi8(v, idx), _mm256_and_si256(bp, seven)), e);
                hit |= (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(v, e))) << (8 * k);
                if (out32 && scale32 > 0.0f) {  /* float math, as jr_escape_row_vbmi */
                    __m256 c = _mm256_cvtepi32_ps(_mm256_add_epi32(v, _mm256_loadu_si256((const __m256i *)(lo32 + at))));
                    __m256 qv = _mm256_mul_ps(c, vinv32);
                    __m256 f = _mm256_fmadd_ps(_mm256_fnmadd_ps(qv, vscale32, c), vinv32, qv);
                    if (left >= 8) _mm256_storeu_ps(out32 + at, f);
                    else { float part[8]; _mm256_storeu_ps(part, f); memcpy(out32 + at, part, left * sizeof(float)); }
                    continue;
                }
                __m256d d0 = _mm256_cvtepi32_pd(_mm256_castsi256_si128(v));
                __m256d d1 = _mm256_cvtepi32_pd(_mm256_extracti128_si256(v, 1));
                d0 = _mm256_mul_pd(_mm256_add_pd(d0, _mm256_loadu_pd(lo + at)), vinv);
                d1 = _mm256_mul_pd(_mm256_add_pd(d1, _mm256_loadu_pd(lo + at + 4)), vinv);
                if (out32) {
                    __m256 f = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm256_cvtpd_ps(d0)),
                                                    _mm256_cvtpd_ps(d1), 1);
                    if (left >= 8) _mm256_storeu_ps(out32 + at, f);
                    else { float part[8]; _mm256_storeu_ps(part, f); memcpy(out32 + at, part, left * sizeof(float)); }
                } else if (left >= 8) {
                    _mm256_storeu_pd(out64 + at, d0);
                    _mm256_storeu_pd(out64 + at + 4, d1);
                } else {  /* the row's last lanes */
                    double part[8];
                    _mm256_storeu_pd(part, d0);
                    _mm256_storeu_pd(part + 4, d1);
                    memcpy(out64 + at, part, left * sizeof(double));
                }
            }
            if (n - first < 16) hit &= (1u << (n - first)) - 1;
            escaped[g] = (uint16_t)hit;
            any |= hit;
        }
        return any != 0;
    }
    #else
    static int jr_escape_row_vbmi(const unsigned char *p, uint64_t phase, Py_ssize_t n, const int32_t *bitpos,
            const int32_t *win, const uint64_t *load, const uint32_t *esc, const double *lo, const int32_t *lo32,
            double inv, float scale32, uint16_t *escaped, float *out32, double *out64) { return 0; }
    static int jr_escape_has_vbmi(void) { return 0; }
    static int jr_escape_row_pshufb(const unsigned char *p, uint64_t phase, Py_ssize_t avail, Py_ssize_t n,
            const int32_t *bitpos, const int32_t *win, const uint32_t *esc, const double *lo, const int32_t *lo32,
            double inv, float scale32, uint16_t *escaped, float *out32, double *out64) { return 0; }
    #endif
    /* The same groups of 16 with GCC/Clang generic vectors, for any little-endian host: SSE2 on baseline x86-64,
       NEON on aarch64, no target attributes and no intrinsics (a compiler without them, or a big-endian host,
       reads a code at a time: jr_escape_has_vec() is 0). Code j is read from the bytes at q + byte[j], byte[j] =
       offs[j] / 8 (the same address at every phase: at or before the code's first byte, so inside the stream),
       shifted right by the row's phase (one count for every lane) and masked by mask[j] = esc[j] << s (s =
       offs[j] % 8): raw = code << s, no per-lane shift. raw + add[j] has the exponent bits of a float (2**23)
       or double (2**52) and a bit K (22 or 32) that is set only where raw is the escape (add = the exponent's
       bits + 2**K - mask); as a float or double it is exactly 2**p + 2**K - mask + raw, and adding lo2[j] =
       lo[j] * 2**s - 2**p - 2**K + mask gives 2**s (code + lo[j]) exactly. Then:
       - jr_escape_row_vec (64-bit lanes, widths to 25 bits): times invs[j] = inv * 2**-s, the same real
         product as (code + lo[j]) * inv, so the same rounding and the same bits as JR_ESC_BODY (separate add and
         multiply); float32 out: that double's float. Per quad of dimensions 18 words (JR_VEC_QUAD_WORDS): 4 int32
         byte offsets, then 4 each of mask, add, lo2, invs.
       - jr_escape_row_f32 (float32 out, where _f32_table allows: s + width <= 22, 2**s (code + lo) below 2**24;
         the 8-byte loads narrowed to 32-bit lanes by one shuffle a quad, then shifted by the phase: phase + s +
         width <= 29): divided by div[j] = 10**m * 2**s (exact), the float quotient (code + lo) / 10**m, correctly
         rounded: the float of (code + lo) * inv for every code the table was checked for (all of the layout's
         ranges). Per quad 20 words (JR_F32_QUAD_WORDS): 4 byte offsets, then 4 each of mask, add, lo2, div.
       escaped[g]: as jr_escape_row_vbmi gives it (each quad's lanes' bit K, JR_MASK2 / JR_MASK4). The tables are padded to whole groups; a row's last 1..3 lanes are read as a whole
       quad (the padding lanes read the row's first bytes) and stored and checked one at a time. The rows4 forms
       read rows p[0..4), into consecutive rows of out (escape masks one row's after the other), sharing the
       table's loads; bit r of their result is set where row r holds an escape. */
    #if (defined(__GNUC__) || defined(__clang__)) && defined(__BYTE_ORDER__) && defined(__has_builtin)
    #if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && __has_builtin(__builtin_shufflevector) \
        && __has_builtin(__builtin_convertvector)
    #define JR_ESC_VEC 1
    #endif
    #endif
    enum { JR_VEC_QUAD_WORDS = 18, JR_F32_QUAD_WORDS = 20 };
    #ifdef JR_ESC_VEC
    typedef uint64_t jr_v2u __attribute__((vector_size(16)));
    typedef uint32_t jr_v4w __attribute__((vector_size(16)));
    typedef double jr_v2d __attribute__((vector_size(16), aligned(8)));  /* also float64 out: 8-byte aligned */
    typedef float jr_v4f __attribute__((vector_size(16), aligned(4)));   /* also float32 out */
    /* Loads from the tables and the stream (unaligned, any type's bytes). */
    typedef uint64_t jr_v2u_ld __attribute__((vector_size(16), aligned(8), may_alias));
    typedef uint32_t jr_v4w_ld __attribute__((vector_size(16), aligned(4), may_alias));
    typedef double jr_v2d_ld __attribute__((vector_size(16), aligned(8), may_alias));
    typedef float jr_v4f_ld __attribute__((vector_size(16), aligned(4), may_alias));
    typedef uint64_t jr_u64_ld __attribute__((aligned(1), may_alias));
    typedef uint32_t jr_u32_ld __attribute__((aligned(1), may_alias));
    #define JR_VEC_LOAD_TABLE(t) \
        const int32_t b0 = (int32_t)(uint32_t)(t)[0], b1 = (int32_t)((t)[0] >> 32); \
        const int32_t b2 = (int32_t)(uint32_t)(t)[1], b3 = (int32_t)((t)[1] >> 32); \
        const jr_v2u m0 = *(const jr_v2u_ld *)((t) + 2), m1 = *(const jr_v2u_ld *)((t) + 4); \
        const jr_v2u a0 = *(const jr_v2u_ld *)((t) + 6), a1 = *(const jr_v2u_ld *)((t) + 8); \
        const jr_v2d l0 = *(const jr_v2d_ld *)((t) + 10), l1 = *(const jr_v2d_ld *)((t) + 12); \
        const jr_v2d i0 = *(const jr_v2d_ld *)((t) + 14), i1 = *(const jr_v2d_ld *)((t) + 16);
    /* The lanes of x whose bit K is set, as bits from lane 0 up: SSE2's movemask on x86-64, NEON's across-lane add
       on aarch64, else lane by lane (x: jr_v2u for MASK2, jr_v4w for MASK4). */
    #if defined(__SSE2__)
    #include <emmintrin.h>
    #define JR_MASK2(x, K) ((uint32_t)_mm_movemask_pd((__m128d)((x) << (63 - (K)))))
    #define JR_MASK4(x, K) ((uint32_t)_mm_movemask_ps((__m128)((x) << (31 - (K)))))
    #elif defined(__aarch64__) && defined(__ARM_NEON)
    #include <arm_neon.h>
    #define JR_MASK2(x, K) ((uint32_t)(((x)[0] >> (K)) & 1) | (uint32_t)(((x)[1] >> (K)) & 1) << 1)
    #define JR_MASK4(x, K) ((uint32_t)vaddvq_u32((uint32x4_t)((((x) >> (K)) & 1) << (jr_v4w){0, 1, 2, 3})))
    #else
    #define JR_MASK2(x, K) ((uint32_t)(((x)[0] >> (K)) & 1) | (uint32_t)(((x)[1] >> (K)) & 1) << 1)
    #define JR_MASK4(x, K) ((uint32_t)(((x)[0] >> (K)) & 1) | (uint32_t)(((x)[1] >> (K)) & 1) << 1 \
                            | (uint32_t)(((x)[2] >> (K)) & 1) << 2 | (uint32_t)(((x)[3] >> (K)) & 1) << 3)
    #endif
    /* Two lanes (byte offsets c0, c1) of the row at q, phase ph, into the doubles d; their escapes into h's bits
       sh and sh + 1. */
    #define JR_VEC_PAIR(q, ph, c0, c1, m, a, l, i, d, h, sh) do { \
        jr_v2u x_ = {*(const jr_u64_ld *)((q) + (c0)), *(const jr_u64_ld *)((q) + (c1))}; \
        x_ = ((x_ >> (ph)) & (m)) + (a); \
        h |= JR_MASK2(x_, 32) << (sh); \
        d = ((jr_v2d)x_ + (l)) * (i); \
    } while (0)
    /* A quad of one row into o32 (f32) or o64, its escapes into h's bits sh..sh + 3. */
    #define JR_VEC_QUAD(q, ph, h, sh, o32, o64) do { \
        jr_v2d d0_, d1_; \
        JR_VEC_PAIR(q, ph, b0, b1, m0, a0, l0, i0, d0_, h, sh); \
        JR_VEC_PAIR(q, ph, b2, b3, m1, a1, l1, i1, d1_, h, (sh) + 2); \
        if (f32) *(jr_v4f *)(o32) = __builtin_convertvector(__builtin_shufflevector(d0_, d1_, 0, 1, 2, 3), jr_v4f); \
        else { *(jr_v2d *)(o64) = d0_; *(jr_v2d *)((o64) + 2) = d1_; } \
    } while (0)
    /* Whether lane k of quad table t holds its escape in the row at q. */
    #define JR_VEC_ESCAPED(q, ph, t, k) \
        (((*(const jr_u64_ld *)((q) + ((const int32_t *)(t))[k]) >> (ph)) & (t)[2 + (k)]) == (t)[2 + (k)])
    #define JR_F32_LOAD_TABLE(t) \
        const int32_t b0 = (int32_t)(t)[0], b1 = (int32_t)(t)[1], b2 = (int32_t)(t)[2], b3 = (int32_t)(t)[3]; \
        const jr_v4w m_ = *(const jr_v4w_ld *)((t) + 4), a_ = *(const jr_v4w_ld *)((t) + 8); \
        const jr_v4f l_ = *(const jr_v4f_ld *)((t) + 12), i_ = *(const jr_v4f_ld *)((t) + 16);
    #define JR_F32_QUAD(q, ph, h, sh, o32, o64) do { \
        jr_v2u y0_ = {*(const jr_u64_ld *)((q) + b0), *(const jr_u64_ld *)((q) + b1)}; \
        jr_v2u y1_ = {*(const jr_u64_ld *)((q) + b2), *(const jr_u64_ld *)((q) + b3)}; \
        jr_v4w x_ = __builtin_shufflevector((jr_v4w)y0_, (jr_v4w)y1_, 0, 2, 4, 6); \
        x_ = ((x_ >> (uint32_t)(ph)) & m_) + a_; \
        h |= JR_MASK4(x_, 22) << (sh); \
        *(jr_v4f *)(o32) = ((jr_v4f)x_ + l_) / i_; \
    } while (0)
    #define JR_F32_ESCAPED(q, ph, t, k) \
        (((*(const jr_u32_ld *)((q) + (int32_t)(t)[k]) >> (ph)) & (t)[4 + (k)]) == (t)[4 + (k)])
    /* The body of both reads: R (1 or 4) rows; T the table's word type. */
    #define JR_VEC_BODY(T, WORDS, LOAD_TABLE, QUAD, ESCAPED) \
        const Py_ssize_t groups = (n + 15) >> 4; \
        float *o32 = (float *)out; \
        double *o64 = (double *)out; \
        float part32[4]; \
        double part64[4]; \
        int any = 0, r; \
        Py_ssize_t g, first, at, end, k; \
        const T *t; \
        for (g = 0, first = 0; first < n; g++, first += 16) { \
            uint32_t h0 = 0, h1 = 0, h2 = 0, h3 = 0, skip = 0; \
            end = n - first >= 16 ? first + 16 : n; \
            for (at = first, t = table + (first >> 2) * WORDS; at + 4 <= end; at += 4, t += WORDS) { \
                LOAD_TABLE(t) \
                QUAD(q[0], ph[0], h0, at - first, o32 + at, o64 + at); \
                if (R > 1) { \
                    QUAD(q[1], ph[1], h1, at - first, o32 + n + at, o64 + n + at); \
                    QUAD(q[2], ph[2], h2, at - first, o32 + 2 * n + at, o64 + 2 * n + at); \
                    QUAD(q[3], ph[3], h3, at - first, o32 + 3 * n + at, o64 + 3 * n + at); \
                } \
            } \
            if (at < end) {  /* the row's last 1..3 lanes (a whole quad read, its padding lanes unchecked) */ \
                LOAD_TABLE(t) \
                for (r = 0; r < R; r++) { \
                    uint32_t h = 0; \
                    QUAD(q[r], ph[r], skip, 0, part32, part64); \
                    for (k = at; k < end; k++) { \
                        if (f32) o32[r * n + k] = part32[k - at]; else o64[r * n + k] = part64[k - at]; \
                        h |= (uint32_t)(ESCAPED(q[r], ph[r], t, k - at)) << (k - first); \
                    } \
                    if (r == 0) h0 |= h; else if (r == 1) h1 |= h; else if (r == 2) h2 |= h; else h3 |= h; \
                } \
            } \
            for (r = 0; r < R; r++) {  /* each row's escape mask */ \
                uint32_t hit = r == 0 ? h0 : r == 1 ? h1 : r == 2 ? h2 : h3; \
                any |= (hit != 0) << r; \
                escaped[r * groups + g] = (uint16_t)hit; \
            } \
        } \
        return any;
    static inline __attribute__((always_inline)) int jr_escape_vec_body(const int R, const int f32,
            const unsigned char *const *q, const uint64_t *ph, Py_ssize_t n, const uint64_t *table,
            uint16_t *escaped, void *out) {
        JR_VEC_BODY(uint64_t, JR_VEC_QUAD_WORDS, JR_VEC_LOAD_TABLE, JR_VEC_QUAD, JR_VEC_ESCAPED)
    }
    static inline __attribute__((always_inline)) int jr_escape_f32_body(const int R, const unsigned char *const *q,
            const uint64_t *ph, Py_ssize_t n, const uint32_t *table, uint16_t *escaped, void *out) {
        const int f32 = 1;
        JR_VEC_BODY(uint32_t, JR_F32_QUAD_WORDS, JR_F32_LOAD_TABLE, JR_F32_QUAD, JR_F32_ESCAPED)
    }
    static int jr_escape_row_vec(const unsigned char *p, uint64_t phase, Py_ssize_t n, const uint64_t *table,
            uint16_t *escaped, float *out32, double *out64) {
        if (out32) return jr_escape_vec_body(1, 1, &p, &phase, n, table, escaped, out32);
        return jr_escape_vec_body(1, 0, &p, &phase, n, table, escaped, out64);
    }
    static int jr_escape_rows4_vec(const unsigned char *const *p, const uint64_t *phase, Py_ssize_t n,
            const uint64_t *table, uint16_t *escaped, float *out32, double *out64) {
        if (out32) return jr_escape_vec_body(4, 1, p, phase, n, table, escaped, out32);
        return jr_escape_vec_body(4, 0, p, phase, n, table, escaped, out64);
    }
    static int jr_escape_row_f32(const unsigned char *p, uint64_t phase, Py_ssize_t n, const uint32_t *table,
            uint16_t *escaped, float *out) {
        return jr_escape_f32_body(1, &p, &phase, n, table, escaped, out);
    }
    static int jr_escape_rows4_f32(const unsigned char *const *p, const uint64_t *phase, Py_ssize_t n,
            const uint32_t *table, uint16_t *escaped, float *out) {
        return jr_escape_f32_body(4, p, phase, n, table, escaped, out);
    }
    static int jr_escape_has_vec(void) { return 1; }
    #else
    static int jr_escape_row_vec(const unsigned char *p, uint64_t phase, Py_ssize_t n, const uint64_t *table,
            uint16_t *escaped, float *out32, double *out64) { return 0; }
    static int jr_escape_rows4_vec(const unsigned char *const *p, const uint64_t *phase, Py_ssize_t n,
            const uint64_t *table, uint16_t *escaped, float *out32, double *out64) { return 0; }
    static int jr_escape_row_f32(const unsigned char *p, uint64_t phase, Py_ssize_t n, const uint32_t *table,
            uint16_t *escaped, float *out) { return 0; }
    static int jr_escape_rows4_f32(const unsigned char *const *p, const uint64_t *phase, Py_ssize_t n,
            const uint32_t *table, uint16_t *escaped, float *out) { return 0; }
    static int jr_escape_has_vec(void) { return 0; }
    #endif
    """
    int jr_escape_row(const unsigned char *p, uint64_t phase, const int64_t *offs, const uint32_t *esc,
                      const double *lo, double inv, Py_ssize_t n, uint32_t *codes, float *out32,
                      double *out64) nogil
    int jr_escape_row_avx2(const unsigned char *p, uint64_t phase, const int64_t *offs, const uint32_t *esc,
                           const double *lo, double inv, Py_ssize_t n, uint32_t *codes, float *out32,
                           double *out64) nogil
    int jr_escape_has_avx2()
    int jr_escape_row_vbmi(const unsigned char *p, uint64_t phase, Py_ssize_t n, const int32_t *bitpos,
                           const int32_t *win, const uint64_t *load, const uint32_t *esc, const double *lo,
                           const int32_t *lo32, double inv, float scale32, uint16_t *escaped, float *out32,
                           double *out64) nogil
    int jr_escape_has_vbmi()
    int jr_escape_row_pshufb(const unsigned char *p, uint64_t phase, Py_ssize_t avail, Py_ssize_t n,
                             const int32_t *bitpos, const int32_t *win, const uint32_t *esc, const double *lo,
                             const int32_t *lo32, double inv, float scale32, uint16_t *escaped, float *out32,
                             double *out64) nogil
    int jr_ctz64(uint64_t m) nogil
    int64_t jr_float_mismatches(double scale, double inv) nogil
    void jr_lower_bounds(const uint32_t** cur, uint32_t* len, const uint32_t* key, Py_ssize_t count) nogil
    enum:
        JR_VEC_QUAD_WORDS
        JR_F32_QUAD_WORDS
    int jr_escape_row_vec(const unsigned char *p, uint64_t phase, Py_ssize_t n, const uint64_t *table,
                          uint16_t *escaped, float *out32, double *out64) nogil
    int jr_escape_rows4_vec(const unsigned char *const *p, const uint64_t *phase, Py_ssize_t n,
                            const uint64_t *table, uint16_t *escaped, float *out32, double *out64) nogil
    int jr_escape_row_f32(const unsigned char *p, uint64_t phase, Py_ssize_t n, const uint32_t *table,
                          uint16_t *escaped, float *out) nogil
    int jr_escape_rows4_f32(const unsigned char *const *p, const uint64_t *phase, Py_ssize_t n,
                            const uint32_t *table, uint16_t *escaped, float *out) nogil
    int jr_escape_has_vec()

cdef uint32_t CODE_MASK = (1u << ENTRY_CODE_BITS) - 1
FLOAT_SCALES = tuple(10.0 ** m for m in range(9))  # the 10^m whose float32 reads may use float math
REPACK_ROWS = 4096  # rows whose codes a re-pack holds at once
_PATHS = {"avx512vbmi": jr_escape_has_vbmi() != 0, "avx2": jr_escape_has_avx2() != 0,
          "portable": sys.byteorder == "little", "words": True}
cdef bint _vbmi = _PATHS["avx512vbmi"]
cdef bint _avx2 = _PATHS["avx2"]
cdef bint _fast = _PATHS["portable"]  # the 8-byte loads take the stream's byte order: little-endian hosts
cdef bint _vec = jr_escape_has_vec() != 0  # the portable read's groups of 16 (generic vectors; little-endian)


def _read_path(path=None) -> str:
    """The read path that runs: "avx512vbmi" (16 codes at a time, AVX-512 VBMI), "avx2" (8 at a time, AVX2),
    "portable" (16 at a time with the compiler's generic vectors: SSE2, NEON; a code at a time without them), or
    "words" (word by word: big-endian hosts). ``path`` (tests) picks one, the next one down where this host lacks
    it."""
    global _vbmi, _avx2, _fast
    if path is not None:
        if path not in _PATHS:
            raise ValueError(f"path must be one of {list(_PATHS)}, got {path!r}")
        _vbmi = path == "avx512vbmi" and _PATHS["avx512vbmi"]
        _avx2 = path in ("avx512vbmi", "avx2") and _PATHS["avx2"]
        _fast = path != "words" and _PATHS["portable"]
    return "avx512vbmi" if _vbmi and _fast else "avx2" if _avx2 and _fast else "portable" if _fast else "words"

ctypedef fused real_out:
    float
    double


cdef inline uint32_t _slack(uint32_t n) noexcept nogil:
    """cython_core.layout.pool_slack: a block's room for ``n`` entries."""
    return 0 if n == 0 else min(<uint32_t>MAX_SEGMENT, n + (n >> 3) + 1)


cdef inline uint32_t _lower_bound(const uint32_t* a, uint32_t n, uint64_t key) noexcept nogil:
    """The first index of the sorted ``a[0..n)`` whose value is >= ``key`` (n if none)."""
    cdef uint32_t lo = 0, hi = n, mid
    while lo < hi:
        mid = (lo + hi) >> 1
        if <uint64_t>a[mid] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


cdef inline uint32_t _lower_bound_near(const uint32_t* a, uint32_t n, uint64_t key, uint32_t guess) noexcept nogil:
    """:func:`_lower_bound` where a row's entries sit near their row's share of the block (``guess``): when the
    bound lies inside the NEAR_ENTRIES around it (four or five cache lines), a search there without branches on the
    data; else the whole segment's."""
    cdef uint32_t lo = guess - NEAR_ENTRIES // 2 if guess > NEAR_ENTRIES // 2 else 0
    cdef uint32_t size = min(n - lo, <uint32_t>NEAR_ENTRIES) if lo < n else 0, half
    cdef const uint32_t* base = a + lo
    if size == 0 or <uint64_t>base[0] >= key and lo > 0 or <uint64_t>base[size - 1] < key and lo + size < n:
        return _lower_bound(a, n, key)
    while size > 1:
        half = size >> 1
        base = base + half if <uint64_t>base[half] < key else base
        size -= half
    return <uint32_t>(base - a) + (<uint64_t>base[0] < key)


cdef inline int64_t _nth_row(const int64_t* idx, const int64_t* nxt, Py_ssize_t k) noexcept nogil:
    """The k-th row a read takes: idx[k], or, reading pairs (``nxt`` given), idx[k / 2] and nxt[k / 2] in turn."""
    if nxt == NULL:
        return idx[k]
    return nxt[k >> 1] if k & 1 else idx[k >> 1]


cdef inline real_out* _nth_out(real_out* out, real_out* out_next, Py_ssize_t k, Py_ssize_t dim,
                               Py_ssize_t per) noexcept nogil:
    """Where the k-th row a read takes goes (:func:`_nth_row`)."""
    if per == 1:
        return out + k * dim
    return (out_next if k & 1 else out) + (k >> 1) * dim


def float_mismatches(scale: float) -> int:
    """How many paper codes |c| <= 2^24 the float32 read's float math (``scale`` = 10^m) decodes to other bits than
    ``(float)(c * (1 / scale))`` (tests: none, for every m whose reads use it, FLOAT_SCALES)."""
    cdef double s = scale, inv = 1.0 / scale
    cdef int64_t bad
    with nogil:
        bad = jr_float_mismatches(s, inv)
    return bad


def pool_slack(n: int) -> int:
    """The compiled rule (tests compare it with cython_core.layout.pool_slack)."""
    return _slack(n)


def _f32_table(layout):
    """The portable read's float32 table (``jr_escape_row_f32``), or None where that read would not give the
    double read's bits: a code and its shift over 22 bits, 2**s * (code + lo) or lo2 not exact in float32, or a
    quotient (code + lo) / 10**m (float32) that is not the float of (code + lo) * inv (double) for some code of
    the dimensions' ranges (each one is tried)."""
    dim, padded = layout.dim, -(-layout.dim // 16) * 16
    width = np.asarray(layout.bits, np.int64)
    offs = np.asarray(layout.offsets, np.int64)
    s = offs & 7
    if int((s + width).max()) > 22:
        return None
    lo = np.asarray(layout.lo, np.int64)
    hi = lo + (np.int64(1) << width) - 2  # the largest code below the escape
    if int((np.maximum(np.abs(lo), np.abs(hi)) << s).max()) >= 1 << 24 or int(hi.max()) - int(lo.min()) > 1 << 21:
        return None
    mask = np.zeros(padded, np.int64)
    mask[:dim] = ((np.int64(1) << width) - 1) << s
    lo2 = np.zeros(padded, np.float64)
    lo2[:dim] = (lo << s) - (1 << 23) - (1 << 22) + mask[:dim]
    div = np.ones(padded, np.float64)
    div[:dim] = np.ldexp(layout.scale, s)
    if np.any(lo2.astype(np.float32) != lo2) or np.any(div.astype(np.float32) != div):
        return None
    codes = np.arange(int(lo.min()), int(hi.max()) + 1, dtype=np.int64)
    want = (codes.astype(np.float64) * layout.inv_scale).astype(np.float32)
    for k in sorted(set(s.tolist())):  # (np.unique imports numpy.ma: 0.6 MB in a buffer's constructor)
        got = np.ldexp(codes.astype(np.float64), int(k)).astype(np.float32) / np.float32(np.ldexp(layout.scale, int(k)))
        if not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
            return None
    add = np.where(np.arange(padded) < dim, (1 << 22) - mask, 0) | 0x4B000000  # float 2**23's exponent bits
    vbyte = np.zeros(padded, np.uint32)
    vbyte[:dim] = offs >> 3
    parts = [vbyte, mask.astype(np.uint32), add.astype(np.uint32),
             lo2.astype(np.float32).view(np.uint32), div.astype(np.float32).view(np.uint32)]
    return np.ascontiguousarray(np.concatenate([part.reshape(-1, 4) for part in parts], axis=1))


cdef class _Tables:
    """Per-dimension arrays of one EscapeLayout, cached on it (layouts are immutable)."""
    cdef object _keep
    cdef const int64_t* lo
    cdef const int64_t* offs
    cdef const uint64_t* esc
    cdef const uint32_t* esc32
    cdef const double* lo_d
    cdef const int32_t* lo32  # lo as int32 (the float32 conversion's: see scale32)
    cdef const int64_t* width
    cdef const int32_t* bitpos  # the AVX-512 VBMI read's groups of 16 dimensions (jr_escape_row_vbmi)
    cdef const int32_t* win
    cdef const uint64_t* load
    cdef const int32_t* bitpos4  # the AVX2 read's subgroups of 4 dimensions (jr_escape_row_pshufb)
    cdef const int32_t* win4
    cdef const uint64_t* vtable  # the portable read's groups of 16 dimensions (jr_escape_row_vec)
    cdef const uint32_t* ftable  # its float32 read (jr_escape_row_f32) where f32_div: NULL elsewhere
    cdef bint f32_div
    cdef bint lanes_fit  # every code and its shift fit a 32-bit lane (widths <= 25 bits): the 16-code reads apply
    cdef Py_ssize_t dim, row_bits, block
    cdef int block_shift  # log2(block) where block is a power of two (64 up to 1,023 dims), else -1
    cdef int64_t top
    cdef double scale, inv, clamp
    cdef float scale32  # 10^m where float32 values come from float math exactly (codes < 2^24, m <= 8), else 0

    def __cinit__(self, layout):
        lo = np.ascontiguousarray(layout.lo, dtype=np.int64)
        width = np.ascontiguousarray(layout.bits, dtype=np.int64)
        offs = np.ascontiguousarray(layout.offsets, dtype=np.int64)
        esc = ((np.uint64(1) << width.astype(np.uint64)) - np.uint64(1)).astype(np.uint64)
        groups, dim = -(-layout.dim // 16), layout.dim
        # padded to whole groups (the padding lanes read bit 0 of their group and are never stored)
        esc32, lo_d = np.zeros(groups * 16, np.uint32), np.zeros(groups * 16, np.float64)
        esc32[:dim], lo_d[:dim] = esc, lo
        lo32 = lo_d.astype(np.int32)
        starts = np.zeros(groups * 16, np.int64)
        starts[:dim] = offs
        starts = starts.reshape(groups, 16)
        win = (starts[:, 0] >> 3).astype(np.int32)
        bitpos = np.where(np.arange(groups * 16).reshape(groups, 16) < dim, starts - 8 * win[:, None], 0)
        last = np.minimum(np.arange(groups) * 16 + 15, dim - 1)
        reach = (last - np.arange(groups) * 16)  # each group's last lane
        span = bitpos[np.arange(groups), reach] + width[last] + 7  # bits a group's codes reach at phase 7
        load = np.array([(1 << int(b)) - 1 if b < 64 else (1 << 64) - 1 for b in -(-span // 8)], np.uint64)
        bitpos = bitpos.astype(np.int32).reshape(-1)
        # the AVX2 read's subgroups of 4: each from its first code's byte (the padding ones from the last real one's)
        starts, quads = starts.reshape(groups * 4, 4), -(-dim // 4)
        win4 = (starts[:, 0] >> 3).astype(np.int32)
        win4[quads:] = win4[quads - 1]
        bitpos4 = np.where(np.arange(groups * 16).reshape(groups * 4, 4) < dim, starts - 8 * win4[:, None], 0)
        bitpos4 = bitpos4.astype(np.int32).reshape(-1)
        # the portable read's (jr_escape_row_vec), per quad of dimensions: each code's first byte and shift s
        # (offs = 8 byte + s), mask: its escape << s, add: 2**52's bits + 2**32 - mask, lo2: lo * 2**s - 2**52 -
        # 2**32 + mask, invs: inv * 2**-s (the sums exact: integers below 2**53; the scalings exact: powers of two)
        shift = np.zeros(groups * 16, np.int64)
        shift[:dim] = offs & 7
        vbyte = np.zeros(groups * 16, np.int32)
        vbyte[:dim] = offs >> 3
        vmask = esc32.astype(np.uint64) << shift.astype(np.uint64)
        vadd = (np.uint64(1 << 32) - vmask) | np.uint64(0x433 << 52)
        vlo = np.ldexp(lo_d, shift) - 2.0**52 - 2.0**32 + vmask.astype(np.float64)
        vinv = np.ldexp(np.full(groups * 16, float(layout.inv_scale)), -shift)
        vtable = np.ascontiguousarray(np.concatenate(
            [part.reshape(groups * 4, -1) for part in (vbyte.view(np.uint64), vmask, vadd, vlo.view(np.uint64),
                                                        vinv.view(np.uint64))], axis=1))
        assert vtable.shape[1] == JR_VEC_QUAD_WORDS
        ftable = _f32_table(layout)
        self.f32_div = ftable is not None
        if ftable is None:
            ftable = np.zeros((1, JR_F32_QUAD_WORDS), np.uint32)
        assert ftable.shape[1] == JR_F32_QUAD_WORDS
        self._keep = (lo, width, offs, esc, esc32, lo_d, lo32, bitpos, win, load, bitpos4, win4, vtable, ftable)
        cdef const int64_t[::1] lo_v = lo, width_v = width, offs_v = offs
        cdef const uint64_t[::1] esc_v = esc, load_v = load
        cdef const uint32_t[::1] esc32_v = esc32
        cdef const double[::1] lo_d_v = lo_d
        cdef const int32_t[::1] lo32_v = lo32
        cdef const int32_t[::1] bitpos_v = bitpos, win_v = win, bitpos4_v = bitpos4, win4_v = win4
        cdef const uint64_t[:, ::1] vtable_v = vtable
        cdef const uint32_t[:, ::1] ftable_v = ftable
        self.lo, self.width, self.offs, self.esc = &lo_v[0], &width_v[0], &offs_v[0], &esc_v[0]
        self.esc32, self.lo_d, self.lo32 = &esc32_v[0], &lo_d_v[0], &lo32_v[0]
        self.bitpos, self.win, self.load = &bitpos_v[0], &win_v[0], &load_v[0]
        self.bitpos4, self.win4 = &bitpos4_v[0], &win4_v[0]
        self.vtable, self.ftable = &vtable_v[0, 0], &ftable_v[0, 0]
        self.lanes_fit = int(width.max()) <= 25
        self.dim, self.row_bits, self.block = layout.dim, layout.row_bits, block_rows(layout.dim)
        self.block_shift = self.block.bit_length() - 1 if self.block & (self.block - 1) == 0 else -1
        self.top, self.scale, self.inv, self.clamp = layout.top, layout.scale, layout.inv_scale, layout.clamp
        # c * (1 / 10^m) rounded to double then to float equals c / 10^m rounded to float for every |c| <= 2^24,
        # m <= 8 (checked for every such c: tests/test_escape.py), which float math gets exactly with two FMAs
        exact = layout.top < 2**24 and layout.scale in FLOAT_SCALES and layout.inv_scale == 1.0 / layout.scale
        self.scale32 = layout.scale if exact else 0.0


cdef inline int64_t _block_of(_Tables t, int64_t r) noexcept nogil:
    """The side-table block of row ``r`` (a shift where blocks are a power of two rows: a division costs more)."""
    return r >> t.block_shift if t.block_shift >= 0 else r // t.block


cdef _Tables _tables(layout):
    return <_Tables>_spec_tables(layout, EscapeLayout, _Tables)


cdef inline void _write(uint64_t* w, uint64_t pos, int64_t bits, uint64_t v) noexcept nogil:
    cdef uint64_t i = pos >> 6
    cdef int s = pos & 63
    cdef uint64_t mask = (<uint64_t>1 << bits) - 1
    w[i] = (w[i] & ~(mask << s)) | (v << s)
    if s + bits > 64:
        w[i + 1] = (w[i + 1] & ~(mask >> (64 - s))) | (v >> (64 - s))


cdef inline Py_ssize_t _quantize_rows(const real_in* x, Py_ssize_t count, _Tables t, int64_t* codes) noexcept nogil:
    """Paper codes rint(clip(x, -b, b) * 10^m) of ``count`` values; returns how many were clipped."""
    cdef Py_ssize_t i, saturated = 0
    cdef double v, b = t.clamp, scale = t.scale
    for i in range(count):
        v = x[i]
        if v < -b:
            v = -b
            saturated += 1
        elif v > b:
            v = b
            saturated += 1
        codes[i] = jr_round(v * scale)
    return saturated


def quantize(x, layout) -> tuple:
    """(codes, saturated): the paper codes (int64 (n, D)) of ``x`` ((n, D) or (D,), float32 or float64, else
    converted) under ``layout`` and how many values were clipped at +-b; non-finite values raise NonFiniteError."""
    cdef Py_buffer xb
    cdef _Tables t = _tables(layout)
    cdef Py_ssize_t n, count, first = 0, bad, saturated
    cdef int64_t[:, ::1] cv
    _get_values(x, &xb, F32, F64, F64)
    try:
        count = xb.len // xb.itemsize
        if count == 0 or count % t.dim or xb.ndim > 2 or (xb.ndim == 2 and xb.shape[1] != t.dim):
            raise ValueError(f"x must have shape (n, {t.dim}) or ({t.dim},), got "
                             f"{tuple(xb.shape[i] for i in range(xb.ndim))}")
        n = count // t.dim
        codes = np.empty((n, t.dim), dtype=np.int64)
        cv = codes
        if _kind(&xb) == F32:
            bad = _find_nonfinite(<const float*>xb.buf, count, &first)
            if not bad:
                saturated = _quantize_rows(<const float*>xb.buf, count, t, &cv[0, 0])
        else:
            bad = _find_nonfinite(<const double*>xb.buf, count, &first)
            if not bad:
                saturated = _quantize_rows(<const double*>xb.buf, count, t, &cv[0, 0])
        if bad:
            raise NonFiniteError(bad, first // t.dim, first % t.dim)
    finally:
        PyBuffer_Release(&xb)
    return codes, saturated


cdef bint _open_rows(rows, Py_buffer* rb, int64_t* one, const int64_t** rp, Py_ssize_t* n) except -1:
    """Point ``rp`` / ``n`` at the indices ``rows``: one int (in ``one``: no array made) or a 1-D buffer (in ``rb``,
    which the caller releases when this returns True)."""
    if type(rows) is int:
        one[0] = rows
        rp[0], n[0] = one, 1
        return False
    _get_indices(rows, rb, "rows")
    if rb.ndim != 1:
        PyBuffer_Release(rb)
        raise ValueError(f"rows must be 1-D, got shape {tuple(rb.shape[i] for i in range(rb.ndim))}")
    rp[0], n[0] = <const int64_t*>rb.buf, rb.shape[0]
    return True


cdef class EscapeRows:
    """``n_rows`` escape-coded rows of ``layout`` at bit stride and their side table (module docstring).

    ``outside[j]``: escapes written in dimension j and ``rows_put``: rows written, since :meth:`restart_counts`;
    ``saturated``: values clipped at +-b by :meth:`encode` over the rows' life.
    """
    cdef readonly object layout, words, seg_start, seg_len, seg_cap, pool, outside
    cdef readonly Py_ssize_t n_rows, pool_used, pool_dead, live, rows_put, saturated
    cdef _Tables t
    cdef uint64_t* w
    cdef uint32_t* ss
    cdef uint16_t* sl
    cdef uint16_t* sc
    cdef uint32_t* pl
    cdef int64_t* out_counts
    cdef Py_ssize_t pool_cap, need  # need: the room the block that found none asked for
    cdef Py_ssize_t n_bytes  # the stream's bytes (the AVX2 read's loads stay inside them)

    def __init__(self, Py_ssize_t n_rows, layout, Py_ssize_t pool_capacity=0):
        if n_rows < 0 or pool_capacity < 0:
            raise ValueError(f"n_rows and pool_capacity must be >= 0, got {n_rows}, {pool_capacity}")
        self.t = _tables(layout)
        self.layout, self.n_rows = layout, n_rows
        blocks = (n_rows + self.t.block - 1) // self.t.block
        self._attach(np.zeros(words_for(n_rows, layout.row_bits), dtype=np.uint64),
                     np.zeros(blocks, dtype=np.uint32), np.zeros(blocks, dtype=np.uint16),
                     np.zeros(blocks, dtype=np.uint16), np.zeros(pool_capacity, dtype=np.uint32),
                     np.zeros(layout.dim, dtype=np.int64))
        self.pool_used = self.pool_dead = self.live = self.rows_put = self.saturated = 0

    cdef _attach(self, words, seg_start, seg_len, seg_cap, pool, outside):
        cdef uint64_t[::1] w = words
        cdef uint32_t[::1] ss = seg_start, pl = pool
        cdef uint16_t[::1] sl = seg_len, sc = seg_cap
        cdef int64_t[::1] oc = outside
        self.words, self.seg_start, self.seg_len, self.seg_cap, self.pool, self.outside = \
            words, seg_start, seg_len, seg_cap, pool, outside
        self.w = &w[0]
        self.n_bytes = w.shape[0] * 8
        self.ss = &ss[0] if ss.shape[0] else NULL
        self.sl = &sl[0] if sl.shape[0] else NULL
        self.sc = &sc[0] if sc.shape[0] else NULL
        self.pl = &pl[0] if pl.shape[0] else NULL
        self.out_counts = &oc[0]
        self.pool_cap = pl.shape[0]

    @classmethod
    def _restore(cls, layout, words, seg_start, seg_len, seg_cap, pool, outside, counters):
        """Rows around saved arrays (:meth:`__reduce__`), every shape checked against ``layout``."""
        cdef EscapeRows rows = cls.__new__(cls)
        rows.t = _tables(layout)
        n_rows, pool_used, pool_dead, live, rows_put, saturated = (int(c) for c in counters)
        blocks = (n_rows + rows.t.block - 1) // rows.t.block
        want = {"words": ((words_for(n_rows, layout.row_bits),), np.uint64, words),
                "seg_start": ((blocks,), np.uint32, seg_start), "seg_len": ((blocks,), np.uint16, seg_len),
                "seg_cap": ((blocks,), np.uint16, seg_cap), "outside": ((layout.dim,), np.int64, outside)}
        for name, (shape, dtype, value) in want.items():
            if not isinstance(value, np.ndarray) or value.shape != shape or value.dtype != dtype:
                raise ValueError(f"{name} must be a {np.dtype(dtype)} array of shape {shape}")
        if not isinstance(pool, np.ndarray) or pool.ndim != 1 or pool.dtype != np.uint32 \
                or not 0 <= pool_used <= pool.size:
            raise ValueError("pool must be a 1-D uint32 array holding the entries in use")
        ends = seg_start.astype(np.int64) + seg_cap
        if blocks and (ends.max() > pool_used or (seg_len > seg_cap).any()):
            raise ValueError("seg_start, seg_len and seg_cap must describe segments inside the pool in use")
        rows.layout, rows.n_rows = layout, n_rows
        rows._attach(np.ascontiguousarray(words), np.ascontiguousarray(seg_start), np.ascontiguousarray(seg_len),
                     np.ascontiguousarray(seg_cap), np.ascontiguousarray(pool), np.ascontiguousarray(outside))
        rows.pool_used, rows.pool_dead, rows.live, rows.rows_put, rows.saturated = \
            pool_used, pool_dead, live, rows_put, saturated
        return rows

    def state(self) -> dict:
        """Everything these rows are (what they pickle as, and what a saved buffer's checksums cover)."""
        return {"layout": self.layout, "words": self.words, "seg_start": self.seg_start, "seg_len": self.seg_len,
                "seg_cap": self.seg_cap, "pool": self.pool, "outside": self.outside,
                "counters": (self.n_rows, self.pool_used, self.pool_dead, self.live, self.rows_put, self.saturated)}

    def __reduce__(self):
        return (EscapeRows._restore, tuple(self.state().values()))

    @property
    def nbytes(self) -> int:
        """Bytes allocated: the rows' words, the block table and the whole pool."""
        return int(self.words.nbytes + self.seg_start.nbytes + self.seg_len.nbytes + self.seg_cap.nbytes
                   + self.pool.nbytes)

    def restart_counts(self) -> None:
        """Zero ``outside`` and ``rows_put`` (what a recalibration reads since the last one)."""
        self.outside[:] = 0
        self.rows_put = 0

    # -- writing -----------------------------------------------------------------------------------

    cdef Py_ssize_t _pack_rows(self, const int64_t* codes, const int64_t* rows, Py_ssize_t n) noexcept nogil:
        """Write rows[i] := codes[i] for i < n in order; stop before a row whose block finds no room in the pool
        (returns how many were written)."""
        cdef Py_ssize_t i, j, k, dim = self.t.dim, block = self.t.block
        cdef int64_t r, b, rr, c
        cdef uint64_t v, base
        cdef uint32_t e, start, length, cap, kept, fresh, newcap, first, last
        cdef uint32_t* new = <uint32_t*>malloc((dim + 1) * sizeof(uint32_t))
        if new == NULL:
            return -2
        for i in range(n):
            r = rows[i]
            b = r // block
            rr = r - b * block
            fresh = 0
            for j in range(dim):
                c = codes[i * dim + j]
                if <uint64_t>(c - self.t.lo[j]) >= self.t.esc[j]:
                    new[fresh] = (<uint32_t>rr << ENTRY_CODE_BITS) | <uint32_t>(c + self.t.top)
                    fresh += 1
            # the block's entries are sorted by row: this row's old ones are the run [first, last)
            start, length, cap = self.ss[b], self.sl[b], self.sc[b]
            first = _lower_bound(self.pl + start, length, <uint64_t>rr << ENTRY_CODE_BITS)
            last = _lower_bound(self.pl + start, length, <uint64_t>(rr + 1) << ENTRY_CODE_BITS)
            kept = length - (last - first)
            if kept + fresh > cap and start + cap == self.pool_used \
                    and self.pool_used + _slack(kept + fresh) - cap <= self.pool_cap:
                # the pool's last segment (the block a fill is writing) grows where it is: no hole left behind
                newcap = _slack(kept + fresh)
                memmove(self.pl + start + first + fresh, self.pl + start + last, (length - last) * sizeof(uint32_t))
                self.pool_used += newcap - cap
                self.sc[b] = <uint16_t>newcap
            elif kept + fresh > cap:  # move the block to the pool's end
                newcap = _slack(kept + fresh)
                if self.pool_used + newcap > self.pool_cap:
                    self.need = newcap
                    free(new)
                    return i
                e = <uint32_t>self.pool_used
                memcpy(self.pl + e, self.pl + start, first * sizeof(uint32_t))
                memcpy(self.pl + e + first + fresh, self.pl + start + last, (length - last) * sizeof(uint32_t))
                self.pool_dead += cap
                self.ss[b] = start = e
                self.sc[b] = <uint16_t>newcap
                self.pool_used += newcap
            elif fresh != last - first:  # the tail moves to make room for this row's entries, or to close up
                memmove(self.pl + start + first + fresh, self.pl + start + last, (length - last) * sizeof(uint32_t))
            memcpy(self.pl + start + first, new, fresh * sizeof(uint32_t))
            self.sl[b] = <uint16_t>(kept + fresh)
            self.live += <Py_ssize_t>(kept + fresh) - <Py_ssize_t>length
            base = <uint64_t>r * self.t.row_bits
            for j in range(dim):
                c = codes[i * dim + j]
                v = <uint64_t>(c - self.t.lo[j])
                if v >= self.t.esc[j]:
                    v = self.t.esc[j]
                    self.out_counts[j] += 1
                _write(self.w, base + self.t.offs[j], self.t.width[j], v)
        free(new)
        return n

    cdef _put(self, const int64_t* codes, const int64_t* rows, Py_ssize_t n):
        cdef Py_ssize_t done = 0, got
        while done < n:
            if n * self.t.dim >= NOGIL_VALUES:
                with nogil:
                    got = self._pack_rows(codes + done * self.t.dim, rows + done, n - done)
            else:
                got = self._pack_rows(codes + done * self.t.dim, rows + done, n - done)
            if got == -2:
                raise MemoryError()
            done += got
            if done < n:
                self._make_room(self.need)
        self.rows_put += n

    def _make_room(self, Py_ssize_t need, bint shrink=False):
        """Compact the pool (each block's entries with its slack, layout.pool_slack), growing it by a quarter only if the
        live entries and ``need`` more do not fit (``shrink``: to exactly what they need). At the same capacity it
        compacts in place (no second pool alive at once, which a device-sized buffer has no room for)."""
        cdef Py_ssize_t b, k, blocks = self.seg_start.shape[0], used = 0
        for b in range(blocks):
            used += _slack(self.sl[b])
        capacity = used + need if shrink else self.pool_cap
        if used + need > capacity:
            capacity = max(used + need, capacity + capacity // 4)
        if capacity == self.pool_cap and capacity:
            self._compact_in_place()
            return
        pool = np.zeros(capacity, dtype=np.uint32)
        cdef uint32_t[::1] out = pool
        used = 0
        for b in range(blocks):
            for k in range(self.sl[b]):
                out[used + k] = self.pl[self.ss[b] + k]
            self.ss[b] = <uint32_t>used
            self.sc[b] = <uint16_t>_slack(self.sl[b])
            used += self.sc[b]
        self.pool, self.pool_cap, self.pool_used, self.pool_dead = pool, capacity, used, 0
        self.pl = &out[0] if capacity else NULL

    cdef _compact_in_place(self):
        """Move each segment down to the end of those before it, in the order they lie in the pool, each one's room
        its entries' slack or the room it had, whichever is less (so no segment moves up over one not yet moved), and
        zero what the moves vacated."""
        cdef Py_ssize_t i, b, used = 0, old_used = self.pool_used
        cdef int64_t[::1] order = np.argsort(self.seg_start, kind="stable").astype(np.int64)
        for i in range(order.shape[0]):
            b = order[i]
            memmove(self.pl + used, self.pl + self.ss[b], self.sl[b] * sizeof(uint32_t))
            self.ss[b] = <uint32_t>used
            self.sc[b] = <uint16_t>min(<Py_ssize_t>self.sc[b], <Py_ssize_t>_slack(self.sl[b]))
            used += self.sc[b]
        if old_used > used:
            memset(self.pl + used, 0, (old_used - used) * sizeof(uint32_t))
        self.pool_used, self.pool_dead = used, 0

    def put_codes(self, codes, rows) -> None:
        """Write paper codes ``codes`` (int64 (n, D), each in -top..top) into ``rows`` (n indices, in order)."""
        cdef Py_buffer cb, rb
        cdef _Tables t = self.t
        arr = np.ascontiguousarray(codes, dtype=np.int64)
        idx = np.ascontiguousarray(np.atleast_1d(rows), dtype=np.int64)
        if arr.ndim != 2 or arr.shape[1] != t.dim or idx.ndim != 1 or idx.shape[0] != arr.shape[0]:
            raise ValueError(f"codes must be (n, {t.dim}) with one row index each, got {arr.shape} and {idx.shape}")
        if arr.size and (arr.min() < -t.top or arr.max() > t.top):
            raise ValueError(f"codes must be paper codes in -{t.top}..{t.top}")
        cdef const int64_t[:, ::1] cv = arr
        cdef const int64_t[::1] rv = idx
        if idx.shape[0]:
            _check_indices(&rv[0], idx.shape[0], self.n_rows, "rows")
            self._put(&cv[0, 0], &rv[0], idx.shape[0])

    def quantize(self, x) -> tuple:
        """:func:`quantize` on these rows' layout."""
        return quantize(x, self.layout)

    cdef Py_ssize_t _quantize_checked(self, x, const int64_t* rows, Py_ssize_t n, int64_t* scratch,
                                      Py_ssize_t* saturated) except -1:
        """Quantize ``x`` (one row per index of ``rows``, checked) into ``scratch``; NonFiniteError before anything
        is written; returns the rows."""
        cdef Py_buffer xb
        cdef Py_ssize_t count, first = 0, bad
        cdef _Tables t = self.t
        _check_indices(rows, n, self.n_rows, "rows")
        _get_values(x, &xb, F32, F64, F64)
        try:
            count = xb.len // xb.itemsize
            if count != n * t.dim or (xb.ndim == 2 and xb.shape[1] != t.dim) or xb.ndim > 2:
                raise ValueError(f"x must have shape ({n}, {t.dim}) (one row per index), got "
                                 f"{tuple(xb.shape[i] for i in range(xb.ndim))}")
            if _kind(&xb) == F32:
                bad = _find_nonfinite(<const float*>xb.buf, count, &first)
                if not bad:
                    saturated[0] = _quantize_rows(<const float*>xb.buf, count, t, scratch)
            else:
                bad = _find_nonfinite(<const double*>xb.buf, count, &first)
                if not bad:
                    saturated[0] = _quantize_rows(<const double*>xb.buf, count, t, scratch)
            if bad:
                raise NonFiniteError(bad, first // t.dim, first % t.dim)
        finally:
            PyBuffer_Release(&xb)
        return n

    def encode(self, x, rows) -> int:
        """Quantize ``x`` (n, D) into ``rows`` (n indices; nothing written if a value is non-finite); returns (and
        accumulates) the values clipped at +-b."""
        cdef Py_buffer rb
        cdef bint have_r = False
        cdef int64_t one
        cdef const int64_t* rp = &one
        cdef Py_ssize_t n = 1, saturated = 0
        cdef int64_t* scratch = NULL
        try:
            have_r = _open_rows(rows, &rb, &one, &rp, &n)
            scratch = <int64_t*>malloc(max(1, n * self.t.dim) * sizeof(int64_t))
            if scratch == NULL:
                raise MemoryError()
            self._quantize_checked(x, rp, n, scratch, &saturated)
            self._put(scratch, rp, n)
        finally:
            free(scratch)
            if have_r:
                PyBuffer_Release(&rb)
        self.saturated += saturated
        return saturated

    # -- reading -----------------------------------------------------------------------------------

    cdef inline void _prefetch(self, int64_t r) noexcept nogil:
        """Request every cache line of row ``r``."""
        cdef uint64_t first = (<uint64_t>r * self.t.row_bits) >> 9, last = ((<uint64_t>r + 1) * self.t.row_bits) >> 9
        while first <= last:
            JR_PREFETCH(self.w + (first << 3))
            first += 1

    cdef inline uint32_t _guess(self, int64_t b, int64_t rr) noexcept nogil:
        """Where row ``rr`` of block ``b``'s entries likely start in its segment: the row's share of them."""
        return <uint32_t>((<uint64_t>self.sl[b] * <uint64_t>rr) // <uint64_t>self.t.block)

    cdef int _unpack(self, const int64_t* idx, Py_ssize_t n, real_out* out, int64_t* codes) noexcept nogil:
        """Rows idx[0..n) as values (``out``) or paper codes (``codes``, when ``out`` is NULL); -1 on a row whose
        escape has no entry (a damaged table), -2 without memory. Values (codes of <= 25 bits) are read in groups of
        16 codes (:meth:`_read_rows`: AVX-512 VBMI, AVX2 or the compiler's generic vectors). Else, on a little-endian
        host, each code is one unaligned 8-byte
        load at its own bit offset, no code depending on the one before (:meth:`_fast_row`), and a row's escaped
        codes are then replaced from the side table (:meth:`_patch_row`); elsewhere (or without memory for the
        row's scratch codes) every row is read word by word (:meth:`_exact_row`)."""
        cdef Py_ssize_t i, dim = self.t.dim
        cdef int status = 0
        cdef uint32_t* scratch
        cdef real_out* row_out
        cdef int64_t* row_codes
        if self._groups_read() and codes == NULL:
            return self._read_rows(idx, NULL, n, out, NULL)
        scratch = <uint32_t*>malloc(dim * sizeof(uint32_t)) if _fast else NULL
        for i in range(min(n, PREFETCH_ROWS)):
            self._prefetch(idx[i])
        for i in range(n):
            if i + PREFETCH_ROWS < n:
                self._prefetch(idx[i + PREFETCH_ROWS])
            row_out = out + i * dim if codes == NULL else out  # values, or (out NULL) this row's codes
            row_codes = NULL if codes == NULL else codes + i * dim
            if scratch != NULL:
                if self._fast_row(idx[i], row_out, row_codes, scratch):
                    status = self._patch_row(idx[i], row_out, row_codes, scratch)
            else:
                status = self._exact_row(idx[i], row_out, row_codes)
            if status < 0:
                break
        free(scratch)
        return status

    cdef inline bint _groups_read(self) noexcept nogil:
        """Whether values are read in groups of 16 codes here (AVX-512 VBMI, AVX2 or the portable build's generic
        vectors; codes of <= 25 bits)."""
        return (_vbmi or _avx2 or _vec) and _fast and self.t.lanes_fit

    cdef int _read_rows(self, const int64_t* idx, const int64_t* nxt, Py_ssize_t n, real_out* out,
                        real_out* out_next) noexcept nogil:
        """Rows idx[0..n) into ``out`` (and, where ``nxt`` is given, rows nxt[0..n) into ``out_next``, a pair at a
        time), 16 codes at a time, in chunks of CHUNK_ROWS rows: first every row of the chunk as though nothing
        escaped (:meth:`_group_row`; the portable read's single rows four at a time, :meth:`_group_rows4`); then the first entry of each row that escaped, all searched at once
        (``jr_lower_bounds``: their cache misses overlap), except where a row follows the one before it in its
        block (nxt[i] = idx[i] + 1, a replay buffer's next observation): its entries start where that row's end;
        then their escapes patched (:meth:`_patch_groups`). -1 where the table lacks an entry, -2 without memory
        for the chunk's masks."""
        cdef Py_ssize_t groups = (self.t.dim + 15) >> 4, dim = self.t.dim
        cdef Py_ssize_t per = 1 if nxt == NULL else 2, total = n * per
        cdef Py_ssize_t first, end, k, e, found, searched, stop = -1
        cdef int status = 0, hit
        cdef int64_t r, b
        # the portable read takes single rows four at a time, its prefetch a block of four further ahead
        cdef bint fours = nxt == NULL and not (_vbmi or _avx2)
        cdef Py_ssize_t ahead = 2 * PREFETCH_ROWS if fours else PREFETCH_ROWS
        cdef Py_ssize_t* escaped = <Py_ssize_t*>malloc(CHUNK_ROWS * (sizeof(Py_ssize_t) + sizeof(uint32_t*) +
                                                                     2 * sizeof(uint32_t) + groups * sizeof(uint16_t)))
        cdef const uint32_t** cur = <const uint32_t**>(escaped + CHUNK_ROWS)
        cdef uint32_t* length = <uint32_t*>(cur + CHUNK_ROWS)
        cdef uint32_t* key = length + CHUNK_ROWS
        cdef uint16_t* masks = <uint16_t*>(key + CHUNK_ROWS)
        if escaped == NULL:
            return -2
        for k in range(min(total, ahead)):
            self._prefetch(_nth_row(idx, nxt, k))
        first = 0
        while first < total and status == 0:
            found, end = 0, min(first + CHUNK_ROWS, total)
            k = first
            while k < end:
                if fours and k + 4 <= end:  # four rows at once (CHUNK_ROWS is a multiple of 4)
                    for e in range(k + ahead, min(k + ahead + 4, total)):
                        self._prefetch(idx[e])
                    hit = self._group_rows4(idx + k, out + k * dim, masks + (k - first) * groups)
                    for e in range(4):
                        if hit >> e & 1:
                            escaped[found] = k + e
                            found += 1
                    k += 4
                    continue
                if k + ahead < total:
                    self._prefetch(_nth_row(idx, nxt, k + ahead))
                if self._group_row(_nth_row(idx, nxt, k), _nth_out(out, out_next, k, dim, per),
                                   masks + (k - first) * groups):
                    escaped[found] = k
                    found += 1
                k += 1
            searched = 0
            for e in range(found):
                if not self._follows(idx, nxt, escaped, e):
                    r = _nth_row(idx, nxt, escaped[e])
                    b = _block_of(self.t, r)
                    if self.sl[b] == 0:  # an escape, and its block has no entry
                        status = -1
                        break
                    cur[searched], length[searched] = self.pl + self.ss[b], self.sl[b]
                    key[searched] = <uint32_t>(r - b * self.t.block) << ENTRY_CODE_BITS
                    searched += 1
            jr_lower_bounds(cur, length, key, searched)
            searched = 0
            for e in range(found if status == 0 else 0):
                k = escaped[e]
                if not self._follows(idx, nxt, escaped, e):
                    stop = cur[searched] - self.pl
                    searched += 1
                status = self._patch_groups(_nth_row(idx, nxt, k), _nth_out(out, out_next, k, dim, per),
                                            masks + (k - first) * groups, stop, &stop)
                if status < 0:
                    break
            first += CHUNK_ROWS
        free(escaped)
        return status

    cdef inline bint _follows(self, const int64_t* idx, const int64_t* nxt, const Py_ssize_t* escaped,
                              Py_ssize_t e) noexcept nogil:
        """Whether the e-th escaped row of a read (``escaped``: the rows a chunk found escaped, in order) is the
        second of a pair whose first escaped too and lies just before it in its block (its entries follow)."""
        cdef Py_ssize_t k = escaped[e]
        cdef int64_t r
        if nxt == NULL or not k & 1 or e == 0 or escaped[e - 1] != k - 1:
            return False
        r = nxt[k >> 1]
        return r == idx[k >> 1] + 1 and _block_of(self.t, r) == _block_of(self.t, r - 1)

    cdef inline bint _group_row(self, int64_t r, real_out* out, uint16_t* masks) noexcept nogil:
        """Row ``r``'s values into ``out`` 16 codes at a time (``jr_escape_row_vbmi``, or with AVX2
        ``jr_escape_row_pshufb``, told the stream's bytes left from the row's first; elsewhere the generic vectors'
        ``jr_escape_row_f32`` for float32 values where the layout allows it, else ``jr_escape_row_vec``) as though
        nothing escaped; ``masks``: per group of 16 dimensions, the lanes that hold their escape. Whether one did."""
        cdef uint64_t base = <uint64_t>r * self.t.row_bits
        cdef const unsigned char* p = (<const unsigned char*>self.w) + (base >> 3)
        cdef float* out32 = NULL
        cdef double* out64 = NULL
        if real_out is float:
            out32 = out
        else:
            out64 = out
        if _vbmi:
            return jr_escape_row_vbmi(p, base & 7, self.t.dim, self.t.bitpos, self.t.win, self.t.load,
                                      self.t.esc32, self.t.lo_d, self.t.lo32, self.t.inv, self.t.scale32, masks,
                                      out32, out64) != 0
        if _avx2:
            return jr_escape_row_pshufb(p, base & 7, self.n_bytes - <Py_ssize_t>(base >> 3), self.t.dim,
                                        self.t.bitpos4, self.t.win4, self.t.esc32, self.t.lo_d, self.t.lo32,
                                        self.t.inv, self.t.scale32, masks, out32, out64) != 0
        if real_out is float and self.t.f32_div:
            return jr_escape_row_f32(p, base & 7, self.t.dim, self.t.ftable, masks, out) != 0
        return jr_escape_row_vec(p, base & 7, self.t.dim, self.t.vtable, masks, out32, out64) != 0

    cdef inline int _group_rows4(self, const int64_t* idx, real_out* out, uint16_t* masks) noexcept nogil:
        """Rows idx[0..4) into consecutive rows of ``out`` as :meth:`_group_row` reads them with the portable read
        (``jr_escape_rows4_vec``, ``jr_escape_rows4_f32``: the rows share their tables' loads); ``masks``: room for
        4 rows'. Bit r set where row r escaped."""
        cdef const unsigned char* p[4]
        cdef uint64_t phase[4]
        cdef uint64_t base
        cdef Py_ssize_t r
        for r in range(4):
            base = <uint64_t>idx[r] * self.t.row_bits
            p[r] = (<const unsigned char*>self.w) + (base >> 3)
            phase[r] = base & 7
        if real_out is float and self.t.f32_div:
            return jr_escape_rows4_f32(p, phase, self.t.dim, self.t.ftable, masks, out)
        if real_out is float:
            return jr_escape_rows4_vec(p, phase, self.t.dim, self.t.vtable, masks, out, NULL)
        return jr_escape_rows4_vec(p, phase, self.t.dim, self.t.vtable, masks, NULL, out)

    cdef inline bint _fast_row(self, int64_t r, real_out* out, int64_t* codes, uint32_t* scratch) noexcept nogil:
        """Row ``r`` into ``out`` (or ``codes``) as though nothing escaped; whether something did (little-endian
        hosts: the spare word keeps every 8-byte load inside the stream). The values come from ``jr_escape_row``
        (its AVX2 build where the CPU has it), where :meth:`_group_row` cannot read them (widths over 25 bits, or a
        compiler without generic vectors); the codes are its unsigned codes plus ``lo``."""
        cdef Py_ssize_t j, dim = self.t.dim
        cdef uint64_t base = <uint64_t>r * self.t.row_bits
        cdef const unsigned char* p = (<const unsigned char*>self.w) + (base >> 3)
        cdef float* out32 = NULL
        cdef double* out64 = NULL
        cdef int escaped
        if codes == NULL:
            if real_out is float:
                out32 = out
            else:
                out64 = out
        if _avx2:
            escaped = jr_escape_row_avx2(p, base & 7, self.t.offs, self.t.esc32, self.t.lo_d, self.t.inv, dim,
                                         scratch, out32, out64)
        else:
            escaped = jr_escape_row(p, base & 7, self.t.offs, self.t.esc32, self.t.lo_d, self.t.inv, dim, scratch,
                                    out32, out64)
        if codes != NULL:
            for j in range(dim):
                codes[j] = <int64_t>scratch[j] + self.t.lo[j]
        return escaped != 0

    cdef inline bint _next_entry(self, int64_t r, Py_ssize_t* p, Py_ssize_t* end, int64_t* c) noexcept nogil:
        """The code (``c``) of row ``r``'s next escape, in dimension order: its block's entry after ``p`` (the
        row's first, found by binary search, while ``p`` is negative); False where the table lacks it."""
        cdef int64_t b = _block_of(self.t, r), rr = r - b * self.t.block
        if p[0] < 0:
            p[0] = self.ss[b] + _lower_bound_near(self.pl + self.ss[b], self.sl[b], <uint64_t>rr << ENTRY_CODE_BITS,
                                                  self._guess(b, rr))
            end[0] = self.ss[b] + self.sl[b]
        else:
            p[0] += 1
        if p[0] >= end[0] or (self.pl[p[0]] >> ENTRY_CODE_BITS) != <uint32_t>rr:
            return False
        c[0] = <int64_t>(self.pl[p[0]] & CODE_MASK) - self.t.top
        return True

    cdef int _patch_row(self, int64_t r, real_out* out, int64_t* codes, const uint32_t* scratch) noexcept nogil:
        """Replace the escaped codes of row ``r`` (``scratch``: its codes as :meth:`_fast_row` read them) with the
        side table's, in dimension order; -1 on an escape without an entry."""
        cdef Py_ssize_t j, p = -1, end = 0
        cdef int64_t c
        cdef const uint32_t* esc = self.t.esc32
        for j in range(self.t.dim):
            if scratch[j] != esc[j]:
                continue
            if not self._next_entry(r, &p, &end, &c):
                return -1
            if codes != NULL:
                codes[j] = c
            else:
                out[j] = <real_out>(<double>c * self.t.inv)
        return 0

    cdef int _patch_groups(self, int64_t r, real_out* out, const uint16_t* masks, Py_ssize_t start,
                           Py_ssize_t* stop) noexcept nogil:
        """Replace the escaped values of row ``r`` (``masks``: per group of 16 dimensions, the lanes that hold their
        escape, as ``jr_escape_row_vbmi`` gives them) with the side table's, in dimension order (the masks read 64
        dimensions at a time: fewer branches on which lanes escaped); its first entry at ``start`` (in ``pool``).
        ``stop``: the entry after its last. -1 where the table lacks an entry."""
        cdef Py_ssize_t g, groups = (self.t.dim + 15) >> 4, k
        cdef int64_t b = _block_of(self.t, r), rr = r - b * self.t.block
        cdef Py_ssize_t p = start
        cdef Py_ssize_t end = self.ss[b] + self.sl[b]
        cdef uint64_t m
        cdef uint32_t entry
        cdef double inv = self.t.inv
        cdef int64_t top = self.t.top
        for g in range(0, groups, 4):
            m = masks[g]
            for k in range(1, min(4, groups - g)):
                m |= <uint64_t>masks[g + k] << (16 * k)
            while m:
                if p >= end:
                    return -1
                entry = self.pl[p]
                if (entry >> ENTRY_CODE_BITS) != <uint32_t>rr:
                    return -1
                out[(g << 4) + jr_ctz64(m)] = <real_out>(<double>(<int64_t>(entry & CODE_MASK) - top) * inv)
                p += 1
                m &= m - 1
        stop[0] = p
        return 0

    cdef int _exact_row(self, int64_t r, real_out* out, int64_t* codes) noexcept nogil:
        """Row ``r`` into ``out`` (or ``codes``), escapes looked up in its block's side table; -1 on an escape
        without an entry. Read through a 64-bit accumulator refilled word by word (any endianness)."""
        cdef Py_ssize_t j, dim = self.t.dim
        cdef int64_t c, width, avail
        cdef uint64_t v, pos, acc, word
        cdef Py_ssize_t p = -1, end = 0
        cdef const uint64_t* src
        cdef const int64_t* lo = self.t.lo
        cdef const int64_t* widths = self.t.width
        cdef const uint64_t* esc = self.t.esc
        cdef double inv = self.t.inv
        pos = <uint64_t>r * self.t.row_bits
        src = self.w + (pos >> 6)
        acc = src[0] >> (pos & 63)
        avail = 64 - <int64_t>(pos & 63)
        for j in range(dim):
            width = widths[j]
            if avail >= width:
                v = acc & esc[j]
                acc >>= width
                avail -= width
            else:  # the code continues in the next word
                src += 1
                word = src[0]
                v = (acc | (word << avail)) & esc[j]
                acc = word >> (width - avail)
                avail += 64 - width
            if v == esc[j]:
                if not self._next_entry(r, &p, &end, &c):
                    return -1
            else:
                c = <int64_t>v + lo[j]
            if codes != NULL:
                codes[j] = c
            else:
                out[j] = <real_out>(<double>c * inv)
        return 0

    cdef Py_ssize_t _open_indices(self, indices, Py_buffer* ib) except -1:
        """``indices`` as a 1-D int64 buffer of rows, checked (the caller releases it); returns their count."""
        _get_indices(indices, ib, "indices")
        try:
            if ib.ndim != 1:
                raise ValueError(f"indices must be 1-D, got shape {tuple(ib.shape[i] for i in range(ib.ndim))}")
            _check_indices(<const int64_t*>ib.buf, ib.shape[0], self.n_rows, "indices")
        except BaseException:
            PyBuffer_Release(ib)
            raise
        return ib.shape[0]

    def decode(self, indices, out=None):
        """Rows ``indices`` as float32 (n, D), written into ``out`` (float32 or float64, C-contiguous) when given."""
        cdef Py_buffer ib, ob
        cdef bint have_o = False
        cdef Kind kind = OTHER
        cdef int status = 0
        cdef Py_ssize_t n = self._open_indices(indices, &ib)
        try:
            if out is None:
                out = np.empty((n, self.t.dim), dtype=np.float32)
            have_o = _try_buffer(out, &ob, PyBUF_WRITABLE)
            if have_o:
                kind = _kind(&ob)
            if kind not in (F32, F64) or ob.ndim != 2 or ob.shape[0] != n or ob.shape[1] != self.t.dim:
                raise ValueError(f"out must be a writable C-contiguous float32 array of shape ({n}, {self.t.dim}), "
                                 f"got {getattr(out, 'dtype', type(out).__name__)} {getattr(out, 'shape', '')}")
            if kind == F32:
                with nogil:
                    status = self._unpack(<const int64_t*>ib.buf, n, <float*>ob.buf, NULL)
            else:
                with nogil:
                    status = self._unpack(<const int64_t*>ib.buf, n, <double*>ob.buf, NULL)
        finally:
            PyBuffer_Release(&ib)
            if have_o:
                PyBuffer_Release(&ob)
        if status == -2:
            raise MemoryError("no memory for a decode's escape masks")
        if status < 0:
            raise ValueError("the side table lacks an entry a row's escape points to (damaged rows)")
        return out

    def decode_pairs(self, indices, following, out, out_following) -> None:
        """Rows ``indices`` into ``out`` and rows ``following`` (one each) into ``out_following`` (writable
        C-contiguous float32 or float64 arrays (n, D) of one dtype), as two :meth:`decode` calls give them; read a
        pair at a time with AVX-512 VBMI or AVX2: a row and the one after it share their block's side-table lines
        (what a replay buffer's sample reads: each transition's observation and its next one). The portable read
        is faster as two decodes (4 rows at a time)."""
        cdef Py_buffer ib, fb, ob, pb
        cdef bint have_f = False, have_o = False, have_p = False
        cdef int status = -2
        cdef Py_ssize_t n = self._open_indices(indices, &ib)
        try:
            if self._open_indices(following, &fb) != n:
                PyBuffer_Release(&fb)
                raise ValueError(f"following must hold one row per index ({n})")
            have_f = True
            have_o = _try_buffer(out, &ob, PyBUF_WRITABLE)
            have_p = _try_buffer(out_following, &pb, PyBUF_WRITABLE)
            if not (have_o and have_p) or _kind(&ob) not in (F32, F64) or _kind(&pb) != _kind(&ob) \
                    or ob.ndim != 2 or pb.ndim != 2 or ob.shape[0] != n or pb.shape[0] != n \
                    or ob.shape[1] != self.t.dim or pb.shape[1] != self.t.dim:
                raise ValueError(f"out and out_following must be writable C-contiguous float32 or float64 arrays of "
                                 f"one dtype and shape ({n}, {self.t.dim})")
            if self._groups_read() and (_vbmi or _avx2):  # the portable read: two decodes, 4 rows at a time
                if _kind(&ob) == F32:
                    with nogil:
                        status = self._read_rows(<const int64_t*>ib.buf, <const int64_t*>fb.buf, n,
                                                    <float*>ob.buf, <float*>pb.buf)
                else:
                    with nogil:
                        status = self._read_rows(<const int64_t*>ib.buf, <const int64_t*>fb.buf, n,
                                                    <double*>ob.buf, <double*>pb.buf)
        finally:
            PyBuffer_Release(&ib)
            if have_f:
                PyBuffer_Release(&fb)
            if have_o:
                PyBuffer_Release(&ob)
            if have_p:
                PyBuffer_Release(&pb)
        if status == -2:  # another read path (or no memory for the masks): two decodes
            self.decode(indices, out)
            self.decode(following, out_following)
        elif status < 0:
            raise ValueError("the side table lacks an entry a row's escape points to (damaged rows)")

    def codes(self, indices):
        """The paper codes (int64 (n, D)) of rows ``indices``."""
        cdef Py_buffer ib
        cdef int status = 0
        cdef Py_ssize_t n = self._open_indices(indices, &ib)
        try:
            out = np.empty((n, self.t.dim), dtype=np.int64)
            if n:
                status = self._codes_into(<const int64_t*>ib.buf, n, out)
        finally:
            PyBuffer_Release(&ib)
        if status < 0:
            raise ValueError("the side table lacks an entry a row's escape points to (damaged rows)")
        return out

    cdef int _codes_into(self, const int64_t* idx, Py_ssize_t n, out):
        cdef int64_t[:, ::1] ov = out
        cdef int status
        with nogil:
            status = self._unpack(idx, n, <float*>NULL, &ov[0, 0])
        return status

    def match(self, x, rows) -> tuple:
        """(codes, saturated): ``x`` (n, D) quantized as :meth:`encode` would (nothing written), codes None when
        ``rows`` (n indices) hold exactly those codes already (compared here: no array made then)."""
        cdef Py_buffer rb
        cdef bint have_r = False
        cdef int64_t one
        cdef const int64_t* rp = &one
        cdef Py_ssize_t n = 1, k, saturated = 0
        cdef int64_t* scratch = NULL
        cdef int status = 0
        cdef bint held = True
        cdef int64_t[:, ::1] cv
        try:
            have_r = _open_rows(rows, &rb, &one, &rp, &n)
            scratch = <int64_t*>malloc(max(1, 2 * n * self.t.dim) * sizeof(int64_t))
            if scratch == NULL:
                raise MemoryError()
            self._quantize_checked(x, rp, n, scratch, &saturated)
            status = self._unpack(rp, n, <float*>NULL, scratch + n * self.t.dim)
            if status < 0:
                raise ValueError("the side table lacks an entry a row's escape points to (damaged rows)")
            for k in range(n * self.t.dim):
                if scratch[k] != scratch[n * self.t.dim + k]:
                    held = False
                    break
            if held:
                return None, saturated
            codes = np.empty((n, self.t.dim), dtype=np.int64)
            cv = codes
            memcpy(&cv[0, 0], scratch, n * self.t.dim * sizeof(int64_t))
            return codes, saturated
        finally:
            free(scratch)
            if have_r:
                PyBuffer_Release(&rb)

    def trim(self) -> None:
        """Compact the pool to exactly its blocks' room (each block's entries with its slack)."""
        self._make_room(0, shrink=True)

    def repack(self, layout, held=None) -> None:
        """Re-write the rows ``held`` (a count n: rows 0..n-1; or indices; default every row) under ``layout`` (same
        dim, decimals and clamp), every code kept, the other rows blank (zero words); the pool sized to what it
        holds; ``outside`` and ``rows_put`` restart. :data:`REPACK_ROWS` rows' codes at a time: beside the new rows,
        a re-pack of a device-sized store holds megabytes of codes, not 8 bytes a value of every row."""
        if not isinstance(layout, EscapeLayout):
            raise TypeError(f"layout must be an EscapeLayout, got {type(layout).__name__}")
        old = self.layout
        if (layout.dim, layout.decimals, layout.clamp) != (old.dim, old.decimals, old.clamp):
            raise ValueError(f"layout must keep dim, decimals and clamp ({old.dim}, {old.decimals}, {old.clamp!r})")
        if held is None or isinstance(held, (int, np.integer)) and not isinstance(held, bool):
            count = self.n_rows if held is None else int(held)
            if not 0 <= count <= self.n_rows:
                raise ValueError(f"held must be a row count in 0..{self.n_rows}, got {count}")
            chunks = lambda: (np.arange(first, min(first + REPACK_ROWS, count), dtype=np.int64)
                              for first in range(0, count, REPACK_ROWS))
        else:
            indices = np.asarray(held, dtype=np.int64)
            chunks = lambda: (indices[first:first + REPACK_ROWS] for first in range(0, indices.size, REPACK_ROWS))
        outside = sum(int(np.count_nonzero(~layout.holds(self.codes(rows)))) for rows in chunks())
        fresh = EscapeRows(self.n_rows, layout, 0)
        fresh._make_room(outside + (outside >> 3) + fresh.seg_start.shape[0])
        for rows in chunks():
            fresh.put_codes(self.codes(rows), rows)
        fresh.trim()
        self.layout, self.t = layout, fresh.t
        self._attach(fresh.words, fresh.seg_start, fresh.seg_len, fresh.seg_cap, fresh.pool, self.outside)
        self.pool_used, self.pool_dead, self.live = fresh.pool_used, fresh.pool_dead, fresh.live
        self.restart_counts()
