"""A character-level tokenizer built offline, for the built-in tiny models.

Every printable ASCII character plus newline is one token; four special tokens frame text.
It is a real `PreTrainedTokenizerFast` (saved and reloaded like any Hugging Face tokenizer)
with a chat template, so data pipelines treat it exactly like a hub tokenizer.
"""

from __future__ import annotations

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>"]
CHARACTERS = ["\n"] + [chr(c) for c in range(32, 127)]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<s>' if loop.first else '' }}{{ message['role'] }}: {{ message['content'] }}\n"
    "{% if message['role'] == 'assistant' %}</s>{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)


def padding_id(tokenizer) -> int:
    """The id that batches are padded with: the pad token, else end-of-sequence, else 0.

    Padding is masked out of attention and of the loss, so the choice never changes a result; it
    only has to be a valid id (many causal-LM tokenizers have no pad token).
    """
    if tokenizer is None:
        return 0
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0


def build_char_tokenizer():
    """A fresh character tokenizer (vocabulary of 100: 4 special + 96 characters)."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    # BPE with no merges over a character vocabulary = one token per character.
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    core.decoder = decoders.Fuse()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = 1024
    return tokenizer
