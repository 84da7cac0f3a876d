"""One-vs-many overlap against hand counts; Spearman against scipy; scores read from a real run."""

import json

import pytest
import torch
from scipy.stats import spearmanr

from mftlab.analysis.criteria import run_scores, spearman
from mftlab.analysis.reference_overlap import add_rank_correlations, reference_overlap
from mftlab.errors import MftlabError
from mftlab.figures.criteria_figures import criteria_sentence
from mftlab.mask.maskfile import Mask
from mftlab.training.config import TrainConfig
from mftlab.training.loop import train

SHAPES = {"model.layers.0.self_attn.q_proj.weight": (4, 5), "model.layers.1.self_attn.q_proj.weight": (4, 5)}


def _mask(masked: dict, name="mft") -> Mask:
    keep = {}
    for tensor, shape in SHAPES.items():
        k = torch.ones(shape, dtype=torch.bool).flatten()
        k[masked[tensor]] = False
        keep[tensor] = k.reshape(shape)
    return Mask.from_keep(keep, method={"name": name})


def test_counts_lift_and_share_by_hand():
    q0, q1 = SHAPES
    ref = _mask({q0: [0, 1, 2, 3], q1: [0, 1, 2, 3]})
    same = _mask({q0: [0, 1, 2, 3], q1: [10, 11, 12, 13]}, "wanda")  # layer 0: all shared; layer 1: none
    result = reference_overlap(ref, [same], ["Wanda"])
    layer0, layer1, overall = (
        result.row("Wanda", "layer", "0"),
        result.row("Wanda", "layer", "1"),
        result.row("Wanda"),
    )
    assert layer0["shared_masked"] == 4 and layer0["lift"] == pytest.approx(4 / (4 * 4 / 20))
    assert layer0["fraction_of_reference"] == 1.0 and layer0["chance_fraction"] == pytest.approx(0.2)
    assert layer1["shared_masked"] == 0 and layer1["lift"] == 0.0
    assert overall["shared_masked"] == 4 and overall["lift"] == pytest.approx(4 / 1.6)
    tensor_row = result.row("Wanda", "tensor", q1)
    assert (tensor_row["layer"], tensor_row["projection"]) == (1, "q")
    assert result.reference == "mft" and result.methods == ["wanda"]
    sentence = criteria_sentence(result.to_dict())
    assert "MFT's masked set overlaps Wanda's 2.50x chance (layer 0: 5.00x, layer 1: not at all)" in sentence
    assert "at most 50% of MFT's masked weights" in sentence and "largely masks what Wanda prunes" in sentence


def test_spearman_matches_scipy_and_groups_weight_by_size():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 7, generator=g), torch.randn(6, 7, generator=g)
    b[0, :3] = 1.0  # ties: average ranks
    assert spearman(a, b) == pytest.approx(spearmanr(a.flatten(), b.flatten()).statistic)
    assert spearman(a, torch.ones(6, 7)) is None
    q0, q1 = SHAPES
    ref = _mask({q0: [0], q1: [0]})
    result = reference_overlap(ref, [_mask({q0: [1], q1: [1]}, "snip")], ["SNIP"])
    mft = {q0: torch.randn(4, 5, generator=g), q1: torch.randn(4, 5, generator=g)}
    crit = {q0: mft[q0] * 2, q1: -mft[q1]}  # rho +1 and -1
    assert add_rank_correlations(result, "SNIP", mft, crit) == 2
    assert result.row("SNIP", "layer", "0")["spearman"] == pytest.approx(1.0)
    assert result.row("SNIP", "layer", "1")["spearman"] == pytest.approx(-1.0)
    assert result.row("SNIP")["spearman"] == pytest.approx(0.0)
    json.dumps(result.to_dict(), allow_nan=False)


def test_run_scores_from_a_checkpoint(tmp_path, llama_dir):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{i}+1=", "completion": str(i + 1)}) + "\n" for i in range(8)))
    with pytest.raises(MftlabError, match="--save-every"):
        empty = tmp_path / "empty-run"
        empty.mkdir()
        run_scores(str(empty))
    out = tmp_path / "run"
    train(
        TrainConfig(
            model=llama_dir,
            data=str(data),
            out=str(out),
            max_steps=3,
            save_every=2,
            batch_size=4,
            layers="1",
            max_seq_len=32,
        )
    )
    scores, step = run_scores(str(out))
    assert step == 2
    assert set(scores) == {
        f"model.layers.1.{m}.weight"
        for m in (
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        )
    }
    assert scores["model.layers.1.self_attn.q_proj.weight"].shape == (32, 32)
