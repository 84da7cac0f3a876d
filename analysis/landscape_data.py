"""The fixed data subsets a landscape evaluates at every point: the first `max_tokens` label tokens of a
data set, tokenised once, batched on the device and hashed (the hash is part of what `--resume` checks)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch

from mftlab.errors import ConfigError
from mftlab.models.tokenizer import padding_id
from mftlab.training.data import Example, label_tokens, load_examples
from mftlab.training.evaluation import TokenBatch, make_batches


def select_tokens(examples: list[Example], max_tokens: int | None) -> list[Example]:
    """The first examples (in data order) holding at least `max_tokens` label tokens (all when None)."""
    if max_tokens is None:
        return list(examples)
    if max_tokens < 1:
        raise ConfigError(f"--max-tokens {max_tokens} must be positive; use e.g. 4096")
    chosen, total = [], 0
    for example in examples:
        if total >= max_tokens:
            break
        chosen.append(example)
        total += label_tokens(example)
    return chosen


@dataclass
class EvalData:
    """A fixed subset, tokenised once and batched on the device."""

    batches: list[TokenBatch]
    tokens: int  # label tokens
    examples: int
    hash: str  # of token ids, labels and batching

    def to_dict(self) -> dict:
        return {"tokens": self.tokens, "examples": self.examples, "hash": self.hash}


def prepare_data(
    examples: list[Example], pad_id: int, batch_size: int = 8, max_tokens: int | None = None, device="cpu"
) -> EvalData:
    """Select `max_tokens` label tokens, batch them on `device`, and hash what will be evaluated."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size {batch_size} must be positive; use e.g. 8")
    chosen = select_tokens(examples, max_tokens)
    batches = make_batches(chosen, batch_size, pad_id, device)
    digest = hashlib.blake2b(digest_size=16)
    for b in batches:
        for t in (b.input_ids, b.labels, b.attention_mask):
            digest.update(str(tuple(t.shape)).encode())
            digest.update(t.to("cpu", torch.int64).numpy().tobytes())
    return EvalData(batches, sum(b.num_label_tokens for b in batches), len(chosen), "blake2b:" + digest.hexdigest())


def load_eval_data(
    source: str, tokenizer, *, max_seq_len: int, batch_size: int = 8, max_tokens: int | None = None, device="cpu"
) -> EvalData:
    """`prepare_data` of the examples in `source` (file, folder or hub id), tokenised with `tokenizer`."""
    examples, _ = load_examples(source, tokenizer, max_seq_len)
    return prepare_data(examples, padding_id(tokenizer), batch_size, max_tokens, device)
