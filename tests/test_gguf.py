"""Loading a GGUF file through transformers: a tiny Llama written with gguf-py loads to the same logits."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from mftlab.cli.main import main
from mftlab.models.loading import load_model
from mftlab.models.presets import build_preset

gguf = pytest.importorskip("gguf")


def _permute(a: np.ndarray, heads: int) -> np.ndarray:
    # llama.cpp stores q/k rows interleaved for its rotary layout; transformers undoes this on load.
    return a.reshape(heads, 2, a.shape[0] // heads // 2, *a.shape[1:]).swapaxes(1, 2).reshape(a.shape)


def write_llama_gguf(model, path) -> None:
    c = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_block_count(c.num_hidden_layers)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(c.vocab_size)
    writer.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    writer.add_file_type(0)  # all fp32
    names = {
        "model.embed_tokens.weight": "token_embd.weight",
        "model.norm.weight": "output_norm.weight",
        "lm_head.weight": "output.weight",
    }
    parts = {
        "self_attn.q_proj": "attn_q",
        "self_attn.k_proj": "attn_k",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
        "input_layernorm": "attn_norm",
        "post_attention_layernorm": "ffn_norm",
    }
    for i in range(c.num_hidden_layers):
        names.update({f"model.layers.{i}.{k}.weight": f"blk.{i}.{v}.weight" for k, v in parts.items()})
    for name, tensor in model.state_dict().items():
        array = tensor.float().numpy()
        if "q_proj" in name:
            array = _permute(array, c.num_attention_heads)
        elif "k_proj" in name:
            array = _permute(array, c.num_key_value_heads)
        writer.add_tensor(names[name], np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture
def gguf_file(tmp_path):
    model, _ = build_preset("tiny-llama")
    write_llama_gguf(model, tmp_path / "tiny.gguf")
    return model, tmp_path / "tiny.gguf"


def test_gguf_loads_to_the_same_logits(gguf_file):
    reference, path = gguf_file
    ids = torch.tensor([[5, 17, 23, 42, 8]])
    for loaded in (load_model(str(path)), load_model(str(path.parent), gguf_file=path.name)):
        with torch.no_grad():
            assert torch.equal(loaded.model(ids).logits, reference(ids).logits)


def test_masks_made_from_a_gguf_fit_the_original_weights(gguf_file, tmp_path):
    reference, path = gguf_file
    mask_path = tmp_path / "m.safetensors"
    result = CliRunner().invoke(
        main,
        [
            "baseline",
            str(path.parent),
            "--gguf-file",
            path.name,
            "--kind",
            "magnitude",
            "--layers",
            "1",
            "--out",
            str(mask_path),
        ],
    )
    assert result.exit_code == 0, result.output
    from mftlab.mask.maskfile import load_mask

    assert load_mask(mask_path).check_fits(dict(reference.named_parameters())) == []
    missing = CliRunner().invoke(
        main, ["inspect", str(mask_path), "--model", str(path.parent), "--gguf-file", "no.gguf"]
    )
    assert missing.exit_code == 1 and "does not exist" in missing.output
