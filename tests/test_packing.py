import numpy as np
import pytest
import torch

from mftlab.mask.packing import pack_bits, packed_shape, padding_is_zero, popcount, unpack_bits


@pytest.mark.parametrize("shape", [(7, 13), (13,), (1, 9), (1, 8), (3, 16), (2, 3, 5), (1,)])
def test_pack_unpack_roundtrip_odd_shapes(shape):
    g = torch.Generator().manual_seed(1)
    keep = torch.rand(shape, generator=g) > 0.3
    packed = pack_bits(keep)
    assert packed.dtype == np.uint8
    assert packed.shape == packed_shape(shape)
    assert padding_is_zero(packed, shape[-1])
    assert np.array_equal(unpack_bits(packed, shape), keep.numpy())
    assert popcount(packed) == int(keep.sum())


def test_layout_is_little_endian_rows_padded():
    keep = np.zeros((2, 10), dtype=bool)
    keep[0, 0] = True  # bit 0 of byte 0
    keep[0, 9] = True  # bit 1 of byte 1
    keep[1, 7] = True  # bit 7 of byte 0 of row 1
    packed = pack_bits(keep)
    assert packed.tolist() == [[0b00000001, 0b00000010], [0b10000000, 0]]


def test_padding_check_detects_set_bits():
    packed = pack_bits(np.ones((2, 13), dtype=bool))
    assert padding_is_zero(packed, 13)
    packed[1, -1] |= 0b1000_0000
    assert not padding_is_zero(packed, 13)
