"""Packed-row geometry, shared by the planner's `packed` layout and the compiled storage.

Pure Python on purpose: the planner imports this module, never the compiled kernels.
A row of ``dim`` codes of ``bits`` bits is packed little-endian into whole 64-bit words,
so that any row can be read at random.

>>> packed_row_bytes(348, 15)  # 5220 bits -> 82 words
656
>>> packed_row_padding_bits(348, 15)
28
"""

WORD_BITS = 64
WORD_BYTES = 8


def packed_row_words(dim: int, bits: int) -> int:
    """64-bit words one packed row of ``dim`` codes of ``bits`` bits occupies."""
    if dim < 1:
        raise ValueError(f"dim must be >= 1, got {dim}")
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be in 1..32, got {bits}")
    return -(-dim * bits // WORD_BITS)


def packed_row_bytes(dim: int, bits: int) -> int:
    """Bytes one packed row occupies, padding included."""
    return packed_row_words(dim, bits) * WORD_BYTES


def packed_row_padding_bits(dim: int, bits: int) -> int:
    """Unused bits at the end of each packed row."""
    return packed_row_words(dim, bits) * WORD_BITS - dim * bits
