"""Calibration data for the data-aware pruning criteria (Wanda, SNIP): a bounded, fingerprinted
set of tokenised examples, batched like evaluation batches.

The examples are read and tokenised exactly as for training (`mftlab.training.data.load_examples`, answer-only
labels), taken in file order until `max_tokens` input tokens; the last example is cut short to fit.
Wanda uses every input token; SNIP's loss covers the answer tokens among them. The fingerprint is
the sha256 of every example's token ids and labels, so a mask records exactly what it saw.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

import numpy as np

from mftlab.errors import ConfigError, DataError
from mftlab.models.tokenizer import padding_id
from mftlab.options_meta import doc
from mftlab.training.data import Example, label_tokens, load_examples
from mftlab.training.evaluation import TokenBatch, make_batches


@dataclass(frozen=True)
class CalibrationConfig:
    """Where the calibration tokens come from and how many (resolved values go into mask metadata)."""

    data: str = field(
        metadata=doc("Calibration data for wanda / snip (.jsonl/.json/.parquet/.csv, e.g. the training data).")
    )
    max_tokens: int = field(
        default=16384, metadata=doc("Calibration tokens to use (examples in file order; the last one is cut to fit).")
    )
    batch_size: int = field(default=8, metadata=doc("Calibration examples per batch."))
    max_seq_len: int = field(default=512, metadata=doc("Tokens per example of --data (calibration)."))

    def __post_init__(self):
        if not self.data:
            raise ConfigError("calibration needs --data: a .jsonl/.json/.parquet/.csv file, e.g. the training data")
        if not (isinstance(self.max_tokens, int) and self.max_tokens >= 2):
            raise ConfigError(f"--max-tokens {self.max_tokens} is too small; use at least 2 (e.g. 16384)")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ConfigError(f"--batch-size {self.batch_size} must be at least 1 (e.g. 8)")
        if not (isinstance(self.max_seq_len, int) and self.max_seq_len >= 2):
            raise ConfigError(f"--max-seq-len {self.max_seq_len} is too small; use at least 2 (e.g. 512)")


@dataclass
class Calibration:
    """Batches of calibration tokens and what they are (for the mask's `method` metadata)."""

    config: CalibrationConfig
    batches: list[TokenBatch]
    examples: int
    tokens: int  # input tokens (what Wanda's norms are taken over)
    label_tokens: int  # answer tokens that a next-token loss covers (what SNIP's loss is over)
    fingerprint: str  # "sha256:<hex>" of the token ids and labels

    def to_dict(self) -> dict:
        return {
            **asdict(self.config),
            "examples": self.examples,
            "tokens": self.tokens,
            "label_tokens": self.label_tokens,
            "batches": len(self.batches),
            "fingerprint": self.fingerprint,
        }


def take_tokens(examples: list[Example], max_tokens: int) -> list[Example]:
    """Examples in order until `max_tokens` input tokens; the last one is cut to fit (at least 2 tokens)."""
    taken, used = [], 0
    for e in examples:
        room = max_tokens - used
        if room < 2:
            break
        if len(e.input_ids) > room:
            e = Example(e.input_ids[:room], e.labels[:room], e.prompt_ids[:room], e.reference)
        taken.append(e)
        used += len(e.input_ids)
    return taken


def tokens_fingerprint(examples: list[Example]) -> str:
    """sha256 over every example's length, token ids and labels (int64, little-endian)."""
    digest = hashlib.sha256()
    for e in examples:
        digest.update(np.asarray([len(e.input_ids)], dtype="<i8").tobytes())
        digest.update(np.asarray(e.input_ids, dtype="<i8").tobytes())
        digest.update(np.asarray(e.labels, dtype="<i8").tobytes())
    return "sha256:" + digest.hexdigest()


def calibration_from_examples(
    config: CalibrationConfig, examples: list[Example], pad_id: int, device="cpu"
) -> Calibration:
    """Bound `examples` to `config.max_tokens` and batch them (on `device`)."""
    taken = take_tokens(examples, config.max_tokens)
    tokens = sum(len(e.input_ids) for e in taken)
    if tokens == 0:
        raise DataError(f"calibration data '{config.data}' has no tokens; pass a file with text records")
    answer_tokens = sum(label_tokens(e) for e in taken)
    batches = make_batches(taken, config.batch_size, pad_id, device)
    return Calibration(config, batches, len(taken), tokens, answer_tokens, tokens_fingerprint(taken))


def load_calibration(config: CalibrationConfig, tokenizer, device="cpu") -> Calibration:
    """Read, tokenise and bound the calibration data of `config` for `tokenizer`."""
    examples, _ = load_examples(config.data, tokenizer, config.max_seq_len)
    pad_id = padding_id(tokenizer)
    return calibration_from_examples(config, examples, pad_id, device)
