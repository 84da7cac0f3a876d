import pytest
import torch

from mftlab.mft.baselines import baseline_mask
from mftlab.mft.selection import num_masked
from mftlab.mft.targeting import TargetSpec


def test_magnitude_masks_smallest_weights(tiny_llama):
    mask, targets = baseline_mask(tiny_llama, "magnitude", 0.2, TargetSpec.parse("q_proj", "0"))
    w = tiny_llama.model.layers[0].self_attn.q_proj.weight.detach()
    keep = mask.keep(targets[0].param_name)
    assert int((~keep).sum()) == num_masked(w.numel(), 0.2)
    assert w.abs()[~keep].max() <= w.abs()[keep].min()


def test_random_is_seeded_and_independent_of_target_order(tiny_llama):
    spec = TargetSpec.parse("q_proj,v_proj")
    a, _ = baseline_mask(tiny_llama, "random", 0.1, spec, seed=1)
    b, _ = baseline_mask(tiny_llama, "random", 0.1, TargetSpec.parse("v_proj,q_proj"), seed=1)
    c, _ = baseline_mask(tiny_llama, "random", 0.1, spec, seed=2)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert torch.equal(a.keep(name), b.keep(name))
    assert not torch.equal(a.keep(name), c.keep(name))


def test_row_granularity_on_conv1d_counts_per_output_unit(tiny_gpt2):
    mask, targets = baseline_mask(tiny_gpt2, "magnitude", 0.25, TargetSpec.parse("c_fc", "1"), granularity="row")
    keep = mask.keep(targets[0].param_name)  # Conv1D weight [in=32, out=128]
    assert keep.shape == (32, 128)
    assert ((~keep).sum(dim=0) == num_masked(32, 0.25)).all()


def test_random_baseline_over_seeds_differs_and_is_summarised(llama_dir, tmp_path):
    import json

    from click.testing import CliRunner

    from mftlab.cli.main import main
    from mftlab.mask.maskfile import load_mask

    data = tmp_path / "val.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"{a}+{a}=", "completion": str(2 * a)}) + "\n" for a in range(8)))
    out = tmp_path / "random.safetensors"
    result = CliRunner().invoke(
        main,
        [
            "baseline",
            llama_dir,
            "--kind",
            "random",
            "--mask-ratio",
            "0.3",
            "--seed",
            "5",
            "--eval-data",
            str(data),
            "--max-seq-len",
            "32",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    paths = [out, tmp_path / "random.seed6.safetensors", tmp_path / "random.seed7.safetensors"]
    masks = [load_mask(p) for p in paths]  # default --seeds 3: the first at --out, the others beside it
    name = masks[0].names[0]
    assert all(m.mask_ratio == pytest.approx(0.3, abs=0.01) for m in masks)
    assert len({m.packed[name].tobytes() for m in masks}) == 3
    assert "3 draws (seeds 5-7): two draws share" in result.output
    line = next(x for x in result.output.splitlines() if x.startswith("loss on"))
    assert " ± " in line and "over 3 draw(s)" in line
    one = CliRunner().invoke(
        main, ["baseline", llama_dir, "--kind", "magnitude", "--seeds", "2", "--out", str(tmp_path / "m.safetensors")]
    )
    assert one.exit_code == 1 and "magnitude masks do not depend on a seed" in one.output


def test_evaluate_draws_restores_the_weights(tiny_llama, tokenizer):
    from mftlab.mft.baselines import evaluate_draws
    from mftlab.training.data import load_examples

    records = [{"prompt": f"{a}+1=", "completion": str(a + 1)} for a in range(6)]
    import json
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".jsonl", delete=False) as f:
        f.write("".join(json.dumps(r) + "\n" for r in records))
    examples, _ = load_examples(f.name, tokenizer, 32)
    before = {n: p.detach().clone() for n, p in tiny_llama.named_parameters()}
    masks = [baseline_mask(tiny_llama, "random", 0.5, TargetSpec.parse("all-linear"), seed=s)[0] for s in (0, 1)]
    losses = evaluate_draws(tiny_llama, tokenizer, masks, examples)
    assert len(losses) == 2 and losses[0] != losses[1]
    assert all(torch.equal(before[n], p) for n, p in tiny_llama.named_parameters())
