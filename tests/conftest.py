"""Shared fixtures: tiny real models built from configs (no downloads), saved model folders."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

from mftlab.models.tokenizer import build_char_tokenizer  # noqa: E402


def _tiny_llama(tied: bool = False, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=72,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=tied,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return LlamaForCausalLM(config).eval()


def _tiny_gpt2(seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=100, n_embd=32, n_layer=2, n_head=4, n_positions=128, pad_token_id=0, bos_token_id=1, eos_token_id=2
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return GPT2LMHeadModel(config).eval()


@pytest.fixture
def tiny_llama():
    return _tiny_llama()


@pytest.fixture
def tiny_gpt2():
    return _tiny_gpt2()


@pytest.fixture
def tokenizer():
    return build_char_tokenizer()


def save_model_dir(model, path, tokenizer=None):
    model.save_pretrained(path, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(params=["llama", "gpt2"])
def model_dir(request, tmp_path, tokenizer):
    """A saved tiny model folder (Llama: nn.Linear; GPT-2: Conv1D, tied embeddings)."""
    model = _tiny_llama() if request.param == "llama" else _tiny_gpt2()
    return save_model_dir(model, tmp_path / f"tiny-{request.param}", tokenizer)


@pytest.fixture
def llama_dir(tmp_path, tokenizer):
    """A saved tiny Llama folder (nn.Linear, untied embeddings)."""
    return save_model_dir(_tiny_llama(), tmp_path / "tiny-llama", tokenizer)
