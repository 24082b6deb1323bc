"""Packed-row geometry and code widths, shared by the planner's ``packed`` storage and the compiled storage.

Pure Python on purpose: the planner imports this module, never the compiled kernels.
Uniform rows (cython_core.uniform, _kernels) and escape-coded rows (cython_core.escape, _escape) lie at bit
stride: row r at bit r x row_bits of one little-endian stream of 64-bit words, plus one spare word
(:func:`words_for`), so any row can be read at random and costs exactly its bits.

>>> words_for(1000, 348 * 15)  # Humanoid, 348 dims x 15 bits: 5,220,000 bits in 81,563 words, + the spare one
81564
>>> bits_for_levels(25_401)  # m = 2, b = 127: 2 * 12,700 + 1 levels
15
"""

import math

WORD_BITS = 64
WORD_BYTES = 8
MAX_BITS = 32  # widest code a row holds (codes are decoded through 32-bit lanes)


def check_bits(bits: int) -> int:
    """``bits`` if it is a whole number in 1..MAX_BITS, else ValueError."""
    if isinstance(bits, bool) or not hasattr(bits, "__index__") or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be a whole number in 1..{MAX_BITS}, got {bits!r}")
    return int(bits)


def bits_for_levels(levels: int) -> int:
    """The tight code width for ``levels`` distinct codes: ceil(log2(levels)), at least 1."""
    if levels < 1:
        raise ValueError(f"levels must be >= 1, got {levels}")
    return max(1, (int(levels) - 1).bit_length())


# The exception store of mixed-width rows (cython_core.exceptions): an entry is the row (int64), the dimension
# (uint16) and the exact code (int32), 16 bytes aligned; each row keeps the index of its first entry (int32,
# -1: none), so a row without exceptions costs one read.
EXCEPTION_ENTRY_BYTES = 16
EXCEPTION_INDEX_BYTES = 4


# Escape-coded rows at bit stride (cython_core.escape, cython_core._escape): row r at bit r x row_bits of one
# stream of 64-bit words with one spare word; exceptions in a side table of uint32 entries (the row within its
# block in the top 6 bits, the code + top in the low ENTRY_CODE_BITS), rows grouped in blocks of up to
# BLOCK_ROWS rows, each block a segment of the pool (start uint32, length and room uint16: SEGMENT_BYTES).
ENTRY_BYTES = 4
ENTRY_CODE_BITS = 26
BLOCK_ROWS = 64
SEGMENT_BYTES = 8
MAX_SEGMENT = 2**16 - 1


def words_for(n_rows: int, row_bits: int) -> int:
    """64-bit words of ``n_rows`` rows of ``row_bits`` bits at bit stride, plus the spare word.

    >>> words_for(1000, 165), words_for(0, 165)  # Hopper, 11 dims x 15 bits: 165,000 bits
    (2580, 1)
    """
    return -(-n_rows * row_bits // WORD_BITS) + 1


def block_rows(dim: int) -> int:
    """Rows per block of the side table: BLOCK_ROWS, fewer where a block's entries could pass MAX_SEGMENT."""
    return max(1, min(BLOCK_ROWS, MAX_SEGMENT // max(dim, 1)))


def pool_slack(n: int) -> int:
    """The room a block's segment gets for ``n`` entries: an eighth more, plus 1 (0 for none).

    >>> pool_slack(0), pool_slack(1), pool_slack(40)
    (0, 2, 46)
    """
    return 0 if n == 0 else min(MAX_SEGMENT, n + (n >> 3) + 1)


def escape_width(lo: int, hi: int, widest: int) -> int:
    """The bits an escape-coded dimension needs to hold the codes lo..hi below its escape value, at most
    ``widest`` (the uniform width, which holds every code).

    >>> [escape_width(lo, hi, 15) for lo, hi in ((50, 50), (-100, 154), (-100, 155), (-12700, 12700))]
    [1, 8, 9, 15]
    """
    return min(widest, int(hi - lo + 1).bit_length())


def segment_count(n_rows: int, dim: int) -> int:
    """Blocks of the side table of ``n_rows`` rows of ``dim`` values."""
    return -(-n_rows // block_rows(dim))


def pool_capacity(n_rows: int, dim: int, entries_per_row: float) -> int:
    """Side-table entries allocated up front for ``n_rows`` rows expecting ``entries_per_row`` escapes each: the
    entries with an eighth's slack, plus 1 per block (layout.pool_slack's rule)."""
    entries = n_rows * entries_per_row
    return 0 if entries <= 0 else math.ceil(entries * 1.125) + segment_count(n_rows, dim)
