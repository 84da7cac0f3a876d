"""Flip counts from bit-packed copies equal counts on the boolean masks (odd sizes, any device)."""

import torch

from mftlab.mft.flip_counter import FlipCounter, pack_flat, packed_bytes


def _masks(seed: int, shapes) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {f"t{i}": torch.rand(s, generator=g) < 0.9 for i, s in enumerate(shapes)}


def _flips(a, b) -> int:
    return sum(int((a[n] != b[n]).sum()) for n in a)


def test_packed_flip_counts_equal_boolean_counts():
    shapes = [(7, 13), (1,), (5,), (16, 8), (3, 1)]
    steps = [_masks(seed, shapes) for seed in range(4)]
    counter = FlipCounter(steps[0])
    for previous, current in zip(steps, steps[1:]):
        since_last, since_start = counter.count(current)
        assert since_last == _flips(current, previous) > 0
        assert since_start == _flips(current, steps[0])
    assert counter.count(steps[-1]) == (0, _flips(steps[-1], steps[0]))


def test_packing_is_one_bit_per_weight():
    keep = _masks(0, [(7, 13)])["t0"]
    packed = pack_flat(keep)
    assert packed.dtype == torch.uint8 and packed.numel() == (7 * 13 + 7) // 8 == packed_bytes({"t0": keep})
    bits = ((packed.unsqueeze(1) >> torch.arange(8, dtype=torch.uint8)) & 1).reshape(-1)[: keep.numel()]
    assert torch.equal(bits.bool(), keep.reshape(-1))  # LSB first, padding zero
    assert int(((packed.unsqueeze(1) >> torch.arange(8, dtype=torch.uint8)) & 1).reshape(-1)[keep.numel() :].sum()) == 0


def test_counter_moves_with_the_model():
    shapes = [(4, 9)]
    a, b = _masks(1, shapes), _masks(2, shapes)
    counter = FlipCounter(a)
    counter.to("cpu")
    assert counter.count(b) == (_flips(a, b), _flips(a, b))


def test_restart_counts_the_next_flips_from_the_resumed_mask():
    shapes = [(6, 11)]
    start, resumed, later = _masks(1, shapes), _masks(2, shapes), _masks(3, shapes)
    counter = FlipCounter(start)
    counter.restart(resumed)
    assert counter.count(later) == (_flips(later, resumed), _flips(later, start))
