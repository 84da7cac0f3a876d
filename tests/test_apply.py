import os

import pytest
import torch
from click.testing import CliRunner
from transformers import AutoModelForCausalLM

from mftlab.cli.main import main
from mftlab.mask.legacy import convert_legacy
from mftlab.mask.maskfile import load_mask
from mftlab.mft.apply import apply_mask_, write_merged
from mftlab.mft.baselines import baseline_mask
from mftlab.mft.targeting import TargetSpec
from mftlab.models.loading import load_model

IDS = torch.tensor([[5, 17, 23, 42, 8, 99, 3]])


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_baseline_inspect_apply_reload_equal_logits(model_dir, tmp_path):
    """Llama (nn.Linear) and GPT-2 (Conv1D, tied) through the whole CLI path."""
    mask_path = tmp_path / "m.safetensors"
    run("baseline", model_dir, "--kind", "magnitude", "--mask-ratio", "0.1", "--layers", "1", "--out", mask_path)
    assert "fingerprints vs" in run("inspect", mask_path, "--model", model_dir)
    run("apply", model_dir, mask_path, "--out", tmp_path / "merged")

    in_memory = load_model(model_dir).model
    mismatched = apply_mask_(in_memory, load_mask(mask_path))
    assert mismatched == []
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    with torch.no_grad():
        assert torch.equal(merged(IDS).logits, in_memory(IDS).logits)
    assert os.path.exists(tmp_path / "merged" / "tokenizer.json")
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tmp_path / "merged").st_mode & 0o777 == 0o777 & ~umask
    assert os.stat(mask_path).st_mode & 0o777 == 0o666 & ~umask


def test_apply_of_preset_and_bf16_model(tmp_path):
    loaded = load_model("tiny-llama", dtype="bfloat16")
    mask, _ = baseline_mask(loaded.model, "random", 0.3, TargetSpec.parse("up_proj"))
    write_merged("tiny-llama", mask, str(tmp_path / "out"), dtype="bfloat16")
    merged = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    w = merged.model.layers[0].mlp.up_proj.weight
    assert w.dtype == torch.bfloat16
    assert torch.equal(w == 0, ~mask.keep("model.layers.0.mlp.up_proj.weight") | (w == 0))
    assert int((w == 0).sum()) >= int((~mask.keep("model.layers.0.mlp.up_proj.weight")).sum())


def test_base_weights_in_bf16_match_fp32_fingerprints(model_dir, tmp_path):
    fp32 = load_model(model_dir, dtype="float32").model
    mask, _ = baseline_mask(fp32, "magnitude", 0.1, TargetSpec.parse("all-linear"))
    bf16 = load_model(model_dir, dtype="bfloat16").model
    assert mask.check_fits(dict(bf16.named_parameters())) == []


def test_legacy_pt_conversion(tiny_llama, tmp_path):
    w = tiny_llama.model.layers[0].self_attn.q_proj.weight
    dense = (torch.rand(w.shape, generator=torch.Generator().manual_seed(0)) > 0.1).float()
    torch.save({"model.layers.0.self_attn.q_proj": dense}, tmp_path / "legacy.pt")
    mask = convert_legacy(str(tmp_path / "legacy.pt"), dict(tiny_llama.named_parameters()), "tiny")
    assert mask.names == ["model.layers.0.self_attn.q_proj.weight"]
    assert torch.equal(mask.keep(mask.names[0]), dense.bool())
    assert mask.check_fits(dict(tiny_llama.named_parameters())) == []


def test_legacy_refuses_non_binary_and_pickled_objects(tmp_path):
    from mftlab.errors import MaskFormatError

    torch.save({"a": torch.tensor([0.0, 0.5])}, tmp_path / "half.pt")
    with pytest.raises(MaskFormatError, match="other than 0 and 1"):
        convert_legacy(str(tmp_path / "half.pt"))

    import datetime

    torch.save({"a": datetime.date(2020, 1, 1)}, tmp_path / "evil.pt")  # not allowed by weights_only
    with pytest.raises(MaskFormatError, match="not a loadable tensor file"):
        convert_legacy(str(tmp_path / "evil.pt"))
