"""Mask dynamics: flips and Hamming distances over snapshots, and finding a run's snapshots."""

import os

import numpy as np
import pytest
import torch

from mftlab.analysis.dynamics import mask_dynamics, run_masks
from mftlab.errors import MftlabError
from mftlab.mask.maskfile import Mask, save_mask

SHAPES = {"model.layers.0.mlp.up_proj.weight": (6, 11), "model.layers.1.mlp.up_proj.weight": (5, 9)}


def snapshots(n=4, seed=0):
    """Each snapshot flips a few more bits of the previous one; returns masks and bool arrays."""
    g = torch.Generator().manual_seed(seed)
    keep = {k: torch.rand(s, generator=g) > 0.2 for k, s in SHAPES.items()}
    out = [keep]
    for _ in range(n - 1):
        nxt = {k: v ^ (torch.rand(v.shape, generator=g) < 0.1) for k, v in out[-1].items()}
        out.append(nxt)
    return [Mask.from_keep(k) for k in out], out


def test_flips_and_distances():
    masks, keeps = snapshots()
    result = mask_dynamics(masks, steps=[0, 10, 20, 30])

    def diff(a, b, names=SHAPES):
        return sum(int((a[n] ^ b[n]).sum()) for n in names)

    assert result.flips["all"] == [diff(keeps[i], keeps[i + 1]) for i in range(3)]
    assert result.flips["1"] == [diff(keeps[i], keeps[i + 1], ["model.layers.1.mlp.up_proj.weight"]) for i in range(3)]
    assert result.to_first["all"] == [diff(keeps[0], k) for k in keeps]
    assert result.to_final["all"] == [diff(keeps[-1], k) for k in keeps]
    assert result.to_first["all"][0] == 0 and result.to_final["all"][-1] == 0
    total = sum(np.prod(s) for s in SHAPES.values())
    assert result.numel["all"] == total
    assert result.masked_fraction["0"][0] == pytest.approx(
        1 - float(keeps[0]["model.layers.0.mlp.up_proj.weight"].float().mean())
    )
    assert result.labels == ["step 0", "step 10", "step 20", "step 30"] and not result.notes
    rows = result.csv_rows()
    assert rows[1]["flips_from_previous"] == result.flips["all"][0]


def test_run_folder(tmp_path):
    masks, _ = snapshots(3)
    for step, mask in zip([500, 20, 100], masks):  # written out of order on purpose
        folder = tmp_path / "checkpoints" / f"step-{step:06d}"
        folder.mkdir(parents=True)
        save_mask(mask, folder / "mask.safetensors")
    (tmp_path / "checkpoints" / "notes").mkdir()
    paths, steps, labels = run_masks(tmp_path)
    assert steps == [20, 100, 500] and labels == ["step 20", "step 100", "step 500"]
    final = Mask.from_keep(
        {k: torch.ones(s, dtype=torch.bool) for k, s in SHAPES.items()}, method={"name": "mft", "step": 600}
    )
    save_mask(final, tmp_path / "mask.safetensors")
    paths, steps, labels = run_masks(tmp_path)
    assert labels[-1] == "final" and os.path.basename(paths[-1]) == "mask.safetensors"
    result = mask_dynamics(paths, steps, labels)
    assert result.steps == [20, 100, 500, 600]
    assert result.to_final["all"][0] == sum(int((~masks[1].keep(n)).sum()) for n in SHAPES)


def test_errors(tmp_path):
    with pytest.raises(MftlabError, match="at least 2"):
        run_masks(tmp_path)
    masks, _ = snapshots(2)
    other = Mask.from_keep({"model.layers.9.x.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(MftlabError, match="different tensors"):
        mask_dynamics([masks[0], other])
    result = mask_dynamics(masks)
    assert result.labels == ["snapshot 0", "snapshot 1"] and "snapshot index" in result.notes[0]
