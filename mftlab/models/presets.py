"""Built-in tiny models, available wherever a model is accepted, so every command runs offline.

Each preset is a config plus a seeded initialisation plus the character tokenizer; nothing is
downloaded. `tiny-llama` is Llama-shaped (nn.Linear, untied embeddings), `tiny-gpt2` is
GPT-2-shaped (transformers Conv1D, tied embeddings). `micro-llama` (0.2M parameters) is the
backbone of the quick demo.
"""

from __future__ import annotations

from typing import Callable

import torch

from mftlab.models.tokenizer import CHARACTERS, SPECIAL_TOKENS, build_char_tokenizer

VOCAB_SIZE = len(SPECIAL_TOKENS) + len(CHARACTERS)


def _llama_config(hidden: int = 128, layers: int = 4, heads: int = 4, kv_heads: int = 2, tied: bool = False):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=VOCAB_SIZE,
        hidden_size=hidden,
        intermediate_size=hidden * 11 // 4,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        max_position_embeddings=512,
        tie_word_embeddings=tied,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


def _gpt2_config(hidden: int = 128, layers: int = 4, heads: int = 4):
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=VOCAB_SIZE,
        n_embd=hidden,
        n_layer=layers,
        n_head=heads,
        n_positions=512,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )


PRESETS: dict[str, Callable] = {
    "tiny-llama": lambda: _llama_config(),
    "micro-llama": lambda: _llama_config(hidden=64),
    "tiny-llama-tied": lambda: _llama_config(tied=True),
    "tiny-gpt2": lambda: _gpt2_config(),
}


def is_preset(name: str) -> bool:
    return str(name) in PRESETS


def build_preset(name: str, seed: int = 0):
    """(model, tokenizer) of a preset, initialised from `seed` without touching global RNG state."""
    from transformers import AutoModelForCausalLM

    config = PRESETS[name]()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config).float()
    model.config.name_or_path = name
    model.eval()
    return model, build_char_tokenizer()
