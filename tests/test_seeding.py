"""name_seed: one name-to-seed hash for every per-tensor draw."""

import torch

from mftlab.seeding import name_generator, name_seed


def test_name_seed_is_the_documented_blake2b():
    import hashlib

    digest = hashlib.blake2b(b"3:model.layers.0.mlp.up_proj.weight", digest_size=8).digest()
    expected = int.from_bytes(digest, "little") & ((1 << 63) - 1)
    assert name_seed(3, "model.layers.0.mlp.up_proj.weight") == expected


def test_name_seed_depends_on_every_part_and_fits_int64():
    seeds = {name_seed(0, "a"), name_seed(1, "a"), name_seed(0, "b"), name_seed(0, 0, "a"), name_seed(0, 1, "a")}
    assert len(seeds) == 5
    assert all(0 <= s < 2**63 for s in seeds)


def test_name_generator_draws_are_reproducible_alone():
    first = torch.rand(5, generator=name_generator(7, "w"))
    torch.rand(100, generator=name_generator(7, "other"))  # another tensor's draw in between changes nothing
    assert torch.equal(first, torch.rand(5, generator=name_generator(7, "w")))
