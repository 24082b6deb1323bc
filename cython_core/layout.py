"""Packed-row geometry and code widths, shared by the planner's ``packed`` storage and the compiled storage.

Pure Python on purpose: the planner imports this module, never the compiled kernels.
A row of ``dim`` codes of ``bits`` bits is packed little-endian into whole 64-bit words,
so that any row can be read at random.

>>> packed_row_bytes(348, 15)  # 5220 bits -> 82 words
656
>>> packed_row_padding_bits(348, 15)
28
>>> bits_for_levels(25_401)  # m = 2, b = 127: 2 * 12,700 + 1 levels
15
"""

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


def packed_row_words(dim: int, bits: int) -> int:
    """64-bit words one packed row of ``dim`` codes of ``bits`` bits occupies."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    return -(-dim * check_bits(bits) // WORD_BITS)


def packed_row_bytes(dim: int, bits: int) -> int:
    """Bytes one packed row occupies, padding included."""
    return packed_row_words(dim, bits) * WORD_BYTES


def packed_row_padding_bits(dim: int, bits: int) -> int:
    """Unused bits at the end of each packed row."""
    return packed_row_words(dim, bits) * WORD_BITS - dim * bits


# The exception store of mixed-width rows (cython_core.exceptions): an entry is the row (int64), the dimension
# (uint16) and the exact code (int32), 16 bytes aligned; each row keeps the index of its first entry (int32,
# -1: none), so a row without exceptions costs one read.
EXCEPTION_ENTRY_BYTES = 16
EXCEPTION_INDEX_BYTES = 4
