"""Overlap on packed bytes equals hand and numpy counts, odd shapes included."""

import math

import numpy as np
import pytest
import torch

from mftlab.analysis.overlap import compare_masks, consensus_counts, default_labels, pair_counts
from mftlab.analysis.packed_counts import col_kept, masked_bits, row_kept, valid_bits
from mftlab.errors import MaskMismatchError
from mftlab.mask.maskfile import Mask, save_mask
from mftlab.mask.packing import pack_bits

ODD = {
    "model.layers.0.self_attn.q_proj.weight": (7, 13),
    "model.layers.1.mlp.up_proj.weight": (1, 9),
    "model.layers.1.mlp.down_proj.weight": (13,),
}


def random_keep(seed, mask_ratio, shapes=ODD):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(s, generator=g) >= mask_ratio for n, s in shapes.items()}


def test_hand_made_pair():
    # 1 x 9: one padded byte with 7 padding bits that would leak into ~a & ~b.
    a = np.array([[1, 0, 0, 1, 1, 0, 1, 1, 0]], dtype=bool)  # masked at 1, 2, 5, 8
    b = np.array([[1, 0, 1, 1, 0, 0, 1, 1, 1]], dtype=bool)  # masked at 1, 4, 5
    c = pair_counts(pack_bits(a), pack_bits(b), (1, 9))
    m = c.metrics()
    assert (m["masked_a"], m["masked_b"], m["shared_masked"], m["union_masked"]) == (4, 3, 2, 5)
    assert m["jaccard"] == pytest.approx(2 / 5)
    assert m["dice"] == pytest.approx(4 / 7)
    assert m["hamming"] == 3  # positions 2, 4, 8
    assert m["expected_shared"] == pytest.approx(4 * 3 / 9)
    assert m["lift"] == pytest.approx(2 / (12 / 9))
    # P(X >= 2), X ~ Hypergeom(N=9, K=4, n=3) = [C(4,2)C(5,1) + C(4,3)] / C(9,3)
    assert m["p_value"] == pytest.approx((6 * 5 + 4) / 84)
    sd = math.sqrt(3 * (4 / 9) * (5 / 9) * (6 / 8))
    assert m["z"] == pytest.approx((2 - 4 / 3) / sd)


def test_padding_never_counted():
    for shape in [(7, 13), (1, 9), (13,), (3, 8), (2, 1)]:
        keep = np.zeros(shape, dtype=bool)  # everything masked
        packed = pack_bits(keep)
        assert int(np.bitwise_count(masked_bits(packed, shape)).sum()) == math.prod(shape)
        c = pair_counts(packed, packed, shape).metrics()
        assert c["shared_masked"] == math.prod(shape) and c["jaccard"] == 1.0 and c["hamming"] == 0
        exactly, only = consensus_counts([packed, packed, packed], shape)
        assert exactly == [0, 0, 0, math.prod(shape)] and only == [0, 0, 0]
    assert list(valid_bits((7, 13))) == [0xFF, 0x1F]


def test_row_and_column_counts_match_numpy():
    keep = random_keep(3, 0.4)["model.layers.0.self_attn.q_proj.weight"].numpy()
    packed = pack_bits(keep)
    assert list(row_kept(packed, keep.shape)) == list(keep.sum(axis=1))
    assert list(col_kept(packed, keep.shape)) == list(keep.sum(axis=0))


def test_compare_matches_numpy_on_odd_shapes():
    keeps = [random_keep(s, r) for s, r in [(0, 0.3), (1, 0.5), (2, 0.2), (3, 0.7)]]
    result = compare_masks([Mask.from_keep(k) for k in keeps], labels=list("abcd"))
    flat = [np.concatenate([(~k[n]).numpy().ravel() for n in ODD]) for k in keeps]
    for i, j in [(0, 1), (1, 3), (2, 3)]:
        row = result.overall("abcd"[i], "abcd"[j])
        assert row["shared_masked"] == int((flat[i] & flat[j]).sum())
        assert row["union_masked"] == int((flat[i] | flat[j]).sum())
        assert row["hamming"] == int((flat[i] ^ flat[j]).sum())
    overall = result.consensus[-1]
    assert overall["exactly"] == list(np.bincount(sum(f.astype(int) for f in flat), minlength=5))
    for i, label in enumerate("abcd"):
        alone = flat[i] & ~np.any([f for j, f in enumerate(flat) if j != i], axis=0)
        assert overall["only"][label] == int(alone.sum())
    levels = {(r["level"], r["group"]) for r in result.pairs}
    assert (
        ("layer", "1") in levels
        and ("projection", "q") in levels
        and ("tensor", "model.layers.1.mlp.up_proj.weight") in levels
    )


def test_independent_masks_lift_one_identical_jaccard_one():
    shapes = {f"model.layers.{i}.mlp.up_proj.weight": (256, 250) for i in range(4)}
    a, b = random_keep(10, 0.1, shapes), random_keep(11, 0.3, shapes)
    result = compare_masks([Mask.from_keep(a), Mask.from_keep(b), Mask.from_keep(a)], labels=["a", "b", "a2"])
    ab = result.overall("a", "b")
    assert ab["lift"] == pytest.approx(1.0, abs=0.03)
    assert abs(ab["z"]) < 4 and ab["p_value"] > 1e-4
    same = result.overall("a", "a2")
    assert same["jaccard"] == 1.0 and same["dice"] == 1.0 and same["hamming"] == 0
    assert same["lift"] == pytest.approx(1 / 0.1, rel=0.05)
    assert same["p_value"] == 0.0 and same["log10_p"] < -300  # below float range, still reported


def test_different_tensors_need_force(tmp_path):
    a = Mask.from_keep(random_keep(0, 0.2))
    smaller = dict(random_keep(1, 0.2))
    smaller.pop("model.layers.1.mlp.down_proj.weight")
    b = Mask.from_keep(smaller)
    with pytest.raises(MaskMismatchError, match="model.layers.1.mlp.down_proj.weight.*--force"):
        compare_masks([a, b], labels=["a", "b"])
    result = compare_masks([a, b], labels=["a", "b"], force=True)
    assert len(result.tensors) == 2 and "2 tensors all masks share" in result.notes[0]


def test_different_bases_need_force():
    w1 = {n: torch.randn(s) for n, s in ODD.items()}
    w2 = {n: torch.randn(s) for n, s in ODD.items()}
    a = Mask.from_keep(random_keep(0, 0.2), w1, "ft-math")
    b = Mask.from_keep(random_keep(1, 0.2), w2, "ft-code")
    with pytest.raises(MaskMismatchError, match="different bases.*ft-math.*ft-code"):
        compare_masks([a, b], labels=["a", "b"])
    assert "compared anyway" in compare_masks([a, b], labels=["a", "b"], force=True).notes[0]


def test_labels_and_files(tmp_path):
    paths = []
    for i in range(2):
        (tmp_path / f"run{i}").mkdir()
        paths.append(str(tmp_path / f"run{i}" / "mask.safetensors"))
        save_mask(Mask.from_keep(random_keep(i, 0.2)), paths[-1])
    assert default_labels(paths) == ["run0/mask", "run1/mask"]
    assert compare_masks(paths).labels == ["run0/mask", "run1/mask"]
    with pytest.raises(MaskMismatchError, match="3 names for 2 masks"):
        compare_masks(paths, labels=["a", "b", "c"])
    with pytest.raises(MaskMismatchError, match="at least 2"):
        compare_masks(paths[:1])
