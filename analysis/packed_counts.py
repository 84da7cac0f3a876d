"""Counting on bit-packed masks without unpacking them (layout: CONTRIBUTING.md, section 3).

Every function here works on the packed uint8 bytes, one tensor at a time, so memory stays
near the packed size (1 bit per weight). Bit 1 = kept, bit 0 = masked. Padding bits (the
unused high bits of each row's last byte) are zero in a valid mask; wherever a function
inverts bits (`masked_bits`), it clears the padding again so it can never be counted.
"""

from __future__ import annotations

import numpy as np

from mftlab.mask.packing import popcount


def _bitwise_count(packed: np.ndarray) -> np.ndarray:
    """Per-byte popcount (uint8), np.bitwise_count on numpy 2, a lookup table before."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(packed)
    from mftlab.mask.packing import _POPCOUNT_TABLE

    return _POPCOUNT_TABLE[packed]


def last_dim(shape: tuple[int, ...]) -> int:
    """Number of bits per packed row (a 0-d parameter counts as one bit)."""
    return int(shape[-1]) if len(shape) else 1


def valid_bits(shape: tuple[int, ...]) -> np.ndarray:
    """uint8 row of ceil(C/8) bytes, 1 where a bit belongs to the tensor; broadcasts over rows."""
    cols = last_dim(shape)
    valid = np.full((cols + 7) // 8, 0xFF, dtype=np.uint8)
    used = cols % 8
    if used and valid.size:
        valid[-1] = (1 << used) - 1
    return valid


def as_rows(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """View a packed tensor as (R, ceil(C/8)); a 1-D or 0-d parameter is one row."""
    return packed.reshape(-1, packed.shape[-1]) if packed.ndim else packed.reshape(1, -1)


def count(packed: np.ndarray) -> int:
    """Set bits in a packed array whose padding bits are zero."""
    return popcount(packed)


def masked_bits(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Packed bits set where the weight is masked (bit 0 in `packed`); padding stays zero."""
    return np.bitwise_and(np.bitwise_not(packed), valid_bits(shape))


def row_kept(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Kept weights in each row (R,), int64."""
    return _bitwise_count(as_rows(packed, shape)).sum(axis=1, dtype=np.int64)


def col_kept(packed: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Kept weights in each column (C,), int64: eight shift-and-sum passes over the bytes."""
    rows = as_rows(packed, shape)  # (R, B)
    counts = np.zeros(rows.shape[1] * 8, dtype=np.int64)
    for bit in range(8):
        counts[bit::8] = (np.right_shift(rows, bit) & 1).sum(axis=0, dtype=np.int64)
    return counts[: last_dim(shape)]


# -- k-of-N counting with a bit-sliced counter ---------------------------------------------
# A counter of N one-bit inputs needs ceil(log2(N + 1)) bit planes; plane j holds bit j of the
# per-weight count. Adding a packed input is a ripple-carry adder on whole bytes.


def counter_planes(n_inputs: int, packed_shape: tuple[int, ...]) -> list[np.ndarray]:
    """Zeroed bit planes able to count up to `n_inputs` per weight."""
    return [np.zeros(packed_shape, dtype=np.uint8) for _ in range(max(1, int(n_inputs).bit_length()))]


def counter_add(planes: list[np.ndarray], bits: np.ndarray) -> None:
    """Add one packed input (1 bit per weight) to the counter, in place."""
    carry = bits.copy()
    for plane in planes:
        new_carry = plane & carry
        np.bitwise_xor(plane, carry, out=plane)
        carry = new_carry
        if not carry.any():
            return


def counter_equal(planes: list[np.ndarray], k: int, shape: tuple[int, ...]) -> int:
    """Number of weights whose count is exactly `k` (padding excluded)."""
    match = np.broadcast_to(valid_bits(shape), planes[0].shape).copy()
    for j, plane in enumerate(planes):
        np.bitwise_and(match, plane if (k >> j) & 1 else np.bitwise_not(plane), out=match)
    return count(match)
