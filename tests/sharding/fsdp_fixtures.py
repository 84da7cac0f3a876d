"""What the two-process tests of this folder share: the launcher's environment and a tiny Llama.

(Imported by name: tests/conftest.py's model builders are shadowed by other conftest.py files here.)
"""

import os
import sys

import torch

BIN = os.path.dirname(sys.executable)
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}


def tiny_llama(tied: bool = False):
    """hidden 32, 2 layers, vocabulary 100 (the character tokenizer's ids fit)."""
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
        torch.manual_seed(0)
        return LlamaForCausalLM(config).eval()
